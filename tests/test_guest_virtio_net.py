"""Tests for the guest's virtio-pci modern transport and virtio-net driver.

Part 1 drives the driver against ``FakeVirtioNet``, a virtio-net PCI function written here
from specs.md §3-6 with knobs for misbehaviour (refused features, unmapped vectors, a small
MSI-X table); the test plays the device's ring side by hand (``SpecDevice``), so every
check is against the specification. Part 2 boots the real machine (qnetlearn.hw's
virtio-net-pci) and compares one ping with the golden recordings of QEMU 7.2 + Linux 6.1.
"""
from __future__ import annotations

import pathlib
import re
import struct
from typing import Any

import pytest
from test_guest_kernel import APIC_EOI, FakeCPU, pci_function
from test_guest_virtio_ring import SpecDevice

from qnetlearn.guest import LinuxGuest
from qnetlearn.guest.virtio_net import VirtNet, mergeable_buf_len
from qnetlearn.guest.virtio_ring import VRING_DESC_F_WRITE
from qnetlearn.net.stack import (build_echo_request, build_udp, internet_checksum, mac_bytes,
                                 parse_frame)

GUEST_MAC, HOST_MAC = "52:54:00:12:34:56", "02:00:0a:00:02:02"
GUEST_IP, HOST_IP = "10.0.2.15", "10.0.2.2"
BAR1 = 0xFE001000
BAR4 = 0x8_0000_0000                    # a 64-bit BAR above 4 GiB
COMMON, ISR, DEVICE, NOTIFY = BAR4, BAR4 + 0x1000, BAR4 + 0x2000, BAR4 + 0x3000
F_CSUM, F_GUEST_CSUM, F_MAC, F_GUEST_TSO4, F_MRG, F_STATUS, F_CTRL_VQ = 0, 1, 5, 7, 15, 16, 17
F_INDIRECT, F_EVENT_IDX, F_VERSION_1, F_RING_RESET = 28, 29, 32, 40
QEMU_FEATURES = sum(1 << b for b in (F_CSUM, F_GUEST_CSUM, F_MAC, F_GUEST_TSO4, F_MRG,
                                      F_STATUS, F_CTRL_VQ, F_INDIRECT, F_EVENT_IDX,
                                      F_VERSION_1, F_RING_RESET))
GOLDEN = pathlib.Path("/work/shared/reference/golden-qemu")


