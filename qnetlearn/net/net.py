"""Net clients, peers, sending and delivering (QEMU's net/net.c).

Every end of a network connection inside QEMU is a :class:`NetClientState`: a TAP backend,
a hub port, a NIC's front end.  Each has exactly one *peer*; sending a packet means putting
it in the peer's incoming :class:`~qnetlearn.net.queue.NetQueue`, which delivers it with
:func:`qemu_deliver_packet_iov` to the peer's ``info.receive`` (or ``receive_iov``).

Accounting (the "nothing is lost" rule): for every sender,
``stats["tx"] == stats["tx delivered"] + (its packets still queued) + sum(drops)``, where the
drops are ``stats["drop: <reason>"]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..trace import Stateful, Stats, tracepoint
from ..trace import events as trace
from ..trace.recorder import _ACTIVE
from .queue import (QEMU_NET_PACKET_FLAG_NONE, QEMU_NET_PACKET_FLAG_RAW, NetQueue, SentCb,
                    qemu_net_queue_flush, qemu_net_queue_purge, qemu_net_queue_send,
                    qemu_net_queue_send_iov)

#: the largest packet QEMU sends (NET_BUFSIZE = 4096 + 65536)
NET_BUFSIZE = 4096 + 65536


@dataclass
class NetClientInfo:
    """A client type's callbacks (include/net/net.h NetClientInfo)."""

    type: str
    receive: Callable[["NetClientState", bytes], int] | None = None
    receive_iov: Callable[["NetClientState", list[bytes]], int] | None = None
    can_receive: Callable[["NetClientState"], bool] | None = None
    cleanup: Callable[["NetClientState"], None] | None = None
    link_status_changed: Callable[["NetClientState"], None] | None = None
    has_vnet_hdr: Callable[["NetClientState"], bool] | None = None
    set_vnet_hdr_len: Callable[["NetClientState", int], None] | None = None
    using_vnet_hdr: Callable[["NetClientState", bool], None] | None = None
    has_ufo: Callable[["NetClientState"], bool] | None = None
    set_offload: Callable[["NetClientState", bool, bool, bool, bool, bool], None] | None = None


class NetClientState(Stateful):
    """One end of a connection: a backend, a hub port or a NIC's front end."""

    _state_ = ("link_down", "receive_disabled")

    def __init__(self, info: NetClientInfo, peer: "NetClientState | None", model: str,
                 name: str, opaque: Any = None) -> None:
        self.info = info
        self.model = model
        self.name = name
        self.opaque = opaque          # the backend or device behind this client
        self.peer: NetClientState | None = None
        self.link_down = False
        self.receive_disabled = False
        self.queue_index = 0
        self.vnet_hdr_len = 0
        self.stats = Stats()
        self.incoming_queue = NetQueue(qemu_deliver_packet_iov, self)
        if peer is not None:
            self.peer = peer
            peer.peer = self

    @property
    def receive_name(self) -> str:
        """Name of the function that receives this client's packets (``nc->info->receive``)."""
        fn = self.info.receive_iov or self.info.receive
        return fn.__name__ if fn else "-"

    def count_drop(self, size: int, reason: str) -> None:
        """Count a packet this client sent that went nowhere, with its reason."""
        self.stats["drop: " + reason] += 1
        trace.net_drop(self.name, size, reason)

    def __repr__(self) -> str:
        peer = self.peer.name if self.peer else None
        return f"<NetClientState {self.name} type={self.info.type} peer={peer}>"


def qemu_new_net_client(info: NetClientInfo, peer: NetClientState | None, model: str,
                        name: str, opaque: Any = None) -> NetClientState:
    """Create a client and, with ``peer``, connect the two both ways."""
    return NetClientState(info, peer, model, name, opaque)


def qemu_can_receive_packet(nc: NetClientState) -> bool:
    """False while delivery is paused (``receive_disabled``) or ``can_receive`` says no."""
    if nc.receive_disabled:
        return False
    cr = nc.info.can_receive
    return cr is None or bool(cr(nc))


