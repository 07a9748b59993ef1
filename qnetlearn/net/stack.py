"""A small Ethernet/ARP/IPv4/ICMP/UDP stack for the simulated ends of the network path.

Both the host kernel's side of a TAP device and the simulated guest need a peer that
answers ARP and ping the way Linux does, so that a frame crossing the emulated NIC is a
real, checksummed frame that tshark/Wireshark decode. Sources for every field are in
specs.md section 8: Ethernet II, ARP (RFC 826), IPv4 (RFC 791), the Internet checksum
(RFC 1071), ICMP echo (RFC 792), UDP (RFC 768) and the UDP echo service (RFC 862).

Speed matters: a ping round trip crosses this code three times (build the request,
answer it, take the reply), and the emulator must do 20,000 round trips a second. So the
receive path is hand-written with precompiled :class:`struct.Struct` objects and the
checksum sums 16-bit words through one big integer instead of a Python loop.

Everything received is counted: a frame is either handled (``rx_arp``, ``rx_udp``,
``rx_icmp_echo_request``, ``rx_icmp_echo_reply``) or dropped under ``"drop: <reason>"``,
and malformed input never raises.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "BROADCAST_MAC", "ETH_P_IP", "ETH_P_ARP", "IPPROTO_ICMP", "IPPROTO_UDP",
    "ICMP_ECHO_REPLY", "ICMP_ECHO_REQUEST", "ARP_REQUEST", "ARP_REPLY",
    "internet_checksum", "mac_bytes", "mac_str", "ping_payload",
    "build_echo_request", "build_arp", "build_udp", "parse_frame", "Frame", "NetStack",
]

BROADCAST_MAC = b"\xff" * 6
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
IPPROTO_ICMP = 1
IPPROTO_UDP = 17
ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ARP_REQUEST = 1
ARP_REPLY = 2
IP_DF = 0x4000            # RFC 791 3.1: "Don't Fragment" flag in the flags/offset word
DEFAULT_TTL = 64          # Linux net.ipv4.ip_default_ttl
MTU = 1500                # Ethernet payload limit; we never fragment

ETH_HLEN = 14
_ARP_LEN = 28
_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")                 # RFC 791 3.1, without options
_ARP = struct.Struct("!HHBBH6s4s6s4s")                 # RFC 826 for Ethernet/IPv4
_ICMP_ECHO = struct.Struct("!BBHHH")                   # RFC 792 echo header
_UDP = struct.Struct("!HHHH")                          # RFC 768
_ETH_IP_ICMP = struct.Struct("!6s6sHBBHHHBBH4s4sBBHHH")   # 14 + 20 + 8 = 42 bytes
_ETH_IP_UDP = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")     # 14 + 20 + 8 = 42 bytes
_ETH_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")           # 14 + 28 = 42 bytes
_TIMEVAL = struct.Struct("<qq")                        # x86-64 struct timeval
_from_bytes = int.from_bytes


# --------------------------------------------------------------------------------------
# RFC 1071 Internet checksum


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Return the ones' complement of the ones' complement sum of ``data`` (RFC 1071).

    The 16-bit words are big-endian; an odd final byte is padded with a zero byte.
    ``initial`` is a partial sum added in (e.g. the UDP pseudo-header words, RFC 768);
    it may be any non-negative integer, carries are folded. Verifying a packet that
    holds its checksum gives 0.

    Why it is fast: since 2**16 = 1 (mod 0xFFFF), the end-around-carry sum of the words
    is the whole buffer read as one big integer, reduced mod 0xFFFF (RFC 1071 2.(E)
    "deferred carries" taken to its limit). Both steps run in C. The sum is 0 only when
    every word is 0; any other multiple of 0xFFFF folds to 0xFFFF ("negative zero").
    """
    value = _from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    value += initial
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return ~folded & 0xFFFF


# --------------------------------------------------------------------------------------
# Addresses

_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")


def mac_bytes(mac: str | bytes | bytearray) -> bytes:
    """``"52:54:00:12:34:56"`` (or ``-`` separated, or 6 raw bytes) -> 6 bytes; else ValueError."""
    if isinstance(mac, (bytes, bytearray, memoryview)):
        raw = bytes(mac)
        if len(raw) != 6:
            raise ValueError(f"a MAC address is 6 bytes, got {len(raw)}")
        return raw
    if isinstance(mac, str) and _MAC_RE.fullmatch(mac):
        return bytes.fromhex(mac.replace(mac[2], ""))
    raise ValueError(f"not a MAC address: {mac!r} (expected e.g. '52:54:00:12:34:56')")