class FakeVirtioNet:
    """A modern virtio-net PCI function (1af4:1041) on a FakeCPU, from specs.md §5."""

    def __init__(self, cpu: FakeCPU, devfn: int = 0x18, features: int = QEMU_FEATURES,
                 nvectors: int = 3, refuse_features: bool = False,
                 map_queue_vectors: bool = True, link_up: bool = True,
                 queue_size: int = 256) -> None:
        self.cpu = cpu
        self.features = features
        self.nvectors = nvectors
        self.refuse_features = refuse_features
        self.map_queue_vectors = map_queue_vectors
        self.status = 0
        self.dfselect = self.gfselect = 0
        self.guest_features = [0, 0]
        self.msix_config = 0xFFFF
        self.qsel = 0
        self.queues = [dict(size=queue_size, msix=0xFFFF, enable=0, desc=0, avail=0, used=0)
                       for _ in range(3 if features >> F_CTRL_VQ & 1 else 2)]
        self.isr = 0
        self.notified: list[int] = []
        self.status_writes: list[int] = []
        self.config_space = bytearray(mac_bytes(GUEST_MAC) + struct.pack("<H", int(link_up)))
        cpu.config[devfn] = cfg = pci_function(0x1AF4, 0x1041)
        struct.pack_into("<H", cfg, 0x2E, 1)                       # subsystem id: net
        cfg[0x3D] = 1                                             # INTA#
        struct.pack_into("<I", cfg, 0x14, BAR1)
        struct.pack_into("<II", cfg, 0x20, (BAR4 & 0xFFFFFFFF) | 0xC, BAR4 >> 32)
        cfg[0x06] = 0x10
        caps = [(0x40, bytes([0x11, 0]) + struct.pack("<HII", nvectors - 1, 1, 0x800 | 1))]
        pos = 0x50
        for cfg_type, off in ((1, 0), (3, 0x1000), (4, 0x2000), (2, 0x3000)):
            body = bytes([0x09, 0, 20 if cfg_type == 2 else 16, cfg_type, 4, 0, 0, 0])
            body += struct.pack("<II", off, 0x1000)
            if cfg_type == 2:
                body += struct.pack("<I", 4)                      # notify_off_multiplier
            caps.append((pos, body))
            pos += 0x18
        nxt = 0
        for at, body in reversed(caps):
            cfg[at:at + len(body)] = body
            cfg[at + 1] = nxt
            nxt = at
        cfg[0x34] = nxt
        self.table: dict[int, int] = {}
        cpu.map(BAR1, 0x1000, lambda o, s: self.table.get(o, 0),
                lambda o, s, v: self.table.__setitem__(o, v))
        cpu.map(COMMON, 0x1000, self._common_read, self._common_write)
        cpu.map(ISR, 0x1000, self._isr_read)
        cpu.map(DEVICE, 0x1000, lambda o, s: int.from_bytes(self.config_space[o:o + s], "little"))
        cpu.map(NOTIFY, 0x1000, None, lambda o, s, v: self.notified.append((o, s, v)))

    # specs.md §5.3
    def _common_read(self, off: int, size: int) -> int:
        q = self.queues[self.qsel] if self.qsel < len(self.queues) else None
        if off == 4:
            return self.features >> (32 * self.dfselect) & 0xFFFFFFFF if self.dfselect < 2 else 0
        if off == 16:
            return self.msix_config
        if off == 18:
            return len(self.queues)
        if off == 20:
            return self.status
        if off in (21,):
            return 0
        if off == 22:
            return self.qsel
        if q is None:
            return 0
        if off == 24:
            return q["size"]
        if off == 26:
            return q["msix"]
        if off == 28:
            return q["enable"]
        if off == 30:
            return self.qsel
        return 0

    def _common_write(self, off: int, size: int, val: int) -> None:
        q = self.queues[self.qsel] if self.qsel < len(self.queues) else None
        if off == 0:
            self.dfselect = val
        elif off == 8:
            self.gfselect = val
        elif off == 12:
            self.guest_features[self.gfselect] = val
        elif off == 16:
            self.msix_config = val if val < self.nvectors else 0xFFFF
        elif off == 20:
            self.status_writes.append(val)
            if val == 0:
                self.status = 0
                for qq in self.queues:
                    qq.update(msix=0xFFFF, enable=0)
            elif val & 8 and self.refuse_features:
                self.status = val & ~8
            else:
                self.status = val
        elif off == 22:
            self.qsel = val
        elif q is not None and off == 24:
            q["size"] = val
        elif q is not None and off == 26:
            q["msix"] = val if self.map_queue_vectors and val < self.nvectors else 0xFFFF
        elif q is not None and off == 28:
            q["enable"] = val
        elif q is not None and 32 <= off < 56:
            key = ("desc", "avail", "used")[(off - 32) // 8]
            shift = 32 if off & 4 else 0
            q[key] = q[key] & ~(0xFFFFFFFF << shift) | val << shift

    def _isr_read(self, off: int, size: int) -> int:
        isr, self.isr = self.isr, 0
        return isr

    @property
    def negotiated(self) -> int:
        return self.guest_features[0] | self.guest_features[1] << 32

    def ring(self, n: int, event_idx: bool = True) -> SpecDevice:
        """The device side of queue ``n`` as the driver programmed it."""
        q = self.queues[n]

        class _VQ:          # what SpecDevice needs to know of a queue
            pass
        v: Any = _VQ()
        v.kernel = type("K", (), {"cpu": self.cpu})()
        v.num, v.desc, v.avail, v.used = q["size"], q["desc"], q["avail"], q["used"]
        return SpecDevice(v, event_idx)


def boot(**kw: Any) -> tuple[FakeCPU, FakeVirtioNet, LinuxGuest]:
    cpu = FakeCPU(ram_mb=32)
    dev = FakeVirtioNet(cpu, **kw)
    guest = LinuxGuest(cpu, GUEST_IP, {HOST_IP: HOST_MAC})
    guest.boot()
    return cpu, dev, guest


def deliver_rx(cpu: FakeCPU, rx: SpecDevice, frame: bytes, hdr: bytes | None = None) -> None:
    head, chain = rx.pop()
    (addr, length, flags), = chain
    assert flags == VRING_DESC_F_WRITE
    data = (hdr if hdr is not None else struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 1)) + frame
    cpu.ram.write(addr, data)
    rx.push(head, len(data))


