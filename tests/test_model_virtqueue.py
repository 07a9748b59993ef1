"""Model-based tests of the split virtqueue, device side (issue 11, item 1).

Random driver actions run against the device's own ``virtqueue_pop / fill / flush`` and
``virtio_notify`` on a :class:`VirtQueue` in guest RAM, and are checked against a small
model of the spec's rules written here from virtio 1.x §2.7 (shared/reference/specs.md §1),
independently of ``qnetlearn.hw.virtio``:

* every chain the driver makes available is popped once, in the order of the available
  ring, with exactly its readable and writable buffers, and comes back in the used ring
  exactly once with the length the device filled in;
* the 16-bit indices wrap: the queue starts close to 65535 (the state a device is in
  after ~65,500 buffers, set directly);
* an interrupt is raised exactly when the flags say (NO_INTERRUPT without EVENT_IDX) or
  when the used index passes ``used_event`` (``vring_need_event``, written out here again
  from the spec); the first check after a reset may notify spuriously, as QEMU does;
* no lost kick: while the device asks for notifications and has consumed everything, the
  driver's own rule (NO_NOTIFY flag, or ``avail_event``) tells it to kick.

The device-level model (virtio-net over virtio-pci driven through the spec driver, with
MSI-X messages at the APIC) is in ``test_model_virtio_net.py``.
"""
from __future__ import annotations

import struct
from collections import deque

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from qnetlearn.hw.virtio.virtio import (VirtIODevice, virtio_notify, virtio_queue_empty,
                                        virtio_queue_set_notification, virtqueue_fill,
                                        virtqueue_flush, virtqueue_pop)
from qnetlearn.system.memory import RAM

# virtio 1.x constants, written out from the spec (not imported from the device)
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT, USED_F_NO_NOTIFY = 1, 1
B_INDIRECT, B_EVENT_IDX, B_VERSION_1 = 28, 29, 32
DESC, AVAIL, USED, TABLES, BUFFERS = 0x1000, 0x3000, 0x5000, 0x10000, 0x40000
VECTOR = 3


