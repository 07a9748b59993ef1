"""NetQueue: packets waiting for a receiver that cannot take them now (QEMU's net/queue.c).

Every NetClientState has an *incoming* queue of packets sent to it.  A sender calls
:func:`qemu_net_queue_send`; if the receiver can take the packet it is delivered at once,
otherwise (or when the receiver answers 0, "busy") it is appended and the sender learns,
through a return value of 0, to stop until its ``sent_cb`` is called from
:func:`qemu_net_queue_flush`.  This is the asynchrony the seed's article points at.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..trace import Stateful, Stats, tracepoint
from ..trace import events as trace

if TYPE_CHECKING:  # pragma: no cover
    from .net import NetClientState

SentCb = Callable[["NetClientState", int], None]

QEMU_NET_PACKET_FLAG_NONE = 0
QEMU_NET_PACKET_FLAG_RAW = 1
#: qemu_new_net_queue's limit: beyond it, packets without a sent_cb are dropped
NQ_MAXLEN = 10000


class NetPacket:
    """A queued packet: who sent it, its bytes, and whom to tell once it is delivered."""

    __slots__ = ("sender", "flags", "data", "sent_cb")

    def __init__(self, sender: "NetClientState", flags: int, data: bytes, sent_cb: SentCb | None):
        self.sender = sender
        self.flags = flags
        self.data = data
        self.sent_cb = sent_cb

    def __repr__(self) -> str:
        return f"<NetPacket {len(self.data)}B from {self.sender.name}>"


class NetQueue(Stateful):
    """A FIFO of :class:`NetPacket` with QEMU's semantics (nq_maxlen, ``delivering``)."""

    _state_ = ("nq_count",)   # (delivering is a re-entry guard, not state worth showing)

    def __init__(self, deliver: Callable[..., int], opaque: "NetClientState") -> None:
        self.deliver = deliver          # qemu_deliver_packet_iov
        self.opaque = opaque            # the receiving NetClientState
        self.nq_maxlen = NQ_MAXLEN
        self.nq_count = 0
        self.delivering = False
        self.packets: deque[NetPacket] = deque()
        self.stats = Stats()

    def __len__(self) -> int:
        return self.nq_count

    def contents(self) -> list[tuple[str, int, bool]]:
        """(sender name, size, has sent_cb) for each waiting packet, oldest first."""
        return [(p.sender.name, len(p.data), p.sent_cb is not None) for p in self.packets]

    def image(self) -> dict[str, Any]:
        return {"nq_count": self.nq_count,
                "packets": tuple(self.contents())}

    def _note(self, name: str) -> None:
        from ..trace import state
        if state.JOURNAL is not None:
            state.JOURNAL.append((state._STEP[0], self, "packets", tuple(self.contents())))


def qemu_net_queue_append(queue: NetQueue, sender: "NetClientState", flags: int, data: bytes,
                          sent_cb: SentCb | None, why: str) -> None:
    """Queue a packet at the tail; drop it when the queue is full and nobody waits for it."""
    if queue.nq_count >= queue.nq_maxlen and sent_cb is None:
        sender.count_drop(len(data), "queue full")
        return
    queue.packets.append(NetPacket(sender, flags, bytes(data), sent_cb))
    queue.nq_count += 1
    queue.stats["appended"] += 1
    queue._note("packets")
    trace.net_queue_append(queue.opaque.name, sender.name, len(data), why)


@tracepoint("net/queue.c", show=("size",))
def qemu_net_queue_deliver(queue: NetQueue, sender: "NetClientState", flags: int, data: bytes,
                           size: int) -> int:
    """Hand one packet to the receiver, marking the queue busy meanwhile (re-entry guard)."""
    queue.delivering = True
    try:
        ret = queue.deliver(sender, flags, data, queue.opaque)
    finally:
        queue.delivering = False
    return ret


@tracepoint("net/queue.c", show=("size",))
def qemu_net_queue_send(queue: NetQueue, sender: "NetClientState", flags: int, data: bytes,
                        size: int, sent_cb: SentCb | None) -> int:
    """Deliver now if possible, else queue; 0 tells the sender to wait for ``sent_cb``."""
    return _queue_send(queue, sender, flags, data, size, sent_cb)


@tracepoint("net/queue.c", show=("size",))
def qemu_net_queue_send_iov(queue: NetQueue, sender: "NetClientState", flags: int,
                            data: bytes, size: int, sent_cb: SentCb | None) -> int:
    """The same for a packet that arrived in pieces (already flattened by the caller)."""
    return _queue_send(queue, sender, flags, data, size, sent_cb)


def _queue_send(queue: NetQueue, sender: "NetClientState", flags: int, data: bytes,
                size: int, sent_cb: SentCb | None) -> int:
    if queue.delivering:
        qemu_net_queue_append(queue, sender, flags, data, sent_cb, "receiver is delivering")
        return 0
    if not net.qemu_can_send_packet(sender):
        qemu_net_queue_append(queue, sender, flags, data, sent_cb, "receiver cannot receive")
        return 0
    ret = qemu_net_queue_deliver(queue, sender, flags, data, size)
    if ret == 0:
        qemu_net_queue_append(queue, sender, flags, data, sent_cb, "receiver returned 0")
        return 0
    qemu_net_queue_flush(queue)
    return ret


@tracepoint("net/queue.c")
def qemu_net_queue_flush(queue: NetQueue) -> bool:
    """Deliver waiting packets in order; stop (keeping FIFO order) at the first refusal."""
    if queue.delivering:
        return False
    packets = queue.packets
    while packets:
        packet = packets.popleft()
        queue.nq_count -= 1
        queue._note("packets")
        ret = qemu_net_queue_deliver(queue, packet.sender, packet.flags, packet.data,
                                     len(packet.data))
        if ret == 0:
            queue.nq_count += 1
            packets.appendleft(packet)
            queue._note("packets")
            return False
        queue.stats["flushed"] += 1
        if packet.sent_cb is not None:
            packet.sent_cb(packet.sender, ret)
    return True


@tracepoint("net/queue.c")
def qemu_net_queue_purge(queue: NetQueue, sender: "NetClientState") -> None:
    """Drop the packets ``sender`` queued here, telling it through ``sent_cb(…, 0)``."""
    keep: deque[NetPacket] = deque()
    purged = []
    for p in queue.packets:
        (purged if p.sender is sender else keep).append(p)
    queue.packets = keep
    queue.nq_count = len(keep)
    queue._note("packets")
    for p in purged:
        sender.count_drop(len(p.data), "purged")
        if p.sent_cb is not None:
            p.sent_cb(p.sender, 0)


# net.c and queue.c call each other; bound last, so either module may be imported first
from . import net  # noqa: E402
