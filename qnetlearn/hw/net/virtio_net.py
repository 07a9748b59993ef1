"""virtio-net, device side (QEMU's hw/net/virtio-net.c; virtio 1.x §5.1).

Receive: the backend's frame reaches ``virtio_net_receive`` (``nc->info->receive``); the
device pops guest buffers from the RX queue, writes the 12-byte ``virtio_net_hdr_v1``
and the frame into them, fills and flushes the used ring, and notifies.  With no buffers
it answers 0: the frame waits in the NetQueue and the backend stops reading until the
driver adds buffers and kicks (``virtio_net_handle_rx`` flushes the queue).  The
backend's header passes through: once the driver took GUEST_CSUM/GUEST_TSO*/GUEST_UFO,
the TAP may hand over partial checksums and unsegmented super-frames (its TUNSETOFFLOAD
follows the driver's features), which a big-packets chain or several mergeable buffers
hold; a chain too small for a frame drops it, counted.

Transmit: the driver's kick runs ``virtio_net_handle_tx_bh``, which disables further kicks
and schedules a bottom half; ``virtio_net_flush_tx`` pops up to ``tx_burst`` chains, strips
the guest header down to what the backend takes, and sends with ``qemu_sendv_packet_async``.
A backend that must queue answers 0: the chain waits in ``async_tx`` until
``virtio_net_tx_complete``.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...net.net import (NetClientInfo, NetClientState, qemu_flush_queued_packets,
                        qemu_has_ufo, qemu_has_vnet_hdr, qemu_new_net_client,
                        qemu_sendv_packet_async, qemu_set_offload, qemu_set_vnet_hdr_len,
                        qemu_using_vnet_hdr)
from ...net.stack import mac_bytes
from ...system.memory import MemTxError
from ...trace import tracepoint
from ..virtio.virtio import (VIRTQUEUE_MAX_SIZE, VirtIODevice, VirtQueue, VirtQueueElement,
                             iov_from_buf, iov_to_buf, virtio_error, virtio_notify,
                             virtio_notify_config, virtio_queue_empty,
                             virtio_queue_set_notification, virtqueue_avail_bytes,
                             virtqueue_detach_element, virtqueue_fill, virtqueue_flush,
                             virtqueue_pop, virtqueue_push, virtqueue_unpop)
from ...standard_headers.virtio_ring import VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC
from ...standard_headers.virtio_config import VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_F_VERSION_1
from ..virtio.virtio_pci import VirtIOPCIProxy
from ...standard_headers.virtio_net import (
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GSO, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
    VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_S_LINK_UP)

if TYPE_CHECKING:  # pragma: no cover
    from ...machine import Machine
    from ...system.vl import NicConfig

TX_BURST = 256
_ZERO_HDR = bytes(10)
QUEUE_SIZE = 256
_ETH_VLAN = 0x8100

#: the features this model implements, with the -device property that turns each off
#: (all on by default, as QEMU 7.2's virtio_net_properties)
FEATURE_PROPS = {"csum": VIRTIO_NET_F_CSUM, "guest_csum": VIRTIO_NET_F_GUEST_CSUM,
                 "gso": VIRTIO_NET_F_GSO, "guest_tso4": VIRTIO_NET_F_GUEST_TSO4,
                 "guest_tso6": VIRTIO_NET_F_GUEST_TSO6, "guest_ecn": VIRTIO_NET_F_GUEST_ECN,
                 "guest_ufo": VIRTIO_NET_F_GUEST_UFO, "host_tso4": VIRTIO_NET_F_HOST_TSO4,
                 "host_tso6": VIRTIO_NET_F_HOST_TSO6, "host_ecn": VIRTIO_NET_F_HOST_ECN,
                 "host_ufo": VIRTIO_NET_F_HOST_UFO, "mac": VIRTIO_NET_F_MAC,
                 "status": VIRTIO_NET_F_STATUS, "mrg_rxbuf": VIRTIO_NET_F_MRG_RXBUF,
                 "event_idx": VIRTIO_RING_F_EVENT_IDX,
                 "indirect_desc": VIRTIO_RING_F_INDIRECT_DESC}
#: offloads that need a backend passing virtio_net_hdr (virtio_net_get_features)
VNET_HDR_FEATURES = (1 << VIRTIO_NET_F_CSUM | 1 << VIRTIO_NET_F_HOST_TSO4 |
                     1 << VIRTIO_NET_F_HOST_TSO6 | 1 << VIRTIO_NET_F_HOST_ECN |
                     1 << VIRTIO_NET_F_GUEST_CSUM | 1 << VIRTIO_NET_F_GUEST_TSO4 |
                     1 << VIRTIO_NET_F_GUEST_TSO6 | 1 << VIRTIO_NET_F_GUEST_ECN)
#: ... and UDP fragmentation offload also a backend that takes it
UFO_FEATURES = 1 << VIRTIO_NET_F_GUEST_UFO | 1 << VIRTIO_NET_F_HOST_UFO


def _on(props: dict[str, str], name: str) -> bool:
    return props.get(name, "on").lower() not in ("off", "false", "no", "0")


class VirtIONet(VirtIODevice):
    """The virtio-net device: one RX and one TX queue, MAC and link status in config."""

    _state_ = ("tx_waiting", "promisc")
    device_id = 1

    def __init__(self, machine: "Machine", cfg: "NicConfig", peer: NetClientState | None) -> None:
        props = cfg.props
        features = 1 << VIRTIO_F_VERSION_1
        for prop, bit in FEATURE_PROPS.items():
            if _on(props, prop):
                features |= 1 << bit
        # virtio_net_get_features: offloads only with a backend that can carry them
        has_vnet_hdr = qemu_has_vnet_hdr(peer)
        if not has_vnet_hdr:
            features &= ~VNET_HDR_FEATURES
        if not has_vnet_hdr or not qemu_has_ufo(peer):
            features &= ~UFO_FEATURES
        super().__init__("virtio-net", features)
        self.loop = machine.loop
        self.mac = cfg.mac
        self.macaddr = mac_bytes(cfg.mac)
        self.tx_burst = int(props.get("x-txburst", TX_BURST))
        rx_size = int(props.get("rx_queue_size", QUEUE_SIZE))
        tx_size = int(props.get("tx_queue_size", QUEUE_SIZE))
        self.rx_vq = self.virtio_add_queue(rx_size, virtio_net_handle_rx)
        self.tx_vq = self.virtio_add_queue(tx_size, virtio_net_handle_tx_bh)
        self.tx_bh = machine.loop.qemu_bh_new(virtio_net_tx_bh, self, "virtio-net-tx")
        self.tx_waiting = 0
        self.async_tx: VirtQueueElement | None = None
        self.promisc = True           # QEMU's reset default; only a control queue changes it
        self.allmulti = False
        self.nobcast = False
        self.mergeable_rx_bufs = False
        self.guest_hdr_len = 10
        self.host_hdr_len = 0
        self.has_vnet_hdr = has_vnet_hdr
        self.nc = qemu_new_net_client(net_virtio_info, peer, "virtio-net-pci",
                                      cfg.id or cfg.name, self)

    # -- VirtIODevice hooks ------------------------------------------------------------
    def get_config(self) -> bytes:
        status = 0 if self.nc.link_down else VIRTIO_NET_S_LINK_UP
        return self.macaddr + struct.pack("<HH", status, 1)

    def set_features(self, features: int) -> None:
        """virtio_net_set_features: header sizes follow VERSION_1 / MRG_RXBUF, and the
        backend may now pass what the driver takes offloaded (partial checksums, TCP and
        UDP super-frames: virtio_net_apply_guest_offloads)."""
        self.mergeable_rx_bufs = bool(features >> VIRTIO_NET_F_MRG_RXBUF & 1)
        v1 = bool(features >> VIRTIO_F_VERSION_1 & 1)
        self.guest_hdr_len = 12 if (v1 or self.mergeable_rx_bufs) else 10
        peer = self.nc.peer
        if self.has_vnet_hdr and peer is not None:
            qemu_set_vnet_hdr_len(peer, self.guest_hdr_len)
            qemu_using_vnet_hdr(peer, True)
            self.host_hdr_len = self.guest_hdr_len
            # virtio_net_apply_guest_offloads: what the driver takes offloaded
            qemu_set_offload(peer, *(bool(features >> bit & 1) for bit in (
                VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_UFO)))
        else:
            self.host_hdr_len = 0
        self.nc.vnet_hdr_len = self.host_hdr_len

    def set_status(self, status: int) -> None:
        if status & VIRTIO_CONFIG_S_DRIVER_OK and self.rx_vq.ready:
            qemu_flush_queued_packets(self.nc)

    def reset(self) -> None:
        super().reset()
        self.tx_waiting = 0
        if self.async_tx is not None:
            self.async_tx = None
        self.promisc = True


# -- receive ------------------------------------------------------------------------------

def virtio_net_can_receive(nc: NetClientState) -> bool:
    """Ready when the driver is up and the RX queue is set; buffers are checked later."""
    n: VirtIONet = nc.opaque
    return bool(n.status & VIRTIO_CONFIG_S_DRIVER_OK) and n.rx_vq.ready and not n.broken


def virtio_net_has_buffers(n: VirtIONet, bufsize: int) -> bool:
    """Enough guest buffers for ``bufsize`` bytes?  If not, ask the driver to kick RX."""
    q = n.rx_vq
    if virtio_queue_empty(q) or (n.mergeable_rx_bufs and not virtqueue_avail_bytes(q, bufsize, 0)):
        virtio_queue_set_notification(q, 1)
        if virtio_queue_empty(q) or (n.mergeable_rx_bufs and
                                     not virtqueue_avail_bytes(q, bufsize, 0)):
            return False
    virtio_queue_set_notification(q, 0)
    return True


def receive_filter(n: VirtIONet, buf: bytes) -> bool:
    """Promiscuous, broadcast, or our own MAC (virtio_net's receive_filter, without the
    control queue's MAC table and VLAN filter, which are not modelled)."""
    if n.promisc:
        return True
    ptr = buf[n.host_hdr_len:]
    dst = ptr[:6]
    if dst[0] & 1:
        if dst == b"\xff" * 6:
            return not n.nobcast
        return n.allmulti
    return dst == n.macaddr


@tracepoint("hw/net/virtio-net.c")
def virtio_net_receive(nc: NetClientState, buf: bytes) -> int:
    """``nc->info->receive``: the frame from the backend goes into the guest's RX ring."""
    return virtio_net_receive_rcu(nc, buf, len(buf))


@tracepoint("hw/net/virtio-net.c", show=("size",))
def virtio_net_receive_rcu(nc: NetClientState, buf: bytes, size: int) -> int:
    n: VirtIONet = nc.opaque
    if not virtio_net_can_receive(nc):
        return -1
    if not virtio_net_has_buffers(n, size + n.guest_hdr_len - n.host_hdr_len):
        n.stats["rx waits for guest buffers"] += 1
        return 0
    if not receive_filter(n, buf):
        n.stats["drop: rx filter"] += 1
        return size
    q = n.rx_vq
    elems: list[VirtQueueElement] = []
    lens: list[int] = []
    offset = 0
    num_buffers_at: tuple[list[tuple[int, int]], int] | None = None
    try:
        while offset < size:
            if len(elems) == VIRTQUEUE_MAX_SIZE:
                virtio_error(n, "virtio-net packet too large: exceeds VIRTQUEUE_MAX_SIZE buffers")
                return _rx_error(q, elems)
            elem = virtqueue_pop(q)
            if elem is None:
                if elems:
                    virtio_error(n, f"virtio-net unexpected empty queue: i {len(elems)} "
                                    f"mergeable {int(n.mergeable_rx_bufs)} offset {offset}, "
                                    f"size {size}, guest hdr len {n.guest_hdr_len}, "
                                    f"host hdr len {n.host_hdr_len}")
                return _rx_error(q, elems)
            if elem.in_num < 1:
                virtio_error(n, "virtio-net receive queue contains no in buffers")
                virtqueue_detach_element(q, elem, 0)
                return _rx_error(q, elems)
            total = 0
            if not elems and len(elem.in_sg) == 1 and \
                    elem.in_sg[0][1] >= n.guest_hdr_len + size - n.host_hdr_len:
                # the usual case: header and frame fit the first buffer, one copy (the
                # header is the backend's, or a zero one; num_buffers is 1)
                hdr = buf[:10] if n.host_hdr_len else _ZERO_HDR
                if n.guest_hdr_len == 12:
                    hdr += b"\x01\x00"
                lens.append(iov_from_buf(n, elem.in_sg, 0, hdr + buf[n.host_hdr_len:size]))
                elems.append(elem)
                break
            if not elems:
                if n.mergeable_rx_bufs or n.guest_hdr_len == 12:
                    num_buffers_at = (elem.in_sg, 10)
                # receive_header: the backend's header, or a zero one (GSO_NONE)
                hdr = buf[:n.guest_hdr_len] if n.host_hdr_len else bytes(n.guest_hdr_len)
                total += iov_from_buf(n, elem.in_sg, 0, hdr[:10])
                offset = n.host_hdr_len
                guest_offset = n.guest_hdr_len
                # num_buffers (bytes 10-11) is written below; count only what fits
                room = sum(length for _addr, length in elem.in_sg)
                total += max(0, min(n.guest_hdr_len, room) - 10)
            else:
                guest_offset = 0
            copied = iov_from_buf(n, elem.in_sg, guest_offset, memoryview(buf)[offset:size])
            total += copied
            offset += copied
            if not n.mergeable_rx_bufs and offset < size:
                virtqueue_unpop(q, elem, total)
                n.stats["drop: frame larger than the guest buffer"] += 1
                return size
            elems.append(elem)
            lens.append(total)
        if num_buffers_at is not None:
            iov_from_buf(n, num_buffers_at[0], num_buffers_at[1],
                         struct.pack("<H", len(elems) if n.mergeable_rx_bufs else 1))
    except MemTxError as e:
        virtio_error(n, f"virtio-net cannot write guest buffer: {e}")
        return _rx_error(q, elems)
    for j, elem in enumerate(elems):
        virtqueue_fill(q, elem, lens[j], j)
    virtqueue_flush(q, len(elems))
    virtio_notify(n, q)
    n.stats["rx frames"] += 1
    return size


def _rx_error(q: VirtQueue, elems: list[VirtQueueElement]) -> int:
    for elem in elems:
        virtqueue_detach_element(q, elem, 0)
    q.vdev.stats["drop: rx error"] += 1
    return -1


@tracepoint("hw/net/virtio-net.c")
def virtio_net_handle_rx(vdev: VirtIONet, vq: VirtQueue) -> None:
    """The driver kicked RX: it added buffers, so let waiting frames in."""
    qemu_flush_queued_packets(vdev.nc)


def virtio_net_set_link_status(nc: NetClientState) -> None:
    n: VirtIONet = nc.opaque
    n.stats["link changes"] += 1
    virtio_notify_config(n)


# -- transmit -----------------------------------------------------------------------------

@tracepoint("hw/net/virtio-net.c")
def virtio_net_handle_tx_bh(vdev: VirtIONet, vq: VirtQueue) -> None:
    """The driver kicked TX: no more kicks for now, and flush from a bottom half."""
    n = vdev
    if n.tx_waiting:
        return
    n.tx_waiting = 1
    if not n.status & VIRTIO_CONFIG_S_DRIVER_OK:
        return
    virtio_queue_set_notification(vq, 0)
    n.loop.qemu_bh_schedule(n.tx_bh)


@tracepoint("hw/net/virtio-net.c")
def virtio_net_tx_bh(n: VirtIONet) -> None:
    n.tx_waiting = 0
    if not n.status & VIRTIO_CONFIG_S_DRIVER_OK:
        return
    ret = virtio_net_flush_tx(n)
    if ret < 0:                 # -EBUSY (backend busy) or -EINVAL (device broken)
        return
    if ret >= n.tx_burst:       # more may be waiting: come back, kicks stay off
        n.loop.qemu_bh_schedule(n.tx_bh)
        n.tx_waiting = 1
        return
    # re-enable kicks, then look once more for a chain added meanwhile
    virtio_queue_set_notification(n.tx_vq, 1)
    ret = virtio_net_flush_tx(n)
    if ret > 0:
        virtio_queue_set_notification(n.tx_vq, 0)
        n.loop.qemu_bh_schedule(n.tx_bh)
        n.tx_waiting = 1


EBUSY = -16
EINVAL = -22


@tracepoint("hw/net/virtio-net.c")
def virtio_net_flush_tx(n: VirtIONet) -> int:
    """Send up to ``tx_burst`` chains; -EBUSY when the backend must queue."""
    if not n.status & VIRTIO_CONFIG_S_DRIVER_OK:
        return 0
    q = n.tx_vq
    if n.async_tx is not None:
        virtio_queue_set_notification(q, 0)
        return 0
    num_packets = 0
    while True:
        elem = virtqueue_pop(q)
        if elem is None:
            break
        if elem.out_num < 1:
            virtio_error(n, "virtio-net header not in first element")
            virtqueue_detach_element(q, elem, 0)
            return EINVAL
        try:
            data = iov_to_buf(n, elem.out_sg)
        except MemTxError as e:
            virtio_error(n, f"virtio-net cannot read guest buffer: {e}")
            virtqueue_detach_element(q, elem, 0)
            return EINVAL
        if len(data) < n.guest_hdr_len:
            virtio_error(n, "virtio-net header incorrect")
            virtqueue_detach_element(q, elem, 0)
            return EINVAL
        # the backend gets the first host_hdr_len bytes of the guest's header, then the frame
        frame = data if n.host_hdr_len == n.guest_hdr_len else \
            data[:n.host_hdr_len] + data[n.guest_hdr_len:]
        ret = qemu_sendv_packet_async(n.nc, [frame], 1, virtio_net_tx_complete)
        if ret == 0:
            virtio_queue_set_notification(q, 0)
            n.async_tx = elem
            n.stats["tx waits for the backend"] += 1
            return EBUSY
        virtqueue_push(q, elem, 0)
        virtio_notify(n, q)
        n.stats["tx frames"] += 1
        num_packets += 1
        if num_packets >= n.tx_burst:
            break
    return num_packets


@tracepoint("hw/net/virtio-net.c")
def virtio_net_tx_complete(nc: NetClientState, len: int) -> None:
    """The frame that had to wait was sent: complete its chain and carry on."""
    n: VirtIONet = nc.opaque
    elem = n.async_tx
    if elem is None:
        return
    virtqueue_push(n.tx_vq, elem, 0)
    virtio_notify(n, n.tx_vq)
    n.async_tx = None
    n.stats["tx frames"] += 1
    virtio_queue_set_notification(n.tx_vq, 1)
    ret = virtio_net_flush_tx(n)
    if ret >= n.tx_burst:
        virtio_queue_set_notification(n.tx_vq, 0)
        n.loop.qemu_bh_schedule(n.tx_bh)
        n.tx_waiting = 1


net_virtio_info = NetClientInfo(type="nic", receive=virtio_net_receive,
                                can_receive=virtio_net_can_receive,
                                link_status_changed=virtio_net_set_link_status)


class VirtIONetPCI(VirtIOPCIProxy):
    """``-device virtio-net-pci``: the virtio-net device behind the virtio-pci proxy."""

    class_id = 0x0200

    def __init__(self, machine: "Machine", cfg: "NicConfig", peer: NetClientState | None) -> None:
        vdev = VirtIONet(machine, cfg, peer)
        nvectors = int(cfg.props.get("vectors", 4))
        super().__init__("virtio-net-pci", cfg.id, vdev, machine.loop, nvectors)
        self.nc = vdev.nc
        self.mac = vdev.mac
        self.rx_vq = vdev.rx_vq
        self.tx_vq = vdev.tx_vq

    def state(self, r: Any) -> dict[str, Any]:
        out = super().state(r)
        out["model"] = "virtio-net-pci"
        out["mac"] = self.mac
        out["tx_waiting"] = r.get(self.vdev, "tx_waiting", 0)
        return out
