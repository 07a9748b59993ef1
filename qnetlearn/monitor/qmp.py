"""QMP, the QEMU Machine Protocol, for ``-qmp unix:PATH,server=on,wait=off`` and
``-qmp tcp:127.0.0.1:PORT,server=on,wait=off`` (QEMU's monitor/qmp.c, qapi/qmp-dispatch.c,
qobject/json-streamer.c).

A client connects and gets QEMU 7.2's greeting, negotiates with ``qmp_capabilities``, then
executes commands; every response is one JSON object on a line ending in CRLF, as QEMU
writes it.  Requests are split from the byte stream the way QEMU's JSON streamer does
(balanced braces, not lines), so clients that send several requests at once, or one
request in pieces, work.  A malformed request gets QMP's error and the session and the
machine carry on.  Commands run inside the machine's main loop (see ``chardev.py``), so
their view of the machine is always consistent.

Commands: qmp_capabilities, query-status, query-name, query-version, query-kvm,
query-commands, query-pci, human-monitor-command, set_link, x-query-virtio,
x-query-virtio-status, x-query-virtio-queue-status, x-query-virtio-vhost-queue-status,
x-query-virtio-queue-element.  Events: none are emitted (NIC_RX_FILTER_CHANGED would need
the virtio-net control queue, which is not modelled).
"""
from __future__ import annotations

import codecs
import json
import re
import socket
from typing import TYPE_CHECKING, Any, Callable

from .chardev import SocketServer, SocketSession, parse_chardev
from .qapi import (QEMU_VERSION, QMPError, qmp_query_kvm, qmp_query_name, qmp_query_pci,
                   qmp_query_status, qmp_query_version, qmp_set_link, qmp_x_query_virtio,
                   qmp_x_query_virtio_queue_element, qmp_x_query_virtio_queue_status,
                   qmp_x_query_virtio_status, qmp_x_query_virtio_vhost_queue_status)

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

MAX_TOKEN_SIZE = 64 << 20        # json-lexer.c / json-streamer.c limits
MAX_NESTING = 1 << 10


def qmp_greeting() -> dict[str, Any]:
    """The greeting QEMU 7.2 sends on connect (monitor/qmp.c qmp_greeting)."""
    return {"QMP": {"version": {"qemu": dict(QEMU_VERSION["qemu"]),
                                "package": QEMU_VERSION["package"]},
                    "capabilities": ["oob"]}}


# ---------------------------------------------------------------------------------------
# The JSON streamer: bytes in, whole JSON values (or errors) out
# ---------------------------------------------------------------------------------------
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
_DELIMS = set('{}[],:"\'') | set(" \t\r\n")


class JSONStreamer:
    """json_message_process_token in spirit: top-level values split by brace balance.

    QEMU's JSON also accepts single-quoted strings; they are rewritten to JSON here."""

    def __init__(self) -> None:
        self.buf = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> list[tuple[Any, str | None]]:
        """Add bytes; returns the complete values, as (value, None) or (None, error)."""
        self.buf += self._decoder.decode(data)
        out: list[tuple[Any, str | None]] = []
        while True:
            item = self._next()
            if item is None:
                break
            out.append(item)
        return out

    def _next(self) -> tuple[Any, str | None] | None:
        s = self.buf
        i = 0
        while i < len(s) and s[i] in " \t\r\n":
            i += 1
        if i == len(s):
            self.buf = ""
            return None
        c = s[i]
        if c in "{[":
            return self._structure(i)
        if c in "}]":
            self.buf = s[i + 1:]
            return None, "JSON parse error, expecting value"
        if c in "\"'":
            end = self._string_end(s, i)
            if end is None:
                self.buf = s[i:]
                return None
            self.buf = s[end:]
            return self._parse(s[i:end])
        if c in ",:":
            self.buf = s[i + 1:]
            return None, "JSON parse error, expecting value"
        j = i
        while j < len(s) and s[j] not in _DELIMS:
            j += 1
        if j == len(s):           # the token may go on in the next read
            self.buf = s[i:]
            if len(self.buf) > MAX_TOKEN_SIZE:
                self.buf = ""
                return None, "JSON token size limit exceeded"
            return None
        tok = s[i:j]
        self.buf = s[j:]
        if _NUMBER.match(tok) or tok in ("true", "false", "null"):
            return json.loads(tok), None
        if _KEYWORD.match(tok):
            return None, f"JSON parse error, invalid keyword '{tok}'"
        return None, f"JSON parse error, stray '{tok[0]}'"

    @staticmethod
    def _string_end(s: str, i: int) -> int | None:
        q = s[i]
        j = i + 1
        while j < len(s):
            if s[j] == "\\":
                j += 2
                continue
            if s[j] == q:
                return j + 1
            j += 1
        return None

    def _structure(self, i: int) -> tuple[Any, str | None] | None:
        s = self.buf
        depth = 0
        j = i
        out: list[str] = []
        while j < len(s):
            c = s[j]
            if c in "\"'":
                end = self._string_end(s, j)
                if end is None:
                    break
                out.append(_requote(s[j:end]) if c == "'" else s[j:end])
                j = end
                continue
            if c in "{[":
                depth += 1
                if depth > MAX_NESTING:
                    self.buf = ""
                    return None, "JSON parse error, nesting depth limit exceeded"
            elif c in "}]":
                depth -= 1
            out.append(c)
            j += 1
            if depth == 0:
                self.buf = s[j:]
                return self._parse("".join(out))
        if len(s) - i > MAX_TOKEN_SIZE:
            self.buf = ""
            return None, "JSON token size limit exceeded"
        self.buf = s[i:]
        return None

    @staticmethod
    def _parse(text: str) -> tuple[Any, str | None]:
        try:
            return json.loads(text), None
        except json.JSONDecodeError as e:
            m = _KEYWORD.match(text, e.pos) if e.msg == "Expecting value" else None
            if m and m.group(0) not in ("true", "false", "null"):
                return None, f"JSON parse error, invalid keyword '{m.group(0)}'"
            return None, f"JSON parse error, {e.msg[0].lower()}{e.msg[1:]}"


