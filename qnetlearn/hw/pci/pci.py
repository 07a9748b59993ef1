"""PCI bus 0, configuration space, BARs, INTx (QEMU's hw/pci/pci.c).

Each function has a 256-byte configuration space with a write mask (read-only bits stay),
a capability list, and BARs whose size a driver finds by writing all ones and reading back.
The command register's Memory Space bit maps the BARs into the address space; its Bus
Master bit gates the device's DMA (``bus_master_as``), as on real hardware.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable

from ...system.memory import AddressSpace, MemoryRegion, MemTxError
from ...trace import Stateful, Stats
from ...standard_headers.pci_regs import (
    PCI_BASE_ADDRESS_0, PCI_CAPABILITY_LIST, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE,
    PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PCI_INTERRUPT_LINE,
    PCI_INTERRUPT_PIN, PCI_STATUS, PCI_STATUS_CAP_LIST)

if TYPE_CHECKING:  # pragma: no cover
    from ...system.main_loop import MainLoop

PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_CLASS_DEVICE = 0x0A
PCI_SUBSYSTEM_VENDOR_ID = 0x2C

PCI_STATUS_INTERRUPT = 0x08

PCI_BASE_ADDRESS_SPACE_IO = 0x1
PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4
PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8


class PCIIORegion:
    """One BAR: its size, type bits, the region it maps, and where it is mapped now."""

    def __init__(self, size: int, type_: int, region: MemoryRegion) -> None:
        self.size = size
        self.type = type_
        self.region = region
        self.addr: int | None = None


class PCIDevice(Stateful):
    """A PCI function on bus 0; device models derive from it."""

    _state_ = ("irq_level", "config")
    vendor_id = 0xFFFF
    device_id = 0xFFFF
    class_id = 0x0000
    revision = 0
    subsystem_vendor_id = 0
    subsystem_id = 0
    interrupt_pin = 0      # 1 = INTA#
    msix: Any = None       # the MSIX state, once msix_init_exclusive_bar ran

    def __init__(self, name: str, dev_id: str | None = None) -> None:
        self.name = name           # type name, e.g. "virtio-net-pci"
        self.id = dev_id           # the -device id, if any
        self.devfn = -1
        self.bus: PCIBus | None = None
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        self.bars: dict[int, PCIIORegion] = {}
        self.irq_level = 0
        self.stats = Stats()
        self.broken = False
        self.broken_reason = ""
        self.dma_ram: Any = None    # guest RAM while Bus Master is enabled (bus_master_as)
        c = self.config
        struct.pack_into("<HH", c, 0, self.vendor_id, self.device_id)
        c[PCI_REVISION_ID] = self.revision
        struct.pack_into("<H", c, PCI_CLASS_DEVICE, self.class_id)
        struct.pack_into("<HH", c, PCI_SUBSYSTEM_VENDOR_ID, self.subsystem_vendor_id,
                         self.subsystem_id)
        c[PCI_INTERRUPT_PIN] = self.interrupt_pin
        struct.pack_into("<H", self.wmask, PCI_COMMAND,
                         PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                         PCI_COMMAND_INTX_DISABLE)
        self.wmask[PCI_INTERRUPT_LINE] = 0xFF
        self._next_cap = 0x40

    # -- set-up by the device model ------------------------------------------------------
    def pci_register_bar(self, num: int, type_: int, region: MemoryRegion) -> None:
        """Declare BAR ``num`` (a power-of-two ``region.size``) with type bits ``type_``."""
        size = region.size
        assert size & (size - 1) == 0
        self.bars[num] = PCIIORegion(size, type_, region)
        off = PCI_BASE_ADDRESS_0 + 4 * num
        mask = ~(size - 1) & 0xFFFFFFFF
        if type_ & PCI_BASE_ADDRESS_SPACE_IO:
            mask &= 0xFFFFFFFC
        else:
            mask &= 0xFFFFFFF0
        struct.pack_into("<I", self.config, off, type_)
        struct.pack_into("<I", self.wmask, off, mask)
        if type_ & PCI_BASE_ADDRESS_MEM_TYPE_64:
            struct.pack_into("<I", self.wmask, off + 4, 0xFFFFFFFF)

    def pci_add_capability(self, cap_id: int, size: int) -> int:
        """Append a capability to the list; returns its offset in config space."""
        off = self._next_cap
        self._next_cap = (off + size + 3) & ~3
        c = self.config
        c[off] = cap_id
        c[off + 1] = c[PCI_CAPABILITY_LIST]   # new capability goes first, as QEMU does
        c[PCI_CAPABILITY_LIST] = off
        struct.pack_into("<H", c, PCI_STATUS, struct.unpack_from("<H", c, PCI_STATUS)[0] |
                         PCI_STATUS_CAP_LIST)
        return off

    # -- config space accesses --------------------------------------------------------
    def config_read(self, addr: int, size: int) -> int:
        return int.from_bytes(self.config[addr:addr + size], "little")

    def config_write(self, addr: int, val: int, size: int) -> None:
        """pci_default_write_config: honour the write mask, then react to BARs and COMMAND."""
        old_cmd = self.command
        msix = self.msix
        old_msix = msix.control if msix is not None else 0
        for i in range(size):
            a = addr + i
            if a >= 256:
                break
            b = (val >> (8 * i)) & 0xFF
            m = self.wmask[a]
            self.config[a] = (self.config[a] & ~m) | (b & m)
        self._note("config")
        if ranges_overlap(addr, size, PCI_BASE_ADDRESS_0, 24) or \
                ranges_overlap(addr, size, PCI_COMMAND, 2):
            self.pci_update_mappings()
        if msix is not None and ranges_overlap(addr, size, msix.cap + 2, 2):
            msix.write_config(old_msix)
        if self.command != old_cmd:
            self.stats["command writes"] += 1
            master = self.command & PCI_COMMAND_MASTER and self.bus is not None
            self.dma_ram = self.bus.address_space.ram if master else None  # type: ignore[union-attr]
            self.command_changed()
            if self.command & PCI_COMMAND_INTX_DISABLE:
                self._set_irq_line(0)
            else:
                self._set_irq_line(self.irq_level)

    def command_changed(self) -> None:
        """Models react to Memory Space / Bus Master changes here."""

    @property
    def command(self) -> int:
        return struct.unpack_from("<H", self.config, PCI_COMMAND)[0]

    @property
    def bus_master(self) -> bool:
        return bool(self.command & PCI_COMMAND_MASTER)

    def bar_address(self, num: int) -> int | None:
        bar = self.bars.get(num)
        if bar is None:
            return None
        off = PCI_BASE_ADDRESS_0 + 4 * num
        lo = struct.unpack_from("<I", self.config, off)[0]
        if bar.type & PCI_BASE_ADDRESS_SPACE_IO:
            return lo & ~0x3
        addr = lo & ~0xF
        if bar.type & PCI_BASE_ADDRESS_MEM_TYPE_64:
            addr |= struct.unpack_from("<I", self.config, off + 4)[0] << 32
        return addr

    def pci_update_mappings(self) -> None:
        """Map each memory BAR where its register points while Memory Space is enabled."""
        if self.bus is None:
            return
        as_ = self.bus.address_space
        for num, bar in self.bars.items():
            if bar.type & PCI_BASE_ADDRESS_SPACE_IO:
                continue   # no port I/O space modelled: legacy virtio I/O BARs stay unmapped
            addr = self.bar_address(num)
            valid = (self.command & PCI_COMMAND_MEMORY) and addr and \
                addr + bar.size <= 1 << 64 and addr >= as_.ram.size and \
                (addr & ~(bar.size - 1)) == addr
            new = addr if valid else None
            if new == bar.addr:
                continue
            if bar.addr is not None:
                as_.unmap(bar.region)
            bar.addr = new
            if new is not None:
                as_.map(new, bar.region)

    # -- interrupts and DMA -----------------------------------------------------------
    def pci_set_irq(self, level: int) -> None:
        """Drive INTx# (level triggered) unless Interrupt Disable is set."""
        level = 1 if level else 0
        self.irq_level = level
        status = struct.unpack_from("<H", self.config, PCI_STATUS)[0]
        status = (status | PCI_STATUS_INTERRUPT) if level else (status & ~PCI_STATUS_INTERRUPT)
        struct.pack_into("<H", self.config, PCI_STATUS, status)
        self._note("config")
        if not self.command & PCI_COMMAND_INTX_DISABLE:
            self._set_irq_line(level)

    def _set_irq_line(self, level: int) -> None:
        if self.bus is not None and self.interrupt_pin:
            self.bus.set_intx(self, level)

    def dma_read(self, addr: int, n: int) -> bytes:
        """Read guest memory as bus master; MemTxError when mastering is off or outside RAM."""
        ram = self.dma_ram
        if ram is None:
            raise MemTxError(addr, n)
        return ram.read(addr, n)

    def dma_write(self, addr: int, data: bytes) -> None:
        ram = self.dma_ram
        if ram is None:
            raise MemTxError(addr, len(data))
        ram.write(addr, data)

    @property
    def bus_master_as(self) -> AddressSpace:
        return self.bus.address_space  # type: ignore[union-attr]

    @property
    def slot(self) -> int:
        return self.devfn >> 3

    def reset(self) -> None:
        """Device reset from the machine; models extend it."""

    def state(self, r: Any) -> dict[str, Any]:
        """The state a recording shows for this device (see ``Recorder.state``)."""
        return {"stats": r.stats(self.stats)}


