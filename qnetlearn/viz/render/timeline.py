"""A matplotlib timeline of a recording: how many steps each layer ran, against virtual time.

Within one event of the main loop virtual time does not move, so the steps of a burst (the
whole receive path of one frame, say) share one instant: each dot is such a burst in one
layer, its area the number of steps, and the label above a burst names the function the
main loop or the vCPU entered then.
"""
from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any, Sequence

from .._svg import LAYER_COLOR, LAYER_TITLE
from .common import step_layer

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: rows of the timeline, top to bottom
LAYERS = ["net", "nic", "pci", "memory", "apic", "guest"]


def timeline_data(steps: Sequence[Any]) -> tuple[dict[tuple[str, int], int], list[tuple[int, str]]]:
    """({(layer, time_ns): steps}, [(time_ns, outermost function entered then)])."""
    counts: dict[tuple[str, int], int] = {}
    tops: list[tuple[int, str]] = []
    for s in steps:
        layer = step_layer(s)
        if layer not in LAYERS:
            layer = "net" if layer in ("host", "other") else layer
        key = (layer, s.time_ns)
        counts[key] = counts.get(key, 0) + 1
        if s.kind == "call" and s.depth == 0:
            tops.append((s.time_ns, s.name))
    return counts, tops


class IdleCut:
    """Virtual time (µs) -> x, with long idle stretches cut out (and marked on the axis).

    Inside a busy stretch x moves exactly with time; a gap longer than ``min_gap`` µs is
    shrunk to a fixed width, so bursts microseconds apart do not sit on one spot."""

    def __init__(self, times_us: Sequence[float], min_gap: float = 25.0) -> None:
        ts = sorted(set(times_us)) or [0.0]
        busy = [ts[0]]
        self.segments: list[tuple[float, float, float]] = []   # (t0, t1, x0)
        self.cuts: list[tuple[float, float]] = []               # (x, idle µs)
        span = sum(b - a for a, b in zip(ts, ts[1:]) if b - a <= min_gap) or 1.0
        self.gap_w = max(span * 0.06, 1.0)
        x = 0.0
        for a, b in zip(ts, ts[1:]):
            if b - a > min_gap:
                self.segments.append((busy[0], a, x))
                x += a - busy[0]
                self.cuts.append((x + self.gap_w / 2, b - a))
                x += self.gap_w
                busy = [b]
        self.segments.append((busy[0], ts[-1], x))

    def x(self, t: float) -> float:
        for t0, t1, x0 in reversed(self.segments):
            if t >= t0:
                return x0 + min(t, t1) - t0
        t0, _t1, x0 = self.segments[0]
        return x0 + t - t0

    def t(self, x: float) -> float:
        """The time shown at x (the inverse inside busy stretches)."""
        best = self.segments[0]
        for seg in self.segments:
            if x >= seg[2]:
                best = seg
        t0, t1, x0 = best
        return t0 + (x - x0) if x - x0 <= t1 - t0 else t1