def mac_str(mac: bytes | bytearray | memoryview) -> str:
    """6 bytes -> ``"52:54:00:12:34:56"`` (lower case, as ``ip link`` prints it)."""
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    return bytes(mac).hex(":")


@functools.lru_cache(maxsize=1024)
def _ip4(ip: str) -> bytes:
    """Dotted quad -> 4 bytes, strictly (``inet_aton`` would accept ``"10.1"``)."""
    if not isinstance(ip, str):
        raise ValueError(f"an IPv4 address is a dotted-quad string, got {ip!r}")
    try:
        return ipaddress.IPv4Address(ip).packed
    except (ipaddress.AddressValueError, TypeError):
        raise ValueError(f"not an IPv4 address: {ip!r}") from None


_ntoa = socket.inet_ntoa


def _check_u16(name: str, value: int, top: int = 0xFFFF) -> None:
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be 0..{top}, got {value}")


# --------------------------------------------------------------------------------------
# Frame builders


def ping_payload(time_ns: int = 0, size: int = 56) -> bytes:
    """The data a Linux ``ping`` (iputils) sends: ``size`` bytes where byte i is i (mod 256),
    the first 16 overwritten by a little-endian x86-64 ``struct timeval`` of the send time.

    56 bytes give the classic 98-byte frame (14 + 20 + 8 + 56, specs.md section 8). iputils
    fills data byte i with i, then copies the 16-byte timeval over the start, so the bytes
    after the timestamp are 0x10, 0x11, ... 0x37.
    """
    if size == 56:
        return _TIMEVAL.pack(time_ns // 1_000_000_000, (time_ns // 1000) % 1_000_000) + _PING_TAIL
    data = bytearray(i & 0xFF for i in range(size))
    if size >= _TIMEVAL.size:
        _TIMEVAL.pack_into(data, 0, time_ns // 1_000_000_000, (time_ns // 1000) % 1_000_000)
    return bytes(data)


_PING_TAIL = bytes(range(16, 56))


def _ipv4_checksum(total_len: int, ip_id: int, flags: int, ttl: int, proto: int,
                   addrs: bytes) -> int:
    """Header checksum of a 20-byte IPv4 header (version 4, IHL 5, TOS 0) from its fields.

    ``addrs`` is source + destination (8 bytes). Adding the fields as numbers avoids
    packing the header twice; the addresses go in as one integer mod 0xFFFF, which is
    congruent to the sum of their 16-bit words (RFC 1071 2.(A), 2.(E)). The sum is never 0
    (0x4500 is in it), so a multiple of 0xFFFF means "negative zero" and checksum 0.
    """
    rem = (0x4500 + total_len + ip_id + flags + (ttl << 8) + proto
           + _from_bytes(addrs, "big")) % 0xFFFF
    return 0xFFFF - rem if rem else 0


def _addr_sum(addr4: bytes) -> int:
    value = _from_bytes(addr4, "big")
    return (value >> 16) + (value & 0xFFFF)


def _echo_frame(src_mac: bytes, dst_mac: bytes, src4: bytes, dst4: bytes, icmp_type: int,
                ident: int, seq: int, data: bytes, ip_id: int, ttl: int, flags: int) -> bytes:
    """One Ethernet frame carrying an ICMP echo request/reply (RFC 792), checksums filled in.

    Both checksums are computed inline (this runs for every ping): the IPv4 header one as
    in :func:`_ipv4_checksum`, the ICMP one over header words (type/code, ident, seq) plus
    the data read as one integer, as in :func:`internet_checksum`, without copying.
    """
    total_len = 28 + len(data)
    rem = (0x4500 + total_len + ip_id + flags + (ttl << 8) + IPPROTO_ICMP
           + _from_bytes(src4 + dst4, "big")) % 0xFFFF
    ip_csum = 0xFFFF - rem if rem else 0
    value = (_from_bytes(data, "big") << ((len(data) & 1) << 3)) + (icmp_type << 8) + ident + seq
    rem = value % 0xFFFF
    icmp_csum = 0xFFFF - rem if rem else (0 if value else 0xFFFF)
    return _ETH_IP_ICMP.pack(dst_mac, src_mac, ETH_P_IP,
                             0x45, 0, total_len, ip_id, flags, ttl, IPPROTO_ICMP, ip_csum,
                             src4, dst4,
                             icmp_type, 0, icmp_csum, ident, seq) + data


def _udp_frame(src_mac: bytes, dst_mac: bytes, src4: bytes, dst4: bytes, sport: int,
               dport: int, data: bytes, ip_id: int, ttl: int, flags: int) -> bytes:
    """One Ethernet frame carrying a UDP datagram, with the RFC 768 pseudo-header checksum.

    A computed checksum of 0 is sent as 0xFFFF, because 0 means "no checksum" (RFC 768).
    """
    udp_len = 8 + len(data)
    total_len = 20 + udp_len
    addrs = src4 + dst4
    # pseudo header (src, dst, zero+proto, UDP length) + UDP header words (sport, dport,
    # length, checksum 0) + data
    udp_csum = internet_checksum(
        data, _from_bytes(addrs, "big") % 0xFFFF + IPPROTO_UDP + udp_len
        + sport + dport + udp_len) or 0xFFFF
    return _ETH_IP_UDP.pack(
        dst_mac, src_mac, ETH_P_IP,
        0x45, 0, total_len, ip_id, flags, ttl, IPPROTO_UDP,
        _ipv4_checksum(total_len, ip_id, flags, ttl, IPPROTO_UDP, addrs),
        src4, dst4,
        sport, dport, udp_len, udp_csum,
    ) + data


def build_echo_request(src_mac: str | bytes, dst_mac: str | bytes, src_ip: str, dst_ip: str,
                       ident: int, seq: int, payload: bytes | None = None, ip_id: int = 0,
                       ttl: int = DEFAULT_TTL, *, time_ns: int = 0, df: bool = True) -> bytes:
    """An Ethernet frame with an ICMP echo request, as Linux ``ping`` sends it (RFC 792).

    ``payload=None`` gives :func:`ping_payload` (timestamp ``time_ns``), so the frame is
    98 bytes. DF is set like Linux ping does (path MTU discovery). No padding, no FCS.
    """
    _check_u16("ident", ident)
    _check_u16("seq", seq)
    _check_u16("ip_id", ip_id)
    _check_u16("ttl", ttl, 0xFF)
    data = ping_payload(time_ns) if payload is None else bytes(payload)
    return _echo_frame(mac_bytes(src_mac), mac_bytes(dst_mac), _ip4(src_ip), _ip4(dst_ip),
                       ICMP_ECHO_REQUEST, ident, seq, data, ip_id, ttl,
                       IP_DF if df else 0)


def build_udp(src_mac: str | bytes, dst_mac: str | bytes, src_ip: str, dst_ip: str,
              sport: int, dport: int, payload: bytes, ip_id: int = 0,
              ttl: int = DEFAULT_TTL, *, df: bool = True) -> bytes:
    """An Ethernet frame with a UDP datagram, checksum always computed (RFC 768)."""
    for name, value in (("sport", sport), ("dport", dport), ("ip_id", ip_id)):
        _check_u16(name, value)
    _check_u16("ttl", ttl, 0xFF)
    return _udp_frame(mac_bytes(src_mac), mac_bytes(dst_mac), _ip4(src_ip), _ip4(dst_ip),
                      sport, dport, bytes(payload), ip_id, ttl, IP_DF if df else 0)


def build_arp(op: int, sender_mac: str | bytes, sender_ip: str, target_mac: str | bytes,
              target_ip: str, eth_dst: str | bytes | None = None) -> bytes:
    """An Ethernet frame with an ARP request (op 1) or reply (op 2), 42 bytes (RFC 826).

    ``eth_dst`` defaults to broadcast for a request and to ``target_mac`` for a reply.
    """
    sha, tha = mac_bytes(sender_mac), mac_bytes(target_mac)
    if eth_dst is None:
        dst = BROADCAST_MAC if op == ARP_REQUEST else tha
    else:
        dst = mac_bytes(eth_dst)
    return _ETH_ARP.pack(dst, sha, ETH_P_ARP, 1, ETH_P_IP, 6, 4, op,
                         sha, _ip4(sender_ip), tha, _ip4(target_ip))


# --------------------------------------------------------------------------------------
# Decoding for traces and viewers


def _mac_text(mac: bytes | None) -> str:
    return "?" if mac is None else mac_str(mac)


@dataclass(slots=True)
class Frame:
    """A decoded frame, for tracing, pcap viewers and tests (not used on the fast path).

    Fields that do not apply are None. ``error`` names the first malformation (the same
    words as the stack's drop reason); ``checksums_ok`` is True only when every checksum
    present (IPv4 header, ICMP, UDP unless 0) was verified.
    """

    length: int
    dst: bytes | None = None
    src: bytes | None = None
    ethertype: int | None = None
    # ARP (RFC 826)
    arp_op: int | None = None
    sender_mac: bytes | None = None
    sender_ip: str | None = None
    target_mac: bytes | None = None
    target_ip: str | None = None
    # IPv4 (RFC 791)
    src_ip: str | None = None
    dst_ip: str | None = None
    proto: int | None = None
    ttl: int | None = None
    ip_id: int | None = None
    ip_flags: int | None = None
    # ICMP (RFC 792)
    type: int | None = None
    code: int | None = None
    ident: int | None = None
    seq: int | None = None
    # UDP (RFC 768)
    sport: int | None = None
    dport: int | None = None
    payload: bytes | None = None      # UDP data, or ICMP echo data
    checksums_ok: bool = True
    error: str | None = None

    def summary(self) -> str:
        """One line in the spirit of tcpdump, e.g.
        ``"ICMP echo request 10.0.2.2 > 10.0.2.15 id 0x1234 seq 1"``."""
        text = self._describe()
        if self.error:
            text += f" [malformed: {self.error}]"
        elif not self.checksums_ok:
            text += " [bad checksum]"
        return text

    def _describe(self) -> str:
        if self.ethertype is None:
            return f"truncated frame, {self.length} bytes"
        if self.arp_op is not None:
            if self.arp_op == ARP_REQUEST:
                return f"ARP request who-has {self.target_ip} tell {self.sender_ip}"
            if self.arp_op == ARP_REPLY:
                return f"ARP reply {self.sender_ip} is-at {_mac_text(self.sender_mac)}"
            return f"ARP op {self.arp_op} {self.sender_ip} > {self.target_ip}"
        if self.src_ip is not None:
            hosts = f"{self.src_ip} > {self.dst_ip}"
            if self.proto == IPPROTO_ICMP and self.type is not None:
                if self.type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY) and self.seq is not None:
                    kind = "request" if self.type == ICMP_ECHO_REQUEST else "reply"
                    return f"ICMP echo {kind} {hosts} id 0x{self.ident:04x} seq {self.seq}"
                return f"ICMP type {self.type} code {self.code} {hosts}"
            if self.proto == IPPROTO_UDP and self.sport is not None:
                size = len(self.payload) if self.payload is not None else 0
                return (f"UDP {self.src_ip}:{self.sport} > {self.dst_ip}:{self.dport}"
                        f" length {size}")
            return f"IPv4 proto {self.proto} {hosts}"
        if self.ethertype == ETH_P_IP:
            return f"IPv4 {_mac_text(self.src)} > {_mac_text(self.dst)}"
        if self.ethertype == ETH_P_ARP:
            return f"ARP {_mac_text(self.src)} > {_mac_text(self.dst)}"
        return f"ethertype 0x{self.ethertype:04x} {_mac_text(self.src)} > {_mac_text(self.dst)}"


def parse_frame(frame: bytes | bytearray | memoryview) -> Frame:
    """Decode an Ethernet frame (trailing padding allowed). Never raises on bad input."""
    frame = bytes(frame)
    n = len(frame)
    f = Frame(length=n)
    if n < ETH_HLEN:
        f.error = "truncated frame"
        f.checksums_ok = False
        return f
    f.dst, f.src, f.ethertype = _ETH.unpack_from(frame)
    if f.ethertype == ETH_P_ARP:
        if n < ETH_HLEN + _ARP_LEN:
            f.error = "truncated ARP packet"
            return f
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HLEN)
        f.arp_op, f.sender_mac, f.target_mac = op, sha, tha
        f.sender_ip, f.target_ip = _ntoa(spa), _ntoa(tpa)
        if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
            f.error = "unsupported ARP hardware/protocol type"
        return f
    if f.ethertype != ETH_P_IP:
        return f
    reason, hl, end = _ipv4_header_problem(frame, n)
    if reason is not None and hl == 0:
        f.error = reason
        f.checksums_ok = False
        return f
    _, _, _, ip_id, frag, ttl, proto, _, src4, dst4 = _IPV4.unpack_from(frame, ETH_HLEN)
    f.src_ip, f.dst_ip, f.proto, f.ttl, f.ip_id, f.ip_flags = (
        _ntoa(src4), _ntoa(dst4), proto, ttl, ip_id, frag >> 13)
    if reason is not None:
        f.error = reason
        f.checksums_ok = False
        if end == 0:              # a bad length: the payload cannot be located
            return f
    if frag & 0x3FFF:
        f.error = f.error or "IPv4 fragment"
        return f
    payload = frame[ETH_HLEN + hl:end]
    if proto == IPPROTO_ICMP:
        if len(payload) < 8:
            f.error = f.error or "truncated ICMP message"
            f.checksums_ok = False
            return f
        f.type, f.code, _, ident, seq = _ICMP_ECHO.unpack_from(payload)
        if f.type in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
            f.ident, f.seq, f.payload = ident, seq, payload[8:]
        if internet_checksum(payload):
            f.checksums_ok = False
    elif proto == IPPROTO_UDP:
        if len(payload) < 8:
            f.error = f.error or "truncated UDP header"
            f.checksums_ok = False
            return f
        sport, dport, ulen, csum = _UDP.unpack_from(payload)
        f.sport, f.dport = sport, dport
        if ulen < 8 or ulen > len(payload):
            f.error = f.error or "bad UDP length"
            f.checksums_ok = False
            return f
        f.payload = payload[8:ulen]
        if csum and internet_checksum(
                payload[:ulen], _addr_sum(src4) + _addr_sum(dst4) + IPPROTO_UDP + ulen):
            f.checksums_ok = False
    return f