# -- part 1: the driver against a device written from the spec ------------------------------

def test_probe_follows_the_initialisation_sequence() -> None:
    cpu, dev, guest = boot()
    assert guest.probe_errors == []
    nic = guest.nics[0]
    assert isinstance(nic, VirtNet) and nic.name == "eth0" and guest.mac == GUEST_MAC
    # specs.md §3.2: reset, ACKNOWLEDGE, DRIVER, FEATURES_OK (read back), DRIVER_OK
    assert dev.status_writes == [0, 1, 3, 0xB, 0xF]
    wanted = {F_CSUM, F_GUEST_CSUM, F_MAC, F_GUEST_TSO4, F_MRG, F_STATUS, F_INDIRECT,
              F_EVENT_IDX, F_VERSION_1}
    assert dev.negotiated == sum(1 << b for b in wanted)       # no CTRL_VQ, RING_RESET
    assert cpu.pci_config_read(0x18, 4, 2) & 0x6 == 0x6       # memory space, bus master
    # one MSI-X vector for config changes (entry 0) and one per queue (1 = rx, 2 = tx)
    assert dev.msix_config == 0
    assert [q["msix"] for q in dev.queues] == [1, 2, 0xFFFF]      # no control queue used
    assert [q["enable"] for q in dev.queues] == [1, 1, 0]
    assert [dev.table[16 * i + 8] for i in range(3)] == [0x26, 0x27, 0x28]
    assert all(dev.table[16 * i] == 0xFEE01004 for i in range(3))
    assert [dev.table[16 * i + 12] for i in range(3)] == [0, 0, 0]      # unmasked
    assert guest.interrupts == {"virtio0-config": 0, "virtio0-input.0": 0, "virtio0-output.0": 0}
    # the RX ring is full of single 1536-byte writable buffers, published by ONE kick
    rx = dev.ring(0)
    bufs = []
    while (got := rx.pop()) is not None:
        bufs.append(got[1])
    assert len(bufs) == 256
    assert {tuple((length, flags) for _a, length, flags in c) for c in bufs} == {
        ((1536, VRING_DESC_F_WRITE),)}
    assert len({c[0][0] for c in bufs}) == 256
    assert dev.notified == [(0, 2, 0)]                   # 16-bit write of queue index 0
    ram = cpu.ram
    assert ram.lduw(dev.queues[1]["avail"] + 2) == 0     # TX ring empty
    assert guest.stack is not None and nic.carrier


