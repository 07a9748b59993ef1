"""The e1000 (82540EM) device model driven from the 8254x manual, with no simulated guest.

The test plays the driver through the hardware interfaces only (API.md, "The hardware, as
a driver sees it"): PCI configuration space, the BAR0 registers in the physical address
space, descriptors and buffers in guest RAM, and the INTx line level.
"""
from __future__ import annotations

import struct

import pytest

import qnetlearn as qn
from qnetlearn.net.stack import build_udp, internet_checksum, parse_frame

LINE = "-net nic,model=e1000 -net tap"
GUEST_MAC, HOST_MAC = "52:54:00:12:34:56", "02:00:0a:00:02:02"
GSI = 11                                  # slot 3 INTA# -> PIRQD -> GSI 11 on the pc machine

# registers (8254x SDM table 13-2)
CTRL, STATUS, EECD, EERD, MDIC = 0x0, 0x8, 0x10, 0x14, 0x20
ICR, ITR, ICS, IMS, IMC, RCTL, TCTL = 0xC0, 0xC4, 0xC8, 0xD0, 0xD8, 0x100, 0x400
RDBAL, RDBAH, RDLEN, RDH, RDT, RDTR, RADV = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818, 0x2820, 0x282C
TDBAL, TDBAH, TDLEN, TDH, TDT, TADV = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818, 0x382C
MTA, RAL0, RAH0, VET, GPRC, TPR, TORL = 0x5200, 0x5400, 0x5404, 0x38, 0x4074, 0x40D0, 0x40C0
MPC, RNBC, GPTC = 0x4010, 0x40A0, 0x4080
# bits
RCTL_EN, RCTL_UPE, RCTL_MPE, RCTL_BAM, RCTL_SECRC = 0x2, 0x8, 0x10, 0x8000, 0x04000000
RCTL_SZ_256 = 0x30000
TCTL_EN, TCTL_PSP = 0x2, 0x8
ICR_TXDW, ICR_TXQE, ICR_LSC, ICR_RXDMT0, ICR_RXO, ICR_RXT0 = 0x1, 0x2, 0x4, 0x10, 0x40, 0x80
RXD_DD, RXD_EOP, RXD_IXSM, RXD_VP = 0x1, 0x2, 0x4, 0x8
TXD_EOP, TXD_IFCS, TXD_RS, TXD_DEXT, TXD_IDE = 0x01000000, 0x02000000, 0x08000000, 0x20000000, 0x80000000
TXD_DTYP_D, TXD_POPTS_IXSM, TXD_POPTS_TXSM = 0x00100000, 0x1, 0x2
RXDESC = struct.Struct("<QHHBBH")
TXDESC = struct.Struct("<QII")

RX_RING, RX_BUFS = 0x10000, 0x20000        # guest-physical addresses the test uses
TX_RING, TX_BUFS = 0x40000, 0x50000


