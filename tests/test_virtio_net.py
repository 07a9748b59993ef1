"""virtio-net over virtio-pci, driven as a driver written from the spec would (guest=None)."""
from __future__ import annotations

import struct

import pytest

import qnetlearn as qn
from qnetlearn.net.stack import build_echo_request
from spec_driver import EVENT_IDX, F_INDIRECT, F_NEXT, F_WRITE, MAC, MRG_RXBUF, NEEDS_RESET, \
    VERSION_1, SpecDriver

LINE = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
GUEST_MAC = "52:54:00:12:34:56"
INDIRECT_DESC_BIT = 28
GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO = 1, 7, 8, 9, 10
#: the receive offloads a Linux guest takes (GUEST_TSO4/6 make it post "big packets")
GUEST_OFFLOADS = {GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO}


def frame(seq: int = 1) -> bytes:
    return build_echo_request("02:00:0a:00:02:02", GUEST_MAC, "10.0.2.2", "10.0.2.15",
                              0x77, seq)


def machine(line: str = LINE, **kw) -> tuple[qn.Machine, SpecDriver]:
    vm = qn.Machine.from_cmdline(line, guest=None)
    vm.boot()
    dev = vm.device("net-pci0")
    return vm, SpecDriver(vm, dev.devfn, **kw)


def msi_data(vm: qn.Machine) -> list[int]:
    return [m.data for m in vm.apic.delivered]


def test_rx_one_frame_into_the_guest_buffer():
    vm, d = machine()
    bufs = d.add_rx_buffers(8)
    vm.run()
    f = frame()
    vm.host().send(f)
    vm.run()
    (head, length), = d.get_used(d.queues[0])
    assert length == 12 + len(f) == 110          # virtio_net_hdr_v1 + the 98-byte frame
    data = vm.memory.read_bytes(bufs[head], length)
    hdr = struct.unpack("<BBHHHHH", data[:12])
    assert hdr == (0, 0, 0, 0, 0, 0, 1)           # no offload flags, GSO_NONE, num_buffers 1
    assert data[12:] == f
    assert msi_data(vm) == [0x27]                 # MSI-X entry 1 = RX vector
    m = vm.apic.delivered[0]
    assert (m.address, m.vector, m.dest, m.dest_mode) == (0xFEE01004, 0x27, 1, 1)


def test_tx_chain_split_over_three_descriptors_reaches_the_host():
    vm, d = machine()
    d.add_rx_buffers(4)
    vm.run()
    f = frame(7)
    hdr = bytes(12)
    a = d.alloc(12)
    b = d.alloc(20)
    c = d.alloc(len(f) - 20)
    vm.memory.write_bytes(a, hdr)
    vm.memory.write_bytes(b, f[:20])
    vm.memory.write_bytes(c, f[20:])
    tx = d.queues[1]
    head = d.add_chain(tx, [(a, 12, False), (b, 20, False), (c, len(f) - 20, False)])
    d.kick(tx)
    vm.run()
    got = vm.host().recv()
    assert got == f
    assert d.get_used(tx) == [(head, 0)]          # QEMU reports used len 0 for TX
    assert msi_data(vm)[-1] == 0x28


def test_tx_indirect_chain():
    vm, d = machine(features={VERSION_1, MAC, INDIRECT_DESC_BIT})
    f = frame(9)
    buf = d.alloc(12 + len(f))
    vm.memory.write_bytes(buf, bytes(12) + f)
    table = d.alloc(32)
    d.write_desc(d.queues[1], 0, buf, 12, F_NEXT, 1, table=table)
    d.write_desc(d.queues[1], 1, buf + 12, len(f), 0, 0, table=table)
    tx = d.queues[1]
    d.write_desc(tx, 0, table, 32, F_INDIRECT)
    d.publish(tx, 0)
    d.kick(tx)
    vm.run()
    assert vm.host().recv() == f


def test_direct_chain_ending_in_an_indirect_descriptor_is_accepted():
    """virtio 1.x §2.7.5.3.2: the device MUST handle direct descriptors followed by one
    INDIRECT descriptor (QEMU does not; we follow the spec)."""
    vm, d = machine(features={VERSION_1, MAC, INDIRECT_DESC_BIT})
    f = frame(10)
    hdr = d.alloc(12)
    data = d.alloc(len(f))
    vm.memory.write_bytes(data, f)
    table = d.alloc(16)
    tx = d.queues[1]
    d.write_desc(tx, 0, data, len(f), 0, 0, table=table)
    d.write_desc(tx, 0, hdr, 12, F_NEXT, 1)
    d.write_desc(tx, 1, table, 16, F_INDIRECT)
    d.publish(tx, 0)
    d.kick(tx)
    vm.run()
    assert vm.host().recv() == f
    assert not vm.device("net-pci0").broken


