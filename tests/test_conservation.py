"""Conservation of frames (issue 11, item 3): nothing lost, nothing delivered twice.

Topology (guest=None; the guests are the spec driver and a minimal e1000 driver)::

    host0 = TAP hn0 <-> virtio-net n0
    host1 = TAP hn1 <-> hub 0 <-> hubport hp1 <-> e1000 e0
                              \\-> hubport hp2 <-> virtio-net n1

Random traffic in every direction (every frame carries a sequence number and its source),
random guest stalls (no refill) and refills, link down/up on every client, queue purges
and partial runs.  After every action:

* for every net client: sent = delivered + still queued at its peer + dropped, each drop
  counted under a reason (``stats["drop: <reason>"]``);
* for every frame and every destination it should reach (a hub copies to all other ports):
  it was delivered there exactly once, or it is still on its way (the host's TAP queue, a
  NetQueue, a TX ring), or a drop with a reason was counted for it on the way — exactly
  one of the three.  Drops are matched to frames by size: frame ``seq`` is
  ``64 + 16 * seq`` bytes (plus 12 with a virtio-net header in front);
* no device is broken (the drivers are well behaved).

At the end, links up, buffers given back and the machine run to idle: nothing is still on
its way (no frame waits for ever).
"""
from __future__ import annotations

import struct
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import qnetlearn as qn
from qnetlearn.net.net import NetClientState, qemu_purge_queued_packets, qemu_set_link
from spec_driver import MAC, VERSION_1
from test_fuzz_guest_inputs import E_RDT, Driver, E1000Driver

LINE = ("-netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0 "
        "-netdev tap,id=hn1 -netdev hubport,id=hp0,hubid=0,netdev=hn1 "
        "-netdev hubport,id=hp1,hubid=0 -netdev hubport,id=hp2,hubid=0 "
        "-device e1000,id=e0,netdev=hp1 -device virtio-net-pci,id=n1,netdev=hp2")
SOURCES = ["host0", "n0", "host1", "e0", "n1"]
SRC_DESTS = {"host0": {"n0"}, "n0": {"host0"}, "host1": {"e0", "n1"},
             "e0": {"host1", "n1"}, "n1": {"host1", "e0"}}
#: which destinations a frame sent by this client (toward its peer) is on its way to
SENDER_DESTS = {"hn0": {"n0"}, "n0": {"host0"}, "hn1": {"e0", "n1"}, "hp0": {"host1"},
                "hp1": {"e0"}, "hp2": {"n1"}, "e0": {"host1", "n1"}, "n1": {"host1", "e0"}}
MACS = {"host0": "02000a000202", "host1": "02000a000203", "n0": "525400123456",
        "e0": "525400123457", "n1": "525400123458"}
MAX_SEQ = 88                     # 64 + 16 * 88 = 1472 bytes: every frame fits every buffer
BCAST = b"\xff" * 6


def tagged(src: str, seq: int) -> bytes:
    dst = bytes.fromhex(MACS["n0"]) if src == "host0" else \
        bytes.fromhex(MACS["host0"]) if src == "n0" else BCAST
    head = dst + bytes.fromhex(MACS[src]) + b"\x88\xb5" + b"QNLC" + \
        struct.pack("<HB", seq, SOURCES.index(src))
    size = 64 + 16 * seq
    return head + bytes((seq + i) & 0xFF for i in range(size - len(head)))


def tag_of(data: bytes) -> tuple[str, int] | None:
    k = data.find(b"QNLC")
    if k < 0 or k + 7 > len(data):
        return None
    seq, src = struct.unpack_from("<HB", data, k + 4)
    return SOURCES[src], seq


def seq_of_size(size: int) -> int | None:
    for hdr in (0, 12, 10):
        if (size - hdr - 64) % 16 == 0 and size - hdr >= 64:
            return (size - hdr - 64) // 16
    return None


