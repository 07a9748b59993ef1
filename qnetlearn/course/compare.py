"""The emulator's trace beside real QEMU's recordings (``qnetlearn/data/golden-qemu/``).

``ours(rec)`` and ``theirs(name)`` give one ping cycle each, element numbers renumbered
from 1 so that two cycles compare line for line; ``side_by_side`` aligns them with
``difflib`` and says, for every line that differs, which known cause it matches
(:data:`CAUSES`: patterns in the text of the line, never a guess from its position).
``untraced(rec)`` lists what the emulator recorded that QEMU's trace points do not show.
"""
from __future__ import annotations

import difflib
import re
from collections import Counter
from typing import Any

from ..trace import golden
from .show import Table

__all__ = ["ours", "theirs", "unified_diff", "side_by_side", "explain", "CAUSES",
           "untraced", "who_runs", "agreement", "missing_events", "missing_kinds"]

#: (which side has the line: "qemu", "ours" or "both", regex, why) - first match wins
CAUSES: tuple[tuple[str, str, str], ...] = (
    ("ours", r"kvm_run_exit", "a VM exit: under KVM this guest access to a device register "
     "leaves the guest and QEMU's vCPU thread emulates it; the golden run used TCG, which "
     "has no VM exits"),
    ("ours", r"kvm-apic-msi", "the same 4-byte MSI write, but under KVM it lands in the "
     "kvm-apic-msi region, which passes the message to the kernel's local APIC "
     "(KVM_SIGNAL_MSI)"),
    ("qemu", r"\] (apic|ioapic)_", "the golden run used TCG, where the local APIC and I/O "
     "APIC are emulated inside QEMU and traced; under KVM they are in the host kernel and "
     "QEMU prints nothing for them"),
    ("qemu", r"MSI write to apic-msi", "under TCG the MSI lands in QEMU's own APIC window; "
     "under KVM it goes to kvm-apic-msi instead (see the line on the other side)"),
    ("both", r"msix-table\[entry \d+ (vector_ctrl|addr_lo|addr_hi|data)\]",
     "Linux's first interrupt on a vector: it masks the MSI-X entry, rewrites address and "
     "data, and unmasks it (only once per vector)"),
    ("both", r"e1000-mmio\[0x000c4 ITR\]", "the e1000 driver's adaptive interrupt "
     "throttling writes ITR on the first interrupts, not in the steady state"),
    ("both", r"in_num (1\d|[2-9]\d)\b", "'big packets' RX buffers: a guest that "
     "negotiated GUEST_TSO4/6 without mergeable buffers posts 19-buffer chains; the two "
     "runs differ in mrg_rxbuf or in the guest_tso*/guest_ecn/guest_ufo offloads"),
    ("both", r"virtio_queue_notify .* n 0\b", "an RX refill kick"),
)


def ours(rec: Any, cycle: int = 0) -> list[str]:
    """Ping cycle ``cycle`` of a recording, as ``to_qemu_trace()`` prints it."""
    cycles = golden.ping_cycles(rec.to_qemu_trace().splitlines())
    if not cycles:
        raise ValueError("the recording holds no ping cycle (no RX element or e1000 RX)")
    return golden.renumber_elements(cycles[cycle])


def theirs(name: str, cycle: int | None = 1) -> list[str]:
    """A golden file's lines; with ``cycle`` only that ping cycle (1: steady state)."""
    if cycle is None:
        return golden.renumber_elements(golden.golden_lines(name))
    return golden.steady_cycle(name, cycle)


def unified_diff(qemu_lines: list[str], our_lines: list[str], context: int = 1) -> str:
    """A plain unified diff, QEMU first: '-' lines only QEMU printed, '+' only we did."""
    out = list(difflib.unified_diff(qemu_lines, our_lines, "real QEMU 7.2", "qnetlearn",
                                    lineterm="", n=context))
    return "\n".join(out) if out else "(identical, line for line)"


def _strip_thread(line: str) -> str:
    return re.sub(r"^\[\w+\] ", "", line)


