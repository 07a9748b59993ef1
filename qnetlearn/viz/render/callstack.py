"""The call stack at one step, as SVG: QEMU's (or the guest kernel's) function names with
their source files, outermost frame first, the current frame highlighted."""
from __future__ import annotations

from typing import Any, Sequence

from .._svg import (GRID, HILITE, INK, LAYER_COLOR, LAYER_TITLE, MONO, MUTED, PANEL, attrs,
                    rect, svg_open, text)
from .common import fmt_args, fmt_value, step_layer, thread_title


def callstack_svg(frames: Sequence[Any], step: Any, *, index: int | None = None,
                  total: int | None = None, rows: int | None = None, slide: bool = False) -> str:
    """``frames``: the call steps live at ``step`` (``rec.frames_at(i)``), outermost first.

    ``rows`` fixes the number of frame rows the picture has room for (a player passes the
    deepest stack of the recording, so the picture does not jump while stepping)."""
    fs = 19.0 if slide else 13.0
    rh = round(fs * 1.75)
    W = 1240 if slide else 860
    is_event = step.kind == "event"
    all_frames = list(frames)
    nrows = len(all_frames) + (1 if is_event else 0)
    room = max(rows or 0, nrows, 1)
    hidden = 0
    shown_frames = all_frames
    if slide and room > SLIDE_ROWS:
        # a slide has room for SLIDE_ROWS rows: the outermost frame, a row that says how
        # many are left out, and the innermost ones
        room = SLIDE_ROWS
        keep = SLIDE_ROWS - 2 - (1 if is_event else 0)
        if len(all_frames) > keep + 1:
            hidden = len(all_frames) - keep - 1
            shown_frames = [all_frames[0]] + all_frames[-keep:]
    top = 3.2 * fs
    H = top + room * rh + 4.2 * fs
    layers_seen: list[str] = []
    data = dict(data_step=index, data_kind=step.kind, data_name=step.name,
                data_depth=len(frames), data_context=step.context, data_time_ns=step.time_ns,
                data_frames=" ".join(f.name for f in frames))
    out = [svg_open(W, H, "callstack", **data), rect(0, 0, W, H, "#FFFFFF")]
    head = "Call stack" + (f" at step {index}" if index is not None else "")
    if index is not None and total:
        head += f" of {total - 1}"
    out.append(text(12, 1.45 * fs, head, fs * 1.25, weight="bold"))
    out.append(text(W - 12, 1.45 * fs,
                    f"{thread_title(step.context)} · t = {step.time_ns / 1000:.3f} µs",
                    fs * 0.9, fill=MUTED, anchor="end"))
    out.append(text(12, 2.55 * fs, "outermost frame first; the highlighted frame is running",
                    fs * 0.8, fill=MUTED))
    name_x = 12 + 10 + 3.2 * fs
    args_x = name_x + 35 * fs * 0.602
    depth_of = {id(f): d for d, f in enumerate(all_frames)}
    for r, f in enumerate(shown_frames):
        if hidden and r >= 1:
            r += 1
        y = top + r * rh
        layer = step_layer(f)
        if layer not in layers_seen:
            layers_seen.append(layer)
        d = depth_of[id(f)]
        current = (d == len(all_frames) - 1) and not is_event
        fill = HILITE if current else (PANEL if d % 2 else "#FFFFFF")
        out.append(f'<g class="qnv-frame"{attrs(data_depth=d, data_name=f.name, data_src=f.src, data_current=1 if current else None)}>')
        out.append(rect(12, y, W - 24, rh - 2, fill, GRID if not current else "#C9A800",
                        sw=1 if not current else 2))
        out.append(rect(12, y, 7, rh - 2, LAYER_COLOR.get(layer, MUTED)))
        out.append(text(12 + 14, y + rh * 0.66, f"#{d}", fs * 0.8, fill=MUTED, family=MONO))
        out.append(text(name_x, y + rh * 0.66, f.name, fs, family=MONO,
                        weight="bold" if current else None))
        args = f.args
        if current and step.kind == "return":
            shown = f"returns {fmt_value(step.args.get('ret'))}"
        else:
            shown = fmt_args(args)
        if shown:
            out.append(text(args_x, y + rh * 0.66, _clip(shown, 36 if not slide else 30),
                            fs * 0.9, family=MONO, fill="#2D5F8A" if not current else INK))
        out.append(text(W - 20, y + rh * 0.66, f.src, fs * 0.8, fill=MUTED, anchor="end"))
        out.append("</g>")
    if hidden:
        y = top + rh
        out.append(f'<g class="qnv-hidden"{attrs(data_hidden=hidden)}>')
        names = " → ".join(f.name for f in all_frames[1:1 + hidden])
        out.append(text(12 + 14, y + rh * 0.66, _clip(f"⋮  {hidden} more frames: {names}", 105),
                        fs * 0.75, fill=MUTED, family=MONO))
        out.append("</g>")
    if is_event:
        y = top + (len(shown_frames) + (1 if hidden else 0)) * rh
        layer = step_layer(step)
        if layer not in layers_seen:
            layers_seen.append(layer)
        out.append(f'<g class="qnv-event"{attrs(data_name=step.name, data_src=step.src, data_current=1)}>')
        out.append(rect(12, y, W - 24, rh - 2, HILITE, "#C9A800", sw=2,
                        extra=' stroke-dasharray="6 3"'))
        out.append(text(12 + 14, y + rh * 0.66, "•", fs, fill=LAYER_COLOR.get(layer, MUTED)))
        out.append(text(name_x, y + rh * 0.66, f"trace event {step.name}", fs, family=MONO,
                        weight="bold"))
        shown = fmt_args(step.args)
        if shown:
            out.append(text(args_x + 9 * fs * 0.602, y + rh * 0.66, _clip(shown, 26), fs * 0.9,
                            family=MONO))
        out.append(text(W - 20, y + rh * 0.66, step.src, fs * 0.8, fill=MUTED, anchor="end"))
        out.append("</g>")
    # what this step is
    y = top + room * rh + 1.5 * fs
    if step.kind == "call":
        what = f"→ call: {step.name} starts"
    elif step.kind == "return":
        what = f"← return: {step.name} returns {fmt_value(step.args.get('ret'))}"
    else:
        what = f"• trace event {step.name} (QEMU prints it with -trace {step.name})"
    out.append(text(12, y, what, fs * 0.95, family=MONO, weight="bold",
                    extra=attrs(data_what=step.kind)))
    lx = 12.0
    y += 1.7 * fs
    for layer in layers_seen:
        out.append(rect(lx, y - fs * 0.8, fs * 0.8, fs * 0.8, LAYER_COLOR.get(layer, MUTED)))
        label = LAYER_TITLE.get(layer, layer)
        out.append(text(lx + fs * 1.1, y, label, fs * 0.8, fill=MUTED))
        lx += fs * 1.6 + len(label) * fs * 0.5 + 12
    out.append("</svg>")
    return "".join(out)


#: frame rows a slide has room for
SLIDE_ROWS = 11


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
