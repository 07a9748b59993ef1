"""Tests for qnetlearn.guest.virtio_ring (the driver side of a split virtqueue).

The other side is a device written here from specs.md §1 alone (``SpecDevice``): it reads
the available ring and descriptor chains and writes used elements straight in guest RAM, so
the driver is checked against the specification, not against qnetlearn's device model.
"""
from __future__ import annotations

import struct

import pytest
from test_guest_kernel import FakeCPU

from qnetlearn.guest.kernel import GuestKernel
from qnetlearn.guest.virtio_ring import (VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_INDIRECT,
                                        VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
                                        VRING_USED_F_NO_NOTIFY, VringVirtqueue,
                                        vring_create_virtqueue, vring_layout, vring_need_event,
                                        vring_size)

# -- layout and the event-index rule ---------------------------------------------------------


@pytest.mark.parametrize("num,used_off,size", [
    (8, 4096, 4166), (64, 4096, 4614), (128, 4096, 5126), (256, 8192, 10246),
    (1024, 20480, 28678)])
def test_vring_size_matches_the_spec_table(num: int, used_off: int, size: int) -> None:
    """specs.md §1.1 worked values (legacy 4096 alignment, Linux vring_size)."""
    avail_off, used, total = vring_layout(num, 4096)
    assert avail_off == 16 * num                       # descriptor table: 16 bytes each
    assert used == used_off and total == size == vring_size(num, 4096)
    assert total - used == 6 + 8 * num                 # used ring
    assert avail_off + 6 + 2 * num <= used             # available ring incl. used_event


def test_modern_ring_aligns_used_to_cache_line() -> None:
    assert vring_layout(256, 64) == (4096, 4672, 4672 + 6 + 8 * 256)
    for bad in (0, 3, 65536):
        with pytest.raises(ValueError):
            vring_layout(bad, 64)


@pytest.mark.parametrize("event,old,new,expected", [
    (0, 0, 1, True), (0, 1, 2, False), (5, 0, 5, False), (5, 0, 6, True), (3, 4, 5, False),
    (0xFFFF, 0xFFFE, 0x0001, True), (0xFFFE, 0xFFFE, 0x0001, True), (10, 0xFFFE, 0x0001, False),
    (7, 7, 7, False)])
def test_vring_need_event_spec_table(event: int, old: int, new: int, expected: bool) -> None:
    assert vring_need_event(event, new, old) is expected


# -- a device from the spec ----------------------------------------------------------------------


class SpecDevice:
    """The device side of one split ring, straight from specs.md §1.3-1.6."""

    def __init__(self, vq: VringVirtqueue, event_idx: bool = False) -> None:
        self.ram = vq.kernel.cpu.ram
        self.num, self.d, self.a, self.u = vq.num, vq.desc, vq.avail, vq.used
        self.event = event_idx
        self.last_avail = 0
        self.used_idx = 0

    def desc(self, table: int, i: int) -> tuple[int, int, int, int]:
        return struct.unpack("<QIHH", self.ram.read(table + 16 * i, 16))

    def pop(self) -> tuple[int, list[tuple[int, int, int]]] | None:
        """Next available chain: (head, [(addr, len, flags)]) with indirect tables expanded."""
        if self.ram.lduw(self.a + 2) == self.last_avail:
            return None
        head = self.ram.lduw(self.a + 4 + 2 * (self.last_avail % self.num))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event:                                  # as QEMU: avail_event = last_avail
            self.ram.stw(self.u + 4 + 8 * self.num, self.last_avail)
        chain = []
        table, limit, i = self.d, self.num, head
        addr, length, flags, nxt = self.desc(table, i)
        if flags & VRING_DESC_F_INDIRECT:
            assert not flags & VRING_DESC_F_NEXT and length % 16 == 0 and length
            table, limit, i = addr, length // 16, 0
        for _ in range(limit):
            addr, length, flags, nxt = self.desc(table, i)
            assert not flags & VRING_DESC_F_INDIRECT
            chain.append((addr, length, flags))
            if not flags & VRING_DESC_F_NEXT:
                break
            i = nxt
        else:
            raise AssertionError("looped descriptor chain")
        writable = [bool(f & VRING_DESC_F_WRITE) for _a, _l, f in chain]
        assert writable == sorted(writable), "readable after writable"
        return head, chain

    def push(self, head: int, length: int) -> bool:
        """Add a used element, publish it; True if the driver wants an interrupt."""
        old = self.used_idx
        self.ram.write(self.u + 4 + 8 * (old % self.num), struct.pack("<II", head, length))
        self.used_idx = new = (old + 1) & 0xFFFF
        self.ram.stw(self.u + 2, new)
        if self.event:
            return vring_need_event(self.ram.lduw(self.a + 4 + 2 * self.num), new, old)
        return not self.ram.lduw(self.a) & VRING_AVAIL_F_NO_INTERRUPT


