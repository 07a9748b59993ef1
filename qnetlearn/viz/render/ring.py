"""A split virtqueue (and an e1000 descriptor ring) at one step, as SVG.

The virtqueue view shows the three parts of the ring in guest RAM (descriptor table,
available ring, used ring) with the four indices that drive it: the driver's ``avail.idx``
and ``last_used_idx``, the device's ``last_avail_idx`` and ``used.idx``.  Rings of more than
``rows`` entries are shown through a window around the slots in use, and the view says so.
Every number shown is also in a ``data-*`` attribute, so tests can read them back.
"""
from __future__ import annotations

from typing import Any

from .._svg import (CHANGED, GRID, HILITE, INFLIGHT, INK, MONO, MUTED, PANEL, PENDING, SANS,
                    attrs, esc, hexaddr, line, rect, svg_open, text)
from ..replay import chain_of, in_flight_heads
from .frame import frame_segments

VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT = 1, 2, 4
OUTLINE = "#C98A00"     # a thick outline: this row changed in this step

VIRTIO_NET_ROLES = {0: "receiveq1 (RX: host to guest)", 1: "transmitq1 (TX: guest to host)",
                    2: "controlq"}


def desc_flags_text(flags: int) -> str:
    names = [n for bit, n in ((VRING_DESC_F_NEXT, "NEXT"), (VRING_DESC_F_WRITE, "WRITE"),
                              (VRING_DESC_F_INDIRECT, "INDIRECT")) if flags & bit]
    rest = flags & ~7
    if rest:
        names.append(hex(rest))
    return "|".join(names) if names else "0"


def window(num: int, focus: list[int], rows: int) -> tuple[int, int]:
    """(first slot, row count) of a circular window of at most ``rows`` slots showing as
    many of the ``focus`` slots as fit (the first one always)."""
    if num <= rows:
        return 0, num
    slots = sorted({f % num for f in focus})
    if not slots:
        return 0, rows
    # the shortest circular arc covering every focus slot: leave out the largest gap
    gaps = [((slots[(j + 1) % len(slots)] - slots[j]) % num or num, j) for j in range(len(slots))]
    gap, j = max(gaps)
    start = slots[(j + 1) % len(slots)]
    span = num - gap + 1
    if span <= rows:
        return (start - min(2, rows - span)) % num, rows
    return (focus[0] - 2) % num, rows


def _slots(start: int, count: int, num: int) -> list[int]:
    return [(start + j) % num for j in range(count)]


def _in_range(idx: int, lo: int, hi: int, num: int) -> bool:
    """Is ring position of free-running index range [lo, hi) covering slot ``idx``?"""
    n = (hi - lo) & 0xFFFF
    if n >= num:
        return True
    return ((idx - lo) % num) < n if num else False


