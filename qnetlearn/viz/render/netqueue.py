"""QEMU's NetQueues at one step, as SVG: for every net client (TAP backend, hub port, NIC
front end) the packets waiting in its incoming queue, who sent them and why they wait."""
from __future__ import annotations

from typing import Any, Sequence

from .._svg import (CHANGED, GRID, INK, LAYER_COLOR, MONO, MUTED, PANEL, PENDING, attrs, rect,
                    svg_open, text)

OUTLINE = "#C98A00"
KIND = {"tap": "TAP backend", "hubport": "hub port", "nic": "NIC front end"}


def netqueue_svg(netqueues: dict[str, Any], *, clients: Sequence[dict[str, Any]] = (),
                 why: dict[str, str] | None = None, blocked: dict[str, str] | None = None,
                 prev: dict[str, Any] | None = None, index: int | None = None,
                 slide: bool = False) -> str:
    """``netqueues`` is ``rec.state(i)["netqueues"]``; ``clients`` gives each client's
    ``name``, ``type``, ``peer`` and ``receive`` (the function packets for it go to);
    ``why`` the reason QEMU gave when it last queued a packet for a client; ``blocked`` why
    a receiver cannot take packets now (from the device state)."""
    fs = 19.0 if slide else 13.0
    rh = round(fs * 1.6)
    W = 1240 if slide else 1010
    info = {c["name"]: c for c in clients}
    names = [c["name"] for c in clients if c["name"] in netqueues]
    names += [n for n in netqueues if n not in names]
    why = why or {}
    blocked = blocked or {}
    ncol = min(max(len(names), 1), 3)
    cw = (W - 24 - (ncol - 1) * 14) / ncol
    max_pk = max([len(netqueues[n].get("packets", ())) for n in names] + [1])
    shown_pk = min(max_pk, 6)
    card_h = (7.2 + 1.6) * fs + shown_pk * rh
    nrow = (len(names) + ncol - 1) // ncol or 1
    H = 3.2 * fs + nrow * (card_h + 14) + 4
    total = sum(netqueues[n].get("count", 0) for n in names)
    out = [svg_open(W, H, "netqueue", data_total=total, data_step=index),
           rect(0, 0, W, H, "#FFFFFF")]
    out.append(text(12, 1.5 * fs, "Net queues (net/queue.c): packets waiting for their receiver",
                    fs * 1.2, weight="bold"))
    if index is not None:
        out.append(text(W - 12, 1.5 * fs, f"step {index}", fs * 0.9, fill=MUTED, anchor="end"))
    for j, name in enumerate(names):
        nq = netqueues[name]
        c = info.get(name, {})
        pnq = (prev or {}).get(name) if prev else None
        x = 12 + (j % ncol) * (cw + 14)
        y = 2.6 * fs + (j // ncol) * (card_h + 14)
        count = nq.get("count", 0)
        packets = list(nq.get("packets", ()))
        changed = pnq is not None and (pnq.get("count") != count or
                                       list(pnq.get("packets", ())) != packets)
        kind = c.get("type", "")
        color = LAYER_COLOR["nic"] if kind == "nic" else (
            LAYER_COLOR["host"] if kind == "tap" else LAYER_COLOR["net"])
        out.append(f'<g class="qnv-nc"{attrs(data_nc=name, data_type=kind, data_count=count, data_receive_disabled=int(bool(nq.get("receive_disabled"))))}>')
        out.append(rect(x, y, cw, card_h, CHANGED if changed else PANEL,
                        OUTLINE if changed else GRID, rx=7, sw=2.5 if changed else 1))
        out.append(rect(x, y, 7, card_h, color, rx=3))
        out.append(text(x + 16, y + 1.35 * fs, name, fs * 1.15, weight="bold", family=MONO))
        out.append(text(x + 16 + (len(name) + 1) * fs * 0.7, y + 1.35 * fs, KIND.get(kind, kind),
                        fs * 0.8, fill=MUTED))
        peer = c.get("peer") or "none"
        out.append(text(x + 16, y + 2.6 * fs, f"peer {peer} · receives in {c.get('receive', '?')}",
                        fs * 0.78, fill=MUTED, family=MONO))
        qline = (f"{count} packet{'s' if count != 1 else ''} waiting" if count
                 else "incoming queue empty")
        out.append(text(x + 16, y + 4.0 * fs, qline, fs, weight="bold",
                        fill="#B00020" if count else INK))
        dis = nq.get("receive_disabled")
        if dis:
            out.append(text(x + cw - 10, y + 4.0 * fs, "receive_disabled", fs * 0.8,
                            fill="#B00020", anchor="end", family=MONO))
        yy = y + 4.6 * fs
        for k, p in enumerate(packets[:shown_pk]):
            sender, size = p[0], p[1]
            cb = p[2] if len(p) > 2 else False
            out.append(f'<g class="qnv-packet"{attrs(data_sender=sender, data_size=size, data_position=k)}>')
            out.append(rect(x + 16, yy, cw - 28, rh - 3, PENDING, GRID, rx=4))
            label = f"{k + 1}. {size} bytes from {sender}" + (" · sender waits for it" if cb else "")
            out.append(text(x + 24, yy + rh * 0.64, label, fs * 0.85, family=MONO))
            out.append("</g>")
            yy += rh
        if len(packets) > shown_pk:
            out.append(text(x + 24, yy + rh * 0.6, f"… and {len(packets) - shown_pk} more",
                            fs * 0.8, fill=MUTED))
        yy = y + card_h - 2.6 * fs
        reason = blocked.get(name) if count or dis else None
        if count and why.get(name):
            out.append(text(x + 16, yy, f"queued because: {why[name]}", fs * 0.78,
                            extra=attrs(data_why=why[name])))
        if reason:
            out.append(text(x + 16, yy + 1.2 * fs, reason, fs * 0.78, fill="#B00020"))
        stats = nq.get("stats") or {}
        if stats and not count:
            s = " · ".join(f"{k} {v}" for k, v in sorted(stats.items()))
            out.append(text(x + 16, yy + 1.2 * fs, s if len(s) < 70 else s[:67] + "...",
                            fs * 0.75, fill=MUTED))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
