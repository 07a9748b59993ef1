"""The e1000 driver of the simulated guest (after Linux 6.1 drivers/net/ethernet/intel/e1000/).

It does, register by register, what ``e1000_main.c``/``e1000_hw.c`` do for QEMU's 82540EM,
as the golden recording ``reference/golden-qemu/e1000-hub-ping5.trace`` shows it:

* **Probe** (e1000_probe): enable memory decoding and bus mastering, mask interrupts,
  reset the MAC (e1000_reset_hw), read and check the EEPROM over the bit-banged Microwire
  interface (EECD) and take the MAC address from words 0-2, program the receive address,
  VLAN and multicast tables (e1000_reset/e1000_init_hw), register ``eth0``.
* **Open** (e1000_open, ``ip link set eth0 up``): a TX ring and an RX ring of 256 legacy
  descriptors with 2048-byte buffers, TCTL/TIPG/TIDV/TADV, RCTL with BAM and 2048-byte
  buffers, RDTR 0/RADV/ITR, 255 buffers handed over (Linux's tail is the *last* filled
  descriptor, so RDT = 254), the level-triggered INTx line routed through the I/O APIC,
  IMS = 0x9d, and an LSC interrupt through ICS to start the link watchdog.
* **Interrupt** (e1000_intr): read ICR (which clears it and lowers INTA#), IMC 0xffffffff,
  a STATUS read to flush the posted write, schedule NAPI; the kernel then reads the TMR
  and writes EOI (handle_fasteoi_irq).
* **NAPI** (e1000_clean): reap finished TX descriptors, take received frames (DD set)
  and refill through one RDT write, pass the frames up at napi_complete_done (GRO's list
  is flushed there, so the echo reply's TDT comes after the RDT), then IMS 0x9d and a
  STATUS read.
* **TX** (e1000_xmit_frame): copy the frame into the slot's buffer, one legacy descriptor
  with EOP|IFCS|IDE|RS, write TDT (one past the last descriptor).

Adaptive interrupt throttling (e1000_set_itr, ITR writes) is not modelled: ITR stays at
the 20000 interrupts/s Linux programs at open, as in the steady state of the recording.
"""
from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING

from ..net.stack import mac_str
from ..trace import Stats, tracepoint
from .kernel import GuestError, NetDevice

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import GuestKernel

SRC = "drivers/net/ethernet/intel/e1000/e1000_main.c"

# registers (Linux e1000_hw.h; 8254x SDM table 13-2)
CTRL, STATUS, EECD, MDIC, ICR, ITR, ICS, IMS, IMC = (0x0000, 0x0008, 0x0010, 0x0020, 0x00C0,
                                                     0x00C4, 0x00C8, 0x00D0, 0x00D8)
RCTL, TCTL, TIPG, VET, PBA, MANC = 0x0100, 0x0400, 0x0410, 0x0038, 0x1000, 0x5820
RDBAL, RDBAH, RDLEN, RDH, RDT, RDTR, RADV = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818, 0x2820, 0x282C
TDBAL, TDBAH, TDLEN, TDH, TDT, TIDV, TXDCTL, TADV = (0x3800, 0x3804, 0x3808, 0x3810, 0x3818,
                                                    0x3820, 0x3828, 0x382C)