def ring_svg(q: dict[str, Any], *, device: str = "", queue: int = 0,
             driver: dict[str, Any] | None = None, buffer: dict[str, Any] | None = None,
             prev: dict[str, Any] | None = None, prev_driver: dict[str, Any] | None = None,
             step: int | None = None, hdr_len: int = 12, role: str | None = None,
             rows: int = 12, slide: bool = False) -> str:
    """The virtqueue ``q`` (one entry of ``rec.state(i)["devices"][dev]["queues"]``)."""
    fs = 19.0 if slide else 13.0
    if slide:
        rows = min(rows, 6)
    cw = fs * 0.602
    rh = round(fs * 1.65)
    num = q.get("num") or 0
    name = q.get("name", f"vq{queue}")
    role = role or VIRTIO_NET_ROLES.get(queue, "")
    descs = q.get("descriptors")
    W = 1240 if slide else 1010
    if not descs or not num:
        out = [svg_open(W, 80, "ring", data_device=device, data_queue=queue, data_num=num,
                        data_enabled=0),
               text(12, 30, f"{device} · {name}: not set up by the driver yet", fs * 1.2,
                    weight="bold"), "</svg>"]
        return "".join(out)

    avail_idx = q["avail_idx"]
    last_avail = q["last_avail_idx"]
    used_ram = q["used_idx_ram"]
    used_dev = q["used_idx"]
    inuse = q.get("inuse") or 0
    last_used = driver.get("last_used_idx") if driver else None
    heads = in_flight_heads(q)
    inflight_descs: set[int] = set()
    for h in heads:
        inflight_descs.update(chain_of(q, h))
    waiting = (avail_idx - last_avail) & 0xFFFF
    pq = prev if prev is not None and prev.get("num") == num and prev.get("descriptors") else None

    # -- windows ---------------------------------------------------------------------------
    a_start, a_rows = window(num, [last_avail, avail_idx, last_avail - 1], rows)
    u_focus = [used_dev, used_dev - 1] + ([last_used] if last_used is not None else []) + [used_ram]
    u_start, u_rows = window(num, u_focus, rows)
    d_focus: list[int] = sorted(inflight_descs)
    if waiting:
        d_focus.append(q["avail_ring"][last_avail % num])
    if used_dev:
        d_focus.append(q["used_ring"][(used_dev - 1) % num]["id"])
    d_start, d_rows = window(num, d_focus or [0], rows)
    windowed = num > rows

    out: list[str] = []
    H_cards = (3.6 if slide else 4) * fs + (8 if slide else 18)
    top = 2.4 * fs
    y_tables = top + H_cards + 10
    y_rows = y_tables + 3.2 * rh
    H_rows = rows * rh if windowed else num * rh
    buf_h = 1.7 * fs if slide else 5.2 * fs + 10      # room kept even with no buffer shown
    H = y_rows + H_rows + 1.9 * rh + buf_h + (2.4 if slide else 3.3) * fs + 8
    data: dict[str, Any] = dict(
        data_device=device, data_queue=queue, data_name=name, data_num=num,
        data_avail_idx=avail_idx, data_avail_flags=q.get("avail_flags", 0),
        data_last_avail_idx=last_avail, data_used_idx=used_ram, data_device_used_idx=used_dev,
        data_used_flags=q.get("used_flags", 0), data_inuse=inuse,
        data_used_event=q.get("used_event", 0), data_avail_event=q.get("avail_event", 0),
        data_in_flight=" ".join(map(str, heads)), data_windowed=int(windowed),
        data_desc_window=f"{d_start} {d_rows}", data_avail_window=f"{a_start} {a_rows}",
        data_used_window=f"{u_start} {u_rows}", data_step=step)
    if last_used is not None:
        data["data_last_used_idx"] = last_used
    out.append(svg_open(W, H, "ring", **data))
    out.append(rect(0, 0, W, H, "#FFFFFF"))

    # -- title ---------------------------------------------------------------------------
    title = f"{device} · virtqueue {name}" + (f" = {role}" if role else "")
    out.append(text(12, 1.5 * fs, title, fs * 1.25, weight="bold"))
    sub = f"{num} entries"
    if windowed:
        sub += (f", window of {rows}" if slide else
                f" · showing {rows} of them around the slots in use")
    if step is not None:
        sub += f" · step {step}"
    out.append(text(W - 12, 1.5 * fs, sub, fs * 0.9, fill=MUTED, anchor="end"))

    # -- the four indices ------------------------------------------------------------------
    cards = [
        ("driver", "avail.idx", avail_idx, f"driver fills slot {avail_idx % num} next",
         f"{waiting} chain{'s' if waiting != 1 else ''} published, not yet taken",
         pq is not None and pq["avail_idx"] != avail_idx, "avail-idx"),
        ("device", "last_avail_idx", last_avail, f"device takes slot {last_avail % num} next",
         (f"in flight: head {', '.join(map(str, heads))}" if heads else "nothing in flight"),
         pq is not None and pq["last_avail_idx"] != last_avail, "last-avail-idx"),
        ("device", "used.idx", used_ram, f"device fills slot {used_dev % num} next",
         (f"written, not yet published: {(used_dev - used_ram) & 0xFFFF}"
          if used_dev != used_ram else "in RAM, read by the driver"),
         pq is not None and (pq["used_idx_ram"] != used_ram or pq["used_idx"] != used_dev),
         "used-idx"),
        ("driver", "last_used_idx", last_used if last_used is not None else "—",
         (f"driver reads slot {last_used % num} next" if last_used is not None
          else "not recorded (no simulated guest)"),
         (f"{(used_ram - last_used) & 0xFFFF} used to read" if last_used is not None else ""),
         last_used is not None and prev_driver is not None
         and prev_driver.get("last_used_idx") != last_used, "last-used-idx"),
    ]
    cw_card = (W - 24 - 3 * 10) / 4
    for j, (who, label, value, line1, line2, changed, key) in enumerate(cards):
        x = 12 + j * (cw_card + 10)
        y = top
        color = "#B36B00" if who == "driver" else "#00795A"
        out.append(f'<g class="qnv-card"{attrs(data_card=key, data_value=value)}>')
        out.append(rect(x, y, cw_card, H_cards, CHANGED if changed else PANEL,
                        OUTLINE if changed else GRID, rx=6, sw=2.5 if changed else 1))
        out.append(text(x + 10, y + 1.15 * fs, f"{who} side", fs * 0.8, fill=color, weight="bold"))
        out.append(text(x + 10, y + 2.4 * fs, f"{label} = {value}", fs * 1.1, family=MONO,
                        weight="bold"))
        out.append(text(x + 10, y + 3.45 * fs, line1, fs * 0.8, fill=INK))
        if line2 and not slide:
            out.append(text(x + 10, y + 4.35 * fs, line2, fs * 0.8, fill=MUTED))
        out.append("</g>")

    # -- descriptor table -----------------------------------------------------------------------
    dx = 12
    dcols = [(0, "#", 4), (5, "addr", 11), (17, "len", 5), (23, "flags", 10), (34, "next", 4)]
    d_w = 38.5 * cw + 16
    out.append(_table_head(dx, y_tables, rh, d_w, dcols, cw, fs, "Descriptor table",
                           "driver writes, device reads", SANS))
    d_slots = _slots(d_start, d_rows, num)
    for r_i, d in enumerate(d_slots):
        y = y_rows + r_i * rh
        e = descs[d]
        fill = "#FFFFFF"
        if d in inflight_descs:
            fill = INFLIGHT
        elif waiting and _desc_pending(q, d, last_avail, waiting, num):
            fill = PENDING
        changed = pq is not None and pq["descriptors"][d] != e
        cells = [str(d), hexaddr(e["addr"]), str(e["len"]), desc_flags_text(e["flags"]),
                 str(e["next"]) if e["flags"] & VRING_DESC_F_NEXT else "·"]
        out.append(_row("qnv-desc", attrs(data_desc=d, data_addr=e["addr"], data_len=e["len"],
                                          data_flags=e["flags"], data_next=e["next"]),
                        dx, y, d_w, rh, fill, changed, dcols, cells, cw, fs))
        if windowed and r_i + 1 < len(d_slots) and d == num - 1:
            out.append(_wrap_mark(dx, y + rh, d_w, fs))

    # -- available ring ----------------------------------------------------------------------
    tag_w = (len("◀ device") * 2 + 2) * fs * 0.85 * 0.56 + 16
    ax = dx + d_w + 26
    acols = [(0, "slot", 4), (6, "head", 5)]
    a_w = 11.5 * cw + 16
    out.append(_table_head(
        ax, y_tables, rh, a_w, acols, cw, fs, "Available ring",
        f"flags {q.get('avail_flags', 0)} · idx {avail_idx} · used_event {q.get('used_event', 0)}",
        MONO))
    a_slots = _slots(a_start, a_rows, num)
    ring = q["avail_ring"]
    pring = pq["avail_ring"] if pq is not None else None
    inflight_lo = (last_avail - inuse) & 0xFFFF
    for r_i, s in enumerate(a_slots):
        y = y_rows + r_i * rh
        fill = "#FFFFFF"
        if inuse and _in_range(s, inflight_lo, last_avail, num):
            fill = INFLIGHT
        elif _in_range(s, last_avail, avail_idx, num):
            fill = PENDING
        changed = pring is not None and pring[s] != ring[s]
        out.append(_row("qnv-avail", attrs(data_avail_slot=s, data_head=ring[s]),
                        ax, y, a_w, rh, fill, changed, acols, [str(s), str(ring[s])], cw, fs))
        out.append(_tags(ax + a_w + 6, y, rh, _next_tags(s, last_avail, avail_idx, num), fs))
        if windowed and r_i + 1 < len(a_slots) and s == num - 1:
            out.append(_wrap_mark(ax, y + rh, a_w, fs))

    # -- used ring -----------------------------------------------------------------------------
    ux = ax + a_w + tag_w + 14
    ucols = [(0, "slot", 4), (6, "id", 4), (12, "len", 5)]
    u_w = 17.5 * cw + 16
    out.append(_table_head(
        ux, y_tables, rh, u_w, ucols, cw, fs, "Used ring",
        f"flags {q.get('used_flags', 0)} · idx {used_ram} · avail_event {q.get('avail_event', 0)}",
        MONO))
    u_slots = _slots(u_start, u_rows, num)
    used = q["used_ring"]
    pused = pq["used_ring"] if pq is not None else None
    for r_i, s in enumerate(u_slots):
        y = y_rows + r_i * rh
        e = used[s]
        fill = "#FFFFFF"
        if _in_range(s, used_ram, used_dev, num) or (heads and e["id"] in heads
                                                      and _in_range(s, used_dev, used_dev + inuse, num)):
            fill = INFLIGHT
        elif last_used is not None and _in_range(s, last_used, used_ram, num):
            fill = PENDING
        changed = pused is not None and pused[s] != e
        out.append(_row("qnv-used", attrs(data_used_slot=s, data_id=e["id"], data_len=e["len"]),
                        ux, y, u_w, rh, fill, changed, ucols,
                        [str(s), str(e["id"]), str(e["len"])], cw, fs))
        out.append(_tags(ux + u_w + 6, y, rh, _next_tags(s, used_dev, last_used, num), fs))
        if windowed and r_i + 1 < len(u_slots) and s == num - 1:
            out.append(_wrap_mark(ux, y + rh, u_w, fs))

    # -- legend --------------------------------------------------------------------------------
    y_leg = y_rows + H_rows + 1.1 * rh
    lx = 12.0
    for fill, stroke, label in ((INFLIGHT, None, "device is processing"),
                                (PENDING, None, "published, not yet taken"),
                                ("#FFFFFF", OUTLINE, "changed by this step")):
        out.append(rect(lx, y_leg - fs * 0.85, fs * 1.6, fs * 1.0, fill, stroke or GRID,
                        sw=2.5 if stroke else 1))
        out.append(text(lx + fs * 2.0, y_leg, label, fs * 0.85))
        lx += fs * 2.4 + len(label) * fs * 0.5 + 18
    note = "◀ device, ◀ driver: the slot each side uses next"
    if windowed:
        note += " · dashed line: the ring wraps from its last slot to 0"
    out.append(text(12, y_leg + 1.45 * fs, note, fs * 0.82, fill=MUTED))

    # -- the buffer -------------------------------------------------------------------------------
    if buffer and slide:
        out.append(_buffer_line(buffer, 12, y_leg + 1.45 * fs + 1.6 * fs, fs, hdr_len))
    elif buffer:
        out.append(_buffer_panel(buffer, 12, y_leg + 0.9 * rh + 1.5 * fs, W - 24, buf_h, fs,
                                 hdr_len, slide))
    else:
        y_b = y_leg + (1.45 + 1.6) * fs if slide else y_leg + 0.9 * rh + 1.5 * fs + 1.3 * fs
        out.append(text(12 + (0 if slide else 10), y_b,
                        "Buffer: none yet (the device has not taken a chain from this queue)",
                        fs * 0.85, fill=MUTED))
    out.append("</svg>")
    return "".join(out)


