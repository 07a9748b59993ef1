"""Where a student's run first differs from the reference run.

Both runs are recordings of the same scenario on a deterministic emulator, so they agree
step for step until the student's code changes something: a call that returns another
value, a call that does not happen, a ring index, a queued packet, an interrupt.
:func:`first_difference` walks the two recordings together and stops at the first step
whose call, return value or recorded state (``rec.state(i)``) is not the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_PLAIN = (type(None), bool, int, float, str, bytes)


def _plain(v: Any) -> Any:
    """An argument as two runs can compare it: values stay, objects become type names."""
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, tuple) and all(isinstance(x, _PLAIN) for x in v):
        return v
    return f"<{type(v).__name__}>"


def step_signature(step: Any) -> tuple:
    return (step.kind, step.name, step.depth,
            tuple(sorted((k, _plain(v)) for k, v in step.args.items())))


def step_text(step: Any, rec: Any = None) -> str:
    """A step as the course writes it: ``call virtqueue_pop()``, ``return from f(..) -> 0``."""
    args = {k: _plain(v) for k, v in step.args.items()}
    if step.kind == "return":
        call = ""
        if rec is not None and step.parent >= 0:
            try:
                call = step_text(rec.step(step.parent))[len("call "):]
            except (IndexError, KeyError):
                call = ""
        return f"return from {call or step.name} -> {args.get('ret')!r}"
    inner = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
    verb = "call" if step.kind == "call" else "event"
    return f"{verb} {step.name}({inner})"


def _fmt(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v > 0xFFFF:
        return f"0x{v:x}"
    return repr(v)


def _normalise(state: Any) -> Any:
    """Leave out free text (``broken_reason``: the student's to phrase, and not journaled,
    so a recording shows its last value at every step); ``broken`` says it all."""
    if isinstance(state, dict):
        return {k: _normalise(v) for k, v in state.items() if k != "broken_reason"}
    if isinstance(state, list):
        return [_normalise(v) for v in state]
    return state


def state_differences(ours: Any, ref: Any, path: str = "", limit: int = 12
                      ) -> list[tuple[str, Any, Any]]:
    """(path, ours, reference) for each value that differs, e.g.
    ``devices.net-pci0.queues[0].used_idx``."""
    out: list[tuple[str, Any, Any]] = []
    _walk(ours, ref, path, out, limit)
    return out


def _walk(a: Any, b: Any, path: str, out: list, limit: int) -> None:
    if len(out) >= limit or a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(b) + [k for k in a if k not in b]:
            _walk(a.get(k, "<none>"), b.get(k, "<none>"), f"{path}.{k}" if path else str(k),
                  out, limit)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and \
            any(isinstance(x, (dict, list)) for x in a):
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", out, limit)
        return
    out.append((path, a, b))


@dataclass
class Difference:
    """The first step where the two runs are not the same."""

    step: int                                    # index in both recordings
    what: str                                    # "call", "state" or "length"
    ours: str                                    # the student's step, in words
    ref: str                                     # the reference's step, in words
    ours_stack: list[str] = field(default_factory=list)
    ref_stack: list[str] = field(default_factory=list)
    values: list[tuple[str, Any, Any]] = field(default_factory=list)   # (path, ours, ref)
    ours_next: list[str] = field(default_factory=list)                # what each run did next
    ref_next: list[str] = field(default_factory=list)
    note: str = ""

    def text(self) -> str:
        lines = [f"first difference at step {self.step} ({self.what}):"]
        if self.note:
            lines.append(f"  ({self.note})")
        lines += [
                  f"  your run:      {self.ours}",
                  f"  reference run: {self.ref}"]
        if self.ours_stack or self.ref_stack:
            lines.append(f"  call stack (yours):     {' > '.join(self.ours_stack)}")
            lines.append(f"  call stack (reference): {' > '.join(self.ref_stack)}")
        for p, a, b in self.values:
            lines.append(f"  {p}: {_short(a)} in your run, {_short(b)} in the reference")
        if self.ours_next or self.ref_next:
            lines.append("  then, yours:     " + "; ".join(self.ours_next))
            lines.append("  then, reference: " + "; ".join(self.ref_next))
        return "\n".join(lines)


def _short(v: Any, n: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def _next(rec: Any, i: int, n: int = 4) -> list[str]:
    return [step_text(rec.step(j)) for j in range(i + 1, min(len(rec), i + 1 + n))]


def _journal_key(rec: Any, entry: tuple) -> tuple:
    """A journal entry with its object by type (ids differ between two machines)."""
    step, oid, key, value = entry
    owner = rec.images[oid][0] if oid is not None else None   # None: guest RAM
    return (step, type(owner).__name__, key, value)


def _first_journal_difference(ours: Any, ref: Any) -> int | None:
    """The step of the first state change the two runs do not share, or None."""
    a, b = ours.journal, ref.journal
    for x, y in zip(a, b):
        if _journal_key(ours, x) != _journal_key(ref, y):
            return min(x[0], y[0])
    if len(a) != len(b):
        longer = a if len(a) > len(b) else b
        return longer[min(len(a), len(b))][0]
    return None


def first_difference(ours: Any, ref: Any, window: int = 400) -> Difference | None:
    """Walk two recordings together; the first step whose call or state differs.

    The calls are compared at every step (cheap); the states (``rec.state(i)``, rebuilt from
    the journal) from the first state change the two journals do not share, up to
    ``window`` steps on, so that a long run costs little more than a short one.
    """
    n = min(len(ours), len(ref))
    k = next((i for i in range(n) if step_signature(ours.step(i)) != step_signature(ref.step(i))),
             n)
    both = ours.machine is not None and ref.machine is not None
    if both and n:
        st_o, st_r = _normalise(ours.state(0)), _normalise(ref.state(0))
        if st_o != st_r:          # already different when the recording started
            d = _difference(ours, ref, 0, "state", st_o, st_r)
            d.note = "the runs differed already when the recording started, e.g. at boot"
            return d
    j = _first_journal_difference(ours, ref) if both else None
    if j is not None and j <= k:
        for i in range(max(0, j - 1), min(k + 1, n, j + window)):
            st_o, st_r = _normalise(ours.state(i)), _normalise(ref.state(i))
            if st_o != st_r:
                return _difference(ours, ref, i, i < k and "state" or "call", st_o, st_r)
    if k < n:
        st = (_normalise(ours.state(k)), _normalise(ref.state(k))) if both else (None, None)
        return _difference(ours, ref, k, "call", *st)
    if len(ours) != len(ref):
        longer, which = (ours, "yours") if len(ours) > len(ref) else (ref, "reference")
        text = step_text(longer.step(n), longer)
        return Difference(n, "length",
                          text if which == "yours" else "(your run had ended)",
                          text if which == "reference" else "(the reference run had ended)",
                          values=[("steps recorded", len(ours), len(ref))])
    return None


def _difference(ours: Any, ref: Any, i: int, what: str, st_o: Any, st_r: Any) -> Difference:
    so, sr = ours.step(i), ref.step(i)
    values = state_differences(st_o, st_r) if st_o != st_r else []
    if what == "call" and so.kind == sr.kind == "return" and so.name == sr.name:
        values.insert(0, (f"{so.name} returned", so.args.get("ret"), sr.args.get("ret")))
    return Difference(i, what, step_text(so, ours), step_text(sr, ref), ours.callstack(i),
                      ref.callstack(i), values, _next(ours, i), _next(ref, i))
