"""``rec.to_qemu_trace()``: trace events in the form of the normalized real-QEMU goldens.

The goldens (``reference/golden-qemu/README.md``, "Normalization") print one event a line:
``[main] virtqueue_fill vq vq0 elem elem1 len 110 idx 0``.  Threads become ``[main]`` or
``[vcpu0]``, virtqueues ``vqN`` by index, elements ``elemN`` numbered from 1 in the order of
``virtqueue_alloc_element``, the device ``vdev0``.  Only events with a QEMU name are printed.
"""
from __future__ import annotations

from typing import Any, Iterable

from .recorder import THREAD, Step


class QemuLines:
    """Turns trace events into golden-form lines, numbering ``elem``/``vdev`` as it goes."""

    def __init__(self) -> None:
        self.elems: dict[Any, str] = {}
        self.vdevs: dict[Any, str] = {}

    def line(self, tp: Any, context: str, args: dict[str, Any]) -> str | None:
        """The line for one event, or None for one the golden form leaves out."""
        if tp.src == "qnetlearn":
            return None
        if "mr" in args:
            text = args["mr"].describe(args["offset"], args["value"])
            if text is None:
                return None
            args = {"text": text, "size": args["size"],
                    "by": "cpu0" if context == "vcpu0" else "device"}
        if "elem" in args:
            key = args["elem"]
            if tp.name == "virtqueue_alloc_element" or key not in self.elems:
                self.elems[key] = f"elem{len(self.elems) + 1}"
            args["elem"] = self.elems[key]
        if "vdev" in args:
            args["vdev"] = self.vdevs.setdefault(args["vdev"], f"vdev{len(self.vdevs)}")
        return f"[{THREAD.get(context, context)}] {tp.name} {tp.fmt.format(**args)}"


def format_trace(steps: Iterable[Step]) -> str:
    q = QemuLines()
    lines = [q.line(s.tp, s.context, s.args) for s in steps if s.kind == "event"]
    kept = [ln for ln in lines if ln is not None]
    return "\n".join(kept) + ("\n" if kept else "")
