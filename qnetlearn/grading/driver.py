"""A bare virtio-net driver for the exercises' scenarios (virtio 1.x §4.1, §2.7, §5.1).

The scenarios need rings they control byte by byte (a chain of three descriptors, a loop,
an index past the ring, a masked MSI-X vector), which the simulated Linux guest never
builds.  This driver sets the device up through PCI configuration space and the common
configuration structure, then writes descriptors and ring indices in guest RAM, kicks
through the notify region and reads what the device put in the used ring, all through the
machine's public hardware interfaces (``vm.memory``, ``vm.pci_config_*``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

# virtio 1.x numbers
S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK, S_NEEDS_RESET = 1, 2, 4, 8, 0x40
DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
F_MAC, F_MRG_RXBUF, F_INDIRECT_DESC, F_EVENT_IDX, F_VERSION_1 = 5, 15, 28, 29, 32
#: where the driver's MSI messages go: the local APIC window, destination APIC 1
MSI_ADDRESS = 0xFEE01004
#: the first vector number the driver programs (config 0x26, RX 0x27, TX 0x28)
MSI_VECTOR_BASE = 0x26
HEAP = 0x300000
# offsets in the common configuration structure
_DFSEL, _DF, _GFSEL, _GF, _MSIX_CONFIG = 0x00, 0x04, 0x08, 0x0C, 0x10
_STATUS, _QSEL, _QSIZE, _QVEC, _QENABLE, _QNOFF = 0x14, 0x16, 0x18, 0x1A, 0x1C, 0x1E
_QDESC, _QAVAIL, _QUSED = 0x20, 0x28, 0x30


@dataclass
class Ring:
    """The driver's view of one virtqueue."""

    index: int
    num: int
    desc: int
    avail: int
    used: int
    notify: int
    avail_idx: int = 0
    last_used: int = 0
    free: list[int] = field(default_factory=list)