class Driver:
    """A register-level e1000 driver written from the manual, for the tests."""

    def __init__(self, line: str = LINE, master: bool = True) -> None:
        self.vm = vm = qn.Machine.from_cmdline(line, guest=None)
        vm.boot()                                   # firmware assigns the BARs
        self.devfn = next(d for d in range(0, 256, 8)
                          if vm.pci_config_read(d, 0, 4) == 0x100E8086)
        self.bar0 = vm.pci_config_read(self.devfn, 0x10, 4) & ~0xF
        cmd = vm.pci_config_read(self.devfn, 4, 2)
        vm.pci_config_write(self.devfn, 4, 2, cmd | 0x2 | (0x4 if master else 0))
        self.host = vm.host()
        self.dev = vm.nics[0]
        self.nrx = 0

    def r(self, off: int) -> int:
        return self.vm.memory.read(self.bar0 + off, 4)

    def w(self, off: int, val: int) -> None:
        self.vm.memory.write(self.bar0 + off, 4, val)

    def rx_ring(self, n: int = 8, rdt: int | None = None, rctl: int = RCTL_EN | RCTL_BAM,
                buf_size: int = 2048, base: int = RX_RING) -> None:
        self.nrx = n
        for i in range(n):
            self.vm.memory.write_bytes(base + 16 * i,
                                       RXDESC.pack(RX_BUFS + buf_size * i, 0, 0, 0, 0, 0))
        self.w(RDBAL, base)
        self.w(RDBAH, 0)
        self.w(RDLEN, 16 * n)
        self.w(RDH, 0)
        self.w(RDT, n - 1 if rdt is None else rdt)
        self.w(RCTL, rctl)
        self.vm.run()                               # QEMU holds RX 1 s after an RCTL write

    def rx_desc(self, i: int) -> tuple[int, int, int, int, int, int]:
        return RXDESC.unpack(self.vm.memory.read_bytes(RX_RING + 16 * i, 16))

    def tx_ring(self, n: int = 8) -> None:
        self.w(TDBAL, TX_RING)
        self.w(TDBAH, 0)
        self.w(TDLEN, 16 * n)
        self.w(TDH, 0)
        self.w(TDT, 0)
        self.w(TCTL, TCTL_EN | TCTL_PSP)

    def send(self, frames: list[bytes]) -> None:
        for f in frames:
            self.host.send(f)
        self.vm.run()

    def queued(self) -> int:
        """Frames waiting anywhere between the TAP and the NIC (NetQueues + the TAP fd)."""
        return (sum(len(nc.incoming_queue) for nc in self.vm.all_clients())
                + len(self.host.dev.to_qemu))


def frame(i: int = 0, dst: str = GUEST_MAC, size: int = 98) -> bytes:
    """A UDP frame of ``size`` bytes whose payload starts with the number ``i``."""
    payload = i.to_bytes(4, "big") + bytes(max(0, size - 42 - 4))
    return build_udp(HOST_MAC, dst, "10.0.2.2", "10.0.2.15", 1234, 5678, payload)


# -- identity -------------------------------------------------------------------------------
def test_pci_identity_bars_and_power_on_registers():
    d = Driver()
    vm, devfn = d.vm, d.devfn
    assert devfn == 0x18                                  # 00:03.0 as on QEMU's pc machine
    assert vm.pci_config_read(devfn, 0x08, 4) >> 8 == 0x020000        # Ethernet controller
    assert vm.pci_config_read(devfn, 0x3D, 1) == 1                    # INTA#
    vm.pci_config_write(devfn, 0x10, 4, 0xFFFFFFFF)
    assert vm.pci_config_read(devfn, 0x10, 4) == 0xFFFE0000           # 128 KiB memory BAR
    vm.pci_config_write(devfn, 0x10, 4, d.bar0)
    vm.pci_config_write(devfn, 0x14, 4, 0xFFFFFFFF)
    assert vm.pci_config_read(devfn, 0x14, 4) == 0xFFFFFFC1           # 64-byte I/O BAR
    assert d.r(STATUS) == 0x80080783                      # LU|FD|1000 Mb/s, as QEMU reports
    assert d.r(RAL0) == 0x12005452 and d.r(RAH0) == 0x80005634        # the MAC, valid
    assert d.r(VET) == 0x8100
    words = []
    for i in range(64):                                   # EERD: start, address, done, data
        d.w(EERD, i << 8 | 1)
        v = d.r(EERD)
        assert v & 0x10
        words.append(v >> 16)
    assert words[:3] == [0x5452, 0x1200, 0x5634]
    assert sum(words) & 0xFFFF == 0xBABA                  # the checksum drivers verify


