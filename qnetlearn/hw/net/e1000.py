"""The Intel 82540EM gigabit NIC, QEMU's ``e1000`` (hw/net/e1000.c, hw/net/e1000x_common.c).

Sources: Intel "PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
Manual" (8254x SDM): ch. 3 (receive and transmit descriptors, rings), ch. 13 (registers);
QEMU 7.2's model for what it does where the manual leaves room (interrupt mitigation, the
queue flush delay after an RCTL write, what a DMA error does).  The code is our own.

What a driver sees (BAR0, 128 KiB of registers, little endian, 32-bit accesses):

* RX: the driver puts legacy descriptors (buffer address, length, status) in a ring in
  guest RAM (RDBAL/RDBAH/RDLEN) and hands them to the NIC by moving the tail RDT; the NIC
  writes a frame into the buffer at the head RDH, sets DD|EOP in the descriptor, advances
  RDH and raises RXT0.  With RDH == RDT there is no buffer: the frame *waits in QEMU's
  NetQueue* (``e1000_can_receive`` is false) until an RDT write flushes it.
* TX: the driver fills descriptors at the tail TDT and writes TDT; the NIC sends them at
  once, inside that MMIO write (``start_xmit``), writes DD back when asked (RS) and raises
  TXDW|TXQE.
* Interrupts: cause bits in ICR (read clears), masked by IMS (set) / IMC (clear).  INTA# is
  high while ICR & IMS != 0 (``set_interrupt_cause``).  QEMU's mitigation: after a rising
  edge the next one is held back for max(500, ITR/RADV/TADV) x 256 ns (``mit_timer``).

Everything a guest can get wrong (rings outside RAM, null buffers, bus mastering off, a
head beyond the ring) is handled as QEMU handles it and counted in ``stats``, never raised.

Modelled: the registers above plus EECD (bit-banged Microwire) and EERD, MDIC with the
PHY register table and autonegotiation (500 ms), VET/VFTA/MTA/16 exact addresses, VLAN tag
strip (CTRL.VME) and insert (VLE), legacy, context and data TX descriptors with IP/TCP/UDP
checksum insertion and TCP segmentation (TSE), multi-descriptor RX frames, PHY loopback,
the statistics registers QEMU counts (clear-on-read where QEMU clears them).
Not modelled (as in QEMU 7.2's e1000, unless noted): RX checksum offload (the NIC reports
IXSM, "not checked"), the relative delay timers RDTR/TIDV (RDTR only enables RADV), flow
control (XON/XOFF; FCAL/FCAH/FCT are stored only), wake-on-LAN and manageability, EEPROM
writes and flash, the I/O BAR's IOADDR/IODATA window (unmapped: no port I/O space here), a
real reset on CTRL.RST (QEMU only clears the bit), TBI/fiber, other 8254x variants, MSI
(the 82540EM has none).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...net.net import (NetClientInfo, NetClientState, qemu_flush_queued_packets,
                        qemu_new_net_client, qemu_send_packet)
from ...net.stack import internet_checksum
from ...system.memory import MemoryRegion, MemTxError
from ...trace import tracepoint
from ...trace import events as trace
from ..pci.pci import PCI_BASE_ADDRESS_SPACE_IO, PCI_COMMAND_MASTER, PCIDevice

if TYPE_CHECKING:  # pragma: no cover
    from ...machine import Machine
    from ...system.vl import NicConfig

# ---- register offsets (8254x SDM table 13-2; Linux e1000_hw.h names) -------------------
CTRL, STATUS, EECD, EERD, CTRL_EXT, MDIC = 0x0000, 0x0008, 0x0010, 0x0014, 0x0018, 0x0020
FCAL, FCAH, FCT, VET = 0x0028, 0x002C, 0x0030, 0x0038
ICR, ITR, ICS, IMS, IMC = 0x00C0, 0x00C4, 0x00C8, 0x00D0, 0x00D8
RCTL, FCTTV, TXCW, RXCW, TCTL, TIPG, AIT = 0x0100, 0x0170, 0x0178, 0x0180, 0x0400, 0x0410, 0x0458
LEDCTL, PBA = 0x0E00, 0x1000
FCRTL, FCRTH = 0x2160, 0x2168
RDBAL, RDBAH, RDLEN, RDH, RDT, RDTR, RXDCTL, RADV = (0x2800, 0x2804, 0x2808, 0x2810, 0x2818,
                                                    0x2820, 0x2828, 0x282C)
TDBAL, TDBAH, TDLEN, TDH, TDT, TIDV, TXDCTL, TADV = (0x3800, 0x3804, 0x3808, 0x3810, 0x3818,
                                                    0x3820, 0x3828, 0x382C)
RDFH, RDFT, RDFHS, RDFTS, RDFPC = 0x2410, 0x2418, 0x2420, 0x2428, 0x2430
TDFH, TDFT, TDFHS, TDFTS, TDFPC = 0x3410, 0x3418, 0x3420, 0x3428, 0x3430
RXCSUM, MTA, RA, VFTA = 0x5000, 0x5200, 0x5400, 0x5600
WUC, WUFC, WUS, MANC, SWSM = 0x5800, 0x5808, 0x5810, 0x5820, 0x5B50
# statistics (SDM §13.7)
CRCERRS, MPC, RNBC, RUC, ROC = 0x4000, 0x4010, 0x40A0, 0x40A4, 0x40AC
PRC64, PRC127, PRC255, PRC511, PRC1023, PRC1522 = 0x405C, 0x4060, 0x4064, 0x4068, 0x406C, 0x4070
GPRC, BPRC, MPRC, GPTC = 0x4074, 0x4078, 0x407C, 0x4080
GORCL, GORCH, GOTCL, GOTCH = 0x4088, 0x408C, 0x4090, 0x4094
TORL, TORH, TOTL, TOTH, TPR, TPT = 0x40C0, 0x40C4, 0x40C8, 0x40CC, 0x40D0, 0x40D4
PTC64, PTC127, PTC255, PTC511, PTC1023, PTC1522 = 0x40D8, 0x40DC, 0x40E0, 0x40E4, 0x40E8, 0x40EC
MPTC, BPTC, TSCTC = 0x40F0, 0x40F4, 0x40F8

MMIO_SIZE = 0x20000      # PNPMMIO_SIZE: BAR0
IO_SIZE = 0x40           # BAR1 (I/O window IOADDR/IODATA; no port I/O space is modelled)

# ---- bits ---------------------------------------------------------------------------
CTRL_SLU, CTRL_SPD_1000, CTRL_RST, CTRL_VME = 0x40, 0x200, 0x04000000, 0x40000000
CTRL_SWDPIN0, CTRL_SWDPIN2 = 0x00040000, 0x00100000
STATUS_FD, STATUS_LU, STATUS_SPEED_1000 = 0x1, 0x2, 0x80
STATUS_ASDV, STATUS_MTXCKOK, STATUS_GIO_MASTER_ENABLE = 0x300, 0x400, 0x80000
# ICR/ICS/IMS/IMC causes (SDM §13.4.17)
ICR_TXDW, ICR_TXQE, ICR_LSC, ICR_RXSEQ, ICR_RXDMT0 = 0x01, 0x02, 0x04, 0x08, 0x10
ICR_RXO, ICR_RXT0, ICR_MDAC = 0x40, 0x80, 0x200
# RCTL (SDM §13.4.22)
RCTL_EN, RCTL_SBP, RCTL_UPE, RCTL_MPE, RCTL_LPE = 0x2, 0x4, 0x8, 0x10, 0x20
RCTL_RDMTS_QUAT, RCTL_MO_SHIFT, RCTL_BAM, RCTL_VFE = 0x100, 12, 0x8000, 0x40000
RCTL_SZ_MASK, RCTL_BSEX, RCTL_SECRC = 0x30000, 0x02000000, 0x04000000
TCTL_EN = 0x2
RAH_AV = 0x80000000
# EEPROM: EECD bit-banged Microwire and the EERD shortcut (SDM §13.4.3-4, §5)
EECD_SK, EECD_CS, EECD_DI, EECD_DO, EECD_FWE_MASK = 0x1, 0x2, 0x4, 0x8, 0x30
EECD_REQ, EECD_GNT, EECD_PRES = 0x40, 0x80, 0x100
EERD_START, EERD_DONE, EERD_ADDR_SHIFT, EERD_DATA_SHIFT = 0x1, 0x10, 8, 16
EEPROM_READ_OPCODE_MICROWIRE = 0x6
EEPROM_CHECKSUM_REG, EEPROM_SUM = 0x3F, 0xBABA
# MDIC (SDM §13.4.6)
MDIC_DATA_MASK, MDIC_REG_SHIFT, MDIC_PHY_SHIFT = 0xFFFF, 16, 21
MDIC_OP_WRITE, MDIC_OP_READ = 0x04000000, 0x08000000
MDIC_READY, MDIC_INT_EN, MDIC_ERROR = 0x10000000, 0x20000000, 0x40000000
# RX descriptor status (SDM §3.2.3.1)
RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_IXSM, RXD_STAT_VP = 0x01, 0x02, 0x04, 0x08
# TX descriptor command/status in the 32-bit "lower"/"upper" views (SDM §3.3)
TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS, TXD_CMD_RPS = 0x01000000, 0x02000000, 0x08000000, 0x10000000
TXD_CMD_DEXT, TXD_CMD_VLE, TXD_CMD_IDE = 0x20000000, 0x40000000, 0x80000000
TXD_CMD_TCP, TXD_CMD_IP, TXD_CMD_TSE = 0x01000000, 0x02000000, 0x04000000
TXD_DTYP_D = 0x00100000
TXD_STAT_DD, TXD_STAT_EC, TXD_STAT_LC, TXD_STAT_TU = 0x1, 0x2, 0x4, 0x8
TXD_POPTS_IXSM, TXD_POPTS_TXSM = 0x1, 0x2

# MII / Marvell 88E1011 PHY at MDIO address 1 (IEEE 802.3 clause 22; SDM §13.5)
MII_BMCR, MII_BMSR, MII_PHYID1, MII_PHYID2, MII_ANAR, MII_ANLPAR, MII_ANER = 0, 1, 2, 3, 4, 5, 6
MII_CTRL1000, MII_STAT1000 = 9, 10
M88_PHY_SPEC_CTRL, M88_PHY_SPEC_STATUS, M88_EXT_PHY_SPEC_CTRL, M88_RX_ERR_CNTR = 0x10, 0x11, 0x14, 0x15
BMCR_LOOPBACK, BMCR_AUTOEN, BMCR_ANRESTART, BMCR_RESET = 0x4000, 0x1000, 0x0200, 0x8000
BMSR_LINK_ST, BMSR_AN_COMP = 0x0004, 0x0020
ANLPAR_ACK = 0x4000
_PHY_R, _PHY_W = 1, 2
PHY_CAPS = {MII_BMCR: 3, MII_BMSR: 1, MII_PHYID1: 1, MII_PHYID2: 1, MII_ANAR: 3, MII_ANLPAR: 1,
            MII_ANER: 1, MII_CTRL1000: 3, MII_STAT1000: 1, M88_PHY_SPEC_CTRL: 3,
            M88_PHY_SPEC_STATUS: 1, M88_EXT_PHY_SPEC_CTRL: 3, M88_RX_ERR_CNTR: 1}
PHY_INIT = {MII_BMCR: 0x1140,        # 1000 Mb/s, full duplex, autonegotiation on
            MII_BMSR: 0x794D,        # link up, AN capable, AN *not* complete yet
            MII_PHYID1: 0x0141, MII_PHYID2: 0x0C20, MII_ANAR: 0x0DE1, MII_ANLPAR: 0x01E0,
            MII_CTRL1000: 0x0E00, MII_STAT1000: 0x3C00, M88_PHY_SPEC_CTRL: 0x0360,
            M88_PHY_SPEC_STATUS: 0xAC00, M88_EXT_PHY_SPEC_CTRL: 0x0D60}

E1000_DEV_ID_82540EM = 0x100E
ETH_ZLEN = 60
#: QEMU 7.2's e1000x_is_oversized limits: 1522 without RCTL.LPE, 16 KiB with it
MAX_ETH_VLAN_SIZE, MAX_ETH_LPE_SIZE = 1522, 16384
#: mitigation: minimum delay in 256 ns units (7813 interrupts/s, the manual's maximum rate)
MIT_MIN_DELAY = 500

_RXDESC = struct.Struct("<QHHBBH")    # buffer_addr, length, csum, status, errors, special
_TXDESC = struct.Struct("<QII")       # buffer_addr, lower (length|cso|cmd), upper (sta|css|special)
_CTXDESC = struct.Struct("<BBHBBHIBBH")  # ipcss ipcso ipcse tucss tucso tucse cmd_len sta hdrlen mss
_U32 = struct.Struct("<I")
_BCAST = b"\xff" * 6

#: golden names of the registers (reference/golden-qemu/normalize.py)
REG_NAMES = {CTRL: "CTRL", STATUS: "STATUS", EECD: "EECD", EERD: "EERD", CTRL_EXT: "CTRL_EXT",
             MDIC: "MDIC", ICR: "ICR", ITR: "ITR", ICS: "ICS", IMS: "IMS", IMC: "IMC",
             RCTL: "RCTL", TCTL: "TCTL", TIPG: "TIPG", RDBAL: "RDBAL", RDBAH: "RDBAH",
             RDLEN: "RDLEN", RDH: "RDH", RDT: "RDT", RDTR: "RDTR", RADV: "RADV",
             TDBAL: "TDBAL", TDBAH: "TDBAH", TDLEN: "TDLEN", TDH: "TDH", TDT: "TDT",
             TIDV: "TIDV", TADV: "TADV", RXCSUM: "RXCSUM", RA: "RAL0", RA + 4: "RAH0"}

#: registers kept as attributes (journaled in recordings): offset -> attribute
ATTR_REGS = {CTRL: "ctrl", STATUS: "status", ICR: "icr", ITR: "itr", IMS: "ims", RCTL: "rctl",
             TCTL: "tctl", RDBAL: "rdbal", RDBAH: "rdbah", RDLEN: "rdlen", RDH: "rdh",
             RDT: "rdt", RDTR: "rdtr", RADV: "radv", TDBAL: "tdbal", TDBAH: "tdbah",
             TDLEN: "tdlen", TDH: "tdh", TDT: "tdt", TADV: "tadv"}

#: statistics that reading clears, as QEMU 7.2 models them (SDM §13.7 says all of them do)
_READ_CLEAR = frozenset((PRC64, PRC127, PRC255, PRC511, PRC1023, PRC1522, PTC64, PTC127, PTC255,
                         PTC511, PTC1023, PTC1522, GPRC, GPTC, TPT, TPR, RUC, ROC, BPRC, MPRC,
                         TSCTC, BPTC, MPTC))
_READ_CLEAR8 = frozenset((TORH, TOTH, GORCH, GOTCH))   # reading the high half clears both
#: registers the model stores and reads back as written (plain RW)
_PLAIN = frozenset([PBA, EERD, SWSM, WUFC, TXDCTL, LEDCTL, VET, WUC, WUS, MANC, CTRL_EXT,
                    FCAL, FCAH, FCT, FCTTV, TXCW, TIPG, FCRTL, FCRTH, TIDV, RXDCTL, RXCSUM]
                   + [RA + 4 * i for i in range(32)] + [MTA + 4 * i for i in range(128)]
                   + [VFTA + 4 * i for i in range(128)] + [0x5840 + 4 * i for i in range(7)]
                   + [0x5880 + 4 * i for i in range(4)])
_MASK16 = frozenset((RDH, TDH, RDTR, RADV, TADV, ITR, AIT))
_MASK13 = frozenset((RDFH, RDFT, RDFHS, RDFTS, RDFPC, TDFHS, TDFTS, TDFPC))
_MASK11 = frozenset((TDFH, TDFT))
_READ_ONLY = frozenset(range(CRCERRS, 0x4100, 4)) | {STATUS}

_SIZE_BUCKETS = ((1023, 5), (511, 4), (255, 3), (127, 2), (64, 1))
#: the PRC64..PRC1522 register index for each frame size below 1024 (-1: not counted)
_PRC_INDEX = tuple(-1 if n < 64 else (PRC64 >> 2) + (0 if n == 64 else 1 if n < 128 else
                   2 if n < 256 else 3 if n < 512 else 4) for n in range(1024))
_PRC1522_I, _TPR_I, _GPRC_I, _TORL_I, _GORCL_I = (PRC1522 >> 2, TPR >> 2, GPRC >> 2, TORL >> 2,
                                                 GORCL >> 2)


def _eeprom_image(mac: bytes) -> list[int]:
    """64 words (SDM §5.6): Ethernet address, IDs, the rest erased; word 0x3F makes the sum
    of all words 0xBABA, which drivers check."""
    w = [0xFFFF] * 64
    w[0], w[1], w[2] = (mac[0] | mac[1] << 8, mac[2] | mac[3] << 8, mac[4] | mac[5] << 8)
    w[3] = 0x0000                      # compatibility
    w[8], w[9] = 0x3000, 0x1000        # PBA number
    w[0x0A] = 0x6403                   # initialization control 1
    w[0x0B] = E1000_DEV_ID_82540EM     # subsystem ID
    w[0x0C] = 0x8086                   # subsystem vendor ID
    w[0x0D] = E1000_DEV_ID_82540EM     # device ID
    w[0x0E] = 0x8086                   # vendor ID
    w[0x0F] = 0x3040                   # initialization control 2
    w[EEPROM_CHECKSUM_REG] = (EEPROM_SUM - sum(w[:EEPROM_CHECKSUM_REG])) & 0xFFFF
    return w


class E1000State(PCIDevice):
    """QEMU's ``e1000`` (82540EM): a PCIDevice with INTA#, BAR0 MMIO and BAR1 I/O."""

    _state_ = ("ctrl", "status", "icr", "ims", "itr", "rctl", "tctl", "rdbal", "rdbah",
               "rdlen", "rdh", "rdt", "rdtr", "radv", "tdbal", "tdbah", "tdlen", "tdh",
               "tdt", "tadv", "mit_timer_on", "mit_irq_level")
    vendor_id = 0x8086
    device_id = E1000_DEV_ID_82540EM
    class_id = 0x0200
    revision = 0x03
    subsystem_vendor_id = 0x1AF4       # QEMU's default subsystem (Red Hat / Qumranet)
    subsystem_id = 0x1100
    interrupt_pin = 1

    #: QEMU's compat flags (all on for current machine types): autonegotiation, mitigation
    autoneg = True
    mitigation = True

    def __init__(self, machine: "Machine", cfg: "NicConfig", peer: NetClientState | None) -> None:
        super().__init__("e1000", cfg.id)
        self.machine = machine
        self.cfg = cfg
        self.loop = machine.loop
        self.mac = cfg.mac
        self.macaddr = bytes(int(x, 16) for x in cfg.mac.split(":"))
        self.config[0x0C] = 0x10                       # cache line size
        self.mmio = MemoryRegion("e1000-mmio", MMIO_SIZE, self._mmio_read, self._mmio_write,
                                 _describe, owner=self)
        self.io = MemoryRegion("e1000-io", IO_SIZE, owner=self)
        self.pci_register_bar(0, 0, self.mmio)
        self.pci_register_bar(1, PCI_BASE_ADDRESS_SPACE_IO, self.io)
        loop = self.loop
        self.mit_timer = loop.timer_new_ns(e1000_mit_timer, self, name="e1000 mit_timer")
        self.autoneg_timer = loop.timer_new_ns(e1000_autoneg_timer, self,
                                               name="e1000 autoneg_timer")
        self.flush_queue_timer = loop.timer_new_ns(e1000_flush_queue_timer, self,
                                                   name="e1000 flush_queue_timer")
        self.eeprom = _eeprom_image(self.macaddr)
        self.nc = qemu_new_net_client(net_e1000_info, peer, "e1000", cfg.name, self)
        self.reset()

    # -- reset (e1000_reset) ------------------------------------------------------------
    def reset(self) -> None:
        """Power-on register values (SDM §13 'initial value'; QEMU's mac_reg_init)."""
        loop = self.loop
        for t in (self.mit_timer, self.autoneg_timer, self.flush_queue_timer):
            loop.timer_del(t)
        self.mac_reg = [0] * (MMIO_SIZE >> 2)
        self.phy_reg = [0] * 0x20
        for r, v in PHY_INIT.items():
            self.phy_reg[r] = v
        self.ctrl = CTRL_SWDPIN2 | CTRL_SWDPIN0 | CTRL_SPD_1000 | CTRL_SLU
        self.status = (0x80000000 | STATUS_GIO_MASTER_ENABLE | STATUS_ASDV | STATUS_MTXCKOK |
                       STATUS_SPEED_1000 | STATUS_FD | STATUS_LU)        # = 0x80080783
        self.icr = self.ims = self.itr = self.rctl = self.tctl = 0
        self.rdbal = self.rdbah = self.rdlen = self.rdh = self.rdt = 0
        self.rdtr = self.radv = self.tadv = 0
        self.tdbal = self.tdbah = self.tdlen = self.tdh = self.tdt = 0
        m = self.mac_reg
        m[PBA >> 2] = 0x00100030
        m[LEDCTL >> 2] = 0x602
        m[MANC >> 2] = 0x00222300
        m[VET >> 2] = 0x8100
        self.rxbuf_size = 0
        self.rxbuf_min_shift = 1
        self.mit_timer_on = False
        self.mit_irq_level = False
        self.mit_ide = 0
        self.eecd = {"val_in": 0, "bitnum_in": 0, "bitnum_out": 0, "reading": False,
                     "old_eecd": 0}
        self.tx_data = bytearray()
        self.tx_props = (0, 0, 0, 0, 0, 0)      # ipcss ipcso ipcse tucss tucso tucse
        self.tx_tso_props = (0, 0, 0, 0, 0, 0)
        self.tx_tso: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # hdr_len mss paylen ip tcp
        self.tx_tso_frames = 0
        self.tx_header = b""
        self.tx_sum_needed = 0
        self.tx_cptse = False
        self.tx_vlan: bytes | None = None
        self.tx_busy = False
        if self.nc.link_down:
            self._link_down_regs()
        # receive address 0 = the MAC, valid (e1000x_reset_mac_addr)
        mac = self.macaddr
        m[RA >> 2] = int.from_bytes(mac[:4], "little")
        m[(RA >> 2) + 1] = RAH_AV | int.from_bytes(mac[4:], "little")
        self.ra_table: tuple[tuple[int, int], ...] | None = None
        self.pci_set_irq(0)

    # -- link (e1000x_update_regs_on_link_*) ---------------------------------------------
    def _link_down_regs(self) -> None:
        self.status &= ~STATUS_LU
        self.phy_reg[MII_BMSR] &= ~(BMSR_LINK_ST | BMSR_AN_COMP)
        self.phy_reg[MII_ANLPAR] &= ~ANLPAR_ACK

    def _link_up_regs(self) -> None:
        self.status |= STATUS_LU
        self.phy_reg[MII_BMSR] |= BMSR_LINK_ST

    def have_autoneg(self) -> bool:
        return self.autoneg and bool(self.phy_reg[MII_BMCR] & BMCR_AUTOEN)

    def restart_autoneg(self) -> None:
        """Link down for 500 ms of virtual time, then up with LSC (e1000x_restart_autoneg)."""
        self._link_down_regs()
        trace.e1000x_link_negotiation_start()
        loop = self.loop
        loop.timer_mod(self.autoneg_timer, (loop.clock_ns // 1_000_000 + 500) * 1_000_000)

    # -- DMA that never raises (pci_dma_read/write ignore MemTxResult in e1000.c) ---------
    def _dma_read(self, addr: int, n: int, what: str) -> bytes:
        """A failed read (bus mastering off, outside RAM) reads zeros, as QEMU's unassigned."""
        try:
            return self.dma_read(addr, n)
        except MemTxError:
            self.stats["dma error: " + what] += 1
            return bytes(n)

    def _dma_write(self, addr: int, data: Any, what: str) -> bool:
        try:
            self.dma_write(addr, data)
            return True
        except MemTxError:
            self.stats["dma error: " + what] += 1
            return False

    # -- statistics registers ------------------------------------------------------------
    def _inc(self, off: int, n: int = 1) -> None:
        """e1000x_inc_reg_if_not_full: saturating 32-bit counter."""
        m = self.mac_reg
        i = off >> 2
        v = m[i] + n
        m[i] = v if v <= 0xFFFFFFFF else 0xFFFFFFFF

    def _grow8(self, lo: int, n: int) -> None:
        """e1000x_grow_8reg_if_not_full: a 64-bit counter in two registers, saturating."""
        m = self.mac_reg
        i = lo >> 2
        v = m[i] | m[i + 1] << 32
        v = min(v + n, 0xFFFFFFFFFFFFFFFF)
        m[i] = v & 0xFFFFFFFF
        m[i + 1] = v >> 32

    def _size_stat(self, base: int, size: int) -> None:
        """e1000x_increase_size_stats: PRC64.. / PTC64.. by frame size with FCS."""
        for limit, k in _SIZE_BUCKETS:
            if size > limit:
                self._inc(base + 4 * k)
                return
        if size == 64:
            self._inc(base)

    # -- MMIO -------------------------------------------------------------------------
    def _mmio_read(self, offset: int, size: int) -> int:
        if size == 4 and not offset & 3:
            return e1000_mmio_read(self, offset, 4)
        if size == 8:
            return e1000_mmio_read(self, offset, 4) | e1000_mmio_read(self, offset + 4, 4) << 32
        shift = (offset & 3) * 8      # impl.min_access_size 4: read the dword, take bytes
        return (e1000_mmio_read(self, offset & ~3, 4) >> shift) & ((1 << (8 * size)) - 1)

    def _mmio_write(self, offset: int, value: int, size: int) -> None:
        if size == 4 and not offset & 3:
            e1000_mmio_write(self, offset, value & 0xFFFFFFFF, 4)
        elif size == 8:
            e1000_mmio_write(self, offset, value & 0xFFFFFFFF, 4)
            e1000_mmio_write(self, offset + 4, (value >> 32) & 0xFFFFFFFF, 4)
        else:   # a narrow write becomes a dword write with the other bytes zero, as in QEMU
            shift = (offset & 3) * 8
            e1000_mmio_write(self, offset & ~3,
                             (value & ((1 << (8 * size)) - 1)) << shift & 0xFFFFFFFF, 4)

    def read_reg(self, off: int) -> int:
        """Register value by offset, with read side effects (ICR, EECD, statistics)."""
        attr = ATTR_REGS.get(off)
        if attr is not None:
            if off == ICR:
                return mac_icr_read(self)
            return getattr(self, attr)
        if off == ICS:
            return self.icr
        if off == EECD:
            return self._get_eecd()
        if off == EERD:
            return self._eerd_read()
        if off == MDIC:
            return self.mac_reg[MDIC >> 2]
        m = self.mac_reg
        i = off >> 2
        v = m[i]
        if off in _READ_CLEAR:
            m[i] = 0
        elif off in _READ_CLEAR8:
            m[i] = m[i - 1] = 0
        elif not (CRCERRS <= off < 0x4100 or off in _PLAIN or off in _MASK16 or
                  off in _MASK13 or off in _MASK11):
            self.stats["unknown register reads"] += 1
            return 0
        return v

    def write_reg(self, off: int, val: int) -> None:
        """Register write with QEMU's side effects (macreg_writeops)."""
        if off == TDT:
            self.tdt = val & 0xFFFF
            start_xmit(self)
        elif off == RDT:
            set_rdt(self, val)
        elif off == IMS:
            self.ims |= val
            set_ics(self, 0)
        elif off == IMC:
            self.ims &= ~val
            set_ics(self, 0)
        elif off == ICR:                # writing 1s clears those causes
            set_interrupt_cause(self, self.icr & ~val)
        elif off == ICS:
            set_ics(self, val)
        elif off == RCTL:
            set_rx_control(self, val)
        elif off == TCTL:
            self.tctl = val
            self.tdt &= 0xFFFF
            start_xmit(self)
        elif off == CTRL:
            self.ctrl = val & ~CTRL_RST       # RST self-clears (QEMU does not reset here)
        elif off in (RDLEN, TDLEN):
            setattr(self, ATTR_REGS[off], val & 0xFFF80)
        elif off in (RDBAL, RDBAH, TDBAL, TDBAH):
            setattr(self, ATTR_REGS[off], val)
        elif off in _MASK16:
            attr = ATTR_REGS.get(off)
            if attr is not None:
                setattr(self, attr, val & 0xFFFF)
            else:
                self.mac_reg[off >> 2] = val & 0xFFFF
        elif off == EECD:
            self._set_eecd(val)
        elif off == MDIC:
            self._set_mdic(val)
        elif off in _PLAIN:
            self.mac_reg[off >> 2] = val
            if RA <= off < RA + 0x80:
                self.ra_table = None          # the exact-match filter changed
        elif off in _MASK13:
            self.mac_reg[off >> 2] = val & 0x1FFF
        elif off in _MASK11:
            self.mac_reg[off >> 2] = val & 0x7FF
        elif off in _READ_ONLY:
            self.stats["writes to read-only registers"] += 1
        else:
            self.stats["unknown register writes"] += 1

    # -- EEPROM (get_eecd / set_eecd / flash_eerd_read) --------------------------------
    def _get_eecd(self) -> int:
        e = self.eecd
        ret = EECD_PRES | EECD_GNT | e["old_eecd"]
        if not e["reading"]:
            return ret | EECD_DO
        n = e["bitnum_out"]
        word = self.eeprom[(n >> 4) & 0x3F]
        if (word >> ((n & 0xF) ^ 0xF)) & 1:
            ret |= EECD_DO
        return ret

    def _set_eecd(self, val: int) -> None:
        """Microwire: CS frames a command; DI is sampled on SK rising edges (3-bit opcode,
        6-bit address), then each SK falling edge presents the next data bit on DO."""
        e = self.eecd
        old = e["old_eecd"]
        e["old_eecd"] = val & (EECD_SK | EECD_CS | EECD_DI | EECD_FWE_MASK | EECD_REQ)
        if not val & EECD_CS:
            return
        if (val ^ old) & EECD_CS:            # CS rising edge: new command
            e.update(val_in=0, bitnum_in=0, bitnum_out=0, reading=False)
        if not (val ^ old) & EECD_SK:
            return
        if not val & EECD_SK:                # falling edge: next output bit
            e["bitnum_out"] += 1
            return
        e["val_in"] = (e["val_in"] << 1) | (1 if val & EECD_DI else 0)
        e["bitnum_in"] += 1
        if e["bitnum_in"] == 9 and not e["reading"]:
            # the dummy 0 bit comes first: point one before the word's MSB
            e["bitnum_out"] = ((e["val_in"] & 0x3F) << 4) - 1
            e["reading"] = ((e["val_in"] >> 6) & 7) == EEPROM_READ_OPCODE_MICROWIRE

    def _eerd_read(self) -> int:
        r = self.mac_reg[EERD >> 2]
        if not r & EERD_START:
            return r
        r &= ~EERD_START
        index = r >> EERD_ADDR_SHIFT
        if index > EEPROM_CHECKSUM_REG:
            return EERD_DONE | r
        return (self.eeprom[index] << EERD_DATA_SHIFT) | EERD_DONE | r

    # -- PHY through MDIC (set_mdic) ----------------------------------------------------
    def _set_mdic(self, val: int) -> None:
        data = val & MDIC_DATA_MASK
        reg = (val >> MDIC_REG_SHIFT) & 0x1F
        if (val >> MDIC_PHY_SHIFT) & 0x1F != 1:          # only PHY address 1 answers
            val = self.mac_reg[MDIC >> 2] | MDIC_ERROR
        elif val & MDIC_OP_READ:
            if not PHY_CAPS.get(reg, 0) & _PHY_R:
                val |= MDIC_ERROR
            else:
                val = (val ^ data) | self.phy_reg[reg]
        elif val & MDIC_OP_WRITE:
            if not PHY_CAPS.get(reg, 0) & _PHY_W:
                val |= MDIC_ERROR
            elif reg == MII_BMCR:
                # reset and restart-autonegotiation bits self-clear (set_phy_ctrl)
                self.phy_reg[MII_BMCR] = data & ~(0x3F | BMCR_RESET | BMCR_ANRESTART)
                if self.have_autoneg() and data & BMCR_ANRESTART:
                    self.restart_autoneg()
            else:
                self.phy_reg[reg] = data
        self.mac_reg[MDIC >> 2] = val | MDIC_READY
        if val & MDIC_INT_EN:
            set_ics(self, ICR_MDAC)

    # -- state for recordings ---------------------------------------------------------
    def state(self, r: Any) -> dict[str, Any]:
        """Registers, both rings with the RX descriptors, the interrupt state (API.md)."""
        g = lambda a: r.get(self, a, getattr(self, a))  # noqa: E731
        regs = {name.upper(): g(name) for name in
                ("ctrl", "status", "rctl", "tctl", "icr", "ims", "itr", "rdtr", "radv", "tadv")}

        def ring(bal: str, bah: str, ln: str, h: str, t: str, rx: bool) -> dict[str, Any]:
            base = (g(bah) << 32) | (g(bal) & ~0xF)
            count = g(ln) // 16
            out: dict[str, Any] = {"base": base, "count": count, "head": g(h), "tail": g(t)}
            if rx and 0 < count <= 4096:
                raw = r.ram(base, 16 * count)
                descs = []
                for k in range(count):
                    addr, length, _cs, status, errors, special = _RXDESC.unpack_from(raw, 16 * k)
                    descs.append({"addr": addr, "length": length, "status": status,
                                  "errors": errors, "special": special,
                                  "dd": bool(status & RXD_STAT_DD),
                                  "eop": bool(status & RXD_STAT_EOP)})
                out["descriptors"] = descs
            elif not rx and 0 < count <= 4096:
                raw = r.ram(base, 16 * count)
                descs = []
                for k in range(count):
                    addr, lower, upper = _TXDESC.unpack_from(raw, 16 * k)
                    descs.append({"addr": addr, "length": lower & 0xFFFF,
                                  "cmd": lower >> 24, "status": upper & 0xFF,
                                  "dd": bool(upper & TXD_STAT_DD)})
                out["descriptors"] = descs
            return out

        return {"model": "e1000", "mac": self.mac, "regs": regs,
                "rx": ring("rdbal", "rdbah", "rdlen", "rdh", "rdt", True),
                "tx": ring("tdbal", "tdbah", "tdlen", "tdh", "tdt", False),
                "interrupt": {"icr": g("icr"), "ims": g("ims"), "pending": g("icr") & g("ims"),
                              "intx_level": r.get(self, "irq_level", self.irq_level),
                              "mit_timer_on": g("mit_timer_on")},
                "stats": r.stats(self.stats)}

    def __repr__(self) -> str:
        return f"<E1000State {self.nc.name} {self.mac} devfn {self.devfn:#x}>"


def _describe(offset: int, value: int) -> str:
    """Golden text of an access: ``e1000-mmio[0x000c0 ICR] 0x80`` (normalize.py)."""
    off = offset & 0x1FFFF
    name = REG_NAMES.get(off)
    if name is None:
        name = f"STATS+0x{off - 0x4000:x}" if 0x4000 <= off < 0x4100 else "?"
    return f"e1000-mmio[0x{off:05x} {name}] 0x{value:x}"


# ---- MMIO entry points ---------------------------------------------------------------
@tracepoint("hw/net/e1000.c", show=("addr", "val"))
def e1000_mmio_write(s: E1000State, addr: int, val: int, size: int) -> None:
    """A 32-bit register write from the vCPU (e1000_mmio_write -> macreg_writeops)."""
    s.write_reg(addr & 0x1FFFC, val)


@tracepoint("hw/net/e1000.c", show=("addr",))
def e1000_mmio_read(s: E1000State, addr: int, size: int) -> int:
    """A 32-bit register read (e1000_mmio_read -> macreg_readops)."""
    return s.read_reg(addr & 0x1FFFC)


# ---- interrupts ---------------------------------------------------------------------
def _mit_update_delay(cur: int, value: int) -> int:
    """The smallest non-zero candidate delay (mit_update_delay)."""
    return value if value and (cur == 0 or value < cur) else cur


@tracepoint("hw/net/e1000.c", show=("val",))
def set_interrupt_cause(s: E1000State, val: int) -> None:
    """ICR = ICS = val; INTA# = (ICR & IMS) != 0, a rising edge held back while the
    mitigation timer runs (QEMU's partial model of ITR, RADV and TADV; SDM §13.4.18)."""
    s.icr = val
    pending = s.ims & val
    if not s.mit_irq_level and pending:
        if s.mit_timer_on:
            return                                   # inside the mitigation window
        if s.mitigation:
            delay = 0
            if s.mit_ide and pending & (ICR_TXQE | ICR_TXDW):
                delay = _mit_update_delay(delay, s.tadv * 4)
            if s.rdtr and pending & ICR_RXT0:
                delay = _mit_update_delay(delay, s.radv * 4)
            delay = _mit_update_delay(delay, s.itr)
            if delay < MIT_MIN_DELAY:
                delay = MIT_MIN_DELAY
            s.mit_timer_on = True
            loop = s.loop
            loop.timer_mod(s.mit_timer, loop.clock_ns + delay * 256)
            s.mit_ide = 0
    level = pending != 0
    s.mit_irq_level = level
    if level != s.irq_level:        # pci_irq_handler: nothing to do without a change
        s.pci_set_irq(level)


@tracepoint("hw/net/e1000.c", show=("val",))
def set_ics(s: E1000State, val: int) -> None:
    """Add cause bits (ICS write, or an event inside the NIC)."""
    set_interrupt_cause(s, val | s.icr)


def mac_icr_read(s: E1000State) -> int:
    """ICR reads clear every cause, which lowers INTA# (SDM §13.4.17)."""
    ret = s.icr
    set_interrupt_cause(s, 0)
    return ret


@tracepoint("hw/net/e1000.c")
def e1000_mit_timer(s: E1000State) -> None:
    """The mitigation window is over: raise the line now if causes are pending."""
    s.mit_timer_on = False
    set_interrupt_cause(s, s.icr)


@tracepoint("hw/net/e1000.c")
def e1000_autoneg_timer(s: E1000State) -> None:
    """Autonegotiation done: link up, LSC."""
    if not s.nc.link_down:
        s._link_up_regs()
        s.phy_reg[MII_ANLPAR] |= ANLPAR_ACK
        s.phy_reg[MII_BMSR] |= BMSR_AN_COMP
        trace.e1000x_link_negotiation_done()
        qemu_flush_queued_packets(s.nc)
        set_ics(s, ICR_LSC)


@tracepoint("hw/net/e1000.c")
def e1000_flush_queue_timer(s: E1000State) -> None:
    """One second after an RCTL write: deliver what waited (QEMU's workaround for guests
    that enable RX before their ring is ready)."""
    qemu_flush_queued_packets(s.nc)


def set_rx_control(s: E1000State, val: int) -> None:
    """RCTL: buffer size, descriptor threshold; frames wait 1 s of virtual time."""
    s.rctl = val
    s.rxbuf_size = e1000x_rxbufsize(val)
    s.rxbuf_min_shift = ((val // RCTL_RDMTS_QUAT) & 3) + 1
    loop = s.loop
    loop.timer_mod(s.flush_queue_timer, (loop.clock_ns // 1_000_000 + 1000) * 1_000_000)


def e1000x_rxbufsize(rctl: int) -> int:
    """RCTL.BSIZE with BSEX (SDM §13.4.22): 2048 unless another valid size is selected."""
    sz = (rctl >> 16) & 3
    if rctl & RCTL_BSEX:
        return {1: 16384, 2: 8192, 3: 4096}.get(sz, 2048)
    return {1: 1024, 2: 512, 3: 256}.get(sz, 2048)


def set_rdt(s: E1000State, val: int) -> None:
    """The driver gave buffers: deliver frames that waited (set_rdt)."""
    s.rdt = val & 0xFFFF
    if e1000_has_rxbufs(s, 1):
        qemu_flush_queued_packets(s.nc)


# ---- receive ------------------------------------------------------------------------
def e1000_has_rxbufs(s: E1000State, total_size: int) -> bool:
    """Enough free descriptors between RDH and RDT for ``total_size`` bytes."""
    rdh, rdt = s.rdh, s.rdt
    if total_size <= s.rxbuf_size:
        return rdh != rdt
    if rdh < rdt:
        bufs = rdt - rdh
    elif rdh > rdt:
        bufs = s.rdlen // 16 + rdt - rdh
    else:
        return False
    return total_size <= bufs * s.rxbuf_size


def e1000x_rx_ready(s: E1000State) -> bool:
    """Link up, RCTL.EN and PCI bus mastering (e1000x_rx_ready)."""
    link_up = s.status & STATUS_LU
    rx_enabled = s.rctl & RCTL_EN
    pci_master = s.config[4] & PCI_COMMAND_MASTER
    if link_up and rx_enabled and pci_master:
        return True
    trace.e1000x_rx_can_recv_disabled(int(bool(link_up)), int(bool(rx_enabled)),
                                      int(bool(pci_master)))
    return False


@tracepoint("hw/net/e1000.c")
def e1000_can_receive(nc: NetClientState) -> bool:
    """Whether a frame can be taken now; if not, it waits in the NetQueue."""
    s: E1000State = nc.opaque
    return (e1000x_rx_ready(s) and e1000_has_rxbufs(s, 1) and
            s.flush_queue_timer.expire_time < 0)


def _valid_addresses(m: list[int]) -> tuple[tuple[int, int], ...]:
    """The receive addresses with AV set, as (index, 48-bit value), in RA order."""
    base = RA >> 2
    return tuple((k, m[base + 2 * k] | (m[base + 2 * k + 1] & 0xFFFF) << 32) for k in range(16)
                 if m[base + 2 * k + 1] & RAH_AV)


def receive_filter(s: E1000State, buf: bytes, rctl: int) -> bool:
    """VLAN filter, then broadcast/multicast/promiscuous, the 16 exact addresses and the
    multicast hash (SDM §3.2.1; e1000x_rx_group_filter)."""
    vet = s.mac_reg[VET >> 2] & 0xFFFF
    proto = buf[12] << 8 | buf[13]
    is_vlan = proto == vet
    trace.e1000x_vlan_is_vlan_pkt(int(is_vlan), proto, vet)
    if is_vlan and rctl & RCTL_VFE:
        vid = (buf[14] << 8 | buf[15]) & 0xFFF
        if not (s.mac_reg[(VFTA >> 2) + (vid >> 5)] >> (vid & 31)) & 1:
            trace.e1000x_rx_flt_vlan_mismatch(vid)
            return False
        trace.e1000x_rx_flt_vlan_match(vid)
    dst = buf[:6]
    if dst == _BCAST:
        if rctl & RCTL_BAM:
            return True
    elif dst[0] & 1:
        if rctl & RCTL_MPE:
            return True
    elif rctl & RCTL_UPE:
        return True
    d = int.from_bytes(dst, "little")
    table = s.ra_table
    if table is None:
        table = s.ra_table = _valid_addresses(s.mac_reg)
    for k, addr in table:
        if d == addr:
            trace.e1000x_rx_flt_ucast_match(k, dst.hex(":"))
            return True
    trace.e1000x_rx_flt_ucast_mismatch(dst.hex(":"))
    m = s.mac_reg
    mo = (rctl >> RCTL_MO_SHIFT) & 3
    f = (((dst[5] << 8) | dst[4]) >> (4, 3, 2, 0)[mo]) & 0xFFF
    if (m[(MTA >> 2) + (f >> 5)] >> (f & 31)) & 1:
        return True
    trace.e1000x_rx_flt_inexact_mismatch(dst.hex(":"), mo, f >> 5, m[(MTA >> 2) + (f >> 5)])
    return False


def e1000_receiver_overrun(s: E1000State, size: int) -> None:
    """No descriptor for the frame: it is dropped, RNBC/MPC count it, RXO is raised."""
    trace.e1000_receiver_overrun(size, s.rdh, s.rdt)
    s._inc(RNBC)
    s._inc(MPC)
    s.stats["drop: receiver overrun (no RX descriptors)"] += 1
    set_ics(s, ICR_RXO)


@tracepoint("hw/net/e1000.c")
def e1000_receive(nc: NetClientState, buf: bytes) -> int:
    """A flat frame: e1000_receive_iov with one piece."""
    return e1000_receive_iov(nc, [buf])


@tracepoint("hw/net/e1000.c")
def e1000_receive_iov(nc: NetClientState, iov: list[bytes]) -> int:
    """Take a frame: filter it, write it into RX buffers at RDH, set DD/EOP, advance RDH,
    raise RXT0 (SDM §3.2).  0 = "queue it" (flush timer), -1 = dropped, else consumed."""
    s: E1000State = nc.opaque
    buf = iov[0] if len(iov) == 1 else b"".join(iov)
    status, rctl = s.status, s.rctl
    if not status & STATUS_LU:
        trace.e1000x_rx_link_down(status)
        s.stats["drop: link down"] += 1
        return -1
    if not rctl & RCTL_EN:
        trace.e1000x_rx_disabled(rctl)
        s.stats["drop: receive disabled (RCTL.EN)"] += 1
        return -1
    if s.flush_queue_timer.expire_time >= 0:
        return 0
    size = len(buf)
    if size < ETH_ZLEN:                        # pad runts to 60 bytes before DMA
        buf = bytes(buf) + bytes(ETH_ZLEN - size)
        size = ETH_ZLEN
    if (size > MAX_ETH_LPE_SIZE or (size > MAX_ETH_VLAN_SIZE and not rctl & RCTL_LPE)) \
            and not rctl & RCTL_SBP:
        s._inc(ROC)
        trace.e1000x_rx_oversized(size)
        s.stats["drop: oversized"] += 1
        return size
    if not receive_filter(s, buf, rctl):
        s.stats["drop: receive filter"] += 1
        return size
    vlan_special = 0
    vlan_status = 0
    if s.ctrl & CTRL_VME:
        vet = s.mac_reg[VET >> 2] & 0xFFFF
        proto = buf[12] << 8 | buf[13]
        is_vlan = proto == vet
        trace.e1000x_vlan_is_vlan_pkt(int(is_vlan), proto, vet)
        if is_vlan:                            # strip the tag into the descriptor
            vlan_special = buf[14] << 8 | buf[15]
            buf = buf[:12] + buf[16:]
            vlan_status = RXD_STAT_VP
            size -= 4
    total_size = size + (0 if rctl & RCTL_SECRC else 4)
    if not e1000_has_rxbufs(s, total_size):
        e1000_receiver_overrun(s, total_size)
        return -1
    rxbuf_size = s.rxbuf_size
    rdlen = s.rdlen
    base = (s.rdbah << 32) | (s.rdbal & ~0xF)
    rdh = rdh_start = s.rdh
    mv = memoryview(buf) if total_size > rxbuf_size else None
    desc_offset = 0
    unpack, pack = _RXDESC.unpack, _RXDESC.pack
    while True:
        daddr = base + 16 * rdh
        try:
            raw = s.dma_read(daddr, 16)
        except MemTxError:
            s.stats["dma error: rx descriptor"] += 1
            raw = bytes(16)
        addr, length, csum, dstatus, errors, _special = unpack(raw)
        dstatus &= ~RXD_STAT_DD
        if addr:
            desc_size = total_size - desc_offset
            if desc_size > rxbuf_size:
                desc_size = rxbuf_size
            if desc_offset < size:
                copy = size - desc_offset
                if copy > rxbuf_size:
                    copy = rxbuf_size
                try:
                    s.dma_write(addr, buf if mv is None else mv[desc_offset:desc_offset + copy])
                    s.stats["bytes copied to guest"] += copy
                except MemTxError:
                    s.stats["dma error: rx buffer"] += 1
                    s.stats["drop: RX buffer outside guest RAM"] += 1
            desc_offset += desc_size
            length = desc_size
            if desc_offset >= total_size:
                dstatus |= RXD_STAT_EOP | RXD_STAT_IXSM
            else:
                dstatus &= ~RXD_STAT_EOP
        else:                                   # null buffer address: skip the descriptor
            s.stats["null RX descriptors skipped"] += 1
        try:
            s.dma_write(daddr, pack(addr, length, csum, dstatus | vlan_status | RXD_STAT_DD,
                                    errors, vlan_special))
        except MemTxError:
            s.stats["dma error: rx descriptor"] += 1
        rdh += 1
        if rdh * 16 >= rdlen:
            rdh = 0
        s.rdh = rdh
        if rdh == rdh_start or rdh_start >= rdlen // 16:
            e1000_receiver_overrun(s, total_size)   # wrapped: the ring was bogus
            return -1
        if desc_offset >= total_size:
            break
    # statistics (e1000x_update_rx_total_stats), inlined: this runs for every frame
    m = s.mac_reg
    k = _PRC_INDEX[total_size] if total_size < 1024 else _PRC1522_I
    if k >= 0 and m[k] < 0xFFFFFFFF:
        m[k] += 1
    if m[_TPR_I] < 0xFFFFFFFF:
        m[_TPR_I] += 1
    if m[_GPRC_I] < 0xFFFFFFFF:
        m[_GPRC_I] += 1
    octets = size + 4
    for i in (_TORL_I, _GORCL_I):
        v = m[i] + octets
        if v <= 0xFFFFFFFF:
            m[i] = v
        else:
            s._grow8(i << 2, octets)
    if buf[0] & 1:
        s._inc(BPRC if buf[:6] == _BCAST else MPRC)
    cause = ICR_RXT0
    rdt = s.rdt
    if rdt < rdh:
        rdt += rdlen // 16
    if (rdt - rdh) * 16 <= rdlen >> s.rxbuf_min_shift:
        cause |= ICR_RXDMT0
    set_ics(s, cause)
    return size


# ---- transmit -----------------------------------------------------------------------
def _ld_be(data: bytearray, off: int, n: int) -> int:
    """QEMU's lduw_be_p/ldl_be_p on tx.data: the guest's context descriptor picks the
    offset, so bytes past the gathered frame read as zero instead of raising."""
    return int.from_bytes(data[off:off + n].ljust(n, b"\0"), "big")


def _st_be(data: bytearray, off: int, n: int, val: int) -> None:
    """QEMU's stw_be_p/stl_be_p on tx.data: the value is truncated to n bytes, and bytes
    past the gathered frame land in the unsent rest of QEMU's 64 KiB buffer: dropped."""
    raw = (val & ((1 << 8 * n) - 1)).to_bytes(n, "big")
    end = min(off + n, len(data))
    if off < end:
        data[off:end] = raw[:end - off]


def _putsum(data: bytearray, n: int, sloc: int, css: int, cse: int) -> None:
    """Insert an Internet checksum of data[css..cse] at sloc (SDM §3.3.5 'checksum
    offloading'); a zero result is sent as 0xFFFF."""
    if cse and cse < n:
        n = cse + 1
    if sloc < n - 1:
        cs = internet_checksum(memoryview(data)[css:n]) or 0xFFFF
        data[sloc:sloc + 2] = cs.to_bytes(2, "big")


@tracepoint("hw/net/e1000.c", show=("size",))
def e1000_send_packet(s: E1000State, buf: bytes, size: int) -> None:
    """Hand a frame to the peer (the hub port or backend), or loop it back (PHY loopback)."""
    if s.phy_reg[MII_BMCR] & BMCR_LOOPBACK:
        nc = s.nc
        if e1000_can_receive(nc):
            e1000_receive_iov(nc, [buf])
        else:
            s.stats["drop: loopback frame while RX not ready"] += 1
    else:
        qemu_send_packet(s.nc, buf, size)
    if buf[0] & 1:
        s._inc(BPTC if buf[:6] == _BCAST else MPTC)
    s._size_stat(PTC64, size + 4)
    s.stats["tx frames"] += 1


@tracepoint("hw/net/e1000.c")
def xmit_seg(s: E1000State) -> None:
    """Send the gathered frame (or one TSO segment): fix up headers, checksums, VLAN tag."""
    data = s.tx_data
    size = len(data)
    if s.tx_cptse:
        hdr_len, mss, paylen, is_ip, is_tcp = s.tx_tso
        ipcss, _ipcso, _ipcse, tucss, tucso, _tucse = s.tx_tso_props
        frames = s.tx_tso_frames
        if is_ip:                               # IPv4 total length and identification
            _st_be(data, ipcss + 2, 2, size - ipcss)
            _st_be(data, ipcss + 4, 2, _ld_be(data, ipcss + 4, 2) + frames)
        else:                                   # IPv6 payload length
            _st_be(data, ipcss + 4, 2, size - ipcss)
        ln = (size - tucss) & 0xFFFF            # a uint16_t in QEMU
        if is_tcp:
            sofar = frames * mss
            _st_be(data, tucss + 4, 4, _ld_be(data, tucss + 4, 4) + sofar)
            if paylen - sofar > mss:            # PSH and FIN only on the last segment
                _st_be(data, tucss + 13, 1, _ld_be(data, tucss + 13, 1) & ~9)
            elif frames:
                s._inc(TSCTC)
        else:
            _st_be(data, tucss + 4, 2, ln)
        if s.tx_sum_needed & TXD_POPTS_TXSM:    # add the segment length to the pseudo-header
            ph = _ld_be(data, tucso, 2) + ln
            _st_be(data, tucso, 2, (ph >> 16) + (ph & 0xFFFF))
        s.tx_tso_frames = frames + 1
        props = s.tx_tso_props
    else:
        props = s.tx_props
    ipcss, ipcso, ipcse, tucss, tucso, tucse = props
    if s.tx_sum_needed & TXD_POPTS_TXSM:
        _putsum(data, size, tucso, tucss, tucse)
    if s.tx_sum_needed & TXD_POPTS_IXSM:
        _putsum(data, size, ipcso, ipcss, ipcse)
    if s.tx_vlan is not None:
        frame = bytes(data[:12]) + s.tx_vlan + bytes(data[12:])
    else:
        frame = bytes(data)
    e1000_send_packet(s, frame, len(frame))
    s._inc(TPT)
    s._grow8(TOTL, size + 4)
    s._inc(GPTC)
    s._grow8(GOTCL, size + 4)


@tracepoint("hw/net/e1000.c")
def process_tx_desc(s: E1000State, raw: bytes) -> None:
    """One TX descriptor: a context descriptor (offload parameters), a data descriptor or
    a legacy one (SDM §3.3); EOP sends the gathered frame."""
    addr, lower, upper = _TXDESC.unpack(raw)
    dtype = lower & (TXD_CMD_DEXT | TXD_DTYP_D)
    split_size = lower & 0xFFFF
    s.mit_ide |= lower & TXD_CMD_IDE
    if dtype == TXD_CMD_DEXT:                   # context descriptor
        ipcss, ipcso, ipcse, tucss, tucso, tucse, cmd_len, _sta, hdr_len, mss = \
            _CTXDESC.unpack(raw)
        props = (ipcss, ipcso, ipcse, tucss, tucso, tucse)
        if cmd_len & TXD_CMD_TSE:
            s.tx_tso_props = props
            s.tx_tso = (hdr_len, mss, cmd_len & 0xFFFFF, int(bool(cmd_len & TXD_CMD_IP)),
                        int(bool(cmd_len & TXD_CMD_TCP)))
            s.tx_tso_frames = 0
        else:
            s.tx_props = props
        return
    if dtype == TXD_CMD_DEXT | TXD_DTYP_D:      # data descriptor
        if not s.tx_data:
            s.tx_sum_needed = (upper >> 8) & 0xFF
        s.tx_cptse = bool(lower & TXD_CMD_TSE)
        split_size = lower & 0xFFFFF
    else:                                       # legacy descriptor
        s.tx_cptse = False
    if s.ctrl & CTRL_VME and lower & TXD_CMD_VLE and (s.tx_cptse or lower & TXD_CMD_EOP):
        vet = s.mac_reg[VET >> 2] & 0xFFFF
        s.tx_vlan = vet.to_bytes(2, "big") + (upper >> 16).to_bytes(2, "big")
    data = s.tx_data
    if s.tx_cptse:
        hdr_len, mss = s.tx_tso[0], s.tx_tso[1]
        msh = hdr_len + mss
        while split_size:
            if len(data) >= msh:
                break
            n = min(split_size, msh - len(data), 0x10000 - len(data))
            if n <= 0:
                break
            had = len(data)
            data += s._dma_read(addr, n, "tx buffer")
            s.stats["bytes copied from guest"] += n
            if had < hdr_len <= len(data):      # keep the untouched header for each segment
                s.tx_header = bytes(data[:hdr_len])
            addr += n
            split_size -= n
            if len(data) == msh:
                xmit_seg(s)
                data[:] = s.tx_header
    else:
        n = min(split_size, 0x10000 - len(data))
        if n:
            data += s._dma_read(addr, n, "tx buffer")
            s.stats["bytes copied from guest"] += n
        if n < split_size:
            s.stats["tx bytes beyond 64 KiB dropped"] += split_size - n
    if not lower & TXD_CMD_EOP:
        return
    if not (s.tx_cptse and len(data) < s.tx_tso[0]):
        if data:
            xmit_seg(s)
    data.clear()
    s.tx_tso_frames = 0
    s.tx_sum_needed = 0
    s.tx_vlan = None
    s.tx_cptse = False


def txdesc_writeback(s: E1000State, daddr: int, raw: bytes) -> int:
    """With RS (or RPS), write DD back into the descriptor; that is TXDW (SDM §3.3.3.2)."""
    _addr, lower, upper = _TXDESC.unpack(raw)
    if not lower & (TXD_CMD_RS | TXD_CMD_RPS):
        return 0
    upper = (upper | TXD_STAT_DD) & ~(TXD_STAT_EC | TXD_STAT_LC | TXD_STAT_TU)
    s._dma_write(daddr + 12, _U32.pack(upper), "tx descriptor")
    return ICR_TXDW


@tracepoint("hw/net/e1000.c")
def start_xmit(s: E1000State) -> None:
    """Send every descriptor from TDH up to TDT, synchronously in the TDT write; then
    TXQE (and TXDW when a descriptor asked for status)."""
    if not s.tctl & TCTL_EN:
        return
    if s.tx_busy:
        return
    s.tx_busy = True
    tdh_start = s.tdh
    cause = ICR_TXQE
    base = (s.tdbah << 32) | (s.tdbal & ~0xF)
    tdlen = s.tdlen
    try:
        while s.tdh != s.tdt:
            daddr = base + 16 * s.tdh
            raw = s._dma_read(daddr, 16, "tx descriptor")
            process_tx_desc(s, raw)
            cause |= txdesc_writeback(s, daddr, raw)
            tdh = s.tdh + 1
            if tdh * 16 >= tdlen:
                tdh = 0
            s.tdh = tdh
            if tdh == tdh_start or tdh_start >= tdlen // 16:
                s.stats["TDH wraparound (bogus TDT/TDLEN)"] += 1
                break
    finally:
        s.tx_busy = False
    set_ics(s, cause)


# ---- link -------------------------------------------------------------------------------
def e1000_set_link_status(nc: NetClientState) -> None:
    """``set_link``: link down clears STATUS.LU; up goes through autonegotiation; LSC."""
    s: E1000State = nc.opaque
    old = s.status
    if nc.link_down:
        s._link_down_regs()
    elif s.have_autoneg() and not s.phy_reg[MII_BMSR] & BMSR_AN_COMP:
        s.restart_autoneg()
    else:
        s._link_up_regs()
        qemu_flush_queued_packets(nc)
    if s.status != old:
        set_ics(s, ICR_LSC)


net_e1000_info = NetClientInfo(type="nic", receive=e1000_receive, receive_iov=e1000_receive_iov,
                               can_receive=e1000_can_receive,
                               link_status_changed=e1000_set_link_status)

__all__ = ["E1000State", "e1000_receive", "e1000_receive_iov", "e1000_can_receive",
           "start_xmit", "set_ics", "set_interrupt_cause", "e1000_mmio_read",
           "e1000_mmio_write", "REG_NAMES"]
