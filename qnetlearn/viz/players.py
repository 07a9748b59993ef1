"""The players: a recording replayed step by step in the browser, with no kernel round trip.

Every frame is rendered in Python once (``views.build``) and sent to the browser with the
captions; the browser steps through them (buttons, slider, keyboard left/right, play).  A
player is an anywidget (``_esm`` below), and it also renders without any widget machinery:
``_repr_html_`` is a self-contained page fragment with the same JavaScript, so a player
steps in exported HTML and in RISE slides too, and ``to_svg(i)`` / ``strip(steps)`` give the
static pictures for print.
"""
from __future__ import annotations

import html
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import anywidget
import traitlets

from .replay import Replay
from .views import (CallStackView, InterruptView, NetQueueView, RingView, TimelineView,
                    TopologyView, View, build, default_device)

if TYPE_CHECKING:  # pragma: no cover
    from ..trace.recorder import Recorder

_STATIC = Path(__file__).with_name("static")
_JS = (_STATIC / "player.js").read_text(encoding="utf-8")
_CSS = (_STATIC / "player.css").read_text(encoding="utf-8")

_ESM = _JS + """
function render({ model, el }) {
  // The browser owns the step; the kernel hears about it at most every 300 ms.  The kernel
  // echoes what it was sent (ipywidgets 8): an echo of our own value must not pull the
  // player back to a step the student has already left.
  var pending = null;
  var sent = null;
  var host = {
    get: function () { return model.get("step"); },
    set: function (i) {
      model.set("step", i);
      if (pending === null) {
        pending = setTimeout(function () {
          pending = null;
          sent = model.get("step");
          try { model.save_changes(); } catch (e) { /* no kernel: fine */ }
        }, 300);
      }
    },
    on: function (cb) {
      model.on("change:step", function () {
        var v = model.get("step");
        if (v === sent || pending !== null) return;
        cb(v);
      });
    },
  };
  return qnvMount(el, model.get("_data"), host);
}
export default { render };
"""


class SVGText(str):
    """An SVG document as a string that notebooks display as a picture."""

    def _repr_svg_(self) -> str:
        return str(self)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(str(self), encoding="utf-8")
        return p


def _json_for_script(data: Any) -> str:
    """JSON safe inside <script type="application/json"> (no "</" can close it)."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


#: frames of a view above this many bytes travel gzip-compressed (the browser unpacks them
#: with DecompressionStream): a long recording's call stacks shrink about twentyfold
PACK_ABOVE = 200_000


def pack(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each large ``frames`` list replaced by ``frames_gz`` (base64 of gzip of
    its JSON).  The frames are the same; only how they travel changes."""
    import base64
    import gzip
    out = dict(data)
    views = []
    for v in data["views"]:
        text = json.dumps(v["frames"], separators=(",", ":"))
        if len(text) > PACK_ABOVE:
            v = dict(v)
            del v["frames"]
            v["frames_gz"] = base64.b64encode(gzip.compress(text.encode(), 6, mtime=0)).decode()
        views.append(v)
    out["views"] = views
    return out


def player_html(data: dict[str, Any], *, with_css: bool = True) -> str:
    """A self-contained fragment: the current step drawn in plain HTML/SVG (what shows if
    scripts do not run), then the player's script, which takes over and steps."""
    uid = "qnv-" + uuid.uuid4().hex[:12]
    start = data.get("start", 0)
    first = []
    for v in data["views"]:
        first.append(f'<div class="qnv-view" data-view="{html.escape(v["name"])}">'
                     f'<div class="qnv-body">{v["frames"][v["index"][start]]}</div></div>')
    cap = data["captions"]["texts"][data["captions"]["index"][start]] if data["n"] else ""
    css = f"<style>{_CSS}</style>" if with_css else ""
    return (f'{css}<div id="{uid}" class="qnv-static">'
            f'<div class="qnv-player{" qnv-slide" if data.get("slide") else ""}">'
            f'<div class="qnv-head"><div class="qnv-title">{html.escape(data.get("title", ""))}'
            f'</div><div class="qnv-counter">step {start} of {max(data["n"] - 1, 0)}'
            f' (static: scripts did not run)</div></div>'
            f'<div class="qnv-views">{"".join(first)}</div>'
            f'<div class="qnv-caption">{html.escape(cap)}</div></div></div>'
            f'<script type="application/json" id="{uid}-data">{_json_for_script(pack(data))}</script>'
            f"<script>(function(){{{_JS}\n"
            f'var el=document.getElementById("{uid}");'
            f'var d=document.getElementById("{uid}-data");'
            f"if(el&&d&&!el.getAttribute('data-qnv')){{el.setAttribute('data-qnv','1');"
            f"qnvMount(el,JSON.parse(d.textContent),null);}}}})();</script>")


