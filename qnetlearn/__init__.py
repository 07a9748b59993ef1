"""qnetlearn: learn QEMU/KVM networking by running it.

``qn.Machine.from_cmdline(...)`` builds a QEMU pc machine from a QEMU command line; its
``record()`` gives recordings that ``qn.viz`` replays.  See API.md.
"""
from __future__ import annotations

from typing import Any

from .machine import Machine
from .system.vl import CmdlineError

__all__ = ["Machine", "CmdlineError", "viz", "exercises", "plug"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # the course parts need ipywidgets & co; load them only when asked for
    if name == "viz":
        from . import viz
        return viz
    if name == "exercises":
        from .grading import exercises
        return exercises
    if name == "plug":
        from .grading.slots import plug
        return plug
    raise AttributeError(f"module 'qnetlearn' has no attribute {name!r}")
