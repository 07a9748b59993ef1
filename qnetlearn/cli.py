"""The ``qnetlearn`` command (also ``python -m qnetlearn``); API.md, "Command line".

``qnetlearn topology "<qemu command line>" [--svg FILE]``
    the netdevs, hubs and hub ports, peers and NICs the command line builds.
``qnetlearn trace "<qemu command line>" --ping N [--format qemu|json] [--pcap FILE]``
    the simulated host end pings the guest N times while a recorder is attached; prints
    ``rec.to_qemu_trace()`` (or every step as JSON lines) and writes the frames as pcap.
``qnetlearn run "<qemu command line>" [--trace PATTERN] [--pcap FILE]``
    runs the machine in the foreground until Ctrl-C (SIGINT) or SIGTERM.  As in QEMU, its
    ``-netdev tap`` opens a real Linux TAP (``host=sim`` opts out); chosen trace events
    are printed as they happen; ``-monitor stdio`` gives a ``(qemu)`` prompt.
``qnetlearn costs "<qemu command line>" --ping N``
    what one echo costs: exits, eventfd kicks, interrupts and bytes copied, per echo.

A command line QEMU would refuse prints QEMU's kind of message and exits with status 1.
"""
from __future__ import annotations

import argparse
import copy
import fnmatch
import importlib
import json
import signal
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

from .system.vl import CmdlineError, CmdlineHelp, MachineConfig, parse_cmdline

if TYPE_CHECKING:  # pragma: no cover
    from .machine import Machine
    from .net.dump import PcapWriter
    from .trace.tracepoint import Tracepoint

PROG = "qnetlearn"


class UsageError(Exception):
    """A problem to report in one line, exit status 1 (no traceback)."""


# -- shared helpers ---------------------------------------------------------------------
def _config(cmdline: str) -> MachineConfig:
    return parse_cmdline(cmdline)


def _set_tap_host(cfg: MachineConfig, host: str, force: bool) -> list[str]:
    """Choose each tap netdev's host end; returns the ids whose choice was changed."""
    changed = []
    for nd in cfg.netdevs:
        if nd.type != "tap":
            continue
        if force:
            if nd.opts.get("host", "sim") != host:
                changed.append(nd.id)
            nd.opts["host"] = host
        elif "host" not in nd.opts:
            nd.opts["host"] = host
    return changed


def _machine(cfg: MachineConfig, guest: str | None = "linux") -> "Machine":
    from .machine import Machine
    return Machine(cfg, guest=guest)


def _tap_captures(vm: "Machine", on_frame: Callable[[str, str, bytes], None]) -> None:
    """Call ``on_frame(netdev, direction, frame)`` for every frame crossing a TAP fd."""
    for name, tap in vm.taps.items():
        tap.capture = (lambda d, f, name=name: on_frame(name, d, f))


def _untap(vm: "Machine") -> None:
    for tap in vm.taps.values():
        tap.capture = None


