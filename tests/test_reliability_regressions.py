"""Regression tests for the bugs the reliability work (issue 11) found, one per bug, written
as a spec driver would provoke them.  The fuzz inputs that found them are kept in
``tests/regressions/guest_inputs.json`` (replayed by ``test_fuzz_guest_inputs.py``)."""
from __future__ import annotations

import struct
import time

import pytest

import qnetlearn as qn
from qnetlearn.net.net import qemu_send_packet_async
from spec_driver import F_INDIRECT, F_NEXT, F_WRITE, MAC, MRG_RXBUF, NEEDS_RESET, VERSION_1, \
    SpecDriver
from test_fuzz_guest_inputs import time_limit

INDIRECT_DESC = 28
GUEST_MAC = bytes.fromhex("525400123456")


def frame(seq: int = 1, size: int = 98) -> bytes:
    head = GUEST_MAC + b"\x02\0\x0a\0\x02\x02\x88\xb5" + seq.to_bytes(4, "little")
    return head + bytes(size - len(head))


def machine(line: str = "-netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0",
            **kw) -> tuple[qn.Machine, SpecDriver]:
    vm = qn.Machine.from_cmdline(line, guest=None)
    vm.boot()
    return vm, SpecDriver(vm, vm.device("n0").devfn, **kw)


def accounted(nc) -> bool:
    q = nc.peer.incoming_queue if nc.peer is not None else None
    queued = sum(1 for p in q.packets if p.sender is nc) if q is not None else 0
    drops = sum(v for k, v in nc.stats.items() if k.startswith("drop: "))
    return nc.stats["tx"] == nc.stats["tx delivered"] + queued + drops


# -- 1. empty frames (qnetlearn/net/net.py) -----------------------------------------------
def test_header_only_tx_chain_does_not_wedge_the_tap():
    """A TX chain with only the virtio_net_hdr is an empty frame for a TAP without
    vnet_hdr.  The TAP answered 0 ("busy") for it: the empty frame stayed queued, the host
    saw it once per flush, and every later frame of the guest waited behind it for ever."""
    vm, d = machine("-netdev tap,id=hn0,vnet_hdr=off -device virtio-net-pci,id=n0,netdev=hn0")
    tx = d.queues[1]
    frames = [b"", frame(1), frame(2)]
    for payload in frames:
        b = d.alloc(12 + len(payload))
        vm.memory.write_bytes(b, bytes(12) + payload)
        d.add_chain(tx, [(b, 12 + len(payload), False)])
        d.kick(tx)
        vm.run()
    got = []
    while (f := vm.host().recv()) is not None:
        got.append(f)
    assert got == frames[1:]
    assert [h for h, _n in d.get_used(tx)] == [0, 1, 2]       # every chain completed
    nic = vm.device("n0").nc
    assert nic.stats["drop: empty frame"] == 1 and accounted(nic)
    assert len(vm.netdev("hn0").incoming_queue) == 0 and not vm.netdev("hn0").receive_disabled


def test_empty_frame_from_the_host_is_dropped_once_with_a_reason():
    """virtio_net_receive answered 0 for a 0-byte frame: it counted an "rx frame", the net
    layer queued the frame as "busy", and the next flush delivered it again."""
    vm, d = machine()
    d.add_rx_buffers(4)
    vm.run()
    tap = vm.netdev("hn0")
    assert qemu_send_packet_async(tap, b"", 0, None) < 0       # gone, not "queued"
    vm.host().send(frame(1))
    vm.run()
    dev = vm.device("n0")
    assert dev.stats["rx frames"] == dev.nc.stats["rx"] == 1
    assert tap.stats["drop: empty frame"] == 1 and accounted(tap)
    assert len(dev.nc.incoming_queue) == 0 and not dev.nc.receive_disabled
    (head, length), = d.get_used(d.queues[0])
    assert length == 12 + 98


# -- 2. walking indirect tables (qnetlearn/hw/virtio/virtio.py) ----------------------------
def test_self_referencing_indirect_table_is_an_error_not_a_hang():
    """With MRG_RXBUF the device first counts the writable bytes on offer
    (virtqueue_get_avail_bytes), which did not reject a nested INDIRECT descriptor: a table
    whose entry 0 points at the table looped for ever."""
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF, INDIRECT_DESC})
    rx = d.queues[0]
    table = d.alloc(16)
    d.write_desc(rx, 0, table, 16, F_INDIRECT, 0, table=table)   # entry 0 -> the table itself
    d.write_desc(rx, 0, table, 16, F_INDIRECT)
    d.publish(rx, 0)
    d.kick(rx)
    with time_limit(10):
        vm.host().send(frame())
        vm.run()
    dev = vm.device("n0")
    assert dev.broken and "indirect" in dev.broken_reason.lower()
    assert d.status() & NEEDS_RESET


