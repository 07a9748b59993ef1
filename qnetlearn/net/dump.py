"""pcap capture of the frames a netdev sees, after QEMU's ``net/dump.c``.

QEMU's ``-object filter-dump`` (formerly ``-net dump``) writes every frame that crosses a
netdev into a classic libpcap file, stamped with the *virtual* clock, so a capture of an
emulated machine lines up with its trace. This module writes the same format so the
emulator's frames open in Wireshark/tshark/tcpdump.

Format (libpcap "classic", as documented in pcap-savefile(5) and by the Wireshark
wiki's "Development/LibpcapFileFormat"): a 24-byte global header (magic 0xa1b2c3d4,
version 2.4, thiszone 0, sigfigs 0, snaplen, link type 1 = LINKTYPE_ETHERNET), then per
frame a 16-byte record header (ts_sec, ts_usec, caplen, len) and ``caplen`` bytes.
QEMU writes the headers in host byte order; we always write little-endian (what an x86
host produces), and :func:`read_pcap` accepts either order and the nanosecond variant
(magic 0xa1b23c4d).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterable

__all__ = ["PCAP_MAGIC", "PCAP_MAGIC_NS", "LINKTYPE_ETHERNET", "PcapWriter", "write_pcap",
           "read_pcap"]

PCAP_MAGIC = 0xA1B2C3D4          # microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D       # nanosecond timestamps (read only)
PCAP_VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
DEFAULT_SNAPLEN = 65535           # QEMU's dump default (PCAP_SNAPLEN / "maxlen=")

_FILE_HDR = struct.Struct("<IHHiIII")   # magic, major, minor, thiszone, sigfigs, snaplen, link
_REC_HDR = struct.Struct("<IIII")       # ts_sec, ts_usec (or ns), caplen, len


class PcapWriter:
    """Write frames to a pcap file as QEMU's dump_receive() does.

    ``path_or_file`` is a path, or a binary file object opened for writing (left open by
    :meth:`close`). A frame longer than ``snaplen`` is cut to ``snaplen`` bytes while its
    record keeps the original length, as libpcap does. Timestamps are virtual-clock
    nanoseconds truncated to microseconds, like QEMU's ``qemu_clock_get_us()``.
    QEMU also adds the wall-clock second at which the dump started; ``epoch_s`` is that
    offset here, 0 by default so captures are reproducible.
    """

    def __init__(self, path_or_file: str | os.PathLike[str] | BinaryIO,
                 snaplen: int = DEFAULT_SNAPLEN, *, epoch_s: int = 0) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be 1..2**32-1, got {snaplen}")
        self.snaplen = snaplen
        self.epoch_s = epoch_s
        self.frames = 0
        file: BinaryIO
        if isinstance(path_or_file, (str, os.PathLike)):
            file = open(path_or_file, "wb")
            self._owned = True
        else:
            file = path_or_file
            self._owned = False
        file.write(_FILE_HDR.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET))
        self._file: BinaryIO | None = file

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, frame: bytes | bytearray | memoryview, time_ns: int) -> None:
        """Append one frame seen at virtual time ``time_ns`` (nanoseconds, >= 0)."""
        if self._file is None:
            raise ValueError("write to a closed PcapWriter")
        if time_ns < 0:
            raise ValueError(f"time_ns must be >= 0, got {time_ns}")
        length = len(frame)
        caplen = min(length, self.snaplen)
        usec = time_ns // 1000
        self._file.write(_REC_HDR.pack(usec // 1_000_000 + self.epoch_s, usec % 1_000_000,
                                       caplen, length))
        self._file.write(frame if caplen == length else bytes(frame[:caplen]))
        self.frames += 1

    def flush(self) -> None:
        """Push buffered records to the file, e.g. before a viewer opens it."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Finish the file (closing it if we opened it). Calling it twice is harmless."""
        if self._file is None:
            return
        if self._owned:
            self._file.close()
        else:
            self._file.flush()
        self._file = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pcap(path: str | os.PathLike[str] | BinaryIO,
               frames: Iterable[tuple[int, bytes]]) -> None:
    """Write ``(time_ns, frame)`` pairs to a new pcap file."""
    with PcapWriter(path) as writer:
        for time_ns, frame in frames:
            writer.write(frame, time_ns)


def read_pcap(path: str | os.PathLike[str] | BinaryIO) -> list[tuple[int, bytes]]:
    """Read a classic pcap file into ``(time_ns, frame)`` pairs.

    Times come back at the file's resolution (microseconds for files we write). Captured
    bytes only: a record cut by snaplen gives the cut frame. Raises ValueError for a file
    that is not pcap or ends in the middle of a record.
    """
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as f:
            data = f.read()
    else:
        data = path.read()
    if len(data) < _FILE_HDR.size:
        raise ValueError("not a pcap file: shorter than its 24-byte header")
    magic_le = struct.unpack_from("<I", data)[0]
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (PCAP_MAGIC, PCAP_MAGIC_NS):
            break
    else:
        raise ValueError(f"not a classic pcap file (magic 0x{magic_le:08x})")
    tick_ns = 1 if magic == PCAP_MAGIC_NS else 1000
    rec = struct.Struct(order + "IIII")
    frames: list[tuple[int, bytes]] = []
    offset = _FILE_HDR.size
    end = len(data)
    while offset < end:
        if offset + rec.size > end:
            raise ValueError(f"truncated pcap record header at byte {offset}")
        sec, frac, caplen, _length = rec.unpack_from(data, offset)
        offset += rec.size
        if offset + caplen > end:
            raise ValueError(f"truncated pcap record data at byte {offset}")
        frames.append((sec * 1_000_000_000 + frac * tick_ns, data[offset:offset + caplen]))
        offset += caplen
    return frames