def _desc_pending(q: dict[str, Any], d: int, last_avail: int, waiting: int, num: int) -> bool:
    """Is descriptor ``d`` the head of the next chain the device will take?"""
    return q["avail_ring"][last_avail % num] == d


def _header_row(x: float, y: float, rh: float, w: float, cols: list[tuple[int, str, int]],
                cw: float, fs: float) -> str:
    out = [rect(x, y, w, rh * 0.95, "#ECECEC", GRID)]
    for off, label, _n in cols:
        out.append(text(x + 8 + off * cw, y + rh * 0.68, label, fs * 0.85, fill=MUTED,
                        weight="bold", family=MONO))
    return "".join(out)


def _table_head(x: float, y: float, rh: float, w: float, cols: list[tuple[int, str, int]],
                cw: float, fs: float, title: str, sub: str, sub_family: str) -> str:
    """A virtqueue table's title, the line under it (who writes it, or its indices) and its
    column header; the three tables stand side by side, so only ``x`` differs."""
    return (text(x, y + 0.9 * rh, title, fs * 1.05, weight="bold")
            + text(x, y + 1.75 * rh, sub, fs * 0.8, fill=MUTED, family=sub_family)
            + _header_row(x, y + 2.2 * rh, rh, w, cols, cw, fs))


def _row(cls: str, data: str, x: float, y: float, w: float, rh: float, fill: str,
         changed: bool, cols: list[tuple[int, str, int]], values: list[str], cw: float,
         fs: float) -> str:
    """One table row as a group of class ``cls`` carrying its numbers (``data``, the
    ``data-*`` attributes tests read back): its box, then its cells."""
    return (f'<g class="{cls}"{data}>' + _row_box(x, y, w, rh, fill, changed)
            + _cells(x, y, rh, cols, values, cw, fs, weight_first=True) + "</g>")


