"""Scenarios: short, deterministic runs of the emulator that the exercises' tests compare.

A scenario builds a fresh machine (or a few bare net clients), drives it, and returns its
*observables*: a dict of plain values (frames by length and CRC, ring indices, interrupts,
counters) named in words.  A test runs the same scenario twice, once with the emulator's
own function and once with the student's plugged in its slot, and compares the two dicts;
the emulator is deterministic (virtual clock), so any difference is the student's code.

``ctx.recording(vm)`` marks the part worth recording: ``qn.exercises.check`` records it in
both runs to show where they first differ.
"""
from __future__ import annotations

import contextlib
import zlib
from typing import Any, Callable, Iterator

from ..net.stack import build_echo_request
from .driver import (DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, F_EVENT_IDX, F_INDIRECT_DESC,
                     F_MAC, F_MRG_RXBUF, F_VERSION_1, S_NEEDS_RESET, Driver, E1000Driver)

VIRTIO_LINE = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
HOST_MAC, HOST_IP = "02:00:0a:00:02:02", "10.0.2.2"
GUEST_MAC, GUEST_IP = "52:54:00:12:34:56", "10.0.2.15"
NEEDS_RESET = S_NEEDS_RESET


class Ctx:
    """What a scenario gets: where to record, and the recording made."""

    def __init__(self, record: bool = False) -> None:
        self.record = record
        self.rec: Any = None
        self.vm: Any = None

    def recording(self, vm: Any) -> Any:
        """``with ctx.recording(vm):`` around the part a comparison should show."""
        self.vm = vm
        if not self.record:
            return contextlib.nullcontext()
        self.rec = vm.record()
        return self.rec


#: name -> (function, one-line description template)
SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {}


def scenario(func: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    SCENARIOS[func.__name__] = func
    return func


def describe(name: str, params: dict[str, Any]) -> str:
    """The scenario in words: its docstring's first line and its parameters."""
    func = SCENARIOS.get(name)
    doc = ((func.__doc__ if func else None) or name).strip().splitlines()[0].rstrip(".")
    if params:
        doc += " (" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")"
    return doc


# -- small helpers ---------------------------------------------------------------------

def fp(data: bytes | None) -> str | None:
    """A frame in a few characters: its length and CRC-32."""
    if data is None:
        return None
    return f"{len(data)}B crc {zlib.crc32(bytes(data)):08x}"


def echo(seq: int, size: int = 98) -> bytes:
    """An ICMP echo request from the host to the guest, ``size`` bytes long."""
    payload = bytes((seq + i) & 0xFF for i in range(max(0, size - 42)))
    return build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0x51, seq, payload)


def msi(vm: Any) -> list[int]:
    """The data of every MSI message that reached the APIC window, oldest first."""
    return [m.data for m in vm.apic.delivered]


def host_frames(vm: Any, netdev: str | None = None) -> list[str | None]:
    host = vm.host(netdev)
    out = []
    while (f := host.recv()) is not None:
        out.append(fp(f))
    return out


def _kicks(st: Any) -> int:
    """Queue notifications the devices handled (``<device>: kicks`` in ``vm.stats``)."""
    return sum(v for k, v in st.items() if k.endswith(": kicks"))


def _virtio_machine(features: tuple[int, ...] = (F_VERSION_1, F_MAC, F_EVENT_IDX),
                    queue_size: int | None = None, line: str = VIRTIO_LINE
                    ) -> tuple[Any, Driver]:
    from ..machine import Machine
    vm = Machine.from_cmdline(line, guest=None)
    vm.boot()
    return vm, Driver(vm, features=features, queue_size=queue_size)


def _features(event_idx: bool = True, mergeable: bool = False, indirect: bool = False
              ) -> tuple[int, ...]:
    f = [F_VERSION_1, F_MAC]
    if event_idx:
        f.append(F_EVENT_IDX)
    if mergeable:
        f.append(F_MRG_RXBUF)
    if indirect:
        f.append(F_INDIRECT_DESC)
    return tuple(f)


