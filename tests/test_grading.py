"""Exercise slots (qn.plug), the checks and the grading worker (qnetlearn/grading/)."""
from __future__ import annotations

import os
import time

import pytest

import qnetlearn as qn
from qnetlearn.grading.cases import call, compare_case, run
from qnetlearn.grading.compare import step_signature
from qnetlearn.grading.exercises import check, grade
from qnetlearn.grading.slots import StudentError, all_slots
from qnetlearn.hw.virtio import virtio as V
from qnetlearn.trace import REGISTRY

LINE = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"


def good_need_event(event_idx, new_idx, old):
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF


def off_by_one(event_idx, new_idx, old):
    return (new_idx - event_idx) & 0xFFFF < (new_idx - old) & 0xFFFF


def ping_rtts(count: int) -> list:
    """Round-trip times of ``count`` pings with the emulator's own functions."""
    vm = qn.Machine.from_cmdline(LINE)
    vm.boot()
    return vm.host().ping(count=count)


def all_plain() -> bool:
    return all(tp.func.__code__ is tp.code and not tp.plugged for tp in REGISTRY)


@pytest.fixture(autouse=True)
def _no_grading_env(monkeypatch):
    monkeypatch.delenv("QNETLEARN_GRADING", raising=False)
    yield
    assert all_plain(), "a test left a tracepoint plugged or swapped"


# -- qn.plug ---------------------------------------------------------------------------------

def test_every_slot_names_a_call_tracepoint():
    for name, slot in all_slots().items():
        assert slot.tracepoint.kind == "call" and slot.tracepoint.func is slot.function, name


def test_plug_runs_the_students_function_for_every_caller():
    seen = []

    def mine(event_idx, new_idx, old):
        seen.append((event_idx, new_idx, old))
        return good_need_event(event_idx, new_idx, old)

    with qn.plug(vring_need_event=mine) as p:
        assert V.vring_need_event(3, 4, 3) is True          # the module's own name
        vm = qn.Machine.from_cmdline(LINE)
        vm.boot()
        assert vm.host().ping(count=3) == ping_rtts(3)
    assert p.errors == [] and p.calls["vring_need_event"] == len(seen) >= 3
    assert all_plain() and V.vring_need_event(3, 4, 3) is True


def test_a_wrong_function_changes_the_emulator_and_unplugging_restores_it():
    with qn.plug(vring_need_event=off_by_one):
        vm = qn.Machine.from_cmdline(LINE)
        vm.boot()
        rtts = vm.host().ping(count=3)
    assert rtts[0] is not None and rtts[1:] == [None, None]      # lost interrupts
    assert None not in ping_rtts(3)


def test_a_recording_of_a_plugged_run_shows_the_students_function_in_the_slot():
    calls = []

    def mine(event_idx, new_idx, old):
        calls.append(1)
        return good_need_event(event_idx, new_idx, old)

    vm = qn.Machine.from_cmdline(LINE)
    vm.boot()
    with qn.plug(vring_need_event=mine):
        with vm.record() as rec:
            vm.host().ping(count=2)
        n = len(calls)
        assert V.vring_need_event(3, 4, 3) is True               # still plugged after it
        assert len(calls) == n + 1
    steps = rec.find("vring_need_event")
    assert len(steps) == 2 * n and n
    i = steps[0]
    assert rec.step(i).kind == "call" and rec.step(i).args == {"event_idx": 1, "new_idx": 2,
                                                               "old": 1}
    assert rec.callstack(i)[-3:] == ["virtio_notify", "virtio_should_notify", "vring_need_event"]


def test_plug_inside_a_recording_and_a_recording_inside_a_plug():
    vm = qn.Machine.from_cmdline(LINE)
    vm.boot()
    with vm.record() as rec:
        with qn.plug(vring_need_event=off_by_one):
            vm.host().ping(count=2)
        vm.host().ping(count=1)                        # unplugged, still recorded
    rets = [rec.step(i).args["ret"] for i in rec.find("vring_need_event")
            if rec.step(i).kind == "return"]
    assert rets and all_plain()


