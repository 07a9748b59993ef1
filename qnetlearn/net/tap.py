"""The TAP backend (QEMU's net/tap.c) and the host end of the TAP device.

QEMU reads frames the host kernel wrote into the TAP device (``tap_send``, when the main
loop sees the fd readable) and writes the guest's frames to it (``tap_receive_iov``).  When
the peer cannot take a frame, ``tap_send`` stops reading the fd (``tap_read_poll(s,
false)``) until ``tap_send_completed`` says the queued frame went through: the kernel keeps
the rest, nothing is dropped.

The host end here is simulated: :class:`SimTap` plays the kernel's TAP device, and
:class:`HostEnd` the host's network stack behind it (10.0.2.2, answering ARP and pings), so
``vm.host().ping()`` works with no privileges.  ``net/tap_linux.py`` opens a real one.
"""
from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..trace import Stats, tracepoint
from ..standard_headers.virtio_net import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP)
from .net import (NetClientInfo, NetClientState, qemu_new_net_client, qemu_send_packet_async,
                  qemu_set_offload)
from .stack import NetStack

if TYPE_CHECKING:  # pragma: no cover
    from ..system.main_loop import MainLoop

#: at most this many frames per tap_send call, as QEMU's tap_send loop
TAP_SEND_BURST = 50
HOST_MAC = "02:00:0a:00:02:02"   # the host TAP's MAC in the golden recordings
HOST_IP = "10.0.2.2"


# <linux/if_tun.h>: the TUNSETOFFLOAD bits
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
#: the TUNSETOFFLOAD bit each virtio_net_hdr gso_type needs (ECN: also TUN_F_TSO_ECN)
GSO_NEEDS = {VIRTIO_NET_HDR_GSO_TCPV4: TUN_F_TSO4, VIRTIO_NET_HDR_GSO_TCPV6: TUN_F_TSO6,
              VIRTIO_NET_HDR_GSO_UDP: TUN_F_UFO}