def _ipv4_header_problem(frame: bytes, n: int) -> tuple[str | None, int, int]:
    """Check an IPv4 header as Linux ip_rcv_core() does, in its order (RFC 791, RFC 1122 3.2.1).

    Returns (reason or None, header length or 0 if the fields cannot be read, end offset
    of the IP packet in the frame, i.e. without Ethernet padding).
    """
    if n < ETH_HLEN + 20:
        return "truncated IPv4 header", 0, 0
    vihl = frame[ETH_HLEN]
    if vihl >> 4 != 4:
        return f"bad IP version {vihl >> 4}", 0, 0
    hl = (vihl & 0x0F) << 2
    if hl < 20:
        return f"bad IPv4 header length (IHL {hl >> 2})", 0, 0
    if ETH_HLEN + hl > n:
        return "truncated IPv4 header", 0, 0
    total = (frame[ETH_HLEN + 2] << 8) | frame[ETH_HLEN + 3]
    if total < hl:
        return "bad IPv4 total length", hl, 0
    end = ETH_HLEN + total
    if end > n:
        return "IPv4 total length exceeds frame", hl, 0
    # Sum of the header words incl. the checksum must fold to 0xFFFF, i.e. be a nonzero
    # multiple of 0xFFFF (see internet_checksum); the version nibble makes it nonzero.
    if _from_bytes(frame[ETH_HLEN:ETH_HLEN + hl], "big") % 0xFFFF:
        return "bad IPv4 header checksum", hl, end
    return None, hl, end


