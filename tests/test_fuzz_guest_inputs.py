"""Fuzzing everything a guest controls (issue 11, item 2).

One input is a byte string read as a *guest program*: descriptor tables, avail rings, raw RAM
writes, virtio common configuration, notify writes, MSI-X table and PBA writes, PCI
configuration writes (any offset, size and value), e1000 registers and descriptors, frames
from the host, link changes, queue purges, main-loop runs.  The machine has three NICs:
``fz0`` (virtio-net on TAP hn0) and ``fz1`` (e1000 behind hub 0 and TAP hn1) take the
program; ``wit`` (virtio-net on TAP hn2) is a witness the program never touches.

After every operation:

* no Python exception left the emulator (``vm.memory.*``, ``vm.pci_config_write``,
  ``vm.run`` returned normally);
* every write a *device* made to guest RAM lies in what the guest handed over: the used
  rings of the virtio queues (with ``avail_event``), the writable buffers of chains the
  device popped (found by our own walk of the descriptor tables), the e1000 descriptor rings
  and the RX buffers of the descriptors in its ring, or the address of an MSI-X message the
  guest programmed;
* a broken virtio device has a reason and publishes no used entry until it is reset;
* a used entry's length never exceeds the writable bytes of its chain (virtio §2.7.8);
* MSI-X tables and PBAs keep their size;
* the main loop goes idle (no event storm), and no input runs past its time limit.

Writes are told apart by who makes them: the program's own RAM writes go through
``vm.memory`` (marked as the driver's), everything else is the devices'.  Their pre-images
are kept, so the rings and tables are also walked as they were before the operation (a
guest may place a buffer over its own tables).  Device state (queue addresses, e1000
registers) is read from the device objects; the chains are walked by our own reading of
the spec.  When the program aims DMA at the witness's memory, the witness gets no verdict.

At the end: every net client's frames are accounted for (sent = delivered + still queued +
dropped with a reason), and the witness NIC still receives and sends frames with its
interrupts after the guest has turned the fuzzed functions off.

A second decoding (``run_input(data, offloads=True)``) also lets the program take the
offload features (GUEST_CSUM, GUEST_TSO*, HOST_TSO4, ...), write its own virtio_net_hdr on
TX chains, and have the host send partial-checksum and GSO super-frames as TUNSETOFFLOAD
allows; it reads a few more bytes, so the plain decoding's kept inputs keep their meaning.

The short run is here (hypothesis + seeded random inputs); ``benchmarks/fuzz_guest_inputs.py``
runs a million inputs through the same :func:`run_input`.  Inputs that ever failed are kept
in ``tests/regressions/guest_inputs.json`` and replayed by :func:`test_kept_inputs`.
"""
from __future__ import annotations

import functools
import json
import random
import signal
import struct
import threading
import traceback
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qnetlearn as qn
from qnetlearn.net.net import qemu_purge_queued_packets, qemu_set_link
from qnetlearn.system.memory import MemTxError
from qnetlearn.system.vl import MachineConfig, parse_cmdline
from qnetlearn.trace.recorder import read_pages, write_pages
from qnetlearn.net.tap import GSO_NEEDS, TUN_F_CSUM, TUN_F_TSO_ECN
from qnetlearn.standard_headers.virtio_net import (
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GSO, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_UFO,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_UDP)
from spec_driver import (ACK, DRIVER, DRIVER_OK, EVENT_IDX, F_INDIRECT, F_NEXT, F_WRITE,
                         FEATURES_OK, MAC, MRG_RXBUF, VERSION_1, SpecDriver)

INDIRECT_DESC = 28
#: the offload features an offloads-mode program may take, one per bit of its second byte
OFFLOAD_BITS = [VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_CSUM,
                VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GSO]
MB = 1 << 20
RAM_SIZE = 8 * MB
VIRTIO_BASE = 0x200000        # the fuzzed virtio driver's rings and buffers
POOL = 0x300000               # buffers the program points descriptors at
E1000_BASE = 0x400000         # the e1000 rings and buffers
FUZZ_END = 0x600000           # the program's RAM addresses stay below this...
WITNESS_BASE = 0x700000       # ...and the witness lives above a 1 MiB gap
RUN_LIMIT = 100_000           # events per vm.run(): more means the loop never goes idle
MAX_OPS = 48
REGRESSIONS = Path(__file__).parent / "regressions" / "guest_inputs.json"

LINE = ("-m 8M -nodefaults "
        "-netdev tap,id=hn0,vnet_hdr={vnet_hdr} "
        "-device virtio-net-pci,id=fz0,netdev=hn0,event_idx={event_idx},mrg_rxbuf={mrg},"
        "indirect_desc={indirect} "
        "-netdev tap,id=hn1 -netdev hubport,id=hp0,hubid=0,netdev=hn1 "
        "-netdev hubport,id=hp1,hubid=0 -device e1000,id=fz1,netdev=hp1 "
        "-netdev tap,id=hn2 -device virtio-net-pci,id=wit,netdev=hn2")

# e1000 registers (8254x SDM table 13-2)
E_CTRL, E_STATUS, E_ICR, E_ICS, E_IMS, E_IMC, E_RCTL, E_TCTL = (0x0, 0x8, 0xC0, 0xC8, 0xD0,
                                                               0xD8, 0x100, 0x400)
E_RDBAL, E_RDBAH, E_RDLEN, E_RDH, E_RDT = 0x2800, 0x2804, 0x2808, 0x2810, 0x2818
E_TDBAL, E_TDBAH, E_TDLEN, E_TDH, E_TDT = 0x3800, 0x3804, 0x3808, 0x3810, 0x3818
E1000_REGS = [E_CTRL, E_STATUS, 0x10, 0x14, 0x18, 0x20, E_ICR, 0xC4, E_ICS, E_IMS, E_IMC,
              E_RCTL, E_TCTL, 0x410, E_RDBAL, E_RDBAH, E_RDLEN, E_RDH, E_RDT, 0x2820, 0x282C,
              E_TDBAL, E_TDBAH, E_TDLEN, E_TDH, E_TDT, 0x3820, 0x382C, 0x5000, 0x5200,
              0x5400, 0x5404, 0x5600, 0x4000, 0x40C4, 0x1FFFC, 0x1FFF8]
COMMON_OFFSETS = [0x00, 0x04, 0x08, 0x0C, 0x10, 0x12, 0x14, 0x15, 0x16, 0x18, 0x1A, 0x1C,
                  0x1E, 0x20, 0x24, 0x28, 0x2C, 0x30, 0x34]