def _row_box(x: float, y: float, w: float, rh: float, fill: str, changed: bool) -> str:
    if changed:
        return rect(x + 1, y + 1, w - 2, rh - 2, fill, OUTLINE, sw=2.5)
    return rect(x, y, w, rh, fill, GRID)


def _cells(x: float, y: float, rh: float, cols: list[tuple[int, str, int]], values: list[str],
           cw: float, fs: float, weight_first: bool = False) -> str:
    out = []
    for j, ((off, _label, _n), v) in enumerate(zip(cols, values)):
        out.append(text(x + 8 + off * cw, y + rh * 0.7, v, fs, family=MONO,
                        fill=MUTED if (j == 0 and weight_first) else INK))
    return "".join(out)


def _tags(x: float, y: float, rh: float, tags: list[tuple[str, str]], fs: float) -> str:
    out = []
    for label, color in tags:
        out.append(text(x, y + rh * 0.7, label, fs * 0.85, fill=color, weight="bold"))
        x += len(label) * fs * 0.56 + 8
    return "".join(out)


def _next_tags(s: int, device_next: int, driver_next: int | None,
               num: int) -> list[tuple[str, str]]:
    """The marks on slot ``s`` of the avail or used ring: the slot each side uses next
    (``driver_next`` is None when no simulated guest recorded it)."""
    tags = []
    if s == device_next % num:
        tags.append(("◀ device", "#00795A"))
    if driver_next is not None and s == driver_next % num:
        tags.append(("◀ driver", "#B36B00"))
    return tags