def make_vq(num: int = 8, event_idx: bool = False, indirect: bool = False,
            callback=None) -> tuple[VringVirtqueue, SpecDevice, list[int]]:
    cpu = FakeCPU()
    kernel = GuestKernel(cpu)
    kicks: list[int] = []
    vq = vring_create_virtqueue(kernel, 0, num, 64, lambda q: kicks.append(q.index) or True,
                                callback, "vq0", event_idx=event_idx, indirect=indirect)
    return vq, SpecDevice(vq, event_idx), kicks


# -- adding and getting buffers ------------------------------------------------------------------

def test_ring_lives_in_zeroed_guest_ram() -> None:
    vq, dev, _ = make_vq(256)
    assert vq.desc % 4096 == 0 and vq.avail == vq.desc + 4096 and vq.used == vq.desc + 4672
    ram = vq.kernel.cpu.ram
    assert ram.read(vq.desc, vring_size(256, 64)) == bytes(vring_size(256, 64))
    assert vq.num_free == 256


def test_single_buffers_in_order_and_back() -> None:
    vq, dev, _ = make_vq()
    for k in range(3):
        assert vq.virtqueue_add_inbuf([(0x200000 + 0x1000 * k, 1536)], f"rx{k}") == 0
    assert vq.num_free == 5 and vq.kernel.cpu.ram.lduw(vq.avail + 2) == 3
    popped = [dev.pop() for _ in range(3)]
    assert dev.pop() is None
    assert [c for _h, c in popped] == [[(0x200000 + 0x1000 * k, 1536, VRING_DESC_F_WRITE)]
                                       for k in range(3)]
    assert vq.virtqueue_get_buf() is None
    dev.push(popped[1][0], 110)                      # completion order is the device's
    dev.push(popped[0][0], 60)
    assert vq.virtqueue_get_buf() == ("rx1", 110)
    assert vq.virtqueue_get_buf() == ("rx0", 60)
    assert vq.virtqueue_get_buf() is None
    assert vq.num_free == 7


def test_chains_put_readable_before_writable_and_free_whole_chains() -> None:
    vq, dev, _ = make_vq()
    out = [(0x300000, 12), (0x300100, 98)]
    inn = [(0x301000, 1)]
    assert vq.virtqueue_add(out, inn, "req") == 0
    assert vq.num_free == 5
    head, chain = dev.pop()
    assert chain == [(0x300000, 12, VRING_DESC_F_NEXT), (0x300100, 98, VRING_DESC_F_NEXT),
                     (0x301000, 1, VRING_DESC_F_WRITE)]
    dev.push(head, 1)
    assert vq.virtqueue_get_buf() == ("req", 1)
    assert vq.num_free == 8
    # the freed descriptors serve the next chain (free list), the ring wraps cleanly
    for _ in range(20):
        assert vq.virtqueue_add(out, inn, "again") == 0
        h, c = dev.pop()
        assert len(c) == 3
        dev.push(h, 0)
        assert vq.virtqueue_get_buf() == ("again", 0)
    assert vq.num_free == 8


def test_indirect_descriptors_for_multi_entry_lists() -> None:
    """specs.md §1.6: one ring descriptor with INDIRECT pointing at a table of 16-byte
    descriptors chained by index within the table; single entries stay direct."""
    vq, dev, _ = make_vq(indirect=True)
    assert vq.virtqueue_add([(0x300000, 12)], [(0x301000, 1500), (0x302000, 1500)], "ind") == 0
    assert vq.num_free == 7
    ram = vq.kernel.cpu.ram
    head = ram.lduw(vq.avail + 4)
    addr, length, flags, _n = struct.unpack("<QIHH", ram.read(vq.desc + 16 * head, 16))
    assert flags == VRING_DESC_F_INDIRECT and length == 48
    entries = [struct.unpack("<QIHH", ram.read(addr + 16 * i, 16)) for i in range(3)]
    assert entries == [(0x300000, 12, VRING_DESC_F_NEXT, 1),
                       (0x301000, 1500, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2),
                       (0x302000, 1500, VRING_DESC_F_WRITE, 3)]
    h, chain = dev.pop()
    assert [c[0] for c in chain] == [0x300000, 0x301000, 0x302000]
    dev.push(h, 3000)
    assert vq.virtqueue_get_buf() == ("ind", 3000)
    assert vq.num_free == 8
    vq.virtqueue_add_inbuf([(0x400000, 100), (0x401000, 100), (0x402000, 100)], "again")
    h2 = ram.lduw(vq.avail + 6)
    assert struct.unpack("<Q", ram.read(vq.desc + 16 * h2, 8))[0] == addr   # table reused
    vq.virtqueue_add_outbuf([(0x500000, 110)], "single")
    h3 = ram.lduw(vq.avail + 8)
    assert struct.unpack("<QIHH", ram.read(vq.desc + 16 * h3, 16))[2] == 0     # direct