RXCSUM, MTA, RA, VFTA = 0x5000, 0x5200, 0x5400, 0x5600
STATS_FIRST, STATS_END = 0x4000, 0x4100
# bits
CTRL_RST, CTRL_VME = 0x04000000, 0x40000000
STATUS_FD, STATUS_LU, STATUS_SPEED_MASK = 0x1, 0x2, 0xC0
EECD_SK, EECD_CS, EECD_DI, EECD_DO, EECD_REQ, EECD_GNT = 0x1, 0x2, 0x4, 0x8, 0x40, 0x80
EEPROM_READ_OPCODE_MICROWIRE, EEPROM_ADDR_BITS, EEPROM_WORDS = 0x6, 6, 64
EEPROM_CHECKSUM_REG, EEPROM_SUM = 0x3F, 0xBABA
ICR_TXDW, ICR_TXQE, ICR_LSC, ICR_RXSEQ, ICR_RXDMT0, ICR_RXT0 = 0x01, 0x02, 0x04, 0x08, 0x10, 0x80
#: e1000_irq_enable's mask: RXT0 | TXDW | RXDMT0 | RXSEQ | LSC = 0x9d
IMS_ENABLE_MASK = ICR_RXT0 | ICR_TXDW | ICR_RXDMT0 | ICR_RXSEQ | ICR_LSC
RCTL_EN, RCTL_SBP, RCTL_UPE, RCTL_MPE, RCTL_LPE = 0x2, 0x4, 0x8, 0x10, 0x20
RCTL_LBM_MASK, RCTL_RDMTS_HALF, RCTL_MO_MASK, RCTL_BAM = 0xC0, 0x0, 0x3000, 0x8000
RCTL_SZ_MASK, RCTL_BSEX, RCTL_SECRC = 0x30000, 0x02000000, 0x04000000
TCTL_EN, TCTL_PSP, TCTL_CT_SHIFT, TCTL_COLD_SHIFT, TCTL_RTLC = 0x2, 0x8, 4, 12, 0x01000000
TCTL_CT_MASK, TCTL_COLD_MASK = 0xFF0, 0x3FF000
COLLISION_THRESHOLD, COLLISION_DISTANCE = 15, 63
TIPG_COPPER = 8 | 8 << 10 | 6 << 20           # IPGT 8, IPGR1 8, IPGR2 6 (82543+ copper)
TXDCTL_WTHRESH, TXDCTL_FULL_TX_DESC_WB = 0x003F0000, 0x01010000
MANC_ARP_EN = 0x00002000
RAH_AV = 0x80000000
RXCSUM_TUOFL = 0x200
RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_VP = 0x01, 0x02, 0x08
RXD_ERR_FRAME_ERR_MASK = 0x01 | 0x02 | 0x04 | 0x10 | 0x80   # CE SE SEQ CXE RXE
TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS, TXD_CMD_IDE = 0x01000000, 0x02000000, 0x08000000, 0x80000000
TXD_STAT_DD = 0x1

# Linux's defaults (e1000_param.c and e1000.h)
RING_SIZE = 256                   # E1000_DEFAULT_RXD / E1000_DEFAULT_TXD
RX_BUFFER_LEN = 2048              # MAXIMUM_ETHERNET_VLAN_SIZE 1522 -> the 2048-byte size
TX_BUFFER_LEN = 2048
RX_BUFFER_WRITE = 16              # E1000_RX_BUFFER_WRITE: refill at least every 16
TX_WAKE_THRESHOLD = 32            # E1000_TX_WAKE_THRESHOLD (2 * MAX_SKB_FRAGS... as Linux)
TX_INT_DELAY, TX_ABS_INT_DELAY = 8, 32        # TIDV, TADV (1.024 us units)
RX_INT_DELAY, RX_ABS_INT_DELAY = 0, 128       # RDTR, RADV
DEFAULT_ITR = 20000               # InterruptThrottleRate 3 starts at 20000 interrupts/s
PBA_48K = 0x0030
GRO_NORMAL_BATCH = 8              # net.core.gro_normal_batch: frames passed up in batches
ETH_HLEN, ETH_FCS_LEN, MAX_FRAME = 14, 4, 1514

_RXDESC = struct.Struct("<QHHBBH")
_TXDESC = struct.Struct("<QII")


