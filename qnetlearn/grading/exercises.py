"""``qn.exercises``: check an exercise in the notebook, grade it in nbgrader's test cells.

* :func:`check` runs a slot's public tests here, in the notebook, and returns a
  :class:`~qnetlearn.grading.report.Report` (a widget in JupyterLab, text elsewhere): each
  test passed or failed with a reason in plain words, and for a failure the student's run
  beside the reference run at the first step where they differ.
* :func:`grade` is what the assignments' test cells call: it runs the given tests in a fresh
  worker process (``worker.py``), prints the outcome and raises ``AssertionError`` when a
  case fails, which is how nbgrader takes the cell's points.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from .cases import (PUBLIC, Case, CaseResult, Test, call, compare_case,
                    find_test, public_tests, run)
from .compare import Difference, first_difference
from .report import Report, TestResult
from .scenarios import MALFORMED, SCENARIOS
from .slots import DEFAULT_TIMEOUT, StudentError, all_slots, get_slot, plug

__all__ = ["check", "grade", "call", "run", "scenario", "plug", "StudentError", "all_slots", "public_tests",
           "Report", "MALFORMED", "SCENARIOS", "PUBLIC", "Difference"]


def scenario(name: str, **params: Any) -> dict[str, Any]:
    """Run one of the tests' scenarios (``run(name, **params)``) and return what it
    observed; inside ``with qn.plug(...)`` it runs with your function."""
    from .scenarios import Ctx, run_scenario
    return run_scenario(name, params, Ctx())


def _lesson(slot: str) -> str:
    name = get_slot(slot).lesson
    return f"notebooks/{name}.ipynb" if name else ""


def check(slot: str, fn: Callable[..., Any], tests: list[str] | None = None,
          timeout: float = DEFAULT_TIMEOUT, compare: bool = True) -> Report:
    """Run ``slot``'s public tests on ``fn`` here and report (API.md, "Exercises").

    For the first failing test, the failing scenario is run again, recorded, with the
    reference and with ``fn``, and the report shows where the two runs first differ.
    """
    get_slot(slot)
    if os.environ.get("QNETLEARN_GRADING"):
        # nbgrader's autograde (exercises/nbgrader_config.py) sets it: the graded cells
        # test the function; check() here would only spend the grader's time
        return Report(slot, lesson="check() does not run while the notebook is graded")
    if not callable(fn):
        raise TypeError(f"check({slot!r}, ...) needs your function, not {fn!r}")
    chosen = public_tests(slot) if tests is None else [find_test(slot, n) for n in tests]
    report = Report(slot, lesson=_lesson(slot))
    shown = False
    for test in chosen:
        results = [compare_case(slot, c, fn, timeout=timeout) for c in test.cases]
        tr = TestResult(test.name, test.about, results)
        if compare and not shown and not tr.passed:
            for c, r in zip(test.cases, results):
                if not r.passed and c["kind"] == "run":
                    again = compare_case(slot, c, fn, record=True, timeout=timeout)
                    recs = (again.student.ctx.rec if again.student and again.student.ctx
                            else None,
                            again.reference.ctx.rec if again.reference and again.reference.ctx
                            else None)
                    if recs[0] is not None and recs[1] is not None:
                        tr.difference = first_difference(recs[0], recs[1])
                        tr.difference_case = r.text
                        tr.recordings = recs  # type: ignore[assignment]
                        shown = tr.difference is not None
                    break
        report.tests.append(tr)
    return report


def _items(slot: str, items: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """The tests as sent to the worker: public test names (looked up there, in a fresh
    import, so a notebook cannot change them) and ``call``/``run`` cases."""
    names, out = [], []
    for it in items:
        if isinstance(it, Test):
            names.append(it.name)
            out += it.cases
        elif isinstance(it, str):
            names.append(it)
            out.append(it)
        elif isinstance(it, dict) and it.get("kind") in ("call", "run"):
            out.append(dict(it))
        elif isinstance(it, (list, tuple)):
            out += _items(slot, tuple(it))[1]
        else:
            raise TypeError(f"grade() takes test names, call(...) and run(...) cases, "
                            f"not {it!r}")
    return (", ".join(names) if names else f"{len(out)} case(s)"), out


def expand(slot: str, items: list[Any]) -> list[Case]:
    """Public test names replaced by their cases."""
    cases: list[Case] = []
    for it in items:
        cases += find_test(slot, it).cases if isinstance(it, str) else [it]
    return cases


def grade(slot: str, fn: Callable[..., Any], *tests: Any, timeout: float = DEFAULT_TIMEOUT,
          total_timeout: float | None = None, isolate: bool = True, quiet: bool = False
          ) -> None:
    """Grade ``fn`` on ``tests`` (public test names, or ``call(...)``/``run(...)`` cases).

    Runs in a fresh worker process (``isolate=False`` runs here, for debugging), prints
    the outcome, and raises ``AssertionError`` if any case fails: nbgrader then gives the
    cell no points.
    """
    from .worker import DEFAULT_TOTAL_TIMEOUT, run_isolated
    get_slot(slot)
    name, items = _items(slot, tests)
    if not items:
        raise ValueError("grade() needs at least one test or case")
    about = "public test" if all(isinstance(i, str) for i in items) else "cases"
    if not callable(fn):
        raise AssertionError(f"{slot}: there is no function to grade ({fn!r})")
    output = problem = ""
    if isolate:
        budget = total_timeout if total_timeout is not None else DEFAULT_TOTAL_TIMEOUT
        try:
            texts, items_out, output, problem = run_isolated(slot, fn, items, timeout, budget)
        except TypeError as e:                         # not a def function
            raise AssertionError(f"{slot}: {e}") from None
        results = []
        for k, text in enumerate(texts or ["(the grader did not start)"]):
            if k < len(items_out):
                it = items_out[k]
                results.append(CaseResult(str(it.get("text", text)), bool(it.get("passed")),
                                          str(it.get("reason", "")), str(it.get("kind", "")),
                                          detail=str(it.get("detail", ""))))
            else:
                results.append(CaseResult(text, False,
                                          problem or "not run (the grader stopped early)",
                                          "skipped"))
    else:
        results = [compare_case(slot, c, fn, timeout=timeout) for c in expand(slot, items)]
    tr = TestResult(name, about, results, output=output.strip(), problem=problem)
    if not quiet:
        print(tr.text(all_cases=False))      # the passed cases stay unnamed (hidden tests)
    if not tr.passed:
        bad = [c for c in results if not c.passed]
        first = bad[0].reason if bad else problem
        raise AssertionError(f"{slot}: {len(bad)} of {len(results)} case(s) failed; "
                             f"first: {first}")