def test_full_ring_returns_enospc_and_kicks_for_output() -> None:
    vq, dev, kicks = make_vq(num=4)
    for k in range(4):
        assert vq.virtqueue_add_inbuf([(0x200000 + 64 * k, 64)], k) == 0
    assert vq.virtqueue_add_inbuf([(0x300000, 64)], "x") == -28
    assert kicks == []
    assert vq.virtqueue_add_outbuf([(0x300000, 64)], "y") == -28
    assert kicks == [0]                   # Linux forces a notify when output cannot be added
    vq2, _d, _k = make_vq(num=4)
    assert vq2.virtqueue_add([(1, 1)] * 3, [(2, 2)] * 2, "big") == -28    # 5 > 4 free
    with pytest.raises(ValueError):
        vq2.virtqueue_add_inbuf([(1, 1)], None)


def test_indices_wrap_past_65535() -> None:
    vq, dev, _ = make_vq(num=4, event_idx=True)
    for k in range(66_000):
        vq.virtqueue_add_inbuf([(0x200000, 64)], k)
        h, _c = dev.pop()
        dev.push(h, k & 0xFF)
        assert vq.virtqueue_get_buf() == (k, k & 0xFF)
    assert vq.avail_idx_shadow == 66_000 & 0xFFFF == vq.last_used_idx
    assert vq.num_free == 4


# -- notifications, both ways ---------------------------------------------------------------------

def test_kick_prepare_without_event_idx_follows_no_notify() -> None:
    vq, dev, kicks = make_vq()
    vq.virtqueue_add_outbuf([(0x200000, 64)], 1)
    assert vq.virtqueue_kick_prepare() is True
    ram = vq.kernel.cpu.ram
    ram.stw(vq.used, VRING_USED_F_NO_NOTIFY)           # the device is busy polling
    vq.virtqueue_add_outbuf([(0x200000, 64)], 2)
    assert vq.virtqueue_kick_prepare() is False
    ram.stw(vq.used, 0)
    assert vq.virtqueue_kick() is True and kicks == [0]


def test_kick_prepare_with_event_idx_uses_avail_event() -> None:
    """Golden README (a) step 9: after the lazy refill of 33 RX buffers the device, which
    still has 223 available, has not asked for a kick, so none is sent."""
    vq, dev, kicks = make_vq(num=256, event_idx=True)
    for k in range(256):                               # fill the ring, as RX at open
        vq.virtqueue_add_inbuf([(0x200000, 64)], k)
    assert vq.virtqueue_kick_prepare() is True         # avail_event 0 lies in [0, 256)
    for _ in range(33):
        dev.push(dev.pop()[0], 110)                    # avail_event becomes 33
        vq.virtqueue_get_buf()
    for k in range(33):
        vq.virtqueue_add_inbuf([(0x200000, 64)], k)
    assert vq.virtqueue_kick_prepare() is False        # need_event(33, 289, 256) is false
    heads = []
    while (got := dev.pop()) is not None:              # the device drains the ring
        heads.append(got[0])
    assert len(heads) == 256 and vq.kernel.cpu.ram.lduw(vq.avail_event_addr) == 289
    dev.push(heads[0], 0)
    vq.virtqueue_get_buf()
    vq.virtqueue_add_inbuf([(0x200000, 64)], "x")
    assert vq.virtqueue_kick_prepare() is True          # 289 lies in [289, 290)
    assert vq.virtqueue_kick_prepare() is False         # nothing added since