def test_rx_interrupt_napi_and_echo_reply_through_tx() -> None:
    cpu, dev, guest = boot()
    rx, tx = dev.ring(0), dev.ring(1)
    cpu.log.clear()
    req = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0x42, 1)
    deliver_rx(cpu, rx, req)
    cpu.interrupt(0x27)                  # the device's MSI-X entry 1
    # the first interrupt: the vector move under mask, then EOI (golden step 7-8)
    assert [a for _k, a, _s, _v in cpu.log][-1] == APIC_EOI
    assert len(cpu.log) == 8
    assert not dev.notified[1:]          # nothing sent yet: the work is in NAPI
    cpu.loop.run()
    assert dev.notified[1:] == [(4, 2, 1)]    # TX kick: queue 1 at notify_off 1 * 4
    head, chain = tx.pop()
    (addr, length, flags), = chain           # header and frame in ONE readable descriptor
    assert flags == 0 and length == 12 + 98
    data = cpu.ram.read(addr, length)
    assert data[:12] == bytes(12)
    reply = parse_frame(data[12:])
    assert (reply.type, reply.ident, reply.seq, reply.checksums_ok) == (0, 0x42, 1, True)
    assert reply.dst == mac_bytes(HOST_MAC)
    # no refill and no RX kick for one packet (lazy refill, golden step 9)
    assert cpu.ram.lduw(dev.queues[0]["avail"] + 2) == 256
    nic = guest.nics[0]
    assert nic.tx_packets == 1 and len(nic.tx_pool) == 255
    assert tx.push(head, 0) is True          # the driver wants the TX interrupt
    cpu.interrupt(0x28)
    cpu.loop.run()
    assert len(nic.tx_pool) == 256 and guest.interrupts["virtio0-output.0"] == 1
    # steady state: the second echo costs one EOI per interrupt, nothing more
    cpu.log.clear()
    deliver_rx(cpu, rx, build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 0x42, 2))
    cpu.interrupt(0x27)
    assert [(k, a) for k, a, _s, _v in cpu.log] == [("w", APIC_EOI)]
    cpu.loop.run()
    h2, _c = tx.pop()
    assert tx.push(h2, 0) is True
    assert guest.interrupts["virtio0-input.0"] == 2


def test_lazy_refill_after_half_the_budget() -> None:
    cpu, dev, guest = boot()
    rx = dev.ring(0)
    ram = cpu.ram
    for seq in range(1, 34):
        deliver_rx(cpu, rx, build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, seq))
        cpu.interrupt(0x27)
        cpu.loop.run()
        expected = 256 if seq <= 32 else 256 + 33
        assert ram.lduw(dev.queues[0]["avail"] + 2) == expected, seq
    # the device's avail_event (33) is far behind: the refill needs no kick
    assert dev.notified[0] == (0, 2, 0) and all(n[2] == 1 for n in dev.notified[1:])


def test_mergeable_packet_across_two_buffers() -> None:
    cpu, dev, guest = boot()
    rx = dev.ring(0)
    payload = bytes(range(256)) * 7
    frame = build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 5000, 9, payload)
    data = struct.pack("<BBHHHHH", 0, 0, 0, 0, 0, 0, 2) + frame      # num_buffers = 2
    (h1, ((a1, l1, _),)), (h2, ((a2, _, _),)) = rx.pop(), rx.pop()
    cpu.ram.write(a1, data[:l1])
    cpu.ram.write(a2, data[l1:])
    rx.push(h1, l1)
    rx.push(h2, len(data) - l1)
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert guest.stack.udp_received == [(HOST_IP, 5000, 9, payload)]
    assert guest.nics[0].rx_packets == 1


def test_bad_rx_buffers_are_counted_not_passed_up() -> None:
    cpu, dev, guest = boot()
    rx = dev.ring(0)
    nic = guest.nics[0]
    head, _c = rx.pop()
    rx.push(head, 20)                                     # shorter than header + Ethernet
    req = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 1)
    deliver_rx(cpu, rx, req, hdr=struct.pack("<BBHHHHH", 0, 1, 0, 0, 0, 0, 1))   # GSO TCPv4
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert nic.stats["rx dropped: short packet"] == 1
    assert nic.stats["rx dropped: bad gso"] == nic.stats["rx_frame_errors"] == 1   # size 0
    assert nic.rx_packets == 0 and len(nic.rx_pool) == 2


def test_needs_csum_is_completed_by_the_driver() -> None:
    """GUEST_CSUM lets the device hand over a partial checksum (specs.md §4.4)."""
    cpu, dev, guest = boot()
    req = bytearray(build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 9, 3))
    req[36:38] = b"\0\0"                                  # ICMP checksum left to the guest
    assert internet_checksum(bytes(req[34:])) != 0
    hdr = struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 2, 1)   # NEEDS_CSUM, start 34, offset 2
    deliver_rx(cpu, dev.ring(0), bytes(req), hdr)
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert guest.stack.stats["rx_icmp_echo_request"] == 1