@pytest.mark.parametrize("bad,kind,words", [
    (lambda e, n, o: 1 / 0, "exception", "raised ZeroDivisionError"),
    (lambda e, n, o: None, "return", "returned None; it must return True or False"),
    (lambda e, n, o: "yes", "return", "returned 'yes'"),
])
def test_student_errors_are_contained_and_reported(bad, kind, words):
    with qn.plug(vring_need_event=bad, on_error="record") as p:
        vm = qn.Machine.from_cmdline(LINE)
        vm.boot()
        rtts = vm.host().ping(count=3)
    assert rtts == ping_rtts(3)                    # the reference finished the run
    assert len(p.errors) == 1 and p.errors[0].kind == kind
    e = p.errors[0]
    assert words in str(e) and "vring_need_event" in str(e) and e.call == 1
    assert p.tripped == {"vring_need_event"}


def test_plug_raises_the_first_error_at_the_end_of_the_block():
    with pytest.raises(StudentError, match=r"your vring_need_event raised KeyError"):
        with qn.plug(vring_need_event=lambda e, n, o: {}[e]):
            vm = qn.Machine.from_cmdline(LINE)
            vm.boot()
            vm.host().ping(count=2)
    assert all_plain()


def test_an_endless_loop_hits_the_time_limit():
    def loop(e, n, o):
        while True:
            pass

    t = time.monotonic()
    with qn.plug(vring_need_event=loop, timeout=0.3, on_error="record") as p:
        vm = qn.Machine.from_cmdline(LINE)
        vm.boot()
        assert vm.host().ping(count=2) == ping_rtts(2)
    assert time.monotonic() - t < 5
    assert p.errors[0].kind == "timeout" and "time limit" in str(p.errors[0])


def test_printing_megabytes_is_an_error(capsys):
    def chatty(e, n, o):
        for _ in range(1000):
            print("x" * 10_000)
        return good_need_event(e, n, o)

    with qn.plug(vring_need_event=chatty, on_error="record") as p:
        assert V.vring_need_event(3, 4, 3) is True
    assert p.errors[0].kind == "output"
    assert len(capsys.readouterr().out) < 20_000


def test_e1000_receive_may_not_hand_the_frame_to_the_emulators_receive_iov():
    from qnetlearn.hw.net.e1000 import e1000_receive_iov

    def lazy(nc, buf):
        return e1000_receive_iov(nc, [buf])

    r = compare_case("e1000_receive", run("e1000_rx", frames=[98]), lazy)
    assert not r.passed and "called the emulator's own e1000_receive_iov" in r.reason


def test_a_failing_e1000_receive_falls_back_through_receive_iov():
    line = "-netdev tap,id=hn0 -device e1000,id=net-pci0,netdev=hn0"
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    want = vm.host().ping(count=2)
    with qn.plug(e1000_receive=lambda nc, buf: 1 / 0, on_error="record") as p:
        vm = qn.Machine.from_cmdline(line)
        vm.boot()
        assert vm.host().ping(count=2) == want and None not in want
    assert len(p.errors) == 1 and "ZeroDivisionError" in str(p.errors[0])
    assert "could not finish" not in p.errors[0].detail


def test_calling_the_emulators_own_function_is_noticed():
    from qnetlearn.trace.tracepoint import BY_NAME

    def cheat(e, n, o):
        return BY_NAME[("call", "vring_need_event")].pristine(e, n, o)

    with qn.plug(vring_need_event=cheat, on_error="record") as p:
        V.vring_need_event(3, 4, 3)
    assert p.errors[0].kind == "reference"


