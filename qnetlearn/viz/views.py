"""The views a player shows, and the one pass that renders all their frames.

A view turns a :class:`~qnetlearn.viz.replay.Moment` into SVG.  ``key(m)`` names what the
picture depends on: two moments with the same key get the same frame without rendering
again, and frames whose SVG text is equal are stored once.  :func:`build` walks the
recording once (``Replay.moments``) and returns everything a player sends to the browser.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Sequence

from .captions import Captioner, step_label
from .render.callstack import callstack_svg
from .render.interrupt import interrupt_svg, intx_stage, message_of, msi_stage
from .render.netqueue import netqueue_svg
from .render.ring import e1000_ring_svg, ring_svg
from .replay import Moment, Replay

if TYPE_CHECKING:  # pragma: no cover
    from ..trace.recorder import Recorder


class View:
    """One panel of a player."""

    name = "view"
    title = ""
    cursor = False

    def key(self, m: Moment) -> Hashable:
        return m.k

    def render(self, m: Moment, *, step: int | None = None) -> str:
        raise NotImplementedError

    def prepare(self, replay: Replay) -> None:
        """Called once before the pass (a view may look at the whole recording)."""


class CallStackView(View):
    name = "callstack"
    title = "Call stack"

    def __init__(self, slide: bool = False) -> None:
        self.slide = slide
        self.rows = 1

    def prepare(self, replay: Replay) -> None:
        deepest = max((s.depth + (1 if s.kind == "event" else 0) for s in replay.steps), default=0)
        self.rows = deepest + 1

    def key(self, m: Moment) -> Hashable:
        return m.k

    def render(self, m: Moment, *, step: int | None = None) -> str:
        return callstack_svg(m.frames, m.step, index=m.i, total=m.n + m.replay.base,
                             rows=self.rows, slide=self.slide)


def _hdr_len(dev_state: dict[str, Any]) -> int:
    feats = dev_state.get("guest_features", 0) or 0
    return 12 if feats >> 32 & 1 or feats >> 15 & 1 else 10


class RingView(View):
    name = "ring"

    def __init__(self, device: str, queue: int = 0, slide: bool = False) -> None:
        self.device = device
        self.queue = queue
        self.slide = slide
        self.title = f"{device} queue {queue}"
        self._seen: tuple[Any, int] = (None, -1)   # (the last distinct state, its number)

    def _part(self, state: dict[str, Any] | None) -> Any:
        dev = (state or {}).get("devices", {}).get(self.device, {})
        if "queues" in dev:
            qs = dev["queues"]
            return qs[self.queue] if self.queue < len(qs) else None
        return dev.get("rx" if self.queue == 0 else "tx")

    def _number(self, part: Any) -> int:
        """A number per distinct state of this queue (equal states, equal numbers)."""
        last, n = self._seen
        if part is last or part == last:
            return n
        self._seen = (part, n + 1)
        return n + 1

    def key(self, m: Moment) -> Hashable:
        k = (self.device, self.queue)
        prev = self._part(m.prev_state)
        pn = self._number(prev) if prev is not None else -1
        cur = self._number(self._part(m.state))
        drv = m.extras.get("drivers", {}).get(k)
        pdrv = (m.prev_extras or {}).get("drivers", {}).get(k)
        buf = m.extras.get("buffers", {}).get(k)
        feats = m.state.get("devices", {}).get(self.device, {}).get("guest_features")
        return (cur, pn, feats, tuple(sorted(drv.items())) if drv else None,
                tuple(sorted(pdrv.items())) if pdrv else None,
                tuple(sorted(buf.items())) if buf else None)

    def render(self, m: Moment, *, step: int | None = None) -> str:
        dev = m.state.get("devices", {}).get(self.device, {})
        pdev = (m.prev_state or {}).get("devices", {}).get(self.device) if m.prev_state else None
        if dev.get("model") == "e1000" or "rx" in dev:
            return e1000_ring_svg(dev, device=self.device, queue=self.queue, prev=pdev,
                                  step=step, slide=self.slide)
        queues = dev.get("queues", [])
        q = queues[self.queue] if self.queue < len(queues) else {}
        pq = None
        if pdev is not None and self.queue < len(pdev.get("queues", [])):
            pq = pdev["queues"][self.queue]
        key = (self.device, self.queue)
        drv = m.extras.get("drivers", {}).get(key)
        pdrv = (m.prev_extras or {}).get("drivers", {}).get(key) if m.prev_extras else None
        buf = m.extras.get("buffers", {}).get(key)
        return ring_svg(q, device=self.device, queue=self.queue, driver=drv, prev=pq,
                        prev_driver=pdrv, buffer=buf, step=step, hdr_len=_hdr_len(dev),
                        slide=self.slide)


class InterruptView(View):
    name = "interrupt"

    def __init__(self, device: str, slide: bool = False) -> None:
        self.device = device
        self.slide = slide
        self.title = f"Interrupts of {device}"

    def _part(self, state: dict[str, Any] | None) -> Hashable:
        """What this view shows of a state, as a hashable value."""
        if state is None:
            return None
        dev = state.get("devices", {}).get(self.device, {})
        msix = dev.get("msix") or {}
        entries = tuple(tuple(sorted(e.items())) for e in msix.get("entries", ()))
        it = tuple(sorted((dev.get("interrupt") or {}).items()))
        apic = state.get("apic", {})
        pins = tuple((p, tuple(sorted(v.items())))
                     for p, v in sorted(state.get("ioapic", {}).get("pins", {}).items()))
        return (entries, msix.get("enabled"), msix.get("function_masked"), it,
                tuple(apic.get("irr", ())), tuple(apic.get("isr", ())),
                tuple(apic.get("tmr", ())), pins)

    def key(self, m: Moment) -> Hashable:
        names = [f.name for f in m.frames]
        call = [m.step.name] if m.step.kind == "call" else []
        if "interrupt" in m.state.get("devices", {}).get(self.device, {}):
            stage = intx_stage(names + call, m.step)
        else:
            stage = msi_stage(names + call, m.step)
        msg = message_of(m.frames, m.step)
        return (self._part(m.state), self._part(m.prev_state), stage, msg)

    def render(self, m: Moment, *, step: int | None = None) -> str:
        return interrupt_svg(m.state, device=self.device, frames=m.frames, step=m.step,
                             prev=m.prev_state, index=step, slide=self.slide)


class NetQueueView(View):
    name = "netqueue"
    title = "Net queues"

    def __init__(self, slide: bool = False) -> None:
        self.slide = slide
        self.clients: list[dict[str, Any]] = []
        self.why: dict[str, str] = {}

    def prepare(self, replay: Replay) -> None:
        vm = replay.machine
        if vm is None:
            return
        self.clients = [dict(name=nc.name, type=nc.info.type,
                             peer=nc.peer.name if nc.peer else None, receive=nc.receive_name)
                        for nc in vm.all_clients()]

    def _observe(self, m: Moment) -> None:
        s = m.step
        if s.kind == "event" and s.name == "net_queue_append":
            self.why[str(s.args.get("netdev"))] = str(s.args.get("why"))

    def blocked(self, m: Moment) -> dict[str, str]:
        """Why each NIC cannot receive now, read from its recorded state."""
        out: dict[str, str] = {}
        for dev_id, d in m.state.get("devices", {}).items():
            if "queues" in d:
                qs = d["queues"]
                if not d.get("status", 0) & 4:
                    out[dev_id] = "the driver has not set DRIVER_OK yet: it cannot receive"
                elif qs and qs[0].get("avail_idx") == qs[0].get("last_avail_idx"):
                    out[dev_id] = ("virtio_net_can_receive is false: the guest has no free RX "
                                   "buffer in the ring")
            elif "rx" in d:
                rx = d["rx"]
                if rx.get("head") == rx.get("tail"):
                    out[dev_id] = ("e1000_can_receive is false: RDH == RDT, the NIC owns no RX "
                                   "descriptor")
        return out

    def key(self, m: Moment) -> Hashable:
        self._observe(m)
        return (m.version, m.prev_version, tuple(sorted(self.why.items())))

    def render(self, m: Moment, *, step: int | None = None) -> str:
        return netqueue_svg(m.state.get("netqueues", {}), clients=self.clients, why=self.why,
                            blocked=self.blocked(m), prev=(m.prev_state or {}).get("netqueues"),
                            index=step, slide=self.slide)


class TopologyView(View):
    name = "topology"
    title = "Topology"

    def __init__(self, vm: Any, slide: bool = False, captioner: Captioner | None = None) -> None:
        from .render.topology import layout, topology_graph
        self.vm = vm
        self.slide = slide
        self.graph = topology_graph(vm)
        self.pos = layout(self.graph)
        self.captioner = captioner

    def where(self, m: Moment) -> tuple[list[str], tuple[str, str] | None, str]:
        from .render.topology import position_of
        dev = self.captioner.device_of(m.k) if self.captioner is not None else None
        return position_of(self.graph, m.frames, m.step, device=dev)

    def key(self, m: Moment) -> Hashable:
        nodes, edge, words = self.where(m)
        return (tuple(nodes), edge, words)

    def render(self, m: Moment | None, *, step: int | None = None) -> str:
        from .render.topology import topology_svg
        if m is None:
            return topology_svg(self.graph, self.pos, slide=self.slide)
        nodes, edge, words = self.where(m)
        return topology_svg(self.graph, self.pos, current=nodes, edge=edge, where=words,
                            index=step, slide=self.slide)


class TimelineView(View):
    """The matplotlib timeline: one picture, and a cursor that the browser moves."""

    name = "timeline"
    title = "Timeline"
    cursor = True

    def __init__(self, slide: bool = False) -> None:
        self.slide = slide
        self.svg = ""
        self.xs: list[float] = []
        self.y0 = self.y1 = 0.0

    def prepare(self, replay: Replay) -> None:
        from .render.timeline import cursor_fractions, figure_svg, timeline_figure
        fig = timeline_figure(replay.steps, slide=self.slide)
        self.svg = figure_svg(fig)
        self.xs, self.y0, self.y1 = cursor_fractions(fig, [s.time_ns for s in replay.steps])

    def key(self, m: Moment) -> Hashable:
        return 0

    def render(self, m: Moment, *, step: int | None = None) -> str:
        if step is None:
            return self.svg
        from .render.timeline import with_cursor
        return with_cursor(self.svg, self.xs[m.k], self.y0, self.y1)


class Frames:
    """The frames of one view: ``frames[index[k]]`` is the picture at step ``k``."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.frames: list[str] = []
        self.index: list[int] = []
        self._by_key: dict[Hashable, int] = {}
        self._by_svg: dict[str, int] = {}

    def add(self, m: Moment) -> None:
        key = self.view.key(m)
        j = self._by_key.get(key)
        if j is None:
            svg = self.view.render(m)
            j = self._by_svg.get(svg)
            if j is None:
                j = len(self.frames)
                self.frames.append(svg)
                self._by_svg[svg] = j
            self._by_key[key] = j
        self.index.append(j)

    def payload(self) -> dict[str, Any]:
        v = self.view
        out: dict[str, Any] = {"name": v.name, "title": v.title, "frames": self.frames,
                               "index": self.index, "cursor": None}
        if v.cursor and isinstance(v, TimelineView):
            out["cursor"] = {"x": v.xs, "y0": v.y0, "y1": v.y1}
        return out