def _ring_obs(vm: Any, d: Driver) -> dict[str, Any]:
    dev = vm.device("net-pci0")
    vdev = dev.vdev
    return {"device broken": bool(dev.broken),
            "NEEDS_RESET in device status": bool(d.status() & NEEDS_RESET),
            "RX used idx": d.used_idx(d.rx), "TX used idx": d.used_idx(d.tx),
            "RX last_avail_idx": vdev.rx_vq.last_avail_idx,
            "TX last_avail_idx": vdev.tx_vq.last_avail_idx,
            "RX inuse": vdev.rx_vq.inuse, "TX inuse": vdev.tx_vq.inuse,
            "RX avail_event": d.avail_event(d.rx), "TX avail_event": d.avail_event(d.tx),
            "frames waiting in the NIC's NetQueue": len(dev.nc.incoming_queue),
            "MSI messages (data)": msi(vm)}


# -- the whole machine with the simulated guest ------------------------------------------

@scenario
def ping(ctx: Ctx, count: int = 3, line: str = VIRTIO_LINE) -> dict[str, Any]:
    """The host pings the simulated guest"""
    from ..machine import Machine
    vm = Machine.from_cmdline(line)
    vm.boot()
    with ctx.recording(vm):
        rtts = vm.host().ping(count=count)
    st = vm.stats
    return {"round-trip times (µs)": rtts,
            "interrupts the guest took": st["apic: interrupts taken"],
            "kicks": _kicks(st),
            "frames the guest received": sum(v for k, v in st.items() if k.endswith(": rx")
                                             and not k.startswith("hn0")),
            "MSI messages (data)": msi(vm)}


@scenario
def guest_flood(ctx: Ctx, frames: int = 300, rx_queue_size: int = 256, batch: int = 0
                ) -> dict[str, Any]:
    """The host sends the guest echo requests faster than it answers (small RX ring)"""
    from ..machine import Machine
    vm = Machine.from_cmdline(f"-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,"
                              f"netdev=hn0,rx_queue_size={rx_queue_size}")
    vm.boot()
    host = vm.host()
    batch = batch or frames
    with ctx.recording(vm):
        for start in range(0, frames, batch):
            for k in range(start, min(frames, start + batch)):
                host.send(echo(k + 1))
            vm.run()
    replies = host_frames(vm)
    st = vm.stats
    return {"replies the host got": len(replies), "kicks": _kicks(st),
            "interrupts the guest took": st["apic: interrupts taken"],
            "frames waiting in the NIC's NetQueue": len(vm.device("net-pci0").nc.incoming_queue),
            "RX last_avail_idx": vm.device("net-pci0").vdev.rx_vq.last_avail_idx}


# -- virtqueue_pop and friends: rings driven by hand ------------------------------------

@scenario
def rx_chains(ctx: Ctx, chains: list[list[int]] = ((1536,),), frames: list[int] = (98,),
              queue_size: int | None = None, mergeable: bool = False,
              event_idx: bool = True) -> dict[str, Any]:
    """The driver posts RX chains of writable buffers, then frames arrive from the host"""
    vm, d = _virtio_machine(_features(event_idx, mergeable), queue_size)
    bufs: dict[int, list[tuple[int, int]]] = {}
    for lens in chains:
        parts = [(d.alloc(n), n) for n in lens]
        bufs[d.add_chain(d.rx, [(a, n, True) for a, n in parts])] = parts
    d.kick(d.rx)
    vm.run()
    with ctx.recording(vm):
        for k, size in enumerate(frames):
            vm.host().send(echo(k + 1, size))
            vm.run()
    used = d.get_used(d.rx)
    contents = []
    for head, length in used:
        data = b"".join(vm.memory.read_bytes(a, n) for a, n in bufs.get(head, []))
        contents.append(fp(data[:length]))
    return {"RX used entries (head, len)": [list(u) for u in used],
            "what the guest buffers hold": contents, **_ring_obs(vm, d)}