def need_event(event: int, new: int, old: int) -> bool:
    """virtio 1.x §2.7.10: notify iff ``event`` lies in [old, new) modulo 2^16."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def test_need_event_table():
    """The worked examples of specs.md §1.5."""
    rows = [(0, 0, 1, True), (0, 1, 2, False), (5, 0, 5, False), (5, 0, 6, True),
            (3, 4, 5, False), (0xFFFF, 0xFFFE, 0x0001, True), (0xFFFE, 0xFFFE, 0x0001, True),
            (10, 0xFFFE, 0x0001, False), (7, 7, 7, False)]
    from qnetlearn.hw.virtio.virtio import vring_need_event
    for event, old, new, want in rows:
        assert need_event(event, new, old) is want
        assert vring_need_event(event, new, old) is want


chain_shape = st.lists(st.tuples(st.integers(1, 64), st.booleans()), min_size=1, max_size=4)


class SplitVirtqueue(RuleBasedStateMachine):
    """The driver side and the model; the device is qnetlearn's."""

    @initialize(num=st.sampled_from([1, 2, 4, 8, 16]), event_idx=st.booleans(),
                start=st.one_of(st.integers(0xFFFF - 40, 0xFFFF), st.just(0),
                                st.integers(0, 0xFFFF)))
    def setup(self, num: int, event_idx: bool, start: int) -> None:
        self.ram = RAM(1 << 20)
        vdev = self.vdev = VirtIODevice("model", (1 << B_VERSION_1) | (1 << B_EVENT_IDX) |
                                        (1 << B_INDIRECT))
        vdev.guest_features = (1 << B_VERSION_1) | (event_idx << B_EVENT_IDX) | \
            (1 << B_INDIRECT)
        vdev.dma = self.ram
        vdev.status = 0xF
        self.interrupts: list[int] = []
        vdev.notify = self.interrupts.append
        vq = self.vq = vdev.virtio_add_queue(num, None)
        vq.desc, vq.avail, vq.used, vq.vector, vq.enabled = DESC, AVAIL, USED, VECTOR, True
        # the state after `start` buffers went round: both sides' indices equal `start`
        vq.last_avail_idx = vq.shadow_avail_idx = vq.used_idx = vq.signalled_used = start
        self.num, self.event_idx = num, event_idx
        self.avail_idx = self.last_used = start
        self.ram.stw(AVAIL + 2, start)
        self.ram.stw(USED + 2, start)
        self.ram.stw(AVAIL + 4 + 2 * num, start)         # used_event: "the next one"
        self.ram.stw(USED + 4 + 8 * num, start)          # avail_event as the device left it
        self.free = list(range(num))
        self.next_buf = BUFFERS
        self.next_table = TABLES
        self.token = 0
        self.chains: dict[int, tuple[int, list, list[int]]] = {}   # head -> (token, bufs, descs)
        self.available: deque[int] = deque()             # heads not yet popped, avail order
        self.popped: list = []                           # elements the device holds
        self.filled: list[tuple[int, int]] = []          # (head, len) filled, not flushed
        self.published: deque[tuple[int, int]] = deque()  # (head, len) flushed, not read
        self.used_tokens: list[int] = []
        self.made_available: list[int] = []
        self.last_checked = start                         # used idx at the last notify check
        self.checked_once = False

    # -- the driver ---------------------------------------------------------------------
    def _buf(self, n: int) -> int:
        a = self.next_buf
        self.next_buf += (n + 15) & ~15
        return a

    def _write_desc(self, table: int, i: int, addr: int, n: int, flags: int, nxt: int) -> None:
        self.ram.write(table + 16 * i, struct.pack("<QIHH", addr, n, flags, nxt))

    def _need_kick(self, old: int, new: int) -> bool:
        """The driver's rule after adding buffers (§2.7.10 / §2.7.7.2)."""
        if self.event_idx:
            return need_event(self.ram.lduw(USED + 4 + 8 * self.num), new, old)
        return not self.ram.lduw(USED) & USED_F_NO_NOTIFY

    @rule(shape=chain_shape, indirect=st.booleans())
    def add_chain(self, shape: list[tuple[int, bool]], indirect: bool) -> None:
        readable = sorted(shape, key=lambda t: t[1])         # readable first (§2.7.4.2)
        bufs = [(self._buf(n), n, w) for n, w in readable]
        if indirect:
            assume(self.free)
            table = self.next_table
            self.next_table += 16 * len(bufs)
            for k, (a, n, w) in enumerate(bufs):
                last = k == len(bufs) - 1
                self._write_desc(table, k, a, n, (F_WRITE if w else 0) | (0 if last else F_NEXT),
                                 0 if last else k + 1)
            head = self.free.pop(0)
            self._write_desc(DESC, head, table, 16 * len(bufs), F_INDIRECT, 0)
            descs = [head]
        else:
            assume(len(self.free) >= len(bufs))
            descs = [self.free.pop(0) for _ in bufs]
            for k, (a, n, w) in enumerate(bufs):
                last = k == len(bufs) - 1
                self._write_desc(DESC, descs[k], a, n,
                                 (F_WRITE if w else 0) | (0 if last else F_NEXT),
                                 0 if last else descs[k + 1])
            head = descs[0]
        self.token += 1
        self.chains[head] = (self.token, bufs, descs)
        old = self.avail_idx
        device_idle = self.vq.notification and self.vq.last_avail_idx == old
        self.ram.stw(AVAIL + 4 + 2 * (old % self.num), head)
        self.avail_idx = (old + 1) & 0xFFFF
        self.ram.stw(AVAIL + 2, self.avail_idx)
        self.available.append(head)
        self.made_available.append(self.token)
        if device_idle:
            # no lost kick: the device waits for one and says so
            assert self._need_kick(old, self.avail_idx)

    @rule(enable=st.booleans())
    def device_sets_notification(self, enable: bool) -> None:
        virtio_queue_set_notification(self.vq, int(enable))
        if not self.event_idx:
            assert bool(self.ram.lduw(USED) & USED_F_NO_NOTIFY) is (not enable)

    @rule(flags=st.sampled_from([0, AVAIL_F_NO_INTERRUPT]))
    def driver_sets_flags(self, flags: int) -> None:
        self.ram.stw(AVAIL, flags)

    @rule(delta=st.integers(-3, 20))
    def driver_sets_used_event(self, delta: int) -> None:
        self.ram.stw(AVAIL + 4 + 2 * self.num, (self.last_used + delta) & 0xFFFF)

    @rule()
    def driver_reads_used(self) -> None:
        used_idx = self.ram.lduw(USED + 2)
        assert used_idx == (self.last_used + len(self.published)) & 0xFFFF
        while self.last_used != used_idx:
            pos = USED + 4 + 8 * (self.last_used % self.num)
            head, length = struct.unpack("<II", self.ram.read(pos, 8))
            assert (head, length) == self.published.popleft()
            token, _bufs, descs = self.chains.pop(head)
            self.used_tokens.append(token)
            self.free.extend(descs)
            self.last_used = (self.last_used + 1) & 0xFFFF

    # -- the device -------------------------------------------------------------------
    @rule()
    def device_pops(self) -> None:
        elem = virtqueue_pop(self.vq)
        if not self.available:
            assert elem is None and virtio_queue_empty(self.vq)
            return
        head = self.available.popleft()
        assert elem is not None and elem.index == head
        _token, bufs, _descs = self.chains[head]
        assert elem.out_sg == [(a, n) for a, n, w in bufs if not w]
        assert elem.in_sg == [(a, n) for a, n, w in bufs if w]
        assert self.vq.last_avail_idx == (self.avail_idx - len(self.available)) & 0xFFFF
        if self.event_idx and self.vq.notification:   # QEMU's avail_event, kept by the spec
            assert self.ram.lduw(USED + 4 + 8 * self.num) == self.vq.last_avail_idx
        self.popped.append(elem)

    @precondition(lambda self: self.popped)
    @rule(data=st.data())
    def device_fills(self, data: st.DataObject) -> None:
        """Any popped chain may complete (no IN_ORDER), with up to its writable size."""
        elem = self.popped.pop(data.draw(st.integers(0, len(self.popped) - 1)))
        room = sum(n for _a, n in elem.in_sg)
        length = data.draw(st.integers(0, room))
        virtqueue_fill(self.vq, elem, length, len(self.filled))
        self.filled.append((elem.index, length))
        assert self.ram.lduw(USED + 2) == (self.last_used + len(self.published)) & 0xFFFF

    @precondition(lambda self: self.filled)
    @rule()
    def device_flushes_and_notifies(self) -> None:
        old = self.vq.used_idx
        virtqueue_flush(self.vq, len(self.filled))
        new = (old + len(self.filled)) & 0xFFFF
        assert self.vq.used_idx == new == self.ram.lduw(USED + 2)
        self.published.extend(self.filled)
        self.filled.clear()
        before = len(self.interrupts)
        virtio_notify(self.vdev, self.vq)
        got = len(self.interrupts) - before
        if self.event_idx:
            want = need_event(self.ram.lduw(AVAIL + 4 + 2 * self.num), new, self.last_checked)
            self.last_checked = new
            if not self.checked_once:                    # QEMU's first check: spurious ok
                self.checked_once = True
                assert got == 1 or (got == 0 and not want)
                return
        else:
            want = not self.ram.lduw(AVAIL) & AVAIL_F_NO_INTERRUPT
        assert got == int(want), f"interrupt {got}, the spec says {want}"
        assert self.interrupts[before:] == [VECTOR] * got

    @invariant()
    def indices_agree(self) -> None:
        if not hasattr(self, "vq"):
            return
        assert self.vq.inuse == len(self.popped) + len(self.filled)
        assert not self.vdev.broken, self.vdev.broken_reason

    def teardown(self) -> None:
        """Drain: every chain made available is used exactly once."""
        if not hasattr(self, "vq"):
            return
        while self.available:
            self.device_pops()
        while self.popped:
            elem = self.popped.pop(0)
            virtqueue_fill(self.vq, elem, 0, len(self.filled))
            self.filled.append((elem.index, 0))
        if self.filled:
            self.device_flushes_and_notifies()
        self.driver_reads_used()
        assert sorted(self.used_tokens) == sorted(self.made_available)
        assert len(set(self.used_tokens)) == len(self.used_tokens)


SplitVirtqueue.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestSplitVirtqueue = SplitVirtqueue.TestCase