def qemu_can_send_packet(sender: NetClientState) -> bool:
    """Whether ``sender``'s peer can take a packet now (true without a peer)."""
    peer = sender.peer
    if peer is None:
        return True
    return qemu_can_receive_packet(peer)


def qemu_has_vnet_hdr(nc: NetClientState | None) -> bool:
    """Does this backend pass virtio-net headers along with frames (a TAP with IFF_VNET_HDR)?"""
    return nc is not None and nc.info.has_vnet_hdr is not None and nc.info.has_vnet_hdr(nc)


def qemu_set_vnet_hdr_len(nc: NetClientState, n: int) -> None:
    if nc.info.set_vnet_hdr_len is not None:
        nc.info.set_vnet_hdr_len(nc, n)


def qemu_using_vnet_hdr(nc: NetClientState, enable: bool) -> None:
    if nc.info.using_vnet_hdr is not None:
        nc.info.using_vnet_hdr(nc, enable)


def qemu_has_ufo(nc: NetClientState | None) -> bool:
    """Can this backend pass UDP fragmentation offload frames (a TAP whose kernel takes
    TUN_F_UFO)?"""
    return nc is not None and nc.info.has_ufo is not None and nc.info.has_ufo(nc)


def qemu_set_offload(nc: NetClientState | None, csum: bool, tso4: bool, tso6: bool,
                     ecn: bool, ufo: bool) -> None:
    """Tell the backend which offloaded frames the NIC's guest takes: checksum left
    partial (NEEDS_CSUM) and TCP/UDP super-frames unsegmented (QEMU's qemu_set_offload)."""
    if nc is not None and nc.info.set_offload is not None:
        nc.info.set_offload(nc, csum, tso4, tso6, ecn, ufo)


def _record_frame(sender: NetClientState, data: bytes) -> None:
    """Keep the frame for ``rec.to_pcap`` without the virtio_net_hdr it may carry."""
    rec = _ACTIVE[0]
    if rec is not None:
        rec.add_frame(sender.name, sender.info.type, data[sender.vnet_hdr_len:])


def _cannot_send(sender: NetClientState, size: int) -> int | None:
    """Count a send; if it cannot go anywhere, count the drop and return what the sender
    gets back (as QEMU: the size, "consumed"), else None.

    An empty frame is refused with -1: the receive API's 0 means "busy, queue it", so an
    empty frame would block its receiver and come back on every flush (and a TAP refuses
    frames shorter than 14 bytes anyway)."""
    sender.stats["tx"] += 1
    if not size:
        sender.count_drop(0, "empty frame")
        return -1
    if size > NET_BUFSIZE:
        sender.count_drop(size, "larger than NET_BUFSIZE")
        return size
    if sender.link_down:
        sender.count_drop(size, "link down")
        return size
    if sender.peer is None:
        sender.count_drop(size, "no peer")
        return size
    return None


@tracepoint("net/net.c", show=("size",))
def qemu_send_packet_async_with_flags(sender: NetClientState, flags: int, buf: bytes,
                                      size: int, sent_cb: SentCb | None) -> int:
    """Put ``buf`` on the peer's incoming queue; a down link or no peer drops it."""
    dropped = _cannot_send(sender, size)
    if dropped is not None:
        return dropped
    _record_frame(sender, buf)
    return qemu_net_queue_send(sender.peer.incoming_queue, sender, flags, buf, size, sent_cb)


@tracepoint("net/net.c", show=("size",))
def qemu_send_packet_async(sender: NetClientState, buf: bytes, size: int,
                           sent_cb: SentCb | None) -> int:
    """Send a packet; 0 means "queued: wait for sent_cb before sending more"."""
    return qemu_send_packet_async_with_flags(sender, QEMU_NET_PACKET_FLAG_NONE, buf, size,
                                             sent_cb)


@tracepoint("net/net.c", show=("size",))
def qemu_send_packet(nc: NetClientState, buf: bytes, size: int) -> None:
    """Send with nobody to call back: a packet that must wait is queued or dropped."""
    qemu_send_packet_async(nc, buf, size, None)