def test_eeprom_over_bit_banged_microwire():
    """Read word 1 as Linux does on the 82540: CS, opcode 110 and a 6-bit address clocked
    in on SK rising edges, then 16 data bits on DO (SDM §5, Microwire)."""
    d = Driver()
    sk, cs, di, do = 0x1, 0x2, 0x4, 0x8
    d.w(EECD, cs)

    def clock_out(bit: int) -> None:
        v = cs | (di if bit else 0)
        d.w(EECD, v)
        d.w(EECD, v | sk)
        d.w(EECD, v)
    for bit in (1, 1, 0) + tuple((1 >> (5 - k)) & 1 for k in range(6)):
        clock_out(bit)
    word = 0
    for _ in range(16):
        d.w(EECD, cs | sk)
        word = word << 1 | (1 if d.r(EECD) & do else 0)
        d.w(EECD, cs)
    d.w(EECD, 0)
    assert word == 0x1200


def test_phy_through_mdic():
    d = Driver()
    d.w(MDIC, 1 << 21 | 2 << 16 | 0x08000000)            # read PHY 1 register 2 (PHY ID 1)
    v = d.r(MDIC)
    assert v & 0x10000000 and not v & 0x40000000 and v & 0xFFFF == 0x0141
    d.w(MDIC, 2 << 21 | 2 << 16 | 0x08000000)             # no PHY at address 2: error
    assert d.r(MDIC) & 0x40000000


# -- receive --------------------------------------------------------------------------------
def test_rx_into_a_ring_of_eight_descriptors():
    d = Driver()
    d.rx_ring(8)
    frames = [frame(i) for i in range(3)]
    d.send(frames)
    for i, f in enumerate(frames):
        addr, length, _cs, status, errors, _sp = d.rx_desc(i)
        assert status == RXD_DD | RXD_EOP | RXD_IXSM and errors == 0
        assert length == len(f) + 4                        # the frame and its FCS
        assert d.vm.memory.read_bytes(addr, len(f)) == f
    assert d.rx_desc(3)[3] == 0                            # untouched
    assert d.r(RDH) == 3 and d.r(RDT) == 7
    assert d.r(GPRC) == 3 and d.r(TPR) == 3 and d.r(GPRC) == 0      # statistics clear on read
    assert d.r(ICR) & ICR_RXT0
    assert d.dev.nc.stats["rx"] == 3


def test_runt_frames_are_padded_to_60_bytes():
    d = Driver()
    d.rx_ring(8)
    f = frame(0)[:42]
    d.send([f])
    addr, length, *_ = d.rx_desc(0)
    assert length == 64
    assert d.vm.memory.read_bytes(addr, 60) == f + bytes(18)


def test_a_full_ring_holds_frames_in_the_netqueue_until_rdt_moves():
    d = Driver()
    d.rx_ring(8)                                           # RDT 7: 7 descriptors for the NIC
    frames = [frame(i) for i in range(12)]
    d.send(frames)
    assert d.r(RDH) == 7
    assert d.queued() == 5                                 # none dropped: they wait
    assert d.r(MPC) == 0 and not any(k.startswith("drop") for k in d.dev.stats)
    port = d.vm.netdev("hub0port1")                        # the TAP's hub port holds one,
    assert len(port.incoming_queue) == 1                   # the TAP keeps the rest unread
    assert not d.host.tap.read_poll
    got = []
    for i in range(7):                                     # the driver takes them back ...
        addr, length, *_ = d.rx_desc(i)
        got.append(d.vm.memory.read_bytes(addr, length - 4))
        d.vm.memory.write_bytes(RX_RING + 16 * i + 12, b"\0")
    d.w(RDT, 6)                                            # ... and hands 7 buffers over again
    d.vm.run()
    assert d.queued() == 0 and d.host.tap.read_poll
    for k in range(5):
        addr, length, *_ = d.rx_desc((7 + k) % 8)
        got.append(d.vm.memory.read_bytes(addr, length - 4))
    assert got == frames                                   # all of them, in order
    assert d.r(RDH) == (7 + 5) % 8


