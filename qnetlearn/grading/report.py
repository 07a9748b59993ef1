"""The report ``qn.exercises.check`` returns: text anywhere, a widget in a notebook."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .cases import CaseResult
from .compare import Difference


@dataclass
class TestResult:
    """One test: its cases, and for a failure the side-by-side first difference."""

    name: str
    about: str
    cases: list[CaseResult]
    difference: Difference | None = None
    difference_case: str = ""
    recordings: tuple[Any, Any] | None = None      # (yours, reference) for the players
    output: str = ""                                # what the student's function printed
    problem: str = ""                               # the grader's own trouble, if any

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases) and not self.problem

    def text(self, all_cases: bool = True) -> str:
        """The test in words; ``all_cases=False`` lists only the failed cases."""
        mark = "PASS" if self.passed else "FAIL"
        ok = sum(c.passed for c in self.cases)
        lines = [f"[{mark}] {self.name}: {self.about} ({ok} of {len(self.cases)} cases passed)"]
        for c in self.cases:
            if c.passed and not all_cases:
                continue
            lines.append(f"    {'ok  ' if c.passed else 'FAIL'} {c.text}")
            if not c.passed:
                lines.append(f"         {c.reason}")
                if c.detail:
                    lines += ["         " + x for x in c.detail.rstrip().splitlines()[-6:]]
        if self.problem:
            lines.append(f"    {self.problem}")
        if self.difference is not None:
            lines.append(f"    side by side, in: {self.difference_case}")
            lines += ["    " + x for x in self.difference.text().splitlines()]
        if self.output:
            out = self.output if len(self.output) < 1500 else self.output[:1500] + " [...]"
            lines.append("    your function printed:")
            lines += ["      " + x for x in out.splitlines()[:30]]
        return "\n".join(lines)


@dataclass
class Report:
    """All the tests of one slot for one function."""

    slot: str
    tests: list[TestResult] = field(default_factory=list)
    lesson: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.tests) and all(t.passed for t in self.tests)

    @property
    def first_difference(self) -> Difference | None:
        return next((t.difference for t in self.tests if t.difference is not None), None)

    def summary(self) -> str:
        n = sum(t.passed for t in self.tests)
        return f"{self.slot}: {n} of {len(self.tests)} tests passed"

    def text(self) -> str:
        return "\n".join([self.summary()] + [t.text() for t in self.tests])

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    # -- HTML and the widget ------------------------------------------------------------
    def _repr_html_(self) -> str:
        return _html(self)

    def widget(self) -> Any:
        """An ipywidgets box: the report, and the players at the first difference."""
        import ipywidgets as w
        parts: list[Any] = [w.HTML(_html(self))]
        for t in self.tests:
            if t.difference is not None and t.recordings is not None:
                players = _players(t.recordings, t.difference.step)
                if players is not None:
                    parts.append(players)
                break
        return w.VBox(parts)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display
        try:
            display(self.widget())
        except Exception:  # noqa: BLE001 - no widgets: the HTML is the report
            display(HTML(_html(self)))


_CSS = """<style>
.qn-report{font-family:system-ui,sans-serif;font-size:13px;max-width:1100px}
.qn-report .pass{color:#1a7f37}.qn-report .fail{color:#cf222e}
.qn-report td,.qn-report th{vertical-align:top;padding:2px 8px;text-align:left}
.qn-report .sbs{border-collapse:collapse;margin:6px 0 10px 0}
.qn-report .sbs td,.qn-report .sbs th{border:1px solid #d0d7de;font-family:monospace;
 font-size:12px;white-space:pre-wrap}
.qn-report .diff{background:#fff8c5}
</style>"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _html(r: Report) -> str:
    out = [_CSS, '<div class="qn-report">',
           f'<b>{_e(r.summary())}</b>']
    if r.lesson:
        out.append(f' &nbsp;<span>(lesson: {_e(r.lesson)})</span>')
    out.append("<table>")
    for t in r.tests:
        cls = "pass" if t.passed else "fail"
        out.append(f'<tr><td class="{cls}">{"✔" if t.passed else "✘"}</td>'
                   f'<td><b>{_e(t.name)}</b>: {_e(t.about)}')
        fails = [c for c in t.cases if not c.passed]
        if fails:
            out.append("<ul>")
            for c in fails:
                out.append(f"<li>{_e(c.text)}<br><span class='fail'>{_e(c.reason)}</span>")
                if c.detail:
                    out.append(f"<pre>{_e(c.detail[-800:])}</pre>")
                out.append("</li>")
            out.append("</ul>")
        if t.problem:
            out.append(f"<div class='fail'>{_e(t.problem)}</div>")
        if t.difference is not None:
            out.append(_sbs_html(t.difference, t.difference_case))
        if t.output:
            out.append(f"<details><summary>your function printed</summary><pre>"
                       f"{_e(t.output[:3000])}</pre></details>")
        out.append("</td></tr>")
    out.append("</table></div>")
    return "".join(out)


def _sbs_html(d: Difference, case: str) -> str:
    rows = [f"<div>Where your run first differs from the reference run "
            f"(<i>{_e(case)}</i>), step {d.step}"
            f"{': ' + _e(d.note) if d.note else ''}:</div>",
            '<table class="sbs"><tr><th></th><th>your run</th><th>reference run</th></tr>',
            f'<tr class="diff"><td>step {d.step}</td><td>{_e(d.ours)}</td>'
            f'<td>{_e(d.ref)}</td></tr>']
    if d.ours_stack or d.ref_stack:
        rows.append(f"<tr><td>call stack</td><td>{_e(chr(10).join(d.ours_stack))}</td>"
                    f"<td>{_e(chr(10).join(d.ref_stack))}</td></tr>")
    for p, a, b in d.values:
        rows.append(f'<tr class="diff"><td>{_e(p)}</td><td>{_e(repr(a))}</td>'
                    f"<td>{_e(repr(b))}</td></tr>")
    if d.ours_next or d.ref_next:
        rows.append(f"<tr><td>what came next</td><td>{_e(chr(10).join(d.ours_next))}</td>"
                    f"<td>{_e(chr(10).join(d.ref_next))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _players(recs: tuple[Any, Any], step: int) -> Any:
    """The course's players (``qnetlearn.viz``) for both runs, side by side, each at
    ``step``; None when they cannot be built (the report is complete without them)."""
    try:
        import ipywidgets as w

        from .. import viz
    except Exception:  # noqa: BLE001
        return None
    boxes = []
    for title, rec in (("your run", recs[0]), ("reference run", recs[1])):
        at = max(0, min(step, len(rec) - 1))
        player = None
        for make in (lambda: viz.Lesson(rec, views=("callstack", "ring", "interrupt"), start=at),
                     lambda: viz.CallStackPlayer(rec, start=at)):
            try:
                player = make()
                break
            except Exception:  # noqa: BLE001 - e.g. a run without a virtio device
                continue
        if player is None:
            return None
        boxes.append(w.VBox([w.HTML(f"<b>{title}</b>, at step {at}"), player]))
    return w.HBox(boxes)
