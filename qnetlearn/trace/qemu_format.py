"""``rec.to_qemu_trace()``: trace events in the form of the normalized real-QEMU goldens.

The goldens (``reference/golden-qemu/README.md``, "Normalization") print one event a line:
``[main] virtqueue_fill vq vq0 elem elem1 len 110 idx 0``.  Threads become ``[main]`` or
``[vcpu0]``, virtqueues ``vqN`` by index, elements ``elemN`` numbered from 1 in the order of
``virtqueue_alloc_element``, the device ``vdev0``.  Only events with a QEMU name are printed.
"""
from __future__ import annotations

from typing import Any, Iterable

from .recorder import THREAD, Step


def format_trace(steps: Iterable[Step]) -> str:
    elems: dict[Any, str] = {}
    vdevs: dict[Any, str] = {}
    lines = []
    for s in steps:
        if s.kind != "event" or s.tp.src == "qnetlearn":
            continue
        args = s.args
        if "mr" in args:
            text = args["mr"].describe(args["offset"], args["value"])
            if text is None:
                continue
            args = {"text": text, "size": args["size"],
                    "by": "cpu0" if s.context == "vcpu0" else "device"}
        if "elem" in args:
            key = args["elem"]
            if s.name == "virtqueue_alloc_element" or key not in elems:
                elems[key] = f"elem{len(elems) + 1}"
            args["elem"] = elems[key]
        if "vdev" in args:
            args["vdev"] = vdevs.setdefault(args["vdev"], f"vdev{len(vdevs)}")
        lines.append(f"[{THREAD.get(s.context, s.context)}] {s.name} {s.tp.fmt.format(**args)}")
    return "\n".join(lines) + ("\n" if lines else "")