def test_link_status_from_config_interrupt() -> None:
    cpu, dev, guest = boot(link_up=False)
    nic = guest.nics[0]
    assert not nic.carrier
    guest.stack.ping(HOST_IP, 1, 1)
    assert nic.stats["tx dropped: no carrier"] == 1
    dev.config_space[6] = 1                               # VIRTIO_NET_S_LINK_UP
    cpu.interrupt(0x26)                                   # config change, MSI-X entry 0
    cpu.loop.run()
    assert nic.carrier and guest.interrupts["virtio0-config"] == 1
    assert "eth0: link up" in guest.dmesg


def test_device_without_status_feature_is_up() -> None:
    cpu, dev, guest = boot(features=QEMU_FEATURES & ~(1 << F_STATUS))
    assert guest.nics[0].carrier


def test_features_refused_fails_the_probe_cleanly() -> None:
    cpu, dev, guest = boot(refuse_features=True)
    assert guest.nics == [] and guest.mac is None
    assert len(guest.probe_errors) == 1 and "refuses features" in guest.probe_errors[0][1]
    assert dev.status & 0x80                              # FAILED
    assert 0xF not in dev.status_writes


def test_modern_interface_needs_version_1() -> None:
    cpu, dev, guest = boot(features=QEMU_FEATURES & ~(1 << F_VERSION_1))
    assert guest.nics == [] and "VERSION_1" in guest.probe_errors[0][1]


def test_without_mrg_rxbuf_or_gso_buffers_are_small_and_header_12_bytes() -> None:
    cpu, dev, guest = boot(features=QEMU_FEATURES & ~(1 << F_MRG | 1 << F_GUEST_TSO4))
    nic = guest.nics[0]
    assert nic.hdr_len == 12 and not nic.mergeable and not nic.big_packets
    head, ((addr, length, flags),) = dev.ring(0).pop()
    assert (length, flags) == (12 + 1518, VRING_DESC_F_WRITE)
    assert mergeable_buf_len(12) == 1536


@pytest.mark.parametrize("indirect", [True, False])
def test_big_packets_post_19_entry_chains(indirect: bool) -> None:
    """GUEST_TSO4 without MRG_RXBUF: Linux add_recvbuf_big's chain of MAX_SKB_FRAGS + 2
    writable entries, the 12-byte header, the rest of its page after the 32-byte
    padded_vnet_hdr, then 17 pages; with INDIRECT_DESC one ring descriptor per chain, so
    all 256 fit, else 19 each (13 chains)."""
    features = QEMU_FEATURES & ~(1 << F_MRG | (0 if indirect else 1 << F_INDIRECT))
    cpu, dev, guest = boot(features=features)
    nic = guest.nics[0]
    assert nic.big_packets and not nic.mergeable and nic.hdr_len == 12
    rx = dev.ring(0)
    chains = []
    while (got := rx.pop()) is not None:
        chains.append(got[1])
    assert len(chains) == (256 if indirect else 256 // 19)
    for chain in chains:
        assert [n for _a, n, _f in chain] == [12, 4096 - 32] + [4096] * 17
        assert all(f & VRING_DESC_F_WRITE for _a, _n, f in chain)
        first = chain[0][0]
        assert first % 4096 == 0 and chain[1][0] == first + 32
        assert all(a % 4096 == 0 for a, _n, _f in chain[2:])
    pages = {a >> 12 for chain in chains for a, _n, _f in chain}
    assert len(pages) == 18 * len(chains)                # no page in two buffers


def deliver_big(cpu: FakeCPU, rx: SpecDevice, hdr: bytes, frame: bytes) -> None:
    """Write ``hdr`` + ``frame`` as a device does, across the entries of one chain."""
    head, chain = rx.pop()
    data = hdr + frame
    done = 0
    for addr, length, _f in chain:
        part = data[done:done + length]
        cpu.ram.write(addr, part)
        done += len(part)
    assert done == len(data)
    rx.push(head, len(data))


def udp_partial(payload: bytes) -> bytes:
    """A UDP frame whose checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL,
    what a NEEDS_CSUM header describes)."""
    f = bytearray(build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 5000, 9000, payload))
    pseudo = f[26:34] + struct.pack("!HH", 17, len(f) - 34)
    f[40:42] = (~internet_checksum(pseudo) & 0xFFFF).to_bytes(2, "big")
    return bytes(f)


