"""Bounded memory (issue 11, item 6): ``vm.record(max_steps=N)`` keeps the last N steps, and
a long run with such a recorder does not grow: its journal of state changes and its frames
are folded into the start image as steps drop out (``Recorder._compact``), and what a kept
step shows is exactly what an unbounded recording shows at that step."""
from __future__ import annotations

import gc
import tracemalloc

import qnetlearn as qn
from spec_driver import SpecDriver

LINE = "-netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0"
FRAME = bytes.fromhex("525400123456") + bytes.fromhex("02000a000202") + b"\x88\xb5" + bytes(84)


def traffic(vm: qn.Machine, d: SpecDriver, nframes: int) -> None:
    """Frames from the host into the guest; the driver gives each buffer back."""
    rx = d.queues[0]
    host = vm.host()
    for k in range(nframes):
        host.send(FRAME[:-2] + (k & 0xFFFF).to_bytes(2, "little"))
        if k % 16 == 15:
            vm.run()
            for head, _n in d.get_used(rx):
                d.publish(rx, head)
            d.kick(rx)
    vm.run()


def machine() -> tuple[qn.Machine, SpecDriver]:
    vm = qn.Machine.from_cmdline(LINE, guest=None)
    vm.boot()
    d = SpecDriver(vm, vm.device("n0").devfn)
    d.add_rx_buffers(64, 2048)
    vm.run()
    return vm, d


def recorded_bytes(nframes: int, max_steps: int) -> tuple[int, int]:
    """Memory held after recording ``nframes`` frames (tracemalloc), and the journal size."""
    vm, d = machine()
    gc.collect()
    tracemalloc.start()
    try:
        with vm.record(max_steps=max_steps) as rec:
            traffic(vm, d, nframes)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(rec) == max_steps and rec.dropped_steps > 0
    return held, len(rec.journal)


def test_memory_is_flat_with_max_steps():
    small, j_small = recorded_bytes(2_000, 5_000)
    large, j_large = recorded_bytes(20_000, 5_000)
    # ten times the traffic, the same memory (give or take the allocator's noise)
    assert large < small * 1.3 + 256 * 1024, (small, large)
    assert j_large < j_small * 1.5 + 1000, (j_small, j_large)


def test_kept_steps_show_what_an_unbounded_recording_shows():
    recs = []
    for max_steps in (None, 1_500):
        vm, d = machine()
        with vm.record(max_steps=max_steps) as rec:
            traffic(vm, d, 400)
        recs.append(rec)
    full, bounded = recs
    base = bounded.dropped_steps
    assert base > 3 * 1_500                       # compaction ran several times
    assert len(bounded) == 1_500 and full.dropped_steps == 0
    assert len(bounded.journal) < len(full.journal) // 2
    for i in (base, base + 1, base + 700, base + 1_499):
        assert bounded.step(i).name == full.step(i).name
        assert bounded.state(i) == full.state(i), i
    # walking backwards from the end re-reads from the folded start image
    assert bounded.state(base + 10) == full.state(base + 10)
    # folding may happen at any moment; right now, it must not change any kept step
    bounded._compact()
    for i in (base, base + 1, base + 37):
        assert bounded.state(i) == full.state(i), i
    # the frames kept are the last ones sent
    assert bounded.frames == full.frames[len(full.frames) - len(bounded.frames):]
    assert 0 < len(bounded.frames) < len(full.frames)


def test_unbounded_recording_keeps_everything():
    vm, d = machine()
    with vm.record() as rec:
        traffic(vm, d, 64)
    assert rec.dropped_steps == 0
    assert len(rec.frames) == 64
    assert rec.state(0) and rec.state(len(rec) - 1)
