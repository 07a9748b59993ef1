"""Which bytes of a buffer are which header: for the coloured hex dump of the ring view."""
from __future__ import annotations

from ...net.stack import parse_frame

HDR_COLOR = "#7A5195"
ETH_COLOR = "#0072B2"
IP_COLOR = "#009E73"
L4_COLOR = "#D55E00"
DATA_COLOR = "#555555"


def frame_segments(data: bytes, hdr_len: int) -> tuple[list[tuple[int, int, str, str]], str]:
    """([(start, end, name, colour)], one-line summary) for a buffer that starts with a
    ``hdr_len``-byte virtio-net header (0 for none) followed by an Ethernet frame."""
    n = len(data)
    if n == 0:
        return [], "(nothing read)"
    if not any(data):
        return [], "all zero: nothing written here yet"
    segs: list[tuple[int, int, str, str]] = []
    if hdr_len:
        segs.append((0, min(hdr_len, n), f"virtio_net_hdr ({hdr_len} B)", HDR_COLOR))
    eth = hdr_len
    frame = data[eth:]
    if len(frame) < 14:
        return segs, f"{n} bytes"
    segs.append((eth, eth + 14, "Ethernet (14 B)", ETH_COLOR))
    etype = int.from_bytes(frame[12:14], "big")
    pos = eth + 14
    if etype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0xF) * 4
        segs.append((pos, pos + ihl, f"IPv4 ({ihl} B)", IP_COLOR))
        proto = frame[23]
        l4 = {1: ("ICMP", 8), 17: ("UDP", 8), 6: ("TCP", 20)}.get(proto)
        if l4:
            segs.append((pos + ihl, pos + ihl + l4[1], f"{l4[0]} ({l4[1]} B)", L4_COLOR))
            segs.append((pos + ihl + l4[1], n, "data", DATA_COLOR))
    elif etype == 0x0806:
        segs.append((pos, pos + 28, "ARP (28 B)", IP_COLOR))
    summary = parse_frame(_trim(frame)).summary()
    if hdr_len:
        summary = f"header + {summary}"
    return segs, summary


def _trim(frame: bytes) -> bytes:
    """The frame without the stale bytes after it (IPv4 says how long it is)."""
    if len(frame) >= 18 and frame[12:14] == b"\x08\x00":
        total = int.from_bytes(frame[16:18], "big")
        if 20 <= total <= len(frame) - 14:
            return frame[:14 + total]
    return frame
