"""The vCPU: where the simulated guest runs, and its only doors to the hardware.

QEMU runs the guest on vCPU threads (accel/tcg/cpu-exec.c, accel/kvm/kvm-all.c); a guest
touches devices only by loads and stores to MMIO, by port I/O (PCI configuration through
0xCF8/0xCFC), by DMA-visible RAM, and it learns of events through interrupts.  This class is
that boundary: the guest gets an :class:`X86CPU` and nothing else of the machine.

Guest code runs in *slices*: the main loop gives the vCPU a slice when an interrupt is
deliverable (the APIC moves its vector to ISR and the guest's handler from ``idt`` runs) or
when guest work was scheduled (softirqs, NAPI polls, deferred work).
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..trace import Stats
from ..trace import events as trace
from .kvm import KVM_EXIT_IO, KVM_EXIT_MMIO

if TYPE_CHECKING:  # pragma: no cover
    from ..hw.intc.apic import APICCommonState
    from ..hw.pci.pci import PCIBus
    from ..system.main_loop import MainLoop, QEMUTimer
    from ..system.memory import RAM, AddressSpace


class X86CPU:
    """vCPU 0 as the guest sees it."""

    def __init__(self, loop: "MainLoop", address_space: "AddressSpace", pci: "PCIBus",
                 apic: "APICCommonState") -> None:
        self.loop = loop
        self._as = address_space
        self._pci = pci
        self._apic = apic
        self.idt: dict[int, Callable[[int], None]] = {}
        self.work: deque[tuple[Callable[..., None], tuple]] = deque()
        self.stats = Stats()
        self.accel = "tcg"
        #: under KVM: regions the kernel emulates itself (LAPIC, I/O APIC): no exit to QEMU
        self.in_kernel_regions: set[object] = set()
        self._keys: dict[tuple[str, str], str] = {}
        apic.cpu_interrupt = self._kick
        loop.vcpu = self

    # -- what the guest may touch -------------------------------------------------------
    @property
    def ram(self) -> "RAM":
        """Guest RAM: plain loads and stores, no exit."""
        return self._as.ram

    @property
    def clock_ns(self) -> int:
        return self.loop.clock_ns

    def mmio_read(self, addr: int, size: int) -> int:
        """A load from a device region: emulated by QEMU (TCG), or a VM exit (KVM)."""
        hit = self._as.lookup(addr)
        self._account("read", hit)
        if hit is None:
            return self._as.read(addr, size)        # RAM, or nothing there
        return hit[0].dispatch_read(hit[1], size)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        hit = self._as.lookup(addr)
        self._account("write", hit)
        if hit is None:
            self._as.write(addr, size, value)
        else:
            hit[0].dispatch_write(hit[1], value, size)

    def pci_config_read(self, devfn: int, offset: int, size: int) -> int:
        """Configuration read through ports 0xCF8/0xCFC: two port I/O accesses."""
        self._account_pio()
        return self._pci.config_read(devfn, offset, size)

    def pci_config_write(self, devfn: int, offset: int, size: int, value: int) -> None:
        self._account_pio()
        self._pci.config_write(devfn, offset, size, value)

    def _account_pio(self) -> None:
        self.stats["pio accesses"] += 2
        if self.accel == "kvm":
            self.stats["exits KVM_EXIT_IO"] += 2
            trace.kvm_run_exit(0, KVM_EXIT_IO)
            trace.kvm_run_exit(0, KVM_EXIT_IO)

    def _account(self, kind: str, hit: Any) -> None:
        """Count a guest access to a device region by what it costs under this accelerator."""
        while hit is not None and hasattr(hit[0], "subregions"):   # the leaf region
            hit = hit[0]._find(hit[1])
        region = hit[0] if hit else None
        name = region.name if region is not None else "unassigned"
        st = self.stats
        kvm = self.accel == "kvm"
        if kind == "write" and region is not None and region.ioeventfds and \
                any(off == hit[1] for off, _s, _n in region.ioeventfds):
            st["ioeventfd kicks"] += 1
            if kvm:
                return              # the kernel signals the eventfd: no exit to QEMU
        elif kvm and region in self.in_kernel_regions:
            st[f"in-kernel {kind} {name}"] += 1
            return
        key = self._keys.get((kind, name))
        if key is None:
            key = self._keys[(kind, name)] = f"mmio {kind} {name}"
        st[key] += 1
        st["mmio accesses"] += 1
        if kvm:
            st["exits KVM_EXIT_MMIO"] += 1
            trace.kvm_run_exit(0, KVM_EXIT_MMIO)

    def timer_new(self, cb: Callable[[Any], None], opaque: Any = None,
                  name: str = "guest timer") -> "QEMUTimer":
        """A guest timer: its callback runs on this vCPU."""
        return self.loop.timer_new_ns(cb, opaque, context="vcpu0", name=name)

    def timer_mod(self, t: "QEMUTimer", expire_ns: int) -> None:
        self.loop.timer_mod(t, expire_ns)

    def schedule(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on this vCPU soon (a softirq, a NAPI poll, deferred work)."""
        self.work.append((fn, args))

    # -- the main loop's side -----------------------------------------------------------
    def _kick(self) -> None:
        self.stats["vcpu wake-ups"] += 1

    def has_work(self) -> bool:
        return bool(self.work) or (self._apic.irr != 0 and self._apic.has_interrupt())

    def run(self) -> None:
        """One slice: take a deliverable interrupt, else run one piece of guest work."""
        apic = self._apic
        if apic.has_interrupt():
            v = apic.get_interrupt()
            handler = self.idt.get(v)
            self.stats["interrupts"] += 1
            if handler is None:
                self.stats["spurious interrupts"] += 1
                return
            handler(v)
            return
        fn, args = self.work.popleft()
        fn(*args)
