"""Shared bits of the renderers: how values, arguments, threads and layers are shown."""
from __future__ import annotations

from typing import Any

from .._svg import layer_of

THREADS = {"main-loop": "QEMU main loop thread", "vcpu0": "vCPU 0 (the guest runs)"}


def thread_title(context: str) -> str:
    return THREADS.get(context, context)


def step_layer(step: Any) -> str:
    """The layer a step belongs to (its source file's; qnetlearn's guest log is the guest)."""
    if step.name == "guest" and step.src == "qnetlearn":
        return "guest"
    return layer_of(step.src)


def fmt_value(v: Any) -> str:
    """A value as a student wants to read it: addresses in hex, short text."""
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"0x{v:x}" if v > 0xFFFF else str(v)
    if hasattr(v, "address") and hasattr(v, "data"):          # an MSIMessage
        return f"{{address 0x{v.address:x}, data 0x{v.data:x}}}"
    if hasattr(v, "describe") and hasattr(v, "name"):          # a MemoryRegion
        return str(getattr(v, "name"))
    name = getattr(v, "name", None)
    if isinstance(name, str) and type(v).__repr__ is object.__repr__:
        return name
    s = str(v)
    if s.startswith("<") and " object at 0x" in s:
        s = f"<{type(v).__name__}>"
    return s if len(s) <= 48 else s[:45] + "..."


def fmt_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in args.items())
