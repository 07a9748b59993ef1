"""Tests for qnetlearn.net.dump: the pcap bytes themselves, read-back, and tshark's view."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import pytest

from qnetlearn.net.dump import PcapWriter, read_pcap, write_pcap
from qnetlearn.net.stack import NetStack, build_echo_request, parse_frame

HOST_MAC, HOST_IP = "02:00:0a:00:02:02", "10.0.2.2"
GUEST_MAC, GUEST_IP = "52:54:00:12:34:56", "10.0.2.15"

# pcap global header, little-endian: magic a1b2c3d4, version 2.4, thiszone 0, sigfigs 0,
# snaplen 65535, link type 1 (Ethernet).
EXPECTED_FILE_HEADER = bytes.fromhex(
    "d4c3b2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")


def test_file_and_record_headers_are_byte_exact(tmp_path):
    path = tmp_path / "one.pcap"
    frame = bytes(range(60))
    with PcapWriter(path) as w:
        w.write(frame, 1_234_567_890)          # 1 s, 234567 us (the 890 ns are truncated)
    data = path.read_bytes()
    assert data[:24] == EXPECTED_FILE_HEADER
    # record: ts_sec 1, ts_usec 234567 = 0x00039447, caplen 60, len 60
    assert data[24:40] == bytes.fromhex("01000000" "47940300" "3c000000" "3c000000")
    assert data[40:] == frame
    assert len(data) == 24 + 16 + 60


def test_read_back_and_write_pcap(tmp_path):
    frames = [(0, b"\x01" * 60), (999, b"\x02" * 98), (5_000_001_500, b"\x03" * 1514)]
    path = tmp_path / "three.pcap"
    write_pcap(path, frames)
    assert read_pcap(path) == [(0, b"\x01" * 60), (0, b"\x02" * 98),
                               (5_000_001_000, b"\x03" * 1514)]
    assert read_pcap(str(path)) == read_pcap(io.BytesIO(path.read_bytes()))


def test_snaplen_cuts_frames_but_keeps_length():
    buf = io.BytesIO()
    w = PcapWriter(buf, snaplen=64)
    w.write(b"\xaa" * 100, 0)
    w.close()
    assert not buf.closed                     # a caller's file object stays open
    data = buf.getvalue()
    assert struct.unpack_from("<I", data, 16)[0] == 64           # snaplen in the header
    assert struct.unpack_from("<II", data, 24 + 8) == (64, 100)  # caplen, original len
    assert read_pcap(io.BytesIO(data)) == [(0, b"\xaa" * 64)]


def test_writer_lifecycle_and_errors(tmp_path):
    w = PcapWriter(tmp_path / "x.pcap")
    w.write(bytearray(b"\0" * 60), 10)
    w.write(memoryview(b"\1" * 60), 20)
    assert w.frames == 2
    w.close()
    w.close()                                  # idempotent
    assert w.closed
    with pytest.raises(ValueError):
        w.write(b"\0" * 60, 30)
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO()).write(b"\0", -1)
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), snaplen=0)


def test_epoch_offset_like_qemu_start_time():
    buf = io.BytesIO()
    with PcapWriter(buf, epoch_s=1_700_000_000) as w:
        w.write(b"\0" * 60, 2_000_000_000)
    assert struct.unpack_from("<II", buf.getvalue(), 24) == (1_700_000_002, 0)


def test_read_big_endian_and_nanosecond_files():
    frame = b"\x55" * 42
    be = (bytes.fromhex("a1b2c3d4" "0002" "0004" "00000000" "00000000" "0000ffff" "00000001")
          + struct.pack(">IIII", 7, 8, 42, 42) + frame)
    assert read_pcap(io.BytesIO(be)) == [(7_000_008_000, frame)]
    ns = (bytes.fromhex("4d3cb2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")
          + struct.pack("<IIII", 7, 8, 42, 42) + frame)
    assert read_pcap(io.BytesIO(ns)) == [(7_000_000_008, frame)]


@pytest.mark.parametrize("data", [b"", b"\0" * 24, EXPECTED_FILE_HEADER + b"\0" * 10,
                                  EXPECTED_FILE_HEADER + struct.pack("<IIII", 0, 0, 60, 60)])
def test_read_rejects_garbage_and_truncation(data):
    with pytest.raises(ValueError):
        read_pcap(io.BytesIO(data))


def _ping_capture(path, count: int = 2) -> list[tuple[int, bytes]]:
    """Host pings guest through two back-to-back stacks (ARP first), capturing every frame."""
    now = [0]
    writer = PcapWriter(path)
    stacks: dict[str, NetStack] = {}

    def wire(to: str):
        def transmit(frame: bytes) -> None:
            now[0] += 10_000                           # 10 us per frame
            writer.write(frame, now[0])
            stacks[to].input(frame)
        return transmit

    stacks["host"] = NetStack(HOST_MAC, HOST_IP, wire("guest"), lambda: now[0])
    stacks["guest"] = NetStack(GUEST_MAC, GUEST_IP, wire("host"), lambda: now[0])
    for seq in range(1, count + 1):
        stacks["host"].ping(GUEST_IP, 0x1234, seq)
    stacks["host"].send_udp(GUEST_IP, 40000, 7, b"echo me")
    writer.close()
    return read_pcap(path)


def test_ping_capture_reads_back(tmp_path):
    frames = _ping_capture(tmp_path / "ping.pcap")
    assert [parse_frame(f).summary() for _, f in frames] == [
        "ARP request who-has 10.0.2.15 tell 10.0.2.2",
        "ARP reply 10.0.2.15 is-at 52:54:00:12:34:56",
        "ICMP echo request 10.0.2.2 > 10.0.2.15 id 0x1234 seq 1",
        "ICMP echo reply 10.0.2.15 > 10.0.2.2 id 0x1234 seq 1",
        "ICMP echo request 10.0.2.2 > 10.0.2.15 id 0x1234 seq 2",
        "ICMP echo reply 10.0.2.15 > 10.0.2.2 id 0x1234 seq 2",
        "UDP 10.0.2.2:40000 > 10.0.2.15:7 length 7",
        "UDP 10.0.2.15:7 > 10.0.2.2:40000 length 7",
    ]
    assert [t for t, _ in frames] == [10_000 * i for i in range(1, 9)]
    assert all(parse_frame(f).checksums_ok for _, f in frames)


def _tshark(path, *fields: str, prefs: tuple[str, ...] = ()) -> list[list[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed: apt-get install tshark")
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields"]
    for pref in prefs:
        cmd += ["-o", pref]
    for field in fields:
        cmd += ["-e", field]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_tshark_reads_the_ping_capture(tmp_path):
    path = tmp_path / "ping.pcap"
    _ping_capture(path, count=1)
    rows = _tshark(path, "icmp.type", "ip.src", "ip.dst")
    assert rows == [
        ["", "", ""],                                   # ARP request
        ["", "", ""],                                   # ARP reply
        ["8", HOST_IP, GUEST_IP],
        ["0", GUEST_IP, HOST_IP],
        ["", HOST_IP, GUEST_IP],                        # UDP to the echo port
        ["", GUEST_IP, HOST_IP],
    ]


def test_tshark_validates_every_checksum(tmp_path):
    path = tmp_path / "ping.pcap"
    _ping_capture(path, count=1)
    rows = _tshark(path, "frame.len", "frame.time_epoch", "arp.opcode", "ip.checksum.status",
                   "icmp.checksum.status", "udp.checksum.status",
                   prefs=("ip.check_checksum:TRUE", "udp.check_checksum:TRUE"))
    # checksum.status 1 = "Good" in Wireshark's expert info
    assert [r[0] for r in rows] == ["42", "42", "98", "98", "49", "49"]
    assert [float(r[1]) for r in rows] == pytest.approx([1e-5 * i for i in range(1, 7)])
    assert [r[2] for r in rows[:2]] == ["1", "2"]
    assert [r[3] for r in rows[2:]] == ["1"] * 4
    assert [r[4] for r in rows[2:4]] == ["1", "1"]
    assert [r[5] for r in rows[4:]] == ["1", "1"]


def test_tshark_reads_a_hand_built_frame(tmp_path):
    path = tmp_path / "one.pcap"
    write_pcap(path, [(0, build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 7, 3))])
    assert _tshark(path, "icmp.type", "ip.src", "ip.dst", "icmp.ident", "icmp.seq") == [
        ["8", HOST_IP, GUEST_IP, "7", "3"]]