class SimTap:
    """The host kernel's TAP device, simulated: two frame queues and the fd's readiness.

    Like a TAP opened with IFF_VNET_HDR (QEMU's default when the kernel offers it), every
    frame crossing the fd carries a virtio_net_hdr of ``vnet_hdr_sz`` bytes (10, or what
    TUNSETVNETHDRSZ set); the kernel side completes a NEEDS_CSUM checksum, as tun does.
    ``offload`` holds the TUNSETOFFLOAD bits: which partial-checksum and unsegmented
    (GSO) frames the kernel may hand to QEMU (none until the NIC's guest takes them).
    """

    def __init__(self, name: str, vnet_hdr: bool = True) -> None:
        self.name = name
        self.vnet_hdr_sz = 10 if vnet_hdr else 0
        self.offload = 0
        self.to_qemu: deque[bytes] = deque()      # frames the host wrote; QEMU reads them
        self.on_frame: Callable[[bytes], None] | None = None   # the host stack's input
        self.stats = Stats()

    def set_offload(self, offload: int) -> bool:
        """TUNSETOFFLOAD; a kernel since 4.14.x takes every bit, TUN_F_UFO included."""
        self.offload = offload
        return True

    def host_write(self, frame: bytes, vnet_hdr: bytes = b"") -> None:
        """The host kernel queues a frame for the TAP's reader (QEMU).

        ``vnet_hdr`` (10 bytes, struct virtio_net_hdr) describes an offloaded frame: a
        partial checksum (NEEDS_CSUM) or a TCP/UDP super-frame (gso_type).  The kernel
        only hands those over when TUNSETOFFLOAD allowed them; otherwise it would have
        checksummed or segmented the frame itself, which this simulation does not do.
        """
        n = self.vnet_hdr_sz
        if vnet_hdr:
            if not n:
                raise ValueError(f"{self.name}: an offloaded frame needs IFF_VNET_HDR")
            flags, gso_type = vnet_hdr[0], vnet_hdr[1]
            need = (TUN_F_CSUM if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM else 0) | \
                GSO_NEEDS.get(gso_type & ~VIRTIO_NET_HDR_GSO_ECN, 0) | \
                (TUN_F_TSO_ECN if gso_type & VIRTIO_NET_HDR_GSO_ECN else 0)
            if gso_type and (gso_type & ~VIRTIO_NET_HDR_GSO_ECN) not in GSO_NEEDS or \
                    need & ~self.offload:
                raise ValueError(f"{self.name}: TUNSETOFFLOAD 0x{self.offload:x} does not let "
                                 f"the kernel pass flags 0x{flags:x} gso_type 0x{gso_type:x}")
            self.to_qemu.append(vnet_hdr[:10].ljust(n, b"\0") + frame)
            return
        self.to_qemu.append(bytes(n) + frame if n else frame)

    # the fd as QEMU's main loop sees it
    def readable(self) -> bool:
        return bool(self.to_qemu)

    def writable(self) -> bool:
        return True

    def read(self) -> bytes | None:
        """``read(tapfd)``: the next frame the host wrote, or None (EAGAIN)."""
        if not self.to_qemu:
            return None
        return self.to_qemu.popleft()

    def write(self, data: bytes) -> int:
        """``writev(tapfd)``: the host kernel receives a frame from the guest."""
        n = self.vnet_hdr_sz
        frame = data[n:] if n else data
        if n and data[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            frame = _complete_csum(frame, *struct.unpack_from("<HH", data, 6))
        self.stats["frames to host"] += 1
        if self.on_frame is not None:
            self.on_frame(frame)
        return len(data)


def _complete_csum(frame: bytes, start: int, offset: int) -> bytes:
    """What the kernel does for a CHECKSUM_PARTIAL frame: fold the sum from csum_start
    and store it at csum_start + csum_offset (the field holds the pseudo-header sum)."""
    from .stack import internet_checksum
    buf = bytearray(frame)
    if start + offset + 2 > len(buf):
        return frame
    csum = internet_checksum(bytes(buf[start:]))
    struct.pack_into("!H", buf, start + offset, csum)
    return bytes(buf)


class TAPState:
    """A ``-netdev tap``: the backend's NetClientState and its fd."""

    def __init__(self, loop: "MainLoop", peer: NetClientState | None, name: str, fd: Any,
                 ifname: str, opts: dict[str, str] | None = None) -> None:
        self.loop = loop
        self.fd = fd
        self.ifname = ifname
        self.opts = dict(opts or {})
        self.read_poll = False
        self.write_poll = False
        self.enabled = True
        self.host_vnet_hdr_len = getattr(fd, "vnet_hdr_sz", 0)
        self.using_vnet_hdr = False
        #: ``capture(direction, frame)`` sees every frame crossing the fd, without its
        #: virtio_net_hdr ("to-guest" read, "to-host" written): a pcap of this netdev
        self.capture: Callable[[str, bytes], None] | None = None
        self.closed = False
        self.nc = qemu_new_net_client(net_tap_info, peer, "tap", name, self)
        # net_tap_fd_init: can the kernel take UFO?  Then no offloads until a NIC asks
        self.has_ufo = tap_probe_has_ufo(fd)
        qemu_set_offload(self.nc, False, False, False, False, False)
        tap_read_poll(self, True)

    def close(self) -> None:
        """tap_cleanup: stop watching the fd, then close it (a real TAP runs its downscript
        and disappears).  Calling it twice is harmless."""
        if self.closed:
            return
        self.closed = True
        self.read_poll = self.write_poll = False
        tap_update_fd_handler(self)
        close = getattr(self.fd, "close", None)
        if close is not None:
            close()


def tap_update_fd_handler(s: TAPState) -> None:
    """Watch the fd for reading while ``read_poll``, for writing while ``write_poll``."""
    fd = s.fd.fileno() if hasattr(s.fd, "fileno") else s.fd
    s.loop.qemu_set_fd_handler(fd, tap_send if s.read_poll and s.enabled else None,
                               tap_writable if s.write_poll and s.enabled else None, s)


def tap_read_poll(s: TAPState, enable: bool) -> None:
    s.read_poll = enable
    tap_update_fd_handler(s)


def tap_write_poll(s: TAPState, enable: bool) -> None:
    s.write_poll = enable
    tap_update_fd_handler(s)


def tap_writable(s: TAPState) -> None:
    """The fd can take frames again: stop watching for it and flush what waited."""
    from .net import qemu_flush_queued_packets
    tap_write_poll(s, False)
    qemu_flush_queued_packets(s.nc)


def tap_send_completed(nc: NetClientState, len: int) -> None:
    """The frame that had to wait was delivered (or purged): read the fd again."""
    tap_read_poll(nc.opaque, True)


@tracepoint("net/tap.c")
def tap_send(s: TAPState) -> None:
    """The TAP fd is readable: pass up to 50 frames to the peer, pausing on back-pressure."""
    for _ in range(TAP_SEND_BURST):
        buf = s.fd.read()
        if buf is None:
            break
        if s.capture is not None:
            s.capture("to-guest", buf[s.host_vnet_hdr_len:])
        if s.host_vnet_hdr_len and not s.using_vnet_hdr:
            buf = buf[s.host_vnet_hdr_len:]
        size = qemu_send_packet_async(s.nc, buf, len(buf), tap_send_completed)
        if size == 0:
            tap_read_poll(s, False)
            break
        if size < 0:
            break


@tracepoint("net/tap.c")
def tap_receive_iov(nc: NetClientState, iov: list[bytes]) -> int:
    """A frame for the host: write it to the fd; EAGAIN makes the net layer queue it."""
    s: TAPState = nc.opaque
    data = iov[0] if len(iov) == 1 else b"".join(iov)
    if s.host_vnet_hdr_len and not s.using_vnet_hdr:
        data = bytes(s.host_vnet_hdr_len) + data
    n = s.fd.write(data)
    if n is None:           # EAGAIN
        tap_write_poll(s, True)
        return 0
    if n < 0:               # a write error: the frame is dropped (counted by the sender)
        return n
    if s.capture is not None:
        s.capture("to-host", data[s.host_vnet_hdr_len:])
    return len(iov[0]) if len(iov) == 1 else sum(map(len, iov))


def tap_cleanup(nc: NetClientState) -> None:
    nc.opaque.close()


def tap_has_vnet_hdr(nc: NetClientState) -> bool:
    return nc.opaque.host_vnet_hdr_len != 0


def tap_set_vnet_hdr_len(nc: NetClientState, n: int) -> None:
    """TUNSETVNETHDRSZ: the NIC wants headers of ``n`` bytes (12 for virtio 1.x)."""
    s: TAPState = nc.opaque
    s.host_vnet_hdr_len = n
    s.fd.vnet_hdr_sz = n
    nc.vnet_hdr_len = n if s.using_vnet_hdr else 0


def tap_using_vnet_hdr(nc: NetClientState, enable: bool) -> None:
    """The peer NIC takes the header: frames cross with it, in both directions."""
    s: TAPState = nc.opaque
    s.using_vnet_hdr = enable
    nc.vnet_hdr_len = s.host_vnet_hdr_len if enable else 0


def tap_probe_has_ufo(fd: Any) -> bool:
    """net/tap-linux.c tap_probe_has_ufo: does TUNSETOFFLOAD take TUN_F_CSUM | TUN_F_UFO?"""
    return bool(fd.set_offload(TUN_F_CSUM | TUN_F_UFO))


def tap_fd_set_offload(fd: Any, csum: bool, tso4: bool, tso6: bool, ecn: bool,
                       ufo: bool) -> None:
    """net/tap-linux.c tap_fd_set_offload: the segmentation offloads only come with the
    checksum one; retry without UFO if the kernel refuses it."""
    offload = 0
    if csum:
        offload = TUN_F_CSUM | (TUN_F_TSO4 if tso4 else 0) | (TUN_F_TSO6 if tso6 else 0)
        if (tso4 or tso6) and ecn:
            offload |= TUN_F_TSO_ECN
        if ufo:
            offload |= TUN_F_UFO
    if not fd.set_offload(offload):
        fd.set_offload(offload & ~TUN_F_UFO)


def tap_has_ufo(nc: NetClientState) -> bool:
    return nc.opaque.has_ufo


def tap_set_offload(nc: NetClientState, csum: bool, tso4: bool, tso6: bool, ecn: bool,
                    ufo: bool) -> None:
    """``nc->info->set_offload``: the NIC says which offloaded frames its guest takes."""
    s: TAPState = nc.opaque
    if not s.closed:
        tap_fd_set_offload(s.fd, csum, tso4, tso6, ecn, ufo)


net_tap_info = NetClientInfo(type="tap", receive_iov=tap_receive_iov, cleanup=tap_cleanup,
                             has_vnet_hdr=tap_has_vnet_hdr, set_vnet_hdr_len=tap_set_vnet_hdr_len,
                             using_vnet_hdr=tap_using_vnet_hdr, has_ufo=tap_has_ufo,
                             set_offload=tap_set_offload)


class HostEnd:
    """What the host kernel sees of a TAP: send and receive frames, an IP stack that pings.

    API.md, "The host end of a TAP netdev".
    """

    def __init__(self, tap: TAPState, run: Callable[..., int], clock_ns: Callable[[], int],
                 ip: str = HOST_IP, mac: str = HOST_MAC, recv_keep: int = 4096) -> None:
        self.tap = tap
        self.dev: SimTap = tap.fd
        self._run = run
        self.received: deque[bytes] = deque()
        self.recv_keep = recv_keep
        self.stats = Stats()
        self.stack = NetStack(mac, ip, self.send, clock_ns, name=f"host:{tap.ifname}")
        self.dev.on_frame = self._from_guest
        self._ident = 0x4242

    @property
    def ip(self) -> str:
        return self.stack.ip

    @property
    def mac(self) -> str:
        from .stack import mac_str
        return mac_str(self.stack.mac)

    def _from_guest(self, frame: bytes) -> None:
        if len(self.received) >= self.recv_keep:
            self.received.popleft()
            self.stats["recv() buffer overflow"] += 1
        self.received.append(frame)
        self.stack.input(frame)

    def send(self, frame: bytes) -> None:
        """Write a frame into the TAP, toward the guest (it waits in the kernel until read)."""
        self.dev.host_write(frame)
        self.stats["frames sent"] += 1

    def recv(self) -> bytes | None:
        """The oldest frame the guest sent out through the TAP, or None."""
        return self.received.popleft() if self.received else None

    def ping(self, ip: str | None = None, count: int = 1, timeout_events: int = 100_000,
             guest_ip: str | None = None) -> list[float | None]:
        """ICMP echo from the host stack; round-trip times in virtual microseconds."""
        dst = ip or guest_ip or self.default_peer_ip
        self._ident += 1
        ident = self._ident
        rtts: list[float | None] = []
        st = self.stack
        for seq in range(1, count + 1):
            key = (ident, seq)
            st.ping(dst, ident, seq)
            self._run(until=lambda: key in st.echo_replies, max_events=timeout_events)
            if key in st.echo_replies:
                rtts.append((st.echo_replies[key] - st.echo_sent[key]) / 1000)
            else:
                rtts.append(None)
        self._run(max_events=timeout_events)
        return rtts

    default_peer_ip = "10.0.2.15"
