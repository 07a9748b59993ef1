"""The virtio-net driver of the simulated guest (after Linux 6.1 drivers/net/virtio_net.c).

What it does, in the order a packet meets it:

* **Probe** (virtnet_probe): negotiate features (VERSION_1, MAC, STATUS, MRG_RXBUF,
  EVENT_IDX, INDIRECT_DESC, CSUM, GUEST_CSUM, the GUEST_ and HOST_ TSO4/TSO6/ECN/UFO
  offloads: whatever the device offers of these), read the MAC from device configuration,
  create receiveq 0 and transmitq 0 with one MSI-X vector each plus one for configuration
  changes, DRIVER_OK, register ``eth0``.
* **Open** (virtnet_open): fill the whole RX ring with device-writable buffers and kick
  once.  Mergeable: one 1536-byte buffer per descriptor, as the golden recording shows.
  Without MRG_RXBUF but with a GUEST_ offload ("big packets", as the mrg_rxbuf=off
  recording): a 19-entry chain of page buffers per packet, one ring descriptor each when
  INDIRECT_DESC lets the chain live in an indirect table.  Otherwise one 1530-byte buffer.
* **RX**: the RX interrupt runs ``skb_recv_done``, which turns RX interrupts off and
  schedules NAPI; ``virtnet_poll`` takes up to 64 used buffers, strips the
  ``virtio_net_hdr`` (12 bytes with VERSION_1 or MRG_RXBUF, else 10), checks its offload
  fields and passes each frame up, refills only once more than half of min(budget, ring)
  buffers are gone (so a ping costs no RX kick), then re-enables interrupts and checks for
  a race.
* **TX** (start_xmit): header and frame in one device-readable descriptor, kick if
  the device asked for it; completions come back by the TX interrupt and TX NAPI
  (``skb_xmit_done`` -> ``virtnet_poll_tx`` -> ``free_old_xmit_skbs``), so each echo
  costs one RX and one TX interrupt, as in the golden recording.
"""
from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from ..net.stack import internet_checksum, mac_str
from ..trace import Stats, tracepoint
from .kernel import GuestError, NetDevice
from .virtio_pci_modern import VirtioPCIDevice
from ..standard_headers.virtio_config import VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_F_VERSION_1
from .virtio_ring import VringVirtqueue
from ..standard_headers.virtio_net import (
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
    VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_S_LINK_UP)

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import GuestKernel

VIRTIO_ID_NET = 1
#: the GUEST_ offloads that may bring frames longer than the MTU (virtnet_check_guest_gso)
GUEST_GSO_FEATURES = (1 << VIRTIO_NET_F_GUEST_TSO4 | 1 << VIRTIO_NET_F_GUEST_TSO6 |
                      1 << VIRTIO_NET_F_GUEST_ECN | 1 << VIRTIO_NET_F_GUEST_UFO)
#: what this driver asks for, Linux's VIRTNET_FEATURES less what it does not model (the
#: ring features come from the transport)
DRIVER_FEATURES = (1 << VIRTIO_NET_F_CSUM | 1 << VIRTIO_NET_F_GUEST_CSUM |
                   1 << VIRTIO_NET_F_MAC | GUEST_GSO_FEATURES |
                   1 << VIRTIO_NET_F_HOST_TSO4 | 1 << VIRTIO_NET_F_HOST_TSO6 |
                   1 << VIRTIO_NET_F_HOST_ECN | 1 << VIRTIO_NET_F_HOST_UFO |
                   1 << VIRTIO_NET_F_MRG_RXBUF | 1 << VIRTIO_NET_F_STATUS)
# device configuration (specs.md §4.3)
CONFIG_MAC = 0
CONFIG_STATUS = 6
# struct virtio_net_hdr (specs.md §4.4): flags, gso_type, hdr_len, gso_size, csum_start,
# csum_offset
_HDR = struct.Struct("<BBHHHH")
#: transport header a GSO type implies (virtio_net_hdr_to_skb's thlen: tcphdr, udphdr)
_GSO_THLEN = {VIRTIO_NET_HDR_GSO_TCPV4: 20, VIRTIO_NET_HDR_GSO_TCPV6: 20,
              VIRTIO_NET_HDR_GSO_UDP: 8}