def static_html(data: dict[str, Any]) -> str:
    """The current step as plain HTML and SVG, no script (for viewers without widgets)."""
    start = data.get("start", 0)
    views = "".join(f'<div class="qnv-body">{v["frames"][v["index"][start]]}</div>'
                    for v in data["views"])
    cap = data["captions"]["texts"][data["captions"]["index"][start]] if data["n"] else ""
    return (f'<div class="qnv-static-picture" style="max-width:1040px">'
            f'<div style="font-weight:bold">{html.escape(data.get("title", ""))} · step {start} '
            f'of {max(data["n"] - 1, 0)}</div>{views}'
            f'<div style="font-size:15px;margin:4px 0">{html.escape(cap)}</div>'
            f'<div style="font-size:12px;color:#777">A still picture: open the notebook in '
            f'JupyterLab and run it to step through the recording.</div></div>')


class Player(anywidget.AnyWidget):
    """Steps through a recording; see the module docstring.  Subclasses pick the views."""

    _esm = _ESM
    _css = _CSS
    _data = traitlets.Dict().tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)

    def __init__(self, rec: "Recorder | None", views: Sequence[View], *, title: str = "",
                 slide: bool = False, start: int = 0, layout: str = "single",
                 data: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.rec = rec
        self.slide = slide
        self._views = list(views)
        self._replay = Replay(rec) if rec is not None else None  # type: ignore[assignment]
        if data is None:
            if not len(rec.steps):  # type: ignore[union-attr]
                raise ValueError("this recording has no steps: run something inside "
                                 "`with vm.record() as rec:` first")
            data = build(rec, self._views, replay=self._replay)  # type: ignore[arg-type]
        n = data["n"]
        start = max(0, min(start, n - 1)) if n else 0
        data.update(title=title, slide=slide, layout=layout, start=start)
        self._payload = data
        super().__init__(_data=pack(data), step=start, **kwargs)

    # -- what Python can ask ------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of steps."""
        return self._payload.get("n", 0)

    def frame(self, i: int | None = None, view: str | None = None) -> str:
        """The SVG the browser shows at step ``i`` (default: the current step)."""
        k = self.step if i is None else i - self._payload.get("base", 0)
        v = self._view_payload(view)
        return v["frames"][v["index"][k]]

    def caption(self, i: int | None = None) -> str:
        k = self.step if i is None else i - self._payload.get("base", 0)
        c = self._payload["captions"]
        return c["texts"][c["index"][k]]

    def _view_payload(self, view: str | None) -> dict[str, Any]:
        views = self._payload["views"]
        if view is None:
            return views[0]
        for v in views:
            if v["name"] == view:
                return v
        raise KeyError(f"no view {view!r}; this player has {[v['name'] for v in views]}")

    # -- static forms ---------------------------------------------------------------------------
    def to_svg(self, i: int | None = None) -> SVGText:
        """The views at step ``i`` (default: the current step) as one SVG, with its caption."""
        k = self.step if i is None else i - self._replay.base
        return SVGText(self._compose([k]))

    def strip(self, steps: Iterable[int] | slice | None = None) -> SVGText:
        """Several steps one under the other, each with its caption: for print."""
        if self._replay is None:                     # a static picture: one frame
            return self.to_svg()
        n = self.n
        if steps is None:
            ks = list(range(n))
        elif isinstance(steps, slice):
            ks = list(range(n))[slice(
                None if steps.start is None else steps.start - self._replay.base,
                None if steps.stop is None else steps.stop - self._replay.base, steps.step)]
        else:
            ks = [i - self._replay.base for i in steps]
        return SVGText(self._compose(ks))

    def _compose(self, ks: Sequence[int]) -> str:
        from ._svg import esc
        parts: list[str] = []
        y = 0.0
        width = 0.0
        for k in ks:
            if not 0 <= k < self.n:
                raise IndexError(f"step {k + self._replay.base} is not in this recording")
            m = self._replay.moment(k)
            for v in self._views:
                if isinstance(v, NetQueueView):
                    v.why = _why_until(self._replay, k)
            cap = self.caption(m.i)
            parts.append(f'<text x="8" y="{y + 20:.0f}" font-size="15" font-weight="bold" '
                         f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
                         f'data-step="{m.i}">{esc(f"step {m.i}: {cap}")}</text>')
            y += 30
            for v in self._views:
                svg = v.render(m, step=m.i)
                w, h = _size_of(svg)
                parts.append(_nested(svg, y, w, h))
                y += h + 10
                width = max(width, w)
            y += 14
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {y:.0f}" '
                f'width="{width:.0f}" height="{y:.0f}" data-view="strip" '
                f'data-steps="{" ".join(str(k + self._replay.base) for k in ks)}">')
        return head + '<rect width="100%" height="100%" fill="#ffffff"/>' + "".join(parts) + "</svg>"

    def _repr_html_(self) -> str:
        """What shows where widgets cannot: in slides (``slide=True``) the whole player with
        its own script; otherwise the picture of the current step and its caption."""
        data = dict(self._payload)
        data["start"] = self.step
        if self.slide:
            return player_html(data)
        return static_html(data)

    def save_html(self, path: str | Path) -> Path:
        """A standalone page with this player (works offline, from a file)."""
        p = Path(path)
        p.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                     f"{html.escape(self._payload.get('title', 'qnetlearn'))}</title></head><body>"
                     f"{self._repr_html_()}</body></html>", encoding="utf-8")
        return p

    def __repr__(self) -> str:
        return (f"{type(self).__name__}: {self._payload.get('title', '')} · {self.n} steps "
                f"(a widget in JupyterLab; .to_svg(i) for a picture)")