def test_frames_wait_while_rx_is_not_ready_and_the_reason_is_traced():
    d = Driver()
    d.rx_ring(8, rctl=RCTL_BAM)                            # RCTL.EN off
    with d.vm.record() as rec:
        d.send([frame(0)])
    assert d.queued() == 1
    assert ("[main] e1000x_rx_can_recv_disabled link_up: 1, rx_enabled 0, pci_master 1"
            in rec.to_qemu_trace().splitlines())
    d.w(RCTL, RCTL_EN | RCTL_BAM)
    d.vm.run()                                             # the flush timer delivers it
    assert d.queued() == 0 and d.rx_desc(0)[3] & RXD_DD


def test_bus_mastering_off_keeps_frames_waiting():
    d = Driver(master=False)
    d.rx_ring(8)
    d.send([frame(0), frame(1)])
    assert d.queued() == 2 and d.rx_desc(0)[3] == 0
    cmd = d.vm.pci_config_read(d.devfn, 4, 2)
    d.vm.pci_config_write(d.devfn, 4, 2, cmd | 0x4)
    d.w(RDT, 7)                                            # an RDT write flushes the queue
    d.vm.run()
    assert d.queued() == 0 and d.r(RDH) == 2


def test_receive_filter_unicast_broadcast_multicast_promiscuous():
    d = Driver()
    d.rx_ring(8, rctl=RCTL_EN)                             # no BAM
    with d.vm.record() as rec:
        d.send([frame(0, dst="52:54:00:00:00:99"), frame(1, dst="ff:ff:ff:ff:ff:ff"),
                frame(2, dst="01:00:5e:00:00:01"), frame(3)])
    assert d.r(RDH) == 1 and d.dev.stats["drop: receive filter"] == 3
    trace = rec.to_qemu_trace()
    assert "unicast mismatch: 52:54:00:00:00:99" in trace
    assert "unicast match[0]: 52:54:00:12:34:56" in trace
    assert "inexact mismatch: 01:00:5e:00:00:01 MO 0 MTA[" in trace
    d.w(RCTL, RCTL_EN | RCTL_BAM)
    d.vm.run()
    # multicast through the hash table: MO 0 takes bits 47:36 of the address
    dst = bytes.fromhex("01005e000001")
    h = ((dst[5] << 8 | dst[4]) >> 4) & 0xFFF
    d.w(MTA + 4 * (h >> 5), 1 << (h & 31))
    d.send([frame(1, dst="ff:ff:ff:ff:ff:ff"), frame(2, dst="01:00:5e:00:00:01")])
    assert d.r(RDH) == 3
    d.w(RCTL, RCTL_EN | RCTL_UPE)
    d.vm.run()
    d.send([frame(4, dst="52:54:00:00:00:99")])
    assert d.r(RDH) == 4


def test_vlan_tag_is_stripped_into_the_descriptor():
    d = Driver()
    d.rx_ring(8)
    d.w(CTRL, d.r(CTRL) | 0x40000000)                      # CTRL.VME
    f = frame(0)
    tagged = f[:12] + b"\x81\x00\x20\x05" + f[12:]         # PCP 1, VID 5
    d.send([tagged])
    addr, length, _cs, status, _e, special = d.rx_desc(0)
    assert status & RXD_VP and special == 0x2005
    assert length == len(f) + 4 and d.vm.memory.read_bytes(addr, len(f)) == f


def test_a_frame_larger_than_a_buffer_spans_descriptors():
    d = Driver()
    d.rx_ring(8, rctl=RCTL_EN | RCTL_BAM | RCTL_SZ_256, buf_size=256)
    f = frame(0, size=600)
    d.send([f])
    descs = [d.rx_desc(i) for i in range(4)]
    assert [x[1] for x in descs[:3]] == [256, 256, 92]     # 604 bytes with the FCS
    assert [x[3] & RXD_EOP for x in descs[:3]] == [0, 0, RXD_EOP]
    assert all(x[3] & RXD_DD for x in descs[:3]) and descs[3][3] == 0
    data = b"".join(d.vm.memory.read_bytes(x[0], x[1]) for x in descs[:3])
    assert data[:600] == f
    assert d.r(RDH) == 3


