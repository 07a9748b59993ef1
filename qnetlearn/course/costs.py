"""What one echo costs, counted by the emulator: accesses that leave the guest, kicks,
interrupts and bytes copied, from ``vm.stats`` before and after a number of pings.

The counters are the vCPU's (``cpu: ...``: every guest access to a device region, and under
KVM the VM exits it caused), the interrupt controller's, and each device's (``<id>: bytes
copied ...``).  Nothing here is estimated: a row is the counters' difference divided by the
number of echoes.
"""
from __future__ import annotations

from typing import Any, Mapping

from .lab import start
from .measure import stats_delta
from .show import Table

__all__ = ["echo_costs", "flood_costs", "cost_table", "region_table", "COLUMNS"]

#: (column title, how to get it from one machine's per-echo deltas)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("device accesses QEMU handles", "mmio"),
    ("VM exits (KVM)", "exits"),
    ("ioeventfd kicks", "ioeventfd"),
    ("interrupts taken", "interrupts"),
    ("bytes copied", "bytes"),
    ("round trip (virtual µs)", "rtt"),
)


def echo_costs(cmdline: str, pings: int = 5, warm: int = 2) -> dict[str, Any]:
    """Per-echo costs of the machine ``cmdline`` (host pings the guest ``pings`` times after
    ``warm`` pings that set things up)."""
    vm = start(cmdline, warm)
    before = dict(vm.stats)
    rtts = vm.host().ping(count=pings)
    d = stats_delta(before, dict(vm.stats))
    per = {k: v / pings for k, v in d.items()}
    regions = {k[len("cpu: "):]: v for k, v in per.items()
               if k.startswith("cpu: mmio ") and k != "cpu: mmio accesses"}
    regions.update({k[len("cpu: "):]: v for k, v in per.items() if k.startswith("cpu: in-kernel ")})
    counted = any("bytes copied" in k for k in vm.stats)
    copied = sum(v for k, v in per.items() if "bytes copied" in k) if counted else None
    ok = [r for r in rtts if r is not None]
    return {
        "accel": vm.accel,
        "model": ", ".join(n.model for n in vm.config.nics),
        "mmio": per.get("cpu: mmio accesses", 0.0),
        "exits": per.get("cpu: exits KVM_EXIT_MMIO", 0.0) + per.get("cpu: exits KVM_EXIT_IO", 0.0),
        "ioeventfd": per.get("cpu: ioeventfd kicks", 0.0),
        "interrupts": per.get("cpu: interrupts", 0.0),
        "bytes": copied,
        "rtt": sum(ok) / len(ok) if ok else None,
        "regions": regions,
        "answered": len(ok),
        "pings": pings,
        "raw": per,
    }


def flood_costs(cmdline: str, frames: int = 32, warm: int = 2) -> dict[str, Any]:
    """Per-echo costs when ``frames`` echo requests arrive at once (counters / frames)."""
    from .lab import flood
    vm = start(cmdline, warm)
    before = dict(vm.stats)
    answered = flood(vm, frames)
    d = stats_delta(before, dict(vm.stats))
    per = {k: v / frames for k, v in d.items()}
    return {
        "accel": vm.accel,
        "mmio": per.get("cpu: mmio accesses", 0.0),
        "exits": per.get("cpu: exits KVM_EXIT_MMIO", 0.0) + per.get("cpu: exits KVM_EXIT_IO", 0.0),
        "ioeventfd": per.get("cpu: ioeventfd kicks", 0.0),
        "interrupts": per.get("cpu: interrupts", 0.0),
        "bytes": sum(v for k, v in per.items() if "bytes copied" in k)
        if any("bytes copied" in k for k in vm.stats) else None,
        "answered": answered, "frames": frames, "raw": per,
    }


def _fmt(v: Any) -> Any:
    if v is None:
        return "not counted"
    if isinstance(v, float):
        return int(v) if v == int(v) else round(v, 1)
    return v


def cost_table(machines: Mapping[str, str], pings: int = 5, warm: int = 2) -> Table:
    """One row per machine (label -> command line): the per-echo costs of ``COLUMNS``."""
    rows = []
    for label, cmdline in machines.items():
        c = echo_costs(cmdline, pings, warm)
        rows.append([label, c["accel"]] + [_fmt(c[key]) for _t, key in COLUMNS])
    return Table(rows, ["machine", "accel"] + [t for t, _k in COLUMNS],
                 title=f"per echo (host pings guest), averaged over {pings} echoes")


def region_table(machines: Mapping[str, str], pings: int = 5, warm: int = 2) -> Table:
    """Which device regions the guest touched per echo, and how (per machine)."""
    per = {label: echo_costs(cmd, pings, warm)["regions"] for label, cmd in machines.items()}
    keys = sorted({k for r in per.values() for k in r})
    rows = [[k] + [_fmt(per[label].get(k, 0)) for label in machines] for k in keys]
    return Table(rows, ["guest access (kind and region)"] + list(machines),
                 title="guest accesses to device regions, per echo")