def test_big_packets_receive_a_jumbo_and_a_gso_frame_intact() -> None:
    cpu, dev, guest = boot(features=QEMU_FEATURES & ~(1 << F_MRG))
    nic, rx = guest.nics[0], dev.ring(0)
    jumbo = bytes(range(251)) * 36                                    # 9036 bytes: 3 pages
    deliver_big(cpu, rx, bytes(12), build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP,
                                                5000, 9000, jumbo))
    big = bytes(range(256)) * 160                                     # a 40 KiB UFO datagram
    # NEEDS_CSUM from byte 34 (UDP), checksum at +6; GSO UDP, segments of 1472
    hdr = struct.pack("<BBHHHHH", 1, 3, 42, 1472, 34, 6, 0)
    deliver_big(cpu, rx, hdr, udp_partial(big))
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert guest.stack.udp_received == [(HOST_IP, 5000, 9000, jumbo),
                                        (HOST_IP, 5000, 9000, big)]
    assert nic.rx_packets == 2 and not nic.stats["rx_frame_errors"]
    assert len(nic.rx_pages) == 2 * 18                  # both chains' pages back in the pool


def test_big_packets_drop_what_cannot_be_right() -> None:
    cpu, dev, guest = boot(features=QEMU_FEATURES & ~(1 << F_MRG))
    nic, rx = guest.nics[0], dev.ring(0)
    udp = build_udp(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 5000, 9000, b"x" * 100)
    deliver_big(cpu, rx, struct.pack("<BBHHHHH", 0, 2, 0, 1000, 0, 0, 0), udp)   # type 2
    deliver_big(cpu, rx, struct.pack("<BBHHHHH", 1, 0, 0, 0, 34, 200, 0), udp)   # csum past end
    head, chain = rx.pop()
    rx.push(head, 12 + 4064 + 17 * 4096)                # all of it: more than the frags hold
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert nic.stats["rx dropped: bad gso"] == nic.stats["rx_frame_errors"] == 2
    assert nic.stats["rx dropped: too much data"] == 1
    assert nic.rx_packets == 0 and guest.stack.udp_received == []


def test_small_msix_table_shares_one_vector_for_the_queues() -> None:
    cpu, dev, guest = boot(nvectors=2)
    assert guest.probe_errors == []
    assert [q["msix"] for q in dev.queues][:2] == [1, 1]
    assert set(guest.interrupts) == {"virtio0-config", "virtio0-virtqueues"}
    rx = dev.ring(0)
    deliver_rx(cpu, rx, build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 1))
    vec = dev.table[16 + 8]
    cpu.interrupt(vec)
    cpu.loop.run()
    assert guest.stack.stats["tx_icmp_echo_reply"] == 1


def test_unmappable_queue_vectors_fall_back_to_intx() -> None:
    """specs.md §5.6: queue_msix_vector reads back NO_VECTOR -> the driver cannot use it;
    Linux then tries a shared vector, then INTx with the ISR byte (§5.5)."""
    cpu, dev, guest = boot(map_queue_vectors=False)
    assert guest.probe_errors == [] and guest.interrupts == {"virtio0": 0}
    assert [q["msix"] for q in dev.queues][:2] == [0xFFFF, 0xFFFF]
    ioapic = [v for a, v in cpu.writes() if a in (0xFEC00000, 0xFEC00010)]
    assert ioapic[:4] == [0x10 + 2 * 11 + 1, 1 << 24, 0x10 + 2 * 11, 0x8800 | ioapic[3] & 0xFF]
    vector = ioapic[3] & 0xFF
    deliver_rx(cpu, dev.ring(0), build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 1, 1))
    dev.isr = 1
    cpu.apic_tmr[vector >> 5] = 1 << (vector & 31)
    cpu.log.clear()
    cpu.interrupt(vector)
    assert ("r", ISR, 1, 1) in cpu.log
    assert cpu.log[-2:] == [("r", 0xFEE00180 + 0x10 * (vector >> 5), 4, 1 << (vector & 31)),
                            ("w", APIC_EOI, 4, 0)]
    cpu.loop.run()
    assert guest.stack.stats["tx_icmp_echo_reply"] == 1
    dev.isr = 0
    cpu.interrupt(vector)                                  # shared line, not ours: IRQ_NONE
    assert guest.interrupts["virtio0"] == 2


