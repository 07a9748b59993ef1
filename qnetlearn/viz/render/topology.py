"""The network of a machine as a graph: host ends, netdevs, hubs and their ports, NICs and
the guest; laid out by networkx, drawn as SVG, with the place a frame is at highlighted.

``topology_graph(vm)`` builds the graph from the machine's own objects (nothing is drawn
that the machine does not have); ``position_of`` says where a recorded step is on it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .._svg import (HILITE, INK, LAYER_COLOR, MONO, MUTED, attrs, esc, layer_of, rect,
                    svg_open, text)

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

KIND_COLOR = {"host": LAYER_COLOR["host"], "tap": LAYER_COLOR["net"], "hub": LAYER_COLOR["net"],
              "hubport": LAYER_COLOR["net"], "nic": LAYER_COLOR["nic"],
              "guest": LAYER_COLOR["guest"], "netdev": LAYER_COLOR["net"]}
KIND_TITLE = {"host": "host kernel", "tap": "-netdev tap", "hub": "hub (net/hub.c)",
              "hubport": "hub port", "nic": "-device (NIC)", "guest": "guest kernel",
              "netdev": "-netdev"}


def topology_graph(vm: Any) -> "nx.Graph":
    """Nodes (with ``kind``, ``label``, ``sub``, ``layer``) and edges (with ``label``)."""
    import networkx as nx
    g = nx.Graph()
    nic_names = {dev.nc.name for dev in vm.nics if getattr(dev, "nc", None) is not None}
    for name, tap in vm.taps.items():
        g.add_node(name, kind="tap", label=name, sub=f"TAP backend · {tap.ifname}")
        host = vm.hosts.get(name)
        hid = f"host:{name}"
        if host is not None:
            g.add_node(hid, kind="host", label=f"host ({tap.ifname})",
                       sub=f"{host.ip} · {host.mac}")
        else:
            g.add_node(hid, kind="host", label=f"host ({tap.ifname})", sub="Linux TAP device")
        g.add_edge(hid, name, label="TAP fd")
    for hub in vm.hubs.hubs:
        hid = f"hub{hub.id}"
        g.add_node(hid, kind="hub", label=f"hub {hub.id}", sub=f"{len(hub.ports)} ports")
        for port in hub.ports:
            g.add_node(port.nc.name, kind="hubport", label=port.nc.name, sub=f"port {port.id}")
            g.add_edge(port.nc.name, hid, label="")
    for dev_id, dev in vm.devices.items():
        nc = getattr(dev, "nc", None)
        if nc is None:
            continue
        model = "e1000" if type(dev).__name__.startswith("E1000") else "virtio-net-pci"
        g.add_node(nc.name, kind="nic", label=dev_id, sub=f"{model} · {dev.mac}", device=dev_id)
    for nc in vm.all_clients():
        if nc.name not in g:
            g.add_node(nc.name, kind="netdev", label=nc.name, sub=nc.info.type)
        if nc.peer is not None:
            if nc.peer.name not in g:
                g.add_node(nc.peer.name, kind="netdev", label=nc.peer.name, sub=nc.peer.info.type)
            g.add_edge(nc.name, nc.peer.name, label="peer")
    if getattr(vm, "guest", None) is not None:
        g.add_node("guest", kind="guest", label="guest kernel",
                   sub=f"{vm.guest.ip}")
        for name in nic_names:
            g.add_edge(name, "guest", label="rings in RAM · interrupts")
    # layers, left to right: host, backend, hub ports on the backend side, hub, hub ports on
    # the NIC side, NIC, guest
    for n, d in g.nodes(data=True):
        k = d["kind"]
        if k == "hubport":
            peers = [m for m in g.neighbors(n) if g.nodes[m]["kind"] != "hub"]
            d["layer"] = 4 if any(g.nodes[m]["kind"] == "nic" for m in peers) or not peers else 2
        else:
            d["layer"] = {"host": 0, "tap": 1, "netdev": 1, "hub": 3, "nic": 5, "guest": 6}[k]
    used = sorted({d["layer"] for _n, d in g.nodes(data=True)})
    for _n, d in g.nodes(data=True):
        d["layer"] = used.index(d["layer"])
    return g


def layout(g: "nx.Graph") -> dict[str, tuple[float, float]]:
    """networkx's multipartite layout, one column per layer, made deterministic."""
    import networkx as nx
    h = nx.Graph()
    h.add_nodes_from(sorted(g.nodes(data=True), key=lambda nd: (nd[1]["layer"], str(nd[0]))))
    h.add_edges_from(g.edges())
    pos = nx.multipartite_layout(h, subset_key="layer")
    return {n: (float(p[0]), float(p[1])) for n, p in pos.items()}