# --------------------------------------------------------------------------------------
# The stack


class NetStack:
    """An Ethernet/ARP/IPv4 endpoint: answers ARP and ICMP echo, echoes UDP on port 7, can ping.

    ``transmit(frame)`` is called synchronously for every frame sent (no FCS, no padding);
    ``clock_ns()`` is the virtual clock used for RTTs and ping timestamps. Replies to a
    received frame go out before :meth:`input` returns, so two stacks wired back to back
    complete a ping inside one :meth:`ping` call.

    IPv4 DF follows Linux: set on echo requests and UDP (path MTU discovery), clear on
    echo replies, because Linux answers from a socket with IP_PMTUDISC_DONT
    (net/ipv4/icmp.c, icmp_sk_init); ``echo_reply_df=True`` sets it there too.
    """

    NEIGH_QUEUE_LEN = 101          # packets waiting for ARP per destination (Linux unres_qlen)
    ARP_RETRANS_NS = 1_000_000_000  # Linux neigh retrans_time: re-ask at most once a second

    def __init__(self, mac: str | bytes, ip: str, transmit: Callable[[bytes], None],
                 clock_ns: Callable[[], int], *, prefixlen: int = 24,
                 udp_echo_port: int | None = 7, name: str = "",
                 echo_reply_df: bool = False) -> None:
        self.mac: bytes = mac_bytes(mac)
        if self.mac[0] & 1:
            raise ValueError(f"{mac_str(self.mac)} is a multicast address, not a station's")
        self._ip4 = _ip4(ip)
        self.ip: str = _ntoa(self._ip4)
        if not 0 <= prefixlen <= 32:
            raise ValueError(f"prefixlen must be 0..32, got {prefixlen}")
        self.prefixlen = prefixlen
        self.network = ipaddress.IPv4Network(f"{self.ip}/{prefixlen}", strict=False)
        self._netmask = int(self.network.netmask)
        self._netaddr = int(self.network.network_address)
        self._directed_bcast = self.network.broadcast_address.packed if prefixlen < 31 else None
        self.transmit = transmit
        self.clock_ns = clock_ns
        self.udp_echo_port = udp_echo_port
        self.name = name
        self._reply_flags = IP_DF if echo_reply_df else 0
        self.arp: dict[str, bytes] = {}
        self._static_arp: set[str] = set()
        self._pending: dict[str, list[tuple[bytes, str | None]]] = {}
        self._arp_asked_ns: dict[str, int] = {}
        self._ip_id = 0
        self.echo_replies: dict[tuple[int, int], int] = {}
        self.echo_sent: dict[tuple[int, int], int] = {}
        self.udp_received: list[tuple[str, int, int, bytes]] = []
        self.stats: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"<NetStack {self.name or self.ip} {mac_str(self.mac)} {self.ip}/{self.prefixlen}>"

    # ---- ARP cache -------------------------------------------------------------------

    def add_static_arp(self, ip: str, mac: str | bytes) -> None:
        """A permanent neighbour entry (``ip neigh add ... nud permanent``): ARP never
        overwrites it, and packets already waiting for that address are sent now."""
        key = _ntoa(_ip4(ip))
        self.arp[key] = mac_bytes(mac)
        self._static_arp.add(key)
        self._flush_pending(key)

    def _learn(self, ip: str, mac: bytes) -> None:
        if ip not in self._static_arp:
            self.arp[ip] = mac
        if ip in self._pending:
            self._flush_pending(ip)

    def _flush_pending(self, ip: str) -> None:
        queue = self._pending.pop(ip, None)
        self._arp_asked_ns.pop(ip, None)
        if queue:
            mac = self.arp[ip]
            for packet, counter in queue:
                self._send(_ETH.pack(mac, self.mac, ETH_P_IP) + packet, counter)

    # ---- sending ---------------------------------------------------------------------

    def _next_ip_id(self) -> int:
        self._ip_id = ident = (self._ip_id + 1) & 0xFFFF
        return ident

    def _send(self, frame: bytes, counter: str | None) -> None:
        stats = self.stats
        stats["tx_frames"] += 1
        if counter is not None:
            stats[counter] += 1
        self.transmit(frame)

    def _route(self, dst_ip: str) -> tuple[str, bytes]:
        """Normalise and check a destination: on-link only (no gateway), as ``ip route``
        with just the connected /prefixlen route would decide."""
        dst4 = _ip4(dst_ip)
        if (_from_bytes(dst4, "big") & self._netmask != self._netaddr
                and dst4 != b"\xff\xff\xff\xff"):
            raise ValueError(f"{dst_ip} is not on {self.network} and this stack has no gateway")
        return _ntoa(dst4), dst4

    def _output(self, dst_ip: str, dst4: bytes, frame_for: Callable[[bytes], bytes],
                counter: str) -> None:
        """Send an IP packet to an on-link destination, resolving its MAC first (RFC 826).

        Without a cache entry the packet waits in a per-destination queue, like the
        kernel's neighbour queue, and an ARP request goes out (at most once per second).
        """
        if dst4 == b"\xff\xff\xff\xff" or dst4 == self._directed_bcast:
            self._send(frame_for(BROADCAST_MAC), counter)
            return
        mac = self.arp.get(dst_ip)
        if mac is not None:
            self._send(frame_for(mac), counter)
            return
        packet = frame_for(BROADCAST_MAC)[ETH_HLEN:]
        queue = self._pending.setdefault(dst_ip, [])
        if len(queue) >= self.NEIGH_QUEUE_LEN:
            queue.pop(0)
            self.stats["drop: neighbour queue full"] += 1
        queue.append((packet, counter))
        now = self.clock_ns()
        asked = self._arp_asked_ns.get(dst_ip)
        if asked is None or now - asked >= self.ARP_RETRANS_NS:
            self._arp_asked_ns[dst_ip] = now
            self._send(_ETH_ARP.pack(BROADCAST_MAC, self.mac, ETH_P_ARP, 1, ETH_P_IP, 6, 4,
                                     ARP_REQUEST, self.mac, self._ip4, b"\0" * 6, dst4),
                       "tx_arp")

    def ping(self, dst_ip: str, ident: int, seq: int, payload: bytes | None = None) -> None:
        """Send one ICMP echo request (RFC 792), as Linux ``ping`` would: DF set, TTL 64,
        56 bytes of timestamped data by default. ``echo_sent[(ident, seq)]`` records the
        send time (before any ARP wait, so an RTT includes address resolution, as in Linux)."""
        _check_u16("ident", ident)
        _check_u16("seq", seq)
        dst_ip, dst4 = self._route(dst_ip)
        now = self.clock_ns()
        data = ping_payload(now) if payload is None else bytes(payload)
        if 28 + len(data) > MTU:
            raise ValueError(f"ICMP data of {len(data)} bytes does not fit the {MTU}-byte MTU")
        ip_id = self._next_ip_id()
        src_mac, src4 = self.mac, self._ip4
        self.echo_sent[(ident, seq)] = now
        self._output(dst_ip, dst4, lambda mac: _echo_frame(
            src_mac, mac, src4, dst4, ICMP_ECHO_REQUEST, ident, seq, data, ip_id,
            DEFAULT_TTL, IP_DF), "tx_icmp_echo_request")

    def send_udp(self, dst_ip: str, sport: int, dport: int, payload: bytes) -> None:
        """Send one UDP datagram (RFC 768), checksum always computed, DF set like Linux."""
        _check_u16("sport", sport)
        _check_u16("dport", dport)
        dst_ip, dst4 = self._route(dst_ip)
        data = bytes(payload)
        if 28 + len(data) > MTU:
            raise ValueError(f"UDP data of {len(data)} bytes does not fit the {MTU}-byte MTU")
        ip_id = self._next_ip_id()
        src_mac, src4 = self.mac, self._ip4
        self._output(dst_ip, dst4, lambda mac: _udp_frame(
            src_mac, mac, src4, dst4, sport, dport, data, ip_id, DEFAULT_TTL, IP_DF), "tx_udp")

    # ---- receiving -------------------------------------------------------------------

    def input(self, frame: bytes | bytearray | memoryview) -> None:
        """Take one received Ethernet frame (possibly padded to 60 bytes); answer it.

        Accepted: frames to our MAC or to broadcast. Every frame ends either in a handled
        counter or in ``stats["drop: <reason>"]``; nothing here raises on bad input.
        """
        stats = self.stats
        stats["rx_frames"] += 1
        if type(frame) is not bytes:
            frame = bytes(frame)
        n = len(frame)
        if n < ETH_HLEN:
            stats["drop: truncated frame"] += 1
            return
        dst = frame[:6]
        if dst != self.mac and dst != BROADCAST_MAC:
            stats["drop: not for us"] += 1
            return
        if frame[6] & 1:
            stats["drop: multicast source MAC"] += 1
            return
        ethertype = (frame[12] << 8) | frame[13]
        if ethertype == ETH_P_IP:
            self._input_ipv4(frame, n)
        elif ethertype == ETH_P_ARP:
            self._input_arp(frame, n)
        else:
            stats[f"drop: unsupported ethertype 0x{ethertype:04x}"] += 1

    def _input_arp(self, frame: bytes, n: int) -> None:
        """RFC 826 "Packet Reception": update a known sender, add it if the request is
        for us, and answer requests for our address with a unicast reply."""
        stats = self.stats
        if n < ETH_HLEN + _ARP_LEN:
            stats["drop: truncated ARP packet"] += 1
            return
        htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(frame, ETH_HLEN)
        if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
            stats["drop: unsupported ARP hardware/protocol type"] += 1
            return
        if op != ARP_REQUEST and op != ARP_REPLY:
            stats[f"drop: unsupported ARP operation {op}"] += 1
            return
        sender_ok = not (sha[0] & 1) and spa != b"\0\0\0\0"
        sender = _ntoa(spa)
        if tpa != self._ip4:
            # Merge step only: refresh an entry we already have, but add nothing.
            if sender_ok and sender in self.arp and sender not in self._static_arp:
                self.arp[sender] = sha
            stats["drop: ARP for another address"] += 1
            return
        if not sender_ok:
            stats["drop: bad ARP sender address"] += 1
            return
        stats["rx_arp"] += 1
        self._learn(sender, sha)
        if op == ARP_REQUEST:
            self._send(_ETH_ARP.pack(sha, self.mac, ETH_P_ARP, 1, ETH_P_IP, 6, 4, ARP_REPLY,
                                     self.mac, self._ip4, sha, spa), "tx_arp")

    def _input_ipv4(self, frame: bytes, n: int) -> None:
        """RFC 791 receive checks (Linux ip_rcv_core order), then ICMP or UDP."""
        stats = self.stats
        reason, hl, end = _ipv4_header_problem(frame, n)
        if reason is not None:
            stats["drop: " + reason] += 1
            return
        _, _, _, _, frag, _, proto, _, src4, dst4 = _IPV4.unpack_from(frame, ETH_HLEN)
        if frag & 0x3FFF:
            stats["drop: IPv4 fragment (no reassembly)"] += 1
            return
        broadcast = False
        if dst4 != self._ip4:
            if dst4 == b"\xff\xff\xff\xff" or dst4 == self._directed_bcast:
                broadcast = True
            else:
                stats["drop: IPv4 packet not for us"] += 1
                return
        payload = frame[ETH_HLEN + hl:end]
        if proto == IPPROTO_ICMP:
            self._input_icmp(frame, src4, payload, broadcast)
        elif proto == IPPROTO_UDP:
            self._input_udp(frame, src4, dst4, payload, broadcast)
        else:
            stats[f"drop: unsupported IP protocol {proto}"] += 1

    def _input_icmp(self, frame: bytes, src4: bytes, msg: bytes, broadcast: bool) -> None:
        """ICMP echo (RFC 792): answer requests, record replies."""
        stats = self.stats
        if len(msg) < 8:
            stats["drop: truncated ICMP message"] += 1
            return
        # internet_checksum(msg) == 0, inlined: the hot path of every ping.
        total = _from_bytes(msg, "big") << ((len(msg) & 1) << 3)
        if total % 0xFFFF or not total:
            stats["drop: bad ICMP checksum"] += 1
            return
        icmp_type = msg[0]
        if icmp_type == ICMP_ECHO_REQUEST:
            if broadcast:   # Linux default net.ipv4.icmp_echo_ignore_broadcasts = 1
                stats["drop: ICMP echo to broadcast ignored"] += 1
                return
            stats["rx_icmp_echo_request"] += 1
            self._ip_id = ip_id = (self._ip_id + 1) & 0xFFFF
            stats["tx_frames"] += 1
            stats["tx_icmp_echo_reply"] += 1
            # Answer the frame's sender directly: the reply keeps id, seq and data.
            self.transmit(_echo_frame(self.mac, frame[6:12], self._ip4, src4, ICMP_ECHO_REPLY,
                                      (msg[4] << 8) | msg[5], (msg[6] << 8) | msg[7], msg[8:],
                                      ip_id, DEFAULT_TTL, self._reply_flags))
        elif icmp_type == ICMP_ECHO_REPLY:
            stats["rx_icmp_echo_reply"] += 1
            key = ((msg[4] << 8) | msg[5], (msg[6] << 8) | msg[7])
            if key in self.echo_replies:
                stats["rx_icmp_echo_reply_dup"] += 1      # ping prints "(DUP!)"
            else:
                self.echo_replies[key] = self.clock_ns()
        else:
            stats[f"drop: unsupported ICMP type {icmp_type}"] += 1

    def _input_udp(self, frame: bytes, src4: bytes, dst4: bytes, dgram: bytes,
                   broadcast: bool) -> None:
        """UDP (RFC 768) with the pseudo-header checksum, and the echo service (RFC 862)."""
        stats = self.stats
        if len(dgram) < 8:
            stats["drop: truncated UDP header"] += 1
            return
        sport, dport, ulen, csum = _UDP.unpack_from(dgram)
        if ulen < 8 or ulen > len(dgram):
            stats["drop: bad UDP length"] += 1
            return
        if csum and internet_checksum(
                dgram[:ulen], _addr_sum(src4) + _addr_sum(dst4) + IPPROTO_UDP + ulen):
            stats["drop: bad UDP checksum"] += 1
            return
        data = dgram[8:ulen]
        if dport == self.udp_echo_port and not broadcast:
            if sport == 0 or sport == dport:
                # Port 0 cannot be answered; echo-to-echo would ping-pong forever.
                stats["drop: UDP echo loop guard"] += 1
                return
            stats["rx_udp"] += 1
            self._send(_udp_frame(self.mac, frame[6:12], self._ip4, src4, dport, sport, data,
                                  self._next_ip_id(), DEFAULT_TTL, IP_DF), "tx_udp")
            return
        stats["rx_udp"] += 1
        self.udp_received.append((_ntoa(src4), sport, dport, data))