def test_guest_ping_goes_out_and_times_the_reply() -> None:
    cpu, dev, guest = boot()
    tx, rx = dev.ring(1), dev.ring(0)
    cpu.schedule(guest.stack.ping, HOST_IP, 7, 1)
    cpu.loop.run()
    head, ((addr, length, _f),) = tx.pop()
    req = parse_frame(cpu.ram.read(addr + 12, length - 12))
    assert (req.type, req.dst_ip, req.src_ip) == (8, HOST_IP, GUEST_IP)
    reply = build_echo_request(HOST_MAC, GUEST_MAC, HOST_IP, GUEST_IP, 7, 1, payload=req.payload)
    reply = bytearray(reply)
    reply[34] = 0                                          # echo reply
    csum = internet_checksum(bytes(reply[34:36]) + b"\0\0" + bytes(reply[38:]))
    reply[36:38] = csum.to_bytes(2, "big")
    deliver_rx(cpu, rx, bytes(reply))
    cpu.interrupt(0x27)
    cpu.loop.run()
    assert (7, 1) in guest.stack.echo_replies


# -- part 2: the real machine and the golden recordings ---------------------------------------

#: -device virtio-net-pci options and the golden recordings made with them
GOLDEN_VARIANTS = [("", "virtio"), (",event_idx=off", "virtio-noeventidx"),
                   (",mrg_rxbuf=off", "virtio-nomrg")]


def _machine(extra: str = "") -> Any:
    qn = pytest.importorskip("qnetlearn")
    try:
        vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,"
                                     "netdev=hn0" + extra)
    except (ImportError, NotImplementedError) as e:          # the device model is not there
        pytest.skip(f"no virtio-net-pci device model: {e}")
    vm.boot()
    return vm


def _golden(name: str) -> list[str]:
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return [re.sub(r"\s+# \+[0-9.]+ms$", "", line) for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_machine_boots_the_guest_and_pings_both_ways() -> None:
    vm = _machine()
    g = vm.guest
    assert g.probe_errors == [] and [n.name for n in g.nics] == ["eth0"]
    assert (g.ip, g.mac) == (GUEST_IP, GUEST_MAC)
    rtts = vm.host().ping(count=3)
    assert all(r is not None and r > 0 for r in rtts)
    back = g.ping(HOST_IP, count=2)
    assert all(r is not None for r in back)
    assert g.interrupts == {"virtio0-config": 0, "virtio0-input.0": 5, "virtio0-output.0": 5}


@pytest.mark.parametrize("extra,golden", GOLDEN_VARIANTS)
def test_one_ping_matches_the_golden_recording(extra: str, golden: str) -> None:
    vm = _machine(extra)
    with vm.record() as rec:
        assert vm.host().ping()[0] is not None
    assert rec.to_qemu_trace().splitlines() == _golden(f"{golden}-ping1.trace")


@pytest.mark.parametrize("extra,golden", GOLDEN_VARIANTS)
def test_five_pings_match_the_golden_steady_state(extra: str, golden: str) -> None:
    vm = _machine(extra)
    vm.host().ping()
    with vm.record() as rec:
        assert None not in vm.host().ping(count=5)
    assert rec.to_qemu_trace().splitlines() == _golden(f"{golden}-ping5.trace")


def test_hundred_pings_need_no_rx_kick_and_two_interrupts_each() -> None:
    vm = _machine()
    vm.host().ping()
    nic = vm.guest.nics[0]
    kicks = nic.rvq.stats["kicks"]
    assert None not in vm.host().ping(count=100)
    assert nic.rvq.stats["kicks"] == kicks                 # refills, but never an RX kick
    assert vm.guest.interrupts["virtio0-input.0"] == 101
    assert vm.guest.interrupts["virtio0-output.0"] == 101
    assert nic.rvq.num_free <= 32
