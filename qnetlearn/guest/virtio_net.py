"""The virtio-net driver of the simulated guest (after Linux 6.1 drivers/net/virtio_net.c).

What it does, in the order a packet meets it:

* **Probe** (virtnet_probe): negotiate features (VERSION_1, MAC, STATUS, MRG_RXBUF,
  EVENT_IDX, INDIRECT_DESC, CSUM, GUEST_CSUM: whatever the device offers of these), read the
  MAC from device configuration, create receiveq 0 and transmitq 0 with one MSI-X vector
  each plus one for configuration changes, DRIVER_OK, register ``eth0``.
* **Open** (virtnet_open): fill the whole RX ring with device-writable buffers (mergeable:
  one 1536-byte buffer per descriptor, as the golden recording shows) and kick once.
* **RX**: the RX interrupt runs ``skb_recv_done``, which turns RX interrupts off and
  schedules NAPI; ``virtnet_poll`` takes up to 64 used buffers, strips the
  ``virtio_net_hdr`` (12 bytes with VERSION_1 or MRG_RXBUF, else 10) and passes each frame
  up, refills only once more than half of min(budget, ring) buffers are gone (so a ping
  costs no RX kick), then re-enables interrupts and checks for a race.
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
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_S_LINK_UP)

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import GuestKernel

VIRTIO_ID_NET = 1
# feature bits (specs.md §4.2)
VIRTIO_NET_F_GUEST_TSO4 = 7
VIRTIO_NET_F_CTRL_VQ = 17
#: what this driver asks for (the ring features come from the transport)
DRIVER_FEATURES = (1 << VIRTIO_NET_F_CSUM | 1 << VIRTIO_NET_F_GUEST_CSUM |
                   1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_MRG_RXBUF |
                   1 << VIRTIO_NET_F_STATUS)
# device configuration (specs.md §4.3)
CONFIG_MAC = 0
CONFIG_STATUS = 6
# struct virtio_net_hdr (specs.md §4.4)
VIRTIO_NET_HDR_F_DATA_VALID = 2
_HDR = struct.Struct("<BBHHHHH")

ETH_HLEN = 14
VLAN_HLEN = 4
ETH_DATA_LEN = 1500
GOOD_PACKET_LEN = ETH_HLEN + VLAN_HLEN + ETH_DATA_LEN      # 1518
L1_CACHE_BYTES = 64
MAX_SKB_FRAGS = 17
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
        self.rx_buf_len = 0
        self.rvq: VringVirtqueue | None = None
        self.svq: VringVirtqueue | None = None
        self.status = 0                      # the link status we last acted on
        self.carrier = False
        self.tx_stopped = False
        self.opened = False
        self.tx_backlog: deque[bytes] = deque()
        self.rx_pool: list[int] = []         # free RX buffer addresses
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
            self.hdr_len = 12 if self.mergeable or has(VIRTIO_F_VERSION_1) else 10
            self.tx_hdr = bytes(self.hdr_len)         # no offloads asked: all zero
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
        """RX and TX buffers, one per ring slot, recycled (Linux allocates page frags)."""
        k = self.kernel
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
        while rvq.num_free:
            err = self.add_recvbuf()
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
    def receive_buf(self, buf: int, len: int) -> None:
        """One received packet: check, strip the header, gather mergeable buffers, pass
        the frame up (receive_buf -> receive_mergeable / receive_small)."""
        stats = self.stats
        hdr_len = self.hdr_len
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
                        self.kernel.printk(f"{self.name}: rx error: {num_buf - i} buffers "
                                           f"out of {num_buf} missing")
                        return
                    b, n = got
                    self.rx_pool.append(b)
                    if n > self.rx_buf_len:
                        stats["rx dropped: len exceeds buffer"] += 1
                        return
                    parts.append(self.ram.read(b, n))
                data = b"".join(parts)
        flags = data[0]
        if data[1] != VIRTIO_NET_HDR_GSO_NONE:
            stats["rx dropped: GSO not negotiated"] += 1
            return
        frame = data[hdr_len:]
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            frame = self._complete_csum(data)
            if frame is None:
                stats["rx dropped: bad csum_start/csum_offset"] += 1
                return
        self.rx_packets += 1
        self.rx_bytes += len - hdr_len
        self.kernel.netif_receive_skb(self, frame)

    def _drop_rest(self, buf: int) -> None:
        """A bad first buffer of a merged packet: its other buffers go too."""
        num_buf = self.ram.lduw(buf + 10)
        for _ in range(1, min(num_buf, self.rvq.num)):
            got = self.rvq.virtqueue_get_buf()
            if got is None:
                return
            self.rx_pool.append(got[0])

    def _complete_csum(self, data: bytes) -> bytes | None:
        """A partially checksummed frame (NEEDS_CSUM, only with GUEST_CSUM): finish the
        checksum from csum_start, as skb_checksum_help would."""
        _f, _g, _hl, _gs, start, offset, _n = _HDR.unpack_from(data.ljust(12, b"\0"))
        frame = bytearray(data[self.hdr_len:])
        pos = start + offset
        if start >= len(frame) or pos + 2 > len(frame):
            return None
        csum = internet_checksum(frame[start:])
        frame[pos:pos + 2] = csum.to_bytes(2, "big")
        return bytes(frame)

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
