"""Tracepoints and the recorder: call stacks, state at any step, determinism, pcap."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import qnetlearn as qn
from qnetlearn.net.dump import read_pcap
from qnetlearn.net.net import NetClientInfo, qemu_new_net_client, qemu_send_packet
from qnetlearn.net.stack import build_echo_request, parse_frame
from qnetlearn.trace import REGISTRY, tracepoint
from qnetlearn.trace.recorder import _short
from spec_driver import SpecDriver

SEED_CHAIN = ["tap_send", "qemu_send_packet_async", "qemu_send_packet_async_with_flags",
              "qemu_net_queue_send", "qemu_net_queue_deliver", "qemu_deliver_packet_iov"]


def echo(seq: int = 1) -> bytes:
    return build_echo_request("02:00:0a:00:02:02", "52:54:00:12:34:56", "10.0.2.2",
                              "10.0.2.15", 0x99, seq)


@tracepoint("tests/test_trace.py", show=("buf",))
def test_nic_receive(nc, buf: bytes) -> int:
    """A test NIC's ``nc->info->receive``."""
    nc.opaque.append(bytes(buf))
    return len(buf)


test_nic_receive.__test__ = False  # type: ignore[attr-defined]


def tap_and_test_nic() -> tuple[qn.Machine, list[bytes]]:
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0,vnet_hdr=off", guest=None)
    got: list[bytes] = []
    qemu_new_net_client(NetClientInfo("nic", receive=test_nic_receive), vm.netdev("hn0"),
                        "test-nic", "nic0", got)
    return vm, got


def test_seed_chain_from_tap_send_to_the_receive_function():
    vm, got = tap_and_test_nic()
    with vm.record() as rec:
        vm.host().send(echo())
        vm.run()
    assert got == [echo()]
    i = rec.find("test_nic_receive")[0]
    assert rec.step(i).kind == "call"
    assert rec.callstack(i) == SEED_CHAIN + ["test_nic_receive"]
    frames = rec.frames_at(i)
    assert [f.src for f in frames][:2] == ["net/tap.c", "net/net.c"]
    assert [s.depth for s in frames] == list(range(len(frames)))
    j = i + 1                       # the receive function's return step
    assert rec.step(j).kind == "return" and rec.step(j).args == {"ret": 98}
    assert rec.callstack(j)[-1] == "test_nic_receive"


def test_disabled_tracepoints_are_the_plain_functions():
    codes = {tp: tp.func.__code__ for tp in REGISTRY}
    assert all(code is tp.code for tp, code in codes.items())
    vm, _got = tap_and_test_nic()
    with vm.record():
        assert qemu_send_packet.__code__ is not next(
            tp.code for tp in REGISTRY if tp.func is qemu_send_packet)
    assert all(tp.func.__code__ is tp.code for tp in REGISTRY)


@tracepoint("tests/test_trace.py", show=("len", "k"))
def _every_shape(a, len=2, /, *rest, k=3, **kw):  # noqa: A002 (shadows len, as QEMU's do)
    return (a, len, rest, k, kw)


def test_recording_wrappers_keep_every_signature_shape_and_default():
    """The recording wrapper is compiled with the function's own parameters: defaults,
    positional-only, ``*rest``, keyword-only and ``**kw`` all arrive, and a parameter
    named like a builtin (QEMU's ``len``) does not break the wrapper."""
    tp = next(t for t in REGISTRY if t.func is _every_shape)
    calls = [((1,), {}), ((1, 5, 6, 7), {"k": 8, "x": 9}), ((1, 5), {"z": 0})]
    plain = [_every_shape(*a, **kw) for a, kw in calls]
    vm, _got = tap_and_test_nic()
    with vm.record() as rec:
        assert _every_shape.__code__ is not tp.code
        assert [_every_shape(*a, **kw) for a, kw in calls] == plain
    assert _every_shape.__code__ is tp.code
    steps = [s for s in rec.steps if s.name == "_every_shape"]
    assert [s.kind for s in steps] == ["call", "return"] * 3
    assert [s.args for s in steps[::2]] == [{"len": 2, "k": 3}, {"len": 5, "k": 8},
                                           {"len": 5, "k": 3}]
    assert [s.args["ret"] for s in steps[1::2]] == [_short(r) for r in plain]