def ranges_overlap(a: int, alen: int, b: int, blen: int) -> bool:
    return a < b + blen and b < a + alen


class PCIBus:
    """Bus 0: up to 32 slots; INTx routed through PIIX3's PIRQ links to I/O APIC pins."""

    #: the PIRQ A..D link -> GSI routing the firmware programs on QEMU's pc machine
    PIRQ_TO_GSI = (10, 10, 11, 11)

    def __init__(self, address_space: AddressSpace, loop: "MainLoop") -> None:
        self.address_space = address_space
        self.loop = loop
        self.devices: dict[int, PCIDevice] = {}
        self.set_gsi: Callable[[int, int], None] | None = None   # the I/O APIC's input
        self._levels: dict[int, set[int]] = {}

    def register(self, dev: PCIDevice, slot: int | None = None, function: int = 0) -> None:
        if slot is None:
            slot = next((s for s in range(32) if s * 8 not in self.devices), None)
            if slot is None:
                raise ValueError("PCI: no slot available, all in use")
        devfn = slot * 8 + function
        if devfn in self.devices:
            raise ValueError(f"PCI slot {slot} function {function} is in use")
        dev.devfn = devfn
        dev.bus = self
        self.devices[devfn] = dev

    def gsi_of(self, dev: PCIDevice) -> int:
        """pc machine: the slot's INTx# goes to PIRQ ((slot + pin - 1) & 3)."""
        pirq = (dev.slot + dev.interrupt_pin - 1) & 3
        return self.PIRQ_TO_GSI[pirq]

    def set_intx(self, dev: PCIDevice, level: int) -> None:
        """Wire-OR of every function on the same GSI, then the I/O APIC pin."""
        gsi = self.gsi_of(dev)
        dev.config[PCI_INTERRUPT_LINE] = dev.config[PCI_INTERRUPT_LINE] or gsi
        raised = self._levels.setdefault(gsi, set())
        before = bool(raised)
        (raised.add if level else raised.discard)(dev.devfn)
        if bool(raised) != before and self.set_gsi is not None:
            self.set_gsi(gsi, int(bool(raised)))

    def irq_level(self, gsi: int) -> int:
        return int(bool(self._levels.get(gsi)))

    def config_read(self, devfn: int, offset: int, size: int) -> int:
        dev = self.devices.get(devfn)
        if dev is None or offset < 0 or offset + size > 256:
            return (1 << (8 * size)) - 1    # master abort: all ones (vendor 0xffff)
        return dev.config_read(offset, size)

    def config_write(self, devfn: int, offset: int, size: int, value: int) -> None:
        dev = self.devices.get(devfn)
        if dev is None or offset < 0 or offset + size > 256:
            return
        dev.config_write(offset, value, size)
