"""The simulated guest kernel's services that drivers use (a tiny slice of Linux 6.1).

A guest driver needs what Linux gives it: DMA-able memory, PCI configuration access and
BARs, MMIO accessors, interrupt vectors with their x86 flow handlers (edge for MSI/MSI-X,
fasteoi for a level-triggered I/O APIC pin), NAPI, and net devices wired to an IP stack.
Everything here goes through the vCPU (:class:`qnetlearn.accel.cpu.X86CPU`), the guest's
only door to the hardware: the guest never imports the emulated devices' package, ``hw``
(DESIGN.md, "The one rule"), so whatever it does is what a real driver would do to real
registers.

Both the virtio-net driver (``virtio_net.py``) and the e1000 driver (``e1000.py``) use this
module; keep the public names stable.
"""
from __future__ import annotations

from collections import deque

from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..net.stack import NetStack, mac_str
from ..trace import Stats, tracepoint
from ..trace import events as trace
from ..standard_headers.pci_regs import (
    PCI_BASE_ADDRESS_0, PCI_CAPABILITY_LIST, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR, PCI_COMMAND,
    PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY,
    PCI_HEADER_TYPE, PCI_INTERRUPT_PIN, PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE,
    PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL,
    PCI_MSIX_FLAGS_QSIZE, PCI_MSIX_TABLE, PCI_STATUS, PCI_STATUS_CAP_LIST, PCI_VENDOR_ID)

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.cpu import X86CPU

# -- x86 interrupt controller addresses (Intel SDM vol. 3 §10.4, 82093AA datasheet) -------
APIC_BASE = 0xFEE00000
APIC_EOI = APIC_BASE + 0xB0           # write 0 to retire the highest vector in service
APIC_TMR = APIC_BASE + 0x180          # trigger-mode register, 8 x 32 bits, 16 bytes apart
IOAPIC_BASE = 0xFEC00000
IOAPIC_IOREGSEL = IOAPIC_BASE + 0x00
IOAPIC_IOWIN = IOAPIC_BASE + 0x10
IOAPIC_REDTBL = 0x10                  # redirection entry n: registers 0x10 + 2n (lo), +1 (hi)
IOAPIC_TRIGGER_LEVEL = 1 << 15
IOAPIC_DEST_LOGICAL = 1 << 11
IOAPIC_MASKED = 1 << 16

#: Linux's flat logical mode gives CPU 0 logical APIC id 1; an MSI to it is addressed
#: 0xFEE00000 | dest 1 << 12 | DM (bit 2, logical): the golden recordings' 0xfee01004.
MSI_DEST_LOGICAL_CPU0 = APIC_BASE | 1 << 12 | 0x4
#: The recorded guest's first dynamically allocated vector (then 0x27, 0x28, ...).
FIRST_DYNAMIC_VECTOR = 0x26
#: Linux's FIRST_SYSTEM_VECTOR (0xec, local timer) bounds the device vectors.
FIRST_SYSTEM_VECTOR = 0xEC

# -- PCI configuration space (specs.md §6.1, Linux include/uapi/linux/pci_regs.h) --------
PCI_FIND_CAP_TTL = 48                 # Linux: bounds a looping capability list
PCI_MSIX_ENTRY_LOWER_ADDR = 0
PCI_MSIX_ENTRY_UPPER_ADDR = 4
PCI_MSIX_ENTRY_DATA = 8
#: QEMU's pc machine: PIRQ links A..D go to GSIs 10, 10, 11, 11 (what ACPI _PRT tells Linux)
PC_PIRQ_TO_GSI = (10, 10, 11, 11)

DMA_BASE = 1 << 20                    # the bump allocator starts at 1 MiB
NAPI_POLL_WEIGHT = 64                 # Linux NAPI_POLL_WEIGHT (the poll budget)
PAGE = 4096


TX_QUEUE_LEN = 1000          # the qdisc's txqueuelen


