"""The local APIC and its window at 0xFEE00000, where MSI writes land (QEMU's hw/intc/apic.c).

QEMU's userspace APIC owns the ``apic-msi`` region: a 4-byte write whose offset is above
0xfff, or whose register index is 0, is an MSI message; anything else is an access to the
local APIC's registers (here EOI, TPR, TMR, ISR, IRR and the ID).  An MSI's address selects
the destination (bits 12-19) and its mode (bit 2: logical); its data holds the vector (bits
0-7), the delivery mode (8-10) and the trigger mode (15).  Intel SDM vol. 3 §10.11.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from ...system.memory import MemoryRegion
from ...trace import Stateful, Stats, tracepoint
from ...trace import events as trace
from ...trace.tracepoint import is_traced

APIC_DEFAULT_ADDRESS = 0xFEE00000
APIC_SPACE_SIZE = 0x100000
MSI_ADDR_DEST_ID_SHIFT = 12
MSI_ADDR_DEST_MODE_LOGICAL = 0x4
APIC_REG_EOI = 0xB0
APIC_REG_TPR = 0x80
APIC_REG_ID = 0x20
APIC_REG_LDR = 0xD0
APIC_REG_ISR = 0x100
APIC_REG_TMR = 0x180
APIC_REG_IRR = 0x200


class Delivered(NamedTuple):
    """An MSI message that reached the window (``vm.apic.delivered``)."""

    address: int
    data: int
    vector: int
    dest: int
    dest_mode: int
    delivery_mode: int
    trigger_mode: int
    time_ns: int


class APICCommonState(Stateful):
    """vCPU 0's local APIC: IRR, ISR and TMR as 256-bit masks."""

    _state_ = ("irr", "isr", "tmr", "tpr")

    def __init__(self, clock: Callable[[], int], in_kernel: bool = False) -> None:
        self.in_kernel = in_kernel     # KVM's in-kernel irqchip: no userspace trace events
        self.tr: Any = NULL_TRACE if in_kernel else trace
        self.irr = 0
        self.isr = 0
        self.tmr = 0
        self.tpr = 0
        self.apic_id = 0
        self.log_dest = 1            # Linux's flat logical mode: CPU 0 is bit 0
        self.clock = clock
        self.delivered: list[Delivered] = []
        self.stats = Stats()
        self.cpu_interrupt: Callable[[], None] = lambda: None   # kicks the vCPU
        self.eoi_broadcast: Callable[[int], None] = lambda vector: None  # to the I/O APIC
        if in_kernel:
            from ...accel.kvm import kvm_apic_mem_write
            self.region = MemoryRegion("kvm-apic-msi", APIC_SPACE_SIZE, self.apic_mem_read,
                                       lambda o, v, s: kvm_apic_mem_write(self, o, v, s),
                                       self._describe, owner=self)
        else:
            self.region = MemoryRegion("apic-msi", APIC_SPACE_SIZE, self.apic_mem_read,
                                       self.apic_mem_write, self._describe, owner=self)

    # -- the window -------------------------------------------------------------------
    def _describe(self, offset: int, value: int) -> str | None:
        if is_msi(offset):
            return (f"MSI write to {self.region.name} addr=0x{APIC_DEFAULT_ADDRESS + offset:x} "
                    f"data=0x{value:x}")
        return None   # register accesses appear as apic_mem_readl/writel

    def apic_mem_read(self, offset: int, size: int) -> int:
        reg = offset & 0xFF0
        if reg == APIC_REG_ID:
            val = self.apic_id << 24
        elif reg == APIC_REG_TPR:
            val = self.tpr
        elif reg == APIC_REG_LDR:
            val = self.log_dest << 24
        elif APIC_REG_ISR <= reg < APIC_REG_ISR + 0x80:
            val = (self.isr >> (32 * ((reg - APIC_REG_ISR) >> 4))) & 0xFFFFFFFF
        elif APIC_REG_TMR <= reg < APIC_REG_TMR + 0x80:
            val = (self.tmr >> (32 * ((reg - APIC_REG_TMR) >> 4))) & 0xFFFFFFFF
        elif APIC_REG_IRR <= reg < APIC_REG_IRR + 0x80:
            val = (self.irr >> (32 * ((reg - APIC_REG_IRR) >> 4))) & 0xFFFFFFFF
        else:
            val = 0
        self.tr.apic_mem_readl(offset, val)
        return val

    @tracepoint("hw/intc/apic.c", show=("offset", "value"))
    def apic_mem_write(self, offset: int, value: int, size: int) -> None:
        """A write to the window: an MSI message, or a local APIC register."""
        if size < 4:
            return
        if is_msi(offset):
            apic_send_msi(self, APIC_DEFAULT_ADDRESS + offset, value)
            return
        self.register_write(offset, value)

    def register_write(self, offset: int, value: int) -> None:
        reg = offset & 0xFF0
        if reg == APIC_REG_EOI:
            if is_traced(self.tr.apic_mem_writel):   # the golden's note, made only if seen
                v = self.isr.bit_length() - 1
                self.tr.apic_mem_writel(offset, value, f"  (EOI, highest in service: vector {v})"
                                        if v >= 0 else "  (EOI, none in service)")
            apic_eoi(self)
            return
        self.tr.apic_mem_writel(offset, value, "")
        if reg == APIC_REG_TPR:
            self.tpr = value & 0xFF
        elif reg == APIC_REG_LDR:
            self.log_dest = (value >> 24) & 0xFF

    # -- interrupts -------------------------------------------------------------------
    def _deliverable(self) -> int:
        """The highest requested vector whose priority class beats the one in service and
        the TPR, or -1 (SDM vol. 3 §10.8.3)."""
        v = self.irr.bit_length() - 1
        if v < 0:
            return -1
        in_service = self.isr.bit_length() - 1
        if in_service >= 0 and v >> 4 <= in_service >> 4:
            return -1
        if v >> 4 <= self.tpr >> 4:
            return -1
        return v

    def has_interrupt(self) -> bool:
        return self._deliverable() >= 0

    def get_interrupt(self) -> int:
        """apic_get_interrupt: move the deliverable vector from IRR to ISR."""
        v = self._deliverable()
        if v >= 0:
            self.irr &= ~(1 << v)
            self.isr |= 1 << v
            self.stats["interrupts taken"] += 1
        return v

    def state(self, r: Any) -> dict[str, Any]:
        bits = lambda m: [v for v in range(256) if m >> v & 1]  # noqa: E731
        return {"irr": bits(r.get(self, "irr", 0)), "isr": bits(r.get(self, "isr", 0)),
                "tmr": bits(r.get(self, "tmr", 0)), "stats": r.stats(self.stats)}


