"""Interrupt delivery at one step, as SVG.

Left: the device's side (virtio-net-pci: the MSI-X table and its pending bits; e1000: the
ICR and IMS registers and its INTx line).  Middle: the way the interrupt travels, with the
stage this step is at highlighted (an MSI is a 4-byte memory write to the APIC's window at
0xFEE00000; INTx goes through the I/O APIC).  Right: the local APIC's IRR, ISR and TMR and the
I/O APIC's pins.
"""
from __future__ import annotations

from typing import Any, Sequence

from .._svg import (CHANGED, GRID, HILITE, INK, LAYER_COLOR, MONO, MUTED, PANEL, attrs,
                    arrow_defs, hexaddr, line, rect, svg_open, text)

OUTLINE = "#C98A00"

MSI_STAGES = [
    ("msix_notify", "device raises vector", "hw/pci/msix.c"),
    ("msi_send_message", "MSI message = address + data", "hw/pci/msi.c"),
    ("address_space_stl_le", "4-byte write on the memory bus", "memory_ldst.c.inc"),
    ("apic_send_msi", "lands in the APIC window 0xfee00000", "hw/intc/apic.c"),
    ("apic_deliver_irq", "vector set in IRR", "hw/intc/apic.c"),
    ("handle_edge_irq", "vCPU takes it: IRR → ISR, handler runs", "guest kernel"),
    ("EOI", "guest writes EOI: ISR bit cleared", "APIC register 0xb0"),
]
INTX_STAGES = [
    ("set_interrupt_cause", "ICR & IMS ≠ 0: INTA# goes high", "hw/net/e1000.c"),
    ("ioapic_set_irq", "PIIX3 routes INTA# to an I/O APIC pin", "hw/intc/ioapic.c"),
    ("ioapic_service", "the pin's entry goes to the APIC window", "hw/intc/ioapic.c"),
    ("apic_deliver_irq", "vector set in IRR (and TMR: level)", "hw/intc/apic.c"),
    ("handle_fasteoi_irq", "vCPU takes it; reading ICR lowers INTA#", "guest kernel"),
    ("EOI", "EOI: remote IRR cleared at the I/O APIC", "hw/intc/ioapic.c"),
]

E1000_ICR_BITS = [(0x01, "TXDW"), (0x02, "TXQE"), (0x04, "LSC"), (0x08, "RXSEQ"),
                  (0x10, "RXDMT0"), (0x40, "RXO"), (0x80, "RXT0"), (0x200, "MDAC")]


def msi_stage(names: Sequence[str], step: Any) -> int:
    """Index in MSI_STAGES of what this step does (-1: no interrupt in progress)."""
    s = set(names)
    if step.kind == "event" and step.name == "apic_mem_writel" and "EOI" in str(step.args.get("note", "")):
        return 6
    if step.kind == "event" and step.name == "apic_deliver_irq":
        return 4
    for k in (4, 3):
        if MSI_STAGES[k][0] in s:
            return k
    if s & {"kvm_send_msi", "kvm_set_msi"}:
        return 3
    if s & {"address_space_stl_le", "address_space_stl_internal"}:
        return 2
    if "msi_send_message" in s:
        return 1
    if "msix_notify" in s:
        return 0
    if "handle_edge_irq" in s:
        return 5
    return -1


def intx_stage(names: Sequence[str], step: Any) -> int:
    """Index in INTX_STAGES of what this step does (-1: no interrupt in progress)."""
    s = set(names)
    if step.kind == "event" and step.name in ("ioapic_eoi_broadcast", "ioapic_clear_remote_irr"):
        return 5
    if step.kind == "event" and step.name == "apic_mem_writel" and "EOI" in str(step.args.get("note", "")):
        return 5
    if "handle_fasteoi_irq" in s:
        return 4
    if "apic_deliver_irq" in s or (step.kind == "event" and step.name == "apic_deliver_irq"):
        return 3
    if s & {"address_space_stl_le", "address_space_stl_internal", "apic_send_msi",
            "apic_mem_write", "memory_region_dispatch_write", "kvm_set_irq"}:
        return 2
    if step.kind == "event" and step.name in ("ioapic_set_irq", "ioapic_set_remote_irr"):
        return 1
    if s & {"set_interrupt_cause", "set_ics"}:
        return 0
    return -1


def message_of(frames: Sequence[Any], step: Any) -> tuple[int, int] | None:
    """(address, data) of the MSI travelling at this step, from the frames' arguments."""
    for f in reversed(list(frames) + ([step] if step.kind != "return" else [])):
        a = f.args
        if "msg" in a and hasattr(a["msg"], "address"):
            return a["msg"].address, a["msg"].data
        if f.name in ("apic_send_msi", "kvm_send_msi") and "addr" in a and "data" in a:
            return a["addr"], a["data"]
        if f.name.startswith("address_space_stl") and "addr" in a and "val" in a:
            return a["addr"], a["val"]
    return None


