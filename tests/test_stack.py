"""Tests for qnetlearn.net.stack: checksums, frame layouts, ARP/ICMP/UDP behaviour, drops.

Known-good frames are typed in as hex with their checksums worked out by hand below (RFC
1071 arithmetic in the comments), so the stack is checked against the specs (specs.md
section 8), not against itself.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnetlearn.net.stack import (
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    NetStack,
    build_arp,
    build_echo_request,
    build_udp,
    internet_checksum,
    mac_bytes,
    mac_str,
    parse_frame,
    ping_payload,
)

HOST_MAC, HOST_IP = "02:00:0a:00:02:02", "10.0.2.2"
GUEST_MAC, GUEST_IP = "52:54:00:12:34:56", "10.0.2.15"


def reference_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1 written out literally: word loop with end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --------------------------------------------------------------------------------------
# Known-good frames, written from the specs.

# Echo request 10.0.2.2 -> 10.0.2.15, id 0x1234, seq 1, IP id 0, DF, TTL 64, Linux ping data
# (16 bytes of struct timeval = 0, then 0x10..0x37).
#   IP header sum: 4500+0054+0000+4000+4001+0a00+0202+0a00+020f = 0xdd66 -> ~ = 0x2299
#   ICMP sum: 0800+1234+0001 = 0x1a35; data words 1011,1213,...,3637 = 20*0x1011 + 0x0202*190
#   = 0x2bed0; 0x1a35 + 0x2bed0 = 0x2d905 -> fold 0xd907 -> ~ = 0x26f8
KNOWN_ECHO_REQUEST = bytes.fromhex(
    "525400123456" "02000a000202" "0800"
    "4500 0054 0000 4000 4001 2299 0a000202 0a00020f".replace(" ", "")
    + "0800 26f8 1234 0001".replace(" ", "")
    + "00" * 16 + bytes(range(0x10, 0x38)).hex()
)

# ARP request who-has 10.0.2.15 tell 10.0.2.2 (RFC 826): broadcast, 42 bytes, no padding.
KNOWN_ARP_REQUEST = bytes.fromhex(
    "ffffffffffff" "02000a000202" "0806"
    "0001 0800 06 04 0001".replace(" ", "")
    + "02000a000202" "0a000202" "000000000000" "0a00020f"
)

# UDP 10.0.2.2:40000 -> 10.0.2.15:7, data "hi", IP id 0, DF.
#   IP header: 4500+001e+0000+4000+4011+0a00+0202+0a00+020f = 0xdd40 -> ~ = 0x22bf
#   UDP: pseudo 0a00+0202+0a00+020f+0011+000a = 0x182c; header 9c40+0007+000a = 0x9c51;
#   data 0x6869; total 0x11ce6 -> fold 0x1ce7 -> ~ = 0xe318
KNOWN_UDP = bytes.fromhex(
    "525400123456" "02000a000202" "0800"
    "4500 001e 0000 4000 4011 22bf 0a000202 0a00020f".replace(" ", "")
    + "9c40 0007 000a e318".replace(" ", "") + "6869"
)


# --------------------------------------------------------------------------------------
# Helpers


class Wire:
    """Two stacks back to back: what one transmits the other receives, with a log."""

    def __init__(self, pad: bool = False, static_arp: bool = False, **guest_kw) -> None:
        self.now = 1_000_000
        self.log: list[tuple[str, bytes]] = []
        self.pad = pad
        self.host = NetStack(HOST_MAC, HOST_IP, self._to("guest"), self.clock, name="host")
        self.guest = NetStack(GUEST_MAC, GUEST_IP, self._to("host"), self.clock, name="guest",
                              **guest_kw)
        if static_arp:
            self.host.add_static_arp(GUEST_IP, GUEST_MAC)
            self.guest.add_static_arp(HOST_IP, HOST_MAC)

    def clock(self) -> int:
        return self.now

    def _to(self, name: str):
        def transmit(frame: bytes) -> None:
            self.now += 1000                      # 1 us of "wire time" per frame
            self.log.append((name, frame))
            if self.pad and len(frame) < 60:      # an Ethernet NIC pads runts to 60 bytes
                frame = frame + bytes(60 - len(frame))
            getattr(self, name).input(frame)
        return transmit


def fix_ip_checksum(frame: bytearray | bytes) -> bytes:
    """Recompute the IPv4 header checksum after a test edited the header."""
    frame = bytearray(frame)
    hl = (frame[14] & 0x0F) * 4
    frame[24:26] = b"\0\0"
    frame[24:26] = reference_checksum(bytes(frame[14:14 + hl])).to_bytes(2, "big")
    return bytes(frame)


HANDLED = ("rx_arp", "rx_icmp_echo_request", "rx_icmp_echo_reply", "rx_udp")


def assert_accounted(stack: NetStack) -> None:
    """Every received frame is either handled or dropped with a reason, exactly once."""
    drops = sum(v for k, v in stack.stats.items() if k.startswith("drop: ")
                and k != "drop: neighbour queue full")
    assert sum(stack.stats[k] for k in HANDLED) + drops == stack.stats["rx_frames"]


def guest_alone(**kw) -> tuple[NetStack, list[bytes]]:
    out: list[bytes] = []
    return NetStack(GUEST_MAC, GUEST_IP, out.append, lambda: 42, **kw), out


def only_drop(stack: NetStack) -> str:
    drops = [k for k, v in stack.stats.items() if k.startswith("drop: ") and v]
    assert len(drops) == 1, stack.stats
    return drops[0]


# --------------------------------------------------------------------------------------
# RFC 1071 checksum


def test_checksum_rfc1071_worked_example():
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert internet_checksum(data) == 0x220D          # ~0xddf2, RFC 1071 section 3
    assert ~internet_checksum(data) & 0xFFFF == 0xDDF2
    assert internet_checksum(data + b"\x22\x0d") == 0  # verification sums to 0xffff


def test_checksum_ipv4_header_from_specs():
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    good = header[:10] + b"\xb8\x61" + header[12:]
    assert internet_checksum(good) == 0
    assert internet_checksum(memoryview(good)) == 0
    assert internet_checksum(bytearray(good)) == 0


def test_checksum_edge_cases():
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(bytes(8)) == 0xFFFF                 # sum 0 -> complement 0xffff
    assert internet_checksum(b"\x01") == 0xFEFF                  # odd byte padded: 0x0100
    assert internet_checksum(b"\xff\xff") == 0x0000              # "negative zero" sum
    assert internet_checksum(b"\x12\x34", initial=0x1111) == ~0x2345 & 0xFFFF
    assert internet_checksum(b"", initial=0x1FFFE) == ~0xFFFF & 0xFFFF   # carries folded


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=0xFFFF))
def test_checksum_matches_word_loop(data, initial):
    assert internet_checksum(data, initial) == reference_checksum(data, initial)


@given(st.binary(max_size=200).filter(lambda b: len(b) % 2 == 0))
def test_checksum_verifies_to_zero(data):
    csum = internet_checksum(data)
    assert internet_checksum(data + csum.to_bytes(2, "big")) == 0


# --------------------------------------------------------------------------------------
# Addresses


def test_mac_conversions():
    assert mac_bytes(GUEST_MAC) == b"\x52\x54\x00\x12\x34\x56"
    assert mac_bytes("52-54-00-12-34-56") == b"\x52\x54\x00\x12\x34\x56"
    assert mac_bytes("AA:bb:CC:dd:EE:ff") == bytes.fromhex("aabbccddeeff")
    assert mac_bytes(b"\x01\x02\x03\x04\x05\x06") == b"\x01\x02\x03\x04\x05\x06"
    assert mac_str(b"\x52\x54\x00\x12\x34\x56") == GUEST_MAC
    assert mac_str(BROADCAST_MAC) == "ff:ff:ff:ff:ff:ff"


@pytest.mark.parametrize("bad", ["52:54:00:12:34", "52:54:00:12:34:5g", "525400123456",
                                 "52:54-00:12:34:56", "52:54:00:12:34:56:78", "", b"\0" * 5,
                                 b"\0" * 7, 12345, None])
def test_mac_bytes_rejects(bad):
    with pytest.raises(ValueError):
        mac_bytes(bad)


def test_mac_str_rejects_wrong_length():
    with pytest.raises(ValueError):
        mac_str(b"\0" * 5)


# --------------------------------------------------------------------------------------
# Builders against hand-made frames


def test_echo_request_is_the_known_98_byte_frame():
    frame = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0x1234, 1)
    assert len(frame) == 98
    assert frame == KNOWN_ECHO_REQUEST


def test_ping_payload_is_linux_layout():
    data = ping_payload(3_000_123_456)
    assert len(data) == 56
    assert struct.unpack("<qq", data[:16]) == (3, 123)            # struct timeval, x86-64
    assert data[16:] == bytes(range(0x10, 0x38))
    assert ping_payload(0, size=8) == bytes(range(8))             # too short for a timestamp


def test_echo_request_with_own_payload_and_fields():
    frame = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0xBEEF, 65535,
                               payload=b"abc", ip_id=0x4242, ttl=3)
    assert len(frame) == 14 + 20 + 8 + 3
    assert frame[14 + 4:14 + 6] == b"\x42\x42" and frame[14 + 8] == 3
    assert reference_checksum(frame[14:34]) == 0
    assert reference_checksum(frame[34:]) == 0
    f = parse_frame(frame)
    assert (f.ident, f.seq, f.payload, f.ttl, f.checksums_ok) == (0xBEEF, 65535, b"abc", 3, True)


def test_checksum_corner_values_match_the_rfc_algorithm():
    # An IP id chosen so the header words sum to 0xffff: the checksum must be 0x0000
    # (~0xffff), never the other zero 0xffff that a naive "0xffff - rem" would give.
    first = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 1)
    ip_id = int.from_bytes(first[24:26], "big")
    frame = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 1, ip_id=ip_id)
    assert frame[24:26] == b"\0\0"
    # An echo reply whose words are all zero (id 0, seq 0, zero data): the sum is 0 and
    # the checksum is 0xffff.
    guest, out = guest_alone()
    guest.input(build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0, 0, bytes(8)))
    assert out[0][36:38] == b"\xff\xff"
    assert reference_checksum(out[0][34:]) == 0


def test_udp_and_arp_builders_match_hand_made_frames():
    assert build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 40000, 7, b"hi") == KNOWN_UDP
    assert build_arp(1, HOST_MAC, HOST_IP, "00:00:00:00:00:00", GUEST_IP) == KNOWN_ARP_REQUEST


def test_udp_checksum_zero_is_sent_as_ffff():
    # Find a payload whose checksum computes to 0 and check it goes out as 0xffff (RFC 768).
    base = build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1000, 2000, b"\0\0")
    csum = int.from_bytes(base[40:42], "big")
    # Adding the old checksum value to the data makes the new sum 0xffff -> checksum 0.
    frame = build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1000, 2000, csum.to_bytes(2, "big"))
    assert frame[40:42] == b"\xff\xff"
    assert parse_frame(frame).checksums_ok


# --------------------------------------------------------------------------------------
# parse_frame and summary()


def test_parse_and_summary_of_known_frames():
    f = parse_frame(KNOWN_ECHO_REQUEST)
    assert (f.dst, f.src, f.ethertype) == (mac_bytes(GUEST_MAC), mac_bytes(HOST_MAC), ETH_P_IP)
    assert (f.src_ip, f.dst_ip, f.proto, f.ttl, f.ip_id) == (HOST_IP, GUEST_IP, 1, 64, 0)
    assert (f.type, f.code, f.ident, f.seq) == (8, 0, 0x1234, 1)
    assert f.checksums_ok and f.error is None
    assert f.summary() == "ICMP echo request 10.0.2.2 > 10.0.2.15 id 0x1234 seq 1"

    a = parse_frame(KNOWN_ARP_REQUEST)
    assert a.ethertype == ETH_P_ARP and a.arp_op == 1
    assert a.summary() == "ARP request who-has 10.0.2.15 tell 10.0.2.2"
    reply = build_arp(2, GUEST_MAC, GUEST_IP, HOST_MAC, HOST_IP)
    assert parse_frame(reply).summary() == "ARP reply 10.0.2.15 is-at 52:54:00:12:34:56"

    u = parse_frame(KNOWN_UDP + bytes(14))                         # padded to 60
    assert (u.sport, u.dport, u.payload, u.checksums_ok) == (40000, 7, b"hi", True)
    assert u.summary() == "UDP 10.0.2.2:40000 > 10.0.2.15:7 length 2"

    v6 = parse_frame(bytes.fromhex("333300000001" "02000a000202" "86dd") + bytes(40))
    assert v6.summary() == "ethertype 0x86dd 02:00:0a:00:02:02 > 33:33:00:00:00:01"
    assert (parse_frame(b"\x01\x02").summary()
            == "truncated frame, 2 bytes [malformed: truncated frame]")


def test_parse_flags_bad_checksums():
    bad_icmp = bytearray(KNOWN_ECHO_REQUEST)
    bad_icmp[-1] ^= 0xFF
    f = parse_frame(bad_icmp)
    assert not f.checksums_ok and f.summary().endswith("[bad checksum]")
    bad_ip = bytearray(KNOWN_ECHO_REQUEST)
    bad_ip[24] ^= 1
    f = parse_frame(bad_ip)
    assert not f.checksums_ok and f.error == "bad IPv4 header checksum"
    assert f.type == 8                                  # still decoded for viewers
    bad_udp = bytearray(KNOWN_UDP)
    bad_udp[-1] ^= 1
    assert not parse_frame(bad_udp).checksums_ok


# --------------------------------------------------------------------------------------
# Two stacks back to back


def test_ping_with_static_arp_is_two_frames():
    w = Wire(static_arp=True)
    w.host.ping(GUEST_IP, 0x1234, 1)
    assert [d for d, _ in w.log] == ["guest", "host"]
    request, reply = (f for _, f in w.log)
    assert len(request) == 98 and len(reply) == 98
    assert w.host.echo_replies[(0x1234, 1)] - w.host.echo_sent[(0x1234, 1)] == 2000
    assert w.host.stats["tx_icmp_echo_request"] == 1 and w.host.stats["rx_icmp_echo_reply"] == 1
    assert w.guest.stats["rx_icmp_echo_request"] == 1 and w.guest.stats["tx_icmp_echo_reply"] == 1
    assert w.host.stats["tx_arp"] == 0 and w.guest.stats["tx_arp"] == 0


def test_echo_reply_bytes():
    w = Wire(static_arp=True)
    w.host.ping(GUEST_IP, 0xABCD, 7)
    request, reply = (f for _, f in w.log)
    # Ethernet: back to the requester, from the guest.
    assert reply[0:6] == request[6:12] and reply[6:12] == mac_bytes(GUEST_MAC)
    assert reply[12:14] == b"\x08\x00"
    # IPv4: no options, same length, new id, DF clear (Linux icmp_reply), TTL 64, swapped.
    assert reply[14] == 0x45 and reply[16:18] == request[16:18]
    assert int.from_bytes(reply[18:20], "big") == 1                 # guest's first IP id
    assert reply[20:22] == b"\x00\x00" and request[20:22] == b"\x40\x00"
    assert reply[22] == 64 and reply[23] == 1
    assert reply[26:30] == request[30:34] and reply[30:34] == request[26:30]
    assert reference_checksum(reply[14:34]) == 0
    # ICMP: type 0 code 0, id/seq/data copied byte for byte, checksum valid.
    assert reply[34:36] == b"\x00\x00"
    assert reply[38:42] == request[38:42] == b"\xab\xcd\x00\x07"
    assert reply[42:] == request[42:]
    assert reference_checksum(reply[34:]) == 0
    f = parse_frame(reply)
    assert f.checksums_ok and f.summary() == "ICMP echo reply 10.0.2.15 > 10.0.2.2 id 0xabcd seq 7"


def test_echo_reply_df_option():
    w = Wire(static_arp=True, echo_reply_df=True)
    w.host.ping(GUEST_IP, 1, 1)
    assert w.log[1][1][20:22] == b"\x40\x00"


def test_ping_resolves_arp_first():
    w = Wire()
    w.host.ping(GUEST_IP, 0x1234, 1)
    kinds = [parse_frame(f).summary() for _, f in w.log]
    assert kinds == [
        "ARP request who-has 10.0.2.15 tell 10.0.2.2",
        "ARP reply 10.0.2.15 is-at 52:54:00:12:34:56",
        "ICMP echo request 10.0.2.2 > 10.0.2.15 id 0x1234 seq 1",
        "ICMP echo reply 10.0.2.15 > 10.0.2.2 id 0x1234 seq 1",
    ]
    arp_req, arp_rep = w.log[0][1], w.log[1][1]
    assert arp_req[:6] == BROADCAST_MAC and len(arp_req) == 42
    assert arp_rep[:6] == mac_bytes(HOST_MAC)                    # unicast reply
    assert arp_rep[14 + 18:14 + 28] == arp_req[14 + 8:14 + 18]   # tha/tpa = requester's sha/spa
    assert w.host.arp == {GUEST_IP: mac_bytes(GUEST_MAC)}       # learnt from the reply
    assert w.guest.arp == {HOST_IP: mac_bytes(HOST_MAC)}        # learnt from the request
    assert (0x1234, 1) in w.host.echo_replies
    # Now resolved: the next ping is two frames.
    w.log.clear()
    w.host.ping(GUEST_IP, 0x1234, 2)
    assert len(w.log) == 2 and (0x1234, 2) in w.host.echo_replies
    assert_accounted(w.host)
    assert_accounted(w.guest)


def test_ping_works_with_ethernet_padding():
    w = Wire(pad=True)
    w.guest.ping(HOST_IP, 9, 9)
    assert (9, 9) in w.guest.echo_replies
    w.host.send_udp(GUEST_IP, 5000, 6000, b"x")                 # 43-byte frame, padded to 60
    assert w.guest.udp_received == [(HOST_IP, 5000, 6000, b"x")]
    assert not [k for k in w.host.stats if k.startswith("drop")]
    assert not [k for k in w.guest.stats if k.startswith("drop")]


def test_udp_echo_comes_back():
    w = Wire(static_arp=True)
    w.host.send_udp(GUEST_IP, 40000, 7, b"hello, echo")
    assert w.host.udp_received == [(GUEST_IP, 7, 40000, b"hello, echo")]
    assert w.guest.udp_received == []
    assert w.guest.stats["rx_udp"] == 1 and w.guest.stats["tx_udp"] == 1
    for _, frame in w.log:
        f = parse_frame(frame)
        assert f.checksums_ok and f.error is None and frame[40:42] != b"\0\0"


def test_udp_without_echo_service_and_zero_checksum():
    w = Wire(static_arp=True, udp_echo_port=None)
    w.host.send_udp(GUEST_IP, 40000, 7, b"no echo here")
    assert w.host.udp_received == []
    assert w.guest.udp_received == [(HOST_IP, 40000, 7, b"no echo here")]
    guest, _ = guest_alone()
    no_sum = KNOWN_UDP[:40] + b"\0\0" + KNOWN_UDP[42:]             # checksum 0 = none, accepted
    guest.udp_echo_port = None
    guest.input(no_sum)
    assert guest.udp_received == [(HOST_IP, 40000, 7, b"hi")]


def test_udp_echo_loop_guard():
    w = Wire(static_arp=True)
    w.host.send_udp(GUEST_IP, 7, 7, b"ping-pong")                 # would echo forever
    assert w.guest.stats["drop: UDP echo loop guard"] == 1
    assert len(w.log) == 1


def test_pending_queue_waits_for_arp_and_retries_once_a_second():
    host_out: list[bytes] = []
    now = [0]
    host = NetStack(HOST_MAC, HOST_IP, host_out.append, lambda: now[0])
    host.ping(GUEST_IP, 1, 1)
    host.ping(GUEST_IP, 1, 2)
    host.send_udp(GUEST_IP, 1234, 9, b"u")
    assert len(host_out) == 1 and parse_frame(host_out[0]).arp_op == 1   # one ARP request
    now[0] = 1_000_000_000
    host.ping(GUEST_IP, 1, 3)
    assert len(host_out) == 2 and parse_frame(host_out[1]).arp_op == 1   # asked again
    host.input(build_arp(2, GUEST_MAC, GUEST_IP, HOST_MAC, HOST_IP))
    sent = [parse_frame(f) for f in host_out[2:]]
    assert [(f.proto, f.seq) for f in sent] == [(1, 1), (1, 2), (17, None), (1, 3)]
    assert all(f.dst == mac_bytes(GUEST_MAC) and f.checksums_ok for f in sent)
    assert host.stats["tx_icmp_echo_request"] == 3 and host.stats["tx_udp"] == 1


def test_static_arp_entry_is_not_overwritten_and_flushes_queue():
    out: list[bytes] = []
    host = NetStack(HOST_MAC, HOST_IP, out.append, lambda: 0)
    host.ping(GUEST_IP, 1, 1)
    host.add_static_arp(GUEST_IP, GUEST_MAC)
    assert parse_frame(out[-1]).type == 8
    host.input(build_arp(2, "52:54:00:99:99:99", GUEST_IP, HOST_MAC, HOST_IP))
    assert host.arp[GUEST_IP] == mac_bytes(GUEST_MAC)


def test_arp_for_another_address_and_other_mac_are_dropped():
    guest, out = guest_alone()
    guest.input(build_arp(1, HOST_MAC, HOST_IP, "00:00:00:00:00:00", "10.0.2.99"))
    assert out == [] and guest.arp == {}
    assert guest.stats["drop: ARP for another address"] == 1
    other = bytearray(KNOWN_ECHO_REQUEST)
    other[0:6] = mac_bytes("52:54:00:00:00:01")
    guest.input(bytes(other))
    assert out == [] and guest.stats["drop: not for us"] == 1
    assert_accounted(guest)


def test_guest_answers_known_frames_directly():
    guest, out = guest_alone()
    guest.input(KNOWN_ARP_REQUEST + bytes(18))                     # padded to 60
    assert out == [build_arp(2, GUEST_MAC, GUEST_IP, HOST_MAC, HOST_IP)]
    guest.input(KNOWN_ECHO_REQUEST)
    assert len(out[1]) == 98 and parse_frame(out[1]).type == 0
    guest.input(KNOWN_UDP)
    assert parse_frame(out[2]).summary() == "UDP 10.0.2.15:7 > 10.0.2.2:40000 length 2"
    assert guest.stats["tx_frames"] == 3


def test_ip_options_are_accepted():
    # Rebuild the known request with IHL 6: four option bytes (NOP NOP NOP EOL).
    f = bytearray(KNOWN_ECHO_REQUEST)
    frame = bytearray(f[:34] + b"\x01\x01\x01\x00" + f[34:])
    frame[14] = 0x46
    frame[16:18] = (84 + 4).to_bytes(2, "big")
    guest, out = guest_alone()
    guest.input(fix_ip_checksum(frame))
    assert len(out) == 1
    reply = out[0]
    assert reply[14] == 0x45 and len(reply) == 98             # reply has no options
    assert reply[42:] == KNOWN_ECHO_REQUEST[42:]


def test_trailing_bytes_beyond_total_length_are_not_echoed():
    guest, out = guest_alone()
    guest.input(KNOWN_ECHO_REQUEST + b"garbage!")
    assert len(out[0]) == 98 and out[0][42:] == KNOWN_ECHO_REQUEST[42:]


def test_broadcast_echo_is_ignored_like_linux():
    frame = build_echo_request(HOST_MAC, "ff:ff:ff:ff:ff:ff", HOST_IP, "10.0.2.255", 1, 1)
    guest, out = guest_alone()
    guest.input(frame)
    assert out == [] and guest.stats["drop: ICMP echo to broadcast ignored"] == 1


def test_off_link_destination_and_bad_arguments_raise():
    guest, _ = guest_alone()
    with pytest.raises(ValueError):
        guest.ping("192.168.1.1", 1, 1)
    with pytest.raises(ValueError):
        guest.ping("10.0.2.300", 1, 1)
    with pytest.raises(ValueError):
        guest.ping(HOST_IP, 70000, 1)
    with pytest.raises(ValueError):
        guest.send_udp(HOST_IP, 1, 2, bytes(1473))                 # over the 1500-byte MTU


# --------------------------------------------------------------------------------------
# Malformed input: counted drops, never an exception


def _edit(frame: bytes, offset: int, value: bytes, fix: bool = True) -> bytes:
    b = bytearray(frame)
    b[offset:offset + len(value)] = value
    return fix_ip_checksum(b) if fix else bytes(b)


def _retype_icmp(frame: bytes, icmp_type: int) -> bytes:
    b = bytearray(frame)
    b[34] = icmp_type
    b[36:38] = b"\0\0"
    b[36:38] = reference_checksum(bytes(b[34:])).to_bytes(2, "big")
    return bytes(b)


MALFORMED = [
    (b"", "drop: truncated frame"),
    (KNOWN_ECHO_REQUEST[:13], "drop: truncated frame"),
    (KNOWN_ECHO_REQUEST[:30], "drop: truncated IPv4 header"),
    (KNOWN_ARP_REQUEST[:40], "drop: truncated ARP packet"),
    (_edit(KNOWN_ECHO_REQUEST, 24, b"\x00\x00", fix=False), "drop: bad IPv4 header checksum"),
    (_edit(KNOWN_ECHO_REQUEST, 97, b"\xff", fix=False), "drop: bad ICMP checksum"),
    (_edit(KNOWN_UDP, 42, b"HI", fix=False), "drop: bad UDP checksum"),
    (_edit(KNOWN_ECHO_REQUEST, 14, b"\x65"), "drop: bad IP version 6"),
    (_edit(KNOWN_ECHO_REQUEST, 14, b"\x44", fix=False), "drop: bad IPv4 header length (IHL 4)"),
    (_edit(KNOWN_ECHO_REQUEST, 14, b"\x4f", fix=False)[:60], "drop: truncated IPv4 header"),
    (_edit(KNOWN_ECHO_REQUEST, 16, b"\x00\xc8"), "drop: IPv4 total length exceeds frame"),
    (_edit(KNOWN_ECHO_REQUEST, 16, b"\x00\x10"), "drop: bad IPv4 total length"),
    (_edit(KNOWN_ECHO_REQUEST, 16, b"\x00\x18"), "drop: truncated ICMP message"),
    (_edit(KNOWN_ECHO_REQUEST, 20, b"\x20\x00"), "drop: IPv4 fragment (no reassembly)"),
    (_edit(KNOWN_ECHO_REQUEST, 23, b"\x06"), "drop: unsupported IP protocol 6"),
    (_edit(KNOWN_ECHO_REQUEST, 30, b"\x0a\x00\x02\x63"), "drop: IPv4 packet not for us"),
    (_edit(KNOWN_ECHO_REQUEST, 12, b"\x86\xdd", fix=False), "drop: unsupported ethertype 0x86dd"),
    (_edit(KNOWN_ECHO_REQUEST, 0, b"\x52\x54\x00\x00\x00\x01", fix=False), "drop: not for us"),
    (_edit(KNOWN_ECHO_REQUEST, 6, b"\x01", fix=False), "drop: multicast source MAC"),
    (_edit(KNOWN_UDP, 38, b"\x00\x20", fix=False), "drop: bad UDP length"),
    (_edit(KNOWN_UDP, 16, b"\x00\x18")[:14 + 24], "drop: truncated UDP header"),
    (_edit(KNOWN_ARP_REQUEST, 14, b"\x00\x06", fix=False),
     "drop: unsupported ARP hardware/protocol type"),
    (_edit(KNOWN_ARP_REQUEST, 20, b"\x00\x03", fix=False), "drop: unsupported ARP operation 3"),
    (_retype_icmp(KNOWN_ECHO_REQUEST, 13), "drop: unsupported ICMP type 13"),
]


@pytest.mark.parametrize("frame,reason", MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_frames_are_counted_drops(frame, reason):
    guest, out = guest_alone()
    guest.input(frame)
    assert out == []
    assert only_drop(guest) == reason
    assert guest.stats["rx_frames"] == 1
    assert_accounted(guest)
    parse_frame(frame).summary()                      # the viewer copes too


def test_input_accepts_bytearray_and_memoryview():
    guest, out = guest_alone()
    guest.input(bytearray(KNOWN_ECHO_REQUEST))
    guest.input(memoryview(KNOWN_ECHO_REQUEST))
    assert len(out) == 2


# --------------------------------------------------------------------------------------
# Fuzzing: nothing raises, everything is accounted for, anything sent is well formed

VALID_FRAMES = [
    KNOWN_ECHO_REQUEST,
    KNOWN_ARP_REQUEST,
    KNOWN_UDP,
    build_arp(2, HOST_MAC, HOST_IP, GUEST_MAC, GUEST_IP),
    build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 40000, 5000, b"data"),
    build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 2, payload=b"odd"),
    _retype_icmp(KNOWN_ECHO_REQUEST, 0),
]


def _check_fuzzed(frame: bytes) -> None:
    guest, out = guest_alone()
    guest.input(frame)
    assert guest.stats["rx_frames"] == 1
    assert_accounted(guest)
    for sent in out:
        f = parse_frame(sent)
        assert f.error is None and f.checksums_ok, f
    assert isinstance(parse_frame(frame).summary(), str)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(frame):
    _check_fuzzed(frame)
    _check_fuzzed(mac_bytes(GUEST_MAC) + frame)       # past the MAC filter
    _check_fuzzed(mac_bytes(GUEST_MAC) + mac_bytes(HOST_MAC) + b"\x08\x00" + frame)
    _check_fuzzed(mac_bytes(GUEST_MAC) + mac_bytes(HOST_MAC) + b"\x08\x06" + frame)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_FRAMES),
       st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
       st.one_of(st.none(), st.integers(0, 120)),
       st.binary(max_size=30),
       st.booleans())
def test_fuzz_mutated_valid_frames(frame, edits, cut, tail, fix):
    b = bytearray(frame)
    for offset, value in edits:
        if offset < len(b):
            b[offset] = value
    if cut is not None:
        del b[cut:]
    b += tail
    if fix and len(b) >= 34 and b[12:14] == b"\x08\x00" and 20 <= (b[14] & 15) * 4 <= len(b) - 14:
        b = bytearray(fix_ip_checksum(b))              # reach the layers above IPv4 too
    _check_fuzzed(bytes(b))