def test_indirect_table_that_is_the_descriptor_table_is_an_error_not_a_hang():
    """The same loop with the guest's own descriptor table as the "indirect table"."""
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF, INDIRECT_DESC})
    rx = d.queues[0]
    d.write_desc(rx, 0, rx.desc, 16, F_INDIRECT)
    d.publish(rx, 0)
    d.kick(rx)
    with time_limit(10):
        vm.host().send(frame())
        vm.run()
    assert vm.device("n0").broken


@pytest.mark.parametrize("mergeable", [True, False])
def test_looping_indirect_table_of_4_gib_costs_no_time(mergeable: bool):
    """An indirect descriptor of len 0xFFFFFFF0 (268 million entries) whose first entry loops
    to itself: virtqueue_get_avail_bytes counted entries up to the table's size, 200 s of
    CPU per frame.  The table must lie in RAM, and a chain has at most VIRTQUEUE_MAX_SIZE
    descriptors (QEMU's virtqueue_map_desc limit)."""
    feats = {VERSION_1, MAC, INDIRECT_DESC} | ({MRG_RXBUF} if mergeable else set())
    vm, d = machine(features=feats)
    rx = d.queues[0]
    table = d.alloc(16)
    buf = d.alloc(64)
    d.write_desc(rx, 0, buf, 1, F_NEXT, 0, table=table)     # readable, loops to entry 0
    d.write_desc(rx, 0, table, 0xFFFFFFF0, F_INDIRECT)
    d.publish(rx, 0)
    d.kick(rx)
    t = time.perf_counter()
    with time_limit(10):
        vm.host().send(frame())
        vm.run()
    assert time.perf_counter() - t < 2
    assert vm.device("n0").broken


def test_long_indirect_chain_in_ram_is_bounded_too():
    """A looping indirect table that does lie in RAM (1 MiB: 65536 entries) stops at
    VIRTQUEUE_MAX_SIZE descriptors, not at the table's size (with a table of 1 GiB that
    was minutes per frame)."""
    vm, d = machine("-m 64M -netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0",
                    features={VERSION_1, MAC, MRG_RXBUF, INDIRECT_DESC})
    rx = d.queues[0]
    table = d.alloc(1 << 20)
    buf = d.alloc(64)
    d.write_desc(rx, 0, buf, 1, F_NEXT, 0, table=table)
    d.write_desc(rx, 0, table, 1 << 20, F_INDIRECT)
    d.publish(rx, 0)
    d.kick(rx)
    with time_limit(10):
        vm.host().send(frame())
        vm.run()
    dev = vm.device("n0")
    assert dev.broken and "too many descriptors" in dev.broken_reason


def test_long_but_legal_indirect_chain_is_still_fine():
    """The bound rejects nothing QEMU takes: 64 writable descriptors through an indirect
    table are used as one chain."""
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF, INDIRECT_DESC})
    rx = d.queues[0]
    n = 64
    table = d.alloc(16 * n)
    bufs = [d.alloc(32) for _ in range(n)]
    for k, b in enumerate(bufs):
        last = k == n - 1
        d.write_desc(rx, k, b, 32, F_WRITE | (0 if last else F_NEXT), 0 if last else k + 1,
                     table=table)
    d.write_desc(rx, 0, table, 16 * n, F_INDIRECT)
    d.publish(rx, 0)
    d.kick(rx)
    f = frame(7, 500)
    vm.host().send(f)
    vm.run()
    (head, length), = d.get_used(rx)
    assert length == 12 + len(f)
    data = b"".join(vm.memory.read_bytes(b, 32) for b in bufs)[:length]
    assert data[12:] == f and struct.unpack_from("<H", data, 10)[0] == 1