def _bits(values: Sequence[int]) -> str:
    return " ".join(str(v) for v in values)


def interrupt_svg(state: dict[str, Any], *, device: str, frames: Sequence[Any] = (),
                  step: Any = None, prev: dict[str, Any] | None = None,
                  index: int | None = None, slide: bool = False) -> str:
    """Interrupt delivery for ``device`` at a step (``state`` is ``rec.state(i)``)."""
    fs = 19.0 if slide else 13.0
    rh = round(fs * 1.7)
    W = 1240 if slide else 1010
    dev = state.get("devices", {}).get(device, {})
    pdev = (prev or {}).get("devices", {}).get(device, {}) if prev else {}
    apic = state.get("apic", {"irr": [], "isr": [], "tmr": []})
    papic = (prev or {}).get("apic") if prev else None
    pins = state.get("ioapic", {}).get("pins", {})
    ppins = (prev or {}).get("ioapic", {}).get("pins", {}) if prev else None
    e1000 = dev.get("model") == "e1000" or "interrupt" in dev
    names = [f.name for f in frames]
    if step is not None and step.kind == "call" and (not names or names[-1] != step.name):
        names.append(step.name)
    if e1000:
        stages, stage = INTX_STAGES, (intx_stage(names, step) if step is not None else -1)
    else:
        stages, stage = MSI_STAGES, (msi_stage(names, step) if step is not None else -1)
    msg = message_of(frames, step) if (step is not None and not e1000) else None
    msix = dev.get("msix", {})
    entries = msix.get("entries", [])
    pentries = pdev.get("msix", {}).get("entries", []) if pdev else []
    n_dev_rows = len(entries) if not e1000 else len(E1000_ICR_BITS)
    n_pins = len(pins)
    H = max(3.4 * fs + (n_dev_rows + 2.5) * rh + 2.6 * fs,
            4.4 * fs + len(stages) * (2.6 * fs + 6) + 1.2 * fs,
            3.4 * fs + 3 * (2.4 * fs) + (n_pins + 3) * rh + 2 * fs) + 10
    data: dict[str, Any] = dict(data_device=device, data_stage=stage,
                                data_stage_name=stages[stage][0] if stage >= 0 else "",
                                data_irr=_bits(apic.get("irr", [])),
                                data_isr=_bits(apic.get("isr", [])),
                                data_tmr=_bits(apic.get("tmr", [])), data_step=index)
    if msg is not None:
        data["data_message_address"] = msg[0]
        data["data_message_data"] = msg[1]
    if e1000:
        it = dev.get("interrupt", {})
        data.update(data_icr=it.get("icr", 0), data_ims=it.get("ims", 0),
                    data_intx=int(bool(it.get("intx_level", 0))))
    else:
        data.update(data_msix_enabled=int(bool(msix.get("enabled"))),
                    data_function_masked=int(bool(msix.get("function_masked"))))
    out = [svg_open(W, H, "interrupt", **data), rect(0, 0, W, H, "#FFFFFF"),
           arrow_defs([("qnv-arr", "#444444"), ("qnv-arr-hot", LAYER_COLOR["apic"])])]
    title = f"Interrupt delivery · {device}" + (" (e1000: INTx through the I/O APIC)" if e1000
                                                else " (MSI-X: a memory write to the APIC)")
    out.append(text(12, 1.5 * fs, title, fs * 1.25, weight="bold"))
    if index is not None:
        out.append(text(W - 12, 1.5 * fs, f"step {index}", fs * 0.9, fill=MUTED, anchor="end"))
    top = 3.0 * fs
    colw = (W - 24 - 2 * 16) / 3
    x1, x2, x3 = 12, 12 + colw + 16, 12 + 2 * (colw + 16)
    if slide:
        x1w, x2w, x3w = colw * 1.12, colw * 0.98, colw * 0.9
        x2, x3 = x1 + x1w + 16, x1 + x1w + x2w + 32
    else:
        x1w = x2w = x3w = colw

    # -- the device -----------------------------------------------------------------------------
    if e1000:
        out.append(_e1000_box(dev, pdev, x1, top, x1w, rh, fs))
    else:
        out.append(text(x1, top + fs, f"{device}: MSI-X table (in BAR memory)", fs, weight="bold"))
        flags = (f"MSI-X {'enabled' if msix.get('enabled') else 'disabled'} · function mask "
                 f"{'ON' if msix.get('function_masked') else 'off'}")
        out.append(text(x1, top + 2.1 * fs, flags, fs * 0.8, fill=MUTED))
        y0 = top + 2.6 * fs
        cw = fs * 0.602 * 0.92
        cols = [(0, "vec"), (4, "address"), (16, "data"), (23, "mask"), (28, "PBA")]
        out.append(rect(x1, y0, x1w, rh * 0.95, "#ECECEC", GRID))
        for off, label in cols:
            out.append(text(x1 + 6 + off * cw, y0 + rh * 0.68, label, fs * 0.8, fill=MUTED,
                            weight="bold", family=MONO))
        for r, e in enumerate(entries):
            y = y0 + (r + 1) * rh
            sending = msg is not None and e["address"] == msg[0] and e["data"] == msg[1] and stage in (0, 1, 2, 3)
            pe = pentries[r] if r < len(pentries) else None
            changed = pe is not None and pe != e
            fill = HILITE if sending else ("#FFFFFF" if r % 2 == 0 else PANEL)
            out.append(f'<g class="qnv-msix"{attrs(data_vector=e["vector"], data_address=e["address"], data_data=e["data"], data_masked=int(e["masked"]), data_pending=int(e["pending"]), data_sending=1 if sending else None)}>')
            out.append(rect(x1, y, x1w, rh, fill, OUTLINE if changed else GRID,
                            sw=2.5 if changed else 1))
            vals = [str(e["vector"]), hexaddr(e["address"]), hex(e["data"]),
                    "1" if e["masked"] else "0", "1" if e["pending"] else "0"]
            for (off, _l), v in zip(cols, vals):
                color = INK
                if v == "1" and off >= 23:
                    color = "#B00020"
                out.append(text(x1 + 6 + off * cw, y + rh * 0.68, v, fs * 0.92, family=MONO,
                                fill=color, weight="bold" if color != INK else None))
            out.append("</g>")
        yk = y0 + (len(entries) + 1) * rh + 1.2 * fs
        out.append(text(x1, yk, "data: its low byte is the vector the CPU gets; mask 1:",
                        fs * 0.75, fill=MUTED))
        out.append(text(x1, yk + 1.15 * fs, "only the PBA bit is set, the message goes on unmask",
                        fs * 0.75, fill=MUTED))

    # -- the way ----------------------------------------------------------------------------------
    out.append(text(x2, top + fs, "How it travels", fs, weight="bold"))
    sh = 2.6 * fs
    y_st = top + 3.0 * fs           # a line for the message, then the stages
    if msg is not None and stage in (1, 2, 3):
        label = f"message: write 0x{msg[1]:x} to 0x{msg[0]:x}"
        out.append(rect(x2, top + 1.35 * fs, len(label) * fs * 0.47 + 16, 1.35 * fs,
                        LAYER_COLOR["memory"], rx=8))
        out.append(text(x2 + 8, top + 2.35 * fs, label, fs * 0.78, fill="#FFFFFF", weight="bold",
                        family=MONO, extra=' class="qnv-message"'))
    for k, (fn, what, where) in enumerate(stages):
        y = y_st + k * (sh + 6)
        hot = k == stage
        done = stage >= 0 and k < stage
        fill = HILITE if hot else ("#EEF6EE" if done else "#FFFFFF")
        out.append(f'<g class="qnv-stage"{attrs(data_stage=k, data_name=fn, data_current=1 if hot else None)}>')
        out.append(rect(x2, y, x2w, sh, fill, "#C9A800" if hot else GRID, rx=5, sw=2 if hot else 1))
        out.append(text(x2 + 8, y + 1.05 * fs, f"{k + 1}. {fn}", fs * 0.85, family=MONO,
                        weight="bold"))
        out.append(text(x2 + 8, y + 2.15 * fs, what, fs * 0.78, fill=INK if hot else MUTED))
        out.append("</g>")
        if k + 1 < len(stages):
            out.append(line(x2 + 18, y + sh, x2 + 18, y + sh + 6, "#888888", 1.5))

    # -- the local APIC -----------------------------------------------------------------------------
    out.append(text(x3, top + fs, "Local APIC (CPU 0)", fs, weight="bold"))
    regs = [("IRR", "requested, not yet taken", apic.get("irr", []), (papic or {}).get("irr")),
            ("ISR", "in service (handler running)", apic.get("isr", []), (papic or {}).get("isr")),
            ("TMR", "level-triggered", apic.get("tmr", []), (papic or {}).get("tmr"))]
    for k, (reg, what, vals, pvals) in enumerate(regs):
        y = top + 1.6 * fs + k * 2.4 * fs
        changed = papic is not None and list(pvals or []) != list(vals)
        out.append(f'<g class="qnv-apic"{attrs(data_reg=reg.lower(), data_vectors=_bits(vals))}>')
        out.append(rect(x3, y, x3w, 2.1 * fs, CHANGED if changed else PANEL,
                        OUTLINE if changed else GRID, rx=5, sw=2.5 if changed else 1))
        out.append(text(x3 + 8, y + 0.95 * fs, reg, fs * 0.95, family=MONO, weight="bold"))
        out.append(text(x3 + 8 + 4 * fs * 0.6, y + 0.95 * fs, what, fs * 0.72, fill=MUTED))
        shown = ", ".join(f"{v} (0x{v:x})" for v in vals) if vals else "empty"
        out.append(text(x3 + 8, y + 1.85 * fs, shown, fs * 0.85, family=MONO,
                        fill=LAYER_COLOR["apic"] if vals else MUTED, weight="bold" if vals else None))
        out.append("</g>")
    # I/O APIC pins
    y = top + 1.6 * fs + 3 * 2.4 * fs + 0.6 * fs
    out.append(text(x3, y + 0.4 * fs, "I/O APIC pins in use", fs * 0.9, weight="bold"))
    y += 0.9 * fs
    if not pins:
        out.append(text(x3, y + fs, "none (MSI-X needs no pin)", fs * 0.8, fill=MUTED))
    for k, (pin, p) in enumerate(sorted(pins.items())):
        yy = y + k * rh
        changed = ppins is not None and ppins.get(pin) != p
        out.append(f'<g class="qnv-pin"{attrs(data_pin=pin, data_vector=p["vector"], data_masked=int(p["masked"]), data_level=int(p["level"]), data_remote_irr=int(p["remote_irr"]), data_irr=int(p["irr"]))}>')
        out.append(rect(x3, yy, x3w, rh, "#FFFFFF", OUTLINE if changed else GRID,
                        sw=2.5 if changed else 1))
        desc = (f"pin {pin} → vec {p['vector']} {'level' if p['level'] else 'edge'}"
                f"{' masked' if p['masked'] else ''} rIRR {int(p['remote_irr'])} "
                f"line {int(p['irr'])}")
        out.append(text(x3 + 6, yy + rh * 0.68, desc, fs * 0.78, family=MONO))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _e1000_box(dev: dict[str, Any], pdev: dict[str, Any], x: float, top: float, w: float,
               rh: float, fs: float) -> str:
    it = dev.get("interrupt", {})
    pit = pdev.get("interrupt", {}) if pdev else {}
    icr, ims = it.get("icr", 0), it.get("ims", 0)
    out = [text(x, top + fs, "e1000: interrupt cause registers", fs, weight="bold"),
           text(x, top + 2.1 * fs, f"ICR 0x{icr:x} · IMS 0x{ims:x} · ICR & IMS 0x{icr & ims:x}",
                fs * 0.8, fill=MUTED, family=MONO)]
    y0 = top + 2.6 * fs
    out.append(rect(x, y0, w, rh * 0.95, "#ECECEC", GRID))
    for off, label in ((6, "cause"), (w * 0.45, "ICR"), (w * 0.62, "IMS"), (w * 0.79, "both")):
        out.append(text(x + off, y0 + rh * 0.68, label, fs * 0.8, fill=MUTED, weight="bold",
                        family=MONO))
    for r, (bit, name) in enumerate(E1000_ICR_BITS):
        y = y0 + (r + 1) * rh
        a, m = bool(icr & bit), bool(ims & bit)
        changed = bool(pit) and (bool(pit.get("icr", 0) & bit) != a or bool(pit.get("ims", 0) & bit) != m)
        out.append(f'<g class="qnv-icr"{attrs(data_bit=bit, data_name=name, data_icr=int(a), data_ims=int(m))}>')
        out.append(rect(x, y, w, rh, HILITE if (a and m) else "#FFFFFF", OUTLINE if changed else GRID,
                        sw=2.5 if changed else 1))
        out.append(text(x + 6, y + rh * 0.68, name, fs * 0.9, family=MONO))
        for off, v in ((w * 0.45, a), (w * 0.62, m), (w * 0.79, a and m)):
            out.append(text(x + off, y + rh * 0.68, "1" if v else "0", fs * 0.9, family=MONO,
                            fill="#B00020" if v else MUTED, weight="bold" if v else None))
        out.append("</g>")
    y = y0 + (len(E1000_ICR_BITS) + 1) * rh + 1.2 * fs
    level = bool(it.get("intx_level"))
    out.append(text(x, y, f"INTA# line: {'HIGH (asserted)' if level else 'low'}", fs * 0.95,
                    weight="bold", fill="#B00020" if level else MUTED,
                    extra=attrs(data_intx=int(level))))
    return "".join(out)