def test_secrc_strips_the_fcs_from_the_length():
    d = Driver()
    d.rx_ring(8, rctl=RCTL_EN | RCTL_SECRC)
    f = frame(0)
    d.send([f])
    assert d.rx_desc(0)[1] == len(f)


# -- transmit -------------------------------------------------------------------------------
def test_tx_of_one_frame_reaches_the_host():
    d = Driver()
    d.tx_ring(8)
    f = build_udp(GUEST_MAC, HOST_MAC, "10.0.2.15", "10.0.2.2", 5678, 1234, b"hello")
    d.vm.memory.write_bytes(TX_BUFS, f)
    d.vm.memory.write_bytes(TX_RING, TXDESC.pack(TX_BUFS, TXD_EOP | TXD_IFCS | TXD_RS | len(f), 0))
    with d.vm.record() as rec:
        d.w(TDT, 1)                                        # sent inside this MMIO write
    assert d.host.recv() == f and d.host.recv() is None
    assert d.r(TDH) == 1
    assert TXDESC.unpack(d.vm.memory.read_bytes(TX_RING, 16))[2] & 0xFF == 0x1   # DD
    assert d.r(ICR) == ICR_TXDW | ICR_TXQE
    assert d.r(GPTC) == 1
    stack = rec.callstack(rec.find("qemu_send_packet")[0])
    i = stack.index("e1000_mmio_write")
    assert stack[i:i + 5] == ["e1000_mmio_write", "start_xmit", "process_tx_desc", "xmit_seg",
                              "e1000_send_packet"]


def test_tx_gathers_descriptors_until_eop_and_reports_only_with_rs():
    d = Driver()
    d.tx_ring(8)
    f = frame(7, dst=HOST_MAC)
    d.vm.memory.write_bytes(TX_BUFS, f[:30])
    d.vm.memory.write_bytes(TX_BUFS + 2048, f[30:])
    d.vm.memory.write_bytes(TX_RING, TXDESC.pack(TX_BUFS, TXD_IFCS | 30, 0))
    d.vm.memory.write_bytes(TX_RING + 16, TXDESC.pack(TX_BUFS + 2048,
                                                      TXD_EOP | TXD_IFCS | len(f) - 30, 0))
    d.w(TDT, 2)
    assert d.host.recv() == f
    assert d.r(ICR) == ICR_TXQE                            # no RS: no descriptor written back


def test_tx_checksum_offload_with_a_context_descriptor():
    """A context descriptor (IPCSS/IPCSO, TUCSS/TUCSO) and a data descriptor with POPTS
    IXSM|TXSM: the NIC fills in the IPv4 header checksum and the UDP checksum (SDM §3.3.6)."""
    d = Driver()
    d.tx_ring(8)
    good = build_udp(GUEST_MAC, HOST_MAC, "10.0.2.15", "10.0.2.2", 5678, 1234, b"x" * 20)
    f = bytearray(good)
    f[24:26] = b"\0\0"                                      # IP header checksum: zero
    pseudo = internet_checksum(f[26:34] + b"\x00\x11" + (len(f) - 34).to_bytes(2, "big"))
    f[40:42] = ((~pseudo) & 0xFFFF).to_bytes(2, "big")      # UDP: the pseudo-header sum only
    ctx = struct.pack("<BBHBBHIBBH", 14, 24, 33, 34, 40, 0, TXD_DEXT | 0x02000000, 0, 0, 0)
    d.vm.memory.write_bytes(TX_RING, ctx)
    d.vm.memory.write_bytes(TX_BUFS, bytes(f))
    d.vm.memory.write_bytes(TX_RING + 16, TXDESC.pack(
        TX_BUFS, TXD_DEXT | TXD_DTYP_D | TXD_EOP | TXD_IFCS | TXD_RS | len(f),
        (TXD_POPTS_IXSM | TXD_POPTS_TXSM) << 8))
    d.w(TDT, 2)
    out = d.host.recv()
    assert out == good and parse_frame(out).checksums_ok