def test_a_slot_plugged_while_recording_stays_plugged_after_the_recorder_stops():
    tp = next(t for t in REGISTRY if t.func is _every_shape)
    vm, _got = tap_and_test_nic()
    rec = vm.record().start()
    tp.plug(lambda *a, **kw: "student")
    try:
        assert _every_shape(1) == "student"
        rec.stop()
        n = len(rec.steps)
        assert _every_shape(1) == "student"       # still the student's, now unrecorded
        assert len(rec.steps) == n
    finally:
        tp.unplug()
    assert _every_shape(1) == (1, 2, (), 3, {}) and _every_shape.__code__ is tp.code
    assert [s.args for s in rec.steps if s.kind == "return"][-1] == {"ret": "student"}


def virtio_rx_recording(seq: int = 1):
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0",
                                 guest=None)
    vm.boot()
    d = SpecDriver(vm, vm.device("net-pci0").devfn)
    d.add_rx_buffers(4)
    vm.run()
    with vm.record() as rec:
        vm.host().send(echo(seq))
        vm.run()
    return vm, d, rec


def test_state_at_any_step_forwards_and_backwards():
    vm, d, rec = virtio_rx_recording()
    fill = rec.find("virtqueue_fill")
    flush_ret = [i for i in rec.find("virtqueue_flush") if rec.step(i).kind == "return"][0]
    first, last = rec.state(0), rec.state(len(rec) - 1)
    q0 = first["devices"]["net-pci0"]["queues"][0]
    q1 = last["devices"]["net-pci0"]["queues"][0]
    assert (q0["used_idx"], q0["used_idx_ram"], q0["last_avail_idx"]) == (0, 0, 0)
    assert (q1["used_idx"], q1["used_idx_ram"], q1["last_avail_idx"]) == (1, 1, 1)
    assert q1["used_ring"][0]["len"] == 110
    at_fill = rec.state(fill[0])["devices"]["net-pci0"]["queues"][0]
    assert at_fill["used_ring"][0]["len"] == 0 and at_fill["last_avail_idx"] == 1
    after_flush = rec.state(flush_ret)["devices"]["net-pci0"]["queues"][0]
    assert after_flush["used_idx_ram"] == 1
    # backwards again: the first state is rebuilt, not the cached later one
    assert rec.state(0)["devices"]["net-pci0"]["queues"][0]["used_idx"] == 0
    # the live machine agrees with the last recorded state
    assert vm.ram.read(d.queues[0].used + 2, 2) == (1).to_bytes(2, "little")
    descs = q1["descriptors"]
    assert descs[0]["len"] == 1536 and descs[0]["flags"] == 2


def test_state_shows_the_apic_and_msix_at_the_interrupt():
    _vm, _d, rec = virtio_rx_recording()
    i = [k for k in rec.find("apic_deliver_irq") if rec.step(k).kind == "call"][0]
    before, after = rec.state(i), rec.state(len(rec) - 1)
    assert 0x27 not in before["apic"]["irr"] and 0x27 in after["apic"]["irr"]
    entries = after["devices"]["net-pci0"]["msix"]["entries"]
    assert entries[1]["data"] == 0x27 and not entries[1]["masked"]


def test_two_identical_runs_give_identical_recordings():
    runs = [virtio_rx_recording()[2] for _ in range(2)]
    a, b = (r.to_qemu_trace() for r in runs)
    assert a == b and "virtqueue_fill vq vq0 elem elem1 len 110 idx 0" in a
    def plain(args: dict) -> dict:   # device objects differ between machines: compare types
        return {k: v if isinstance(v, (int, str, bytes, type(None))) else type(v).__name__
                for k, v in args.items()}
    a_steps, b_steps = ([(s.kind, s.name, s.depth, plain(s.args), s.time_ns, s.context)
                         for s in r.steps] for r in runs)
    assert a_steps == b_steps and len(a_steps) > 50
    assert [runs[0].state(i) == runs[1].state(i) for i in (0, 20, len(a_steps) - 1)] == [True] * 3