class NetDevice:
    """What the stack sends through (Linux's net_device and its qdisc): a frame goes to the
    driver's ``ndo_start_xmit`` at once, or waits while the driver has stopped the queue
    (ring full) or the link is down; nothing is dropped without a count."""

    kernel: "GuestKernel"
    carrier = False
    tx_stopped = False
    tx_backlog: "deque[bytes]"
    stats: Stats

    def ndo_start_xmit(self, frame: bytes) -> None:
        raise NotImplementedError

    def xmit(self, frame: bytes) -> None:
        if not self.carrier:
            self.stats["tx dropped: no carrier"] += 1
            return
        if self.tx_stopped or self.tx_backlog:
            if len(self.tx_backlog) >= TX_QUEUE_LEN:
                self.stats["tx dropped: qdisc full"] += 1
                return
            self.tx_backlog.append(frame)
            return
        self.ndo_start_xmit(frame)

    def qdisc_run(self) -> None:
        """The NET_TX softirq: send what waited while the queue was stopped."""
        backlog = self.tx_backlog
        while backlog and not self.tx_stopped and self.carrier:
            self.ndo_start_xmit(backlog.popleft())

    def netif_wake_queue(self) -> None:
        """The driver has room again (or the link came up): run the qdisc soon."""
        self.tx_stopped = False
        if self.tx_backlog:
            self.kernel.cpu.schedule(self.qdisc_run)


class GuestError(RuntimeError):
    """A driver or kernel service failed (Linux would return -ENODEV, -EBUSY, ...)."""


class IrqDesc:
    """One interrupt vector: who handles it and how it is acked (Linux ``struct irq_desc``)."""

    __slots__ = ("vector", "handler", "name", "level", "msix_table", "msix_entry",
                 "msix_msg", "move_pending")

    def __init__(self, vector: int, handler: Callable[[int], Any], name: str, level: bool) -> None:
        self.vector = vector
        self.handler = handler
        self.name = name
        self.level = level
        self.msix_table = 0          # MSI-X table base (0: not an MSI-X vector)
        self.msix_entry = 0          # address of this vector's table entry
        self.msix_msg = (0, 0, 0)    # (addr_lo, addr_hi, data) the entry holds
        self.move_pending = False    # Linux x86: rewrite the entry under mask, first IRQ


class MsixVector:
    """What ``msix_enable`` programmed for one vector (Linux ``struct msi_desc``)."""

    __slots__ = ("devfn", "table", "entry", "addr_lo", "addr_hi", "data")

    def __init__(self, devfn: int, table: int, entry: int, addr: int, data: int) -> None:
        self.devfn = devfn
        self.table = table
        self.entry = entry
        self.addr_lo = addr & 0xFFFFFFFF
        self.addr_hi = addr >> 32
        self.data = data


class _Napi:
    """NAPI state of one poll function: scheduled, and "missed" (scheduled while running)."""

    __slots__ = ("poll", "sched", "missed", "completed")

    def __init__(self, poll: Callable[[int], int]) -> None:
        self.poll = poll
        self.sched = False
        self.missed = False
        self.completed = False