# -- interrupts -----------------------------------------------------------------------------
def test_icr_read_to_clear_and_ims_masking_the_intx_line():
    d = Driver()
    vm = d.vm
    d.rx_ring(8)
    assert vm.irq_level(GSI) == 0
    d.send([frame(0)])                                     # IMS = 0: cause set, line low
    assert vm.irq_level(GSI) == 0
    d.w(IMS, ICR_RXT0)                                     # enabling a pending cause raises it
    assert vm.irq_level(GSI) == 1 and d.r(IMS) == ICR_RXT0
    assert d.r(ICS) == ICR_RXT0                            # ICS reads as ICR, without clearing
    assert d.r(ICR) == ICR_RXT0                            # the read clears all causes ...
    assert vm.irq_level(GSI) == 0 and d.r(ICR) == 0        # ... and lowers INTA#
    vm.run()                                               # let the mitigation window pass
    d.w(ICS, ICR_LSC)                                      # a masked cause: line stays low
    assert vm.irq_level(GSI) == 0
    d.w(IMS, ICR_LSC)
    assert vm.irq_level(GSI) == 1
    d.w(IMC, ICR_LSC)                                      # masking it lowers the line again
    assert vm.irq_level(GSI) == 0 and d.r(IMS) == ICR_RXT0
    d.w(ICR, ICR_LSC)                                      # writing 1 clears a cause
    assert d.r(ICR) == 0


def test_intx_reaches_the_io_apic_pin_and_the_apic_as_a_level_message():
    d = Driver()
    vm = d.vm
    # route GSI 11 like Linux: vector 0x26, level, logical destination 1
    vm.memory.write(0xFEC00000, 4, 0x10 + 2 * GSI + 1)
    vm.memory.write(0xFEC00010, 4, 1 << 24)
    vm.memory.write(0xFEC00000, 4, 0x10 + 2 * GSI)
    vm.memory.write(0xFEC00010, 4, 0x26 | 1 << 11 | 1 << 15)
    d.rx_ring(8)
    d.w(IMS, 0x9D)
    with vm.record() as rec:
        d.send([frame(0)])
    lines = rec.to_qemu_trace().splitlines()
    assert lines[-4:] == [
        "[main] ioapic_set_irq vector: 11 level: 1",
        "[main] ioapic_set_remote_irr set remote irr for pin 11",
        "[main] memory_region_ops_write MSI write to apic-msi addr=0xfee01004 data=0x8026 "
        "by=device size=4",
        "[main] apic_deliver_irq dest 1 dest_mode 1 delivery_mode 0 vector 38 trigger_mode 1"]
    assert vm.apic.delivered[-1].data == 0x8026


def test_mitigation_holds_a_second_rising_edge_for_500_x_256_ns():
    """QEMU's model of ITR/RADV/TADV: after a rising edge, the next one waits until the
    mitigation timer (max(500, ITR...) x 256 ns = 128 us here) fires in the main loop."""
    d = Driver()
    vm = d.vm
    d.rx_ring(8)
    d.w(ITR, 195)                                          # 20000 interrupts/s, as Linux sets
    d.w(IMS, 0x9D)
    d.host.send(frame(0))
    vm.step()                                              # tap_send: RX, the line goes up
    t_raise = vm.clock_ns
    assert vm.irq_level(GSI) == 1
    d.r(ICR)
    d.w(IMC, 0xFFFFFFFF)
    d.w(ICS, ICR_TXDW)                                     # a new cause while masked
    d.w(IMS, 0x9D)                                         # inside the window: held back
    assert vm.irq_level(GSI) == 0
    with vm.record() as rec:
        vm.run()                                           # the mit_timer raises it
    assert vm.irq_level(GSI) == 1
    assert rec.to_qemu_trace().splitlines()[0] == "[main] ioapic_set_irq vector: 11 level: 1"
    assert vm.clock_ns >= t_raise + 500 * 256
    d.r(ICR)
    vm.run()                                               # the next window passes
    d.w(IMC, 0xFFFFFFFF)
    d.w(ICS, ICR_TXDW)
    d.w(IMS, 0x9D)                                         # outside the window: at once
    assert vm.irq_level(GSI) == 1