def _requote(sq: str) -> str:
    """A single-quoted QEMU JSON string as a double-quoted JSON one."""
    body = sq[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("'" if nxt == "'" else "\\" + nxt)
            i += 2
            continue
        out.append('\\"' if c == '"' else c)
        i += 1
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------------------------
# Commands and argument checking (the QAPI input visitor's messages)
# ---------------------------------------------------------------------------------------
#: argument kinds: "str", "bool", "int", "uint16", "uint32", "strlist"
ArgSpec = dict[str, tuple[str, bool]]       # name -> (kind, required)
_INT_RANGES = {"uint16": (0, 0xFFFF, "uint16_t"), "uint32": (0, 0xFFFFFFFF, "uint32_t"),
               "int": (-(1 << 63), (1 << 63) - 1, "int64_t")}
_KIND_NAMES = {"str": "string", "bool": "boolean", "int": "integer", "uint16": "integer",
               "uint32": "integer", "strlist": "array"}


def _check_args(spec: ArgSpec, args: dict[str, Any]) -> dict[str, Any]:
    for name, (kind, required) in spec.items():
        if name not in args:
            if required:
                raise QMPError(f"Parameter '{name}' is missing")
            continue
        v = args[name]
        if kind == "str":
            ok = isinstance(v, str)
        elif kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "strlist":
            ok = isinstance(v, list)
            if ok:
                for k, item in enumerate(v):
                    if not isinstance(item, str):
                        raise QMPError(f"Invalid parameter type for '{name}[{k}]', "
                                       "expected: string")
        else:
            ok = isinstance(v, int) and not isinstance(v, bool)
            if ok:
                lo, hi, cname = _INT_RANGES[kind]
                if not lo <= v <= hi:
                    raise QMPError(f"Parameter '{name}' expects {cname}")
        if not ok:
            raise QMPError(f"Invalid parameter type for '{name}', expected: "
                           f"{_KIND_NAMES[kind]}")
    for name in args:
        if name not in spec:
            raise QMPError(f"Parameter '{name}' is unexpected")
    return args


class QMPCommand:
    def __init__(self, name: str, fn: Callable[..., Any], args: ArgSpec | None = None,
                 oob: bool = False) -> None:
        self.name = name
        self.fn = fn
        self.args = args or {}
        self.oob = oob


def _human_monitor_command(s: "QMPSession", a: dict[str, Any]) -> str:
    from .hmp import hmp_command
    return hmp_command(s.vm, a["command-line"])


def _qmp_capabilities(s: "QMPSession", a: dict[str, Any]) -> dict[str, Any]:
    if s.negotiated:
        raise QMPError("Capabilities negotiation is already complete, command ignored",
                       "CommandNotFound")
    enable = a.get("enable", [])
    for k, cap in enumerate(enable):
        if cap != "oob":
            raise QMPError(f"Parameter 'enable[{k}]' does not accept value '{cap}'")
    s.oob = "oob" in enable
    s.negotiated = True
    return {}


def _set_link(s: "QMPSession", a: dict[str, Any]) -> dict[str, Any]:
    qmp_set_link(s.vm, a["name"], a["up"])
    return {}


def _query_commands(s: "QMPSession", a: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": n} for n in QMP_COMMANDS]


QMP_COMMANDS: dict[str, QMPCommand] = {c.name: c for c in [
    QMPCommand("qmp_capabilities", _qmp_capabilities, {"enable": ("strlist", False)}),
    QMPCommand("query-status", lambda s, a: qmp_query_status(s.vm)),
    QMPCommand("query-name", lambda s, a: qmp_query_name(s.vm)),
    QMPCommand("query-version", lambda s, a: qmp_query_version(s.vm)),
    QMPCommand("query-kvm", lambda s, a: qmp_query_kvm(s.vm)),
    QMPCommand("query-commands", _query_commands),
    QMPCommand("query-pci", lambda s, a: qmp_query_pci(s.vm)),
    QMPCommand("human-monitor-command", _human_monitor_command,
               {"command-line": ("str", True), "cpu-index": ("int", False)}),
    QMPCommand("set_link", _set_link, {"name": ("str", True), "up": ("bool", True)}),
    QMPCommand("x-query-virtio", lambda s, a: qmp_x_query_virtio(s.vm)),
    QMPCommand("x-query-virtio-status", lambda s, a: qmp_x_query_virtio_status(s.vm, a["path"]),
               {"path": ("str", True)}),
    QMPCommand("x-query-virtio-queue-status",
               lambda s, a: qmp_x_query_virtio_queue_status(s.vm, a["path"], a["queue"]),
               {"path": ("str", True), "queue": ("uint16", True)}),
    QMPCommand("x-query-virtio-vhost-queue-status",
               lambda s, a: qmp_x_query_virtio_vhost_queue_status(s.vm, a["path"], a["queue"]),
               {"path": ("str", True), "queue": ("uint16", True)}),
    QMPCommand("x-query-virtio-queue-element",
               lambda s, a: qmp_x_query_virtio_queue_element(s.vm, a["path"], a["queue"],
                                                             a.get("index")),
               {"path": ("str", True), "queue": ("uint16", True), "index": ("uint16", False)}),
]}


# ---------------------------------------------------------------------------------------
# A session
# ---------------------------------------------------------------------------------------
class QMPSession(SocketSession):
    """One QMP client: greeting, capabilities negotiation, then command mode."""

    pretty = False

    def __init__(self, server: SocketServer, conn: socket.socket) -> None:
        super().__init__(server, conn)
        self.streamer = JSONStreamer()
        self.negotiated = False
        self.oob = False

    def opened(self) -> None:
        self.send(qmp_greeting())

    def send(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj, indent=4) if self.pretty else json.dumps(obj)
        self.write(text.replace("\n", "\r\n") + "\r\n")     # monitor_puts: \n -> \r\n

    def received(self, data: bytes) -> None:
        for value, err in self.streamer.feed(data):
            if self.closed:
                return
            if err is not None:
                self.send({"error": {"class": "GenericError", "desc": err}})
                continue
            self.send(qmp_dispatch(self, value))


def qmp_dispatch(s: QMPSession, req: Any) -> dict[str, Any]:
    """qmp_dispatch + monitor_qmp_dispatch: check the request, run it, wrap the answer."""
    rid: Any = None
    has_id = False
    try:
        if not isinstance(req, dict):
            raise QMPError("QMP input must be a JSON object")
        if "id" in req:
            rid, has_id = req["id"], True
        name = None
        oob = False
        for k, v in req.items():
            if k in ("execute", "exec-oob"):
                if not isinstance(v, str):
                    raise QMPError(f"QMP input member '{k}' must be a string")
                if name is not None:
                    raise QMPError("QMP input must not have both 'execute' and 'exec-oob'")
                name, oob = v, k == "exec-oob"
            elif k == "arguments":
                if not isinstance(v, dict):
                    raise QMPError("QMP input member 'arguments' must be an object")
            elif k != "id":
                raise QMPError(f"QMP input member '{k}' is unexpected")
        if name is None:
            raise QMPError("QMP input lacks member 'execute'")
        cmd = QMP_COMMANDS.get(name)
        if not s.negotiated and name != "qmp_capabilities":
            raise QMPError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           "CommandNotFound")
        if cmd is None:
            raise QMPError(f"The command {name} has not been found", "CommandNotFound")
        if oob and (not s.oob or not cmd.oob):
            raise QMPError(f"The command {name} does not support OOB")
        args = _check_args(cmd.args, dict(req.get("arguments", {})))
        rsp: dict[str, Any] = {"return": cmd.fn(s, args)}
    except QMPError as e:
        rsp = {"error": e.to_qmp()}
    except Exception as e:  # never let a bug take the session (or the machine) down
        rsp = {"error": {"class": "GenericError",
                         "desc": f"qnetlearn internal error: {type(e).__name__}: {e}"}}
    if has_id:
        rsp["id"] = rid
    return rsp


class QMPPrettySession(QMPSession):
    pretty = True


def qmp_server(vm: "Machine", text: str, pretty: bool = False) -> SocketServer:
    """Start serving QMP on the chardev ``text`` (the ``-qmp`` argument)."""
    option = f"-{'qmp-pretty' if pretty else 'qmp'} {text}"
    spec = parse_chardev(option, text)
    if spec.wait:
        vm.config.warnings.append(f"{option}: wait=on is not modelled: the machine does not "
                                  "wait for a QMP client before it runs")
    return SocketServer(vm, spec, option, QMPPrettySession if pretty else QMPSession)


__all__ = ["qmp_server", "qmp_dispatch", "qmp_greeting", "QMPSession", "JSONStreamer",
           "QMP_COMMANDS"]