def position_of(g: "nx.Graph", frames: Sequence[Any], step: Any,
                device: str | None = None) -> tuple[list[str], tuple[str, str] | None, str]:
    """Where a step is: (nodes, edge, words).  ``device`` names the NIC when the recording
    says which one (several NICs); otherwise every candidate is returned."""
    chain = list(frames)
    if step.kind == "event" and not chain:
        chain = [step]
    kinds = {n: d["kind"] for n, d in g.nodes(data=True)}

    def of_kind(kind: str) -> list[str]:
        return sorted(n for n, k in kinds.items() if k == kind)

    def nic_nodes() -> list[str]:
        if device is not None:
            hit = [n for n, d in g.nodes(data=True) if d.get("device") == device]
            if hit:
                return hit
        return of_kind("nic")

    for f in reversed(chain):
        src = f.src
        layer = layer_of(src)
        if src == "net/tap.c":
            taps = of_kind("tap")
            if f.name == "tap_receive_iov":
                return taps, None, "the TAP backend writes the frame to the host"
            return taps, None, "the TAP backend reads a frame from the host"
        if src == "net/hub.c":
            return of_kind("hub"), None, "the hub copies the frame to its other ports"
        if layer in ("nic", "pci"):
            return nic_nodes(), None, "in the NIC's device model"
        if layer in ("memory", "apic"):
            if step.context.startswith("vcpu"):
                nics = nic_nodes()
                return ["guest"], (nics[0], "guest") if len(nics) == 1 else None, \
                    "the guest accesses the hardware (a VM exit)"
            nics = nic_nodes()
            return ["guest"], ((nics[0], "guest") if len(nics) == 1 else None), \
                "an interrupt travels from the NIC to the guest's CPU"
        if layer == "guest":
            return ["guest"] if "guest" in kinds else [], None, "in the guest kernel"
        if layer == "net":
            # the net layer moves a frame from a sender (an outer frame) to its peer
            for outer in reversed(chain[: chain.index(f)]):
                if outer.src == "net/tap.c":
                    taps = of_kind("tap")
                    if len(taps) == 1:
                        peer = [m for m in g.neighbors(taps[0]) if kinds[m] != "host"]
                        return taps, ((taps[0], peer[0]) if len(peer) == 1 else None), \
                            "the frame crosses QEMU's net layer"
                    return taps, None, "the frame crosses QEMU's net layer"
                if layer_of(outer.src) == "nic":
                    nics = nic_nodes()
                    if len(nics) == 1:
                        peer = [m for m in g.neighbors(nics[0]) if kinds[m] != "guest"]
                        return nics, ((nics[0], peer[0]) if len(peer) == 1 else None), \
                            "the frame crosses QEMU's net layer"
                    return nics, None, "the frame crosses QEMU's net layer"
                if outer.src == "net/hub.c":
                    return of_kind("hub"), None, "the hub sends the frame on"
            continue
    return [], None, ""