LENS = [0, 1, 2, 4, 9, 10, 11, 12, 13, 16, 32, 60, 100, 1514, 1526, 2048, 4096, 65535,
        65536, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
VALUES = [0, 1, 2, 3, 4, 7, 8, 0xF, 0x10, 0x40, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE,
          0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
FRAME_SIZES = [0, 1, 6, 13, 14, 15, 59, 60, 64, 98, 1500, 1514, 1518, 1522, 1523, 2000, 4096,
               9000, 16384, 16385, 65535, 65536 + 4096 + 1]


# --------------------------------------------------------------------------------------
# reading the program
# --------------------------------------------------------------------------------------
class Program:
    """A byte string read as little-endian numbers; reads past the end give zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def uint(self, nbytes: int) -> int:
        chunk = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return int.from_bytes(chunk, "little")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)

    def u64(self) -> int:
        return self.uint(8)

    def below(self, n: int) -> int:
        if n <= 256:
            return self.u8() % n
        if n <= 65536:
            return self.u16() % n
        return self.u32() % n

    def pick(self, seq: list) -> Any:
        return seq[self.below(len(seq))]

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk.ljust(n, b"\0")


# --------------------------------------------------------------------------------------
# the drivers
# --------------------------------------------------------------------------------------
class Driver(SpecDriver):
    """The spec driver with its own allocation area (several NICs share guest RAM)."""

    def __init__(self, vm: qn.Machine, devfn: int, base: int, **kw: Any) -> None:
        self._base = base
        self.next_desc = [0, 0]
        super().__init__(vm, devfn, **kw)

    def _vendor_caps(self) -> dict[int, tuple[int, int, int]]:
        caps = super()._vendor_caps()
        table = self.vm.pci_config_read(self.devfn, self.msix_cap + 4, 4)
        pba = self.vm.pci_config_read(self.devfn, self.msix_cap + 8, 4)
        self.table = self.bar(table & 7) + (table & ~7)
        self.pba = self.bar(pba & 7) + (pba & ~7)
        return caps

    def alloc(self, size: int, align: int = 16) -> int:
        if self.brk < self._base:
            self.brk = self._base
        return super().alloc(size, align)


class E1000Driver:
    """Just enough of an e1000 driver to make the NIC receive and send (SDM ch. 14)."""

    NRX = NTX = 8

    def __init__(self, vm: qn.Machine, dev: Any) -> None:
        self.vm = vm
        self.mem = vm.memory
        self.devfn = dev.devfn
        cmd = vm.pci_config_read(self.devfn, 4, 2)
        vm.pci_config_write(self.devfn, 4, 2, cmd | 0x6)
        self.bar = vm.pci_config_read(self.devfn, 0x10, 4) & ~0xF
        self.rx_ring = E1000_BASE
        self.tx_ring = E1000_BASE + 0x1000
        self.bufs = E1000_BASE + 0x2000
        for i in range(self.NRX):
            self.mem.write_bytes(self.rx_ring + 16 * i,
                                 struct.pack("<QHHBBH", self.bufs + 2048 * i, 0, 0, 0, 0, 0))
        self.w(E_RDBAL, self.rx_ring)
        self.w(E_RDBAH, 0)
        self.w(E_RDLEN, 16 * self.NRX)
        self.w(E_RDH, 0)
        self.w(E_RDT, self.NRX - 1)
        self.w(E_TDBAL, self.tx_ring)
        self.w(E_TDBAH, 0)
        self.w(E_TDLEN, 16 * self.NTX)
        self.w(E_TDH, 0)
        self.w(E_TDT, 0)
        self.w(E_IMS, 0x9D)
        self.w(E_RCTL, 0x2 | 0x8000)            # EN | BAM, 2048-byte buffers
        self.w(E_TCTL, 0x2 | 0x8)               # EN | PSP
        self.tdt = 0

    def w(self, off: int, value: int, size: int = 4) -> None:
        self.mem.write(self.bar + off, size, value)

    def r(self, off: int, size: int = 4) -> int:
        return self.mem.read(self.bar + off, size)

    def send(self, frame: bytes) -> None:
        buf = self.bufs + 2048 * (self.NRX + self.tdt)
        self.mem.write_bytes(buf, frame[:2048])
        lower = min(len(frame), 2048) | 0x0B000000           # EOP | IFCS | RS
        self.mem.write_bytes(self.tx_ring + 16 * self.tdt, struct.pack("<QII", buf, lower, 0))
        self.tdt = (self.tdt + 1) % self.NTX
        self.w(E_TDT, self.tdt)


_PATTERN = bytes(range(256)) * 300


def tagged_frame(dst: bytes, seq: int, size: int, src: bytes = b"\x02\0\x0a\0\x02\x02") -> bytes:
    """A frame to ``dst`` carrying ``seq``; EtherType 0x88B5 (local experimental)."""
    head = dst + src + b"\x88\xb5" + b"QNLF" + seq.to_bytes(4, "little")
    k = seq & 0xFF
    body = head + _PATTERN[k:k + max(0, size - len(head))]
    return body[:size]


# --------------------------------------------------------------------------------------
# allowed regions of guest RAM
# --------------------------------------------------------------------------------------
class Intervals:
    """A union of half-open address ranges."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for a, b in sorted(r for r in ranges if r[1] > r[0]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]

    def covers(self, a: int, n: int) -> bool:
        k = bisect_right(self.starts, a) - 1
        return k >= 0 and a + n <= self.ends[k]


def _desc(ram: Any, table: int, i: int) -> tuple[int, int, int, int] | None:
    try:
        return struct.unpack("<QIHH", ram.read(table + 16 * i, 16))
    except MemTxError:
        return None


def chain_writable(ram: Any, desc: int, num: int, head: int) -> list[tuple[int, int]]:
    """The device-writable buffers of the chain at ``head``, walked with our own reading of
    the spec (NEXT/WRITE/INDIRECT, bounded by the table sizes and loops)."""
    out: list[tuple[int, int]] = []
    table, limit, i, depth = desc, num, head, 0
    seen: set[tuple[int, int]] = set()
    while len(seen) <= num + 4096 and (table, i) not in seen:
        seen.add((table, i))
        d = _desc(ram, table, i)
        if d is None:
            break
        addr, length, flags, nxt = d
        if flags & F_INDIRECT:
            if depth or length < 16:
                break
            table, limit, i, depth = addr, length // 16, 0, 1
            continue
        if flags & F_WRITE:
            out.append((addr, addr + length))
        if not flags & F_NEXT or nxt >= limit:
            break
        i = nxt
    return out


def writable_buffers(ram: Any, desc: int, avail: int, num: int, first: int, last: int
                     ) -> list[tuple[int, int]]:
    """Device-writable buffers of the chains at avail slots first..last (mod 2^16)."""
    out: list[tuple[int, int]] = []
    for k in range(min(((last - first) & 0xFFFF) + 1, num)):
        try:
            head = ram.lduw(avail + 4 + 2 * ((first + k) % num))
        except MemTxError:
            continue
        if head < num:
            out += chain_writable(ram, desc, num, head)
    return out


# --------------------------------------------------------------------------------------
# the outcome of one input
# --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    ops: int = 0
    escaped: list[str] = field(default_factory=list)      # exceptions out of the emulator
    violations: list[str] = field(default_factory=list)   # broken properties
    broken: list[str] = field(default_factory=list)       # "device: reason"
    frames_sent: int = 0
    frames_accounted: int = 0
    witness_ok: bool | None = False   # None: the guest aimed DMA at the witness

    @property
    def ok(self) -> bool:
        return not self.escaped and not self.violations


class PreOp:
    """Guest RAM as it was before the device's writes in ``writes`` (their pre-images)."""

    def __init__(self, ram: Any, writes: list[tuple[int, int, bytes | None]]) -> None:
        self.ram = ram
        self.size = ram.size
        self.pages: dict[int, bytearray] = {}
        for a, _n, old in reversed(writes):      # the first write's pre-image wins
            if old:
                write_pages(self.pages, a, old, lambda page: ram.read(page * 4096, 4096))

    def read(self, addr: int, n: int) -> bytes:
        if not self.pages or addr < 0 or addr + n > self.size:
            return self.ram.read(addr, n)           # (raises MemTxError outside RAM)
        return read_pages(self.pages, addr, n, self.ram.read)

    def lduw(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 2), "little")

    def ldq(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")


@functools.lru_cache(maxsize=None)
def _config(no_vnet_hdr: bool) -> MachineConfig:
    """The parsed command line (a Machine does not change its config: parse once)."""
    return parse_cmdline(LINE.format(vnet_hdr="off" if no_vnet_hdr else "on",
                                     event_idx="on", mrg="on", indirect="on"))


class GuestFuzz:
    """Runs one program against a fresh machine; see the module docstring."""

    def __init__(self, data: bytes, log: list[str] | None = None,
                 offloads: bool = False) -> None:
        self.log = log
        self.offloads = offloads
        self.p = Program(data)
        self.out = Outcome()
        self.driver_writing = 0
        self.device_writes: list[tuple[int, int, bytes | None]] = []
        self.elements_written: dict[int, bytes] = {}
        self.seq = 0
        self.witness_hit = False
        self.broken_at: dict[int, tuple] = {}
        cfg = self.p.u8()
        self.features = {VERSION_1, MAC}
        if cfg & 1:
            self.features.add(EVENT_IDX)
        if cfg & 2:
            self.features.add(MRG_RXBUF)
        if cfg & 4:
            self.features.add(INDIRECT_DESC)
        if cfg & 0x80 and cfg & 0x40:
            self.features.discard(VERSION_1)
        if offloads:                 # one more byte picks the offloads the driver takes
            o = self.p.u8()
            self.features |= {bit for k, bit in enumerate(OFFLOAD_BITS) if o >> k & 1}
        msix = not (cfg & 8 and cfg & 0x10)
        qsize = [None, 8, 2, 16][(cfg >> 5) & 3]
        vm = self.vm = qn.Machine(_config(bool(cfg & 0x10)), guest=None)
        vm.boot()
        self.ram = vm.ram
        self.fz0 = vm.device("fz0")
        self.fz1 = vm.device("fz1")
        self.wit = vm.device("wit")
        self.d = Driver(vm, self.fz0.devfn, VIRTIO_BASE, features=self.features,
                        queue_size=qsize, msix=msix)
        self.e = E1000Driver(vm, self.fz1)
        self.w = Driver(vm, self.wit.devfn, WITNESS_BASE, features={VERSION_1, MAC})
        self.wbufs: dict[int, int] = {}
        for _ in range(8):
            b = self.w.alloc(2048)
            self.wbufs[self.w.add_chain(self.w.queues[0], [(b, 2048, True)])] = b
        self.w.kick(self.w.queues[0])
        for _ in range(self.p.below(9)):
            self.op_rx_chain()
        self.d.kick(self.d.queues[0])
        vm.run()
        # from here on the devices' RAM writes are checked
        self.mem = vm.memory
        self._wrap_memory()
        self._watch_ram()
        self.bar_fz0 = {n: b.addr for n, b in self.fz0.bars.items()}
        self.bar_fz1 = {n: b.addr for n, b in self.fz1.bars.items()}

    def _watch_ram(self) -> None:
        """Every RAM write that is not the program's own is the device's: keep its address,
        size and pre-image (RAM's write methods, swapped on the instance as a recorder does)."""
        ram = self.ram
        cls = type(ram)
        mm = ram.mm

        def watch(name: str, width: int | None) -> Callable[[int, Any], None]:
            method = getattr(cls, name)

            def write(addr: int, value: Any) -> None:
                if self.driver_writing:
                    return method(ram, addr, value)
                n = len(value) if width is None else width
                old = mm[addr:addr + n] if 0 <= addr and addr + n <= ram.size else None
                method(ram, addr, value)
                self.device_writes.append((addr, n, old))
                if n == 8:                           # a used element: keep what was written
                    self.elements_written[addr] = mm[addr:addr + 8]
            return write

        for name, width in (("write", None), ("stw", 2), ("stl", 4), ("stq", 8)):
            setattr(ram, name, watch(name, width))

    def _unwatch_ram(self) -> None:
        for name in ("write", "stw", "stl", "stq"):
            self.ram.__dict__.pop(name, None)

    def _wrap_memory(self) -> None:
        """Writes of the program (the driver) to RAM are not the device's."""
        mem = self.mem
        size = self.ram.size
        write, write_bytes = mem.write, mem.write_bytes

        def w(addr: int, n: int, value: int) -> None:
            if 0 <= addr and addr + n <= size:
                self.driver_writing += 1
                try:
                    write(addr, n, value)
                finally:
                    self.driver_writing -= 1
            else:
                write(addr, n, value)

        def wb(addr: int, data: bytes) -> None:
            if 0 <= addr and addr + len(data) <= size:
                self.driver_writing += 1
                try:
                    write_bytes(addr, data)
                finally:
                    self.driver_writing -= 1
            else:
                write_bytes(addr, data)

        mem.write = w  # type: ignore[method-assign]
        mem.write_bytes = wb  # type: ignore[method-assign]

    # -- values --------------------------------------------------------------------
    @staticmethod
    def shun_witness(a: int) -> int:
        """Addresses the program hands to devices stay out of the witness's memory."""
        return a - WITNESS_BASE if WITNESS_BASE <= a < RAM_SIZE else a

    def addr(self) -> int:
        return self.shun_witness(self._addr())

    def _addr(self) -> int:
        p = self.p
        kind = p.u8() % 12
        q = self.d.queues[p.u8() & 1]
        if kind <= 3:
            return POOL + p.below(0x20000)
        if kind == 4:
            return p.pick([q.desc, q.avail, q.used]) + p.below(64)
        if kind == 5:
            return p.pick([0, 1, 0x1000, FUZZ_END - 16, FUZZ_END - 1])
        if kind == 6:
            return p.pick([RAM_SIZE - 16, RAM_SIZE - 1, RAM_SIZE, RAM_SIZE + 0x1000,
                           0xFE000000, 0xFEE00000, 0xFFFFFFFFFFFFFFF0, 1 << 63, 1 << 32])
        if kind == 7:
            return p.u64()
        if kind == 8:
            return p.u32()
        if kind == 9:
            return E1000_BASE + p.below(0x8000)
        return p.below(FUZZ_END)

    def msi_addr(self) -> int:
        return self.shun_witness(self._msi_addr())

    def _msi_addr(self) -> int:
        p = self.p
        kind = p.u8() % 8
        if kind <= 2:
            return 0xFEE00000 | p.pick([0x1004, 0x1000, 0x0, 0x4, 0xFF004, 0x80, 0xB0, 0x200C,
                                        0x100, 0xFFFFC])
        if kind == 3:       # the fuzzed devices' own registers: DMA re-entrancy
            bar = p.pick([self.bar_fz0.get(1), self.bar_fz0.get(4), self.bar_fz1.get(0)])
            return (bar or 0) + p.pick([0, 0xC, 0x14, 0x1C, 0x3000, 0x3004, 0x1000, 0x3818,
                                        0x2818, 0x800, 0xC8, 0xD0])
        if kind == 4:
            return p.pick([0xFEC00000, 0xFEC00010, 0xFEB00000, 0])
        if kind == 5:
            return p.below(FUZZ_END) & ~3
        if kind == 6:
            return p.u64()
        return p.u32()

    def value(self) -> int:
        p = self.p
        kind = p.u8() % 4
        if kind == 0:
            return p.pick(VALUES)
        if kind == 1:
            return p.u8()
        if kind == 2:
            return p.u16()
        return p.u32()

    def length(self) -> int:
        p = self.p
        return p.pick(LENS) if p.u8() & 1 else p.u16()

    # -- operations ----------------------------------------------------------------
    def op_desc(self) -> None:
        p = self.p
        q = self.d.queues[p.u8() & 1]
        i = p.u16() if p.u8() & 0x80 else p.below(q.size)
        flags = p.pick([0, F_WRITE, F_NEXT, F_NEXT | F_WRITE, F_INDIRECT, F_INDIRECT | F_NEXT,
                        F_INDIRECT | F_WRITE, p.u16()])
        nxt = p.below(q.size) if p.u8() & 3 else p.u16()
        self.d.write_desc(q, i, self.addr(), self.length(), flags, nxt) if i < q.size else \
            self.mem.write_bytes(q.desc + 16 * i, struct.pack("<QIHH", self.addr(),
                                                              self.length() & 0xFFFFFFFF,
                                                              flags, nxt))

    def op_indirect_table(self) -> None:
        p = self.p
        q = self.d.queues[p.u8() & 1]
        table = POOL + 0x20000 + 0x100 * p.below(64)
        n = p.below(6) + 1
        for k in range(n):
            flags = p.pick([0, F_WRITE, F_NEXT, F_NEXT | F_WRITE, F_INDIRECT, p.u16()])
            self.d.write_desc(q, k, self.addr(), self.length(), flags,
                              p.below(n + 1), table=table)
        i = p.below(q.size)
        self.d.write_desc(q, i, table, p.pick([16 * n, 16 * n + 8, 0, 16, 0xFFFFFFF0]),
                          F_INDIRECT | p.pick([0, 0, F_WRITE, F_NEXT]), p.below(q.size))

    def op_publish(self) -> None:
        p = self.p
        q = self.d.queues[p.u8() & 1]
        head = p.below(q.size) if p.u8() & 7 else p.u16()
        self.d.publish(q, head)

    def op_avail_idx(self) -> None:
        p = self.p
        q = self.d.queues[p.u8() & 1]
        delta = p.pick([1, 2, q.size - 1, q.size, q.size + 1, 0x8000, 0xFFFF, p.u16()])
        q.avail_idx = (q.avail_idx + delta) & 0xFFFF
        self.mem.write(q.avail + 2, 2, q.avail_idx)

    def op_flags_event(self) -> None:
        p = self.p
        q = self.d.queues[p.u8() & 1]
        v = p.pick([0, 1, 2, 0xFFFF, q.last_used, q.avail_idx, p.u16()])
        if p.u8() & 1:
            self.d.set_avail_flags(q, v)
        else:
            self.d.set_used_event(q, v)

    def op_ram(self) -> None:
        p = self.p
        a = self.addr()
        data = p.take(p.below(24) + 1)
        if 0 <= a and a + len(data) <= FUZZ_END:
            self.mem.write_bytes(a, data)

    def op_host_frame(self) -> None:
        p = self.p
        host = self.vm.host(p.pick(["hn0", "hn0", "hn1"]))
        dst = p.pick([bytes.fromhex("525400123456"), bytes.fromhex("525400123457"),
                      b"\xff" * 6, bytes.fromhex("01005e000001"), p.take(6)])
        self.seq += 1
        frame = tagged_frame(dst, self.seq, p.pick(FRAME_SIZES))
        if self.offloads and host.dev.offload and p.u8() & 1:
            host.dev.host_write(frame, self.offloaded_header(host.dev.offload))
        else:
            host.send(frame)
        if p.u8() & 1:
            self.run()

    def offloaded_header(self, offload: int) -> bytes:
        """A virtio_net_hdr the host kernel may hand over under TUNSETOFFLOAD ``offload``:
        a partial checksum and/or a GSO type it allows, with any sizes and offsets."""
        p = self.p
        flags = VIRTIO_NET_HDR_F_NEEDS_CSUM if offload & TUN_F_CSUM and p.u8() & 1 else 0
        allowed = [t for t, need in GSO_NEEDS.items() if offload & need]
        gso = p.pick(allowed) if allowed and p.u8() & 1 else 0
        if gso and offload & TUN_F_TSO_ECN and gso != VIRTIO_NET_HDR_GSO_UDP and p.u8() & 1:
            gso |= VIRTIO_NET_HDR_GSO_ECN
        return struct.pack("<BBHHHH", flags, gso, p.pick(VALUES) & 0xFFFF,
                           p.pick([0, 1, 536, 1448, 1460, 9000, 0xFFFF]),
                           p.pick(VALUES) & 0xFFFF, p.pick(VALUES) & 0xFFFF)

    def op_kick(self) -> None:
        p = self.p
        d = self.d
        if p.u8() & 3:
            d.kick(d.queues[p.u8() & 1])
        else:
            self.mem.write(d.notify_base + p.below(0x1000), p.pick([1, 2, 4, 8]), self.value())

    def op_common_write(self) -> None:
        p = self.p
        off = p.pick(COMMON_OFFSETS) if p.u8() & 7 else p.below(0x1000)
        self.mem.write(self.d.common + off, p.pick([1, 2, 4, 4, 8]), self.value())

    def op_reads(self) -> None:
        p = self.p
        d = self.d
        base = p.pick([d.common, d.isr, d.devcfg, d.notify_base, d.table, d.pba])
        self.mem.read(base + p.below(0x1000), p.pick([1, 2, 4, 8]))

    def op_msix(self) -> None:
        p = self.p
        d = self.d
        kind = p.u8() % 4
        if kind <= 1:
            e = d.table + 16 * p.below(5)
            field_ = p.pick([0, 4, 8, 12])
            v = {0: self.shun_witness(self.msi_addr() & 0xFFFFFFFF), 4: p.pick([0, 0, p.u32()]),
                 8: self.value(), 12: p.pick([0, 1, self.value()])}[field_]
            self.mem.write(e + field_, 4, v)
        elif kind == 2:
            a = self.msi_addr()
            e = d.table + 16 * p.below(4)
            self.mem.write(e, 8, a)
        else:
            self.mem.write(d.table + p.below(0x1000), p.pick([1, 2, 4, 8]), p.u64())

    def op_pci_config(self) -> None:
        p = self.p
        dev = p.pick([self.fz0, self.fz1])
        kind = p.u8() % 4
        if kind == 0:
            off, size, v = 4, 2, p.pick([0, 2, 4, 6, 0x406, 0xFFFF, p.u16()])
        elif kind == 1:
            cap = self.d.msix_cap
            off, size, v = cap + 2, 2, p.pick([0x8000, 0xC000, 0x4000, 0, p.u16()])
        else:
            off, size, v = p.u8(), p.pick([1, 2, 4, 3, 8]), self.value()
        self.vm.pci_config_write(dev.devfn, off, size, v)

    def op_run(self) -> None:
        p = self.p
        if p.u8() & 3:
            self.run()
        else:
            for _ in range(p.below(8)):
                self.vm.step()

    def op_link(self) -> None:
        p = self.p
        nc = self.vm.netdev(p.pick(["hn0", "hn1", "hp1"])) if p.u8() & 1 else \
            p.pick([self.fz0.nc, self.fz1.nc])
        qemu_set_link(nc, bool(p.u8() & 1))

    def op_purge(self) -> None:
        p = self.p
        nc = p.pick([self.fz0.nc, self.fz1.nc, self.vm.netdev("hn0"), self.vm.netdev("hn1")])
        qemu_purge_queued_packets(nc)

    def op_e1000_write(self) -> None:
        p = self.p
        off = p.pick(E1000_REGS) if p.u8() & 7 else p.below(0x20000)
        if off in (E_RDBAL, E_TDBAL):
            v = self.shun_witness(p.pick([E1000_BASE, E1000_BASE + 0x1000,
                                          self.addr() & 0xFFFFFFFF, p.u32()]))
        elif off in (E_RDLEN, E_TDLEN):
            v = p.pick([0, 128, 256, 0x80, 0xFFF80, self.value()])
        elif off in (E_RDH, E_RDT, E_TDH, E_TDT):
            v = p.pick([0, 1, 7, 8, 9, 0xFFFF, self.value()])
        else:
            v = self.value()
        self.e.w(off, v, p.pick([4, 4, 4, 1, 2, 8]))

    def op_e1000_desc(self) -> None:
        p = self.p
        e = self.e
        if p.u8() & 1:
            i = p.below(16)
            self.mem.write_bytes(e.rx_ring + 16 * i, struct.pack(
                "<QHHBBH", self.addr() & 0xFFFFFFFFFFFFFFFF, p.u16(), p.u16(), p.u8(), p.u8(),
                p.u16()))
        else:
            i = p.below(16)
            lower = p.pick([0x0B000000, 0x09000000, 0x29000000, 0x2D100000, 0x20000000,
                            p.u32()]) | p.pick([0, 60, 1514, 0xFFFF, p.u16()])
            self.mem.write_bytes(e.tx_ring + 16 * i, struct.pack(
                "<QII", self.addr() & 0xFFFFFFFFFFFFFFFF, lower & 0xFFFFFFFF, p.u32()))

    def op_e1000_read(self) -> None:
        p = self.p
        off = p.pick(E1000_REGS) if p.u8() & 3 else p.below(0x20000)
        self.e.r(off, p.pick([4, 4, 1, 2, 8]))

    def op_e1000_send(self) -> None:
        p = self.p
        self.seq += 1
        self.e.send(tagged_frame(p.pick([b"\x02\0\x0a\0\x02\x02", b"\xff" * 6]), self.seq,
                                 p.pick([14, 60, 98, 1514, 2048])))

    def op_reset_reinit(self) -> None:
        """A well-behaved driver resets the device and sets it up again (§3.1)."""
        p = self.p
        d = self.d
        d.w8(0x14, 0)
        if p.u8() & 1:
            return
        self.checkpoint("op_reset_reinit (reset)")   # a kick still pending ran before the reset
        d.w8(0x14, ACK)
        d.w8(0x14, ACK | DRIVER)
        f = sum(1 << b for b in d.features)
        for sel in (0, 1):
            d.w32(0x08, sel)
            d.w32(0x0C, (f >> (32 * sel)) & 0xFFFFFFFF)
        d.w8(0x14, ACK | DRIVER | FEATURES_OK)
        d.w16(0x10, 0 if d.msix else 0xFFFF)
        for q in d.queues:
            d.w16(0x16, q.index)
            d.w16(0x18, q.size)
            self.mem.write_bytes(q.used, bytes(6 + 8 * q.size))
            self.mem.write_bytes(q.avail, bytes(6 + 2 * q.size))
            for off, a in ((0x20, q.desc), (0x28, q.avail), (0x30, q.used)):
                d.w32(off, a & 0xFFFFFFFF)
                d.w32(off + 4, a >> 32)
            d.w16(0x1A, q.vector)
            d.w16(0x1C, 1)
            q.avail_idx = q.last_used = 0
        d.w8(0x14, ACK | DRIVER | FEATURES_OK | DRIVER_OK)

    def op_rx_chain(self) -> None:
        """A well-formed RX chain: 1-4 descriptors, maybe a readable prefix, maybe indirect."""
        p = self.p
        d = self.d
        q = d.queues[0]
        n = p.below(4) + 1
        readable = p.below(n) if p.u8() & 3 == 0 else 0
        bufs = []
        for k in range(n):
            size = p.pick([12, 64, 100, 1000, 1526, 2048, 4096])
            bufs.append((d.alloc(size) if d.brk < POOL - 8192 else POOL + p.below(0x1000), size,
                         k >= readable))
        if INDIRECT_DESC in self.features and p.u8() & 3 == 0:
            table = POOL + 0x30000 + 0x80 * p.below(64)
            for k, (a, size, wr) in enumerate(bufs):
                last = k == n - 1
                d.write_desc(q, k, a, size, (F_WRITE if wr else 0) | (0 if last else F_NEXT),
                             0 if last else k + 1, table=table)
            i = d.next_desc[0] % q.size
            d.next_desc[0] += 1
            d.write_desc(q, i, table, 16 * n, F_INDIRECT)
            d.publish(q, i)
            return
        idx = [(d.next_desc[0] + k) % q.size for k in range(n)]
        d.next_desc[0] += n
        for k, (a, size, wr) in enumerate(bufs):
            last = k == n - 1
            d.write_desc(q, idx[k], a, size, (F_WRITE if wr else 0) | (0 if last else F_NEXT),
                         0 if last else idx[k + 1])
        d.publish(q, idx[0])

    def op_tx_chain(self) -> None:
        """A well-formed TX chain: header + frame over 1-4 readable descriptors."""
        p = self.p
        d = self.d
        q = d.queues[1]
        self.seq += 1
        hdr_len = 12 if VERSION_1 in self.features or MRG_RXBUF in self.features else 10
        hdr = bytes(hdr_len)
        if self.offloads:            # flags, gso_type, hdr_len, gso_size, csum_start/offset
            hdr = struct.pack("<BB4H", p.pick([0, 1, 2, 3, 0xFF]),
                              p.pick([0, 1, 3, 4, 0x80, 0x81, 0x84, 5, 0xFF]),
                              *(p.pick(VALUES) & 0xFFFF for _ in range(4))) + hdr[10:]
        data = hdr + tagged_frame(b"\x02\0\x0a\0\x02\x02", self.seq,
                                             p.pick([14, 60, 98, 1514, 9000]))
        n = min(p.below(4) + 1, len(data))
        cuts = sorted({p.below(len(data) - 1) + 1 for _ in range(n - 1)})
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        idx = [(d.next_desc[1] + k) % q.size for k in range(len(pieces))]
        d.next_desc[1] += len(pieces)
        for k, piece in enumerate(pieces):
            a = POOL + 0x40000 + 0x4000 * ((d.next_desc[1] + k) % 16)
            self.mem.write_bytes(a, piece)
            last = k == len(pieces) - 1
            d.write_desc(q, idx[k], a, len(piece), 0 if last else F_NEXT,
                         0 if last else idx[k + 1])
        d.publish(q, idx[0])
        if p.u8() & 3:
            d.kick(q)

    OPS: list[Callable[["GuestFuzz"], None]] = []

    # -- running -------------------------------------------------------------------
    def run(self) -> None:
        n = self.vm.run(max_events=RUN_LIMIT)
        if n >= RUN_LIMIT:
            self.out.violations.append(f"main loop not idle after {RUN_LIMIT} events")
            raise _Stop

    def execute(self) -> Outcome:
        out = self.out
        ops = type(self).OPS
        try:
            while self.p.left() > 0 and out.ops < MAX_OPS:
                op = ops[self.p.u8() % len(ops)]
                if self.log is not None:
                    self.log.append(op.__name__)
                self.before = self.snapshot()
                self.device_writes.clear()
                self.elements_written.clear()
                try:
                    op(self)
                except _Stop:
                    raise
                except Exception as e:  # noqa: BLE001 - that is the finding
                    out.escaped.append(f"op {out.ops} {op.__name__}: {type(e).__name__}: {e}\n"
                                       + "".join(traceback.format_exc(limit=-8)))
                    raise _Stop
                out.ops += 1
                self.check(self.before, op.__name__)
            before = self.snapshot()
            self.device_writes.clear()
            self.elements_written.clear()
            self.run()
            self.check(before, "final run")
            self.final_checks()
        except _Stop:
            pass
        finally:
            self._unwatch_ram()
        return out

    # -- checks --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        v = self.fz0.vdev
        e = self.fz1
        return {"vqs": [(vq.desc, vq.avail, vq.used, vq.num, vq.last_avail_idx) for vq in v.vq],
                "used_idx": [vq.used_idx for vq in v.vq],
                "e1000": ((e.rdbah << 32) | (e.rdbal & ~0xF), e.rdlen, e.rdh,
                          (e.tdbah << 32) | (e.tdbal & ~0xF), e.tdlen, e.tdh, e.rxbuf_size),
                "msi": self.msi_targets()}

    def msi_targets(self) -> list[tuple[int, int]]:
        out = []
        for dev in (self.fz0, self.wit):
            t = dev.msix.table
            for v in range(dev.msix.nentries):
                lo, hi = struct.unpack_from("<II", t, 16 * v)
                a = lo | hi << 32
                out.append((a, a + 4))
        return out

    def allowed(self, snaps: list[dict[str, Any]], deep: bool) -> Intervals:
        ranges: list[tuple[int, int]] = []
        for s in snaps:
            ranges += s["msi"]
            for desc, avail, used, num, last in s["vqs"]:
                if used:
                    ranges.append((used, used + 6 + 8 * num))
            rb, rdlen, rdh, tb, tdlen, tdh, bufsize = s["e1000"]
            ranges += [(rb, rb + max(rdlen, 16 * (rdh + 1))), (tb, tb + max(tdlen, 16 * (tdh + 1)))]
        if not deep:
            return Intervals(ranges)
        for ram in (self.ram, PreOp(self.ram, self.device_writes)):
            ranges += self._buffers(ram, snaps)
        return Intervals(ranges)

    @staticmethod
    def _buffers(ram: Any, snaps: list[dict[str, Any]]) -> list[tuple[int, int]]:
        """Writable virtio buffers of the chains the device may have popped, and the
        e1000 RX buffers of the descriptors it may have used, as ``ram`` shows them."""
        ranges: list[tuple[int, int]] = []
        before, after = snaps[0], snaps[-1]
        for k in range(len(before["vqs"])):
            first, last = before["vqs"][k][4], after["vqs"][k][4]
            if before["vqs"][k][:4] != after["vqs"][k][:4]:      # reset or re-enabled
                last = (first - 1) & 0xFFFF                        # every slot
            for s in snaps:
                desc, avail, _used, num, _l = s["vqs"][k]
                if desc and avail and num:
                    ranges += writable_buffers(ram, desc, avail, num, first, last)
        # e1000: a frame may take every descriptor of the ring (with RDT past the ring, as
        # QEMU, the NIC owns all of them), and the one at RDH even if RDH is past the ring
        for snap in (before, after):
            rb, rdlen, rdh, _tb, _tl, _th, bufsize = snap["e1000"]
            size = max(before["e1000"][6], after["e1000"][6], 2048)
            try:                                  # the whole ring in one read
                addrs = [a for (a,) in struct.iter_unpack("<Q8x", ram.read(rb, rdlen & ~15))]
            except MemTxError:                    # (part of it outside RAM)
                addrs = [d[0] for j in range(min(rdlen // 16, 70000))
                         if (d := _desc(ram, rb, j)) is not None]
            if (d := _desc(ram, rb, rdh)) is not None:
                addrs.append(d[0])
            ranges += [(a, a + size) for a in addrs]
        return ranges

    def checkpoint(self, what: str) -> None:
        """Check the device's writes so far, before the driver rewrites its rings."""
        self.check(self.before, what)
        self.before = self.snapshot()

    def check(self, before: dict[str, Any], what: str) -> None:
        out = self.out
        if self.device_writes:
            if any(a + n > WITNESS_BASE and a < RAM_SIZE for a, n, _o in self.device_writes):
                self.witness_hit = True     # the guest pointed DMA at the witness's memory
            after = self.snapshot()
            cheap = self.allowed([before, after], deep=False)
            rest = [(a, n) for a, n, _o in self.device_writes if n and not cheap.covers(a, n)]
            if rest:
                deep = self.allowed([before, after], deep=True)
                bad = [(a, n) for a, n in rest if not deep.covers(a, n)]
                if bad:
                    out.violations.append(f"{what}: device wrote RAM outside what the guest "
                                          f"handed over: " +
                                          ", ".join(f"0x{a:x}+{n}" for a, n in bad[:4]))
                    raise _Stop
        for dev in (self.fz0, self.wit):
            m = dev.msix
            if len(m.table) != 16 * m.nentries or len(m.pba) != (m.nentries + 7) // 8:
                out.violations.append(f"{what}: {dev.id}'s MSI-X table or PBA changed size")
                raise _Stop
        self.check_used_lengths(before, what)
        v = self.fz0.vdev
        if v.broken:
            if not v.broken_reason:
                out.violations.append(f"{what}: fz0 broken without a reason")
                raise _Stop
            key = id(v)
            now = tuple(vq.used_idx for vq in v.vq)
            if key not in self.broken_at:
                self.broken_at[key] = now
                out.broken.append(f"fz0: {v.broken_reason}")
            elif self.broken_at[key] != now:
                out.violations.append(f"{what}: broken fz0 moved its used index")
                raise _Stop
        else:
            self.broken_at.pop(id(v), None)
        self.device_writes.clear()
        self.elements_written.clear()

    def check_used_lengths(self, before: dict[str, Any], what: str) -> None:
        """A used entry's len never exceeds the writable bytes of its chain (§2.7.8)."""
        views = None
        for k, vq in enumerate(self.fz0.vdev.vq):
            old, new = before["used_idx"][k], vq.used_idx
            if old == new or before["vqs"][k][:4] != (vq.desc, vq.avail, vq.used, vq.num):
                continue
            for j in range(min((new - old) & 0xFFFF, vq.num)):
                elem = self.elements_written.get(vq.used + 4 + 8 * ((old + j) % vq.num))
                if elem is None:                     # not filled in this op: not ours to judge
                    continue
                head, length = struct.unpack("<II", elem)
                if head >= vq.num or not length:
                    continue
                views = views or (self.ram, PreOp(self.ram, self.device_writes))
                room = max(sum(b - a for a, b in chain_writable(r, vq.desc, vq.num, head))
                           for r in views)
                if length > room:
                    self.out.violations.append(
                        f"{what}: used len {length} for chain {head} of vq{k} with {room} "
                        f"writable bytes")
                    raise _Stop

    def accounting(self) -> None:
        out = self.out
        for nc in self.vm.all_clients():
            q = nc.peer.incoming_queue if nc.peer is not None else None
            queued = sum(1 for pk in q.packets if pk.sender is nc) if q is not None else 0
            drops = sum(v for k, v in nc.stats.items() if k.startswith("drop: "))
            sent = nc.stats["tx"]
            out.frames_sent += sent
            if sent == nc.stats["tx delivered"] + queued + drops:
                out.frames_accounted += sent
            else:
                out.violations.append(
                    f"{nc.name}: sent {sent} != delivered {nc.stats['tx delivered']} + queued "
                    f"{queued} + dropped {drops}")
        n = self.fz0.nc
        st = self.fz0.stats
        got = st["rx frames"] + st["drop: rx filter"] + st["drop: frame larger than the guest buffer"]
        if n.stats["rx"] != got:
            out.violations.append(f"fz0: took {n.stats['rx']} frames but accounts for {got}")

    def final_checks(self) -> None:
        vm = self.vm
        self.accounting()
        # the guest gives up on the fuzzed functions: no decoding, no DMA
        for dev in (self.fz0, self.fz1):
            vm.pci_config_write(dev.devfn, 4, 2, 0)
        self._unwatch_ram()
        self.run()
        w = self.w
        rx, tx = w.queues
        n0 = len(vm.apic.delivered)
        host = vm.host("hn2")
        while host.recv() is not None:
            pass
        frames = [tagged_frame(bytes.fromhex("525400123458"), 0x10000 + k, 98) for k in range(3)]
        for f in frames:
            host.send(f)
        self.run()
        got = []
        for head, length in w.get_used(rx):
            got.append(self.vm.ram.read(self.wbufs[head] + 12, length - 12))
            w.publish(rx, head)
        w.kick(rx)
        reply = tagged_frame(b"\x02\0\x0a\0\x02\x02", 0x20000, 98)
        buf = w.alloc(12 + len(reply))
        vm.memory.write_bytes(buf, bytes(12) + reply)
        w.add_chain(tx, [(buf, 12 + len(reply), False)])
        w.kick(tx)
        self.run()
        sent = host.recv()
        msis = [m for m in vm.apic.delivered[n0:] if m.data == 0x27]
        self.out.witness_ok = got == frames and sent == reply and len(msis) == 3
        if self.witness_hit:
            self.out.witness_ok = None      # no verdict
        elif not self.out.witness_ok:
            self.out.violations.append(
                f"witness: received {len(got)}/3 frames (match {got == frames}), "
                f"sent {'ok' if sent == reply else sent!r:.40}, rx interrupts {len(msis)}")
        self.accounting_after = True


class _Stop(Exception):
    """Ends an input after a finding (the machine's state is no longer meaningful)."""


GuestFuzz.OPS = [GuestFuzz.op_desc, GuestFuzz.op_indirect_table, GuestFuzz.op_publish,
                 GuestFuzz.op_avail_idx, GuestFuzz.op_flags_event, GuestFuzz.op_ram,
                 GuestFuzz.op_host_frame, GuestFuzz.op_host_frame, GuestFuzz.op_kick,
                 GuestFuzz.op_common_write, GuestFuzz.op_reads, GuestFuzz.op_msix,
                 GuestFuzz.op_pci_config, GuestFuzz.op_run, GuestFuzz.op_run, GuestFuzz.op_link,
                 GuestFuzz.op_purge, GuestFuzz.op_e1000_write, GuestFuzz.op_e1000_desc,
                 GuestFuzz.op_e1000_read, GuestFuzz.op_e1000_send, GuestFuzz.op_reset_reinit,
                 GuestFuzz.op_rx_chain, GuestFuzz.op_rx_chain, GuestFuzz.op_tx_chain]


class Hang(BaseException):
    """An input ran past its time limit (a BaseException: the harness does not catch it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the main thread after ``seconds`` (POSIX; else no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(_sig: int, _frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)


def run_input(data: bytes, offloads: bool = False) -> Outcome:
    """Build a machine, run the guest program ``data`` on it, check the properties.  With
    ``offloads``, the program also picks the driver's offload features, writes its own
    virtio_net_hdr on every TX chain, and the host may send partial-checksum and GSO
    super-frames (one more byte per such choice: a separate decoding, so the kept inputs
    of the plain one keep their meaning)."""
    try:
        fuzz = GuestFuzz(data, offloads=offloads)
    except Exception as e:  # noqa: BLE001 - set-up by a well-formed driver must not fail
        out = Outcome()
        out.escaped.append(f"set-up: {type(e).__name__}: {e}\n" + traceback.format_exc(limit=-8))
        return out
    return fuzz.execute()


def describe(out: Outcome) -> str:
    return "\n".join(out.escaped + out.violations)


# --------------------------------------------------------------------------------------
# the short run
# --------------------------------------------------------------------------------------
INPUT_SECONDS = 20     # one input never needs more than a fraction of a second


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.binary(min_size=1, max_size=600))
def test_guest_programs_hypothesis(data: bytes) -> None:
    with time_limit(INPUT_SECONDS):
        out = run_input(data)
    assert out.ok, describe(out)


@pytest.mark.parametrize("chunk", range(4))
def test_guest_programs_random(chunk: int) -> None:
    rng = random.Random(0x11 * 1000 + chunk)
    for _ in range(150):
        data = rng.randbytes(rng.randrange(1, 700))
        with time_limit(INPUT_SECONDS):
            out = run_input(data)
        assert out.ok, f"input {data.hex()}\n{describe(out)}"


def kept_inputs() -> list[Any]:
    """The kept inputs, by name."""
    if not REGRESSIONS.exists():
        return []
    return [pytest.param(c, id=c["name"]) for c in json.loads(REGRESSIONS.read_text())]


@pytest.mark.parametrize("case", kept_inputs())
def test_kept_inputs(case: dict[str, str]) -> None:
    """Inputs the fuzzing found; each failed before its fix (see the case's ``found``).
    They are programs for this file's decoder: a change to it must re-check them."""
    with time_limit(INPUT_SECONDS):
        out = run_input(bytes.fromhex(case["input"]), offloads=case.get("offloads", False))
    assert out.ok, describe(out)


@pytest.mark.parametrize("chunk", range(2))
def test_guest_programs_with_offloads(chunk: int) -> None:
    """The offloads decoding: negotiated GUEST_/HOST_ offloads, the guest's own TX headers,
    and partial-checksum and GSO super-frames from the host into whatever chains the
    program posted (big-packets ones included, through op_rx_chain's shapes)."""
    rng = random.Random(0x0FF * 1000 + chunk)
    for _ in range(150):
        data = rng.randbytes(rng.randrange(1, 700))
        with time_limit(INPUT_SECONDS):
            out = run_input(data, offloads=True)
        assert out.ok, f"input {data.hex()} (offloads)\n{describe(out)}"