def timeline_figure(steps: Sequence[Any], *, slide: bool = False, ax: Any = None,
                    title: str | None = None) -> "Figure":
    """The timeline as a matplotlib Figure (``steps``: ``rec.steps``)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, MaxNLocator
    counts, tops = timeline_data(steps)
    cut = IdleCut([s.time_ns / 1000 for s in steps])
    scale = 1.45 if slide else 1.0
    if ax is None:
        fig = Figure(figsize=(10.1, 3.4 if not slide else 4.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    rows = {layer: len(LAYERS) - 1 - j for j, layer in enumerate(LAYERS)}
    for layer in LAYERS:
        pts = [(t, n) for (lay, t), n in counts.items() if lay == layer]
        if not pts:
            continue
        xs = [cut.x(t / 1000) for t, _n in pts]
        sizes = [14 + 6 * n for _t, n in pts]
        ax.scatter(xs, [rows[layer]] * len(xs), s=[s * scale for s in sizes],
                   color=LAYER_COLOR[layer], alpha=0.85, edgecolors="white", linewidths=0.8,
                   zorder=3)
    xs_all = [cut.x(s.time_ns / 1000) for s in steps] or [0.0]
    lo, hi = min(xs_all), max(xs_all)
    pad = max((hi - lo) * 0.03, 0.5)
    ax.set_xlim(lo - pad, hi + pad * 5)
    fig.subplots_adjust(left=0.16, right=0.98, top=0.86 if not slide else 0.88, bottom=0.16)
    # burst labels: greedy, on the lowest of four lines where they do not overlap
    bb = ax.get_position()
    axes_pt = fig.get_figwidth() * 72 * bb.width
    per_pt = (hi + pad * 5 - (lo - pad)) / axes_pt
    fsz = 7 * scale
    ends = [-1e18] * 4
    seen: set[int] = set()
    for t, name in tops:
        if t in seen:
            continue
        seen.add(t)
        x = cut.x(t / 1000)
        ax.axvline(x, color="#E4E4E4", lw=0.8, zorder=0)
        level = next((j for j, e in enumerate(ends) if e < x), min(range(4), key=ends.__getitem__))
        ends[level] = x + (len(name) * fsz * 0.62 + 6) * per_pt
        ax.annotate(name, (x, len(LAYERS) - 0.5 + 0.5 * level), fontsize=fsz,
                    ha="left", va="bottom", color="#333333", family="monospace",
                    annotation_clip=False)
    for x, idle in cut.cuts:
        ax.axvspan(x - cut.gap_w * 0.35, x + cut.gap_w * 0.35, color="#F1F1F1", zorder=0)
        ax.annotate(f"{idle:.0f} µs\nidle", (x, -0.7), ha="center", va="bottom",
                    fontsize=6.5 * scale, color="#888888")
    ax.set_yticks(range(len(LAYERS)))
    ax.set_yticklabels([LAYER_TITLE[layer] for layer in reversed(LAYERS)],
                       fontsize=8.5 * scale)
    ax.set_ylim(-0.8, len(LAYERS) + 1.6)
    ax.set_xlabel("virtual time (µs)" + (" · grey bands: idle time cut out" if cut.cuts else ""),
                  fontsize=9 * scale)
    starts = [x0 for _t0, _t1, x0 in cut.segments]
    if len(starts) > 1:
        ax.xaxis.set_major_locator(FixedLocator(starts))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{t0:g}" for t0, _t1, _x0 in cut.segments]))
        ax.xaxis.set_minor_locator(FixedLocator(sorted({cut.x(t / 1000) for t, _n in tops})))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{cut.t(x):g}"))
    ax.tick_params(axis="x", labelsize=8 * scale)
    ax.grid(axis="x", color="#DDDDDD", zorder=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is not False:
        ax.set_title(title or "Steps per layer against virtual time (dot area: number of steps)",
                     fontsize=10 * scale, loc="left")
    fig._qnv_cut = cut  # type: ignore[attr-defined]
    return fig


def figure_svg(fig: "Figure") -> str:
    """A matplotlib figure as inline SVG: text kept as text, no XML prolog, no <style>."""
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "qnetlearn"}):
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return svg


def cursor_fractions(fig: "Figure", times_ns: Sequence[int]) -> tuple[list[float], float, float]:
    """For each time, the x of the cursor as a fraction of the figure's width; and the top and
    bottom of the axes as fractions of its height (from the top)."""
    ax = fig.axes[0]
    w, h = fig.bbox.width, fig.bbox.height
    cut = getattr(fig, "_qnv_cut", None)
    xs = []
    for t in times_ns:
        x = cut.x(t / 1000) if cut is not None else t / 1000
        px, _py = ax.transData.transform((x, 0))
        xs.append(round(float(px / w), 5))
    bb = ax.get_position()
    return xs, round(1 - bb.y1, 5), round(1 - bb.y0, 5)


def with_cursor(svg: str, x: float, y0: float, y1: float) -> str:
    """``svg`` (from :func:`figure_svg`) with a vertical cursor at fraction ``x``."""
    m = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)
    if not m:
        return svg
    W, H = float(m.group(1)), float(m.group(2))
    line = (f'<line class="qnv-cursor" x1="{x * W:.2f}" x2="{x * W:.2f}" y1="{y0 * H:.2f}" '
            f'y2="{y1 * H:.2f}" stroke="#D00000" stroke-width="2" data-x="{x}"/>')
    return svg.replace("</svg>", line + "</svg>", 1)