def _size_of(svg: str) -> tuple[float, float]:
    import re
    m = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg[:600])
    if m:
        return float(m.group(1)), float(m.group(2))
    return 1000.0, 600.0


def _nested(svg: str, y: float, w: float, h: float) -> str:
    """``svg`` placed at height ``y`` inside another SVG (its own size attributes replaced)."""
    import re
    end = svg.index(">")
    head = re.sub(r'\s(?:width|height|x|y|style)="[^"]*"', "", svg[:end])
    return f'{head} x="0" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}"' + svg[end:]


def _why_until(replay: Replay, k: int) -> dict[str, str]:
    why: dict[str, str] = {}
    for s in replay.steps[: k + 1]:
        if s.kind == "event" and s.name == "net_queue_append":
            why[str(s.args.get("netdev"))] = str(s.args.get("why"))
    return why


def _need_device(rec: "Recorder", device: str | None) -> str:
    dev = device or default_device(rec)
    if dev is None:
        raise ValueError("this recording has no machine with a NIC; pass device=")
    vm = rec.machine
    if vm is not None and dev not in vm.devices:
        raise KeyError(f"no device {dev!r}; the machine has {list(vm.devices)}")
    return dev


class CallStackPlayer(Player):
    """The call stack at every step: QEMU's function names, outermost first."""

    def __init__(self, rec: "Recorder", *, slide: bool = False, start: int = 0) -> None:
        super().__init__(rec, [CallStackView(slide)], title="Call stack", slide=slide,
                         start=start)