def explain(line: str, side: str, other: str | None = None) -> str:
    """Why ``line`` (on ``side``: 'qemu' or 'ours') has no equal on the other side."""
    if other is not None and _strip_thread(line) == _strip_thread(other):
        return "same event, another thread: " + line.split("]")[0] + "] vs " + \
            other.split("]")[0] + "]"
    for who, pattern, why in CAUSES:
        if who in (side, "both") and re.search(pattern, line):
            return why
    return "not explained by a known cause: step through both runs"


def side_by_side(qemu_lines: list[str], our_lines: list[str]) -> Table:
    """Both traces aligned by difflib: equal lines once, differing ones with a cause."""
    rows: list[list[Any]] = []
    hl: list[int] = []
    sm = difflib.SequenceMatcher(a=qemu_lines, b=our_lines, autojunk=False)
    for tag, a0, a1, b0, b1 in sm.get_opcodes():
        if tag == "equal":
            for k in range(a1 - a0):
                rows.append(["=", qemu_lines[a0 + k], our_lines[b0 + k], ""])
            continue
        qa, ob = qemu_lines[a0:a1], our_lines[b0:b1]
        for k in range(max(len(qa), len(ob))):
            q = qa[k] if k < len(qa) else ""
            o = ob[k] if k < len(ob) else ""
            if q and o and _strip_thread(q) == _strip_thread(o):
                why = explain(q, "qemu", o)
            elif q and o:          # one line replaced by another: say why, once
                e = explain(o, "ours")
                why = e if not e.startswith("not explained") else explain(q, "qemu")
            else:
                why = explain(q, "qemu") if q else explain(o, "ours")
            hl.append(len(rows))
            rows.append(["≠", q, o, why])
    return Table(rows, ["", "real QEMU 7.2 (golden)", "qnetlearn", "why they differ"],
                 highlight=hl)


def agreement(qemu_lines: list[str], our_lines: list[str]) -> dict[str, int]:
    """How many lines match, and how many only one side has."""
    sm = difflib.SequenceMatcher(a=qemu_lines, b=our_lines, autojunk=False)
    same = sum(b.size for b in sm.get_matching_blocks())
    return {"same": same, "only QEMU": len(qemu_lines) - same, "only qnetlearn": len(our_lines) - same}


_GUEST = ("drivers/", "kernel/", "net/core/", "net/ipv4/", "arch/", "mm/")


def who_runs(src: str) -> str:
    """'guest Linux', 'host kernel (KVM)' or 'QEMU', from a tracepoint's source file."""
    if src.startswith("linux/"):
        return "host kernel (KVM)"
    if src.startswith(_GUEST):
        return "guest Linux"
    return "QEMU"


def untraced(rec: Any) -> Table:
    """QEMU functions the recording holds that print nothing in QEMU's own trace, with how
    often each ran (a golden file shows none of them; the recording shows all)."""
    steps = list(rec.steps)
    emits = {s.parent for s in steps if s.kind == "event"}     # calls that printed an event
    c: Counter = Counter()
    traced: set[str] = set()
    where: dict[str, str] = {}
    for i, s in enumerate(steps):
        if s.kind == "call" and who_runs(s.src) == "QEMU":
            c[s.name] += 1
            where[s.name] = s.src
            if i in emits:
                traced.add(s.name)
    for name in traced:
        del c[name]
    rows = [[n, where[n], k] for n, k in c.most_common()]
    return Table(rows, ["QEMU function (no trace point of its own)", "file", "calls"],
                 title=f"{len(rows)} functions QEMU runs silently in this recording")


def _event_name(line: str) -> str:
    return _strip_thread(line).split()[0] if line.strip() else ""


def missing_events(qemu_lines: list[str], our_lines: list[str]) -> list[str]:
    """Trace-event names the golden has and the emulator's trace never prints."""
    ours_names = {_event_name(l) for l in our_lines}
    return sorted({_event_name(l) for l in qemu_lines} - ours_names - {""})


def missing_kinds(qemu_lines: list[str], our_lines: list[str]) -> str:
    """``missing_events`` grouped by prefix, as a lesson's answer: 'apic_* lines', 'none'..."""
    names = missing_events(qemu_lines, our_lines)
    if not names:
        return "none"
    prefixes = sorted({n.split("_")[0] + "_*" for n in names})
    return ", ".join(prefixes) + " lines"
