"""The emulator against real QEMU 7.2: the seed's chain, and the golden traces line by line."""
from __future__ import annotations

import pytest

import qnetlearn as qn
from qnetlearn.net.stack import parse_frame
from qnetlearn.trace.golden import renumber_elements, steady_cycle

SEED = ("qemu-system-x86_64 disk.img -machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
NET = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
CHAIN = ["tap_send", "qemu_send_packet_async", "qemu_send_packet_async_with_flags",
         "qemu_net_queue_send", "qemu_net_queue_deliver", "qemu_deliver_packet_iov",
         "virtio_net_receive", "virtio_notify", "virtio_notify_vector", "virtio_pci_notify",
         "msix_notify", "msi_send_message", "address_space_stl_le"]


def is_subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(name in it for name in small)


@pytest.mark.parametrize("line", [SEED, NET])
def test_ping_both_ways_with_correct_frames(line):
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    rtts = vm.host().ping(count=3)
    assert len(rtts) == 3 and all(r is not None and r > 0 for r in rtts)
    replies = [parse_frame(f) for f in vm.host().received]
    assert len(replies) == 3
    for seq, r in enumerate(replies, 1):
        assert r.checksums_ok and r.src_ip == "10.0.2.15" and r.dst_ip == "10.0.2.2"
        assert (r.type, r.seq) == (0, seq)
    back = vm.guest.ping("10.0.2.2", count=2)
    assert len(back) == 2 and all(r is not None and r > 0 for r in back)
    assert vm.host().stack.stats["rx_icmp_echo_request"] == 2


@pytest.mark.parametrize("line", [SEED, NET])
def test_the_seeds_first_call_chain(line):
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    vm.host().ping()
    with vm.record() as rec:
        vm.host().ping()
    stl = [i for i in rec.find("address_space_stl_le") if rec.step(i).kind == "call"]
    i = stl[0]
    stack = rec.callstack(i)
    assert is_subsequence(CHAIN, stack), stack
    assert stack[-1] == "address_space_stl_le"
    assert stack[:6] == CHAIN[:6]
    before = [s.name for s in list(rec.steps)[:i] if s.kind == "event"]
    assert is_subsequence(["virtqueue_pop", "virtqueue_fill", "virtqueue_flush"], before)
    fill = [s for s in rec.steps if s.kind == "event" and s.name == "virtqueue_fill"][0]
    assert fill.args["len"] == 110                  # 98-byte echo request + 12-byte header
    if vm.accel == "kvm":                           # the seed says accel=kvm
        assert rec.callstack(rec.find("kvm_send_msi")[0])[-2:] == ["kvm_apic_mem_write",
                                                                    "kvm_send_msi"]


def one_steady_ping(line: str) -> list[str]:
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    vm.host().ping(count=2)
    with vm.record() as rec:
        vm.host().ping()
    return renumber_elements(rec.to_qemu_trace().splitlines())


@pytest.mark.parametrize("props,golden", [
    ("", "virtio-ping5.trace"),
    (",event_idx=off", "virtio-noeventidx-ping5.trace"),
    # big packets: 19-entry RX chains (in_num 19) because GUEST_TSO4/6 are negotiated
    (",mrg_rxbuf=off", "virtio-nomrg-ping5.trace"),
])
def test_steady_state_ping_matches_real_qemu(props, golden):
    ours = one_steady_ping(NET + props)
    assert ours == steady_cycle(golden)