class Conservation(RuleBasedStateMachine):

    @initialize()
    def setup(self) -> None:
        vm = self.vm = qn.Machine.from_cmdline(LINE, guest=None)
        vm.boot()
        self.drops: list[tuple[str, int, str]] = []
        orig = NetClientState.count_drop
        drops = self.drops

        def count_drop(nc: NetClientState, size: int, reason: str) -> None:
            drops.append((nc.name, size, reason))
            orig(nc, size, reason)

        self._orig_count_drop = orig
        NetClientState.count_drop = count_drop  # type: ignore[method-assign]
        self.v = {}
        for name, base in (("n0", 0x200000), ("n1", 0x600000)):
            d = Driver(vm, vm.device(name).devfn, base, features={VERSION_1, MAC}, queue_size=4)
            d.rxbufs = {}
            d.tx_pending = {}                    # head -> seq of TX chains not yet used
            self.v[name] = d
        self.e = E1000Driver(vm, vm.device("e0"))
        self.e_clean = 0
        self.sent: dict[tuple[str, int], set[str]] = {}    # (src, seq) -> destinations
        self.delivered: Counter[tuple[str, int, str]] = Counter()
        self.seq = 0
        for name in ("n0", "n1"):
            self.refill(name)
        vm.run()

    # -- actions -------------------------------------------------------------------------
    @precondition(lambda self: self.seq < MAX_SEQ)
    @rule(host=st.sampled_from(["host0", "host1"]), n=st.integers(1, 3))
    def host_sends(self, host: str, n: int) -> None:
        for _ in range(n):
            if self.seq >= MAX_SEQ:
                return
            self.seq += 1
            self.vm.host("hn0" if host == "host0" else "hn1").send(tagged(host, self.seq))
            self.sent[(host, self.seq)] = set(SRC_DESTS[host])

    @precondition(lambda self: self.seq < MAX_SEQ)
    @rule(nic=st.sampled_from(["n0", "n1", "e0"]))
    def guest_sends(self, nic: str) -> None:
        self.seq += 1
        f = tagged(nic, self.seq)
        if nic == "e0":
            e = self.e
            tdh = e.r(0x3810)
            if (e.tdt + 1) % e.NTX == tdh:
                return                              # the TX ring is full
            e.send(f)
        else:
            d = self.v[nic]
            q = d.queues[1]
            if not q.free:
                return
            buf = d.alloc(12 + len(f))
            self.vm.memory.write_bytes(buf, bytes(12) + f)
            d.tx_pending[d.add_chain(q, [(buf, 12 + len(f), False)])] = self.seq
            d.kick(q)
        self.sent[(nic, self.seq)] = set(SRC_DESTS[nic])

    @rule(nic=st.sampled_from(["n0", "n1", "e0"]))
    def refill(self, nic: str) -> None:
        """The guest gives its RX buffers back (not doing so is a stall)."""
        if nic == "e0":
            e = self.e
            e.w(E_RDT, (self.e_clean - 1) % e.NRX)
            return
        d = self.v[nic]
        q = d.queues[0]
        while q.free:
            b = d.alloc(2048)
            d.rxbufs[d.add_chain(q, [(b, 2048, True)])] = b
        d.kick(q)

    @rule(name=st.sampled_from(["hn0", "hn1", "hp0", "hp1", "hp2", "n0", "n1", "e0"]),
          up=st.booleans())
    def set_link(self, name: str, up: bool) -> None:
        qemu_set_link(self.client(name), up)

    @rule(name=st.sampled_from(["hn0", "hn1", "hp0", "hp1", "hp2", "n0", "n1", "e0"]))
    def purge(self, name: str) -> None:
        qemu_purge_queued_packets(self.client(name))

    @rule(events=st.sampled_from([1, 3, 10, None]))
    def run(self, events: int | None) -> None:
        if events is None:
            self.vm.run()
        else:
            for _ in range(events):
                self.vm.step()

    def client(self, name: str) -> NetClientState:
        return self.vm.netdevs[name] if name in self.vm.netdevs else self.vm.device(name).nc

    # -- what the guests and hosts received ----------------------------------------------
    def collect(self) -> None:
        vm = self.vm
        for host, tap in (("host0", "hn0"), ("host1", "hn1")):
            h = vm.host(tap)
            while (f := h.recv()) is not None:
                tag = tag_of(f)
                if tag:
                    self.delivered[(*tag, host)] += 1
        for name, d in self.v.items():
            rx, tx = d.queues
            for head, length in d.get_used(rx):
                data = vm.memory.read_bytes(d.rxbufs.pop(head), length)
                rx.free.append(head)
                tag = tag_of(data[12:])
                if tag:
                    self.delivered[(*tag, name)] += 1
            for head, _n in d.get_used(tx):
                tx.free.append(head)
                d.tx_pending.pop(head, None)
        e = self.e
        while True:
            desc = e.rx_ring + 16 * self.e_clean
            addr, length, _c, status, _e, _s = struct.unpack("<QHHBBH",
                                                             vm.memory.read_bytes(desc, 16))
            if not status & 1:
                break
            tag = tag_of(vm.memory.read_bytes(addr, length))
            if tag:
                self.delivered[(*tag, "e0")] += 1
            vm.memory.write_bytes(desc, struct.pack("<QHHBBH", addr, 0, 0, 0, 0, 0))
            self.e_clean = (self.e_clean + 1) % e.NRX

    def on_the_way(self) -> dict[tuple[str, int], set[str]]:
        """Where each frame still is: the TAP queues, the NetQueues, the TX rings."""
        way: dict[tuple[str, int], set[str]] = {}

        def add(data: bytes, dests: set[str]) -> None:
            tag = tag_of(data)
            if tag:
                way.setdefault(tag, set()).update(dests & SRC_DESTS[tag[0]])

        vm = self.vm
        for tap in ("hn0", "hn1"):
            for data in vm.taps[tap].fd.to_qemu:
                add(data, SENDER_DESTS[tap])
        for nc in vm.all_clients():
            for p in nc.incoming_queue.packets:
                add(p.data, SENDER_DESTS[p.sender.name])
        for name, d in self.v.items():
            for seq in d.tx_pending.values():
                way.setdefault((name, seq), set()).update(SRC_DESTS[name])
        return way

    # -- the properties ------------------------------------------------------------------
    @invariant()
    def conserved(self) -> None:
        if not hasattr(self, "vm"):
            return
        vm = self.vm
        for nc in vm.all_clients():
            q = nc.peer.incoming_queue if nc.peer is not None else None
            queued = sum(1 for p in q.packets if p.sender is nc) if q is not None else 0
            drops = sum(v for k, v in nc.stats.items() if k.startswith("drop: "))
            assert nc.stats["tx"] == nc.stats["tx delivered"] + queued + drops, \
                f"{nc.name}: {dict(nc.stats)}, {queued} queued"
        for name in ("n0", "n1", "e0"):
            dev = vm.device(name)
            assert not dev.broken, dev.broken_reason
        self.collect()
        way = self.on_the_way()
        dropped: Counter[tuple[str, int, str]] = Counter()
        for sender, size, reason in self.drops:
            seq = seq_of_size(size)
            assert seq is not None, f"a drop of {size} bytes by {sender} matches no frame"
            src = next((s for s in SOURCES if (s, seq) in self.sent), None)
            assert src is not None, (sender, size, reason)
            for dest in SENDER_DESTS[sender] & SRC_DESTS[src]:
                dropped[(src, seq, dest)] += 1
        for (src, seq), dests in self.sent.items():
            for dest in dests:
                got = self.delivered[(src, seq, dest)]
                lost = dropped[(src, seq, dest)]
                waiting = int(dest in way.get((src, seq), ()))
                assert got + lost + waiting == 1, \
                    f"frame {seq} from {src} to {dest}: delivered {got}, dropped {lost}, " \
                    f"on the way {waiting}"

    def teardown(self) -> None:
        if not hasattr(self, "vm"):
            return
        try:
            for name in ("hn0", "hn1", "hp0", "hp1", "hp2", "n0", "n1", "e0"):
                qemu_set_link(self.client(name), True)
            for _ in range(MAX_SEQ):          # the guests take what comes, a ring at a time
                for nic in ("n0", "n1", "e0"):
                    self.collect()
                    self.refill(nic)
                self.vm.run()
                if not self.on_the_way():
                    break
            self.conserved()
            way = self.on_the_way()
            assert not way, f"frames still waiting with links up and buffers given: {way}"
        finally:
            NetClientState.count_drop = self._orig_count_drop  # type: ignore[method-assign]


Conservation.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestConservation = Conservation.TestCase