def test_msix_masked_vector_sets_pba_then_delivers_on_unmask():
    vm, d = machine()
    d.add_rx_buffers(4)
    vm.run()
    d.mask(1, True)
    vm.host().send(frame())
    vm.run()
    assert d.used_idx(d.queues[0]) == 1
    assert msi_data(vm) == []
    assert d.pending(1)
    d.mask(1, False)
    assert msi_data(vm) == [0x27]
    assert not d.pending(1)


def test_function_mask_holds_every_vector():
    vm, d = machine()
    d.add_rx_buffers(4)
    vm.run()
    ctrl = vm.pci_config_read(d.devfn, d.msix_cap + 2, 2)
    vm.pci_config_write(d.devfn, d.msix_cap + 2, 2, ctrl | 0x4000)
    vm.host().send(frame())
    vm.run()
    assert msi_data(vm) == [] and d.pending(1)
    vm.pci_config_write(d.devfn, d.msix_cap + 2, 2, ctrl & ~0x4000)
    assert msi_data(vm) == [0x27]


def test_no_interrupt_flag_suppresses_without_event_idx():
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF})
    d.add_rx_buffers(4)
    vm.run()
    d.set_avail_flags(d.queues[0], 1)            # VRING_AVAIL_F_NO_INTERRUPT
    vm.host().send(frame(1))
    vm.run()
    assert d.used_idx(d.queues[0]) == 1 and msi_data(vm) == []
    d.set_avail_flags(d.queues[0], 0)
    vm.host().send(frame(2))
    vm.run()
    assert msi_data(vm) == [0x27]


def test_event_idx_interrupts_only_when_used_event_is_passed():
    vm, d = machine(features={VERSION_1, MAC, MRG_RXBUF, EVENT_IDX})
    d.add_rx_buffers(8)
    vm.run()
    rx = d.queues[0]
    vm.host().send(frame(1))
    vm.run()
    assert msi_data(vm) == [0x27]                 # the first one always (nothing signalled yet)
    d.set_used_event(rx, 3)                       # "interrupt me when used idx passes 3"
    for seq in (2, 3):
        vm.host().send(frame(seq))
        vm.run()
    assert d.used_idx(rx) == 3 and len(msi_data(vm)) == 1
    vm.host().send(frame(4))
    vm.run()
    assert len(msi_data(vm)) == 2


def test_event_idx_kick_suppression_on_tx():
    """After the TX bottom half, avail_event tells the driver when to kick (§2.7.10)."""
    vm, d = machine()
    tx = d.queues[1]
    f = frame()
    for seq in range(3):
        buf = d.alloc(12 + len(f))
        vm.memory.write_bytes(buf, bytes(12) + f)
        old = tx.avail_idx
        d.add_chain(tx, [(buf, 12 + len(f), False)])
        assert d.need_kick(tx, old)
        d.kick(tx)
        vm.run()
    assert [vm.host().recv() for _ in range(3)] == [f, f, f]


def bad_chain(d: SpecDriver, kind: str) -> None:
    """Publish one malformed RX chain of the given kind."""
    q = d.queues[0]
    buf = d.alloc(1536)
    if kind == "index out of range":
        d.publish(q, q.size + 5)
    elif kind == "loop":
        d.write_desc(q, 0, buf, 100, F_WRITE | F_NEXT, 1)
        d.write_desc(q, 1, buf, 100, F_WRITE | F_NEXT, 0)
        d.publish(q, 0)
    elif kind == "next out of range":
        d.write_desc(q, 0, buf, 100, F_WRITE | F_NEXT, q.size)
        d.publish(q, 0)
    elif kind == "buffer outside RAM":
        d.write_desc(q, 0, 0x7FFF_FFFF_0000, 1536, F_WRITE)
        d.publish(q, 0)
    elif kind == "read-only buffer":
        d.write_desc(q, 0, buf, 1536, 0)
        d.publish(q, 0)
    elif kind == "zero length":
        d.write_desc(q, 0, buf, 0, F_WRITE)
        d.publish(q, 0)
    elif kind == "readable after writable":
        d.write_desc(q, 0, buf, 100, F_WRITE | F_NEXT, 1)
        d.write_desc(q, 1, buf + 100, 100, 0)
        d.publish(q, 0)
    elif kind == "indirect table of bad size":
        d.write_desc(q, 0, buf, 24, F_INDIRECT)
        d.publish(q, 0)
    elif kind == "avail idx jumps past the ring":
        q.avail_idx = (q.avail_idx + q.size + 3) & 0xFFFF
        d.mem.write(q.avail + 2, 2, q.avail_idx)
    else:  # pragma: no cover
        raise ValueError(kind)