def test_a_failing_virtqueue_pop_leaves_the_device_consistent():
    def broken_pop(vq, sz=56):
        vq.last_avail_idx = "garbage"       # wrecks the state, then fails
        raise RuntimeError("oops")

    with qn.plug(virtqueue_pop=broken_pop, on_error="record") as p:
        vm = qn.Machine.from_cmdline(LINE)
        vm.boot()
        vm.host().ping(count=1)
    assert p.errors and "oops" in str(p.errors[0])
    assert "could not finish the call" in p.errors[0].detail
    dev = vm.device("net-pci0")
    assert dev.broken and "virtqueue_pop failed" in dev.broken_reason   # the failsafe


def test_plug_rejects_unknown_slots_and_nesting():
    with pytest.raises(KeyError, match="no exercise slot named"):
        qn.plug(nope=lambda: None)
    with qn.plug(vring_need_event=good_need_event):
        with pytest.raises(RuntimeError, match="already plugged"):
            with qn.plug(vring_need_event=good_need_event):
                pass
    assert all_plain()


# -- compare and check -----------------------------------------------------------------------

def test_compare_case_call_and_run():
    assert compare_case("vring_need_event", call(3, 4, 3), good_need_event).passed
    r = compare_case("vring_need_event", call(3, 4, 3), off_by_one)
    assert not r.passed and "returned False; it should return True" in r.reason
    r = compare_case("vring_need_event", run("ping", count=3), off_by_one)
    assert not r.passed and "round-trip times" in r.reason


def test_check_shows_the_first_difference_for_a_wrong_vring_need_event():
    report = check("vring_need_event", off_by_one)
    assert not report.passed
    ping = next(t for t in report.tests if t.name == "ping")
    d = ping.difference
    assert d is not None and ping.recordings is not None
    ours, ref = ping.recordings
    # everything before the reported step is the same in both runs...
    assert all(step_signature(ours.step(k)) == step_signature(ref.step(k)) for k in range(d.step))
    # ...and at it, vring_need_event returns False in the student's run, True in the reference
    assert ours.step(d.step).name == ref.step(d.step).name == "vring_need_event"
    assert ours.step(d.step).kind == "return"
    assert d.values[0] == ("vring_need_event returned", False, True)
    assert d.ours == "return from vring_need_event(event_idx=1, new_idx=2, old=1) -> False"
    assert d.ref == "return from vring_need_event(event_idx=1, new_idx=2, old=1) -> True"
    assert d.ours_stack[-2:] == ["virtio_should_notify", "vring_need_event"]
    assert any("virtio_notify_vector" in s for s in d.ref_next)      # the interrupt it lost
    assert not any("virtio_notify_vector" in s for s in d.ours_next)
    text = str(report)
    assert f"first difference at step {d.step}" in text and "False in your run" in text
    html = report._repr_html_()
    assert "your run" in html and "reference run" in html


def test_check_passes_the_emulators_own_algorithm():
    report = check("vring_need_event", good_need_event)
    assert report.passed and report.first_difference is None


def test_a_state_difference_is_reported_with_its_path():
    def lazy_flag(vdev, vq):               # ignores VRING_AVAIL_F_NO_INTERRUPT
        return True

    report = check("virtio_should_notify", lazy_flag, tests=["flag"])
    d = report.tests[0].difference
    assert d is not None and d.what == "call"
    assert d.values[0] == ("virtio_should_notify returned", True, False)


def test_check_does_nothing_while_grading(monkeypatch):
    monkeypatch.setenv("QNETLEARN_GRADING", "1")
    assert check("vring_need_event", off_by_one).tests == []


def test_check_widget_shows_both_runs_at_the_first_difference():
    pytest.importorskip("ipywidgets")
    report = check("vring_need_event", off_by_one)
    step = report.first_difference.step
    box = report.widget()
    assert "first differs" in box.children[0].value
    if len(box.children) > 1:                      # the course's players, when qnetlearn.viz
        players = [v.children[1] for v in box.children[1].children]     # can build them
        assert [p.step for p in players] == [step, step]


# -- grade() and its worker ------------------------------------------------------------------

def test_grade_passes_and_fails(capsys):
    grade("vring_need_event", good_need_event, "in range", call(0xFFFF, 1, 0xFFFE))
    assert "[PASS]" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="returned False; it should return True"):
        grade("vring_need_event", off_by_one, "in range")