class GuestKernel:
    """The kernel services a guest driver calls; see the module docstring."""

    def __init__(self, cpu: "X86CPU", ip: str = "10.0.2.15",
                 static_arp: dict[str, str] | None = None, prefixlen: int = 24) -> None:
        self.cpu = cpu
        self.ip = ip
        self.prefixlen = prefixlen
        self.static_arp = dict(static_arp or {})
        self._dma_next = DMA_BASE
        self._next_vector = FIRST_DYNAMIC_VECTOR
        self.irq_desc: dict[int, IrqDesc] = {}
        self.gsi_vectors: dict[int, int] = {}                  # INTx line -> its vector
        self.shared: dict[int, list[Callable[[int], Any]]] = {}  # vector -> handlers
        self.msix_vectors: dict[int, MsixVector] = {}
        #: per-IRQ counts, like /proc/interrupts, keyed by the name given to request_irq
        self.interrupts: Stats = Stats()
        self.stats = Stats()
        self.dmesg: list[str] = []
        self._napi: dict[Any, _Napi] = {}
        self.netdevs: list[Any] = []
        self.stack: NetStack | None = None
        self.virtio_index = 0        # next virtio device number: virtio0, virtio1, ...

    # -- logging ----------------------------------------------------------------------
    def printk(self, text: str) -> None:
        """A kernel log line: kept in ``dmesg`` and shown in recordings as a guest event."""
        self.dmesg.append(text)
        trace.guest(text)

    # -- memory -----------------------------------------------------------------------
    @property
    def ram_size(self) -> int:
        return self.cpu.ram.size

    def dma_alloc(self, size: int, align: int = 16) -> int:
        """Zeroed guest-physical memory for DMA (Linux dma_alloc_coherent), never freed.

        A bump allocator from 1 MiB up to the end of RAM (the machine's ``-m``). Freshly
        mapped guest RAM reads zero; only pages written before are cleared again.
        """
        if size <= 0:
            raise ValueError(f"dma_alloc: size must be positive, got {size}")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"dma_alloc: alignment must be a power of two, got {align}")
        addr = (self._dma_next + align - 1) & ~(align - 1)
        end = addr + size
        ram = self.cpu.ram
        if end > ram.size:
            raise MemoryError(
                f"guest out of DMA memory: {size} bytes wanted at 0x{addr:x}, RAM ends at "
                f"0x{ram.size:x} ({ram.size >> 20} MiB; give the machine more with -m)")
        self._dma_next = end
        touched = ram.touched
        for page in range(addr >> 12, ((end - 1) >> 12) + 1):
            if page in touched:
                lo = max(addr, page << 12)
                hi = min(end, (page + 1) << 12)
                ram.write(lo, bytes(hi - lo))
        self.stats["dma bytes allocated"] += size
        return addr

    # -- MMIO (Linux readl/writel and friends) ----------------------------------------
    def readb(self, addr: int) -> int:
        return self.cpu.mmio_read(addr, 1)

    def readw(self, addr: int) -> int:
        return self.cpu.mmio_read(addr, 2)

    def readl(self, addr: int) -> int:
        return self.cpu.mmio_read(addr, 4)

    def writeb(self, addr: int, val: int) -> None:
        self.cpu.mmio_write(addr, 1, val & 0xFF)

    def writew(self, addr: int, val: int) -> None:
        self.cpu.mmio_write(addr, 2, val & 0xFFFF)

    def writel(self, addr: int, val: int) -> None:
        self.cpu.mmio_write(addr, 4, val & 0xFFFFFFFF)

    def lo_hi_writeq(self, addr: int, val: int) -> None:
        """A 64-bit register as two 32-bit writes, low dword first (Linux vp_iowrite64_twopart)."""
        self.writel(addr, val & 0xFFFFFFFF)
        self.writel(addr + 4, val >> 32)

    def lo_hi_readq(self, addr: int) -> int:
        return self.readl(addr) | self.readl(addr + 4) << 32

    # -- PCI --------------------------------------------------------------------------
    def pci_read(self, devfn: int, off: int, size: int) -> int:
        return self.cpu.pci_config_read(devfn, off, size)

    def pci_write(self, devfn: int, off: int, size: int, val: int) -> None:
        self.cpu.pci_config_write(devfn, off, size, val)

    def pci_devices(self) -> list[tuple[int, int, int]]:
        """(devfn, vendor, device) of every function on bus 0, as Linux pci_scan_slot does:
        function 0 of each slot, functions 1-7 only behind a multi-function header."""
        found = []
        for slot in range(32):
            for fn in range(8):
                devfn = slot << 3 | fn
                ids = self.pci_read(devfn, PCI_VENDOR_ID, 4)
                vendor = ids & 0xFFFF
                if vendor == 0xFFFF or vendor == 0:
                    if fn == 0:
                        break
                    continue
                found.append((devfn, vendor, ids >> 16))
                if fn == 0 and not self.pci_read(devfn, PCI_HEADER_TYPE, 1) & 0x80:
                    break
        return found

    def pci_bar(self, devfn: int, n: int) -> int:
        """The address BAR ``n`` decodes at (64-bit memory BARs combine two registers;
        an I/O BAR gives its port base)."""
        off = PCI_BASE_ADDRESS_0 + 4 * n
        lo = self.pci_read(devfn, off, 4)
        if lo & 0x1:
            return lo & ~0x3
        addr = lo & ~0xF
        if (lo >> 1) & 0x3 == 0x2 and n < 5:
            addr |= self.pci_read(devfn, off + 4, 4) << 32
        return addr

    def _pci_command_set(self, devfn: int, bits: int) -> None:
        cmd = self.pci_read(devfn, PCI_COMMAND, 2)
        if cmd & bits != bits:
            self.pci_write(devfn, PCI_COMMAND, 2, cmd | bits)

    def pci_enable_device(self, devfn: int) -> None:
        """Linux pci_enable_device: turn on decoding of the BARs the device has (memory;
        I/O too when an I/O BAR was given ports)."""
        bits = PCI_COMMAND_MEMORY
        for n in range(6):
            lo = self.pci_read(devfn, PCI_BASE_ADDRESS_0 + 4 * n, 4)
            if lo & 1 and lo & ~0x3:
                bits |= PCI_COMMAND_IO
        self._pci_command_set(devfn, bits)

    def pci_enable_device_mem(self, devfn: int) -> None:
        """Linux pci_enable_device_mem: memory BARs only."""
        self._pci_command_set(devfn, PCI_COMMAND_MEMORY)

    def pci_set_master(self, devfn: int) -> None:
        """Linux pci_set_master: let the device DMA (and send MSI, a DMA write)."""
        self._pci_command_set(devfn, PCI_COMMAND_MASTER)

    def pci_capabilities(self, devfn: int, cap_id: int | None = None) -> Iterator[int]:
        """Offsets of the capabilities (of one ID, or all), in list order (Linux
        pci_find_next_capability, with its loop guard)."""
        if not self.pci_read(devfn, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST:
            return
        pos = self.pci_read(devfn, PCI_CAPABILITY_LIST, 1)
        for _ in range(PCI_FIND_CAP_TTL):
            if pos < 0x40:
                return
            pos &= ~3
            ident = self.pci_read(devfn, pos, 1)
            if ident == 0xFF:
                return
            if cap_id is None or ident == cap_id:
                yield pos
            pos = self.pci_read(devfn, pos + 1, 1)

    def pci_find_capability(self, devfn: int, cap_id: int) -> int:
        """Offset of the first capability ``cap_id``, or 0 (Linux pci_find_capability)."""
        return next(self.pci_capabilities(devfn, cap_id), 0)

    def pci_vendor_capabilities(self, devfn: int) -> Iterator[int]:
        """Offsets of the vendor-specific capabilities (ID 0x09), as virtio-pci walks them."""
        return self.pci_capabilities(devfn, PCI_CAP_ID_VNDR)

    def pci_irq_gsi(self, devfn: int) -> int:
        """The GSI of the function's INTx pin, as ACPI _PRT routes it on QEMU's pc machine
        (PIRQ (slot + pin - 1) mod 4 -> GSI 10, 10, 11, 11); 0 if it has no INTx pin."""
        pin = self.pci_read(devfn, PCI_INTERRUPT_PIN, 1)
        if not 1 <= pin <= 4:
            return 0
        return PC_PIRQ_TO_GSI[((devfn >> 3) + pin - 1) & 3]

    # -- interrupt vectors and flow handlers ------------------------------------------
    def alloc_irq_vector(self) -> int:
        """A free device vector, counting up from 0x26 as the recorded guest did."""
        v = self._next_vector
        if v >= FIRST_SYSTEM_VECTOR:
            raise GuestError("no free interrupt vector left")
        self._next_vector = v + 1
        return v

    def request_irq(self, vector: int, handler: Callable[[int], Any], name: str,
                    level: bool = False) -> None:
        """Install ``handler(vector)`` behind the x86 flow handler (Linux request_irq).

        Edge (MSI, MSI-X, edge I/O APIC pins) runs :meth:`handle_edge_irq`, level (an
        I/O APIC pin in fasteoi mode) :meth:`handle_fasteoi_irq`. An MSI-X vector is
        unmasked in its table entry now, as Linux's irq_startup does.
        """
        if vector in self.irq_desc:
            raise GuestError(f"vector 0x{vector:x} is already requested by "
                             f"{self.irq_desc[vector].name}")
        desc = IrqDesc(vector, handler, name, level)
        mv = self.msix_vectors.get(vector)
        if mv is not None:
            desc.msix_table = mv.table
            desc.msix_entry = mv.table + PCI_MSIX_ENTRY_SIZE * mv.entry
            desc.msix_msg = (mv.addr_lo, mv.addr_hi, mv.data)
            desc.move_pending = True
        self.irq_desc[vector] = desc
        self.interrupts[name] = 0
        self.cpu.idt[vector] = self.handle_fasteoi_irq if level else self.handle_edge_irq
        if mv is not None:
            self.writel(desc.msix_entry + PCI_MSIX_ENTRY_VECTOR_CTRL, 0)   # unmask

    def request_gsi_irq(self, gsi: int, handler: Callable[[int], Any], name: str) -> int:
        """A level-triggered INTx line through the I/O APIC: one vector per GSI; devices on
        the same line share it (Linux IRQF_SHARED): each handler runs on every interrupt
        and looks at its own device (e1000_intr reads ICR and returns if it is 0)."""
        vector = self.gsi_vectors.get(gsi)
        if vector is None:
            vector = self.gsi_vectors[gsi] = self.alloc_irq_vector()
            self.shared[vector] = [handler]
            self.request_irq(vector, self._run_shared, name, level=True)
            self.ioapic_route(gsi, vector, level=True)
            return vector
        desc = self.irq_desc[vector]
        self.shared[vector].append(handler)
        count = self.interrupts.pop(desc.name)
        desc.name = f"{desc.name}, {name}"           # as /proc/interrupts shows a shared line
        self.interrupts[desc.name] = count
        return vector

    def _run_shared(self, vector: int) -> None:
        for handler in self.shared[vector]:
            handler(vector)

    def free_irq(self, vector: int) -> None:
        desc = self.irq_desc.pop(vector, None)
        self.cpu.idt.pop(vector, None)
        if desc is not None:
            self.interrupts.pop(desc.name, None)
        if desc is not None and desc.msix_entry:
            self.writel(desc.msix_entry + PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT)

    def _irq_move_masked(self, desc: IrqDesc) -> None:
        """Linux x86 moves a freshly requested MSI-X vector on its first interrupt
        (apic_ack_irq -> irq_move_irq): mask the entry (pci_msix_mask, with its flushing
        read of the table's first dword), rewrite address and data
        (pci_write_msg_msix, with its read-back of the data), unmask. Same values here:
        golden README (a) step 7."""
        desc.move_pending = False
        entry = desc.msix_entry
        addr_lo, addr_hi, data = desc.msix_msg
        self.writel(entry + PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT)
        self.readl(desc.msix_table)
        self.writel(entry + PCI_MSIX_ENTRY_LOWER_ADDR, addr_lo)
        self.writel(entry + PCI_MSIX_ENTRY_UPPER_ADDR, addr_hi)
        self.writel(entry + PCI_MSIX_ENTRY_DATA, data)
        self.readl(entry + PCI_MSIX_ENTRY_DATA)
        self.writel(entry + PCI_MSIX_ENTRY_VECTOR_CTRL, 0)

    @tracepoint("kernel/irq/chip.c", show=("vector",))
    def handle_edge_irq(self, vector: int) -> None:
        """Edge flow (Linux handle_edge_irq with apic_ack_irq): ack first, i.e. the
        pending vector move, then EOI to the local APIC; then run the handler."""
        desc = self.irq_desc[vector]
        self.interrupts[desc.name] += 1
        if desc.move_pending:
            self._irq_move_masked(desc)
        self.cpu.mmio_write(APIC_EOI, 4, 0)
        desc.handler(vector)

    @tracepoint("kernel/irq/chip.c", show=("vector",))
    def handle_fasteoi_irq(self, vector: int) -> None:
        """Level flow through the I/O APIC (Linux handle_fasteoi_irq): run the handler
        first, then ioapic_ack_level: read the TMR word of the vector, EOI (the local APIC
        broadcasts it to the I/O APIC, which clears remote IRR)."""
        desc = self.irq_desc[vector]
        self.interrupts[desc.name] += 1
        desc.handler(vector)
        tmr = self.cpu.mmio_read(APIC_TMR + 0x10 * (vector >> 5), 4)
        self.cpu.mmio_write(APIC_EOI, 4, 0)
        if not tmr >> (vector & 31) & 1:
            # Linux then EOIs the I/O APIC pin by hand (a level IRQ the LAPIC took as edge)
            self.stats["level irq with TMR bit clear"] += 1

    # -- MSI-X (Linux drivers/pci/msi/msi.c msix_capability_init) ----------------------
    def msix_table_size(self, devfn: int) -> int:
        """Number of MSI-X table entries the function has, 0 without MSI-X."""
        cap = self.pci_find_capability(devfn, PCI_CAP_ID_MSIX)
        if not cap:
            return 0
        return (self.pci_read(devfn, cap + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1

    def msix_enable(self, devfn: int, entries: list[tuple[int, int]]) -> int:
        """Program MSI-X table ``entries`` as (entry index, vector) and enable MSI-X.

        Follows msix_capability_init: enable with the function masked, mask every entry,
        write each message (address 0xFEE01004: logical destination 1 = CPU 0; data =
        the vector, fixed delivery, edge), disable INTx, unmask the function. Entries
        stay masked until :meth:`request_irq`. Returns the table's address.
        """
        cap = self.pci_find_capability(devfn, PCI_CAP_ID_MSIX)
        if not cap:
            raise GuestError(f"{devfn >> 3:02x}.{devfn & 7}: no MSI-X capability")
        ctrl = self.pci_read(devfn, cap + PCI_MSIX_FLAGS, 2)
        tsize = (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1
        for entry, _vector in entries:
            if not 0 <= entry < tsize:
                raise GuestError(f"MSI-X entry {entry} does not exist (table has {tsize})")
        tbl = self.pci_read(devfn, cap + PCI_MSIX_TABLE, 4)
        bar = self.pci_bar(devfn, tbl & 7)
        if not bar:
            raise GuestError(f"MSI-X table BAR {tbl & 7} is not assigned")
        table = bar + (tbl & ~7)
        self.pci_write(devfn, cap + PCI_MSIX_FLAGS, 2,
                       ctrl | PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL)
        for i in range(tsize):
            self.writel(table + PCI_MSIX_ENTRY_SIZE * i + PCI_MSIX_ENTRY_VECTOR_CTRL,
                        PCI_MSIX_ENTRY_CTRL_MASKBIT)
        for entry, vector in entries:
            mv = MsixVector(devfn, table, entry, MSI_DEST_LOGICAL_CPU0, vector)
            e = table + PCI_MSIX_ENTRY_SIZE * entry
            self.writel(e + PCI_MSIX_ENTRY_LOWER_ADDR, mv.addr_lo)
            self.writel(e + PCI_MSIX_ENTRY_UPPER_ADDR, mv.addr_hi)
            self.writel(e + PCI_MSIX_ENTRY_DATA, mv.data)
            self.msix_vectors[vector] = mv
        self._pci_command_set(devfn, PCI_COMMAND_INTX_DISABLE)         # pci_intx_for_msi
        ctrl = self.pci_read(devfn, cap + PCI_MSIX_FLAGS, 2)
        self.pci_write(devfn, cap + PCI_MSIX_FLAGS, 2, ctrl & ~PCI_MSIX_FLAGS_MASKALL)
        return table

    def msix_disable(self, devfn: int) -> None:
        cap = self.pci_find_capability(devfn, PCI_CAP_ID_MSIX)
        if not cap:
            return
        ctrl = self.pci_read(devfn, cap + PCI_MSIX_FLAGS, 2)
        self.pci_write(devfn, cap + PCI_MSIX_FLAGS, 2, ctrl & ~PCI_MSIX_FLAGS_ENABLE)
        for v in [v for v, mv in self.msix_vectors.items() if mv.devfn == devfn]:
            del self.msix_vectors[v]

    # -- the I/O APIC -------------------------------------------------------------------
    def ioapic_route(self, gsi: int, vector: int, level: bool = True) -> None:
        """Program redirection entry ``gsi``: fixed delivery of ``vector`` to logical
        destination 1 (CPU 0), active high, level or edge, unmasked. The high dword goes
        first so the entry is complete when the low dword unmasks it (Linux
        __ioapic_write_entry)."""
        lo = (vector & 0xFF) | IOAPIC_DEST_LOGICAL | (IOAPIC_TRIGGER_LEVEL if level else 0)
        hi = 1 << 24                                  # destination field, bits 56-63
        self.writel(IOAPIC_IOREGSEL, IOAPIC_REDTBL + 2 * gsi + 1)
        self.writel(IOAPIC_IOWIN, hi)
        self.writel(IOAPIC_IOREGSEL, IOAPIC_REDTBL + 2 * gsi)
        self.writel(IOAPIC_IOWIN, lo)

    def ioapic_mask(self, gsi: int) -> None:
        self.writel(IOAPIC_IOREGSEL, IOAPIC_REDTBL + 2 * gsi)
        lo = self.readl(IOAPIC_IOWIN)
        self.writel(IOAPIC_IOWIN, lo | IOAPIC_MASKED)

    # -- NAPI (Linux net/core/dev.c) ------------------------------------------------------
    def napi_schedule(self, poll: Callable[[int], int]) -> bool:
        """Schedule ``poll(budget)`` to run on the vCPU (the NET_RX softirq). Scheduling it
        again before it completes only marks it "missed" (napi_schedule_prep), so it runs
        once more, not twice. Returns True when this call scheduled it."""
        napi = self._napi.get(poll)
        if napi is None:
            napi = self._napi[poll] = _Napi(poll)
        if napi.sched:
            napi.missed = True
            return False
        napi.sched = True
        napi.missed = False
        self.cpu.schedule(self.net_rx_action, napi)
        return True

    def napi_complete_done(self, poll: Callable[[int], int], work_done: int = 0) -> bool:
        """The poll is done (Linux napi_complete_done). False when it was scheduled again
        meanwhile: then it stays scheduled and runs again, and interrupts stay off."""
        napi = self._napi.get(poll)
        if napi is None or not napi.sched:
            return True
        napi.completed = True
        if napi.missed:
            napi.missed = False
            return False
        napi.sched = False
        return True

    def napi_is_scheduled(self, poll: Callable[[int], int]) -> bool:
        napi = self._napi.get(poll)
        return napi is not None and napi.sched

    @tracepoint("net/core/dev.c")
    def net_rx_action(self, napi: _Napi) -> None:
        """The softirq: one NAPI poll with budget 64. A poll that used its whole budget,
        or that was rescheduled while it ran, is polled again later (Linux napi_poll).
        Schedules made before it started are served by this very poll."""
        napi.completed = False
        napi.missed = False
        work = napi.poll(NAPI_POLL_WEIGHT)
        if not napi.sched:
            return                                   # napi_complete_done: finished
        if work >= NAPI_POLL_WEIGHT or napi.completed or napi.missed:
            napi.missed = False                      # over budget, or rescheduled meanwhile
            self.cpu.schedule(self.net_rx_action, napi)
            return
        napi.sched = False      # under budget without napi_complete_done: complete it

    # -- net devices and the stack -------------------------------------------------------
    def register_netdev(self, dev: Any) -> str:
        """Name a net device eth0, eth1, ... (Linux register_netdev). The first one brings
        up the guest's IP stack with its MAC and the static ARP entries."""
        name = f"eth{len(self.netdevs)}"
        self.netdevs.append(dev)
        try:
            dev.name = name
        except AttributeError:
            pass
        if self.stack is None:
            self.stack = NetStack(dev.mac, self.ip, self._stack_output, self._clock_ns,
                                  prefixlen=self.prefixlen, name="guest")
            for ip, mac in self.static_arp.items():
                self.stack.add_static_arp(ip, mac)
        self.printk(f"{name}: registered, MAC {mac_str(dev.mac)}")
        return name

    def _clock_ns(self) -> int:
        return self.cpu.loop.clock_ns

    @tracepoint("net/core/dev.c", name="dev_queue_xmit")
    def _stack_output(self, frame: bytes) -> None:
        """The stack's output (dev_queue_xmit): out through the first net device, since
        the stack's only route is the on-link one."""
        self.netdevs[0].xmit(frame)

    def dev_queue_xmit(self, dev: Any, frame: bytes) -> None:
        """Hand a frame to a device's ndo_start_xmit."""
        dev.xmit(frame)

    @tracepoint("net/core/dev.c")
    def netif_receive_skb(self, dev: Any, frame: bytes) -> None:
        """A driver passes up a received frame: it goes to the IP stack."""
        stack = self.stack
        if stack is None:
            self.stats["rx dropped: no stack"] += 1
            return
        stack.input(frame)


__all__ = ["GuestKernel", "GuestError", "IrqDesc", "MsixVector"]
