"""The lessons (notebooks/NN-*.ipynb) and the deck run top to bottom, are committed without
outputs, and their predict-then-check answers are computed from recordings: turn a knob
and the revealed answer changes."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import qnetlearn.course as course
from qnetlearn.course import compare

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
DECK = NOTEBOOKS / "slides" / "deck.ipynb"
ALL = LESSONS + [DECK]
TIMES: dict[str, float] = {}


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(str(path), as_version=4)


# -- the notebooks as committed ----------------------------------------------------------------
def test_lessons_are_numbered_in_order_from_00():
    numbers = [int(p.name[:2]) for p in LESSONS]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 11


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = _read(path)
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {k} has outputs: clear them (nbconvert --clear-output)"
            assert cell.execution_count is None, f"cell {k} has an execution count"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_has_the_parts_every_lesson_needs(path):
    nb = _read(path)
    text = "\n".join(c.source for c in nb.cells)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "After this lesson you can" in nb.cells[0].source, "objectives at the top"
    assert text.count("qn.course.predict(") >= 2, "at least two predict-then-check questions"
    assert "## Try it" in md, "a 'try it' cell with a knob"
    assert "## Recap" in md
    assert re.search(r"\(\.\./exercises/source/(\w+)/\1\.ipynb\)", md), "a link to an exercise"
    assert "Machine.from_cmdline" in text or "qn.course.start(" in text or "record_ping(" in text
    for m in re.finditer(r"qn\.course\.predict\(.*?\n\s*(lambda|[a-z_]+\))", text, re.S):
        assert m.group(1) == "lambda" or m.group(1).endswith(")"), "answers are functions"


#: assignments issue 9 requires that may land after the lessons (their links are kept)
PENDING_EXERCISES = {"e1000_receive"}


def test_exercise_links_point_at_assignments_when_they_exist():
    src = REPO / "exercises" / "source"
    if not src.is_dir():
        pytest.skip("exercises/source/ is not there yet")
    missing = []
    for path in LESSONS:
        md = "\n".join(c.source for c in _read(path).cells if c.cell_type == "markdown")
        for name in re.findall(r"\(\.\./exercises/source/(\w+)/\1\.ipynb\)", md):
            if not (src / name / f"{name}.ipynb").exists():
                missing.append((path.name, name))
    assert not [m for m in missing if m[1] not in PENDING_EXERCISES], missing
    if missing:
        pytest.skip(f"links to assignments not there yet: {sorted({n for _p, n in missing})}")


def test_deck_has_rise_slides_with_slide_players():
    nb = _read(DECK)
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert kinds.count("slide") >= 8
    code = [c.source for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("slideshow", {}).get("slide_type") != "skip"]
    players = [s for s in code if "qn.viz." in s]
    assert len(players) >= 6 and all("slide=True" in s for s in players)


# -- every lesson executes ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_executes(path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    nb = _read(path)
    # one extra cell, never committed: every predict-then-check question the lesson showed,
    # with the answer its recording gives (IPython keeps each cell's result in Out)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _j\nfrom qnetlearn.course import Predict as _P\n"
        "print('PREDICTS' + _j.dumps([[p.question, [str(c) for c in p.choices], str(p.answer()), "
        "p.matching_choice() is not None] for p in Out.values() if isinstance(p, _P)]))"))
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    took = time.perf_counter() - t0
    TIMES[path.name] = took
    print(f"\n{path.name}: {took:.1f} s")
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", \
                f"cell {k}: {out.get('ename')}: {out.get('evalue')}"
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                assert "Traceback" not in out.get("text", ""), f"cell {k}: {out['text']}"
    import json
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    predicts = json.loads(last.split("PREDICTS", 1)[1])
    if path != DECK:
        assert len(predicts) >= 2, "at least two questions were shown"
    for question, choices, answer, among in predicts:
        print(f"  ? {question}\n    -> {answer}")
        assert among, f"{question!r}: the recording says {answer!r}, not one of {choices}"


# -- the revealed answers follow the machine ---------------------------------------------------
def _reveal(answer_fn, choices=(0, 1, 2, 3)):
    q = course.predict("?", choices, answer_fn)
    right, text = q.check(choices[0])
    return q.answer(), text


def test_predict_reveals_what_answer_fn_computes_and_judges_the_choice():
    vm, rec = course.record_ping(course.VIRTIO)
    q = course.predict("interrupts?", [1, 2, 3], lambda: course.guest_interrupts(rec))
    assert q.answer() == 2
    assert q.check(2)[0] is True and "The recording says: 2." in q.check(2)[1]
    assert q.check(3)[0] is False
    with pytest.raises(TypeError):
        course.predict("typed in?", [1, 2], 2)      # an answer must be computed


def test_event_idx_knob_changes_the_revealed_number_of_msi_messages():
    _vm, on = course.record_flood(course.VIRTIO, 8)
    _vm, off = course.record_flood(course.VIRTIO + ",event_idx=off", 8)
    a_on, _ = _reveal(lambda: course.msi_messages(on), (2, 8, 9, 16))
    a_off, _ = _reveal(lambda: course.msi_messages(off), (2, 8, 9, 16))
    assert a_on < a_off
    assert a_off == 16                      # one per used buffer, RX and TX


def test_model_knob_changes_interrupt_handler_and_first_register():
    _vm, v = course.record_ping(course.VIRTIO)
    _vm, e = course.record_ping(course.E1000_HUB)
    assert course.called_by(v, "qemu_deliver_packet_iov")[0] == "virtio_net_receive"
    assert course.called_by(e, "qemu_deliver_packet_iov")[0] == "net_hub_port_receive"
    assert course.register_accesses(v, "e1000-mmio") == []
    assert course.register_accesses(e, "e1000-mmio")[0]["register"] == "ICR"


def test_ring_size_knob_changes_back_pressure():
    def where(ring: int) -> tuple[int, int, int]:
        vm = course.start(course.VIRTIO + f",rx_queue_size={ring}")
        course.mask_vector(vm, "net-pci0", entry=1, masked=True)
        course.echo_requests(vm, 300)
        vm.run()
        dev = vm.device("net-pci0")
        return dev.vdev.rx_vq.used_idx, len(dev.nc.incoming_queue), len(vm.taps["hn0"].fd.to_qemu)
    used256, queued256, in_tap256 = where(256)
    used512, queued512, in_tap512 = where(512)
    assert (queued256, queued512) == (1, 0)
    assert used256 + queued256 + in_tap256 == 301        # 300 + the warm-up ping
    assert in_tap512 == 0 and used512 == 301


def test_masking_knob_changes_what_msix_notify_does():
    def outcome(masked: bool):
        vm = course.start(course.VIRTIO)
        course.mask_vector(vm, "net-pci0", entry=1, masked=masked)
        with vm.record() as rec:
            course.echo_requests(vm, 1)
            vm.run()
        entry = rec.state(len(rec.steps) - 1)["devices"]["net-pci0"]["msix"]["entries"][1]
        return course.msi_messages(rec), entry["pending"], course.pba_bits(vm)[1]
    assert outcome(False)[0] == 2 and not outcome(False)[1]
    msgs, pending, bit = outcome(True)
    assert msgs == 0 and pending and bit == 1     # RX pending; the guest never ran, so no TX


def test_back_pressure_answers_come_from_the_recording():
    vm = course.start(course.VIRTIO)
    course.mask_vector(vm, "net-pci0", entry=1, masked=True)
    course.echo_requests(vm, course.rx_room(vm))
    vm.run()
    with vm.record() as rec:
        course.echo_requests(vm, 3, ident=0x78)
        vm.run()
    assert course.drops(rec) == 0
    assert course.netqueue_len(rec, "net-pci0") == 1
    vm2 = course.start(course.VIRTIO)
    vm2.monitor("set_link net-pci0 off")
    with vm2.record() as rec2:
        course.flood(vm2, 3)
    assert course.drops(rec2) == 3                       # link down: dropped, and counted


def test_txburst_knob_changes_bottom_half_runs():
    _vm, big = course.record_flood(course.VIRTIO, 32)
    _vm, small = course.record_flood(course.VIRTIO + ",x-txburst=4", 32)
    assert course.count_calls(small, "virtio_net_tx_bh") > course.count_calls(big, "virtio_net_tx_bh")


def test_accel_knob_changes_the_chain_end_and_the_exits():
    _vm, tcg = course.record_ping(course.VIRTIO)
    _vm, kvm = course.record_ping("-machine accel=kvm " + course.VIRTIO)
    assert course.deepest_below(tcg, "address_space_stl_internal")[-1] == "apic_deliver_irq"
    assert course.deepest_below(kvm, "address_space_stl_internal")[-1] == "kvm_set_msi"
    assert course.echo_costs("-machine accel=kvm " + course.VIRTIO)["exits"] == 0
    assert course.echo_costs("-machine accel=kvm " + course.E1000_HUB)["exits"] >= 6
    assert course.echo_costs(course.E1000_HUB)["exits"] == 0


def test_seed_chain_comparison():
    _vm, rec = course.record_ping(course.VIRTIO)
    t = course.compare_chain(rec)
    by_seed = {r[0]: r for r in t.rows if r[0]}
    assert by_seed["nc->info->receive"][1] == "virtio_net_receive"
    assert by_seed["k->notify"][1] == "virtio_pci_notify"
    assert "sibling" in by_seed["virtqueue_flush"][3]
    assert by_seed["address_space_stl_internal"][1] == "address_space_stl_internal"
    assert course.caller_of(rec, "virtio_notify") == "virtio_net_receive_rcu"


def test_golden_comparison_agrees_under_tcg_and_explains_kvm():
    _vm, tcg = course.record_ping(course.VIRTIO, warm=2)
    theirs = compare.theirs("virtio-ping5.trace")
    assert compare.agreement(theirs, compare.ours(tcg)) == {
        "same": len(theirs), "only QEMU": 0, "only qnetlearn": 0}
    _vm, kvm = course.record_ping("-machine accel=kvm " + course.VIRTIO, warm=2)
    assert compare.missing_kinds(theirs, compare.ours(kvm)) == "apic_* lines"
    t = compare.side_by_side(theirs, compare.ours(kvm))
    whys = [r[3] for r in t.rows if r[0] != "="]
    assert whys and all(not w.startswith("not explained") for w in whys)


def test_realtap_fallback_is_shipped():
    from qnetlearn.course import realtap
    run = realtap.recorded_run("virtio")
    assert "3 received" in run["ping"] and "ICMP echo reply" in run["tcpdump"]
    ok, why = realtap.available()
    assert isinstance(ok, bool) and why


def test_print_lesson_times():
    """Prints the execution times measured above (pytest -s shows them); asserts nothing."""
    for name, took in sorted(TIMES.items()):
        print(f"{name}: {took:.1f} s")


def test_realtap_failure_becomes_unavailable(monkeypatch):
    """A machine where the namespace cannot be made gets the recorded run, not a traceback."""
    import subprocess
    from qnetlearn.course import realtap
    monkeypatch.setattr(realtap, "available", lambda: (True, "pretend"))

    def no_netns(*args, check=True):
        raise subprocess.CalledProcessError(1, ["ip", *args], stderr="Operation not permitted")
    monkeypatch.setattr(realtap, "_ip", no_netns)
    with pytest.raises(realtap.RealTapUnavailable, match="Operation not permitted"):
        realtap.real_ping()