def test_interrupt_suppression_without_event_idx_uses_avail_flags() -> None:
    vq, dev, _ = make_vq()
    ram = vq.kernel.cpu.ram
    vq.virtqueue_disable_cb()
    assert ram.lduw(vq.avail) == VRING_AVAIL_F_NO_INTERRUPT
    vq.virtqueue_add_inbuf([(0x200000, 64)], "a")
    h, _ = dev.pop()
    assert dev.push(h, 1) is False                     # the device must not interrupt
    opaque = vq.virtqueue_enable_cb_prepare()
    assert ram.lduw(vq.avail) == 0 and opaque == 0
    assert vq.virtqueue_poll(opaque) is True            # ... but there is work: poll again
    assert vq.virtqueue_get_buf() == ("a", 1)
    assert vq.virtqueue_enable_cb() is True


def test_interrupt_suppression_with_event_idx_uses_used_event() -> None:
    vq, dev, _ = make_vq(event_idx=True)
    ram = vq.kernel.cpu.ram
    for k in range(4):
        vq.virtqueue_add_inbuf([(0x200000, 64)], k)
    heads = [dev.pop()[0] for _ in range(4)]
    assert dev.push(heads[0], 1) is True               # used_event 0: first buffer interrupts
    assert dev.push(heads[1], 1) is False
    assert vq.virtqueue_get_buf() == (0, 1)
    assert ram.lduw(vq.used_event_addr) == 1           # get_buf asks for the next entry
    vq.virtqueue_disable_cb()
    assert ram.lduw(vq.used_event_addr) == 0           # Linux's "hack" value
    assert ram.lduw(vq.avail) == 0                     # flags stay 0 with EVENT_IDX
    assert vq.virtqueue_get_buf() == (1, 1)
    assert ram.lduw(vq.used_event_addr) == 0           # no event index while disabled
    opaque = vq.virtqueue_enable_cb_prepare()
    assert opaque == 2 and ram.lduw(vq.used_event_addr) == 2
    assert vq.virtqueue_poll(opaque) is False
    assert dev.push(heads[2], 1) is True
    # enable_cb_delayed: an interrupt only after 3/4 of the outstanding buffers
    vq.virtqueue_get_buf()
    for k in range(4):
        vq.virtqueue_add_inbuf([(0x200000, 64)], 10 + k)
    outstanding = (vq.avail_idx_shadow - vq.last_used_idx) & 0xFFFF
    assert vq.virtqueue_enable_cb_delayed() is True
    assert ram.lduw(vq.used_event_addr) == vq.last_used_idx + outstanding * 3 // 4


def test_vring_interrupt_runs_callback_only_with_work() -> None:
    calls: list[VringVirtqueue] = []
    vq, dev, _ = make_vq(event_idx=True, callback=calls.append)
    assert vq.vring_interrupt(0x27) is False and calls == []
    vq.virtqueue_add_inbuf([(0x200000, 64)], "a")
    dev.push(dev.pop()[0], 5)
    assert vq.vring_interrupt(0x27) is True and calls == [vq]
    assert vq.event_triggered
    vq.virtqueue_disable_cb()                          # device already interrupted: no write
    assert vq.kernel.cpu.ram.lduw(vq.used_event_addr) == 0
    vq.virtqueue_enable_cb_prepare()
    assert not vq.event_triggered


def test_bad_ids_from_the_device_break_the_queue() -> None:
    vq, dev, _ = make_vq()
    vq.virtqueue_add_inbuf([(0x200000, 64)], "a")
    dev.pop()
    dev.push(9, 1)                                     # id out of range
    assert vq.virtqueue_get_buf() is None and vq.broken
    assert vq.virtqueue_add_inbuf([(0x200000, 64)], "b") == -5
    assert vq.virtqueue_notify() is False
    vq2, dev2, _ = make_vq()
    vq2.virtqueue_add_inbuf([(0x200000, 64)], "a")
    dev2.pop()
    dev2.push(3, 1)                                    # not the head of any chain
    assert vq2.virtqueue_get_buf() is None and vq2.broken
    assert "not a head" in vq2.kernel.dmesg[-1]


def test_detach_unused_buf_returns_what_the_device_never_used() -> None:
    vq, dev, _ = make_vq()
    for k in range(3):
        vq.virtqueue_add_inbuf([(0x200000, 64)], k)
    got = {vq.detach_unused_buf() for _ in range(3)}
    assert got == {0, 1, 2} and vq.detach_unused_buf() is None and vq.num_free == 8
