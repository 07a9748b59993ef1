"""qnetlearn's visuals: players that replay a recording step by step, and the renderers
behind them (recorded state -> SVG; matplotlib for the timeline; networkx for topology).

``import qnetlearn.viz`` is light: the widget players (anywidget, ipywidgets) and
matplotlib/networkx load only when first used::

    qn.viz.CallStackPlayer(rec)
    qn.viz.RingPlayer(rec, device="net-pci0", queue=0)
    qn.viz.InterruptPlayer(rec)
    qn.viz.Topology(vm)            # or Topology(vm, rec) to follow a recording
    qn.viz.Lesson(rec)             # several views stepping together
    # every player takes slide=True for the 1280x720 projector form
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "Player": "players", "CallStackPlayer": "players", "RingPlayer": "players",
    "InterruptPlayer": "players", "NetQueuePlayer": "players", "TimelinePlayer": "players",
    "Topology": "players", "Lesson": "players", "SVGText": "players",
    "player_html": "players",
    "callstack_svg": "render.callstack", "ring_svg": "render.ring",
    "e1000_ring_svg": "render.ring", "interrupt_svg": "render.interrupt",
    "netqueue_svg": "render.netqueue", "topology_svg": "render.topology",
    "topology_graph": "render.topology", "timeline_figure": "render.timeline",
    "Replay": "replay", "Captioner": "captions", "TEMPLATES": "captions",
    "build": "views", "export_html": "export", "template_dir": "export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'qnetlearn.viz' has no attribute {name!r}")
    value = getattr(import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