class _NullTrace:
    """The trace events of a component that runs in the host kernel (KVM): none."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _nothing


def _nothing(*args: Any) -> None:
    return None


NULL_TRACE = _NullTrace()


def is_msi(offset: int) -> bool:
    """apic_mem_write's test: above the register page, or register index 0."""
    return offset > 0xFFF or (offset >> 4) & 0xFF == 0


def msi_decode(addr: int, data: int) -> tuple[int, int, int, int, int]:
    """(dest, dest_mode, delivery_mode, vector, trigger_mode) of an x86 MSI (SDM §10.11)."""
    return ((addr >> MSI_ADDR_DEST_ID_SHIFT) & 0xFF,
            1 if addr & MSI_ADDR_DEST_MODE_LOGICAL else 0,
            (data >> 8) & 0x7, data & 0xFF, (data >> 15) & 1)


def record_delivery(s: APICCommonState, addr: int, data: int) -> tuple[int, int, int, int, int]:
    d = msi_decode(addr, data)
    dest, dest_mode, delivery_mode, vector, trigger_mode = d
    s.delivered.append(Delivered(addr, data, vector, dest, dest_mode, delivery_mode,
                                 trigger_mode, s.clock()))
    return d


@tracepoint("hw/intc/apic.c", show=("addr", "data"))
def apic_send_msi(s: APICCommonState, addr: int, data: int) -> None:
    """Decode an MSI message and deliver its vector."""
    apic_deliver_irq(s, *record_delivery(s, addr, data))


@tracepoint("hw/intc/apic.c", show=("vector",))
def apic_deliver_irq(s: APICCommonState, dest: int, dest_mode: int, delivery_mode: int,
                     vector: int, trigger_mode: int) -> None:
    """Fixed or lowest-priority delivery to the CPUs the destination names (one here)."""
    s.tr.apic_deliver_irq(dest, dest_mode, delivery_mode, vector, trigger_mode)
    apic_accept(s, dest, dest_mode, delivery_mode, vector, trigger_mode)


def apic_accept(s: APICCommonState, dest: int, dest_mode: int, delivery_mode: int,
                vector: int, trigger_mode: int) -> None:
    """Does the message name this CPU, with a mode we model?  Then request the vector."""
    hit = (s.log_dest & dest) if dest_mode else (dest == s.apic_id or dest == 0xFF)
    if not hit:
        s.stats["drop: MSI for another CPU"] += 1
        return
    if delivery_mode not in (0, 1) or vector < 16:
        s.stats[f"drop: unsupported delivery mode {delivery_mode} / vector {vector}"] += 1
        return
    apic_set_irq(s, vector, trigger_mode)


def apic_set_irq(s: APICCommonState, vector: int, trigger_mode: int) -> None:
    s.irr |= 1 << vector
    if trigger_mode:
        s.tmr |= 1 << vector
    else:
        s.tmr &= ~(1 << vector)
    s.stats["interrupts requested"] += 1
    s.cpu_interrupt()


def apic_eoi(s: APICCommonState) -> None:
    """End of interrupt: retire the highest vector in service; level ones go to the I/O APIC."""
    v = s.isr.bit_length() - 1
    if v < 0:
        return
    s.isr &= ~(1 << v)
    if s.tmr >> v & 1:
        s.eoi_broadcast(v)
    if s.irr:
        s.cpu_interrupt()