def _wrap_mark(x: float, y: float, w: float, fs: float) -> str:
    return line(x - 4, y, x + w + 4, y, "#444444", 2, ' stroke-dasharray="5 4"')


def _buffer_line(b: dict[str, Any], x: float, y: float, fs: float, hdr_len: int) -> str:
    """The buffer in one line (slides): which descriptor, how many bytes, what they are."""
    data: bytes = b.get("bytes", b"")
    writes = b.get("device_writes", False)
    _segs, summary = frame_segments(data, hdr_len if writes or hdr_len else 0)
    written = b.get("written")
    size = (f"{written} bytes written" if (written is not None and writes)
            else f"a {b['len']}-byte buffer")
    line = f"Buffer of descriptor {b['head']} ({b['status']}): {size} · {summary}"
    return (f'<g class="qnv-buffer"{attrs(data_buffer_desc=b["head"], data_buffer_addr=b["addr"], data_buffer_len=b["len"], data_written=written, data_status=b["status"])}>'
            + text(x, y, line, fs * 0.85, weight="bold",
                   extra=f' data-summary="{esc(summary)}"') + "</g>")


def _buffer_panel(b: dict[str, Any], x: float, y: float, w: float, h: float, fs: float,
                  hdr_len: int, slide: bool) -> str:
    data: bytes = b.get("bytes", b"")
    status = b["status"]
    writes = b.get("device_writes", False)
    who = "the device writes it" if writes else "the device reads it"
    written = b.get("written")
    out = [f'<g class="qnv-buffer"{attrs(data_buffer_desc=b["head"], data_buffer_addr=b["addr"], data_buffer_len=b["len"], data_written=written, data_status=status)}>']
    out.append(rect(x, y, w, h, PANEL, GRID, rx=6))
    chain = b.get("chain")
    where = (f"{hexaddr(b['addr'])}" if not chain else
             f"INDIRECT table at {hexaddr(b['addr'])} of {len(chain)} buffers" if b["indirect"]
             else f"a chain of {len(chain)} buffers")
    head = f"Buffer of descriptor {b['head']} ({status}; {who}): {where}, {b['len']} bytes"
    if written is not None and status == "completed" and writes:
        head += f", {written} written"
    out.append(text(x + 10, y + 1.3 * fs, head, fs * 0.9, weight="bold"))
    segs, summary = frame_segments(data, hdr_len if writes or hdr_len else 0)
    per_row = 24 if slide else 32
    nrows = 1 if slide else 2
    shown = data[: per_row * nrows]
    for r_i in range(nrows):
        chunk_lo = r_i * per_row
        if chunk_lo >= len(shown):
            break
        yy = y + (2.6 + 1.25 * r_i) * fs
        parts = [f'<text x="{x + 10:.1f}" y="{yy:.1f}" font-size="{fs * 0.9:.1f}" '
                 f'font-family="{MONO}" fill="{INK}">'
                 f'<tspan fill="{MUTED}">{chunk_lo:04x}  </tspan>']
        for j in range(chunk_lo, min(chunk_lo + per_row, len(shown))):
            color = INK
            for lo, hi, _name, c in segs:
                if lo <= j < hi:
                    color = c
                    break
            parts.append(f'<tspan fill="{color}">{shown[j]:02x} </tspan>')
        parts.append("</text>")
        out.append("".join(parts))
    key_y = y + (2.6 + 1.25 * nrows) * fs + 2
    kx = x + 10
    for lo, hi, name, color in segs:
        if lo >= len(shown):
            break
        label = f"■ {name}"
        out.append(text(kx, key_y, label, fs * 0.8, fill=color, weight="bold"))
        kx += len(label) * fs * 0.5 + 14
    out.append(text(x + w - 10, key_y, summary, fs * 0.85, anchor="end", family=SANS,
                    extra=f' data-summary="{esc(summary)}"'))
    out.append("</g>")
    return "".join(out)


