"""Tests for qnetlearn.guest.kernel: the services guest drivers use.

The kernel is driven through :class:`FakeCPU`, which offers exactly the vCPU interface the
guest may use (docs/internals.md) and logs every MMIO access, so each test checks the
accesses a real driver would make: Linux's interrupt flows (golden README (a) step 7 and
(b) step 5), the I/O APIC entry format (82093AA datasheet), MSI-X table programming
(specs.md §6.2-6.3). Other guest tests import FakeCPU from here.
"""
from __future__ import annotations

import ast
import pathlib
import struct
from collections import deque
from typing import Any, Callable

import pytest

from qnetlearn.guest.kernel import (APIC_EOI, DMA_BASE, FIRST_DYNAMIC_VECTOR, IOAPIC_IOREGSEL,
                                    IOAPIC_IOWIN, MSI_DEST_LOGICAL_CPU0, GuestError, GuestKernel)
from qnetlearn.net.stack import build_echo_request, mac_bytes, parse_frame
from qnetlearn.system.main_loop import MainLoop
from qnetlearn.system.memory import RAM

GUEST_MAC, HOST_MAC = "52:54:00:12:34:56", "02:00:0a:00:02:02"
MSIX_TABLE = 0xFE001000


class FakeCPU:
    """The vCPU as the guest sees it (accel/cpu.py's interface), with no machine behind:
    RAM is real, MMIO goes to handlers tests map (and is logged as ("r"|"w", addr, size,
    value)), PCI configuration spaces are byte arrays, scheduled work runs on demand."""

    def __init__(self, ram_mb: int = 16) -> None:
        self._ram = RAM(ram_mb << 20)
        self.loop = MainLoop()
        self.idt: dict[int, Callable[[int], None]] = {}
        self.work: deque[tuple[Callable[..., Any], tuple]] = deque()
        self.log: list[tuple[str, int, int, int]] = []
        self.regions: list[tuple[int, int, Any, Any]] = []
        self.config: dict[int, bytearray] = {}
        self.config_hooks: dict[int, Callable[[int, int, int], None]] = {}
        self.apic_tmr = [0] * 8
        self.loop.vcpu = self              # the loop runs scheduled guest work

    def has_work(self) -> bool:
        return bool(self.work)

    def run(self) -> None:
        fn, args = self.work.popleft()
        fn(*args)

    @property
    def ram(self) -> RAM:
        return self._ram

    @property
    def clock_ns(self) -> int:
        return self.loop.clock_ns

    def map(self, base: int, size: int, read: Any = None, write: Any = None) -> None:
        self.regions.append((base, size, read, write))

    def _find(self, addr: int) -> tuple[int, Any, Any] | None:
        for base, size, rd, wr in self.regions:
            if base <= addr < base + size:
                return addr - base, rd, wr
        return None

    def mmio_read(self, addr: int, size: int) -> int:
        val = 0
        if 0xFEE00180 <= addr < 0xFEE00200:
            val = self.apic_tmr[(addr - 0xFEE00180) >> 4]
        else:
            hit = self._find(addr)
            if hit and hit[1]:
                val = hit[1](hit[0], size)
        self.log.append(("r", addr, size, val))
        return val

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        self.log.append(("w", addr, size, value))
        hit = self._find(addr)
        if hit and hit[2]:
            hit[2](hit[0], size, value)

    def pci_config_read(self, devfn: int, off: int, size: int) -> int:
        cfg = self.config.get(devfn)
        if cfg is None:
            return (1 << 8 * size) - 1
        return int.from_bytes(cfg[off:off + size], "little")

    def pci_config_write(self, devfn: int, off: int, size: int, value: int) -> None:
        cfg = self.config.get(devfn)
        if cfg is None:
            return
        cfg[off:off + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        hook = self.config_hooks.get(devfn)
        if hook:
            hook(off, size, value)

    def schedule(self, fn: Callable[..., Any], *args: Any) -> None:
        self.work.append((fn, args))

    def timer_new(self, cb: Callable[[Any], None], opaque: Any = None, name: str = "") -> Any:
        return self.loop.timer_new_ns(cb, opaque, context="vcpu0", name=name)

    def timer_mod(self, t: Any, expire_ns: int) -> None:
        self.loop.timer_mod(t, expire_ns)

    def run_work(self, limit: int = 10_000) -> int:
        n = 0
        while self.work and n < limit:
            fn, args = self.work.popleft()
            fn(*args)
            n += 1
        return n

    def interrupt(self, vector: int) -> None:
        """The local APIC delivers ``vector``: its IDT entry runs."""
        self.idt[vector](vector)

    def writes(self) -> list[tuple[int, int]]:
        return [(a, v) for k, a, _s, v in self.log if k == "w"]


def pci_function(vendor: int, device: int, *, header_type: int = 0) -> bytearray:
    cfg = bytearray(256)
    struct.pack_into("<HH", cfg, 0, vendor, device)
    cfg[0x0E] = header_type
    return cfg


def add_msix_cap(cfg: bytearray, pos: int, nentries: int, bar: int) -> None:
    cfg[0x06] |= 0x10                                   # status: capability list
    cfg[pos], cfg[pos + 1] = 0x11, cfg[0x34]
    cfg[0x34] = pos
    struct.pack_into("<HII", cfg, pos + 2, nentries - 1, bar, 0x800 | bar)


@pytest.fixture
def cpu() -> FakeCPU:
    return FakeCPU()


@pytest.fixture
def kernel(cpu: FakeCPU) -> GuestKernel:
    return GuestKernel(cpu, "10.0.2.15", {"10.0.2.2": HOST_MAC})


# -- the one rule ------------------------------------------------------------------------

def test_guest_never_imports_hw() -> None:
    """DESIGN.md, "The one rule": guest code reaches the machine only through the vCPU."""
    guest = pathlib.Path(__file__).resolve().parents[1] / "qnetlearn" / "guest"
    files = sorted(guest.glob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = ["qnetlearn", "guest"][:max(0, 3 - node.level)] if node.level else []
                mods = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:
                    mods = [".".join(base + [alias.name]) for alias in node.names]
            elif isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            else:
                continue
            for mod in mods:
                assert not (mod + ".").startswith("qnetlearn.hw."), f"{path.name} imports {mod}"


# -- memory ------------------------------------------------------------------------------

def test_dma_alloc_bumps_from_1mib_aligned_and_zeroed(cpu: FakeCPU, kernel: GuestKernel) -> None:
    a = kernel.dma_alloc(10)
    assert a == DMA_BASE
    b = kernel.dma_alloc(100, align=4096)
    assert b % 4096 == 0 and b >= a + 10
    c = kernel.dma_alloc(3, align=64)
    assert c % 64 == 0 and c >= b + 100
    # memory someone dirtied before is handed out zeroed
    dirty = (c + 4096) & ~4095
    cpu.ram.write(dirty, b"\xaa" * 64)
    d = kernel.dma_alloc(dirty + 64 - (c + 3), align=1)
    assert cpu.ram.read(d, dirty + 64 - d) == bytes(dirty + 64 - d)


def test_dma_alloc_exhaustion_and_bad_arguments(cpu: FakeCPU, kernel: GuestKernel) -> None:
    with pytest.raises(ValueError):
        kernel.dma_alloc(0)
    with pytest.raises(ValueError):
        kernel.dma_alloc(16, align=24)
    kernel.dma_alloc(cpu.ram.size - DMA_BASE - 4096)
    with pytest.raises(MemoryError, match="out of DMA memory.*-m"):
        kernel.dma_alloc(8192)
    assert kernel.dma_alloc(4096, align=1) + 4096 == cpu.ram.size


# -- PCI ---------------------------------------------------------------------------------

def test_pci_scan_bars_and_capabilities(cpu: FakeCPU, kernel: GuestKernel) -> None:
    cpu.config[0x00] = pci_function(0x8086, 0x1237)
    cpu.config[0x08] = pci_function(0x8086, 0x7000, header_type=0x80)   # multi-function
    cpu.config[0x09] = pci_function(0x8086, 0x7010)
    cpu.config[0x18] = nic = pci_function(0x1AF4, 0x1041)
    cpu.config[0x19] = pci_function(0x1AF4, 0x1041)    # hidden: fn 0 is single-function
    struct.pack_into("<III", nic, 0x10, 0xC001, 0xFE001000, 0)      # I/O, mem32
    struct.pack_into("<II", nic, 0x20, 0x0000000C, 0x8)             # BAR4 64-bit prefetch
    add_msix_cap(nic, 0x40, 3, 1)
    nic[0x50], nic[0x51] = 0x09, nic[0x34]
    nic[0x34] = 0x50
    nic[0x60], nic[0x61] = 0x09, nic[0x34]
    nic[0x34] = 0x60
    assert kernel.pci_devices() == [(0x00, 0x8086, 0x1237), (0x08, 0x8086, 0x7000),
                                     (0x09, 0x8086, 0x7010), (0x18, 0x1AF4, 0x1041)]
    assert kernel.pci_bar(0x18, 0) == 0xC000
    assert kernel.pci_bar(0x18, 1) == 0xFE001000
    assert kernel.pci_bar(0x18, 4) == 0x8_0000_0000
    assert kernel.pci_find_capability(0x18, 0x11) == 0x40
    assert kernel.pci_find_capability(0x18, 0x05) == 0
    assert list(kernel.pci_vendor_capabilities(0x18)) == [0x60, 0x50]
    assert kernel.msix_table_size(0x18) == 3
    kernel.pci_enable_device(0x18)
    assert cpu.pci_config_read(0x18, 4, 2) == 0x3          # I/O BAR has ports: IO + MEM
    kernel.pci_set_master(0x18)
    assert cpu.pci_config_read(0x18, 4, 2) == 0x7
    assert kernel.pci_find_capability(0x00, 0x11) == 0   # no capability list at all


def test_capability_loop_is_bounded(cpu: FakeCPU, kernel: GuestKernel) -> None:
    cpu.config[0x18] = cfg = pci_function(0x1AF4, 0x1041)
    cfg[0x06] = 0x10
    cfg[0x34] = 0x40
    cfg[0x40], cfg[0x41] = 0x09, 0x40                     # points at itself
    assert len(list(kernel.pci_vendor_capabilities(0x18))) == 48


def test_pci_irq_gsi_follows_the_pc_machine_routing(cpu: FakeCPU, kernel: GuestKernel) -> None:
    cpu.config[0x18] = cfg = pci_function(0x8086, 0x100E)
    cfg[0x3D] = 1
    assert kernel.pci_irq_gsi(0x18) == 11        # slot 3 INTA#: PIRQD -> GSI 11 (golden (b))
    cpu.config[0x20] = cfg = pci_function(0x8086, 0x100E)
    cfg[0x3D] = 1
    assert kernel.pci_irq_gsi(0x20) == 10


# -- interrupts ----------------------------------------------------------------------------

def test_vectors_count_up_from_0x26(kernel: GuestKernel) -> None:
    assert [kernel.alloc_irq_vector() for _ in range(3)] == [0x26, 0x27, 0x28]
    assert FIRST_DYNAMIC_VECTOR == 0x26


def test_vectors_run_out(kernel: GuestKernel) -> None:
    with pytest.raises(GuestError):
        for _ in range(256):
            kernel.alloc_irq_vector()


def test_edge_irq_eoi_before_handler_and_counts(cpu: FakeCPU, kernel: GuestKernel) -> None:
    seen: list[tuple[int, int]] = []
    v = kernel.alloc_irq_vector()
    kernel.request_irq(v, lambda vec: seen.append((vec, len(cpu.log))), "test-edge")
    assert kernel.interrupts == {"test-edge": 0}
    cpu.interrupt(v)
    cpu.interrupt(v)
    assert cpu.log == [("w", APIC_EOI, 4, 0)] * 2
    assert seen == [(v, 1), (v, 2)]                 # the handler ran after its EOI
    assert kernel.interrupts["test-edge"] == 2
    with pytest.raises(GuestError):
        kernel.request_irq(v, print, "again")


def test_level_irq_handler_then_tmr_then_eoi(cpu: FakeCPU, kernel: GuestKernel) -> None:
    """Golden (b) step 4-5: the e1000 handler's register accesses, then ``apic_mem_readl
    0x190`` (TMR word 1 for vector 38), then the EOI."""
    order: list[str] = []
    cpu.apic_tmr[1] = 1 << (38 - 32)
    kernel.request_irq(38, lambda vec: order.append("handler"), "eth0", level=True)
    cpu.interrupt(38)
    assert order == ["handler"]
    assert cpu.log == [("r", 0xFEE00190, 4, 0x40), ("w", APIC_EOI, 4, 0)]
    assert kernel.interrupts["eth0"] == 1
    assert not kernel.stats["level irq with TMR bit clear"]


def test_ioapic_route_writes_high_then_low(cpu: FakeCPU, kernel: GuestKernel) -> None:
    kernel.ioapic_route(11, 0x26, level=True)
    assert cpu.writes() == [(IOAPIC_IOREGSEL, 0x10 + 2 * 11 + 1), (IOAPIC_IOWIN, 1 << 24),
                            (IOAPIC_IOREGSEL, 0x10 + 2 * 11), (IOAPIC_IOWIN, 0x8826)]
    cpu.log.clear()
    kernel.ioapic_route(4, 0x30, level=False)
    assert cpu.writes()[-1] == (IOAPIC_IOWIN, 0x0830)   # edge, logical, unmasked


def _msix_function(cpu: FakeCPU, nentries: int = 3) -> tuple[int, dict[int, int]]:
    """A function with an MSI-X table in BAR 1; returns (devfn, the table as a dict)."""
    cpu.config[0x18] = cfg = pci_function(0x1AF4, 0x1041)
    struct.pack_into("<I", cfg, 0x14, MSIX_TABLE)
    add_msix_cap(cfg, 0x40, nentries, 1)
    table: dict[int, int] = {}
    cpu.map(MSIX_TABLE, 16 * nentries, lambda off, size: table.get(off, 0),
            lambda off, size, val: table.__setitem__(off, val))
    return 0x18, table


def test_msix_enable_programs_entries_masked(cpu: FakeCPU, kernel: GuestKernel) -> None:
    devfn, table = _msix_function(cpu)
    vectors = [kernel.alloc_irq_vector() for _ in range(3)]
    assert kernel.msix_enable(devfn, list(enumerate(vectors))) == MSIX_TABLE
    for i, v in enumerate(vectors):
        e = 16 * i
        assert (table[e], table[e + 4], table[e + 8], table[e + 12]) == (
            MSI_DEST_LOGICAL_CPU0, 0, v, 1)
    assert MSI_DEST_LOGICAL_CPU0 == 0xFEE01004
    ctrl = cpu.pci_config_read(devfn, 0x42, 2)
    assert ctrl & 0x8000 and not ctrl & 0x4000             # enabled, function unmasked
    assert cpu.pci_config_read(devfn, 4, 2) & 0x400        # INTx disabled
    kernel.request_irq(vectors[1], lambda v: None, "virtio0-input.0")
    assert table[16 + 12] == 0                             # request_irq unmasks the entry
    with pytest.raises(GuestError):
        kernel.msix_enable(devfn, [(3, 0x40)])


def test_first_msix_interrupt_moves_the_vector_under_mask(cpu: FakeCPU,
                                                          kernel: GuestKernel) -> None:
    """Golden README (a) step 7, virtio-ping1.trace: mask entry 1, read entry 0 addr_lo,
    rewrite entry 1, read its data back, unmask, then EOI; later interrupts only EOI."""
    devfn, table = _msix_function(cpu)
    vectors = [kernel.alloc_irq_vector() for _ in range(3)]
    kernel.msix_enable(devfn, list(enumerate(vectors)))
    handled: list[int] = []
    kernel.request_irq(vectors[1], handled.append, "virtio0-input.0")
    cpu.log.clear()
    cpu.interrupt(0x27)
    e1 = MSIX_TABLE + 16
    assert cpu.log == [
        ("w", e1 + 12, 4, 1),
        ("r", MSIX_TABLE, 4, 0xFEE01004),
        ("w", e1 + 0, 4, 0xFEE01004),
        ("w", e1 + 4, 4, 0),
        ("w", e1 + 8, 4, 0x27),
        ("r", e1 + 8, 4, 0x27),
        ("w", e1 + 12, 4, 0),
        ("w", APIC_EOI, 4, 0),
    ]
    assert handled == [0x27]
    cpu.log.clear()
    cpu.interrupt(0x27)
    assert cpu.log == [("w", APIC_EOI, 4, 0)]
    assert kernel.interrupts["virtio0-input.0"] == 2


# -- NAPI -------------------------------------------------------------------------------------

def test_napi_runs_once_when_scheduled_twice(cpu: FakeCPU, kernel: GuestKernel) -> None:
    runs: list[int] = []

    def poll(budget: int) -> int:
        runs.append(budget)
        kernel.napi_complete_done(poll, 0)
        return 0

    assert kernel.napi_schedule(poll)
    assert not kernel.napi_schedule(poll)
    cpu.run_work()
    assert runs == [64]
    assert not kernel.napi_is_scheduled(poll)
    kernel.napi_schedule(poll)
    cpu.run_work()
    assert runs == [64, 64]


def test_napi_rescheduled_while_polling_runs_again(cpu: FakeCPU, kernel: GuestKernel) -> None:
    runs: list[bool] = []

    def poll(budget: int) -> int:
        if not runs:
            kernel.napi_schedule(poll)           # an interrupt raced with the poll
        runs.append(kernel.napi_complete_done(poll, 1))
        return 1

    kernel.napi_schedule(poll)
    cpu.run_work()
    assert runs == [False, True]


def test_napi_repolls_while_budget_is_used_up(cpu: FakeCPU, kernel: GuestKernel) -> None:
    left = [150]

    def poll(budget: int) -> int:
        n = min(budget, left[0])
        left[0] -= n
        if n < budget:
            kernel.napi_complete_done(poll, n)
        return n

    kernel.napi_schedule(poll)
    assert cpu.run_work() == 3                   # 64 + 64 + 22
    assert left == [0] and not kernel.napi_is_scheduled(poll)


def test_napi_poll_without_complete_is_completed(cpu: FakeCPU, kernel: GuestKernel) -> None:
    def poll(budget: int) -> int:
        return 0

    kernel.napi_schedule(poll)
    cpu.run_work()
    assert not kernel.napi_is_scheduled(poll)
    assert kernel.napi_schedule(poll)


# -- net devices -----------------------------------------------------------------------------

class LoopDev:
    def __init__(self, mac: str) -> None:
        self.mac = mac_bytes(mac)
        self.sent: list[bytes] = []

    def xmit(self, frame: bytes) -> None:
        self.sent.append(frame)


def test_netdevs_are_named_and_share_one_stack(kernel: GuestKernel) -> None:
    eth0, eth1 = LoopDev(GUEST_MAC), LoopDev("52:54:00:12:34:57")
    assert kernel.register_netdev(eth0) == "eth0"
    assert kernel.register_netdev(eth1) == "eth1"
    assert eth0.name == "eth0"
    stack = kernel.stack
    assert stack is not None and stack.mac == eth0.mac and stack.ip == "10.0.2.15"
    assert stack.arp["10.0.2.2"] == mac_bytes(HOST_MAC)          # static ARP
    req = build_echo_request(HOST_MAC, GUEST_MAC, "10.0.2.2", "10.0.2.15", 7, 1)
    kernel.netif_receive_skb(eth1, req)
    assert len(eth0.sent) == 1 and not eth1.sent        # replies leave by the first NIC
    reply = parse_frame(eth0.sent[0])
    assert (reply.type, reply.ident, reply.seq, reply.dst) == (0, 7, 1, mac_bytes(HOST_MAC))


def test_receive_before_any_netdev_is_counted(kernel: GuestKernel) -> None:
    kernel.netif_receive_skb(None, b"\0" * 60)
    assert kernel.stats["rx dropped: no stack"] == 1
