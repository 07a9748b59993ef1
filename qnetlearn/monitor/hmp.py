"""The human monitor (HMP): ``(qemu) info network`` and friends, in QEMU 7.2's text formats.

``hmp_command(vm, line)`` runs one command line and returns what QEMU would print.  The
parser follows QEMU's ``monitor/hmp.c`` (``monitor_parse_command``,
``monitor_parse_arguments``: the ``args_type`` letters ``s i l b / - S``, the expression
syntax of integer arguments, the error texts); the commands follow ``net/net.c``
(``hmp_info_network``), ``hw/pci/pci-hmp-cmds.c`` (``info pci``), ``softmmu/memory.c``
(``mtree_info``), ``monitor/hmp-cmds.c`` (``info irq``, ``x``/``xp``'s ``memory_dump``,
``set_link``) and QEMU 7.2's virtio HMP commands.  The code is our own.

Commands QEMU has that qnetlearn does not model answer as an unknown command would.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .qapi import (QMPError, net_clients, qmp_query_kvm, qmp_query_name,
                   qmp_query_pci, qmp_query_status, qmp_query_version, qmp_set_link,
                   qmp_x_query_virtio, qmp_x_query_virtio_queue_element,
                   qmp_x_query_virtio_queue_status, qmp_x_query_virtio_status,
                   qmp_x_query_virtio_vhost_queue_status)

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine
    from ..net.net import NetClientState

DEFAULT_SCRIPT = "/etc/qemu-ifup"
DEFAULT_DOWNSCRIPT = "/etc/qemu-ifdown"
_U64 = (1 << 64) - 1


class HMPMonitor:
    """One HMP monitor: its output buffer, command history and ``x`` defaults.

    ``vm.monitor()`` uses one per machine; each console (stdio, socket, widget) has its own.
    """

    def __init__(self, vm: "Machine") -> None:
        self.vm = vm
        self.out: list[str] = []
        self.history: list[str] = []
        self.default_fmt_format = "x"     # monitor/hmp.c default_fmt_format / _size
        self.default_fmt_size = 4
        self.quit_requested = False

    def printf(self, text: str) -> None:
        self.out.append(text)

    def command(self, line: str) -> str:
        """handle_hmp_command: run ``line``, return what it printed."""
        self.out = []
        self.quit_requested = False
        if line.strip():
            self.history.append(line.rstrip("\r\n"))
        try:
            handle_hmp_command(self, line.rstrip("\r\n"))
        except Exception as e:  # never a traceback at the prompt
            self.printf(f"qnetlearn: internal error running '{line.strip()}': "
                        f"{type(e).__name__}: {e}\n")
        return "".join(self.out)


_MONITORS: "weakref.WeakKeyDictionary[Any, HMPMonitor]" = weakref.WeakKeyDictionary()


def default_monitor(vm: "Machine") -> HMPMonitor:
    mon = _MONITORS.get(vm)
    if mon is None:
        mon = _MONITORS[vm] = HMPMonitor(vm)
    return mon


def hmp_command(vm: "Machine", line: str) -> str:
    """Run one HMP command line on ``vm`` and return its output, as QEMU 7.2 prints it."""
    return default_monitor(vm).command(line)


# ---------------------------------------------------------------------------------------
# The command tables (hmp-commands.hx, hmp-commands-info.hx)
# ---------------------------------------------------------------------------------------
Handler = Callable[[HMPMonitor, dict[str, Any]], None]


@dataclass
class HMPCommand:
    name: str                 # "help|?": names separated by '|'
    args_type: str
    params: str
    help: str
    cmd: Handler | None = None
    sub_table: list["HMPCommand"] | None = field(default=None, repr=False)


def hmp_compare_cmd(name: str, names: str) -> bool:
    return name in names.split("|")


# ---------------------------------------------------------------------------------------
# Argument parsing (monitor/hmp.c)
# ---------------------------------------------------------------------------------------
class _ParseError(Exception):
    """A message already printed; parsing failed."""


def _isspace(c: str) -> bool:
    return c in " \t\n\r\v\f"


class _Cursor:
    def __init__(self, text: str, pos: int = 0) -> None:
        self.s = text
        self.p = pos

    def ch(self, k: int = 0) -> str:
        i = self.p + k
        return self.s[i] if i < len(self.s) else "\0"

    def skip_space(self) -> None:
        while self.p < len(self.s) and _isspace(self.s[self.p]):
            self.p += 1


def get_str(cur: _Cursor) -> str | None:
    """get_str: a word, or a double-quoted string with \\n \\r \\\\ \\' \\" escapes."""
    cur.skip_space()
    if cur.ch() == "\0":
        return None
    out = []
    if cur.ch() == '"':
        cur.p += 1
        while cur.ch() not in ("\0", '"'):
            c = cur.ch()
            if c == "\\":
                cur.p += 1
                c = cur.ch()
                cur.p += 1
                esc = {"n": "\n", "r": "\r", "\\": "\\", "'": "'", '"': '"'}.get(c)
                if esc is None:
                    return None      # QEMU: "unsupported escape code" (on its stdout)
                out.append(esc)
            else:
                out.append(c)
                cur.p += 1
        if cur.ch() != '"':
            return None              # QEMU: "unterminated string"
        cur.p += 1
    else:
        while cur.ch() != "\0" and not _isspace(cur.ch()):
            out.append(cur.ch())
            cur.p += 1
    return "".join(out)


class _ExprError(Exception):
    pass


def _wrap64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v >> 63 else v