ETH_HLEN = 14
VLAN_HLEN = 4
ETH_DATA_LEN = 1500
GOOD_PACKET_LEN = ETH_HLEN + VLAN_HLEN + ETH_DATA_LEN      # 1518
L1_CACHE_BYTES = 64
MAX_SKB_FRAGS = 17
PAGE_SIZE = 4096
#: sizeof(struct padded_vnet_hdr) in Linux 6.1 (virtio_net_hdr_v1_hash, 20 bytes, + 12 of
#: padding): a big packet's data starts this far into its first page
PADDED_VNET_HDR_LEN = 32
#: page_to_skb copies up to this much into the skb's head, the rest stays in page frags
GOOD_COPY_LEN = 128
REFILL_RETRY_NS = 500_000_000                               # refill_work again after HZ/2


def mergeable_buf_len(hdr_len: int) -> int:
    """One mergeable RX buffer: header plus a full VLAN-tagged frame, cache-line aligned
    (Linux get_mergeable_buf_len with its GOOD_PACKET_LEN floor): 12 + 1518 -> 1536."""
    return (hdr_len + GOOD_PACKET_LEN + L1_CACHE_BYTES - 1) & ~(L1_CACHE_BYTES - 1)


class VirtNet(NetDevice):
    """One virtio-net NIC and its net device (Linux ``struct virtnet_info``)."""

    driver = "virtio_net"

    def __init__(self, kernel: "GuestKernel", vdev: VirtioPCIDevice) -> None:
        self.kernel = kernel
        self.vdev = vdev
        self.ram = kernel.cpu.ram
        self.name = ""                       # eth0, ... once registered
        self.mac = b""
        self.hdr_len = 10
        self.mergeable = False
        self.big_packets = False
        self.big_packets_num_skbfrags = 0
        # big-packet buffers: GSO frames may come and the device cannot merge buffers
        # (try_fill_recv and receive_buf ask mergeable first, then big_packets)
        self.rx_big = False
        self.rx_buf_len = 0
        self.rvq: VringVirtqueue | None = None
        self.svq: VringVirtqueue | None = None
        self.status = 0                      # the link status we last acted on
        self.carrier = False
        self.tx_stopped = False
        self.opened = False
        self.tx_backlog: deque[bytes] = deque()
        self.rx_pool: list[int] = []         # free RX buffer addresses
        self.rx_pages: list[int] = []        # free big-packet pages (Linux rq->pages)
        self.tx_pool: list[int] = []         # free TX buffer addresses
        self.tx_slot = 0                     # bytes per TX buffer
        self.tx_hdr = b""
        self.stats = Stats()                 # rare events and drops, by reason
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = 0
        self._refill_timer: Any = None
        # the NAPI poll functions, bound once (they are the NAPI instances' identity)
        self.rx_napi = self.virtnet_poll
        self.tx_napi = self.virtnet_poll_tx

    def __repr__(self) -> str:
        mac = mac_str(self.mac) if self.mac else "?"
        return f"<virtio-net {self.name or self.vdev.name} {mac}>"

    # -- probe (virtio_dev_probe + virtnet_probe) -------------------------------------------
    def probe(self) -> None:
        k, vdev = self.kernel, self.vdev
        vdev.vp_modern_probe()
        vdev.reset()
        vdev.add_status(VIRTIO_CONFIG_S_ACKNOWLEDGE)
        vdev.add_status(VIRTIO_CONFIG_S_DRIVER)
        try:
            vdev.negotiate(DRIVER_FEATURES)
            has = vdev.has_feature
            self.mergeable = has(VIRTIO_NET_F_MRG_RXBUF)
            if vdev.features & GUEST_GSO_FEATURES:
                # virtnet_set_big_packets: any GSO frame may come, so room for the largest
                self.big_packets = True
                self.big_packets_num_skbfrags = MAX_SKB_FRAGS
            self.rx_big = self.big_packets and not self.mergeable
            self.hdr_len = 12 if self.mergeable or has(VIRTIO_F_VERSION_1) else 10
            self.tx_hdr = bytes(self.hdr_len)         # the stack offloads nothing: all zero
            if has(VIRTIO_NET_F_MAC):
                self.mac = vdev.cread_bytes(CONFIG_MAC, 6)
            else:
                # eth_hw_addr_random, made reproducible: locally administered, unicast
                self.mac = bytes((0x02, 0x00, 0x5E, 0x10, vdev.devfn >> 3, vdev.devfn & 7))
            self.rvq, self.svq = vdev.find_vqs([("input.0", self.skb_recv_done),
                                                ("output.0", self.skb_xmit_done)])
            vdev.config_changed = self.virtnet_config_changed
            self.rx_buf_len = (mergeable_buf_len(self.hdr_len) if self.mergeable
                               else self.hdr_len + GOOD_PACKET_LEN)
            self._alloc_buffers()
            vdev.add_status(VIRTIO_CONFIG_S_DRIVER_OK)       # virtio_device_ready
        except (GuestError, MemoryError):
            vdev.add_status(VIRTIO_CONFIG_S_FAILED)
            raise
        k.register_netdev(self)
        self.carrier = False
        if has(VIRTIO_NET_F_STATUS):
            k.cpu.schedule(self.virtnet_config_changed_work)
        else:
            self.status = VIRTIO_NET_S_LINK_UP
            self.carrier = True
        k.printk(f"virtio_net {vdev.name} {self.name}: features 0x{vdev.features:x}, "
                 f"MAC {mac_str(self.mac)}")

    def _alloc_buffers(self) -> None:
        """RX and TX buffers, one per ring slot, recycled (Linux allocates page frags).
        Big-packet pages come one chain at a time from :meth:`get_a_page`."""
        k = self.kernel
        if not self.rx_big:
            slot = (self.rx_buf_len + L1_CACHE_BYTES - 1) & ~(L1_CACHE_BYTES - 1)
            base = k.dma_alloc(slot * self.rvq.num, L1_CACHE_BYTES)
            self.rx_pool = [base + slot * i for i in range(self.rvq.num - 1, -1, -1)]
        self.tx_slot = tslot = mergeable_buf_len(self.hdr_len)
        base = k.dma_alloc(tslot * self.svq.num, L1_CACHE_BYTES)
        self.tx_pool = [base + tslot * i for i in range(self.svq.num - 1, -1, -1)]

    # -- open / close ---------------------------------------------------------------------------
    def open(self) -> None:
        """virtnet_open (``ip link set eth0 up``): fill the RX ring, enable both NAPIs; each
        enable polls once in case the device used buffers before."""
        if self.opened:
            return
        self.opened = True
        if not self.try_fill_recv():
            self.kernel.cpu.schedule(self.refill_work)
        self.virtqueue_napi_schedule(self.rx_napi, self.rvq)
        self.virtqueue_napi_schedule(self.tx_napi, self.svq)

    # -- RX ---------------------------------------------------------------------------------------
    def get_a_page(self) -> int:
        """A free page for a big-packet chain (Linux get_a_page: rq->pages, else a new
        page); raises MemoryError when guest RAM is exhausted."""
        pages = self.rx_pages
        if not pages:
            n = self.big_packets_num_skbfrags + 1             # the pages of one chain
            base = self.kernel.dma_alloc(n * PAGE_SIZE, PAGE_SIZE)
            pages.extend(range(base + (n - 1) * PAGE_SIZE, base - 1, -PAGE_SIZE))
        return pages.pop()

    def give_pages(self, pages: tuple[int, ...]) -> None:
        """A chain's pages back to the pool (Linux give_pages)."""
        self.rx_pages.extend(reversed(pages))

    def add_recvbuf_big(self) -> int:
        """One big-packet RX buffer (Linux add_recvbuf_big): ``big_packets_num_skbfrags``
        + 2 device-writable entries, the header alone, the rest of its page from
        PADDED_VNET_HDR_LEN on, then whole pages.  The token is the chain of pages."""
        taken: list[int] = []
        try:
            for _ in range(self.big_packets_num_skbfrags + 1):
                taken.append(self.get_a_page())
        except MemoryError:
            self.give_pages(tuple(taken))
            return -12                                        # -ENOMEM
        pages = tuple(taken)
        first = pages[0]
        sg = [(first, self.hdr_len), (first + PADDED_VNET_HDR_LEN,
                                      PAGE_SIZE - PADDED_VNET_HDR_LEN)]
        sg += [(page, PAGE_SIZE) for page in pages[1:]]
        err = self.rvq.virtqueue_add_inbuf(sg, pages)
        if err:
            self.give_pages(pages)
        return err

    def add_recvbuf(self) -> int:
        """One RX buffer (add_recvbuf_mergeable / add_recvbuf_small): a single
        device-writable descriptor of ``rx_buf_len`` bytes."""
        pool = self.rx_pool
        if pool:
            buf = pool.pop()
        else:
            try:
                buf = self.kernel.dma_alloc(self.rx_buf_len, L1_CACHE_BYTES)
            except MemoryError:
                return -12                                    # -ENOMEM
        err = self.rvq.virtqueue_add_inbuf(((buf, self.rx_buf_len),), buf)
        if err:
            pool.append(buf)
        return err

    @tracepoint("drivers/net/virtio_net.c")
    def try_fill_recv(self) -> bool:
        """Add RX buffers until the ring is full, then kick if the device wants it.
        False when memory ran out (the caller schedules refill_work)."""
        rvq = self.rvq
        oom = False
        add = self.add_recvbuf_big if self.rx_big else self.add_recvbuf
        while rvq.num_free:
            err = add()
            if err:
                oom = err == -12
                break
        if rvq.virtqueue_kick_prepare() and rvq.virtqueue_notify():
            self.stats["rx kicks"] += 1
        return not oom

    def refill_work(self) -> None:
        """Deferred refill after an out-of-memory (Linux refill_work)."""
        if not self.try_fill_recv():
            cpu = self.kernel.cpu
            if self._refill_timer is None:
                self._refill_timer = cpu.timer_new(lambda _o: self.refill_work(), None,
                                                   name="virtnet refill")
            cpu.timer_mod(self._refill_timer, cpu.clock_ns + REFILL_RETRY_NS)

    @tracepoint("drivers/net/virtio_net.c")
    def skb_recv_done(self, rvq: VringVirtqueue) -> None:
        """RX interrupt callback: no more RX interrupts, poll in the softirq."""
        self.virtqueue_napi_schedule(self.rx_napi, rvq)

    def virtqueue_napi_schedule(self, poll: Any, vq: VringVirtqueue) -> None:
        if self.kernel.napi_schedule(poll):
            vq.virtqueue_disable_cb()

    def virtqueue_napi_complete(self, poll: Any, vq: VringVirtqueue, processed: int) -> None:
        """Interrupts back on, then check the ring once more: buffers used in between
        would otherwise wait for an interrupt that never comes."""
        opaque = vq.virtqueue_enable_cb_prepare()
        if self.kernel.napi_complete_done(poll, processed):
            if vq.virtqueue_poll(opaque):
                self.virtqueue_napi_schedule(poll, vq)
        else:
            vq.virtqueue_disable_cb()

    @tracepoint("drivers/net/virtio_net.c")
    def virtnet_poll(self, budget: int) -> int:
        """RX NAPI: clean TX completions, receive up to ``budget`` packets, refill lazily,
        complete."""
        self.virtnet_poll_cleantx()
        received = self.virtnet_receive(budget)
        if received < budget:
            self.virtqueue_napi_complete(self.rx_napi, self.rvq, received)
        return received

    def virtnet_receive(self, budget: int) -> int:
        rvq = self.rvq
        received = 0
        while received < budget:
            got = rvq.virtqueue_get_buf()
            if got is None:
                break
            self.receive_buf(got[0], got[1])
            received += 1
        # Linux 6.1: refill only once more than half of min(budget, ring) is gone
        if rvq.num_free > min(budget, rvq.num) // 2:
            if not self.try_fill_recv():
                self.kernel.cpu.schedule(self.refill_work)
        return received

    @tracepoint("drivers/net/virtio_net.c", show=("len",))
    def receive_buf(self, buf: Any, len: int) -> None:
        """One received packet: check, strip the header, gather mergeable buffers or a
        big packet's pages, check the offload fields, pass the frame up (receive_buf ->
        receive_mergeable / receive_big / receive_small)."""
        stats = self.stats
        hdr_len = self.hdr_len
        if self.rx_big:
            data = self.receive_big(buf, len)
            if data is None:
                return
        else:
            if len < hdr_len + ETH_HLEN or len > self.rx_buf_len:
                stats["rx_length_errors"] += 1
                stats["rx dropped: short packet" if len < hdr_len + ETH_HLEN
                      else "rx dropped: len exceeds buffer"] += 1
                self.rx_pool.append(buf)
                if self.mergeable and len >= 12:
                    self._drop_rest(buf)
                return
            data = self.ram.read(buf, len)
            self.rx_pool.append(buf)
            if self.mergeable:
                num_buf = data[10] | data[11] << 8
                if num_buf > 1:
                    parts = [data]
                    rvq = self.rvq
                    for i in range(1, num_buf):
                        got = rvq.virtqueue_get_buf()
                        if got is None:
                            stats["rx_length_errors"] += 1
                            stats["rx dropped: buffers missing"] += 1
                            self.kernel.printk(f"{self.name}: rx error: {num_buf - i} "
                                               f"buffers out of {num_buf} missing")
                            return
                        b, n = got
                        self.rx_pool.append(b)
                        if n > self.rx_buf_len:
                            stats["rx dropped: len exceeds buffer"] += 1
                            return
                        parts.append(self.ram.read(b, n))
                    data = b"".join(parts)
        if data[0] or data[1]:
            frame = self.virtio_net_hdr_to_skb(data)
            if frame is None:
                return
        else:
            frame = data[hdr_len:]
        self.rx_packets += 1
        self.rx_bytes += len - hdr_len
        self.kernel.netif_receive_skb(self, frame)

    def receive_big(self, pages: tuple[int, ...], len: int) -> bytes | None:
        """Header and frame of a big packet (Linux receive_big -> page_to_skb): the header
        at the start of the first page, the frame from PADDED_VNET_HDR_LEN on and then
        page by page.  The pages go back to the pool; None when the length is bad."""
        stats = self.stats
        hdr_len = self.hdr_len
        self.give_pages(pages)
        if len < hdr_len + ETH_HLEN:
            stats["rx_length_errors"] += 1
            stats["rx dropped: short packet"] += 1
            return None
        size = len - hdr_len
        # what does not fit the skb's head must fit its page frags
        if size - min(size, GOOD_COPY_LEN) > MAX_SKB_FRAGS * PAGE_SIZE:
            stats["rx dropped: too much data"] += 1
            return None
        ram = self.ram
        first = pages[0]
        room = PAGE_SIZE - PADDED_VNET_HDR_LEN
        if size <= room:
            return ram.read(first, hdr_len) + ram.read(first + PADDED_VNET_HDR_LEN, size)
        parts = [ram.read(first, hdr_len), ram.read(first + PADDED_VNET_HDR_LEN, room)]
        size -= room
        for page in pages[1:]:
            if size <= 0:
                break
            parts.append(ram.read(page, min(size, PAGE_SIZE)))
            size -= PAGE_SIZE
        return b"".join(parts)

    def _drop_rest(self, buf: int) -> None:
        """A bad first buffer of a merged packet: its other buffers go too."""
        num_buf = self.ram.lduw(buf + 10)
        for _ in range(1, min(num_buf, self.rvq.num)):
            got = self.rvq.virtqueue_get_buf()
            if got is None:
                return
            self.rx_pool.append(got[0])

    def virtio_net_hdr_to_skb(self, data: bytes) -> bytes | None:
        """The header's offload fields (Linux virtio_net_hdr_to_skb): a GSO type the
        stack knows (TCPv4, TCPv6, UDP, each maybe with ECN) and a non-zero gso_size; a
        NEEDS_CSUM range inside the frame, whose checksum is then finished here, as
        skb_checksum_help would (the simulated stack has no CHECKSUM_PARTIAL).  Returns
        the frame, or None for a bad header ("bad gso": rx_frame_errors)."""
        flags, gso_type, _hl, gso_size, start, offset = _HDR.unpack_from(data)
        frame = data[self.hdr_len:]
        thlen = 0
        why = ""
        if gso_type != VIRTIO_NET_HDR_GSO_NONE:
            thlen = _GSO_THLEN.get(gso_type & ~VIRTIO_NET_HDR_GSO_ECN, -1)
            if thlen < 0:
                why = f"gso_type {gso_type}"
            elif not gso_size:
                why = "gso_size 0"
        if not why and flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            if start + max(thlen, offset + 2) > len(frame):
                why = f"csum_start {start} csum_offset {offset}"
            else:
                buf = bytearray(frame)
                pos = start + offset
                buf[pos:pos + 2] = internet_checksum(buf[start:]).to_bytes(2, "big")
                frame = bytes(buf)
        if why:
            self.stats["rx_frame_errors"] += 1
            self.stats["rx dropped: bad gso"] += 1
            self.kernel.printk(f"{self.name}: bad gso: type: {gso_type}, size: {gso_size} "
                               f"({why})")
            return None
        return frame

    # -- TX ---------------------------------------------------------------------------------------
    @tracepoint("drivers/net/virtio_net.c")
    def start_xmit(self, frame: bytes) -> None:
        """ndo_start_xmit: free finished TX buffers, add header + frame as one readable
        descriptor, stop the queue when it is nearly full, kick if the device wants."""
        svq = self.svq
        while True:
            svq.virtqueue_disable_cb()
            self.free_old_xmit_skbs()
            if svq.virtqueue_enable_cb_delayed():
                break
        n = len(frame)
        if n > ETH_HLEN + ETH_DATA_LEN or n + self.hdr_len > self.tx_slot:
            self.stats["tx dropped: frame longer than the MTU"] += 1
            return
        if self.tx_pool:
            buf = self.tx_pool.pop()
            self.ram.write(buf, self.tx_hdr + frame)
            err = svq.virtqueue_add_outbuf(((buf, n + self.hdr_len),), buf)
            if err:
                self.tx_pool.append(buf)
        else:
            err = -28
        if err:
            self.stats["tx_fifo_errors"] += 1
            self.stats[f"tx dropped: queue failure {err}"] += 1
            self.kernel.printk(f"{self.name}: Unexpected TXQ (0) queue failure: {err}")
        else:
            self.tx_packets += 1
            self.tx_bytes += n
        if svq.num_free < 2 + MAX_SKB_FRAGS or not self.tx_pool:
            self.tx_stopped = True                  # netif_stop_subqueue; TX NAPI wakes it
            self.stats["tx queue stopped"] += 1
        if svq.virtqueue_kick_prepare() and svq.virtqueue_notify():
            self.stats["tx kicks"] += 1


    ndo_start_xmit = start_xmit

    @tracepoint("drivers/net/virtio_net.c")
    def free_old_xmit_skbs(self) -> int:
        """Take back every TX buffer the device has finished with."""
        svq = self.svq
        pool = self.tx_pool
        n = 0
        while True:
            got = svq.virtqueue_get_buf()
            if got is None:
                break
            pool.append(got[0])
            n += 1
        return n

    def virtnet_poll_cleantx(self) -> None:
        """RX NAPI also cleans the paired TX queue (napi_tx)."""
        svq = self.svq
        while True:
            svq.virtqueue_disable_cb()
            self.free_old_xmit_skbs()
            if svq.virtqueue_enable_cb_delayed():
                break
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        if self.tx_stopped and self.svq.num_free >= 2 + MAX_SKB_FRAGS and self.tx_pool:
            self.netif_wake_queue()

    @tracepoint("drivers/net/virtio_net.c")
    def skb_xmit_done(self, svq: VringVirtqueue) -> None:
        """TX interrupt callback: no more TX interrupts, clean up in TX NAPI."""
        svq.virtqueue_disable_cb()
        self.virtqueue_napi_schedule(self.tx_napi, svq)

    @tracepoint("drivers/net/virtio_net.c")
    def virtnet_poll_tx(self, budget: int) -> int:
        """TX NAPI: free finished buffers, wake the queue, re-enable TX interrupts."""
        svq = self.svq
        svq.virtqueue_disable_cb()
        self.free_old_xmit_skbs()
        self._maybe_wake()
        opaque = svq.virtqueue_enable_cb_prepare()
        done = self.kernel.napi_complete_done(self.tx_napi, 0)
        if not done:
            svq.virtqueue_disable_cb()
        elif svq.virtqueue_poll(opaque):
            self.virtqueue_napi_schedule(self.tx_napi, svq)
        return 0

    # -- configuration changes (link status) --------------------------------------------------
    def virtnet_config_changed(self) -> None:
        self.kernel.cpu.schedule(self.virtnet_config_changed_work)

    @tracepoint("drivers/net/virtio_net.c")
    def virtnet_config_changed_work(self) -> None:
        """Read the link status from device configuration; carrier on or off."""
        if not self.vdev.has_feature(VIRTIO_NET_F_STATUS):
            return
        v = self.vdev.cread16(CONFIG_STATUS) & VIRTIO_NET_S_LINK_UP
        if v == self.status:
            return
        self.status = v
        if v:
            self.carrier = True
            self.kernel.printk(f"{self.name}: link up")
            self.netif_wake_queue()
        else:
            self.carrier = False
            self.kernel.printk(f"{self.name}: link down")

    @property
    def mac_str(self) -> str:
        return mac_str(self.mac)


def virtnet_probe(kernel: "GuestKernel", devfn: int, pci_device: int) -> VirtNet:
    """Bind virtio-net to a virtio PCI function (virtio_pci_probe, then virtnet_probe)."""
    kernel.pci_enable_device(devfn)
    kernel.pci_set_master(devfn)
    vdev = VirtioPCIDevice(kernel, devfn, pci_device)
    if vdev.device_id != VIRTIO_ID_NET:
        raise GuestError(f"{vdev.name}: virtio device type {vdev.device_id} is not a NIC")
    dev = VirtNet(kernel, vdev)
    dev.probe()
    return dev
