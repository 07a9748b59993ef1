"""Guest RAM, MemoryRegions and the physical address space (QEMU's memory.c, physmem.c).

RAM is an anonymous ``mmap``: the host kernel gives it pages on first touch, so ``-m 2048``
reserves address space but costs memory only for what the guest uses.  MMIO regions are
:class:`MemoryRegion` objects with read/write callbacks, mapped at a base address.  An
access that hits neither RAM nor a region is QEMU's MEMTX_DECODE_ERROR: device models get
:class:`MemTxError` from the ``dma_*``/``ld*``/``st*`` helpers and handle it; the public
``vm.memory`` API reads 0 and ignores the write there, as QEMU's unassigned memory does.
"""
from __future__ import annotations

import mmap
import struct
from typing import Callable

from ..trace import events as trace
from ..trace import tracepoint

MEMTX_OK = 0
MEMTX_ERROR = 1
MEMTX_DECODE_ERROR = 2

PAGE = 4096
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class MemTxError(Exception):
    """A DMA access outside RAM (QEMU's MEMTX_DECODE_ERROR); caught by device models."""

    def __init__(self, addr: int, size: int) -> None:
        super().__init__(f"guest physical access 0x{addr:x}+{size} is outside RAM")
        self.addr = addr
        self.size = size


class RAM:
    """Guest RAM from physical address 0, allocated by the host on first touch.

    Device models and the guest use the methods below; never keep a bound method of a RAM
    object: a recorder replaces the write methods on the instance to journal writes.
    """

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE:
            raise ValueError(f"RAM size must be a positive multiple of {PAGE}")
        self.size = size
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20) | 0x4000  # NORESERVE
        self.mm = mmap.mmap(-1, size, flags=flags)
        self.touched: set[int] = set()   # pages ever written, for a recorder's first image
        self._journal: list | None = None

    # -- reads ------------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > self.size:
            raise MemTxError(addr, n)
        return self.mm[addr:addr + n]

    def unpack(self, st: struct.Struct, addr: int) -> tuple:
        """Read a structure (a descriptor, a used element) in one go."""
        if addr < 0 or addr + st.size > self.size:
            raise MemTxError(addr, st.size)
        return st.unpack_from(self.mm, addr)

    def lduw(self, addr: int) -> int:
        if addr < 0 or addr + 2 > self.size:
            raise MemTxError(addr, 2)
        return _U16.unpack_from(self.mm, addr)[0]

    def ldl(self, addr: int) -> int:
        if addr < 0 or addr + 4 > self.size:
            raise MemTxError(addr, 4)
        return _U32.unpack_from(self.mm, addr)[0]

    def ldq(self, addr: int) -> int:
        if addr < 0 or addr + 8 > self.size:
            raise MemTxError(addr, 8)
        return _U64.unpack_from(self.mm, addr)[0]

    # -- writes -----------------------------------------------------------------------
    def _touch(self, addr: int, n: int) -> None:
        first = addr >> 12
        last = (addr + n - 1) >> 12
        if first == last:
            self.touched.add(first)
        else:
            self.touched.update(range(first, last + 1))

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if addr < 0 or addr + n > self.size:
            raise MemTxError(addr, n)
        self.mm[addr:addr + n] = data
        if (addr & 0xFFF) + n <= PAGE:
            self.touched.add(addr >> 12)
        else:
            self._touch(addr, n)

    def stw(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 2 > self.size:
            raise MemTxError(addr, 2)
        _U16.pack_into(self.mm, addr, value & 0xFFFF)
        if (addr & 0xFFF) != 0xFFF:
            self.touched.add(addr >> 12)
        else:                                   # a guest may put a ring anywhere
            self._touch(addr, 2)

    def stl(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 4 > self.size:
            raise MemTxError(addr, 4)
        _U32.pack_into(self.mm, addr, value & 0xFFFFFFFF)
        if (addr & 0xFFF) <= PAGE - 4:
            self.touched.add(addr >> 12)
        else:
            self._touch(addr, 4)

    def stq(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 8 > self.size:
            raise MemTxError(addr, 8)
        _U64.pack_into(self.mm, addr, value & 0xFFFFFFFFFFFFFFFF)
        self._touch(addr, 8)

    # -- journaling for recordings ----------------------------------------------------
    def start_journal(self, journal: list) -> dict[int, bytes]:
        """Journal every write into ``journal``; returns the image of the touched pages."""
        from ..trace import state
        image = {p: self.mm[p * PAGE:(p + 1) * PAGE] for p in self.touched}
        cls = type(self)

        def logged(method: Callable, width: int | None) -> Callable:
            def write(addr: int, value: object) -> None:
                method(self, addr, value)
                n = len(value) if width is None else width  # type: ignore[arg-type]
                journal.append((state._STEP[0], None, addr, self.mm[addr:addr + n]))
            return write

        self.write = logged(cls.write, None)  # type: ignore[method-assign]
        self.stw = logged(cls.stw, 2)  # type: ignore[method-assign]
        self.stl = logged(cls.stl, 4)  # type: ignore[method-assign]
        self.stq = logged(cls.stq, 8)  # type: ignore[method-assign]
        return image

    def stop_journal(self) -> None:
        for name in ("write", "stw", "stl", "stq"):
            self.__dict__.pop(name, None)


class MemoryRegion:
    """An MMIO region: callbacks for reads and writes, a name for traces and ``info mtree``.

    ``describe(offset, value)`` gives the golden form of an access for ``to_qemu_trace``
    (e.g. ``e1000-mmio[0x000c0 ICR] 0x80``), or None to leave it out of that form.
    """

    def __init__(self, name: str, size: int,
                 read: Callable[[int, int], int] | None = None,
                 write: Callable[[int, int, int], None] | None = None,
                 describe: Callable[[int, int], str | None] | None = None,
                 owner: object = None, priority: int = 0) -> None:
        self.name = name
        self.size = size
        self.read = read or (lambda offset, size: 0)
        self.write = write or (lambda offset, value, size: None)
        self.describe = describe or (lambda off, val: f"{name}[0x{off:x}] 0x{val:x}")
        self.owner = owner
        self.priority = priority
        self.base: int | None = None
        self.enabled = True
        #: ioeventfds (offset, size, notifier): a matching write signals the notifier
        #: instead of calling ``write`` (memory_region_dispatch_write_eventfds)
        self.ioeventfds: list[tuple[int, int, object]] = []
        #: called for every guest access that reaches the region, for costs (VM exits)
        self.on_access: Callable[[str, "MemoryRegion", int], None] | None = None

    @tracepoint("softmmu/memory.c", show=("offset", "size"), name="memory_region_dispatch_read")
    def dispatch_read(self, offset: int, size: int) -> int:
        """memory_region_dispatch_read: the handler, then the trace line (as QEMU does)."""
        value = self.read(offset, size)
        trace.memory_region_ops_read(self, offset, value, size)
        return value

    @tracepoint("softmmu/memory.c", show=("offset", "value"), name="memory_region_dispatch_write")
    def dispatch_write(self, offset: int, value: int, size: int) -> None:
        """memory_region_dispatch_write: ioeventfds first, else the trace line, then the handler."""
        for off, sz, notifier in self.ioeventfds:
            if off == offset and (sz == 0 or sz == size):
                notifier.set()  # type: ignore[attr-defined]
                return
        trace.memory_region_ops_write(self, offset, value, size)
        self.write(offset, value, size)

    def __repr__(self) -> str:
        base = "unmapped" if self.base is None else f"0x{self.base:x}"
        return f"<MemoryRegion {self.name} {base} size 0x{self.size:x}>"


class ContainerRegion(MemoryRegion):
    """A region made of subregions at fixed offsets (a BAR holding the MSI-X table and PBA,
    or virtio-pci's capabilities); accesses go to, and are traced by, the subregion."""

    def __init__(self, name: str, size: int, owner: object = None) -> None:
        super().__init__(name, size, owner=owner)
        self.subregions: list[tuple[int, MemoryRegion]] = []

    def add_subregion(self, offset: int, mr: MemoryRegion) -> None:
        self.subregions.append((offset, mr))

    def _find(self, offset: int) -> tuple[MemoryRegion, int] | None:
        for base, mr in self.subregions:
            if base <= offset < base + mr.size:
                return mr, offset - base
        return None

    def dispatch_read(self, offset: int, size: int) -> int:
        hit = self._find(offset)
        return hit[0].dispatch_read(hit[1], size) if hit else 0

    def dispatch_write(self, offset: int, value: int, size: int) -> None:
        hit = self._find(offset)
        if hit:
            hit[0].dispatch_write(hit[1], value, size)


class AddressSpace:
    """The physical address space: RAM from 0, MMIO regions above it.

    Its ``read``/``write``/``read_bytes``/``write_bytes`` are the public ``vm.memory`` API
    (API.md); ``lookup`` is what ``address_space_*`` and the vCPU use.
    """

    def __init__(self, name: str, ram: RAM) -> None:
        self.name = name
        self.ram = ram
        self.regions: list[MemoryRegion] = []
        self.unassigned = 0   # accesses that hit nothing

    def map(self, base: int, region: MemoryRegion) -> None:
        if base < self.ram.size:
            raise ValueError(f"{region.name} at 0x{base:x} overlaps RAM")
        region.base = base
        if region not in self.regions:
            self.regions.append(region)
        self.regions.sort(key=lambda r: (-r.priority, r.base))

    def unmap(self, region: MemoryRegion) -> None:
        if region in self.regions:
            self.regions.remove(region)
        region.base = None

    def lookup(self, addr: int) -> tuple[MemoryRegion, int] | None:
        for r in self.regions:
            b = r.base
            if r.enabled and b is not None and b <= addr < b + r.size:
                return r, addr - b
        return None

    # -- the public API: a driver's view, little endian --------------------------------
    def read(self, addr: int, size: int) -> int:
        ram = self.ram
        if 0 <= addr and addr + size <= ram.size:
            return int.from_bytes(ram.read(addr, size), "little")
        hit = self.lookup(addr)
        if hit is None:
            self.unassigned += 1
            return 0
        return hit[0].dispatch_read(hit[1], size)

    def write(self, addr: int, size: int, value: int) -> None:
        ram = self.ram
        if 0 <= addr and addr + size <= ram.size:
            ram.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
            return
        hit = self.lookup(addr)
        if hit is None:
            self.unassigned += 1
            return
        hit[0].dispatch_write(hit[1], value, size)

    def read_bytes(self, addr: int, n: int) -> bytes:
        if 0 <= addr and addr + n <= self.ram.size:
            return self.ram.read(addr, n)
        return bytes(self.read(addr + i, 1) for i in range(n))

    def write_bytes(self, addr: int, data: bytes) -> None:
        if 0 <= addr and addr + len(data) <= self.ram.size:
            self.ram.write(addr, data)
            return
        for i, b in enumerate(data):
            self.write(addr + i, 1, b)


@tracepoint("include/exec/memory_ldst.c.inc", show=("addr", "val"))
def address_space_stl_internal(as_: AddressSpace, addr: int, val: int) -> int:
    """The 4-byte store behind ``address_space_stl_le``: RAM or a region, or DECODE_ERROR."""
    ram = as_.ram
    if 0 <= addr and addr + 4 <= ram.size:
        ram.stl(addr, val)
        return MEMTX_OK
    hit = as_.lookup(addr)
    if hit is None:
        as_.unassigned += 1
        return MEMTX_DECODE_ERROR
    hit[0].dispatch_write(hit[1], val, 4)
    return MEMTX_OK


@tracepoint("include/exec/memory_ldst.c.inc", show=("addr", "val"))
def address_space_stl_le(as_: AddressSpace, addr: int, val: int) -> int:
    """A little-endian 4-byte DMA store, as ``msi_send_message`` does for an MSI."""
    return address_space_stl_internal(as_, addr, val)