class _Expr:
    """get_expr: + - * / % & | ^ ~ ( ) 'c' and C integer literals (strtoull base 0)."""

    def __init__(self, cur: _Cursor) -> None:
        self.cur = cur

    def error(self, msg: str) -> None:
        raise _ExprError(msg)

    def next(self) -> None:
        cur = self.cur
        if cur.ch() != "\0":
            cur.p += 1
            cur.skip_space()

    def unary(self) -> int:
        cur = self.cur
        c = cur.ch()
        if c == "+":
            self.next()
            return self.unary()
        if c == "-":
            self.next()
            return _wrap64(-self.unary())
        if c == "~":
            self.next()
            return _wrap64(~self.unary())
        if c == "(":
            self.next()
            n = self.sum()
            if cur.ch() != ")":
                self.error("')' expected")
            self.next()
            return n
        if c == "'":
            cur.p += 1
            if cur.ch() == "\0":
                self.error("character constant expected")
            n = ord(cur.ch())
            cur.p += 1
            if cur.ch() != "'":
                self.error("missing terminating ' character")
            self.next()
            return n
        if c == "$":
            cur.p += 1
            while cur.ch().isalnum() or cur.ch() in "_.":
                cur.p += 1
            cur.skip_space()
            self.error("unknown register")
        if c == "\0":
            self.error("unexpected end of expression")
        return self.number()

    def number(self) -> int:
        cur = self.cur
        s = cur.s
        i = cur.p
        j = i
        if s[j:j + 2].lower() == "0x" and j + 2 < len(s) and s[j + 2] in "0123456789abcdefABCDEF":
            j += 2
            while j < len(s) and s[j] in "0123456789abcdefABCDEF":
                j += 1
            val = int(s[i + 2:j], 16)
        elif s[j:j + 1] == "0":
            j += 1
            while j < len(s) and s[j] in "01234567":
                j += 1
            val = int(s[i:j], 8)
        else:
            while j < len(s) and s[j].isdigit():
                j += 1
            if j == i:
                self.error(f"invalid char '{cur.ch()}' in expression")
            val = int(s[i:j])
        if val > _U64:
            self.error("number too large")
        cur.p = j
        cur.skip_space()
        return _wrap64(val)

    def prod(self) -> int:
        val = self.unary()
        while self.cur.ch() in ("*", "/", "%"):
            op = self.cur.ch()
            self.next()
            val2 = self.unary()
            if op == "*":
                val = _wrap64(val * val2)
            else:
                if val2 == 0:
                    self.error("division by zero")
                q = abs(val) // abs(val2)
                q = q if (val >= 0) == (val2 >= 0) else -q        # C truncation
                val = _wrap64(q) if op == "/" else _wrap64(val - q * val2)
        return val

    def logic(self) -> int:
        val = self.prod()
        while self.cur.ch() in ("&", "|", "^"):
            op = self.cur.ch()
            self.next()
            val2 = self.prod()
            val = _wrap64(val & val2 if op == "&" else val | val2 if op == "|" else val ^ val2)
        return val

    def sum(self) -> int:
        val = self.logic()
        while self.cur.ch() in ("+", "-"):
            op = self.cur.ch()
            self.next()
            val2 = self.logic()
            val = _wrap64(val + val2 if op == "+" else val - val2)
        return val


def get_expr(mon: HMPMonitor, cur: _Cursor) -> int:
    cur.skip_space()
    try:
        return _Expr(cur).sum()
    except _ExprError as e:
        mon.printf(f"{e}\n")
        raise _ParseError from None


def _key_get_info(typestr: str, i: int) -> tuple[str | None, int]:
    """key_get_info: the next "key:" of an args_type string."""
    if i < len(typestr) and typestr[i] == ",":
        i += 1
    j = typestr.find(":", i)
    if j < 0:
        return None, i
    return typestr[i:j], j + 1


def monitor_parse_arguments(mon: HMPMonitor, cur: _Cursor, cmd: HMPCommand) -> dict[str, Any]:
    """Parse the arguments of ``cmd`` as its args_type says; raise _ParseError on error."""
    ts = cmd.args_type
    i = 0
    args: dict[str, Any] = {}
    while True:
        key, i = _key_get_info(ts, i)
        if key is None:
            break
        c = ts[i]
        i += 1
        opt = i < len(ts) and ts[i] == "?"
        if c == "s":
            cur.skip_space()
            if opt:
                i += 1
                if cur.ch() == "\0":
                    continue
            v = get_str(cur)
            if v is None:
                mon.printf(f"{cmd.name}: string expected\n")
                raise _ParseError
            args[key] = v
        elif c in ("i", "l"):
            cur.skip_space()
            if opt:
                i += 1
                if cur.ch() == "\0":
                    continue
            val = get_expr(mon, cur)
            if c == "i" and (val >> 32) & 0xFFFFFFFF:
                mon.printf(f"'{cmd.name}' has failed: integer is for 32-bit values\n")
                raise _ParseError
            args[key] = val
        elif c == "b":
            cur.skip_space()
            beg = cur.p
            while cur.ch() != "\0" and cur.ch().isprintable() and not _isspace(cur.ch()):
                cur.p += 1
            word = cur.s[beg:cur.p]
            if word not in ("on", "off"):
                mon.printf("Expected 'on' or 'off'\n")
                raise _ParseError
            args[key] = word == "on"
        elif c == "/":
            _parse_fmt(mon, cur, args)
        elif c == "-":
            letter = ts[i]
            i += 1
            tmp = cur.p
            cur.skip_space()
            if cur.ch() == "-":
                cur.p += 1
                if cur.ch() != letter:
                    if "-" + cur.ch() not in ts[i:]:
                        mon.printf(f"{cmd.name}: unsupported option -{cur.ch()}\n")
                        raise _ParseError
                    cur.p = tmp            # another option's letter: leave it for its key
                else:
                    cur.p += 1
                    args[key] = True
            else:
                cur.p = tmp
        elif c == "S":
            cur.skip_space()
            if opt:
                i += 1
                if cur.ch() == "\0":
                    continue
            rest = cur.s[cur.p:]
            if not rest:
                mon.printf(f"{cmd.name}: string expected\n")
                raise _ParseError
            args[key] = rest
            cur.p = len(cur.s)
        else:  # pragma: no cover - our tables use only the letters above
            mon.printf(f"{cmd.name}: unknown type '{c}'\n")
            raise _ParseError
    cur.skip_space()
    if cur.ch() != "\0":
        mon.printf(f"{cmd.name}: extraneous characters at the end of line\n")
        raise _ParseError
    return args


