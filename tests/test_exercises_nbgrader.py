"""The nbgrader assignments in exercises/: generate, autograde, and what each gets.

For every assignment, in a copy of the course directory: ``nbgrader generate_assignment``;
the released notebook holds no solution and no hidden test; ``nbgrader autograde`` gives
the instructor's solution full marks, the released notebook left blank zero on every
graded cell, and each wrong solution below less than full marks.  Hostile submissions
(raise, loop, print megabytes, patch the emulator, read the hidden tests) lose only the
points of the tests they break.  Slow: each assignment runs nbgrader twice and a kernel per
submission (about 20-40 s).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "exercises"
ASSIGNMENTS = sorted(p.name for p in (COURSE / "source").iterdir() if p.is_dir())
BIN = Path(sys.executable).parent

#: wrong solutions: (old, new) replacements in the solution cell of the instructor's version
WRONG: dict[str, dict[str, list[tuple[str, str]]]] = {
    "vring_need_event": {
        "off by one": [("(new_idx - event_idx - 1) & 0xFFFF", "(new_idx - event_idx) & 0xFFFF")],
        "no wrap-around": [("return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF",
                            "return new_idx - event_idx - 1 < new_idx - old")],
        "plain interval": [("return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF",
                            "return old <= event_idx < new_idx")],
    },
    "virtqueue_pop": {
        "no ring wrap": [("(vq.last_avail_idx % num)", "vq.last_avail_idx")],
        "no loop check": [("            if seen > limit:\n"
                           "                virtio_error(vdev, \"Looped descriptor\")\n"
                           "                return None\n", "")],
        "no order check": [("            elif in_sg:\n"
                            "                virtio_error(vdev, \"Incorrect order for descriptors\")\n"
                            "                return None\n", "")],
    },
    "net_hub_receive": {
        "echo to the source": [("        if port is not source_port:\n            qemu_send_packet",
                                "        qemu_send_packet")],
        "returns 0": [("    return len\n", "    return 0\n")],
        "first port only": [("            qemu_send_packet(port.nc, buf, len)\n",
                             "            qemu_send_packet(port.nc, buf, len)\n            break\n")],
    },
    "qemu_net_queue_send": {
        "drops when the receiver cannot receive": [
            ("        qemu_net_queue_append(queue, sender, flags, data, sent_cb, "
             "\"receiver cannot receive\")\n        return 0", "        return size")],
        "no flush after delivering": [("    qemu_net_queue_flush(queue)\n", "")],
        "no delivering check": [("    if queue.delivering:\n        qemu_net_queue_append(queue, "
                                 "sender, flags, data, sent_cb, \"receiver is delivering\")\n"
                                 "        return 0\n", "")],
    },
    "msix_notify": {
        "ignores the mask bit": [("    if masked:\n", "    if False:\n")],
        "ignores the function mask": [
            ("    masked = (not control & PCI_MSIX_FLAGS_ENABLE or control & PCI_MSIX_FLAGS_MASKALL\n"
             "              or ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT)",
             "    masked = ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT")],
        "no used check": [("    if vector >= msix.nentries or not msix.used[vector]:",
                           "    if vector >= msix.nentries:")],
    },
    "virtio_should_notify": {
        "always true": [("        if vdev.has_feature(VIRTIO_F_NOTIFY_ON_EMPTY)",
                         "        return True\n        if vdev.has_feature(VIRTIO_F_NOTIFY_ON_EMPTY)")],
        "ignores the flag": [("            return not vring_avail_flags(vq) & VRING_AVAIL_F_NO_INTERRUPT",
                              "            return True")],
        "forgets the last interrupt": [("        new = vq.signalled_used = vq.used_idx",
                                        "        new = vq.used_idx")],
    },
    "e1000_receive": {
        "no wrap-around": [("        if rdh * 16 >= rdlen:\n            rdh = 0\n", "")],
        "one descriptor per frame": [("            desc_size = min(total_size - offset, rxbuf_size)",
                                      "            desc_size = total_size - offset")],
        "EOP on every descriptor": [("            if offset >= total_size:\n"
                                     "                status |= RXD_STAT_EOP",
                                     "            if True:\n                status |= RXD_STAT_EOP")],
    },
    "try_fill_recv": {
        "never kicks": [("    if rvq.virtqueue_kick_prepare() and rvq.virtqueue_notify():\n"
                         "        vi.stats[\"rx kicks\"] += 1\n", "")],
        "always kicks": [("    if rvq.virtqueue_kick_prepare() and rvq.virtqueue_notify():",
                          "    rvq.virtqueue_kick_prepare()\n    if rvq.virtqueue_notify():")],
        "one buffer at a time": [("    while rvq.num_free:", "    for _ in range(min(1, rvq.num_free)):")],
    },
}

_GOOD = "    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF"
_SOURCE_FROM_KERNEL = ('SOURCE = os.path.abspath(os.path.join("..", "..", "..", "source", '
                       '"vring_need_event", "vring_need_event.ipynb"))\n')

#: hostile vring_need_event submissions: (solution cell, points each graded cell must get)
#: tests: in range 2, ping 2 (no index wraps in either), wrap 3, edges 3 (both wrap)
ATTACKS: dict[str, tuple[str, dict[str, int]]] = {
    "raises": ("def vring_need_event(event_idx, new_idx, old):\n"
               "    if old > new_idx:\n        raise ValueError('no wrap-around, please')\n"
               + _GOOD + "\n", {"test_in_range": 2, "test_ping": 2, "test_wrap": 0, "test_edges": 0}),
    "loops forever": ("def vring_need_event(event_idx, new_idx, old):\n"
                      "    while old > new_idx:\n        pass\n" + _GOOD + "\n",
                      {"test_in_range": 2, "test_ping": 2, "test_wrap": 0, "test_edges": 0}),
    "prints megabytes": ("def vring_need_event(event_idx, new_idx, old):\n"
                         "    if old > new_idx:\n        print('x' * 3_000_000)\n" + _GOOD + "\n",
                         {"test_in_range": 2, "test_ping": 2, "test_wrap": 0, "test_edges": 0}),
    "patches the emulator in its kernel": (
        "import builtins\nimport qnetlearn.hw.virtio.virtio as V\nimport qnetlearn.net.queue as Q\n"
        "import qnetlearn.grading.scenarios as S\n"
        "V.vring_need_event = lambda *a: True\ndel V.virtqueue_flush\nQ.qemu_net_queue_send = None\n"
        "S.SCENARIOS.clear()\n"
        "def vring_need_event(event_idx, new_idx, old):\n" + _GOOD + "\n",
        {"test_in_range": 2, "test_ping": 2, "test_wrap": 3, "test_edges": 3}),
    "patches the emulator while it runs": (
        "def vring_need_event(event_idx, new_idx, old):\n"
        "    if old > new_idx:\n"
        "        import builtins, qnetlearn.hw.virtio.virtio as V\n"
        "        del V.virtio_notify\n        V.virtqueue_flush = None\n"
        "        builtins.len = None\n        return None\n" + _GOOD + "\n",
        {"test_in_range": 2, "test_ping": 2, "test_wrap": 0, "test_edges": 0}),
    "reads the hidden tests": (
        "import os\n" + _SOURCE_FROM_KERNEL +
        "def vring_need_event(event_idx, new_idx, old):\n"
        "    if old > new_idx:\n"
        "        with open(SOURCE) as f:\n            print(f.read())\n" + _GOOD + "\n",
        {"test_in_range": 2, "test_ping": 2, "test_wrap": 0, "test_edges": 0}),
}

TIMINGS: dict[str, dict[str, float]] = {}


def nbgrader(course: Path, *args: str) -> float:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("QNETLEARN_GRADING", None)
    t = time.monotonic()
    p = subprocess.run([str(BIN / "nbgrader"), *args], cwd=course, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    assert "| ERROR]" not in p.stderr, p.stderr[-6000:]        # nbgrader's own errors
    return time.monotonic() - t


def solution_cell(nb) -> int:
    idx = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(idx) == 1
    return idx[0]


def region_lines(nb, begin: str, end: str) -> tuple[set[str], set[str]]:
    """(lines inside the regions, lines outside them), stripped, over all cells."""
    inside, outside = set(), set()
    for c in nb.cells:
        on = False
        for line in c.source.splitlines():
            s = line.strip()
            if begin in s:
                on = True
                continue
            if end in s:
                on = False
                continue
            if s:
                (inside if on else outside).add(s)
    return inside, outside


def check_released(source, released) -> None:
    text = json.dumps(released.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, marker
    for begin, end in (("BEGIN SOLUTION", "END SOLUTION"), ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")):
        inside, outside = region_lines(source, begin, end)
        secret = inside - outside
        assert secret, f"no {begin} region"
        rel = {line.strip() for c in released.cells for line in c.source.splitlines()}
        assert not secret & rel, f"released notebook shows {sorted(secret & rel)[:3]}"
    for c in released.cells:
        assert not c.get("outputs"), "committed with outputs"
    assert "raise NotImplementedError()" in released.cells[solution_cell(released)].source


def scores(course: Path, assignment: str, students: list[str]) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook
    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for s in students:
            nb = gb.find_submission_notebook(assignment, assignment, s)
            out[s] = {g.name: g.score for g in nb.grades if g.max_score}
    return out


def test_every_assignment_has_tests_points_and_wrong_solutions():
    assert len(ASSIGNMENTS) >= 6
    for name in ASSIGNMENTS:
        nb = nbformat.read(COURSE / "source" / name / f"{name}.ipynb", as_version=4)
        graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
        hidden = [c for c in graded if "BEGIN HIDDEN TESTS" in c.source]
        visible = [c for c in graded if "BEGIN HIDDEN TESTS" not in c.source]
        assert visible and hidden and all(c.metadata["nbgrader"]["points"] > 0 for c in graded)
        assert all(c.metadata["nbgrader"]["locked"] for c in graded)
        assert "notebooks/" in nb.cells[0].source                  # links its lesson
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
        assert len(WRONG.get(name, {})) >= 2, f"{name}: add at least two wrong solutions"


def _submission(source, released, cell_source: str):
    nb = nbformat.from_dict(json.loads(json.dumps(released)))
    nb.cells[solution_cell(nb)].source = cell_source
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_round_trip(name, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(COURSE, course, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "gradebook.db", ".nbgrader.log"))
    t_generate = nbgrader(course, "generate_assignment", name, "--force")
    source = nbformat.read(course / "source" / name / f"{name}.ipynb", as_version=4)
    released = nbformat.read(course / "release" / name / f"{name}.ipynb", as_version=4)
    check_released(source, released)

    solution = source.cells[solution_cell(source)].source
    subs = {"solution": source, "blank": released}
    for k, (wrong, repl) in enumerate(WRONG[name].items()):
        cell = solution
        for old, new in repl:
            assert old in cell, (wrong, old)
            cell = cell.replace(old, new)
        subs[f"wrong{k}"] = _submission(source, released, cell)
    attacks = ATTACKS if name == "vring_need_event" else {}
    for k, (cell, _expect) in enumerate(attacks.values()):
        subs[f"attack{k}"] = _submission(source, released, cell)
    for student, nb in subs.items():
        d = course / "submitted" / student / name
        d.mkdir(parents=True)
        nbformat.write(nb, d / f"{name}.ipynb")
    t_autograde = nbgrader(course, "autograde", name, "--create", "--force")
    got = scores(course, name, list(subs))

    graded = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
              for c in source.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert got["solution"] == {g: float(p) for g, p in graded.items()}, got["solution"]
    assert got["blank"] == {g: 0.0 for g in graded}, got["blank"]
    full = sum(graded.values())
    for k, wrong in enumerate(WRONG[name]):
        assert sum(got[f"wrong{k}"].values()) < full, (wrong, got[f"wrong{k}"])
    for k, (attack, (_cell, expect)) in enumerate(attacks.items()):
        assert got[f"attack{k}"] == {g: float(p) for g, p in expect.items()}, \
            (attack, got[f"attack{k}"])
    if attacks:
        k = list(attacks).index("reads the hidden tests")
        graded_nb = nbformat.read(course / "autograded" / f"attack{k}" / name / f"{name}.ipynb",
                                  as_version=4)
        outputs = json.dumps([c.get("outputs", []) for c in graded_nb.cells])
        assert '\\"cell_type\\"' not in outputs and "schema_version" not in outputs
        assert re.search(r"does not let exercise code open", outputs)
    TIMINGS[name] = {"generate_s": round(t_generate, 1), "autograde_s": round(t_autograde, 1),
                     "submissions": len(subs), "points": full}
    print(f"\n{name}: {full} points; generate {t_generate:.1f} s, autograde "
          f"{t_autograde:.1f} s for {len(subs)} submissions "
          f"({t_autograde / len(subs):.1f} s each)")