@scenario
def rx_wrap(ctx: Ctx, queue_size: int = 4, frames: int = 10, chain: list[int] = (1536,)
            ) -> dict[str, Any]:
    """A small RX ring goes round several times: the driver re-posts each used chain"""
    vm, d = _virtio_machine(_features(), queue_size)
    bufs: dict[int, list[tuple[int, int]]] = {}
    for _ in range(queue_size // len(chain)):
        parts = [(d.alloc(n), n) for n in chain]
        bufs[d.add_chain(d.rx, [(a, n, True) for a, n in parts])] = parts
    d.kick(d.rx)
    vm.run()
    got = []
    with ctx.recording(vm):
        for k in range(frames):
            vm.host().send(echo(k + 1))
            vm.run()
            for head, length in d.get_used(d.rx):
                data = b"".join(vm.memory.read_bytes(a, n) for a, n in bufs.get(head, []))
                got.append([head, length, fp(data[:length])])
                if head in bufs:
                    d.publish(d.rx, head)          # the same chain, posted again
            d.kick(d.rx)
            vm.run()
    return {"RX used entries (head, len, data)": got, **_ring_obs(vm, d)}


def _tx_frame_chain(vm: Any, d: Driver, frame: bytes, pieces: list[int]) -> list[tuple[int, int, bool]]:
    data = bytes(12) + frame                        # virtio_net_hdr_v1, then the frame
    if sum(pieces) != len(data):
        pieces = list(pieces[:-1]) + [len(data) - sum(pieces[:-1])]
    out, off = [], 0
    for n in pieces:
        a = d.alloc(n)
        vm.memory.write_bytes(a, data[off:off + n])
        out.append((a, n, False))
        off += n
    return out


@scenario
def tx_chains(ctx: Ctx, chains: list[list[int]] = ((12, 98),), queue_size: int | None = None
              ) -> dict[str, Any]:
    """The driver sends frames, each split over a chain of readable descriptors"""
    vm, d = _virtio_machine(_features(), queue_size)
    with ctx.recording(vm):
        for k, pieces in enumerate(chains):
            d.add_chain(d.tx, _tx_frame_chain(vm, d, echo(k + 1), list(pieces)))
            d.kick(d.tx)
            vm.run()
    return {"frames the host received": host_frames(vm),
            "TX used entries (head, len)": [list(u) for u in d.get_used(d.tx)],
            **_ring_obs(vm, d)}


@scenario
def tx_indirect(ctx: Ctx, table: list[int] = (12, 98), direct: list[int] = ()) -> dict[str, Any]:
    """A frame sent through an indirect descriptor table (after ``direct`` descriptors)"""
    vm, d = _virtio_machine(_features(indirect=True))
    frame = echo(1)
    pieces = list(direct) + list(table)
    bufs = _tx_frame_chain(vm, d, frame, pieces)
    direct_bufs, table_bufs = bufs[:len(direct)], bufs[len(direct):]
    tab = d.alloc(16 * len(table_bufs), 16)
    for i, (a, n, _w) in enumerate(table_bufs):
        last = i == len(table_bufs) - 1
        d.write_desc(d.tx, i, a, n, 0 if last else DESC_F_NEXT, 0 if last else i + 1, table=tab)
    ids = [d.tx.free.pop(0) for _ in range(len(direct_bufs) + 1)]
    for k, (a, n, _w) in enumerate(direct_bufs):
        d.write_desc(d.tx, ids[k], a, n, DESC_F_NEXT, ids[k + 1])
    d.write_desc(d.tx, ids[-1], tab, 16 * len(table_bufs), DESC_F_INDIRECT)
    d.publish(d.tx, ids[0])
    with ctx.recording(vm):
        d.kick(d.tx)
        vm.run()
    return {"frames the host received": host_frames(vm),
            "TX used entries (head, len)": [list(u) for u in d.get_used(d.tx)],
            **_ring_obs(vm, d)}


#: malformed chains (what each breaks), for :func:`malformed`
MALFORMED = ("head index out of range", "loop", "next out of range", "buffer outside RAM",
             "zero length", "writable before readable", "avail idx jumps past the ring",
             "indirect table of bad size", "nested indirect", "indirect with NEXT",
             "chain longer than the ring")


@scenario
def malformed(ctx: Ctx, kind: str = "loop", queue: str = "tx") -> dict[str, Any]:
    """The driver publishes one malformed chain, kicks, then publishes a good frame"""
    if kind not in MALFORMED:
        raise ValueError(f"unknown malformed kind {kind!r}; kinds: {', '.join(MALFORMED)}")
    vm, d = _virtio_machine(_features(indirect=True), queue_size=8)
    q = d.tx if queue == "tx" else d.rx
    buf = d.alloc(1536)
    w = DESC_F_WRITE if queue == "rx" else 0
    if kind == "head index out of range":
        d.publish(q, q.num + 3)
    elif kind == "loop":
        d.write_desc(q, 0, buf, 64, w | DESC_F_NEXT, 1)
        d.write_desc(q, 1, buf + 64, 64, w | DESC_F_NEXT, 0)
        d.publish(q, 0)
    elif kind == "next out of range":
        d.write_desc(q, 0, buf, 64, w | DESC_F_NEXT, q.num)
        d.publish(q, 0)
    elif kind == "buffer outside RAM":
        d.write_desc(q, 0, 0x7FFF_FFFF_0000, 1536, w)
        d.publish(q, 0)
    elif kind == "zero length":
        d.write_desc(q, 0, buf, 0, w)
        d.publish(q, 0)
    elif kind == "writable before readable":
        d.write_desc(q, 0, buf, 64, DESC_F_WRITE | DESC_F_NEXT, 1)
        d.write_desc(q, 1, buf + 64, 64, 0)
        d.publish(q, 0)
    elif kind == "avail idx jumps past the ring":
        q.avail_idx = (q.avail_idx + q.num + 3) & 0xFFFF
        d.mem.write(q.avail + 2, 2, q.avail_idx)
    elif kind == "indirect table of bad size":
        d.write_desc(q, 0, buf, 24, DESC_F_INDIRECT)
        d.publish(q, 0)
    elif kind == "nested indirect":
        tab = d.alloc(32, 16)
        d.write_desc(q, 0, buf, 64, w, 0, table=tab)
        d.write_desc(q, 1, tab, 16, DESC_F_INDIRECT, 0, table=tab)
        d.write_desc(q, 0, tab + 16, 16, DESC_F_INDIRECT)
        d.publish(q, 0)
    elif kind == "indirect with NEXT":
        tab = d.alloc(16, 16)
        d.write_desc(q, 0, buf, 64, w, 0, table=tab)
        d.write_desc(q, 0, tab, 16, DESC_F_INDIRECT | DESC_F_NEXT, 1)
        d.write_desc(q, 1, buf, 64, w)
        d.publish(q, 0)
    elif kind == "chain longer than the ring":
        for i in range(q.num):                      # every descriptor chained, the last
            d.write_desc(q, i, buf + 64 * i, 64,    # pointing back at the first
                         w | DESC_F_NEXT, (i + 1) % q.num)
        d.publish(q, 0)
    with ctx.recording(vm):
        if queue == "tx":
            d.kick(q)
            vm.run()
            good = _tx_frame_chain(vm, d, echo(7), [110])
            a, n, _ = good[0]
            d.write_desc(q, 5, a, n, 0)
            d.publish(q, 5)
            d.kick(q)
        else:
            vm.host().send(echo(7))
        vm.run()
    return {"frames the host received": host_frames(vm), **_ring_obs(vm, d)}


# -- notifications ---------------------------------------------------------------------------

@scenario
def rx_event_idx(ctx: Ctx, frames: int = 6, used_event: int = 3, after: int = 1
                 ) -> dict[str, Any]:
    """With EVENT_IDX, the driver asks for an interrupt only once used_event is passed"""
    vm, d = _virtio_machine(_features(event_idx=True))
    for _ in range(frames + 2):
        d.add_chain(d.rx, [(d.alloc(1536), 1536, True)])
    d.kick(d.rx)
    vm.run()
    counts = []
    with ctx.recording(vm):
        for k in range(frames):
            if k == after:
                d.set_used_event(d.rx, used_event)
            vm.host().send(echo(k + 1))
            vm.run()
            counts.append(len(vm.apic.delivered))
    return {"interrupts so far, after each frame": counts,
            "RX used idx": d.used_idx(d.rx), "MSI messages (data)": msi(vm)}


@scenario
def tx_event_idx(ctx: Ctx, frames: int = 5, used_event: int = 2) -> dict[str, Any]:
    """With EVENT_IDX, TX completions interrupt only when used_event is passed"""
    vm, d = _virtio_machine(_features(event_idx=True))
    d.set_used_event(d.tx, used_event)
    counts = []
    with ctx.recording(vm):
        for k in range(frames):
            d.add_chain(d.tx, _tx_frame_chain(vm, d, echo(k + 1), [110]))
            d.kick(d.tx)
            vm.run()
            counts.append(len(vm.apic.delivered))
    return {"interrupts so far, after each frame": counts,
            "frames the host received": len(host_frames(vm)), "MSI messages (data)": msi(vm)}


@scenario
def no_interrupt_flag(ctx: Ctx, pattern: list[int] = (0, 1, 1, 0)) -> dict[str, Any]:
    """Without EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT (set per frame by ``pattern``)"""
    vm, d = _virtio_machine(_features(event_idx=False))
    for _ in range(len(pattern) + 1):
        d.add_chain(d.rx, [(d.alloc(1536), 1536, True)])
    d.kick(d.rx)
    vm.run()
    counts = []
    with ctx.recording(vm):
        for k, flag in enumerate(pattern):
            d.set_avail_flags(d.rx, flag)
            vm.host().send(echo(k + 1))
            vm.run()
            counts.append(len(vm.apic.delivered))
    return {"interrupts so far, after each frame": counts, "RX used idx": d.used_idx(d.rx),
            "MSI messages (data)": msi(vm)}


# -- MSI-X ------------------------------------------------------------------------------------

def _msix_obs(vm: Any, d: Driver) -> dict[str, Any]:
    dev = vm.device("net-pci0")
    return {"MSI messages (data)": msi(vm),
            "PBA pending bits": [v for v in range(dev.msix.nentries) if d.pending(v)],
            "vectors requested at the APIC (IRR)": [v for v in range(256) if vm.apic.irr >> v & 1]}


def _rx_ready(vm: Any, d: Driver, n: int = 8) -> None:
    for _ in range(n):
        d.add_chain(d.rx, [(d.alloc(1536), 1536, True)])
    d.kick(d.rx)
    vm.run()


@scenario
def msix_rx(ctx: Ctx, frames: int = 2) -> dict[str, Any]:
    """Frames arrive with every vector unmasked: each RX interrupt is an MSI write"""
    vm, d = _virtio_machine(_features(event_idx=False))
    _rx_ready(vm, d)
    with ctx.recording(vm):
        for k in range(frames):
            vm.host().send(echo(k + 1))
            vm.run()
    return _msix_obs(vm, d)


@scenario
def msix_mask(ctx: Ctx, vector: int = 1, frames: int = 2, function: bool = False
              ) -> dict[str, Any]:
    """A frame arrives while the RX vector (or the whole function) is masked, then unmask"""
    vm, d = _virtio_machine(_features(event_idx=False))
    _rx_ready(vm, d)
    steps = []
    with ctx.recording(vm):
        if function:
            d.function_mask(True)
        else:
            d.mask(vector, True)
        for k in range(frames):
            vm.host().send(echo(k + 1))
            vm.run()
        steps.append(_msix_obs(vm, d))
        if function:
            d.function_mask(False)
        else:
            d.mask(vector, False)
        vm.run()
        steps.append(_msix_obs(vm, d))
    return {"while masked": steps[0], "after unmasking": steps[1]}


@scenario
def msix_direct(ctx: Ctx, calls: list[int] = (1,), masked: list[int] = (),
                function_masked: bool = False) -> dict[str, Any]:
    """The device model calls msix_notify directly for the listed vectors"""
    from ..hw.pci.msix import msix_notify
    vm, d = _virtio_machine(_features(event_idx=False))
    for v in masked:
        d.mask(v, True)
    if function_masked:
        d.function_mask(True)
    dev = vm.device("net-pci0")
    with ctx.recording(vm):
        for v in calls:
            msix_notify(dev, v)
    return _msix_obs(vm, d)


# -- NetQueue and hubs: bare net clients --------------------------------------------------------

class _Receiver:
    """A stand-in NIC whose receive answers follow a script (1 take, 0 busy, -1 refuse)."""

    def __init__(self, name: str, peer: Any = None, answers: list[int] = (),
                 can_receive: bool = True, echo_to: Any = None) -> None:
        from ..net.net import NetClientInfo, qemu_new_net_client
        self.got: list[str] = []
        self.answers = list(answers)
        self.accept = can_receive
        self.echo_to = echo_to                  # send one frame back in, while delivering
        self.nc = qemu_new_net_client(NetClientInfo("nic", receive=_receiver_receive,
                                                    can_receive=_receiver_can_receive),
                                      peer, "test-nic", name, self)


def _receiver_receive(nc: Any, buf: bytes) -> int:
    r: _Receiver = nc.opaque
    answer = r.answers.pop(0) if r.answers else 1
    if answer > 0:
        if r.echo_to is not None:            # sent while this frame is being delivered:
            from ..net.net import qemu_send_packet   # it must wait its turn in the queue
            src, r.echo_to = r.echo_to, None
            qemu_send_packet(src, b"\x02" * 60, 60)
        r.got.append(fp(buf) or "")
        return len(buf)
    return answer


def _receiver_can_receive(nc: Any) -> bool:
    return nc.opaque.accept


def _sender(name: str) -> Any:
    from ..net.net import NetClientInfo, qemu_new_net_client
    return qemu_new_net_client(NetClientInfo("tap"), None, "test", name)


def _frame(k: int, size: int = 60) -> bytes:
    return bytes([k & 0xFF]) * size


def _queue_obs(sender: Any, r: _Receiver, rets: list[int], cbs: list[Any]) -> dict[str, Any]:
    q = r.nc.incoming_queue
    return {"return values": rets, "receiver got": r.got,
            "waiting in the NetQueue": [list(c) for c in q.contents()],
            "receive_disabled": r.nc.receive_disabled,
            "sent_cb calls": cbs,
            "sender counters": {k: v for k, v in sorted(sender.stats.items()) if v}}


@scenario
def queue_send(ctx: Ctx, packets: int = 3, answers: list[int] = (), can_receive: bool = True,
               flush: bool = True, with_cb: bool = True, maxlen: int | None = None
               ) -> dict[str, Any]:
    """A sender sends packets to a receiver that answers as scripted, then it flushes"""
    from ..net.net import qemu_flush_queued_packets, qemu_send_packet_async
    src = _sender("src")
    r = _Receiver("nic", src, answers, can_receive)
    if maxlen is not None:
        r.nc.incoming_queue.nq_maxlen = maxlen
    cbs: list[Any] = []
    rets = []
    for k in range(packets):
        cb = (lambda nc, n, k=k: cbs.append([k, n])) if with_cb else None
        rets.append(qemu_send_packet_async(src, _frame(k), 60, cb))
    before = _queue_obs(src, r, rets, list(cbs))
    if flush:
        r.accept = True
        r.answers.clear()
        qemu_flush_queued_packets(r.nc)
    return {"after sending": before, "after the receiver flushes": _queue_obs(src, r, rets, cbs)}


@scenario
def queue_reentrant(ctx: Ctx, packets: int = 2) -> dict[str, Any]:
    """The receiver, while a packet is being delivered to it, is sent another one"""
    from ..net.net import qemu_send_packet_async
    src = _sender("src")
    other = _sender("other")
    r = _Receiver("nic", src)
    other.peer = r.nc                              # a second sender into the same queue
    r.echo_to = other
    rets = [qemu_send_packet_async(src, _frame(k), 60, None) for k in range(packets)]
    return {**_queue_obs(src, r, rets, []),
            "other sender counters": {k: v for k, v in sorted(other.stats.items()) if v}}


@scenario
def back_pressure(ctx: Ctx, buffers: int = 2, frames: int = 6, refill: int = 4
                  ) -> dict[str, Any]:
    """The guest has fewer RX buffers than frames arrive: they wait, then arrive in order"""
    vm, d = _virtio_machine(_features())
    bufs: dict[int, int] = {}
    for _ in range(buffers):
        b = d.alloc(1536)
        bufs[d.add_chain(d.rx, [(b, 1536, True)])] = b
    d.kick(d.rx)
    vm.run()
    nic = vm.device("net-pci0").nc
    tap = vm.taps["hn0"]
    with ctx.recording(vm):
        for k in range(frames):
            vm.host().send(echo(k + 1))
        vm.run()
        mid = {"waiting in the NIC's NetQueue": len(nic.incoming_queue),
               "TAP still read": bool(tap.read_poll),
               "frames left in the TAP": len(tap.fd.to_qemu)}
        got = [fp(vm.memory.read_bytes(bufs[h] + 12, n - 12)) for h, n in d.get_used(d.rx)]
        for _ in range(refill):
            b = d.alloc(1536)
            bufs[d.add_chain(d.rx, [(b, 1536, True)])] = b
        d.kick(d.rx)
        vm.run()
    got += [fp(vm.memory.read_bytes(bufs[h] + 12, n - 12)) for h, n in d.get_used(d.rx)]
    tapnc = vm.netdev("hn0")
    return {"while the guest had no buffers": mid, "frames in guest order": got,
            "TAP read again": bool(tap.read_poll),
            "TAP counters": {k: v for k, v in sorted(tapnc.stats.items()) if v}}


def _hub(nports: int, answers: dict[int, list[int]] | None = None,
         down: list[int] = ()) -> tuple[Any, list[Any], list[_Receiver]]:
    """A hub with ``nports`` ports, each peered with a stand-in NIC."""
    from ..net.hub import Hubs
    hubs = Hubs()
    ports, recv = [], []
    for i in range(nports):
        r = _Receiver(f"nic{i}", None, (answers or {}).get(i, ()))
        port = hubs.net_hub_add_port(0, f"hub0port{i}", r.nc)
        if i in down:
            r.nc.link_down = True
        ports.append(port)
        recv.append(r)
    return hubs, ports, recv


@scenario
def hub_send(ctx: Ctx, nports: int = 3, source: int = 0, frames: int = 1,
             answers: dict[int, list[int]] | None = None, down: list[int] = ()
             ) -> dict[str, Any]:
    """A NIC on a hub port sends frames; every other port's NIC should get a copy"""
    from ..net.net import qemu_send_packet_async
    _hubs, ports, recv = _hub(nports, {int(k): v for k, v in (answers or {}).items()}, down)
    src = recv[source].nc
    rets = [qemu_send_packet_async(src, _frame(k + 1, 64 + k), 64 + k, None)
            for k in range(frames)]
    return {"return values seen by the sender": rets,
            "what each NIC got": {r.nc.name: r.got for r in recv},
            "waiting at each hub port": {p.nc.name: len(p.nc.incoming_queue) for p in ports},
            "waiting at each NIC": {r.nc.name: len(r.nc.incoming_queue) for r in recv},
            "sender counters": {k: v for k, v in sorted(src.stats.items()) if v}}


@scenario
def hub_ping(ctx: Ctx, taps: int = 1, count: int = 2, model: str = "virtio-net-pci"
             ) -> dict[str, Any]:
    """The host pings the guest through a hub (-net nic -net tap ...)"""
    from ..machine import Machine
    line = f"-net nic,model={model}" + "".join(f" -net tap,id=t{i}" for i in range(taps))
    vm = Machine.from_cmdline(line)
    vm.boot()
    with ctx.recording(vm):
        rtts = vm.host("t0").ping(count=count)
    return {"round-trip times (µs)": rtts,
            **{f"frames host t{i} received": host_frames(vm, f"t{i}") for i in range(taps)}}


# -- e1000's receive ring ----------------------------------------------------------------------

E1000_LINE = "-netdev tap,id=hn0 -device e1000,id=net-pci0,netdev=hn0"
#: the 8254x statistics registers the receive path counts
_E1000_STATS = {"TPR": 0x40D0, "GPRC": 0x4074, "GORCL": 0x4088, "PRC64": 0x405C,
                "PRC127": 0x4060, "PRC1023": 0x406C, "PRC1522": 0x4070, "BPRC": 0x4078,
                "MPC": 0x4010, "RNBC": 0x40A0}


def _e1000_obs(vm: Any, d: E1000Driver) -> dict[str, Any]:
    dev = vm.device("net-pci0")
    descs, data = [], []
    for i in range(d.ring):
        addr, length, _csum, status, errors, special = d.descriptor(i)
        descs.append([length, status, errors, special])
        if status & 1 and addr:
            data.append([i, fp(vm.memory.read_bytes(addr, min(length, d.bsize)))])
    return {"descriptors (length, status, errors, special)": descs,
            "buffers the NIC wrote": data, "RDH": dev.rdh, "ICR": dev.icr,
            "statistics registers": {k: dev.mac_reg[v >> 2] for k, v in _E1000_STATS.items()},
            "frames waiting in the NIC's NetQueue": len(dev.nc.incoming_queue),
            "INTx level": vm.irq_level(11)}


@scenario
def e1000_rx(ctx: Ctx, ring: int = 8, give: int = 6, bsize: int = 2048,  # ring: 8, 16...
             frames: list[int] = (98,), null: list[int] = (), rdh: int | None = None
             ) -> dict[str, Any]:
    """The e1000's driver gives RX descriptors, then frames of these sizes arrive"""
    from ..machine import Machine
    vm = Machine.from_cmdline(E1000_LINE, guest=None)
    vm.boot()
    d = E1000Driver(vm, ring=ring, bsize=bsize)
    d.give(give, tuple(null))
    if rdh is not None:
        d.w(0x2810, rdh)                           # a head the driver got wrong
    vm.run()
    with ctx.recording(vm):
        for k, size in enumerate(frames):
            vm.host().send(echo(k + 1, size))
            vm.run()
    return _e1000_obs(vm, d)


@scenario
def e1000_wrap(ctx: Ctx, ring: int = 8, frames: int = 20, bsize: int = 2048,
               size: int = 98) -> dict[str, Any]:
    """A small e1000 ring goes round: the driver gives back each descriptor the NIC used"""
    from ..machine import Machine
    vm = Machine.from_cmdline(E1000_LINE, guest=None)
    vm.boot()
    d = E1000Driver(vm, ring=ring, bsize=bsize)        # RDLEN: a multiple of 8 descriptors
    d.give(ring - 1)
    vm.run()
    got = []
    clean = 0                                           # Linux's next_to_clean
    with ctx.recording(vm):
        for k in range(frames):
            vm.host().send(echo(k + 1, size))
            vm.run()
            for _ in range(ring):
                addr, length, _c, status, _e, _s = d.descriptor(clean)
                if not status & 1:
                    break
                got.append([clean, length, status, fp(vm.memory.read_bytes(addr, length))])
                clean = (clean + 1) % ring
                d.give(1)
            vm.run()
    return {"frames the driver took (index, length, status, data)": got, **_e1000_obs(vm, d)}


def run_scenario(name: str, params: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    try:
        func = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario named {name!r}") from None
    return func(ctx, **params)


def iter_names() -> Iterator[str]:
    return iter(sorted(SCENARIOS))
