"""Model-based test of virtio-net over virtio-pci, driven as a spec-written driver would
(issue 11, item 1; the ring-level model is ``test_model_virtqueue.py``).

Random driver actions (RX chains of 1-4 descriptors, some with a readable prefix, some
indirect; TX chains splitting header and frame over 1-4 descriptors; kicks by the driver's
own rule, plus spurious ones; NO_INTERRUPT or ``used_event``; masking MSI-X vectors; reading
the used rings) and frames from the host, checked against a model written from the spec:

* RX uses the guest's buffers in the order they were made available (virtio-net §5.1.6.4),
  each used entry's length is what the device wrote (header + frame, split over merged
  buffers with MRG_RXBUF), ``num_buffers`` is right, and the bytes are the frame's;
  a frame larger than a non-mergeable buffer is dropped and counted, the buffer reused;
* nothing is lost, duplicated or reordered: frames wait in the NetQueue while there are no
  buffers and arrive as soon as there are, provided the driver kicks when its rule says
  (no lost wakeup); every TX chain is sent once, in order, and used with length 0;
* MSI messages at the APIC (``vm.apic.delivered``) come exactly when ``vring_need_event``
  or the NO_INTERRUPT flag say, per queue; a masked vector's message waits in the PBA and
  is sent once on unmask (PCI 3.0 §6.8.2); the first check after a reset may notify
  spuriously (QEMU does).

The queues start at a random index, often just below 65535, so the 16-bit indices wrap
within a run.
"""
from __future__ import annotations

import struct
from collections import deque

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import qnetlearn as qn
from spec_driver import (EVENT_IDX, F_INDIRECT, F_NEXT, F_WRITE, MAC, MRG_RXBUF, VERSION_1,
                         SpecDriver)

INDIRECT_DESC = 28
AVAIL_F_NO_INTERRUPT = 1
HDR = 12                        # virtio_net_hdr_v1
POOL = 0x400000
LINE = "-m 16M -netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0"
DST = bytes.fromhex("525400123456")


def need_event(event: int, new: int, old: int) -> bool:
    """virtio 1.x §2.7.10, written out here again."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def frame(seq: int, size: int) -> bytes:
    head = DST + b"\x02\0\x0a\0\x02\x02\x88\xb5" + seq.to_bytes(4, "little")
    return head + bytes((seq * 7 + i) & 0xFF for i in range(size - len(head)))


class QueueModel:
    """What the model knows of one queue's notification state."""

    def __init__(self, start: int) -> None:
        self.last_checked = start
        self.checked = False
        self.flags = 0
        self.used_event = start


