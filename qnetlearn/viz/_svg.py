"""Small helpers to write SVG as text, fast (no DOM, no dependencies).

Every renderer builds a list of strings and joins it once.  Styles are attributes, never a
``<style>`` element: SVG inlined in a page would leak a style sheet into the whole page.
"""
from __future__ import annotations

from typing import Any, Iterable

MONO = "monospace"
SANS = "DejaVu Sans, Helvetica, Arial, sans-serif"

#: one colour per layer of the path (Okabe-Ito palette: readable by colour-blind students)
LAYER_COLOR = {
    "host": "#555555",
    "net": "#0072B2",       # QEMU net/: backends, queues, hubs
    "nic": "#009E73",       # QEMU hw/net, hw/virtio: the device models
    "pci": "#CC79A7",       # QEMU hw/pci: MSI-X
    "memory": "#56B4E9",    # QEMU softmmu, memory_ldst: the bus write
    "apic": "#D55E00",      # QEMU hw/intc, KVM's irqchip
    "guest": "#E69F00",     # the guest kernel and its drivers
    "other": "#777777",
}
LAYER_TITLE = {
    "host": "host", "net": "QEMU net layer", "nic": "QEMU device model",
    "pci": "PCI / MSI-X", "memory": "memory bus", "apic": "interrupt controller",
    "guest": "guest kernel", "other": "other",
}
HILITE = "#FFE27A"        # the current thing (step, frame, slot)
CHANGED = "#FFF4C2"       # changed by this step
INFLIGHT = "#FAD7B5"      # a chain the device is processing
PENDING = "#D8EEFF"       # published by one side, not yet consumed by the other
MUTED = "#8A8A8A"
INK = "#1A1A1A"
GRID = "#D0D0D0"
PANEL = "#F7F7F7"

_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def esc(value: Any) -> str:
    """Text or attribute value, escaped for XML."""
    return str(value).translate(_ESC)


def layer_of(src: str) -> str:
    """The layer a source file belongs to (QEMU's or the guest kernel's)."""
    if src.startswith(("drivers/", "kernel/", "net/core", "arch/", "guest")):
        return "guest"
    if src.startswith("linux/") or "kvm" in src:
        return "apic"
    if src.startswith(("net/", "qnetlearn")):
        return "net"
    if src.startswith(("hw/net", "hw/virtio")):
        return "nic"
    if src.startswith("hw/pci"):
        return "pci"
    if src.startswith("hw/intc"):
        return "apic"
    if src.startswith(("softmmu", "include/exec", "system")):
        return "memory"
    return "other"


def attrs(**kw: Any) -> str:
    """``key="value"`` pairs; ``data_x`` becomes ``data-x``; None values are left out."""
    out = []
    for k, v in kw.items():
        if v is None:
            continue
        out.append(f' {k.replace("_", "-")}="{esc(v)}"')
    return "".join(out)


def num(v: float) -> str:
    """A coordinate, short: 12 not 12.0, 404.5 not 404.50."""
    s = "%.1f" % v
    return s[:-2] if s.endswith(".0") else s


def text(x: float, y: float, s: Any, size: float = 13, *, fill: str = INK, weight: str | None = None,
         anchor: str | None = None, family: str = SANS, extra: str = "") -> str:
    """A text element; the root sets SANS and INK, so only differences are written."""
    f = "" if fill == INK else f' fill="{fill}"'
    w = f' font-weight="{weight}"' if weight else ""
    a = f' text-anchor="{anchor}"' if anchor else ""
    fam = "" if family == SANS else f' font-family="{family}"'
    return (f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}"{fam}{f}{w}{a}{extra}>'
            f'{esc(s)}</text>')


def rect(x: float, y: float, w: float, h: float, fill: str = "none", stroke: str | None = None,
         rx: float = 0, extra: str = "", sw: float = 1) -> str:
    s = f' stroke="{stroke}"' + (f' stroke-width="{num(sw)}"' if sw != 1 else "") if stroke else ""
    r = f' rx="{num(rx)}"' if rx else ""
    return (f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" '
            f'fill="{fill}"{s}{r}{extra}/>')


def line(x1: float, y1: float, x2: float, y2: float, stroke: str = GRID, sw: float = 1,
         extra: str = "") -> str:
    return (f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
            f'stroke="{stroke}" stroke-width="{num(sw)}"{extra}/>')


def arrow_defs(ids: Iterable[tuple[str, str]]) -> str:
    """Arrow-head markers, one per (id, colour)."""
    out = ["<defs>"]
    for mid, color in ids:
        out.append(f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                   f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
                   f'fill="{color}"/></marker>')
    out.append("</defs>")
    return "".join(out)


def svg_open(width: float, height: float, view: str, **data: Any) -> str:
    """The root element: scales to its container, carries the view's data attributes."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" class="qnv-svg" data-view="{view}"'
            f'{attrs(**data)} font-family="{SANS}" fill="{INK}" '
            f'style="max-width:100%;height:auto" role="img">')


def hexaddr(v: int) -> str:
    return f"0x{v:x}"


def chars(n: int, size: float) -> float:
    """Width of ``n`` characters of the monospace font at ``size``."""
    return n * size * 0.602