# ---- e1000 -----------------------------------------------------------------------------------

def e1000_ring_svg(dev: dict[str, Any], *, device: str = "", queue: int = 0,
                   prev: dict[str, Any] | None = None, step: int | None = None,
                   rows: int = 12, slide: bool = False) -> str:
    """An e1000 descriptor ring (queue 0: RX, 1: TX) from ``rec.state(i)["devices"][dev]``."""
    fs = 19.0 if slide else 13.0
    if slide:
        rows = min(rows, 9)
    cw = fs * 0.602
    rh = round(fs * 1.65)
    rx = queue == 0
    ring = dev.get("rx" if rx else "tx") or {}
    pring = (prev or {}).get("rx" if rx else "tx") if prev else None
    count = ring.get("count") or 0
    descs = ring.get("descriptors")
    W = 1240 if slide else 1010
    hreg, treg = ("RDH", "RDT") if rx else ("TDH", "TDT")
    head, tail = ring.get("head", 0), ring.get("tail", 0)
    if not descs or not count:
        return "".join([svg_open(W, 80, "ring", data_device=device, data_queue=queue,
                                 data_num=count, data_enabled=0),
                        text(12, 30, f"{device} · {'RX' if rx else 'TX'} ring: not set up yet",
                             fs * 1.2, weight="bold"), "</svg>"])
    start, nrows = window(count, [head, tail, head - 1], rows)
    windowed = count > rows
    top = 2.4 * fs
    H_cards = 4 * fs + 18
    y_tab = top + H_cards + 10
    y_rows = y_tab + 2.0 * rh
    H = y_rows + (rows if windowed else count) * rh + 2.2 * rh
    out = [svg_open(W, H, "ring", data_device=device, data_queue=queue, data_model="e1000",
                    data_num=count, data_head=head, data_tail=tail, data_base=ring.get("base", 0),
                    data_windowed=int(windowed), data_desc_window=f"{start} {nrows}",
                    data_step=step),
           rect(0, 0, W, H, "#FFFFFF")]
    title = f"{device} · e1000 {'receive' if rx else 'transmit'} descriptor ring"
    out.append(text(12, 1.5 * fs, title, fs * 1.25, weight="bold"))
    sub = f"{count} descriptors at {hexaddr(ring.get('base', 0))}"
    if windowed:
        sub += f" · showing {rows} around head and tail"
    if step is not None:
        sub += f" · step {step}"
    out.append(text(W - 12, 1.5 * fs, sub, fs * 0.9, fill=MUTED, anchor="end"))
    owned = (tail - head) % count
    cards = [
        ("device", f"{hreg} (head)", head,
         f"{'NIC writes the next frame into' if rx else 'NIC sends'} descriptor {head} next",
         pring is not None and pring.get("head") != head),
        ("driver", f"{treg} (tail)", tail,
         (f"descriptors {head}..{(tail - 1) % count} belong to the NIC ({owned})" if owned
          else "the NIC owns no descriptor: " + ("frames wait in QEMU's queue" if rx else "idle")),
         pring is not None and pring.get("tail") != tail),
    ]
    cw_card = (W - 34) / 2
    for j, (who, label, value, line1, changed) in enumerate(cards):
        x = 12 + j * (cw_card + 10)
        color = "#B36B00" if who == "driver" else "#00795A"
        out.append(f'<g class="qnv-card"{attrs(data_card=label.split()[0].lower(), data_value=value)}>')
        out.append(rect(x, top, cw_card, H_cards, CHANGED if changed else PANEL,
                        OUTLINE if changed else GRID, rx=6, sw=2.5 if changed else 1))
        out.append(text(x + 10, top + 1.15 * fs, f"{who} writes it", fs * 0.8, fill=color,
                        weight="bold"))
        out.append(text(x + 10, top + 2.4 * fs, f"{label} = {value}", fs * 1.1, family=MONO,
                        weight="bold"))
        out.append(text(x + 10, top + 3.45 * fs, line1, fs * 0.8))
        out.append("</g>")
    if rx:
        cols = [(0, "#", 4), (5, "buffer addr", 11), (17, "length", 6), (24, "status", 9),
                (34, "errors", 6)]
    else:
        cols = [(0, "#", 4), (5, "buffer addr", 11), (17, "length", 6), (24, "cmd", 5),
                (30, "status", 9)]
    t_w = 42 * cw + 16
    out.append(_header_row(12, y_tab + 1.0 * rh, rh, t_w, cols, cw, fs))
    slots = _slots(start, nrows, count)
    pdescs = pring.get("descriptors") if pring else None
    for r_i, d in enumerate(slots):
        y = y_rows + r_i * rh
        e = descs[d]
        nic_owns = _in_range(d, head, tail, count) if count else False
        fill = PENDING if nic_owns else ("#E3F4EA" if e.get("dd") else "#FFFFFF")
        changed = pdescs is not None and d < len(pdescs) and pdescs[d] != e
        st = ("DD" if e.get("dd") else "") + ("|EOP" if e.get("eop") else "")
        if rx:
            vals = [str(d), hexaddr(e["addr"]), str(e["length"]), st or "0", str(e.get("errors", 0))]
            da = attrs(data_desc=d, data_addr=e["addr"], data_len=e["length"],
                       data_status=e.get("status", 0), data_dd=int(bool(e.get("dd"))))
        else:
            vals = [str(d), hexaddr(e["addr"]), str(e["length"]), hex(e.get("cmd", 0)),
                    "DD" if e.get("dd") else "0"]
            da = attrs(data_desc=d, data_addr=e["addr"], data_len=e["length"],
                       data_cmd=e.get("cmd", 0), data_dd=int(bool(e.get("dd"))))
        out.append(_row("qnv-desc", da, 12, y, t_w, rh, fill, changed, cols, vals, cw, fs))
        tags = []
        if d == head:
            tags.append((f"◀ {hreg}: NIC next", "#00795A"))
        if d == tail:
            tags.append((f"◀ {treg}: driver next", "#B36B00"))
        out.append(_tags(12 + t_w + 8, y, rh, tags, fs))
        if windowed and r_i + 1 < len(slots) and d == count - 1:
            out.append(_wrap_mark(12, y + rh, t_w, fs))
    y_leg = y_rows + (rows if windowed else count) * rh + 1.2 * rh
    lx = 12.0
    for fill, stroke, label in ((PENDING, None, "owned by the NIC (between head and tail)"),
                                ("#E3F4EA", None, "done (DD): for the driver to clean"),
                                ("#FFFFFF", OUTLINE, "changed by this step")):
        out.append(rect(lx, y_leg - fs * 0.85, fs * 1.6, fs * 1.0, fill, stroke or GRID,
                        sw=2.5 if stroke else 1))
        out.append(text(lx + fs * 2.0, y_leg, label, fs * 0.85))
        lx += fs * 2.4 + len(label) * fs * 0.55 + 24
    out.append("</svg>")
    return "".join(out)


__all__ = ["ring_svg", "e1000_ring_svg", "window", "desc_flags_text", "HILITE"]