# -- guest errors are handled, never raised ---------------------------------------------------
def test_rx_buffer_outside_ram_is_handled_as_qemu_does():
    d = Driver()
    d.rx_ring(8)
    bad = 1 << 40
    d.vm.memory.write_bytes(RX_RING, RXDESC.pack(bad, 0, 0, 0, 0, 0))
    d.send([frame(0), frame(1)])
    addr, length, _cs, status, *_ = d.rx_desc(0)           # written back as if it worked
    assert addr == bad and status & RXD_DD and length == 102
    assert d.dev.stats["drop: RX buffer outside guest RAM"] == 1
    assert d.rx_desc(1)[3] & RXD_DD and d.r(RDH) == 2      # the next one is fine


def test_null_buffer_descriptors_are_skipped():
    d = Driver()
    d.rx_ring(8)
    d.vm.memory.write_bytes(RX_RING, RXDESC.pack(0, 0, 0, 0, 0, 0))
    f = frame(0)
    d.send([f])
    assert d.rx_desc(0)[3] == RXD_DD                       # consumed, no data, no EOP
    addr, length, _cs, status, *_ = d.rx_desc(1)
    assert status & RXD_EOP and d.vm.memory.read_bytes(addr, len(f)) == f
    assert d.r(RDH) == 2


def test_ring_outside_ram_or_head_beyond_the_ring_is_an_overrun():
    d = Driver()
    d.rx_ring(8, base=RX_RING)
    d.w(RDBAL, 0xF0000000)                                 # the ring itself is not in RAM
    d.send([frame(0)])
    assert d.r(MPC) == 1 and d.r(RNBC) == 1
    assert d.dev.stats["drop: receiver overrun (no RX descriptors)"] == 1
    assert d.r(ICR) & ICR_RXO
    d.w(RDBAL, RX_RING)
    d.w(RDH, 100)                                          # head far beyond an 8-entry ring
    d.w(RDT, 3)
    d.vm.run()
    d.send([frame(1)])
    assert d.r(MPC) == 2
    assert d.queued() == 0                                 # dropped and counted, not stuck


def test_tx_descriptor_or_buffer_outside_ram_is_handled():
    d = Driver()
    d.tx_ring(8)
    d.vm.memory.write_bytes(TX_RING, TXDESC.pack(1 << 40, TXD_EOP | TXD_RS | 60, 0))
    d.w(TDT, 1)
    assert d.r(TDH) == 1 and d.host.recv() == bytes(60)    # reads of nothing read zeros
    d.w(TDBAL, 0xF0000000)                                 # the ring itself is not in RAM
    d.w(TDT, 3)
    assert d.r(TDH) == 3 and d.host.recv() is None
    assert d.dev.stats["dma error: tx descriptor"] >= 2


def test_odd_sized_register_accesses():
    d = Driver()
    vm = d.vm
    assert vm.memory.read(d.bar0 + STATUS, 1) == 0x83
    assert vm.memory.read(d.bar0 + STATUS + 2, 2) == 0x8008
    assert vm.memory.read(d.bar0 + RAL0, 8) == 0x8000563412005452
    vm.memory.write(d.bar0 + 0x1FFFF, 1, 0xFF)             # unknown register: ignored
    assert d.r(0x1FFFC) == 0