def _parse_fmt(mon: HMPMonitor, cur: _Cursor, args: dict[str, Any]) -> None:
    """The '/' type: /[count][format][size] with QEMU's remembered defaults."""
    cur.skip_space()
    if cur.ch() == "/":
        cur.p += 1
        count = 1
        if cur.ch().isdigit():
            count = 0
            while cur.ch().isdigit():
                count = count * 10 + int(cur.ch())
                cur.p += 1
        size = -1
        fmt = None
        while True:
            c = cur.ch()
            if c in "oduxic" and c != "\0":
                fmt = c
            elif c == "b":
                size = 1
            elif c == "h":
                size = 2
            elif c == "w":
                size = 4
            elif c in ("g", "L"):
                size = 8
            else:
                break
            cur.p += 1
        if cur.ch() != "\0" and not _isspace(cur.ch()):
            mon.printf(f"invalid char in format: '{cur.ch()}'\n")
            raise _ParseError
        if fmt is None:
            fmt = mon.default_fmt_format
        if fmt != "i":
            if size < 0:
                size = mon.default_fmt_size
            mon.default_fmt_size = size
        mon.default_fmt_format = fmt
    else:
        count = 1
        fmt = mon.default_fmt_format
        size = mon.default_fmt_size if fmt != "i" else -1
    args.update(count=count, format=fmt, size=size)


def _parse_command(mon: HMPMonitor, line: str, start: int, pos: int,
                   table: list[HMPCommand]) -> tuple[HMPCommand, int] | None:
    """monitor_parse_command: find the command (and sub-command) named at ``pos``."""
    cur = _Cursor(line, pos)
    cur.skip_space()
    if cur.ch() == "\0":
        return None
    b = cur.p
    while cur.ch() != "\0" and cur.ch() != "/" and not _isspace(cur.ch()):
        cur.p += 1
    name = line[b:cur.p]
    cmd = next((c for c in table if hmp_compare_cmd(name, c.name)), None)
    if cmd is None:
        mon.printf(f"unknown command: '{line[start:cur.p]}'\n")
        return None
    cur.skip_space()
    if cmd.sub_table is not None and cur.ch() != "\0":
        return _parse_command(mon, line, start, cur.p, cmd.sub_table)
    return cmd, cur.p


def handle_hmp_command(mon: HMPMonitor, line: str) -> None:
    found = _parse_command(mon, line, 0, 0, HMP_CMDS)
    if found is None:
        return
    cmd, pos = found
    if cmd.cmd is None:
        mon.printf(f'Command "{line[:pos]}" is not available.\n')
        return
    try:
        args = monitor_parse_arguments(mon, _Cursor(line, pos), cmd)
    except _ParseError:
        mon.printf(f'Try "help {line[:pos].rstrip()}" for more information\n')
        return
    cmd.cmd(mon, args)


def hmp_handle_error(mon: HMPMonitor, err: QMPError) -> None:
    """hmp_handle_error: error_reportf_err(err, "Error: ")."""
    mon.printf(f"Error: {err.desc}\n")


# ---------------------------------------------------------------------------------------
# help, quit
# ---------------------------------------------------------------------------------------
def _help_dump_one(mon: HMPMonitor, cmd: HMPCommand, prefix: list[str]) -> None:
    mon.printf("".join(p + " " for p in prefix) + f"{cmd.name} {cmd.params} -- {cmd.help}\n")


def _help_dump(mon: HMPMonitor, table: list[HMPCommand], args: list[str], k: int) -> None:
    if k >= len(args):
        for cmd in table:
            _help_dump_one(mon, cmd, args[:k])
        return
    for cmd in table:
        if hmp_compare_cmd(args[k], cmd.name):
            if cmd.sub_table is not None:
                _help_dump(mon, cmd.sub_table, args, k + 1)
            else:
                _help_dump_one(mon, cmd, args[:k])
            return
    mon.printf("unknown command: '" + " ".join(args[:k + 1]) + "'\n")


def help_cmd(mon: HMPMonitor, name: str | None) -> None:
    args: list[str] = []
    if name:
        cur = _Cursor(name)
        while True:
            cur.skip_space()
            if cur.ch() == "\0":
                break
            w = get_str(cur)
            if w is None:
                return
            args.append(w)
    _help_dump(mon, HMP_CMDS, args, 0)


def hmp_help(mon: HMPMonitor, args: dict[str, Any]) -> None:
    help_cmd(mon, args.get("name"))