class VirtioNetModel(RuleBasedStateMachine):

    @initialize(event_idx=st.booleans(), mrg=st.booleans(), indirect=st.booleans(),
                size=st.sampled_from([4, 8, 16]),
                start=st.one_of(st.integers(0xFFFF - 24, 0xFFFF), st.just(0)))
    def setup(self, event_idx: bool, mrg: bool, indirect: bool, size: int, start: int) -> None:
        vm = self.vm = qn.Machine.from_cmdline(LINE, guest=None)
        vm.boot()
        feats = {VERSION_1, MAC} | ({EVENT_IDX} if event_idx else set()) | \
            ({MRG_RXBUF} if mrg else set()) | ({INDIRECT_DESC} if indirect else set())
        self.dev = vm.device("n0")
        d = self.d = SpecDriver(vm, self.dev.devfn, features=feats, queue_size=size)
        self.event_idx, self.mrg, self.indirect, self.size = event_idx, mrg, indirect, size
        self.ram = vm.ram
        # the queues have seen `start` buffers go round (device and driver agree)
        for q, vq in zip(d.queues, self.dev.vdev.vq):
            vq.last_avail_idx = vq.shadow_avail_idx = vq.used_idx = vq.signalled_used = start
            q.avail_idx = q.last_used = start
            self.ram.stw(q.avail + 2, start)
            self.ram.stw(q.used + 2, start)
            self.ram.stw(q.avail + 4 + 2 * size, start)     # used_event
            self.ram.stw(q.used + 4 + 8 * size, start)      # avail_event
            q.free = list(range(size))
        self.qm = [QueueModel(start), QueueModel(start)]
        self.next_buf = POOL
        self.seq = 0
        self.chains: list[dict[int, tuple]] = [{}, {}]      # head -> (bufs, descs, extra)
        self.rx_avail: deque[int] = deque()                 # heads the device has not used
        self.rx_expect: deque[tuple[int, int, bytes]] = deque()  # (head, len, bytes written)
        self.host_frames: deque[bytes] = deque()            # sent by the host, not delivered
        self.tx_pending: deque[tuple[int, bytes]] = deque()  # (head, frame) not yet sent
        self.tx_expect: deque[int] = deque()
        self.host_expect: deque[bytes] = deque()
        self.dropped = 0
        self.masked = [False, False, False]
        self.pending: list[bool | None] = [False, False, False]   # None: maybe
        self.msi_want = [0, 0, 0]          # messages the model expects, per vector
        self.msi_slack = [0, 0, 0]         # spurious first-check messages allowed
        vm.run()

    # -- helpers -------------------------------------------------------------------------
    def _buf(self, n: int) -> int:
        a = self.next_buf
        self.next_buf += (n + 63) & ~63
        if self.next_buf > 0xF00000:
            self.next_buf = a = POOL
        return a

    def _need_kick(self, qi: int, old: int) -> bool:
        q = self.d.queues[qi]
        if self.event_idx:
            return need_event(self.ram.lduw(q.used + 4 + 8 * self.size), q.avail_idx, old)
        return not self.ram.lduw(q.used) & 1

    def _add(self, qi: int, bufs: list[tuple[int, int, bool]], indirect: bool) -> int | None:
        d = self.d
        q = d.queues[qi]
        if indirect:
            if not q.free:
                return None
            table = self._buf(16 * len(bufs))
            for k, (a, n, w) in enumerate(bufs):
                last = k == len(bufs) - 1
                d.write_desc(q, k, a, n, (F_WRITE if w else 0) | (0 if last else F_NEXT),
                             0 if last else k + 1, table=table)
            head = q.free.pop(0)
            d.write_desc(q, head, table, 16 * len(bufs), F_INDIRECT)
            descs = [head]
        else:
            if len(q.free) < len(bufs):
                return None
            descs = [q.free.pop(0) for _ in bufs]
            for k, (a, n, w) in enumerate(bufs):
                last = k == len(bufs) - 1
                d.write_desc(q, descs[k], a, n, (F_WRITE if w else 0) | (0 if last else F_NEXT),
                             0 if last else descs[k + 1])
            head = descs[0]
        self.chains[qi][head] = (bufs, descs)
        d.publish(q, head)
        return head

    def _kick(self, qi: int, old: int, spurious: bool) -> None:
        if self._need_kick(qi, old) or spurious:
            self.d.kick(self.d.queues[qi])

    # -- the driver ----------------------------------------------------------------------
    @rule(sizes=st.lists(st.sampled_from([1, 6, 12, 40, 100, 600, 1514, 2048]), min_size=1,
                         max_size=4),
          readable=st.integers(0, 2), indirect=st.booleans(), spurious=st.booleans())
    def add_rx_chain(self, sizes: list[int], readable: int, indirect: bool,
                     spurious: bool) -> None:
        readable = min(readable, len(sizes) - 1)
        wsizes = sizes[readable:]
        if sum(wsizes) < HDR:                 # a driver's buffer holds at least the header
            wsizes[-1] += HDR
        bufs = [(self._buf(n), n, False) for n in sizes[:readable]] + \
            [(self._buf(n), n, True) for n in wsizes]
        old = self.d.queues[0].avail_idx
        head = self._add(0, bufs, indirect and self.indirect)
        if head is None:
            return
        self.rx_avail.append(head)
        self._kick(0, old, spurious)

    @rule(size=st.sampled_from([14, 60, 98, 1000, 1514]), pieces=st.integers(1, 4),
          indirect=st.booleans(), spurious=st.booleans())
    def add_tx_chain(self, size: int, pieces: int, indirect: bool, spurious: bool) -> None:
        self.seq += 1
        f = frame(self.seq, size)
        data = bytes(HDR) + f
        cuts = sorted({len(data) * k // pieces for k in range(1, pieces)} - {0})
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        bufs = []
        for part in parts:
            a = self._buf(len(part))
            self.vm.memory.write_bytes(a, part)
            bufs.append((a, len(part), False))
        old = self.d.queues[1].avail_idx
        head = self._add(1, bufs, indirect and self.indirect)
        if head is None:
            return
        self.tx_pending.append((head, f))
        self._kick(1, old, spurious)

    @rule(qi=st.integers(0, 1), value=st.sampled_from([0, AVAIL_F_NO_INTERRUPT]),
          delta=st.integers(-2, 10))
    def suppress(self, qi: int, value: int, delta: int) -> None:
        """NO_INTERRUPT without EVENT_IDX; used_event with it (§2.7.10)."""
        q = self.d.queues[qi]
        if self.event_idx:
            ev = (q.last_used + delta) & 0xFFFF
            self.d.set_used_event(q, ev)
            self.qm[qi].used_event = ev
        else:
            self.d.set_avail_flags(q, value)
            self.qm[qi].flags = value

    @rule(vector=st.integers(1, 2), masked=st.booleans())
    def mask(self, vector: int, masked: bool) -> None:
        self.d.mask(vector, masked)
        if self.masked[vector] and not masked:
            if self.pending[vector] is True:
                self.msi_want[vector] += 1
            elif self.pending[vector] is None:          # a spurious one may be pending
                self.msi_slack[vector] += 1
            self.pending[vector] = False
        self.masked[vector] = masked
        self.check_msi()

    @rule()
    def collect(self) -> None:
        d = self.d
        for qi in (0, 1):
            q = d.queues[qi]
            for head, length in d.get_used(q):
                bufs, descs = self.chains[qi].pop(head)
                q.free.extend(descs)
                if qi == 0:
                    want = self.rx_expect.popleft()
                    assert (head, length) == want[:2], f"RX used {(head, length)}, model {want[:2]}"
                    got = b"".join(self.ram.read(a, n) for a, n, w in bufs if w)[:length]
                    assert got == want[2]
                else:
                    assert head == self.tx_expect.popleft() and length == 0
        assert not self.rx_expect and not self.tx_expect

    # -- the host ------------------------------------------------------------------------
    @rule(size=st.sampled_from([14, 60, 98, 600, 1514]).flatmap(
        lambda s: st.sampled_from([s, s + 1])))
    def host_sends(self, size: int) -> None:
        self.seq += 1
        f = frame(self.seq, size)
        self.vm.host().send(f)
        self.host_frames.append(f)

    # -- running, and the model's account of what the device must have done --------------
    def _notify(self, qi: int, new: int) -> None:
        """One virtio_notify after a flush that moved used idx to ``new``."""
        m = self.qm[qi]
        vector = qi + 1
        if self.event_idx:
            want = need_event(m.used_event, new, m.last_checked)
            m.last_checked = new
            if not m.checked:
                m.checked = True
                if not want:
                    self.msi_slack[vector] += 1       # QEMU notifies on the first check
                    want = None
        else:
            want = not m.flags & AVAIL_F_NO_INTERRUPT
        if want is None:
            if self.masked[vector]:
                self.msi_slack[vector] -= 1             # it pends instead (maybe)
                if self.pending[vector] is False:
                    self.pending[vector] = None
            return
        if want:
            if self.masked[vector]:
                self.pending[vector] = True
            else:
                self.msi_want[vector] += 1

    def _rx_model(self) -> None:
        d = self.d
        while self.host_frames:
            f = self.host_frames[0]
            need = HDR + len(f)
            caps = [sum(n for _a, n, w in self.chains[0][h][0] if w) for h in self.rx_avail]
            if not caps or (self.mrg and sum(caps) < need):
                return                                  # waits in the NetQueue
            self.host_frames.popleft()
            if not self.mrg and caps[0] < need:
                self.dropped += 1                       # too large for the buffer
                continue
            data = b"\0" * 10 + b"\0\0" + f
            used = []
            off = 0
            for cap in caps:
                head = self.rx_avail.popleft()
                n = min(cap, len(data) - off)
                used.append([head, n, data[off:off + n]])
                off += n
                if off == len(data):
                    break
            nbuf = len(used) if self.mrg else 1
            first = used[0]
            first[2] = first[2][:10] + struct.pack("<H", nbuf) + first[2][12:]
            self.rx_expect.extend(tuple(u) for u in used)
            rx = d.queues[0]
            new = (rx.last_used + len(self.rx_expect) + 0) & 0xFFFF
            self._notify(0, new)

    def _tx_model(self) -> None:
        tx = self.d.queues[1]
        while self.tx_pending:
            head, f = self.tx_pending.popleft()
            self.tx_expect.append(head)
            self.host_expect.append(f)
            self._notify(1, (tx.last_used + len(self.tx_expect)) & 0xFFFF)

    @rule()
    def run(self) -> None:
        # the model's order: the TX bottom half runs after the TAP's frames (both before
        # the next driver action); interrupts are counted per vector, so order is moot
        self.vm.run()
        self._rx_model()
        self._tx_model()
        host = self.vm.host()
        got = []
        while (g := host.recv()) is not None:
            got.append(g)
        assert got == list(self.host_expect), "TX frames lost, duplicated or reordered"
        self.host_expect.clear()
        st_ = self.dev.stats
        assert st_["drop: frame larger than the guest buffer"] == self.dropped
        self.check_msi()
        # no lost wakeup: a frame that fits the buffers on offer does not wait
        nq = len(self.dev.nc.incoming_queue) + len(self.vm.taps["hn0"].fd.to_qemu)
        assert nq == len(self.host_frames), \
            f"{nq} frames wait in QEMU, the model says {len(self.host_frames)}"

    def check_msi(self) -> None:
        got = [sum(1 for m in self.vm.apic.delivered if m.data == 0x26 + v) for v in range(3)]
        assert got[0] == 0, "no configuration change happened"
        for v in (1, 2):
            lo, hi = self.msi_want[v], self.msi_want[v] + self.msi_slack[v]
            assert lo <= got[v] <= hi, f"vector {v}: {got[v]} messages, the model {lo}..{hi}"
            if got[v] > lo:                 # the spurious first one was sent: count it in
                self.msi_want[v] = got[v]
                self.msi_slack[v] = max(0, hi - got[v])

    @invariant()
    def not_broken(self) -> None:
        if hasattr(self, "dev"):
            assert not self.dev.broken, self.dev.broken_reason


VirtioNetModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestVirtioNetModel = VirtioNetModel.TestCase
