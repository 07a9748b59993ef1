"""qnetlearn: learn QEMU/KVM networking by running it.

``qn.Machine.from_cmdline(...)`` builds a QEMU pc machine from a QEMU command line; its
``record()`` gives recordings that ``qn.viz`` replays.  See API.md.
"""
from __future__ import annotations

import importlib
from typing import Any

from .machine import Machine
from .system.vl import CmdlineError

__all__ = ["Machine", "CmdlineError", "viz", "course", "exercises", "plug"]
__version__ = "0.1.0"


_LAZY = {"viz": ".viz", "course": ".course", "exercises": ".grading.exercises"}


def __getattr__(name: str) -> Any:
    """The course parts (widgets, lessons' helpers, exercises) need ipywidgets & co: they
    load on first use, so ``import qnetlearn`` stays light for the emulator alone."""
    if name in _LAZY:
        return importlib.import_module(_LAZY[name], __name__)
    if name == "plug":
        return importlib.import_module(".grading.slots", __name__).plug
    raise AttributeError(f"module 'qnetlearn' has no attribute {name!r}")