def test_state_for_recordings():
    d = Driver()
    d.rx_ring(8)
    d.w(IMS, 0x9D)
    with d.vm.record() as rec:
        d.send([frame(0)])
    i = rec.find("e1000_receive_iov")[-1]
    st = rec.state(i)["devices"]["e1000.0"]
    assert st["rx"]["head"] == 1 and st["rx"]["tail"] == 7 and st["rx"]["count"] == 8
    assert st["rx"]["descriptors"][0]["dd"] and st["rx"]["descriptors"][0]["eop"]
    assert st["interrupt"]["icr"] & ICR_RXT0 and st["interrupt"]["intx_level"] == 1
    first = rec.state(rec.find("tap_send")[0])["devices"]["e1000.0"]
    assert first["rx"]["head"] == 0 and not first["rx"]["descriptors"][0]["dd"]


@pytest.mark.parametrize("line", ["-net nic,model=e1000 -net tap",
                                  "-netdev tap,id=hn0 -device e1000,netdev=hn0",
                                  "-nic tap,model=e1000"])
def test_model_registered_for_every_way_of_asking(line):
    vm = qn.Machine.from_cmdline(line, guest=None)
    assert type(vm.nics[0]).__name__ == "E1000State"
    assert vm.nics[0].nc.info.type == "nic" and vm.nics[0].mac == GUEST_MAC


def test_tcp_segmentation_offload():
    """A TSE context descriptor (header length, MSS, payload length) and one data
    descriptor holding a 54-byte header and 2500 bytes: three segments with their IPv4
    length and ID, TCP sequence number, PSH/FIN only on the last, checksums filled in."""
    d = Driver()
    d.tx_ring(8)
    payload = bytes(range(256)) * 9 + bytes(196)            # 2500 bytes
    hdr_len, mss = 54, 1000
    eth = bytes.fromhex("02000a000202525400123456") + b"\x08\x00"
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0x1234, 0x4000, 64, 6, 0,
                               bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2])))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 5678, 80, 1000, 1, 5 << 4, 0x19, 512, 0, 0))
    # Linux puts the pseudo-header sum without the length in the TCP checksum field
    ph = internet_checksum(bytes(ip[12:20]) + b"\x00\x06\x00\x00")
    tcp[16:18] = ((~ph) & 0xFFFF).to_bytes(2, "big")
    pkt = eth + bytes(ip) + bytes(tcp) + payload
    d.vm.memory.write_bytes(TX_BUFS, pkt)
    ctx = struct.pack("<BBHBBHIBBH", 14, 24, 33, 34, 50, 0,
                      TXD_DEXT | 0x04000000 | 0x02000000 | 0x01000000 | len(payload),
                      0, hdr_len, mss)                       # TSE | IP | TCP, PAYLEN
    d.vm.memory.write_bytes(TX_RING, ctx)
    d.vm.memory.write_bytes(TX_RING + 16, TXDESC.pack(
        TX_BUFS, TXD_DEXT | TXD_DTYP_D | 0x04000000 | TXD_EOP | TXD_IFCS | TXD_RS | len(pkt),
        (TXD_POPTS_IXSM | TXD_POPTS_TXSM) << 8))
    d.w(TDT, 2)
    segs = []
    while (f := d.host.recv()) is not None:
        segs.append(f)
    assert [len(s) - hdr_len for s in segs] == [1000, 1000, 500]
    for k, s in enumerate(segs):
        assert parse_frame(s).checksums_ok, k                # the IPv4 header checksum
        seg = s[34:]
        pseudo = s[26:34] + b"\x00\x06" + len(seg).to_bytes(2, "big")
        assert internet_checksum(pseudo + seg) == 0, k      # the TCP checksum
        total, ident = struct.unpack_from("!HH", s, 16)
        seq = struct.unpack_from("!I", s, 38)[0]
        flags = s[47]
        assert (total, ident, seq) == (len(s) - 14, 0x1234 + k, 1000 + 1000 * k)
        assert flags == (0x19 if k == 2 else 0x10)          # PSH|FIN only on the last
        assert s[hdr_len:] == payload[1000 * k:1000 * (k + 1)]
