"""The I/O APIC: INTx lines in, APIC messages out (QEMU's userspace hw/intc/ioapic.c).

Each of the 24 pins has a 64-bit redirection entry (vector, delivery mode, destination
mode, trigger mode, mask, destination).  A level-triggered pin that goes high while its
*remote IRR* is clear is "serviced": remote IRR is set and the entry is sent to the local
APIC as an MSI-format write (data bit 15 = level), as QEMU's ioapic_service does.  The local
APIC's EOI for that vector is broadcast back and clears remote IRR; if the line is still
high, the pin is serviced again.  Intel 82093AA datasheet §3.2.4.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...system.memory import MemoryRegion, address_space_stl_le
from ...trace import Stateful, Stats
from ...trace import events as trace

if TYPE_CHECKING:  # pragma: no cover
    from ...system.main_loop import MainLoop
    from ...system.memory import AddressSpace

IOAPIC_BASE = 0xFEC00000
IOAPIC_NUM_PINS = 24
IOAPIC_REG_ID = 0x00
IOAPIC_REG_VER = 0x01
IOAPIC_REG_REDTBL_BASE = 0x10
IOAPIC_LVT_MASKED = 1 << 16
IOAPIC_LVT_TRIGGER_MODE = 1 << 15
IOAPIC_LVT_REMOTE_IRR = 1 << 14
IOAPIC_LVT_DEST_MODE = 1 << 11


class IOAPICCommonState(Stateful):
    _state_ = ("irr", "ioredtbl")

    def __init__(self, address_space: "AddressSpace", loop: "MainLoop",
                 in_kernel: Any = None) -> None:
        """``in_kernel``: KVM's in-kernel LAPIC to deliver to directly, or None for QEMU's
        userspace I/O APIC, which sends its messages as MSI writes to the APIC window."""
        from .apic import NULL_TRACE
        self.in_kernel = in_kernel
        self.tr: Any = NULL_TRACE if in_kernel is not None else trace
        self.as_ = address_space
        self.loop = loop
        self.irr = 0
        self.ioregsel = 0
        self.ioredtbl = (IOAPIC_LVT_MASKED,) * IOAPIC_NUM_PINS
        self.stats = Stats()
        self.region = MemoryRegion("ioapic", 0x1000, self._read, self._write,
                                   lambda o, v: f"ioapic[0x{o:x}] 0x{v:x}", owner=self)
        address_space.map(IOAPIC_BASE, self.region)

    def _set_entry(self, pin: int, value: int) -> None:
        t = list(self.ioredtbl)
        t[pin] = value
        self.ioredtbl = tuple(t)

    # -- registers (IOREGSEL at 0x00, IOWIN at 0x10) ---------------------------------
    def _read(self, offset: int, size: int) -> int:
        if offset == 0x00:
            return self.ioregsel
        if offset != 0x10:
            return 0
        sel = self.ioregsel
        if sel == IOAPIC_REG_ID:
            return 0
        if sel == IOAPIC_REG_VER:
            return 0x11 | (IOAPIC_NUM_PINS - 1) << 16
        pin, hi = divmod(sel - IOAPIC_REG_REDTBL_BASE, 2)
        if 0 <= pin < IOAPIC_NUM_PINS:
            return (self.ioredtbl[pin] >> (32 * hi)) & 0xFFFFFFFF
        return 0

    def _write(self, offset: int, value: int, size: int) -> None:
        if offset == 0x00:
            self.ioregsel = value & 0xFF
            return
        if offset != 0x10:
            return
        pin, hi = divmod(self.ioregsel - IOAPIC_REG_REDTBL_BASE, 2)
        if not 0 <= pin < IOAPIC_NUM_PINS:
            return
        old = self.ioredtbl[pin]
        if hi:
            new = (old & 0xFFFFFFFF) | (value & 0xFFFFFFFF) << 32
        else:   # remote IRR (bit 14) and delivery status (12) are read-only
            ro = IOAPIC_LVT_REMOTE_IRR | 1 << 12
            new = (old & ~0xFFFFFFFF) | (value & 0xFFFFFFFF & ~ro) | (old & ro)
        self._set_entry(pin, new)
        self.ioapic_service()

    # -- pins -------------------------------------------------------------------------
    def set_irq(self, pin: int, level: int) -> None:
        """ioapic_set_irq: a GSI changed level (PCI INTx# are level triggered)."""
        self.tr.ioapic_set_irq(pin, level)
        self.stats[f"pin {pin} level {level}"] += 1
        mask = 1 << pin
        entry = self.ioredtbl[pin]
        if entry & IOAPIC_LVT_TRIGGER_MODE:
            if level:
                self.irr |= mask
                if not entry & IOAPIC_LVT_REMOTE_IRR:
                    self.ioapic_service()
            else:
                self.irr &= ~mask
        elif level:
            self.irr |= mask
            self.ioapic_service()

    def ioapic_service(self) -> None:
        """Send each pending, unmasked pin (level pins only while remote IRR is clear)."""
        for pin in range(IOAPIC_NUM_PINS):
            mask = 1 << pin
            if not self.irr & mask:
                continue
            entry = self.ioredtbl[pin]
            if entry & IOAPIC_LVT_MASKED:
                continue
            level = bool(entry & IOAPIC_LVT_TRIGGER_MODE)
            if level:
                if entry & IOAPIC_LVT_REMOTE_IRR:
                    continue
                self._set_entry(pin, entry | IOAPIC_LVT_REMOTE_IRR)
                self.tr.ioapic_set_remote_irr(pin)
            else:
                self.irr &= ~mask
            vector = entry & 0xFF
            delivery = (entry >> 8) & 7
            dest = (entry >> 56) & 0xFF
            addr = 0xFEE00000 | dest << 12 | (4 if entry & IOAPIC_LVT_DEST_MODE else 0)
            data = vector | delivery << 8 | (0x8000 if level else 0)
            self.stats["messages sent"] += 1
            if self.in_kernel is not None:
                from ...accel.kvm import kvm_ioapic_deliver
                kvm_ioapic_deliver(self.in_kernel, addr, data)
            else:
                address_space_stl_le(self.as_, addr, data)

    def eoi_broadcast(self, vector: int) -> None:
        """ioapic_eoi_broadcast: the local APIC retired a level-triggered vector."""
        self.tr.ioapic_eoi_broadcast(vector)
        for pin in range(IOAPIC_NUM_PINS):
            entry = self.ioredtbl[pin]
            if (entry & 0xFF) != vector or not entry & IOAPIC_LVT_REMOTE_IRR:
                continue
            self._set_entry(pin, entry & ~IOAPIC_LVT_REMOTE_IRR)
            self.tr.ioapic_clear_remote_irr(pin, vector)
            if self.irr & (1 << pin) and not entry & IOAPIC_LVT_MASKED:
                self.ioapic_service()

    def state(self, r: Any) -> dict[str, Any]:
        tbl = r.get(self, "ioredtbl", self.ioredtbl)
        irr = r.get(self, "irr", 0)
        pins = {}
        for pin, e in enumerate(tbl):
            if not e & IOAPIC_LVT_MASKED or irr >> pin & 1:
                pins[pin] = {"vector": e & 0xFF, "masked": bool(e & IOAPIC_LVT_MASKED),
                             "level": bool(e & IOAPIC_LVT_TRIGGER_MODE),
                             "remote_irr": bool(e & IOAPIC_LVT_REMOTE_IRR),
                             "irr": bool(irr >> pin & 1), "dest": (e >> 56) & 0xFF}
        return {"pins": pins}