def hmp_info_help(mon: HMPMonitor, args: dict[str, Any]) -> None:
    help_cmd(mon, "info")


def hmp_quit(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """quit: ends the monitor console (qnetlearn does not exit the Python process)."""
    mon.quit_requested = True


# ---------------------------------------------------------------------------------------
# info network, set_link
# ---------------------------------------------------------------------------------------
def net_info_str(vm: "Machine", nc: "NetClientState") -> str:
    """nc->info_str as QEMU fills it: a TAP's ifname/scripts, a NIC's model and MAC."""
    t = nc.info.type
    if t == "tap":
        tap = nc.opaque
        opts = getattr(tap, "opts", {}) or {}
        if "fd" in opts:
            return f"fd={opts['fd']}"
        if "helper" in opts:
            return f"helper={opts['helper']}"
        ifname = getattr(tap, "ifname", "") or opts.get("ifname", "")
        return (f"ifname={ifname},script={opts.get('script', DEFAULT_SCRIPT)},"
                f"downscript={opts.get('downscript', DEFAULT_DOWNSCRIPT)}")
    if t == "nic":
        mac = getattr(nc.opaque, "mac", "") or ""
        return f"model={nc.model},macaddr={mac}"
    return ""


def print_net_client(mon: HMPMonitor, nc: "NetClientState") -> None:
    mon.printf(f"{nc.name}: index={nc.queue_index},type={nc.info.type},"
               f"{net_info_str(mon.vm, nc)}\n")


def _hub_id_for_client(nc: "NetClientState") -> int | None:
    """net_hub_id_for_client: a hub port, or a client whose peer is one."""
    for c in (nc, nc.peer):
        if c is not None and c.info.type == "hubport":
            return c.opaque.hub.id
    return None


def hmp_info_network(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """hmp_info_network: hubs first (net_hub_info), then NICs with their backends."""
    vm = mon.vm
    for hub in reversed(vm.hubs.hubs):             # QEMU inserts hubs at the list head
        mon.printf(f"hub {hub.id}\n")
        for port in hub.ports:                     # ports too: newest first
            mon.printf(f" \\ {port.nc.name}")
            if port.nc.peer is not None:
                mon.printf(": ")
                print_net_client(mon, port.nc.peer)
            else:
                mon.printf("\n")
    for nc in net_clients(vm):
        if _hub_id_for_client(nc) is not None:
            continue
        peer = nc.peer
        is_nic = nc.info.type == "nic"
        if peer is None or is_nic:
            print_net_client(mon, nc)
        if peer is not None and is_nic:
            mon.printf(" \\ ")
            print_net_client(mon, peer)


def hmp_set_link(mon: HMPMonitor, args: dict[str, Any]) -> None:
    try:
        qmp_set_link(mon.vm, args["name"], args["up"])
    except QMPError as e:
        hmp_handle_error(mon, e)


# ---------------------------------------------------------------------------------------
# info pci
# ---------------------------------------------------------------------------------------
def hmp_info_pci(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """hmp_info_pci in QEMU 7.2's layout (BAR lines still end with a period in 7.2)."""
    for bus in qmp_query_pci(mon.vm):
        for dev in bus["devices"]:
            mon.printf(f"  Bus {dev['bus']:2d}, device {dev['slot']:3d}, function "
                       f"{dev['function']}:\n    ")
            ci = dev["class_info"]
            mon.printf(ci["desc"] if "desc" in ci else f"Class {ci['class']:04d}")
            ids = dev["id"]
            mon.printf(f": PCI device {ids['vendor']:04x}:{ids['device']:04x}\n")
            if "subsystem" in ids and "subsystem-vendor" in ids:
                mon.printf(f"      PCI subsystem {ids['subsystem-vendor']:04x}:"
                           f"{ids['subsystem']:04x}\n")
            if "irq" in dev:
                mon.printf(f"      IRQ {dev['irq']}, pin {chr(ord('A') + dev['irq_pin'] - 1)}\n")
            for r in dev["regions"]:
                addr, size = r["address"], r["size"]
                end = (addr + size - 1) & _U64
                mon.printf(f"      BAR{r['bar']}: ")
                if r["type"] == "io":
                    mon.printf(f"I/O at 0x{addr:04x} [0x{end:04x}].\n")
                else:
                    mon.printf(f"{64 if r['mem_type_64'] else 32} bit"
                               f"{' prefetchable' if r['prefetch'] else ''} memory at "
                               f"0x{addr:08x} [0x{end:08x}].\n")
            mon.printf(f'      id "{dev["qdev_id"]}"\n')


# ---------------------------------------------------------------------------------------
# info mtree
# ---------------------------------------------------------------------------------------
#: i440FX: RAM below 4 GiB ends at 3 GiB when the machine has 3.5 GiB or more
PC_LOWMEM_SPLIT = 0xE0000000
PC_LOWMEM = 0xC0000000
APIC_PRIORITY = 4096       # memory_region_add_subregion_overlap(..., 0x1000) in apic_common


def _mtree_line(indent: int, start: int, size: int, prio: int, kind: str, name: str,
                enabled: bool = True, extra: str = "") -> str:
    end = (start + size - 1) & _U64
    return (f"{'  ' * indent}{start:016x}-{end:016x} (prio {prio}, {kind}): {name}"
            f"{'' if enabled else ' [disabled]'}{extra}\n")


def _owner_str(vm: "Machine", mr: Any) -> str:
    """mtree_print_mr_owner (info mtree -o)."""
    from ..hw.pci.pci import PCIDevice
    from .qapi import device_path
    owner = getattr(mr, "owner", None)
    if owner is None:
        return " orphan"
    if isinstance(owner, PCIDevice):
        if owner.id:
            return f" owner:{{dev id={owner.id}}}"
        if owner in vm.nics:
            return f" owner:{{dev path={device_path(vm, owner)}}}"
        return f" owner:{{dev type={owner.name}}}"
    return f" owner:{{dev type={type(owner).__name__}}}"


def _mtree_region(mon: HMPMonitor, mr: Any, base: int, indent: int, prio: int,
                  flags: dict[str, Any]) -> None:
    from ..system.memory import ContainerRegion
    if not mr.enabled and not flags.get("disabled"):
        return
    extra = _owner_str(mon.vm, mr) if flags.get("owner") else ""
    mon.printf(_mtree_line(indent, base, mr.size, prio, "i/o", mr.name, mr.enabled, extra))
    if isinstance(mr, ContainerRegion):
        subs = sorted(mr.subregions, key=lambda s: (s[0], -s[1].priority))
        for off, sub in subs:
            _mtree_region(mon, sub, base + off, indent + 1, sub.priority, flags)


def hmp_info_mtree(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """mtree_info: the memory address space as a tree (the system and pci containers,
    the RAM alias, each BAR with its subregions, the I/O APIC and the APIC/MSI window),
    then the aliased RAM region.  Not shown: the I/O address space (no port I/O is
    modelled) and the per-device bus-master address spaces."""
    vm = mon.vm
    if args.get("flatview"):
        mon.printf("qnetlearn: the flat view (-f) is not modelled; here is the tree\n")
    owner = bool(args.get("owner"))
    flags = {"disabled": args.get("disabled"), "owner": owner}
    ram = vm.ram.size
    below = ram if ram < PC_LOWMEM_SPLIT else PC_LOWMEM
    bar_regions = {id(bar.region): dev for dev in vm.pci.devices.values()
                   for bar in dev.bars.values()}
    apic_region = getattr(getattr(vm, "apic", None), "region", None)
    children: list[tuple[int, int, Callable[[], None]]] = []

    def ram_alias(name: str, start: int, off: int, size: int) -> Callable[[], None]:
        extra = " orphan" if owner else ""
        return lambda: mon.printf(
            f"{'  ' * 2}{start:016x}-{start + size - 1:016x} (prio 0, ram): alias {name} "
            f"@pc.ram {off:016x}-{off + size - 1:016x}{extra}\n")

    children.append((0, 0, ram_alias("ram-below-4g", 0, 0, below)))
    if ram > below:
        children.append((1 << 32, 0, ram_alias("ram-above-4g", 1 << 32, below, ram - below)))

    bars = [r for r in vm.memory.regions if id(r) in bar_regions and r.base is not None]

    def pci() -> None:
        mon.printf(_mtree_line(2, 0, 1 << 64, -1, "i/o", "pci",
                               extra=" orphan" if owner else ""))
        for r in sorted(bars, key=lambda r: r.base):
            _mtree_region(mon, r, r.base, 3, 1, flags)

    children.append((0, -1, pci))
    for r in vm.memory.regions:
        if id(r) in bar_regions or r.base is None:
            continue
        prio = APIC_PRIORITY if r is apic_region else r.priority
        children.append((r.base, prio,
                         lambda r=r, prio=prio: _mtree_region(mon, r, r.base, 2, prio, flags)))
    mon.printf("address-space: cpu-memory-0\naddress-space: memory\n")
    mon.printf(_mtree_line(1, 0, 1 << 64, 0, "i/o", "system", extra=" orphan" if owner else ""))
    for _addr, _neg_prio, show in sorted(children, key=lambda c: (c[0], -c[1])):
        show()
    mon.printf("\n")
    mon.printf(f"memory-region: pc.ram\n{_mtree_line(1, 0, ram, 0, 'ram', 'pc.ram')}\n")


# ---------------------------------------------------------------------------------------
# info irq
# ---------------------------------------------------------------------------------------
def hmp_info_irq(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """hmp_info_irq: the I/O APIC's per-pin counts of rising edges (ioapic_stat_update_irq);
    then, qnetlearn only, the MSI messages the local APIC received, by vector."""
    vm = mon.vm
    ioapic = getattr(vm, "ioapic", None)
    if ioapic is not None:
        name = "kvm-ioapic" if getattr(ioapic, "in_kernel", None) is not None else "ioapic"
        mon.printf(f"IRQ statistics for {name}:\n")
        for pin in range(24):
            n = ioapic.stats.get(f"pin {pin} level 1", 0)
            if n > 0:
                mon.printf(f"{pin:2d}: {n}\n")
    apic = getattr(vm, "apic", None)
    delivered = getattr(apic, "delivered", None)
    if delivered is not None:
        counts: dict[int, int] = {}
        for m in delivered:
            counts[m.vector] = counts.get(m.vector, 0) + 1
        mon.printf("IRQ statistics for apic-msi (qnetlearn only: messages that reached the "
                   "local APIC window, by vector):\n")
        for v in sorted(counts):
            mon.printf(f"{v:2d}: {counts[v]}\n")


# ---------------------------------------------------------------------------------------
# info virtio*
# ---------------------------------------------------------------------------------------
def hmp_virtio_query(mon: HMPMonitor, args: dict[str, Any]) -> None:
    try:
        lst = qmp_x_query_virtio(mon.vm)
    except QMPError as e:
        hmp_handle_error(mon, e)
        return
    for node in lst:
        mon.printf(f"{node['path']} [{node['name']}]\n")


def _dump_list(mon: HMPMonitor, items: list[str]) -> None:
    mon.printf(",\n".join(f"\t{s}" for s in items) + "\n")


def _dump_features(mon: HMPMonitor, f: dict[str, Any]) -> None:
    _dump_list(mon, f["transports"])
    if f.get("dev-features"):
        _dump_list(mon, f["dev-features"])
    if "unknown-dev-features" in f:
        mon.printf(f"  unknown-features(0x{f['unknown-dev-features']:016x})\n")


def hmp_virtio_status(mon: HMPMonitor, args: dict[str, Any]) -> None:
    path = args["path"]
    try:
        s = qmp_x_query_virtio_status(mon.vm, path)
    except QMPError as e:
        hmp_handle_error(mon, e)
        return
    tf = lambda b: "true" if b else "false"  # noqa: E731
    p = mon.printf
    p(f"{path}:\n")
    p(f"  device_name:             {s['name']} {'(vhost)' if 'vhost-dev' in s else ''}\n")
    p(f"  device_id:               {s['device-id']}\n")
    p(f"  vhost_started:           {tf(s['vhost-started'])}\n")
    p(f"  bus_name:                {s['bus-name']}\n")
    p(f"  broken:                  {tf(s['broken'])}\n")
    p(f"  disabled:                {tf(s['disabled'])}\n")
    p(f"  disable_legacy_check:    {tf(s['disable-legacy-check'])}\n")
    p(f"  started:                 {tf(s['started'])}\n")
    p(f"  use_started:             {tf(s['use-started'])}\n")
    p(f"  start_on_kick:           {tf(s['start-on-kick'])}\n")
    p(f"  use_guest_notifier_mask: {tf(s['use-guest-notifier-mask'])}\n")
    p(f"  vm_running:              {tf(s['vm-running'])}\n")
    p(f"  num_vqs:                 {s['num-vqs']}\n")
    p(f"  queue_sel:               {s['queue-sel']}\n")
    p(f"  isr:                     {s['isr']}\n")
    p(f"  endianness:              {s['device-endian']}\n")
    p("  status:\n")
    _dump_list(mon, s["status"]["statuses"])
    if "unknown-statuses" in s["status"]:
        p(f"  unknown-statuses(0x{s['status']['unknown-statuses']:016x})\n")
    p("  Guest features:\n")
    _dump_features(mon, s["guest-features"])
    p("  Host features:\n")
    _dump_features(mon, s["host-features"])
    p("  Backend features:\n")
    _dump_features(mon, s["backend-features"])


def hmp_virtio_queue_status(mon: HMPMonitor, args: dict[str, Any]) -> None:
    path = args["path"]
    try:
        s = qmp_x_query_virtio_queue_status(mon.vm, path, args["queue"] & 0xFFFF)
    except QMPError as e:
        hmp_handle_error(mon, e)
        return
    p = mon.printf
    p(f"{path}:\n")
    p(f"  device_name:          {s['name']}\n")
    p(f"  queue_index:          {s['queue-index']}\n")
    p(f"  inuse:                {s['inuse']}\n")
    p(f"  used_idx:             {s['used-idx']}\n")
    p(f"  signalled_used:       {s['signalled-used']}\n")
    p(f"  signalled_used_valid: {'true' if s['signalled-used-valid'] else 'false'}\n")
    if "last-avail-idx" in s:
        p(f"  last_avail_idx:       {s['last-avail-idx']}\n")
    if "shadow-avail-idx" in s:
        p(f"  shadow_avail_idx:     {s['shadow-avail-idx']}\n")
    p("  VRing:\n")
    p(f"    num:          {s['vring-num']}\n")
    p(f"    num_default:  {s['vring-num-default']}\n")
    p(f"    align:        {s['vring-align']}\n")
    p(f"    desc:         0x{s['vring-desc']:016x}\n")
    p(f"    avail:        0x{s['vring-avail']:016x}\n")
    p(f"    used:         0x{s['vring-used']:016x}\n")


def hmp_vhost_queue_status(mon: HMPMonitor, args: dict[str, Any]) -> None:
    try:
        qmp_x_query_virtio_vhost_queue_status(mon.vm, args["path"], args["queue"] & 0xFFFF)
    except QMPError as e:
        hmp_handle_error(mon, e)


def hmp_virtio_queue_element(mon: HMPMonitor, args: dict[str, Any]) -> None:
    path = args["path"]
    index = args.get("index")
    try:
        e = qmp_x_query_virtio_queue_element(mon.vm, path, args["queue"] & 0xFFFF,
                                             None if index is None else index & 0xFFFF)
    except QMPError as err:
        hmp_handle_error(mon, err)
        return
    p = mon.printf
    p(f"{path}:\n")
    p(f"  device_name: {e['name']}\n")
    p(f"  index:   {e['index']}\n")
    p("  desc:\n    descs:\n")
    lines = []
    for d in e["descs"]:
        s = f"        addr 0x{d['addr']:x} len {d['len']}"
        if d["flags"]:
            s += " (" + ", ".join(d["flags"]) + ")"
        lines.append(s)
    p(",\n".join(lines) + "\n")
    p("  avail:\n")
    p(f"    flags: {e['avail']['flags']}\n")
    p(f"    idx:   {e['avail']['idx']}\n")
    p(f"    ring:  {e['avail']['ring']}\n")
    p("  used:\n")
    p(f"    flags: {e['used']['flags']}\n")
    p(f"    idx:   {e['used']['idx']}\n")


# ---------------------------------------------------------------------------------------
# info e1000 (qnetlearn only)
# ---------------------------------------------------------------------------------------
_E1000_REGS = (("CTRL", "ctrl"), ("STATUS", "status"), ("RCTL", "rctl"), ("TCTL", "tctl"),
               ("ICR", "icr"), ("IMS", "ims"), ("ITR", "itr"), ("RDTR", "rdtr"),
               ("RADV", "radv"), ("TADV", "tadv"))


def hmp_info_e1000(mon: HMPMonitor, args: dict[str, Any]) -> None:
    """qnetlearn's register dump of each e1000 (read without side effects: ICR is not
    cleared, no statistics register is reset)."""
    vm = mon.vm
    name = args.get("name")
    devs = [d for d in vm.nics if getattr(d, "name", "") == "e1000"]
    if name is not None:
        devs = [d for d in devs if name in (d.id, getattr(d.nc, "name", None))]
        if not devs:
            mon.printf(f"Error: Device '{name}' not found\n")
            return
    if not devs:
        mon.printf("No e1000 devices\n")
        return
    for d in devs:
        g = lambda a: getattr(d, a, 0) or 0  # noqa: E731
        link = "down" if d.nc.link_down else "up"
        mon.printf(f"{d.nc.name}: e1000 (82540EM) at 00:{d.devfn >> 3:02x}.{d.devfn & 7}, "
                   f"macaddr={d.mac}, link {link}, INTx level {d.irq_level}\n")
        regs = [f"{n:<6} 0x{g(a):08x}" for n, a in _E1000_REGS]
        for k in range(0, len(regs), 4):
            mon.printf("  " + "  ".join(regs[k:k + 4]) + "\n")
        for ring, pre in (("RX", "rd"), ("TX", "td")):
            base = (g(pre + "bah") << 32) | g(pre + "bal")
            ln = g(pre + "len")
            mon.printf(f"  {ring} ring: base 0x{base:x} len {ln} ({ln // 16} descriptors) "
                       f"head {g(pre + 'h')} tail {g(pre + 't')}\n")
        drops = {k: v for k, v in d.stats.items() if k.startswith("drop")}
        if drops:
            mon.printf("  drops: " + ", ".join(f"{k[6:]}: {v}" for k, v in sorted(drops.items()))
                       + "\n")


# ---------------------------------------------------------------------------------------
# Small info commands
# ---------------------------------------------------------------------------------------
def hmp_info_status(mon: HMPMonitor, args: dict[str, Any]) -> None:
    s = qmp_query_status(mon.vm)
    mon.printf(f"VM status: {'running' if s['running'] else 'paused'}\n")


def hmp_info_version(mon: HMPMonitor, args: dict[str, Any]) -> None:
    v = qmp_query_version(mon.vm)
    q = v["qemu"]
    mon.printf(f"{q['major']}.{q['minor']}.{q['micro']}{v['package']}\n")


def hmp_info_name(mon: HMPMonitor, args: dict[str, Any]) -> None:
    n = qmp_query_name(mon.vm)
    if "name" in n:
        mon.printf(f"{n['name']}\n")


def hmp_info_kvm(mon: HMPMonitor, args: dict[str, Any]) -> None:
    k = qmp_query_kvm(mon.vm)
    mon.printf("kvm support: " + ("enabled" if k["enabled"] else "disabled") + "\n")


def hmp_info_history(mon: HMPMonitor, args: dict[str, Any]) -> None:
    for i, line in enumerate(mon.history):
        mon.printf(f"{i}: '{line}'\n")


# ---------------------------------------------------------------------------------------
# x, xp (memory_dump)
# ---------------------------------------------------------------------------------------
def _printc(c: int) -> str:
    """monitor_printc."""
    ch = chr(c)
    if ch == "'":
        s = "\\'"
    elif ch == "\\":
        s = "\\\\"
    elif ch == "\n":
        s = "\\n"
    elif ch == "\r":
        s = "\\r"
    elif 32 <= c <= 126:
        s = ch
    else:
        s = f"\\x{c:02x}"
    return f"'{s}'"


def _read_phys(vm: "Machine", addr: int, n: int, wsize: int) -> bytes | None:
    """address_space_read: RAM directly; MMIO through the region (with its side effects,
    as in QEMU); None where nothing is mapped (MEMTX_DECODE_ERROR)."""
    ram = vm.ram
    if 0 <= addr and addr + n <= ram.size:
        return ram.read(addr, n)
    out = bytearray()
    step = max(1, min(wsize, 8))
    a = addr
    while a < addr + n:
        if 0 <= a < ram.size:
            out += ram.read(a, 1)
            a += 1
            continue
        hit = vm.memory.lookup(a & _U64)
        if hit is None:
            return None
        mr, off = hit
        k = min(step, addr + n - a)
        out += (mr.dispatch_read(off, k) & ((1 << (8 * k)) - 1)).to_bytes(k, "little")
        a += k
    return bytes(out)


#: qnetlearn's limit on one x/xp dump, so that a typo cannot hang a notebook
MAX_DUMP = 1 << 16


def memory_dump(mon: HMPMonitor, count: int, fmt: str, wsize: int, addr: int,
                is_physical: bool) -> None:
    if fmt == "i":
        mon.printf("qnetlearn: format 'i' (disassembly) is not modelled: the simulated "
                   "guest runs Python, not x86 code\n")
        return
    length = wsize * count
    truncated = length > MAX_DUMP
    if truncated:
        length = MAX_DUMP
    line_size = 8 if wsize == 1 else 16
    if fmt == "o":
        max_digits = (wsize * 8 + 2) // 3
    elif fmt in ("u", "d"):
        max_digits = (wsize * 8 * 10 + 32) // 33
    else:
        max_digits = (wsize * 8) // 4
    if fmt == "c":
        wsize = 1
    addr &= _U64
    while length > 0:
        mon.printf(f"{addr:016x}:")
        n = min(length, line_size)
        buf = _read_phys(mon.vm, addr, n, wsize)
        if buf is None:
            mon.printf(" Cannot access memory\n")
            break
        i = 0
        while i < n:
            v = int.from_bytes(buf[i:i + wsize], "little")
            if fmt == "o":
                s = ("0" + format(v, "o")) if v else "0"
                mon.printf(" " + s.rjust(max_digits))
            elif fmt == "x":
                mon.printf(f" 0x{v:0{max_digits}x}")
            elif fmt == "u":
                mon.printf(" " + str(v).rjust(max_digits))
            elif fmt == "d":
                sv = v - (1 << 64) if wsize == 8 and v >> 63 else v
                mon.printf(" " + str(sv).rjust(max_digits))
            elif fmt == "c":
                mon.printf(" " + _printc(v))
            i += wsize
        mon.printf("\n")
        addr = (addr + n) & _U64
        length -= n
    if truncated:
        mon.printf(f"qnetlearn: dump stopped after {MAX_DUMP} bytes (QEMU would go on)\n")


def hmp_memory_dump(mon: HMPMonitor, args: dict[str, Any]) -> None:
    memory_dump(mon, args["count"], args["format"], args["size"], args["addr"], False)


def hmp_physical_memory_dump(mon: HMPMonitor, args: dict[str, Any]) -> None:
    memory_dump(mon, args["count"], args["format"], args["size"], args["addr"], True)


# ---------------------------------------------------------------------------------------
# The tables, sorted by name as QEMU sorts them
# ---------------------------------------------------------------------------------------
HMP_INFO_CMDS: list[HMPCommand] = sorted([
    HMPCommand("e1000", "name:s?", "[name]",
               "show e1000 registers and rings (qnetlearn only, not a QEMU command)",
               hmp_info_e1000),
    HMPCommand("history", "", "", "show the command line history", hmp_info_history),
    HMPCommand("irq", "", "", "show the interrupts statistics (if available)", hmp_info_irq),
    HMPCommand("kvm", "", "", "show KVM information", hmp_info_kvm),
    HMPCommand("mtree", "flatview:-f,dispatch_tree:-d,owner:-o,disabled:-D",
               "[-f][-d][-o][-D]",
               "show memory tree (-f: dump flat view for address spaces;-d: dump dispatch "
               "tree, valid with -f only);-o: dump region owners/parents;-D: dump disabled "
               "regions", hmp_info_mtree),
    HMPCommand("name", "", "", "show the current VM name", hmp_info_name),
    HMPCommand("network", "", "", "show the network state", hmp_info_network),
    HMPCommand("pci", "", "", "show PCI info", hmp_info_pci),
    HMPCommand("status", "", "", "show the current VM status (running|paused)",
               hmp_info_status),
    HMPCommand("version", "", "", "show the version of QEMU", hmp_info_version),
    HMPCommand("virtio", "", "", "List all available virtio devices", hmp_virtio_query),
    HMPCommand("virtio-status", "path:s", "path", "Display status of a given virtio device",
               hmp_virtio_status),
    HMPCommand("virtio-queue-status", "path:s,queue:i", "path queue",
               "Display status of a given virtio queue", hmp_virtio_queue_status),
    HMPCommand("virtio-vhost-queue-status", "path:s,queue:i", "path queue",
               "Display status of a given vhost queue", hmp_vhost_queue_status),
    HMPCommand("virtio-queue-element", "path:s,queue:i,index:i?", "path queue [index]",
               "Display element of a given virtio queue", hmp_virtio_queue_element),
], key=lambda c: c.name)

HMP_CMDS: list[HMPCommand] = sorted([
    HMPCommand("help|?", "name:S?", "[cmd]", "show the help", hmp_help),
    HMPCommand("info", "item:s?", "[subcommand]",
               "show various information about the system state", hmp_info_help,
               HMP_INFO_CMDS),
    HMPCommand("quit|q", "", "", "quit the emulator (qnetlearn: ends this monitor console)",
               hmp_quit),
    HMPCommand("set_link", "name:s,up:b", "name on|off",
               "change the link status of a network adapter", hmp_set_link),
    HMPCommand("x", "fmt:/,addr:l", "/fmt addr",
               "virtual memory dump starting at 'addr' (qnetlearn: no paging is modelled, "
               "so 'addr' is read as a physical address, like xp)", hmp_memory_dump),
    HMPCommand("xp", "fmt:/,addr:l", "/fmt addr", "physical memory dump starting at 'addr'",
               hmp_physical_memory_dump),
], key=lambda c: c.name)


def command_names() -> list[str]:
    """Every command line prefix, for completion: 'info network', 'set_link', ..."""
    out: list[str] = []
    for c in HMP_CMDS:
        for n in c.name.split("|"):
            out.append(n)
            for s in c.sub_table or ():
                out.append(f"{n} {s.name}")
    return out


__all__ = ["hmp_command", "HMPMonitor", "default_monitor", "HMP_CMDS", "HMP_INFO_CMDS",
           "command_names"]