class Texts:
    """Deduplicated per-step texts (captions, labels)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.index: list[int] = []
        self._seen: dict[str, int] = {}

    def add(self, s: str) -> None:
        j = self._seen.get(s)
        if j is None:
            j = self._seen[s] = len(self.texts)
            self.texts.append(s)
        self.index.append(j)

    def payload(self) -> dict[str, Any]:
        return {"texts": self.texts, "index": self.index}


def chapters(replay: Replay) -> list[list[Any]]:
    """The steps where the main loop or the vCPU entered a function: a table of contents."""
    out: list[list[Any]] = []
    for k, s in enumerate(replay.steps):
        if s.kind == "call" and s.depth == 0:
            where = "vCPU" if s.context.startswith("vcpu") else "main loop"
            out.append([k, f"step {replay.base + k}: {s.name} ({where}, t = {s.time_ns / 1000:g} µs)"])
    return out


def build(rec: "Recorder", views: Sequence[View], *, replay: Replay | None = None,
          captioner: Captioner | None = None) -> dict[str, Any]:
    """Render every frame of every view once; the payload a player sends to the browser."""
    replay = replay or Replay(rec)
    captioner = captioner or Captioner(replay)
    for v in views:
        if isinstance(v, TopologyView) and v.captioner is None:
            v.captioner = captioner
        v.prepare(replay)
    sets = [Frames(v) for v in views]
    caps, labels = Texts(), Texts()
    for m in replay.moments():
        for fs in sets:
            fs.add(m)
        caps.add(captioner.caption(m))
        labels.add(step_label(m))
    return {"n": replay.n, "base": replay.base, "views": [fs.payload() for fs in sets],
            "captions": caps.payload(), "labels": labels.payload(),
            "chapters": chapters(replay)}


def default_device(rec: "Recorder") -> str | None:
    """The first NIC of the recorded machine."""
    vm = rec.machine
    if vm is None:
        return None
    for dev_id in vm.devices:
        return dev_id
    return None