def loops_forever(e, n, o):
    while True:
        pass


def sleeps(e, n, o):
    import time as t
    t.sleep(1000)


def swallows_the_stop(e, n, o):
    while True:
        try:
            pass
        except BaseException:
            pass


def prints_megabytes(e, n, o):
    print("y" * 5_000_000)
    return good_need_event(e, n, o)


def reads_files(e, n, o):
    with open(os.path.abspath(__file__)) as f:       # any file outside Python and qnetlearn
        return bool(f.read())


def lists_dirs(e, n, o):
    import os as o_
    return bool(o_.listdir("/"))


def patches_the_emulator(e, n, o):
    if e == 0xABC:                        # only in the first case
        import builtins
        import struct

        import qnetlearn.hw.virtio.virtio as vv
        vv.virtqueue_flush = None
        del vv.virtio_notify
        builtins.len = None
        struct.unpack = None
    return good_need_event(e, n, o)


def exits(e, n, o):
    import os as o_
    o_._exit(0)


@pytest.mark.parametrize("fn,words", [
    (loops_forever, "time limit"), (sleeps, "time limit"), (swallows_the_stop, "time limit"),
    (prints_megabytes, "printed more than"), (reads_files, "does not let exercise code open"),
    (lists_dirs, "os.listdir"), (exits, "ended early"),
])
def test_the_worker_contains_hostile_functions(fn, words):
    t = time.monotonic()
    with pytest.raises(AssertionError, match=words):
        grade("vring_need_event", fn, call(3, 4, 3), call(5, 4, 3), quiet=True)
    assert time.monotonic() - t < 15


def test_patching_the_emulator_in_the_worker_is_undone_between_cases():
    grade("vring_need_event", patches_the_emulator, call(0xABC, 4, 3), run("ping", count=2),
          quiet=True)


def test_patching_the_emulator_in_the_kernel_does_not_reach_the_worker(monkeypatch):
    monkeypatch.setattr(V, "virtqueue_flush", None)
    monkeypatch.setattr(V, "vring_need_event", lambda *a: True)
    grade("vring_need_event", good_need_event, "ping", quiet=True)


def test_helpers_and_values_from_the_notebook_travel_with_the_function():
    ns: dict = {}
    exec(
        "import struct\n"
        "MASK = 0xFFFF\n"
        "def dist(a, b):\n"
        "    return (a - b) & MASK\n"
        "def need(event_idx, new_idx, old):\n"
        "    return dist(new_idx, event_idx) - 1 & MASK < dist(new_idx, old)\n", ns)
    grade("vring_need_event", ns["need"], "in range", call(0xFFFF, 1, 0xFFFE), quiet=True)
    exec("def uses_a_class(e, n, o):\n    return Thing()\nclass Thing: pass\n", ns)
    with pytest.raises(AssertionError, match="could not bring Thing"):
        grade("vring_need_event", ns["uses_a_class"], call(3, 4, 3), quiet=True)


@pytest.mark.parametrize("slot", sorted(all_slots()))
def test_the_emulators_own_code_passes_every_public_test_of_its_slot(slot):
    import types
    def copy_of(tp):
        code = tp.code.replace(co_filename="<a copy>", co_firstlineno=tp.code.co_firstlineno + 1)
        return types.FunctionType(code, tp.glob, tp.name, tp.func.__defaults__)

    s = all_slots()[slot]
    copy = copy_of(s.tracepoint)
    if s.companions:            # e1000_receive is e1000_receive_iov with one piece
        from qnetlearn.grading.slots import _resolve, _tracepoint_of
        iov = copy_of(_tracepoint_of(_resolve(s.module, next(iter(s.companions)))))
        copy = lambda nc, buf: iov(nc, [buf])  # noqa: E731
    report = check(slot, copy)
    assert report.passed, report.text()
    assert report.tests, f"{slot} has no public test"