def _err(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# -- topology -----------------------------------------------------------------------------
def _pci_slots(cfg: MachineConfig) -> dict[str, str]:
    """NIC name -> PCI address, from a machine built with simulated host ends only."""
    cfg = copy.deepcopy(cfg)
    _set_tap_host(cfg, "sim", force=True)       # describing opens no real TAP
    try:
        vm = _machine(cfg, guest=None)
    except Exception:     # a NIC model not written yet: the text works without slots
        return {}
    out = {}
    for name, dev in vm.devices.items():
        devfn = getattr(dev, "devfn", -1)
        if devfn >= 0:
            out[name] = f"00:{devfn >> 3:02x}.{devfn & 7}"
    vm.close()
    return out


def topology_text(cfg: MachineConfig) -> str:
    """Netdevs, hubs and their ports, peers and NICs, as plain text."""
    nics = {n.name: n for n in cfg.nics}
    clients = {nd.id: nd for nd in cfg.netdevs}
    slots = _pci_slots(cfg)

    def other_end(nd: Any) -> str:
        if nd.nic:
            n = nics.get(nd.nic)
            return f"NIC {nd.nic} ({n.model if n else '?'})"
        if nd.peer:
            p = clients.get(nd.peer)
            return f"{p.type if p else '?'} {nd.peer}"
        return "nothing (unconnected)"

    lines = ["Netdevs (backends, in QEMU's creation order):"]
    backends = [nd for nd in cfg.netdevs if nd.type != "hubport"]
    for nd in backends:
        opts = " ".join(f"{k}={v}" for k, v in nd.opts.items() if k != "id")
        lines.append(f"  {nd.id:<12} {nd.type:<8} {opts}".rstrip())
        lines.append(f"  {'':<12} peer: {other_end(nd)}")
    if not backends:
        lines.append("  (none)")
    lines.append("Hubs:")
    hub_ids = sorted({nd.hubid for nd in cfg.netdevs if nd.type == "hubport"
                      and nd.hubid is not None} | set(cfg.hubs))
    for hid in hub_ids:
        lines.append(f"  hub {hid}")
        for nd in cfg.netdevs:
            if nd.type == "hubport" and nd.hubid == hid:
                lines.append(f"    {nd.id:<12} peer: {other_end(nd)}")
    if not hub_ids:
        lines.append("  (none)")
    lines.append("NICs (PCI bus 0):")
    for n in cfg.nics:
        slot = slots.get(n.id or n.name, "")
        lines.append(f"  {slot:<8} {n.name:<12} {n.model:<15} mac {n.mac}  "
                     f"netdev {n.netdev or '(none)'}")
    if not cfg.nics:
        lines.append("  (none)")
    lines.append("Paths (backend to NIC):")
    for nd in backends:
        lines.append("  " + " <-> ".join(_path(nd, clients, nics)))
    return "\n".join(lines) + "\n"


def _path(nd: Any, clients: dict[str, Any], nics: dict[str, Any]) -> list[str]:
    hops = [f"{nd.type} {nd.id}"]
    if nd.nic:
        hops.append(f"{nics[nd.nic].model} {nd.nic}" if nd.nic in nics else nd.nic)
        return hops
    peer = clients.get(nd.peer) if nd.peer else None
    if peer is None:
        return hops + ["(no peer)"]
    if peer.type != "hubport":
        return hops + [f"{peer.type} {peer.id}"]
    hops.append(f"hub {peer.hubid} ({peer.id})")
    ends = []
    for port in clients.values():
        if port.type == "hubport" and port.hubid == peer.hubid and port.id != peer.id:
            if port.nic:
                ends.append(f"{nics[port.nic].model} {port.nic}" if port.nic in nics
                            else port.nic)
            elif port.peer:
                ends.append(f"{clients[port.peer].type} {port.peer}")
    hops.append(", ".join(ends) if ends else "(no other port)")
    return hops


def topology_svg(cfg: MachineConfig, path: str) -> None:
    """Draw the topology with networkx and matplotlib (the course extras) into ``path``."""
    try:
        import networkx as nx
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise UsageError(f"--svg needs networkx and matplotlib ({e.name} is missing): "
                         "pip install 'qnetlearn[course]'") from None
    g = nx.Graph()
    colors = {"tap": "#8fd18f", "hubport": "#f0c674", "hub": "#f0a040", "nic": "#81a2be"}
    for nd in cfg.netdevs:
        g.add_node(nd.id, kind=nd.type, label=f"{nd.type}\n{nd.id}")
        if nd.type == "hubport" and nd.hubid is not None:
            hub = f"hub {nd.hubid}"
            g.add_node(hub, kind="hub", label=hub)
            g.add_edge(hub, nd.id)
        if nd.peer:
            g.add_edge(nd.id, nd.peer)
    for n in cfg.nics:
        g.add_node(n.name, kind="nic", label=f"{n.model}\n{n.name}")
        if n.netdev:
            g.add_edge(n.name, n.netdev)
    fig, ax = plt.subplots(figsize=(7, 4))
    pos = nx.spring_layout(g, seed=1)
    nx.draw_networkx(g, pos, ax=ax, labels=nx.get_node_attributes(g, "label"),
                     node_color=[colors.get(g.nodes[v].get("kind"), "#cccccc") for v in g],
                     node_size=2600, font_size=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def cmd_topology(args: argparse.Namespace) -> int:
    cfg = _config(args.cmdline)
    sys.stdout.write(topology_text(cfg))
    if args.svg:
        topology_svg(cfg, args.svg)
        _err(f"wrote {args.svg}")
    return 0


# -- trace --------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    name = getattr(v, "name", None)
    return name if isinstance(name, str) else str(v)


def step_json(s: Any) -> str:
    """One recorded step as a JSON line (kind, name, depth, args, time_ns, context)."""
    return json.dumps({"kind": s.kind, "name": s.name, "depth": s.depth,
                       "args": _jsonable(s.args), "time_ns": s.time_ns,
                       "context": s.context}, sort_keys=False)


def _pick_host(vm: "Machine", netdev: str | None) -> Any:
    if not vm.hosts:
        raise UsageError("this command line has no -netdev tap (or -net tap) for the host "
                         "to ping from")
    if netdev is None:
        return vm.host()
    if netdev not in vm.hosts:
        raise UsageError(f"--netdev {netdev}: no tap netdev with that id (have: "
                         f"{', '.join(vm.hosts)})")
    return vm.host(netdev)


def _ping_report(rtts: Sequence[float | None]) -> tuple[str, bool]:
    got = [r for r in rtts if r is not None]
    text = f"{len(got)}/{len(rtts)} echo replies"
    if got:
        text += f", rtt min/max {min(got):.1f}/{max(got):.1f} virtual us"
    return text, len(got) == len(rtts)


def cmd_trace(args: argparse.Namespace) -> int:
    cfg = _config(args.cmdline)
    changed = _set_tap_host(cfg, "sim", force=True)
    if changed:
        _err(f"trace uses the simulated host end; host=kernel ignored for {', '.join(changed)} "
             "(use `qnetlearn run` for a real TAP)")
    vm = _machine(cfg).boot()
    host = _pick_host(vm, args.netdev)
    if args.warmup:
        host.ping(count=args.warmup)
    frames: list[tuple[int, bytes]] = []
    if args.pcap:
        _tap_captures(vm, lambda nd, d, f: frames.append((vm.clock_ns, f)))
    with vm.record() as rec:
        rtts = host.ping(count=args.ping)
    _untap(vm)
    if args.format == "json":
        out = sys.stdout
        for s in rec.steps:
            out.write(step_json(s) + "\n")
    else:
        sys.stdout.write(rec.to_qemu_trace())
    sys.stdout.flush()
    if args.pcap:
        from .net.dump import write_pcap
        write_pcap(args.pcap, frames)
        _err(f"wrote {len(frames)} frames to {args.pcap}")
    text, ok = _ping_report(rtts)
    _err(text)
    return 0 if ok else 1


# -- live tracing for `run` ---------------------------------------------------------------
class LiveTrace:
    """Prints matching trace events as they happen, in ``to_qemu_trace()``'s form.

    Patterns (fnmatch, e.g. ``virtqueue_*``) match QEMU's trace-event names; a pattern that
    matches no event is tried on the traced functions (``tap_send``, ``kvm_send_msi``),
    printed as ``> name`` with the arguments worth showing.

    Lighter than a Recorder (which keeps every step and state change): it attaches only to
    the trace events whose names match, and keeps only the numbering of ``elem``/``vdev``
    that ``trace/qemu_format.py`` does, so a long run does not grow in memory.
    """

    def __init__(self, patterns: Sequence[str], out: IO[str], flush: bool = False) -> None:
        from .trace.tracepoint import REGISTRY
        self.patterns = [p.strip() for p in patterns if p.strip()]
        self.out = out
        self.flush = flush
        from .trace.qemu_format import QemuLines
        self.lines = QemuLines()
        self.printed = 0
        events = [tp for tp in REGISTRY if tp.kind == "event"]
        calls = [tp for tp in REGISTRY if tp.kind == "call"]
        self.tps: list["Tracepoint"] = []
        for p in self.patterns:      # a pattern names events; failing that, functions
            hits = [tp for tp in events if fnmatch.fnmatchcase(tp.name, p)] or \
                [tp for tp in calls if fnmatch.fnmatchcase(tp.name, p)]
            self.tps += [tp for tp in hits if tp not in self.tps]
        self._attached: list["Tracepoint"] = []
        self._numbering_only = [tp for tp in REGISTRY if tp.kind == "event"
                                and tp.name == "virtqueue_alloc_element"
                                and tp not in self.tps]

    def attach(self) -> "LiveTrace":
        for tp in self.tps:
            tp.attach(self._on_event if tp.kind == "event" else self._on_call)
            self._attached.append(tp)
        if self.tps:      # elements are numbered in the order they are allocated
            for tp in self._numbering_only:
                tp.attach(self._on_alloc)
                self._attached.append(tp)
        return self

    def detach(self) -> None:
        for tp in self._attached:
            tp.detach()
        self._attached.clear()

    def _on_call(self, tp: "Tracepoint", args: tuple, kwargs: dict) -> Any:
        """A traced function (not a QEMU trace event): printed as ``> name shown args``."""
        from .trace import CONTEXT
        from .trace.recorder import THREAD
        ctx = CONTEXT.name
        shown = " ".join(f"{k} {_jsonable(v)}" for k, v in
                         zip(tp.shown_names, tp.shown_args(args, kwargs))) if tp.show else ""
        self._line(f"[{THREAD.get(ctx, ctx)}] > {tp.name} {shown}".rstrip() + "\n")
        return tp.orig(*args, **kwargs)

    def _on_alloc(self, tp: "Tracepoint", args: tuple) -> None:
        self.lines.elems[args[0]] = f"elem{len(self.lines.elems) + 1}"

    def _on_event(self, tp: "Tracepoint", argv: tuple) -> None:
        from .trace import CONTEXT
        line = self.lines.line(tp, CONTEXT.name, dict(zip(tp.argnames, argv)))
        if line is not None:
            self._line(line + "\n")

    def _line(self, text: str) -> None:
        self.out.write(text)
        if self.flush:
            self.out.flush()
        self.printed += 1


# -- run ----------------------------------------------------------------------------------
class _Stopped(BaseException):
    """Raised by the signal handler while the monitor prompt drives the machine."""


class _Stop:
    """SIGINT/SIGTERM ask the run loop to stop; the loop then closes the machine.

    While the ``(qemu)`` prompt runs the machine (``raise_on_signal``), the handler raises
    :class:`_Stopped` instead, which ends the prompt's loop."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.raise_on_signal = False
        self.old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.old[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = signal.Signals(signum).name
        if self.raise_on_signal:
            self.raise_on_signal = False
            raise _Stopped(self.requested)

    def restore(self) -> None:
        for sig, h in self.old.items():
            signal.signal(sig, h)
        self.old.clear()


def _monitor_console(cfg: MachineConfig) -> Callable[..., Any] | None:
    """``-monitor stdio``: qnetlearn.monitor.console.run_monitor_stdio, if it exists."""
    if "stdio" not in [m.split(",")[0] for m in cfg.monitor]:
        return None
    try:
        return importlib.import_module("qnetlearn.monitor.console").run_monitor_stdio
    except (ImportError, AttributeError):
        _err("-monitor stdio: this qnetlearn has no monitor console; running without a "
             "(qemu) prompt")
        return None


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args.cmdline)
    _set_tap_host(cfg, "kernel", force=False)   # like QEMU: a real TAP unless host=sim
    stop = _Stop()
    stop.install()
    vm = None
    pcap: "PcapWriter | None" = None
    live: LiveTrace | None = None
    try:
        vm = _machine(cfg)              # opens the TAPs and runs their scripts
        for name, tap in vm.taps.items():
            kind = "kernel TAP" if tap.opts.get("host") == "kernel" else "simulated TAP"
            hdr = getattr(tap.fd, "vnet_hdr_sz", 0)
            _err(f"netdev {name}: {kind} {tap.ifname}"
                 + (" with virtio_net_hdr (IFF_VNET_HDR)" if hdr else ""))
        if args.pcap:
            from .net.dump import PcapWriter
            pcap = PcapWriter(args.pcap, epoch_s=int(time.time()))
            writer = pcap

            def dump(nd: str, d: str, f: bytes) -> None:
                writer.write(f, vm.clock_ns)     # type: ignore[union-attr]
                writer.flush()                   # readable while the machine runs
            _tap_captures(vm, dump)
        if args.trace:
            live = LiveTrace(args.trace.split(","), sys.stdout, flush=True)
            if not live.tps:
                _err(f"--trace {args.trace}: no trace event matches")
            live.attach()
        vm.boot()
        guest = vm.guest
        if guest is not None:
            _err(f"guest {guest.ip} ({guest.mac or 'no NIC'}) is up; "
                 f"{'Ctrl-C' if sys.stdin.isatty() else 'SIGINT/SIGTERM'} stops it")
        console = _monitor_console(cfg)
        if console is not None:
            # the prompt runs the machine (vm.run(timeout=...)) and its commands between
            # events, until `quit` or the end of its input
            stop.raise_on_signal = stop.requested is None
            try:
                if stop.requested is None:
                    console(vm, sys.stdin, sys.stdout)
                    stop.requested = stop.requested or "quit"
            except _Stopped:
                pass
            finally:
                stop.raise_on_signal = False
        while stop.requested is None:
            n = vm.run(timeout=0.05)
            if pcap is not None:
                pcap.flush()
            sys.stdout.flush()
            if n == 0 and not vm.loop.real_fds:
                time.sleep(0.05)       # nothing real to wait on (host=sim): idle politely
        _err(f"{stop.requested}: shutting down")
        return 0
    finally:
        if live is not None:
            live.detach()
        if vm is not None:
            _untap(vm)
            taps = list(vm.taps.values())
            vm.close()                  # downscripts run, the TAPs disappear
            for tap in taps:
                err = getattr(tap.fd, "downscript_error", None)
                if err:
                    _err(err)
        if pcap is not None:
            pcap.close()
        stop.restore()


# -- costs --------------------------------------------------------------------------------
def counters(vm: "Machine") -> dict[str, int]:
    """Every counter of the machine, prefixed by who counts it (vCPU, APICs, devices, net
    clients)."""
    out: dict[str, int] = {}

    def add(prefix: str, st: Any) -> None:
        for k, v in dict(st or {}).items():
            if isinstance(v, (int, float)):
                key = f"{prefix}: {k}"
                out[key] = out.get(key, 0) + v
    add("cpu", getattr(vm.cpu, "stats", None))
    add("apic", getattr(vm.apic, "stats", None))
    add("ioapic", getattr(vm.ioapic, "stats", None))
    for name, dev in vm.devices.items():
        add(name, getattr(dev, "stats", None))
    for nc in vm.all_clients():
        add(nc.name, nc.stats)
    return out


#: cost rows: (label, counter names tried in order on the vCPU, device counter prefixes)
_COST_ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("MMIO exits", ("exits KVM_EXIT_MMIO", "mmio exits", "mmio accesses"), ()),
    ("PIO exits", ("exits KVM_EXIT_IO", "pio exits", "pio accesses"), ()),
    ("eventfd kicks (ioeventfd writes)", ("ioeventfd kicks", "ioeventfd writes"), ()),
    ("interrupts", ("interrupts",), ("interrupts",)),
    ("bytes copied by devices", (), ("bytes copied",)),
)


def cost_rows(delta: dict[str, int], devices: Sequence[str],
              accel: str = "kvm") -> list[tuple[str, int, str]]:
    """The summary rows: (label, total, which counters it came from).  ``delta`` holds
    every counter the machine has (unchanged ones as 0)."""
    rows = []
    for label, cpu_keys, dev_prefixes in _COST_ROWS:
        if accel != "kvm" and label.endswith(" exits"):     # TCG emulates: no VM exit
            label = label.replace(" exits", " accesses (TCG)")
        total, src = 0, ""
        for k in cpu_keys:
            if f"cpu: {k}" in delta:
                total, src = delta[f"cpu: {k}"], f"cpu: {k}"
                break
        if not src and dev_prefixes:
            keys = [k for k in sorted(delta) if k.split(": ", 1)[0] in devices
                    and any(k.split(": ", 1)[1].startswith(p) for p in dev_prefixes)]
            total = sum(delta[k] for k in keys)
            src = ", ".join(keys)
        rows.append((label, total, src or "(no such counter)"))
    return rows


def cmd_costs(args: argparse.Namespace) -> int:
    cfg = _config(args.cmdline)
    _set_tap_host(cfg, "sim", force=True)
    vm = _machine(cfg).boot()
    host = _pick_host(vm, args.netdev)
    host.ping(count=1)                   # warm up: first-time work is not a per-echo cost
    before = counters(vm)
    rtts = host.ping(count=args.ping)
    after = counters(vm)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()}
    n = max(args.ping, 1)
    out = sys.stdout
    out.write(f"accelerator {vm.accel}, {args.ping} echo request/reply pairs from the host, "
              "counts per echo:\n\n")
    w = 34
    out.write(f"{'cost':<{w}} {'per echo':>9} {'total':>7}  counter\n")
    for label, total, src in cost_rows(delta, list(vm.devices), vm.accel):
        out.write(f"{label:<{w}} {total / n:>9.2f} {total:>7}  {src}\n")
    out.write(f"\nevery counter that changed:\n{'counter':<{w + 16}} {'per echo':>9} "
              f"{'total':>7}\n")
    for k in sorted(k for k, v in delta.items() if v):
        out.write(f"{k:<{w + 16}} {delta[k] / n:>9.2f} {delta[k]:>7}\n")
    text, ok = _ping_report(rtts)
    _err(text)
    return 0 if ok else 1


# -- argument parsing ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Learn QEMU/KVM networking: run "
                                "QEMU's net path on a QEMU command line.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    line_help = 'a QEMU command line, in one quoted argument ("-netdev tap,id=hn0 -device ...")'

    t = sub.add_parser("topology", help="netdevs, hubs, peers and NICs of a command line")
    t.add_argument("cmdline", help=line_help)
    t.add_argument("--svg", metavar="FILE", help="also draw it as SVG (networkx, matplotlib)")
    t.set_defaults(func=cmd_topology)

    r = sub.add_parser("trace", help="record pings from the simulated host, print the trace")
    r.add_argument("cmdline", help=line_help)
    r.add_argument("--ping", type=int, default=1, metavar="N", help="echo requests (1)")
    r.add_argument("--warmup", type=int, default=0, metavar="K",
                   help="unrecorded pings first (0)")
    r.add_argument("--format", choices=("qemu", "json"), default="qemu",
                   help="qemu: rec.to_qemu_trace(); json: every step, one per line")
    r.add_argument("--pcap", metavar="FILE", help="write the frames crossing the TAP")
    r.add_argument("--netdev", metavar="ID", help="which tap netdev pings (the first)")
    r.set_defaults(func=cmd_trace)

    u = sub.add_parser("run", help="run in the foreground on a real TAP until Ctrl-C")
    u.add_argument("cmdline", help=line_help)
    u.add_argument("--trace", metavar="PATTERN",
                   help="print these trace events live, e.g. 'virtqueue_*,msix_*'")
    u.add_argument("--pcap", metavar="FILE", help="write the frames crossing the TAP")
    u.set_defaults(func=cmd_run)

    c = sub.add_parser("costs", help="per-echo exits, kicks, interrupts and copies")
    c.add_argument("cmdline", help=line_help)
    c.add_argument("--ping", type=int, default=10, metavar="N", help="echo requests (10)")
    c.add_argument("--netdev", metavar="ID", help="which tap netdev pings (the first)")
    c.set_defaults(func=cmd_costs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qnetlearn`` command; returns its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:         # --help, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "ping", 1) is not None and getattr(args, "ping", 1) < 0:
        _err("--ping must be >= 0")
        return 2
    from .net.tap_linux import KernelTapError
    try:
        return args.func(args)
    except CmdlineHelp as e:
        print(e.reason)
        return 0
    except CmdlineError as e:
        _err(str(e))
        return 1
    except (KernelTapError, UsageError) as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:        # `qnetlearn trace ... | head`
        try:
            sys.stdout = open("/dev/null", "w")   # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