def topology_svg(g: "nx.Graph", pos: dict[str, tuple[float, float]], *,
                 current: Iterable[str] = (), edge: tuple[str, str] | None = None,
                 where: str = "", index: int | None = None, title: str | None = None,
                 slide: bool = False) -> str:
    """The graph, with the nodes in ``current`` (and ``edge``) highlighted."""
    fs = 19.0 if slide else 13.0
    W = 1240 if slide else 1010
    cur = set(current)
    ncols = max((d["layer"] for _n, d in g.nodes(data=True)), default=0) + 1
    col_counts: dict[int, int] = {}
    for _n, d in g.nodes(data=True):
        col_counts[d["layer"]] = col_counts.get(d["layer"], 0) + 1
    rows = max(col_counts.values(), default=1)
    bw = min(190.0 if not slide else 230.0, (W - 40) / max(ncols, 1) - 24)
    bh = 3.6 * fs
    top = 3.0 * fs
    H = top + rows * (bh + 2.2 * fs) + 2.6 * fs
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)

    def xy(n: str) -> tuple[float, float]:
        px, py = pos[n]
        fx = (px - xmin) / (xmax - xmin) if xmax > xmin else 0.5
        fy = (py - ymin) / (ymax - ymin) if ymax > ymin else 0.5
        return (20 + bw / 2 + fx * (W - 40 - bw),
                top + bh / 2 + (1 - fy) * (H - top - bh - 2.8 * fs))

    edge_set = {tuple(sorted(edge))} if edge else set()
    out = [svg_open(W, H, "topology", data_current=" ".join(sorted(cur)),
                    data_edge=" ".join(edge) if edge else "", data_step=index),
           rect(0, 0, W, H, "#FFFFFF")]
    out.append(text(12, 1.5 * fs, title or "Topology: who is peered with whom", fs * 1.2,
                    weight="bold"))
    if index is not None:
        out.append(text(W - 12, 1.5 * fs, f"step {index}", fs * 0.9, fill=MUTED, anchor="end"))
    for a, b, d in sorted(g.edges(data=True), key=lambda e: (str(e[0]), str(e[1]))):
        (x1, y1), (x2, y2) = xy(a), xy(b)
        hot = tuple(sorted((a, b))) in edge_set
        color = "#D55E00" if hot else "#9A9A9A"
        out.append(f'<g class="qnv-edge"{attrs(data_a=a, data_b=b, data_current=1 if hot else None)}>'
                   f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                   f'stroke="{color}" stroke-width="{5 if hot else 2}"/>')
        if d.get("label"):
            out.append(text((x1 + x2) / 2, (y1 + y2) / 2 - 6, d["label"], fs * 0.72,
                            fill="#D55E00" if hot else MUTED, anchor="middle"))
        out.append("</g>")
    for n, d in sorted(g.nodes(data=True), key=lambda nd: str(nd[0])):
        x, y = xy(n)
        hot = n in cur
        color = KIND_COLOR.get(d["kind"], MUTED)
        out.append(f'<g class="qnv-node"{attrs(data_node=n, data_kind=d["kind"], data_current=1 if hot else None)}>')
        out.append(rect(x - bw / 2, y - bh / 2, bw, bh, HILITE if hot else "#FFFFFF",
                        "#C9A800" if hot else color, rx=8, sw=3.5 if hot else 2))
        out.append(rect(x - bw / 2, y - bh / 2, bw, 0.5 * fs, color, rx=3))
        out.append(text(x, y - bh / 2 + 1.7 * fs, d["label"], fs, weight="bold", anchor="middle",
                        family=MONO))
        out.append(text(x, y - bh / 2 + 2.75 * fs, _fit(d.get("sub", ""), bw, fs * 0.72),
                        fs * 0.72, fill=MUTED, anchor="middle"))
        out.append(text(x, y + bh / 2 + 1.0 * fs, KIND_TITLE.get(d["kind"], d["kind"]),
                        fs * 0.72, fill=color, anchor="middle"))
        out.append("</g>")
    if where:
        out.append(text(12, H - 0.8 * fs, f"now: {where}", fs * 0.95, weight="bold", fill=INK,
                        extra=f' data-where="{esc(where)}"'))
    out.append("</svg>")
    return "".join(out)


def _fit(s: str, width: float, size: float) -> str:
    n = int(width / (size * 0.56))
    return s if len(s) <= n else s[: n - 1] + "…"