class PCIDriver:
    """What both hand drivers share: the PCI function of ``dev_id`` and a bump allocator
    of zeroed guest RAM for rings and buffers (a kernel's DMA allocations, simplified)."""

    def __init__(self, vm: "Machine", dev_id: str) -> None:
        self.vm = vm
        self.mem = vm.memory
        self.devfn = vm.device(dev_id).devfn  # type: ignore[attr-defined]
        self.brk = HEAP

    def alloc(self, size: int, align: int = 64) -> int:
        self.brk = -(-self.brk // align) * align
        addr = self.brk
        self.brk += size
        self.mem.write_bytes(addr, bytes(size))
        return addr


class Driver(PCIDriver):
    """Sets up a virtio-net-pci function and drives its rings by hand."""

    def __init__(self, vm: "Machine", dev_id: str = "net-pci0",
                 features: tuple[int, ...] = (F_VERSION_1, F_MAC, F_EVENT_IDX),
                 queue_size: int | None = None, msix: bool = True) -> None:
        super().__init__(vm, dev_id)
        self._find_caps()
        cmd = vm.pci_config_read(self.devfn, 4, 2)
        vm.pci_config_write(self.devfn, 4, 2, cmd | 0x6)     # memory space, bus master
        self.set_status(0)
        self.set_status(S_ACKNOWLEDGE)
        self.set_status(S_ACKNOWLEDGE | S_DRIVER)
        offered = 0
        for sel in (0, 1):
            self._w(_DFSEL, 4, sel)
            offered |= self._r(_DF, 4) << 32 * sel
        self.features = {b for b in features if offered >> b & 1}
        want = sum(1 << b for b in self.features)
        for sel in (0, 1):
            self._w(_GFSEL, 4, sel)
            self._w(_GF, 4, want >> 32 * sel & 0xFFFFFFFF)
        self.set_status(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK)
        if msix:
            self._msix_setup(3)
        self._w(_MSIX_CONFIG, 2, 0 if msix else 0xFFFF)
        self.rx = self._queue_setup(0, queue_size, 1 if msix else 0xFFFF)
        self.tx = self._queue_setup(1, queue_size, 2 if msix else 0xFFFF)
        self.set_status(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)

    # -- configuration ------------------------------------------------------------------
    def _cfg(self, off: int, size: int) -> int:
        return self.vm.pci_config_read(self.devfn, off, size)

    def _bar(self, n: int) -> int:
        lo = self._cfg(0x10 + 4 * n, 4)
        base = lo & ~0xF
        if lo & 4:
            base |= self._cfg(0x14 + 4 * n, 4) << 32
        return base

    def _find_caps(self) -> None:
        self.vcaps: dict[int, int] = {}
        self.msix_cap = 0
        pos = self._cfg(0x34, 1)
        while pos:
            cap_id = self._cfg(pos, 1)
            if cap_id == 0x09:                                   # vendor: a virtio structure
                kind = self._cfg(pos + 3, 1)
                if kind not in self.vcaps:
                    self.vcaps[kind] = pos
            elif cap_id == 0x11:
                self.msix_cap = pos
            pos = self._cfg(pos + 1, 1)
        self.common = self._struct_addr(1)
        self.notify_base = self._struct_addr(2)
        self.notify_mult = self._cfg(self.vcaps[2] + 16, 4)

    def _struct_addr(self, kind: int) -> int:
        pos = self.vcaps[kind]
        return self._bar(self._cfg(pos + 4, 1)) + self._cfg(pos + 8, 4)

    def _r(self, off: int, size: int) -> int:
        return self.mem.read(self.common + off, size)

    def _w(self, off: int, size: int, value: int) -> None:
        self.mem.write(self.common + off, size, value)

    def status(self) -> int:
        return self._r(_STATUS, 1)

    def set_status(self, value: int) -> None:
        self._w(_STATUS, 1, value)

    # -- MSI-X (PCI 3.0 §6.8.2) ---------------------------------------------------------
    def _msix_setup(self, n: int) -> None:
        table = self._cfg(self.msix_cap + 4, 4)
        pba = self._cfg(self.msix_cap + 8, 4)
        self.msix_table = self._bar(table & 7) + (table & ~7)
        self.msix_pba = self._bar(pba & 7) + (pba & ~7)
        for v in range(n):
            entry = self.msix_table + 16 * v
            self.mem.write(entry, 4, MSI_ADDRESS)
            self.mem.write(entry + 4, 4, 0)
            self.mem.write(entry + 8, 4, MSI_VECTOR_BASE + v)
            self.mem.write(entry + 12, 4, 0)
        ctrl = self._cfg(self.msix_cap + 2, 2)
        self.vm.pci_config_write(self.devfn, self.msix_cap + 2, 2, ctrl | 0x8000)

    def mask(self, vector: int, masked: bool) -> None:
        """Set or clear the vector's mask bit (vector control, bit 0)."""
        self.mem.write(self.msix_table + 16 * vector + 12, 4, int(masked))

    def function_mask(self, masked: bool) -> None:
        """Set or clear MSI-X Function Mask in message control."""
        ctrl = self._cfg(self.msix_cap + 2, 2)
        ctrl = ctrl | 0x4000 if masked else ctrl & ~0x4000
        self.vm.pci_config_write(self.devfn, self.msix_cap + 2, 2, ctrl)

    def pending(self, vector: int) -> bool:
        return bool(self.mem.read(self.msix_pba + vector // 8, 1) >> vector % 8 & 1)

    # -- rings (§2.7) -------------------------------------------------------------------
    def _queue_setup(self, index: int, size: int | None, vector: int) -> Ring:
        self._w(_QSEL, 2, index)
        num = self._r(_QSIZE, 2)
        if size:
            self._w(_QSIZE, 2, size)
            num = size
        desc = self.alloc(16 * num, 16)
        avail = self.alloc(6 + 2 * num, 2)
        used = self.alloc(6 + 8 * num, 4)
        for off, addr in ((_QDESC, desc), (_QAVAIL, avail), (_QUSED, used)):
            self._w(off, 4, addr & 0xFFFFFFFF)
            self._w(off + 4, 4, addr >> 32)
        self._w(_QVEC, 2, vector)
        notify = self.notify_base + self._r(_QNOFF, 2) * self.notify_mult
        self._w(_QENABLE, 2, 1)
        return Ring(index, num, desc, avail, used, notify, free=list(range(num)))

    def write_desc(self, q: Ring, i: int, addr: int, length: int, flags: int, nxt: int = 0,
                   table: int | None = None) -> None:
        base = q.desc if table is None else table
        self.mem.write_bytes(base + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def publish(self, q: Ring, head: int) -> None:
        """Put ``head`` in the next avail slot and move avail->idx past it."""
        self.mem.write(q.avail + 4 + 2 * (q.avail_idx % q.num), 2, head)
        q.avail_idx = (q.avail_idx + 1) & 0xFFFF
        self.mem.write(q.avail + 2, 2, q.avail_idx)

    def add_chain(self, q: Ring, bufs: list[tuple[int, int, bool]]) -> int:
        """Link ``(addr, len, device_writable)`` buffers into a chain and publish it."""
        ids = [q.free.pop(0) for _ in bufs]
        for k, (addr, length, writable) in enumerate(bufs):
            last = k == len(bufs) - 1
            self.write_desc(q, ids[k], addr, length,
                            (DESC_F_WRITE if writable else 0) | (0 if last else DESC_F_NEXT),
                            0 if last else ids[k + 1])
        self.publish(q, ids[0])
        return ids[0]

    def kick(self, q: Ring) -> None:
        self.mem.write(q.notify, 2, q.index)

    def used_idx(self, q: Ring) -> int:
        return self.mem.read(q.used + 2, 2)

    def get_used(self, q: Ring) -> list[tuple[int, int]]:
        """The used entries the device added since the last call: (head, len)."""
        out = []
        while q.last_used != self.used_idx(q):
            e = q.used + 4 + 8 * (q.last_used % q.num)
            out.append((self.mem.read(e, 4), self.mem.read(e + 4, 4)))
            q.last_used = (q.last_used + 1) & 0xFFFF
        return out

    def set_used_event(self, q: Ring, value: int) -> None:
        self.mem.write(q.avail + 4 + 2 * q.num, 2, value)

    def set_avail_flags(self, q: Ring, flags: int) -> None:
        self.mem.write(q.avail, 2, flags)

    def avail_event(self, q: Ring) -> int:
        return self.mem.read(q.used + 4 + 8 * q.num, 2)


# -- e1000 (8254x SDM ch. 3, 13) ----------------------------------------------------------------
E1000_RCTL, E1000_RDBAL, E1000_RDBAH, E1000_RDLEN = 0x0100, 0x2800, 0x2804, 0x2808
E1000_RDH, E1000_RDT, E1000_IMS = 0x2810, 0x2818, 0x00D0
RCTL_EN, RCTL_BAM, RCTL_SECRC = 0x2, 0x8000, 0x04000000
#: RCTL.BSIZE (without BSEX) for each receive buffer size
RCTL_BSIZE = {2048: 0, 1024: 1 << 16, 512: 2 << 16, 256: 3 << 16}


class E1000Driver(PCIDriver):
    """Sets up an e1000's receive ring by hand: legacy descriptors in guest RAM, RDH/RDT."""

    def __init__(self, vm: "Machine", dev_id: str = "net-pci0", ring: int = 8,
                 bsize: int = 2048, strip_crc: bool = True) -> None:
        super().__init__(vm, dev_id)
        cmd = vm.pci_config_read(self.devfn, 4, 2)
        vm.pci_config_write(self.devfn, 4, 2, cmd | 0x6)     # memory space, bus master
        self.mmio = vm.pci_config_read(self.devfn, 0x10, 4) & ~0xF
        self.ring = ring
        self.bsize = bsize
        self.base = self.alloc(16 * ring, 16)
        self.bufs = [self.alloc(bsize) for _ in range(ring)]
        self.w(E1000_RDBAL, self.base & 0xFFFFFFFF)
        self.w(E1000_RDBAH, self.base >> 32)
        self.w(E1000_RDLEN, 16 * ring)
        self.w(E1000_RDH, 0)
        self.w(E1000_RDT, 0)
        self.tail = 0
        self.w(E1000_IMS, 0x9F)                        # RXT0, RXO, RXDMT0, LSC, TXDW...
        self.w(E1000_RCTL, RCTL_EN | RCTL_BAM | RCTL_BSIZE[bsize] |
               (RCTL_SECRC if strip_crc else 0))
        vm.run()                                       # the RCTL write's 1 s flush delay

    def w(self, reg: int, value: int) -> None:
        self.mem.write(self.mmio + reg, 4, value)

    def r(self, reg: int) -> int:
        return self.mem.read(self.mmio + reg, 4)

    def give(self, n: int, null: tuple[int, ...] = ()) -> None:
        """Hand ``n`` more descriptors to the NIC (fresh, status 0) by moving RDT;
        descriptor indices in ``null`` get buffer address 0."""
        for _ in range(n):
            i = self.tail
            addr = 0 if i in null else self.bufs[i]
            self.mem.write_bytes(self.base + 16 * i, struct.pack("<QHHBBH", addr, 0, 0, 0, 0, 0))
            self.tail = (i + 1) % self.ring
        self.w(E1000_RDT, self.tail)

    def descriptor(self, i: int) -> tuple[int, int, int, int, int, int]:
        """(addr, length, csum, status, errors, special) of descriptor ``i``."""
        return struct.unpack("<QHHBBH", self.mem.read_bytes(self.base + 16 * i, 16))