# -- 3. MSI-X table (qnetlearn/hw/pci/msix.py) --------------------------------------------
def test_msix_table_write_past_its_end_does_not_grow_it():
    """An 8-byte write to the last dword of the MSI-X table (the vector control of the last
    entry) extended the table by 4 bytes."""
    vm, d = machine()
    msix = vm.device("n0").msix
    size = len(msix.table)
    vm.memory.write(d.table + size - 4, 8, 0x1122334400000001)
    assert len(msix.table) == size
    assert vm.memory.read(d.table + size - 4, 4) == 1             # the entry is masked
    assert vm.memory.read(d.table + size, 4) == 0                 # nothing beyond it


# -- 4. used length (qnetlearn/hw/net/virtio_net.py) ---------------------------------------
def test_used_len_never_exceeds_a_buffer_smaller_than_the_header():
    """With MRG_RXBUF, a first buffer of 4 bytes got used len 6 (the 12-byte header was
    counted whole): virtio 1.x §2.7.8, the device MUST NOT report more than it wrote."""
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF})
    rx = d.queues[0]
    small, big = d.alloc(4), d.alloc(2048)
    d.add_chain(rx, [(small, 4, True)])
    d.add_chain(rx, [(big, 2048, True)])
    d.kick(rx)
    vm.run()
    f = frame(3)
    vm.host().send(f)
    vm.run()
    used = d.get_used(rx)
    assert used[0] == (0, 4)                 # four header bytes fit, four are reported
    assert used[1] == (1, len(f)) and vm.memory.read_bytes(big, len(f)) == f


# -- 5. TSO offsets from the guest (qnetlearn/hw/net/e1000.py) ---------------------------
TSO_CASES = {   # name: (IPCSS, TUCSS, command bits, header length, MSS, frame bytes)
    "ipcss-past-the-segment-ipv4": (200, 0, 0x02000000, 14, 100, 200),
    "ipcss-past-the-segment-ipv6": (200, 0, 0, 14, 100, 200),
    "tucss-past-the-segment-tcp": (14, 200, 0x03000000, 14, 100, 400),
    "tucss-past-the-segment-udp": (14, 200, 0x02000000, 14, 100, 400),
    "segment-of-64-kib": (0, 0, 0x02000000, 14, 0xFFFF, 0x10000),
}


@pytest.mark.parametrize("case", TSO_CASES)
def test_e1000_tso_context_past_the_segment_segments_like_qemu(case: str):
    """Found by benchmarks/fuzz_guest_inputs.py (the first case; the others are its
    neighbours): a TSO context descriptor whose IPCSS or TUCSS lies past the first
    segment, or a segment of 64 KiB, then a TSE data descriptor: the TDT write raised
    OverflowError or IndexError out of ``vm.memory.write``. Now the fields that fall past
    the segment are dropped and 16-bit lengths wrap, as in QEMU's 64 KiB ``tx.data``, and
    the segments are cut as usual."""
    from test_fuzz_guest_inputs import E_TDT, E1000Driver
    ipcss, tucss, cmd, hdr, mss, total = TSO_CASES[case]
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device e1000,id=e0,netdev=hn0",
                                 guest=None)
    vm.boot()
    e = E1000Driver(vm, vm.device("e0"))
    dext, dtyp_d, tse, eop = 0x20000000, 0x00100000, 0x04000000, 0x01000000
    ctx = struct.pack("<BBHBBHIBBH", ipcss, 0, 0, tucss, 0, 0,
                      dext | tse | cmd | (total & 0xFFFFF), 0, hdr, mss)
    buf = 0x300000
    vm.memory.write_bytes(buf, bytes(i & 0xFF for i in range(total)))
    vm.memory.write_bytes(e.tx_ring, ctx)
    vm.memory.write_bytes(e.tx_ring + 16, struct.pack(
        "<QII", buf, dext | dtyp_d | tse | eop | (total & 0xFFFFF), 0))
    e.w(E_TDT, 2)                            # must return normally
    vm.run()
    frames = list(vm.host().received)
    payload = min(total, 0x10000) - hdr      # QEMU's tx.data holds 64 KiB
    sizes = [hdr + min(mss, payload - off) for off in range(0, payload, mss)]
    assert [len(f) for f in frames] == sizes
    for k, f in enumerate(frames):           # past the IPv4 fields at IPCSS 14, frame k's
        off = k * mss                        # byte j is byte off + j of the guest's buffer
        assert f[20:] == bytes(i & 0xFF for i in range(off + 20, off + len(f)))
    if case == "segment-of-64-kib":          # 16-bit lengths wrap, as stw_be_p stores them
        assert frames[0][2:6] == bytes(4)
