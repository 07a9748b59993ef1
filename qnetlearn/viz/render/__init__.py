"""Pure renderers: recorded state at one step -> SVG text (no browser, no widgets)."""
from __future__ import annotations

from .callstack import callstack_svg
from .interrupt import interrupt_svg
from .netqueue import netqueue_svg
from .ring import e1000_ring_svg, ring_svg

__all__ = ["callstack_svg", "ring_svg", "e1000_ring_svg", "interrupt_svg", "netqueue_svg"]
