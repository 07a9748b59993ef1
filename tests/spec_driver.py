"""A minimal virtio-net driver written from the virtio 1.x spec, for device tests.

It talks to the device only as a driver would: PCI configuration space
(``vm.pci_config_*``), the physical address space (``vm.memory``), and it sees interrupts
as the MSI messages that reached the APIC window (``vm.apic.delivered``).  It shares no
code with the project's own guest driver, so the device is checked against the spec, not
against ourselves.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import qnetlearn as qn

# virtio 1.x constants (§2.1, §2.7, §4.1, §5.1)
ACK, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET = 1, 2, 4, 8, 0x40
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
AVAIL_NO_INTERRUPT, USED_NO_NOTIFY = 1, 1
VERSION_1, EVENT_IDX, INDIRECT_DESC, MRG_RXBUF, MAC = 32, 29, 28, 15, 5
MSI_ADDR = 0xFEE01004
RAM_BASE = 0x200000


@dataclass
class Queue:
    index: int
    size: int
    desc: int
    avail: int
    used: int
    notify_addr: int
    vector: int
    avail_idx: int = 0
    last_used: int = 0
    free: list[int] = field(default_factory=list)


class SpecDriver:
    def __init__(self, vm: qn.Machine, devfn: int, features: set[int] | None = None,
                 queue_size: int | None = None, msix: bool = True) -> None:
        self.vm = vm
        self.devfn = devfn
        self.mem = vm.memory
        self.brk = RAM_BASE
        self.caps = self._vendor_caps()
        cmd = vm.pci_config_read(devfn, 4, 2)
        vm.pci_config_write(devfn, 4, 2, cmd | 0x6)          # memory space + bus master
        self.common = self._cap_addr(1)
        self.isr = self._cap_addr(3)
        self.devcfg = self._cap_addr(4)
        self.notify_base = self._cap_addr(2)
        self.notify_mult = vm.pci_config_read(devfn, self.caps[2][0] + 16, 4)
        self.w8(0x14, 0)
        self.w8(0x14, ACK)
        self.w8(0x14, ACK | DRIVER)
        offered = self.device_features()
        want = features if features is not None else {VERSION_1, MAC, MRG_RXBUF, EVENT_IDX}
        self.features = {b for b in want if offered >> b & 1}
        f = sum(1 << b for b in self.features)
        for sel in (0, 1):
            self.w32(0x08, sel)
            self.w32(0x0C, (f >> (32 * sel)) & 0xFFFFFFFF)
        self.w8(0x14, ACK | DRIVER | FEATURES_OK)
        assert self.r8(0x14) & FEATURES_OK
        self.msix = msix
        if msix:
            self._setup_msix(3)
        self.w16(0x10, 0 if msix else 0xFFFF)                   # config vector
        self.queues = [self._setup_queue(i, queue_size, 1 + i if msix else 0xFFFF)
                       for i in (0, 1)]
        self.w8(0x14, ACK | DRIVER | FEATURES_OK | DRIVER_OK)

    # -- helpers --------------------------------------------------------------------
    def alloc(self, size: int, align: int = 16) -> int:
        self.brk = (self.brk + align - 1) & ~(align - 1)
        addr = self.brk
        self.brk += size
        self.mem.write_bytes(addr, bytes(size))
        return addr

    def _vendor_caps(self) -> dict[int, tuple[int, int, int]]:
        caps: dict[int, tuple[int, int, int]] = {}
        ptr = self.vm.pci_config_read(self.devfn, 0x34, 1)
        while ptr:
            cap_id = self.vm.pci_config_read(self.devfn, ptr, 1)
            if cap_id == 0x09:
                cfg_type = self.vm.pci_config_read(self.devfn, ptr + 3, 1)
                bar = self.vm.pci_config_read(self.devfn, ptr + 4, 1)
                off = self.vm.pci_config_read(self.devfn, ptr + 8, 4)
                caps.setdefault(cfg_type, (ptr, bar, off))
            if cap_id == 0x11:
                self.msix_cap = ptr
            ptr = self.vm.pci_config_read(self.devfn, ptr + 1, 1)
        return caps

    def bar(self, n: int) -> int:
        lo = self.vm.pci_config_read(self.devfn, 0x10 + 4 * n, 4)
        addr = lo & ~0xF
        if lo & 0x4:
            addr |= self.vm.pci_config_read(self.devfn, 0x14 + 4 * n, 4) << 32
        return addr

    def _cap_addr(self, cfg_type: int) -> int:
        _ptr, bar, off = self.caps[cfg_type]
        return self.bar(bar) + off

    def r8(self, off: int) -> int:
        return self.mem.read(self.common + off, 1)

    def w8(self, off: int, v: int) -> None:
        self.mem.write(self.common + off, 1, v)

    def w16(self, off: int, v: int) -> None:
        self.mem.write(self.common + off, 2, v)

    def r16(self, off: int) -> int:
        return self.mem.read(self.common + off, 2)

    def w32(self, off: int, v: int) -> None:
        self.mem.write(self.common + off, 4, v)

    def device_features(self) -> int:
        f = 0
        for sel in (0, 1):
            self.w32(0x00, sel)
            f |= self.mem.read(self.common + 0x04, 4) << (32 * sel)
        return f

    def status(self) -> int:
        return self.r8(0x14)

    # -- MSI-X (PCI 3.0 §6.8.2) -------------------------------------------------------
    def _setup_msix(self, n: int) -> None:
        table = self.vm.pci_config_read(self.devfn, self.msix_cap + 4, 4)
        pba = self.vm.pci_config_read(self.devfn, self.msix_cap + 8, 4)
        self.table = self.bar(table & 7) + (table & ~7)
        self.pba = self.bar(pba & 7) + (pba & ~7)
        for v in range(n):
            e = self.table + 16 * v
            self.mem.write(e, 4, MSI_ADDR)
            self.mem.write(e + 4, 4, 0)
            self.mem.write(e + 8, 4, 0x26 + v)
            self.mem.write(e + 12, 4, 0)                       # unmasked
        ctrl = self.vm.pci_config_read(self.devfn, self.msix_cap + 2, 2)
        self.vm.pci_config_write(self.devfn, self.msix_cap + 2, 2, ctrl | 0x8000)

    def mask(self, vector: int, masked: bool) -> None:
        self.mem.write(self.table + 16 * vector + 12, 4, int(masked))

    def pending(self, vector: int) -> bool:
        return bool(self.mem.read(self.pba + vector // 8, 1) >> (vector % 8) & 1)

    # -- virtqueues (§2.7) -------------------------------------------------------------
    def _setup_queue(self, i: int, size: int | None, vector: int) -> Queue:
        self.w16(0x16, i)
        n = self.r16(0x18)
        if size:
            self.w16(0x18, size)
            n = size
        desc = self.alloc(16 * n, 16)
        avail = self.alloc(6 + 2 * n, 2)
        used = self.alloc(6 + 8 * n, 4)
        for off, addr in ((0x20, desc), (0x28, avail), (0x30, used)):
            self.w32(off, addr & 0xFFFFFFFF)
            self.w32(off + 4, addr >> 32)
        self.w16(0x1A, vector)
        notify_off = self.r16(0x1E)
        self.w16(0x1C, 1)
        return Queue(i, n, desc, avail, used, self.notify_base + notify_off * self.notify_mult,
                     vector, free=list(range(n)))

    def write_desc(self, q: Queue, i: int, addr: int, length: int, flags: int, nxt: int = 0,
                   table: int | None = None) -> None:
        base = q.desc if table is None else table
        self.mem.write_bytes(base + 16 * i, struct.pack("<QIHH", addr, length, flags, nxt))

    def publish(self, q: Queue, head: int) -> None:
        self.mem.write(q.avail + 4 + 2 * (q.avail_idx % q.size), 2, head)
        q.avail_idx = (q.avail_idx + 1) & 0xFFFF
        self.mem.write(q.avail + 2, 2, q.avail_idx)

    def add_chain(self, q: Queue, bufs: list[tuple[int, int, bool]]) -> int:
        """bufs: (addr, len, device_writable); returns the head index."""
        idx = [q.free.pop(0) for _ in bufs]
        for k, (addr, length, writable) in enumerate(bufs):
            last = k == len(bufs) - 1
            self.write_desc(q, idx[k], addr, length, (F_WRITE if writable else 0) |
                            (0 if last else F_NEXT), 0 if last else idx[k + 1])
        self.publish(q, idx[0])
        return idx[0]

    def kick(self, q: Queue) -> None:
        self.mem.write(q.notify_addr, 2, q.index)

    def add_rx_buffers(self, n: int, size: int = 1536) -> dict[int, int]:
        """Give the device ``n`` writable buffers of ``size`` bytes on the receive queue,
        one chain each, then kick; returns {head: buffer address}."""
        rx = self.queues[0]
        bufs = {}
        for _ in range(n):
            b = self.alloc(size)
            bufs[self.add_chain(rx, [(b, size, True)])] = b
        self.kick(rx)
        return bufs

    def need_kick(self, q: Queue, old: int) -> bool:
        if EVENT_IDX in self.features:
            event = self.mem.read(q.used + 4 + 8 * q.size, 2)
            return (q.avail_idx - event - 1) & 0xFFFF < (q.avail_idx - old) & 0xFFFF
        return not self.mem.read(q.used, 2) & USED_NO_NOTIFY

    def used_idx(self, q: Queue) -> int:
        return self.mem.read(q.used + 2, 2)

    def get_used(self, q: Queue) -> list[tuple[int, int]]:
        out = []
        while q.last_used != self.used_idx(q):
            e = q.used + 4 + 8 * (q.last_used % q.size)
            out.append((self.mem.read(e, 4), self.mem.read(e + 4, 4)))
            q.last_used = (q.last_used + 1) & 0xFFFF
        return out

    def set_used_event(self, q: Queue, value: int) -> None:
        self.mem.write(q.avail + 4 + 2 * q.size, 2, value)

    def set_avail_flags(self, q: Queue, flags: int) -> None:
        self.mem.write(q.avail, 2, flags)