KINDS = ["index out of range", "loop", "next out of range", "buffer outside RAM",
         "read-only buffer", "zero length", "readable after writable",
         "indirect table of bad size", "avail idx jumps past the ring"]
#: with mergeable buffers QEMU first counts the writable bytes on offer
#: (virtqueue_avail_bytes); these chains offer fewer than a frame needs, so the frame waits
#: for more buffers instead of popping the bad chain
WAIT_WHEN_MERGEABLE = {"read-only buffer", "zero length", "readable after writable"}


@pytest.mark.parametrize("offloads", [False, True])
@pytest.mark.parametrize("mergeable", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_malformed_chain_marks_the_device_broken(kind, mergeable, offloads):
    features = {VERSION_1, MAC, EVENT_IDX, INDIRECT_DESC_BIT} | ({MRG_RXBUF} if mergeable else set())
    features |= GUEST_OFFLOADS if offloads else set()
    vm, d = machine(features=features)
    bad_chain(d, kind)
    vm.host().send(frame())
    vm.run()                                      # no exception escapes the emulator
    dev = vm.device("net-pci0")
    if mergeable and kind in WAIT_WHEN_MERGEABLE:
        assert not dev.broken
        assert len(dev.nc.incoming_queue) == 1    # waiting, not lost
        return
    assert dev.broken and dev.broken_reason
    assert d.status() & NEEDS_RESET
    assert 0x26 in msi_data(vm)                   # the config-change interrupt (entry 0)
    assert d.used_idx(d.queues[0]) == 0           # nothing was used
    before = vm.ram.read(d.queues[0].used, 8)
    vm.host().send(frame(2))                      # the broken device processes nothing more
    vm.run()
    assert vm.ram.read(d.queues[0].used, 8) == before
    d.w8(0x14, 0)                                 # reset by the driver
    assert not dev.broken and d.status() == 0


def test_back_pressure_frames_wait_and_arrive_in_order():
    vm, d = machine()
    rx = d.queues[0]
    bufs = d.add_rx_buffers(2)
    vm.run()
    host = vm.host()
    frames = [frame(seq) for seq in range(1, 7)]
    for f in frames:
        host.send(f)
    vm.run()
    nic = vm.device("net-pci0").nc
    tap = vm.netdev("hn0")
    assert d.used_idx(rx) == 2
    assert len(nic.incoming_queue) == 1           # the third frame waits in the NetQueue
    assert not vm.taps["hn0"].read_poll           # and the TAP is no longer read
    assert len(vm.taps["hn0"].fd.to_qemu) == 3    # the rest stay in the kernel
    assert tap.stats["tx"] == tap.stats["tx delivered"] + len(nic.incoming_queue) + \
        sum(v for k, v in tap.stats.items() if k.startswith("drop: "))
    got = [vm.memory.read_bytes(bufs[h] + 12, n - 12) for h, n in d.get_used(rx)]
    bufs.update(d.add_rx_buffers(4))              # the guest refills and kicks
    vm.run()
    got += [vm.memory.read_bytes(bufs[h] + 12, n - 12) for h, n in d.get_used(rx)]
    assert got == frames                          # none lost, in order
    assert vm.taps["hn0"].read_poll
    assert tap.stats["tx"] == tap.stats["tx delivered"] == 6
    assert not any(k.startswith("drop: ") for k in tap.stats)


def test_ring_indices_wrap_past_65536():
    vm, d = machine(queue_size=8)
    rx = d.queues[0]
    bufs = d.add_rx_buffers(8, 256)
    vm.run()
    host = vm.host()
    total = 0
    seen_wrap = False
    while total < 65536 + 40:
        for _ in range(4):
            host.send(frame(total % 65536))
            total += 1
        vm.run()
        used = d.get_used(rx)
        assert [n for _h, n in used] == [110] * 4
        for h, _n in used:
            d.write_desc(rx, h, bufs[h], 256, F_WRITE)
            d.publish(rx, h)
        seen_wrap |= d.used_idx(rx) < 8
    assert seen_wrap and rx.last_used == total % 65536
    assert vm.device("net-pci0").vdev.rx_vq.last_avail_idx == total % 65536
    assert not vm.device("net-pci0").broken


def test_a_recording_shows_the_broken_reason_only_from_the_step_that_broke_it():
    vm, d = machine(features={VERSION_1, MAC})
    with vm.record() as rec:
        bad_chain(d, "loop")
        vm.host().send(frame())
        vm.run()
        d.w8(0x14, 0)                             # the driver resets the device
    err = rec.find("virtio_error")[0]

    def dev(i: int) -> dict:
        return rec.state(i)["devices"]["net-pci0"]

    assert (dev(err - 1)["broken"], dev(err - 1)["broken_reason"]) == (False, "")
    broken = next(i for i in range(err, len(rec)) if dev(i)["broken"])
    assert "loop" in dev(broken)["broken_reason"].lower()
    assert (dev(len(rec) - 1)["broken"], dev(len(rec) - 1)["broken_reason"]) == (False, "")


# -- receive offloads: the TAP's TUNSETOFFLOAD follows the driver's GUEST_ features ---------

def test_offered_offloads_are_qemu_72_defaults_and_reach_the_tap():
    vm, d = machine(features={VERSION_1, MAC} | GUEST_OFFLOADS)
    offered = d.device_features()
    # CSUM GUEST_CSUM GSO GUEST_TSO4/TSO6/ECN/UFO HOST_TSO4/TSO6/ECN/UFO (bits 0-1, 6-14)
    assert offered & 0x7FC3 == 0x7FC3
    assert vm.host().dev.offload == 0x1F               # TUN_F_CSUM | TSO4 | TSO6 | TSO_ECN | UFO
    vm2, _d2 = machine(LINE + ",guest_csum=off", features={VERSION_1, MAC} | GUEST_OFFLOADS)
    assert vm2.host().dev.offload == 0   # segmentation offloads need the checksum one
    with pytest.raises(ValueError, match="TUNSETOFFLOAD"):
        vm2.host().dev.host_write(frame(), struct.pack("<BBHHHH", 0, 1, 54, 1448, 0, 0))


@pytest.mark.parametrize("gso_type,gso_size", [(1, 1448), (3, 1472)])      # TCPv4, UDP
def test_gso_frame_from_the_tap_fills_a_big_packets_chain(gso_type, gso_size):
    """A 30000-byte super-frame with its virtio_net_hdr passes the device unchanged into
    a 19-entry chain (header alone, then the rest of a page, then pages), as Linux's
    add_recvbuf_big posts it; used len = 12 + frame."""
    vm, d = machine(features={VERSION_1, MAC, EVENT_IDX, INDIRECT_DESC_BIT} | GUEST_OFFLOADS)
    pages = [d.alloc(4096, 4096) for _ in range(18)]
    sg = [(pages[0], 12, True), (pages[0] + 32, 4096 - 32, True)]
    sg += [(p, 4096, True) for p in pages[1:]]
    d.add_chain(d.queues[0], sg)
    d.kick(d.queues[0])
    vm.run()
    f = frame() + bytes(range(256)) * 117           # one frame, 30050 bytes
    hdr = struct.pack("<BBHHHH", 1, gso_type, 42, gso_size, 34, 6)
    vm.host().dev.host_write(f, hdr)
    vm.run()
    (head, length), = d.get_used(d.queues[0])
    assert length == 12 + len(f)
    got = vm.memory.read_bytes(pages[0], 12)
    assert got[:10] == hdr                        # the backend's header, passed through
    data = vm.memory.read_bytes(pages[0] + 32, 4064)
    for p in pages[1:]:
        data += vm.memory.read_bytes(p, 4096)
    assert data[:len(f)] == f
    assert not vm.device("net-pci0").broken


def test_gso_frame_larger_than_a_small_buffer_is_dropped_and_counted():
    vm, d = machine(features={VERSION_1, MAC} | GUEST_OFFLOADS)
    d.add_rx_buffers(4)
    vm.run()
    f = frame() + bytes(5000)
    vm.host().dev.host_write(f, struct.pack("<BBHHHH", 0, 1, 54, 1448, 0, 0))
    vm.run()
    dev = vm.device("net-pci0")
    assert d.get_used(d.queues[0]) == [] and not dev.broken
    assert dev.vdev.stats["drop: frame larger than the guest buffer"] == 1


def test_a_recording_shows_the_msix_function_mask_as_it_was_at_each_step():
    """Message control lives in PCI config space; it is journaled like the table, so a
    replayed step shows the mask the guest had set then, not the one it has now."""
    vm, d = machine(features={VERSION_1, MAC})
    cap = vm.device("net-pci0").msix.cap
    with vm.record() as rec:
        vm.host().send(frame())
        vm.run()
        before = len(rec) - 1
        vm.pci_config_write(d.devfn, cap + 2, 2, 0xC000)    # enable | function mask
        vm.host().send(frame(2))
        vm.run()
        masked = len(rec) - 1
        vm.pci_config_write(d.devfn, cap + 2, 2, 0x8000)    # unmask: the pending one fires
        vm.run()

    def msix(i: int) -> dict:
        return rec.state(i)["devices"]["net-pci0"]["msix"]

    assert msix(before)["function_masked"] is False
    assert msix(masked)["function_masked"] is True
    assert msix(len(rec) - 1)["function_masked"] is False and msix(len(rec) - 1)["enabled"]
