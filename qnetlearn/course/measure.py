"""Questions a lesson asks of a recording, answered from the recording itself.

Every function here reads ``rec.steps``, ``rec.callstack``, ``rec.state`` or the machine's
counters; none knows what the answer "should" be.  Lessons pass them to ``predict`` as the
``answer_fn``, so a different machine (a knob turned) gives a different revealed answer.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Iterable

__all__ = [
    "calls", "events", "called_by", "count_calls", "count_events", "first_call", "caller_of", "chain_to",
    "thread_of", "guest_interrupts", "interrupt_vectors", "msi_messages", "tx_kicks",
    "dispatches", "queue_state", "used_len", "rx_used", "stats_delta", "during",
    "top_level_names", "drops", "netqueue_len", "deepest_below", "register_accesses",
    "find_call",
]

#: the guest kernel's interrupt entry points (kernel/irq/chip.c): one call = one interrupt taken
IRQ_ENTRIES = ("handle_edge_irq", "handle_fasteoi_irq", "handle_level_irq")


def calls(rec: Any, name: str) -> list[int]:
    """Indices of the call steps of function ``name``."""
    steps = rec.steps
    return [i for i in rec.find(name) if steps[i].kind == "call"]


def events(rec: Any, name: str) -> list[int]:
    """Indices of the trace events named ``name`` (QEMU's trace-event names)."""
    steps = rec.steps
    return [i for i in rec.find(name) if steps[i].kind == "event"]


def count_calls(rec: Any, name: str) -> int:
    return len(calls(rec, name))


def count_events(rec: Any, name: str) -> int:
    return len(events(rec, name))


def first_call(rec: Any, name: str) -> int:
    """Index of the first call of ``name``; KeyError when the recording has none."""
    found = calls(rec, name)
    if not found:
        raise KeyError(f"{name} was never called in this recording")
    return found[0]


def caller_of(rec: Any, name: str, occurrence: int = 0) -> str:
    """The function that called ``name`` (its ``occurrence``-th call), from the call stack."""
    found = calls(rec, name)
    if len(found) <= occurrence:
        raise KeyError(f"{name} was called {len(found)} time(s) in this recording")
    stack = rec.callstack(found[occurrence])
    return stack[-2] if len(stack) >= 2 else "(the main loop or the vCPU, at top level)"


def called_by(rec: Any, name: str, occurrence: int = 0) -> list[str]:
    """The functions that the ``occurrence``-th call of ``name`` called directly, in order."""
    found = calls(rec, name)
    if len(found) <= occurrence:
        raise KeyError(f"{name} was called {len(found)} time(s) in this recording")
    i = found[occurrence]
    steps = rec.steps
    out = []
    for j in range(i + 1, len(steps)):
        s = steps[j]
        if s.kind == "return" and s.parent == i:
            break
        if s.kind == "call" and s.parent == i:
            out.append(s.name)
    return out


def chain_to(rec: Any, name: str, occurrence: int = 0) -> list[str]:
    """The call stack, outermost first, at the ``occurrence``-th call of ``name``."""
    found = calls(rec, name)
    if len(found) <= occurrence:
        raise KeyError(f"{name} was called {len(found)} time(s) in this recording")
    return rec.callstack(found[occurrence])


def thread_of(rec: Any, name: str, occurrence: int = 0) -> str:
    """Which context ran ``name``: 'main-loop' (QEMU's main thread) or 'vcpu0'."""
    found = rec.find(name)
    if len(found) <= occurrence:
        raise KeyError(f"{name} does not appear in this recording")
    return rec.steps[found[occurrence]].context


def guest_interrupts(rec: Any) -> int:
    """Interrupts the guest took: entries into its interrupt handlers."""
    return sum(count_calls(rec, n) for n in IRQ_ENTRIES)


def interrupt_vectors(rec: Any) -> list[int]:
    """The vectors of the interrupts the guest took, in order."""
    steps = rec.steps
    out = []
    for i, s in enumerate(steps):
        if s.kind == "call" and s.name in IRQ_ENTRIES:
            out.append(s.args.get("vector"))
    return out


def msi_messages(rec: Any) -> int:
    """Messages a device sent toward the interrupt controller (msi_send_message calls)."""
    return count_calls(rec, "msi_send_message")


def tx_kicks(rec: Any) -> int:
    """Notifications QEMU handled for a virtqueue (virtio_queue_notify events)."""
    return count_events(rec, "virtio_queue_notify")


def dispatches(rec: Any) -> list[dict[str, Any]]:
    """What the main loop ran at top level, in order: each fd handler, bottom half, timer
    or vCPU slice, with its thread and virtual time (µs)."""
    out = []
    for i, s in enumerate(rec.steps):
        if s.kind == "call" and s.depth == 0:
            out.append({"step": i, "function": s.name, "thread": s.context,
                        "time_us": round(s.time_ns / 1000, 1), "source": s.src})
    return out


def top_level_names(rec: Any) -> list[str]:
    return [d["function"] for d in dispatches(rec)]


def queue_state(rec: Any, device: str = "net-pci0", queue: int = 0,
                step: int | None = None) -> dict[str, Any]:
    """One virtqueue as recorded at ``step`` (default: the last step)."""
    i = len(rec.steps) - 1 if step is None else step
    return rec.state(i)["devices"][device]["queues"][queue]


def used_len(rec: Any, queue: int = 1, device: str = "net-pci0") -> int:
    """The length the device wrote in the used ring for the last buffer of ``queue``."""
    q = queue_state(rec, device, queue)
    if not q["used_idx"]:
        raise ValueError(f"queue {queue} has no used buffer yet")
    return q["used_ring"][(q["used_idx"] - 1) % q["num"]]["len"]


def rx_used(rec: Any, device: str = "net-pci0") -> int:
    """RX used.idx at the end of the recording."""
    return queue_state(rec, device, 0)["used_idx"]


def stats_delta(before: dict[str, int], after: dict[str, int]) -> Counter:
    """Counters that changed between two ``dict(vm.stats)`` snapshots."""
    out: Counter = Counter()
    for k, v in after.items():
        d = v - before.get(k, 0)
        if d:
            out[k] = d
    return out


def during(vm: Any, action: Callable[[], Any]) -> Counter:
    """Run ``action()`` and return how much each of ``vm.stats`` moved meanwhile."""
    before = dict(vm.stats)
    action()
    return stats_delta(before, dict(vm.stats))


def names_in(rec: Any, kinds: Iterable[str] = ("call",)) -> Counter:
    """How often each function (or event) appears in the recording."""
    kinds = set(kinds)
    return Counter(s.name for s in rec.steps if s.kind in kinds)


def _drop_counts(state: dict[str, Any]) -> Counter:
    c: Counter = Counter()
    for name, q in state.get("netqueues", {}).items():
        for k, v in q.get("stats", {}).items():
            if k.startswith("drop"):
                c[f"{name}: {k}"] += v
    for name, d in state.get("devices", {}).items():
        for k, v in d.get("stats", {}).items():
            if k.startswith("drop"):
                c[f"{name}: {k}"] += v
    return c


def drops(rec: Any) -> int:
    """Frames dropped (any counted reason) between the first and the last step."""
    first = _drop_counts(rec.state(0))
    last = _drop_counts(rec.state(len(rec.steps) - 1))
    return sum(max(0, v - first.get(k, 0)) for k, v in last.items())


def netqueue_len(rec: Any, client: str, step: int | None = None) -> int:
    """Packets waiting in ``client``'s incoming NetQueue at ``step`` (default: the end)."""
    i = len(rec.steps) - 1 if step is None else step
    return rec.state(i)["netqueues"][client]["count"]


def find_call(rec: Any, name: str, **match: Any) -> int:
    """Index of the first call of ``name`` whose shown arguments include ``match``."""
    steps = rec.steps
    for i in calls(rec, name):
        args = steps[i].args
        if all(args.get(k) == v for k, v in match.items()):
            return i
    raise KeyError(f"no call of {name} with {match} in this recording")


def deepest_below(rec: Any, name: str, occurrence: int = 0, at: int | None = None) -> list[str]:
    """The call stack at the deepest call made inside the ``occurrence``-th call of
    ``name`` (or inside the call at step ``at``): how far that call went, outermost first."""
    i = calls(rec, name)[occurrence] if at is None else at
    steps = rec.steps
    base = steps[i].depth
    best = i
    for j in range(i + 1, len(steps)):
        s = steps[j]
        if s.depth <= base and s.kind == "return":
            break
        if s.kind == "call" and s.depth > steps[best].depth:
            best = j
    return rec.callstack(best)


_MR = re.compile(r"^\[(\w+)\] memory_region_ops_(read|write) ([\w-]+)\[(0x[0-9a-f]+)(?: ([^\]]+))?\] "
                 r"(0x[0-9a-f]+) by=(\S+)")


def register_accesses(rec: Any, region: str | None = None) -> list[dict[str, Any]]:
    """Device-register accesses in the recording, from its QEMU-form trace: thread, read
    or write, region, offset, register name, value and who made it (cpu0 or device)."""
    out = []
    for line in rec.to_qemu_trace().splitlines():
        m = _MR.match(line)
        if m and (region is None or m.group(3) == region):
            out.append({"thread": m.group(1), "op": m.group(2), "region": m.group(3),
                        "offset": int(m.group(4), 16), "register": m.group(5) or "",
                        "value": int(m.group(6), 16), "by": m.group(7)})
    return out