@tracepoint("net/net.c", show=("iovcnt",))
def qemu_sendv_packet_async(sender: NetClientState, iov: list[bytes], iovcnt: int,
                            sent_cb: SentCb | None) -> int:
    """Send a packet given as pieces (the guest's TX descriptors)."""
    size = sum(len(b) for b in iov)
    dropped = _cannot_send(sender, size)
    if dropped is not None:
        return dropped
    data = iov[0] if iovcnt == 1 else b"".join(iov)
    _record_frame(sender, data)
    return qemu_net_queue_send_iov(sender.peer.incoming_queue, sender, QEMU_NET_PACKET_FLAG_NONE,
                                   data, size, sent_cb)


@tracepoint("net/net.c", show=("iovcnt",))
def qemu_sendv_packet(nc: NetClientState, iov: list[bytes], iovcnt: int) -> int:
    return qemu_sendv_packet_async(nc, iov, iovcnt, None)


@tracepoint("net/net.c")
def qemu_deliver_packet_iov(sender: NetClientState, flags: int, data: bytes,
                            nc: NetClientState) -> int:
    """Call the receiver's ``receive_iov`` (or ``receive``); 0 pauses delivery to it."""
    size = len(data)
    if nc.link_down:
        sender.count_drop(size, "receiver link down")
        return size
    if nc.receive_disabled:
        return 0
    info = nc.info
    if flags & QEMU_NET_PACKET_FLAG_RAW and nc.vnet_hdr_len:
        data = bytes(nc.vnet_hdr_len) + data
    if info.receive_iov is not None:
        ret = info.receive_iov(nc, [data])
    else:
        ret = info.receive(nc, data)  # type: ignore[misc]   # nc_sendv_compat
    if ret == 0:
        nc.receive_disabled = True
    elif ret > 0:
        sender.stats["tx delivered"] += 1
        nc.stats["rx"] += 1
    else:
        sender.count_drop(size, "receiver refused it")
    return ret


@tracepoint("net/net.c")
def qemu_flush_or_purge_queued_packets(nc: NetClientState, purge: bool) -> None:
    """Resume delivery to ``nc``: flush what waits for it (through a hub too)."""
    nc.receive_disabled = False
    peer = nc.peer
    if peer is not None and peer.info.type == "hubport":
        from .hub import net_hub_flush
        net_hub_flush(peer)
    if qemu_net_queue_flush(nc.incoming_queue):
        return
    if purge:
        for p in list(nc.incoming_queue.packets):
            qemu_net_queue_purge(nc.incoming_queue, p.sender)


@tracepoint("net/net.c")
def qemu_flush_queued_packets(nc: NetClientState) -> None:
    """What a receiver calls when it can take packets again (e.g. the guest added buffers)."""
    qemu_flush_or_purge_queued_packets(nc, False)


def qemu_purge_queued_packets(nc: NetClientState) -> None:
    """Drop what ``nc`` queued at its peer (qemu_purge_queued_packets)."""
    if nc.peer is not None:
        qemu_net_queue_purge(nc.peer.incoming_queue, nc)


def qemu_set_link(nc: NetClientState, up: bool) -> None:
    """qmp_set_link: a NIC peer follows its backend; both hear link_status_changed."""
    nc.link_down = not up
    if nc.info.link_status_changed is not None:
        nc.info.link_status_changed(nc)
    peer = nc.peer
    if peer is not None:
        if peer.info.type == "nic":
            peer.link_down = not up
        if peer.info.link_status_changed is not None:
            peer.info.link_status_changed(peer)
    if up:
        for c in (nc, peer):
            if c is not None:
                qemu_flush_queued_packets(c)


__all__ = ["NetClientInfo", "NetClientState", "qemu_new_net_client", "qemu_can_send_packet",
           "qemu_can_receive_packet", "qemu_send_packet", "qemu_send_packet_async",
           "qemu_send_packet_async_with_flags", "qemu_sendv_packet", "qemu_sendv_packet_async",
           "qemu_deliver_packet_iov", "qemu_flush_queued_packets", "qemu_purge_queued_packets",
           "qemu_set_link", "QEMU_NET_PACKET_FLAG_RAW", "NET_BUFSIZE"]