def test_qemu_trace_form_of_an_rx():
    _vm, _d, rec = virtio_rx_recording()
    lines = rec.to_qemu_trace().splitlines()
    assert lines == [
        "[main] virtqueue_alloc_element elem elem1 size 56 in_num 1 out_num 0",
        "[main] virtqueue_pop vq vq0 elem elem1 in_num 1 out_num 0",
        "[main] virtqueue_fill vq vq0 elem elem1 len 110 idx 0",
        "[main] virtqueue_flush vq vq0 count 1",
        "[main] virtio_notify vdev vdev0 vq vq0",
        "[main] memory_region_ops_write MSI write to apic-msi addr=0xfee01004 data=0x27 by=device size=4",
        "[main] apic_deliver_irq dest 1 dest_mode 1 delivery_mode 0 vector 39 trigger_mode 0",
    ]


def test_pcap_of_a_recording(tmp_path):
    vm, got = tap_and_test_nic()
    with vm.record() as rec:
        for seq in (1, 2):
            vm.host().send(echo(seq))
        vm.run()
    path = tmp_path / "rx.pcap"
    assert rec.to_pcap(str(path)) == 2
    assert [f for _t, f in read_pcap(str(path))] == [echo(1), echo(2)] == got
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: apt-get install tshark (make test does it as root)")
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "icmp.type",
                          "-e", "icmp.seq", "-e", "ip.dst"], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["8\t1\t10.0.2.15", "8\t2\t10.0.2.15"]


def test_max_steps_keeps_the_last_steps_only():
    vm, _got = tap_and_test_nic()
    with vm.record(max_steps=10) as rec:
        for seq in range(20):
            qemu_send_packet(vm.netdev("hn0"), echo(seq), 98)
    assert len(rec.steps) == 10 and rec.dropped_steps > 0
    last = rec.dropped_steps + 9
    assert rec.step(last).name == "qemu_send_packet"


def test_pcap_of_a_virtio_ping_has_plain_ethernet_frames(tmp_path):
    """virtio-net and the TAP pass virtio_net_hdr along; the pcap shows the frames only."""
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0")
    vm.boot()
    with vm.record() as rec:
        vm.host().ping(count=2)
    path = tmp_path / "ping.pcap"
    assert rec.to_pcap(str(path)) == 4
    frames = [f for _t, f in read_pcap(str(path))]
    parsed = [parse_frame(f) for f in frames]
    assert [(p.type, p.seq, p.checksums_ok) for p in parsed] == [
        (8, 1, True), (0, 1, True), (8, 2, True), (0, 2, True)]
    assert frames[1::2] == list(vm.host().received)


def test_a_long_recording_stays_out_of_the_garbage_collectors_way():
    """Steps and journal entries are tuples of plain values (the tracepoint by index, the
    object by id), which the collector stops tracking; the lists holding them are frozen
    for the recording.  Otherwise every full collection walks millions of entries."""
    import gc
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,"
                                 "netdev=hn0").boot()
    assert gc.get_freeze_count() == 0
    with vm.record() as rec:
        vm.host().ping(count=20)
        assert gc.get_freeze_count() > 0
        gc.collect()
        steps = list(rec._raw)
        tracked = sum(gc.is_tracked(t) for t in steps)
        assert tracked < len(steps) // 10            # events that carry objects, no more
        assert not any(gc.is_tracked(e) for e in rec.journal
                       if type(e[3]) in (int, bool, str, bytes))
    assert gc.get_freeze_count() == 0                # unfrozen at stop
    assert rec.find("virtio_notify") and rec.step(rec.find("virtio_notify")[0]).tp.name \
        == "virtio_notify"


def test_a_recorder_leaves_someone_elses_frozen_objects_frozen():
    import gc
    vm, _got = tap_and_test_nic()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with vm.record():
            vm.host().send(echo())
            vm.run()
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


def test_objects_born_during_a_recording_replay_from_their_first_step():
    """Journal entries name objects by id; one created while recording is kept alive by the
    recording (so its id stays its own) and shows its values from the step it was made."""
    from qnetlearn.trace.state import Stats
    vm, _got = tap_and_test_nic()
    with vm.record() as rec:
        vm.host().send(echo())
        vm.run()
        born_at = len(rec)
        st = Stats()
        st["frames"] += 3
        vm.host().send(echo(2))
        vm.run()
    key = id(st)
    del st
    st = rec.images[key][0]                                      # kept alive by the recording
    assert rec.reader(born_at - 1).get(st, "frames") is None
    assert rec.reader(len(rec) - 1).get(st, "frames") == 3
