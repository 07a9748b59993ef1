"""KVM with the in-kernel irqchip, as QEMU runs the seed's ``-machine ...,accel=kvm``.

Under KVM the local APIC and the I/O APIC live in the host kernel.  A device's MSI still
starts as QEMU's ``msi_send_message`` -> ``address_space_stl_le``, but the 4-byte write
lands in the ``kvm-apic-msi`` region, whose handler hands the message to the kernel with
``kvm_send_msi`` (QEMU's hw/i386/kvm/apic.c; the KVM_SIGNAL_MSI ioctl).  The kernel's
``kvm_set_msi`` decodes it and sets the vector in the LAPIC (Linux arch/x86/kvm/irq_comm.c,
lapic.c).  INTx goes through ``kvm_set_irq`` to the kernel's I/O APIC.  The guest's own LAPIC
accesses (EOI) are handled in the kernel, and virtio notify writes hit an ioeventfd in the
kernel: neither leaves the kernel.  Every other access to a device region is a VM exit to
QEMU (KVM_EXIT_MMIO, or KVM_EXIT_IO for port I/O), traced as QEMU's ``kvm_run_exit``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..trace import tracepoint

if TYPE_CHECKING:  # pragma: no cover
    from ..hw.intc.apic import APICCommonState

KVM_EXIT_IO = 2
KVM_EXIT_MMIO = 6


@tracepoint("hw/i386/kvm/apic.c", show=("addr", "data"))
def kvm_apic_mem_write(s: "APICCommonState", addr: int, data: int, size: int) -> None:
    """The ``kvm-apic-msi`` region: an MSI from a device goes to the kernel."""
    from ..hw.intc.apic import is_msi
    if is_msi(addr):
        kvm_send_msi(s, 0xFEE00000 + addr, data)
    else:       # the guest's LAPIC registers: emulated in the kernel, no exit to QEMU
        s.stats["in-kernel LAPIC accesses"] += 1
        s.register_write(addr, data)


@tracepoint("hw/i386/kvm/apic.c", show=("address", "data"))
def kvm_send_msi(s: "APICCommonState", address: int, data: int) -> None:
    """KVM_SIGNAL_MSI: the message crosses into the kernel."""
    s.stats["KVM_SIGNAL_MSI"] += 1
    kvm_set_msi(s, address, data)


@tracepoint("linux/arch/x86/kvm/irq_comm.c", show=("address", "data"))
def kvm_set_msi(s: "APICCommonState", address: int, data: int) -> None:
    """The kernel decodes the MSI and delivers it to the vCPU's in-kernel LAPIC."""
    from ..hw.intc.apic import apic_accept, record_delivery
    apic_accept(s, *record_delivery(s, address, data))


@tracepoint("accel/kvm/kvm-all.c", show=("irq", "level"))
def kvm_set_irq(ioapic: object, irq: int, level: int) -> None:
    """KVM_IRQ_LINE: a GSI changes level at the kernel's I/O APIC."""
    ioapic.set_irq(irq, level)  # type: ignore[attr-defined]


def kvm_ioapic_deliver(s: "APICCommonState", address: int, data: int) -> None:
    """The kernel's I/O APIC sends its redirection entry straight to the LAPIC."""
    from ..hw.intc.apic import apic_accept, record_delivery
    s.stats["in-kernel I/O APIC messages"] += 1
    apic_accept(s, *record_delivery(s, address, data))