class RingPlayer(Player):
    """A virtqueue (or e1000 ring) of ``device``: descriptors, avail and used rings, indices."""

    def __init__(self, rec: "Recorder", device: str | None = None, queue: int = 0, *,
                 slide: bool = False, start: int = 0) -> None:
        dev = _need_device(rec, device)
        super().__init__(rec, [RingView(dev, queue, slide)], title=f"{dev}: queue {queue}",
                         slide=slide, start=start)


class InterruptPlayer(Player):
    """MSI-X table, pending bits, the message to the APIC, IRR/ISR (e1000: ICR, IMS, INTx)."""

    def __init__(self, rec: "Recorder", device: str | None = None, *, slide: bool = False,
                 start: int = 0) -> None:
        dev = _need_device(rec, device)
        super().__init__(rec, [InterruptView(dev, slide)], title=f"Interrupts: {dev}",
                         slide=slide, start=start)


class NetQueuePlayer(Player):
    """QEMU's NetQueues: packets waiting, who sent them, why they wait."""

    def __init__(self, rec: "Recorder", *, slide: bool = False, start: int = 0) -> None:
        super().__init__(rec, [NetQueueView(slide)], title="Net queues", slide=slide,
                         start=start)


class TimelinePlayer(Player):
    """The matplotlib timeline of the recording with a cursor at the current step."""

    def __init__(self, rec: "Recorder", *, slide: bool = False, start: int = 0) -> None:
        super().__init__(rec, [TimelineView(slide)], title="Timeline", slide=slide, start=start)


class Topology(Player):
    """Netdevs, hubs and ports, peers, NICs, the guest and the host end (networkx layout).

    ``Topology(vm)`` is a static picture; ``Topology(vm, rec)`` (or ``Topology(rec)``)
    steps through a recording with the place the frame is at highlighted."""

    def __init__(self, vm: Any, rec: "Recorder | None" = None, *, slide: bool = False,
                 start: int = 0) -> None:
        if rec is None and hasattr(vm, "steps") and hasattr(vm, "machine"):
            vm, rec = vm.machine, vm
        self.vm = vm
        view = TopologyView(vm, slide)
        data = None
        if rec is None:
            data = {"n": 1, "base": 0, "chapters": [],
                    "views": [{"name": view.name, "title": view.title,
                               "frames": [view.render(None)], "index": [0], "cursor": None}],
                    "captions": {"texts": ["The machine's network as built from its command "
                                           "line (no recording: nothing moves)."], "index": [0]},
                    "labels": {"texts": [""], "index": [0]}}
        super().__init__(rec, [view], title="Topology", slide=slide, start=start, data=data)

    def to_svg(self, i: int | None = None) -> SVGText:
        if self.rec is None:
            return SVGText(self._views[0].render(None))
        return super().to_svg(i)


LESSON_VIEWS = ("callstack", "ring", "interrupt", "netqueue")


class Lesson(Player):
    """Several views side by side, stepping together (``views`` picks and orders them:
    callstack, ring, interrupt, netqueue, topology, timeline)."""

    def __init__(self, rec: "Recorder", views: Sequence[str] = LESSON_VIEWS,
                 device: str | None = None, queue: int = 0, *, slide: bool = False,
                 start: int = 0) -> None:
        made: list[View] = []
        for name in views:
            if name == "callstack":
                made.append(CallStackView(slide))
            elif name == "ring":
                made.append(RingView(_need_device(rec, device), queue, slide))
            elif name == "interrupt":
                made.append(InterruptView(_need_device(rec, device), slide))
            elif name == "netqueue":
                made.append(NetQueueView(slide))
            elif name == "topology":
                made.append(TopologyView(rec.machine, slide))
            elif name == "timeline":
                made.append(TimelineView(slide))
            else:
                raise ValueError(f"unknown view {name!r}; pick from callstack, ring, interrupt, "
                                 "netqueue, topology, timeline")
        super().__init__(rec, made, title="Lesson: " + ", ".join(views), slide=slide,
                         start=start, layout="tabs" if slide else "grid")