class E1000Adapter(NetDevice):
    """One e1000 NIC and its net device (Linux ``struct e1000_adapter``)."""

    driver = "e1000"

    def __init__(self, kernel: "GuestKernel", devfn: int) -> None:
        self.kernel = kernel
        self.devfn = devfn
        self.ram = kernel.cpu.ram
        self.hw = 0                        # BAR0: the register window
        self.name = ""                     # eth0, ... once registered
        self.mac = b""
        self.eeprom: list[int] = []
        self.gsi = 0
        self.vector = 0
        self.opened = False
        self.carrier = False
        self.get_link_status = True
        self.itr = DEFAULT_ITR
        # RX ring
        self.rx_ring = 0
        self.rx_bufs: list[int] = []
        self.rx_next_to_use = 0
        self.rx_next_to_clean = 0
        self.rx_list: list[bytes] = []     # GRO's normal list: frames not yet passed up
        self.rx_ring_image = b""          # every RX descriptor, filled and cleared
        # TX ring
        self.tx_ring = 0
        self.tx_bufs: list[int] = []
        self.tx_next_to_use = 0
        self.tx_next_to_clean = 0
        self.tx_stopped = False
        self.tx_backlog: deque[bytes] = deque()
        self.stats = Stats()

    def __repr__(self) -> str:
        return f"<e1000 {self.name or hex(self.devfn)} {mac_str(self.mac) if self.mac else '?'}>"

    @property
    def mac_str(self) -> str:
        return mac_str(self.mac)

    # -- register access (er32/ew32; E1000_WRITE_FLUSH reads STATUS) ----------------------
    def er32(self, reg: int) -> int:
        return self.kernel.readl(self.hw + reg)

    def ew32(self, reg: int, val: int) -> None:
        self.kernel.writel(self.hw + reg, val)

    def flush(self) -> None:
        self.kernel.readl(self.hw + STATUS)

    # -- probe -----------------------------------------------------------------------------
    def probe(self) -> None:
        """e1000_probe: bring the function up, reset it, read the MAC, register eth0."""
        k = self.kernel
        k.pci_enable_device_mem(self.devfn)
        k.pci_set_master(self.devfn)
        self.hw = k.pci_bar(self.devfn, 0)
        if not self.hw:
            raise GuestError(f"{self.devfn >> 3:02x}.{self.devfn & 7}: BAR0 is not assigned")
        self.irq_disable()                       # e1000_sw_init
        self.reset_hw()
        self.eeprom = [self.read_eeprom(i) for i in range(EEPROM_WORDS)]
        if sum(self.eeprom[:EEPROM_CHECKSUM_REG + 1]) & 0xFFFF != EEPROM_SUM:
            raise GuestError("The EEPROM Checksum Is Not Valid")
        self.mac = b"".join(w.to_bytes(2, "little") for w in self.eeprom[:3])
        if self.mac[0] & 1 or not any(self.mac):
            raise GuestError(f"Invalid MAC Address {mac_str(self.mac)}")
        self.reset()
        k.register_netdev(self)
        status = self.er32(STATUS)
        speed = {0x00: 10, 0x40: 100}.get(status & STATUS_SPEED_MASK, 1000)
        k.printk(f"e1000 {self.devfn >> 3:04x}:00:{self.devfn >> 3:02x}.{self.devfn & 7} "
                 f"{self.name}: (PCI:33MHz:32-bit) {mac_str(self.mac)}")
        k.printk(f"e1000 {self.name}: Intel(R) PRO/1000 Network Connection, "
                 f"{speed} Mb/s capable")

    def irq_disable(self) -> None:
        """e1000_irq_disable: mask everything, flush."""
        self.ew32(IMC, 0xFFFFFFFF)
        self.flush()

    def irq_enable(self) -> None:
        """e1000_irq_enable: IMS = RXT0|TXDW|RXDMT0|RXSEQ|LSC, flush."""
        self.ew32(IMS, IMS_ENABLE_MASK)
        self.flush()

    def reset_hw(self) -> None:
        """e1000_reset_hw: stop RX/TX, global reset (CTRL.RST), mask and clear interrupts."""
        self.ew32(IMC, 0xFFFFFFFF)
        self.ew32(RCTL, 0)
        self.ew32(TCTL, TCTL_PSP)
        self.flush()
        ctrl = self.er32(CTRL)
        self.ew32(CTRL, ctrl | CTRL_RST)
        manc = self.er32(MANC)                   # no hardware ARP replies (82540+)
        self.ew32(MANC, manc & ~MANC_ARP_EN)
        self.ew32(IMC, 0xFFFFFFFF)
        self.er32(ICR)

    def reset(self) -> None:
        """e1000_reset + e1000_init_hw: packet buffer split, the address, VLAN and
        multicast tables, TX descriptor write-back, statistics cleared, VET."""
        self.ew32(PBA, PBA_48K)
        self.reset_hw()
        self.ew32(VET, 0)                        # 82540 < 82545 rev 3
        for i in range(128):                     # e1000_clear_vfta
            self.ew32(VFTA + 4 * i, 0)
        self.rar_set(self.mac, 0)                # e1000_init_rx_addrs
        for i in range(1, 16):
            self.ew32(RA + 8 * i, 0)
            self.ew32(RA + 8 * i + 4, 0)
        for i in range(128):                     # zero the MTA
            self.ew32(MTA + 4 * i, 0)
        txdctl = self.er32(TXDCTL)
        self.ew32(TXDCTL, (txdctl & ~TXDCTL_WTHRESH) | TXDCTL_FULL_TX_DESC_WB)
        for reg in range(STATS_FIRST, STATS_END, 4):   # e1000_clear_hw_cntrs
            self.er32(reg)
        self.ew32(VET, 0x8100)                   # recognize 802.1Q tags (ETH_P_8021Q)

    def rar_set(self, mac: bytes, index: int) -> None:
        """e1000_rar_set: RAL = bytes 0-3, RAH = bytes 4-5 | AV."""
        self.ew32(RA + 8 * index, int.from_bytes(mac[:4], "little"))
        self.ew32(RA + 8 * index + 4, int.from_bytes(mac[4:6], "little") | RAH_AV)

    # -- the EEPROM over Microwire (e1000_read_eeprom and its bit helpers in e1000_hw.c) --
    def _ee_clock(self, eecd: int, high: bool) -> int:
        eecd = eecd | EECD_SK if high else eecd & ~EECD_SK
        self.ew32(EECD, eecd)
        self.flush()
        return eecd

    def _ee_shift_out(self, eecd: int, data: int, count: int) -> int:
        mask = 1 << (count - 1)
        eecd &= ~EECD_DO
        while mask:
            eecd &= ~EECD_DI
            if data & mask:
                eecd |= EECD_DI
            self.ew32(EECD, eecd)
            self.flush()
            eecd = self._ee_clock(eecd, True)
            eecd = self._ee_clock(eecd, False)
            mask >>= 1
        eecd &= ~EECD_DI
        self.ew32(EECD, eecd)
        return eecd

    def _ee_shift_in(self, eecd: int, count: int) -> int:
        eecd &= ~(EECD_DO | EECD_DI)
        data = 0
        for _ in range(count):
            data <<= 1
            eecd = self._ee_clock(eecd, True)
            eecd = self.er32(EECD) & ~EECD_DI
            if eecd & EECD_DO:
                data |= 1
            eecd = self._ee_clock(eecd, False)
        return data

    def read_eeprom(self, offset: int) -> int:
        """One 16-bit word: request the EEPROM, select it, shift out READ (110) and the
        6-bit address, shift in 16 data bits, deselect (SDM §5.5 Microwire)."""
        eecd = self.er32(EECD) | EECD_REQ        # e1000_acquire_eeprom
        self.ew32(EECD, eecd)
        for _ in range(1000):
            eecd = self.er32(EECD)
            if eecd & EECD_GNT:
                break
        else:
            self.ew32(EECD, eecd & ~EECD_REQ)
            raise GuestError("Could not acquire EEPROM grant")
        eecd &= ~(EECD_DI | EECD_SK)
        self.ew32(EECD, eecd)
        eecd |= EECD_CS
        self.ew32(EECD, eecd)
        eecd = self._ee_shift_out(eecd, EEPROM_READ_OPCODE_MICROWIRE, 3)
        eecd = self._ee_shift_out(eecd, offset, EEPROM_ADDR_BITS)
        data = self._ee_shift_in(eecd, 16)
        eecd = self.er32(EECD) & ~(EECD_CS | EECD_DI)   # e1000_release_eeprom
        self.ew32(EECD, eecd)
        eecd = self._ee_clock(eecd, True)
        eecd = self._ee_clock(eecd, False)
        self.ew32(EECD, eecd & ~EECD_REQ)
        return data

    # -- open ------------------------------------------------------------------------------
    def open(self) -> None:
        """e1000_open: rings, configuration, the IRQ, interrupts on, LSC to start the
        watchdog."""
        if self.opened:
            return
        k = self.kernel
        self.tx_ring = k.dma_alloc(16 * RING_SIZE, 4096)       # e1000_setup_all_tx_resources
        base = k.dma_alloc(TX_BUFFER_LEN * RING_SIZE, 4096)
        self.tx_bufs = [base + TX_BUFFER_LEN * i for i in range(RING_SIZE)]
        self.rx_ring = k.dma_alloc(16 * RING_SIZE, 4096)       # e1000_setup_all_rx_resources
        base = k.dma_alloc(RX_BUFFER_LEN * RING_SIZE, 4096)
        self.rx_bufs = [base + RX_BUFFER_LEN * i for i in range(RING_SIZE)]
        self.rx_ring_image = b"".join(_RXDESC.pack(b, 0, 0, 0, 0, 0) for b in self.rx_bufs)
        self.configure()
        self.request_irq()
        self.opened = True
        self.irq_enable()
        self.ew32(ICS, ICR_LSC)

    def configure(self) -> None:
        """e1000_configure: RX filter, VLAN stripping, TX, RCTL, RX, the RX buffers."""
        self.set_rx_mode()
        ctrl = self.er32(CTRL)                   # e1000_vlan_mode: strip tags (HW_VLAN_CTAG_RX)
        self.ew32(CTRL, ctrl | CTRL_VME)
        self.configure_tx()
        self.setup_rctl()
        self.configure_rx()
        self.rx_next_to_use = self.rx_next_to_clean = 0
        self.alloc_rx_buffers(self.desc_unused_rx())

    def set_rx_mode(self) -> None:
        """e1000_set_rx_mode: no promiscuity, our address in RA[0], no multicast."""
        rctl = self.er32(RCTL)
        self.ew32(RCTL, rctl & ~(RCTL_UPE | RCTL_MPE))
        self.rar_set(self.mac, 0)
        for i in range(128):
            self.ew32(MTA + 4 * i, 0)

    def configure_tx(self) -> None:
        """e1000_configure_tx: the ring, inter-packet gap, interrupt delays, TCTL."""
        ring = self.tx_ring
        self.ew32(TDLEN, 16 * RING_SIZE)
        self.ew32(TDBAH, ring >> 32)
        self.ew32(TDBAL, ring & 0xFFFFFFFF)
        self.ew32(TDT, 0)
        self.ew32(TDH, 0)
        self.tx_next_to_use = self.tx_next_to_clean = 0
        self.ew32(TIPG, TIPG_COPPER)
        self.ew32(TIDV, TX_INT_DELAY)
        self.ew32(TADV, TX_ABS_INT_DELAY)
        tctl = self.er32(TCTL) & ~(TCTL_CT_MASK | TCTL_COLD_MASK)
        tctl |= (TCTL_EN | TCTL_PSP | TCTL_RTLC | COLLISION_THRESHOLD << TCTL_CT_SHIFT |
                 COLLISION_DISTANCE << TCTL_COLD_SHIFT)
        self.ew32(TCTL, tctl)
        #: EOP | IFCS | IDE (tx_int_delay != 0) | RS: the command of a frame's last descriptor
        self.txd_cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_IDE | TXD_CMD_RS

    def setup_rctl(self) -> None:
        """e1000_setup_rctl: broadcast accept, threshold 1/2, 2048-byte buffers, no LPE."""
        rctl = self.er32(RCTL)
        rctl &= ~(RCTL_MO_MASK | RCTL_LBM_MASK | RCTL_SBP | RCTL_LPE | RCTL_SZ_MASK |
                  RCTL_BSEX | RCTL_SECRC)
        rctl |= RCTL_BAM | RCTL_RDMTS_HALF
        self.ew32(RCTL, rctl)

    def configure_rx(self) -> None:
        """e1000_configure_rx: RX off, delays and ITR, the ring, checksum, RX on."""
        rctl = self.er32(RCTL)
        self.ew32(RCTL, rctl & ~RCTL_EN)
        self.ew32(RDTR, RX_INT_DELAY)
        self.ew32(RADV, RX_ABS_INT_DELAY)
        self.ew32(ITR, 1_000_000_000 // (self.itr * 256))
        ring = self.rx_ring
        self.ew32(RDLEN, 16 * RING_SIZE)
        self.ew32(RDBAH, ring >> 32)
        self.ew32(RDBAL, ring & 0xFFFFFFFF)
        self.ew32(RDT, 0)
        self.ew32(RDH, 0)
        rxcsum = self.er32(RXCSUM)
        self.ew32(RXCSUM, rxcsum | RXCSUM_TUOFL)
        self.ew32(RCTL, rctl | RCTL_EN)

    def request_irq(self) -> None:
        """e1000_request_irq: the INTx pin's GSI (ACPI _PRT on the pc machine: slot 3
        INTA# -> GSI 11), a vector (0x26 for the first device), level-triggered."""
        k = self.kernel
        self.gsi = k.pci_irq_gsi(self.devfn)
        if not self.gsi:
            raise GuestError(f"{self.name}: no INTx interrupt pin")
        self.vector = k.request_gsi_irq(self.gsi, self.e1000_intr, self.name or "e1000")

    # -- interrupt and NAPI -------------------------------------------------------------------
    @tracepoint(SRC, show=("vector",))
    def e1000_intr(self, vector: int) -> None:
        """The INTx handler: ICR (read-to-clear), mask everything, flush, schedule NAPI."""
        icr = self.er32(ICR)
        if not icr:
            self.stats["IRQ_NONE (not our interrupt)"] += 1
            return
        if icr & (ICR_RXSEQ | ICR_LSC):
            self.get_link_status = True
            self.kernel.cpu.schedule(self.e1000_watchdog)
        self.ew32(IMC, 0xFFFFFFFF)
        self.flush()
        if not self.kernel.napi_schedule(self.e1000_clean):
            self.irq_enable()                    # "this really should not happen"

    @tracepoint(SRC)
    def e1000_watchdog(self) -> None:
        """Link check after LSC (e1000_watchdog, run once): carrier follows STATUS.LU."""
        status = self.er32(STATUS)
        self.get_link_status = False
        link = bool(status & STATUS_LU)
        if link and not self.carrier:
            speed = {0x00: 10, 0x40: 100}.get(status & STATUS_SPEED_MASK, 1000)
            duplex = "Full" if status & STATUS_FD else "Half"
            self.kernel.printk(f"e1000: {self.name} NIC Link is Up {speed} Mbps {duplex} "
                               f"Duplex, Flow Control: RX/TX")
            self.carrier = True
            self.netif_wake_queue()
        elif not link and self.carrier:
            self.kernel.printk(f"e1000: {self.name} NIC Link is Down")
            self.carrier = False

    @tracepoint(SRC, show=("budget",))
    def e1000_clean(self, budget: int) -> int:
        """The NAPI poll: TX clean, RX clean (refill), then, under budget, complete NAPI
        (GRO passes the frames up: the reply goes out through TDT) and re-enable interrupts."""
        tx_clean_complete = self.e1000_clean_tx_irq()
        work_done = self.e1000_clean_rx_irq(budget)
        if not tx_clean_complete or work_done >= budget:
            self.gro_normal_list()
            return budget
        self.gro_normal_list()                   # napi_complete_done flushes GRO first
        if self.kernel.napi_complete_done(self.e1000_clean, work_done):
            self.irq_enable()
        return work_done

    def gro_normal_list(self) -> None:
        """Pass the batched frames up the stack (gro_normal_list -> netif_receive_skb)."""
        frames = self.rx_list
        if frames:
            self.rx_list = []
            rx = self.kernel.netif_receive_skb
            for f in frames:
                rx(self, f)

    # -- RX ------------------------------------------------------------------------------------
    def desc_unused_rx(self) -> int:
        """E1000_DESC_UNUSED: descriptors software may still hand to the NIC (one stays
        empty so that a full ring is not mistaken for an empty one)."""
        ntc, ntu = self.rx_next_to_clean, self.rx_next_to_use
        return (0 if ntc > ntu else RING_SIZE) + ntc - ntu - 1

    @tracepoint(SRC, show=("cleaned_count",))
    def alloc_rx_buffers(self, cleaned_count: int) -> None:
        """Give ``cleaned_count`` buffers back and tell the NIC: RDT = the last one filled.

        Each descriptor gets its buffer's address and a cleared status (Linux clears the
        status in e1000_clean_rx_irq and writes the address here; both happen before the
        NIC may use the descriptor again, so one write of the whole descriptor is the same)."""
        if cleaned_count <= 0:
            return
        ram = self.ram
        start = self.rx_next_to_use
        end = start + cleaned_count
        image = self.rx_ring_image
        if end <= RING_SIZE:
            ram.write(self.rx_ring + 16 * start, image[16 * start:16 * end])
        else:                                     # wraps around the end of the ring
            ram.write(self.rx_ring + 16 * start, image[16 * start:])
            ram.write(self.rx_ring, image[:16 * (end - RING_SIZE)])
        i = end % RING_SIZE
        if i != start:
            self.rx_next_to_use = i
            self.ew32(RDT, (i - 1) % RING_SIZE)

    @tracepoint(SRC, show=("budget",))
    def e1000_clean_rx_irq(self, budget: int) -> int:
        """Take each descriptor with DD set: strip the CRC, queue the frame for the stack,
        clear the status; refill every 16 and once at the end."""
        ram = self.ram
        ring, bufs = self.rx_ring, self.rx_bufs
        i = self.rx_next_to_clean
        work_done = 0
        cleaned = 0
        stats = self.stats
        while work_done < budget:
            daddr = ring + 16 * i
            _addr, length, _csum, status, errors, special = _RXDESC.unpack(ram.read(daddr, 16))
            if not status & RXD_STAT_DD:
                break
            work_done += 1
            cleaned += 1
            if not status & RXD_STAT_EOP:
                stats["rx dropped: frame spans descriptors"] += 1
            elif errors & RXD_ERR_FRAME_ERR_MASK:
                stats["rx dropped: frame error"] += 1
            else:
                n = length - ETH_FCS_LEN
                if n < ETH_HLEN:
                    stats["rx dropped: runt"] += 1
                else:
                    frame = ram.read(bufs[i], n)
                    if status & RXD_STAT_VP:      # the NIC stripped a VLAN tag: put it back
                        frame = frame[:12] + b"\x81\x00" + special.to_bytes(2, "big") + frame[12:]
                    self.rx_list.append(frame)
                    stats["rx_packets"] += 1
                    stats["rx_bytes"] += n
                    if len(self.rx_list) >= GRO_NORMAL_BATCH:
                        self.gro_normal_list()
            i = i + 1 if i + 1 < RING_SIZE else 0   # (status cleared by the refill)
            if cleaned >= RX_BUFFER_WRITE:
                self.rx_next_to_clean = i
                self.alloc_rx_buffers(cleaned)
                cleaned = 0
        self.rx_next_to_clean = i
        unused = self.desc_unused_rx()
        if unused:
            self.alloc_rx_buffers(unused)
        return work_done

    # -- TX ------------------------------------------------------------------------------------
    def desc_unused_tx(self) -> int:
        ntc, ntu = self.tx_next_to_clean, self.tx_next_to_use
        return (0 if ntc > ntu else RING_SIZE) + ntc - ntu - 1

    @tracepoint(SRC)
    def e1000_clean_tx_irq(self) -> bool:
        """Reap descriptors the NIC wrote DD back into; wake the queue. True when done."""
        ram = self.ram
        ring = self.tx_ring
        i = self.tx_next_to_clean
        count = 0
        while i != self.tx_next_to_use and count < RING_SIZE:
            daddr = ring + 16 * i
            if not ram.read(daddr + 12, 1)[0] & TXD_STAT_DD:
                break
            ram.write(daddr + 8, bytes(8))        # tx_desc->upper.data = 0 (and lower)
            i = i + 1 if i + 1 < RING_SIZE else 0
            count += 1
        self.tx_next_to_clean = i
        self.stats["tx descriptors cleaned"] += count
        if self.tx_stopped and self.desc_unused_tx() >= TX_WAKE_THRESHOLD:
            self.netif_wake_queue()
        return count < RING_SIZE

    @tracepoint(SRC)
    def e1000_xmit_frame(self, frame: bytes) -> None:
        """ndo_start_xmit: one legacy descriptor (EOP|IFCS|IDE|RS), then TDT."""
        n = len(frame)
        if n > MAX_FRAME or n < ETH_HLEN:
            self.stats["tx dropped: bad length"] += 1
            return
        if self.desc_unused_tx() < 1 + 2:        # e1000_maybe_stop_tx
            self.tx_stopped = True
            self.tx_backlog.appendleft(frame)
            self.stats["tx queue stopped"] += 1
            return
        i = self.tx_next_to_use
        buf = self.tx_bufs[i]
        ram = self.ram
        ram.write(buf, frame)
        ram.write(self.tx_ring + 16 * i, _TXDESC.pack(buf, self.txd_cmd | n, 0))
        i = i + 1 if i + 1 < RING_SIZE else 0
        self.tx_next_to_use = i
        self.stats["tx_packets"] += 1
        self.stats["tx_bytes"] += n
        if self.desc_unused_tx() < 1 + 2:
            self.tx_stopped = True
            self.stats["tx queue stopped"] += 1
        self.ew32(TDT, i)

    ndo_start_xmit = e1000_xmit_frame


def probe(kernel: "GuestKernel", devfn: int) -> E1000Adapter:
    """Bind the e1000 driver to an 8086:100e function (e1000_probe)."""
    dev = E1000Adapter(kernel, devfn)
    dev.probe()
    return dev


__all__ = ["E1000Adapter", "probe", "IMS_ENABLE_MASK"]
