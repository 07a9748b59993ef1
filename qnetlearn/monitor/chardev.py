"""Socket character devices for the monitors: ``unix:PATH,server=on,wait=off`` and
``tcp:HOST:PORT,server=on,wait=off`` (QEMU's chardev/char-socket.c, as ``-qmp`` and
``-monitor`` use them).

A :class:`SocketServer` listens; every accepted connection becomes a session object (QMP or
HMP) fed with the bytes the client sends.  The listening socket and every client socket are
registered with the machine's main loop (``vm.loop.qemu_set_fd_handler``), so the monitors
are served while ``vm.run(timeout=...)`` runs, one event at a time like everything else.

Differences from QEMU: several clients may be connected at once (QEMU serves one at a time);
``wait=on`` does not block machine creation (a warning is recorded instead); client mode
(``server=off``), ``telnet`` negotiation, TLS and websockets are not modelled.
"""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine


@dataclass
class ChardevSpec:
    """A parsed ``-qmp``/``-monitor`` argument."""

    text: str
    backend: str                  # "unix" or "tcp"
    path: str = ""                # unix
    host: str = ""                # tcp
    port: int = 0
    server: bool = False
    wait: bool = True
    opts: dict[str, str] = field(default_factory=dict)


def _split_opts(text: str) -> list[str]:
    """QemuOpts splitting: ',' separates, ',,' is a literal comma."""
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if text[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _bool(option: str, name: str, v: str) -> bool:
    from ..system.vl import CmdlineError
    if v in ("on", "yes", "true", "y"):
        return True
    if v in ("off", "no", "false", "n"):
        return False
    raise CmdlineError(option, f"Parameter '{name}' expects 'on' or 'off'")


def parse_chardev(option: str, text: str) -> ChardevSpec:
    """qemu_chr_parse_compat for the socket forms; raises CmdlineError otherwise."""
    from ..system.vl import CmdlineError
    parts = _split_opts(text)
    head = parts[0]
    if head.startswith("unix:"):
        spec = ChardevSpec(text, "unix", path=head[5:])
        if not spec.path:
            raise CmdlineError(option, "chardev: socket: no path given")
    elif head.startswith("tcp:") or head.startswith("telnet:"):
        addr = head.split(":", 1)[1]
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise CmdlineError(option, f"chardev: socket: address '{addr}' lacks a port")
        host = host.strip("[]")
        try:
            portnum = int(port) if port else 0
        except ValueError:
            raise CmdlineError(option, f"Parameter 'port' expects a number, not '{port}'") \
                from None
        spec = ChardevSpec(text, "tcp", host=host, port=portnum)
        if head.startswith("telnet:"):
            spec.opts["telnet"] = "on"
    else:
        kind = head.split(":", 1)[0]
        raise CmdlineError(option, f"chardev '{kind}' is not modelled by qnetlearn for "
                           "monitors (it serves unix: and tcp: sockets; -monitor stdio is "
                           "the qnetlearn run command's)")
    for p in parts[1:]:
        if not p:
            continue
        if "=" in p:
            k, v = p.split("=", 1)
        elif p.startswith("no") and p[2:] in ("wait", "server", "delay", "telnet"):
            k, v = p[2:], "off"
        else:
            k, v = p, "on"          # short-form boolean (deprecated in QEMU 7.2)
        if k == "server":
            spec.server = _bool(option, k, v)
        elif k == "wait":
            spec.wait = _bool(option, k, v)
        elif k in ("nodelay", "delay", "ipv4", "ipv6", "telnet", "reconnect", "id",
                   "abstract", "tight", "mux", "logfile", "logappend", "to"):
            spec.opts[k] = v
        else:
            raise CmdlineError(option, f"Invalid parameter '{k}'")
    if not spec.server:
        raise CmdlineError(option, "a client-mode socket (server=off) is not modelled by "
                           "qnetlearn: give server=on,wait=off")
    return spec


class SocketSession:
    """One accepted connection: buffered, non-blocking output; input passed to
    :meth:`received`.  Subclasses implement :meth:`opened` and :meth:`received`."""

    def __init__(self, server: "SocketServer", conn: socket.socket) -> None:
        self.server = server
        self.vm = server.vm
        self.conn = conn
        self.fd = conn.fileno()
        self.outbuf = bytearray()
        self.closed = False
        self._update_handler()

    def _update_handler(self) -> None:
        if self.closed:
            return
        self.vm.loop.qemu_set_fd_handler(self.fd, _session_readable,
                                         _session_writable if self.outbuf else None, self)

    # -- subclass interface ----------------------------------------------------------
    def opened(self) -> None:
        """The connection was accepted (send a greeting or banner here)."""

    def received(self, data: bytes) -> None:
        """Bytes arrived from the client."""

    # -- output ----------------------------------------------------------------------
    def write(self, data: bytes | str) -> None:
        if self.closed:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        self.outbuf += data
        self._flush()

    def _flush(self) -> None:
        while self.outbuf and not self.closed:
            try:
                n = self.conn.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        self._update_handler()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.vm.loop.qemu_set_fd_handler(self.fd, None, None, None)
        try:
            self.conn.close()
        except OSError:  # pragma: no cover
            pass
        if self in self.server.sessions:
            self.server.sessions.remove(self)


def _session_readable(s: SocketSession) -> None:
    try:
        data = s.conn.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        s.close()
        return
    if not data:
        s.close()
        return
    s.received(data)


def _session_writable(s: SocketSession) -> None:
    s._flush()


class SocketServer:
    """A listening unix or TCP socket served from the machine's main loop."""

    def __init__(self, vm: "Machine", spec: ChardevSpec, option: str,
                 session_factory: Callable[["SocketServer", socket.socket], SocketSession]
                 ) -> None:
        from ..system.vl import CmdlineError
        self.vm = vm
        self.spec = spec
        self.option = option
        self.factory = session_factory
        self.sessions: list[SocketSession] = []
        self.closed = False
        try:
            if spec.backend == "unix":
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    os.unlink(spec.path)          # as QEMU's socket_listen does
                except FileNotFoundError:
                    pass
                self.sock.bind(spec.path)
                self.address: Any = spec.path
            else:
                family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
                self.sock = socket.socket(family, socket.SOCK_STREAM)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.sock.bind((spec.host or ("::" if family == socket.AF_INET6 else
                                              "0.0.0.0"), spec.port))
                self.address = self.sock.getsockname()[:2]
            self.sock.listen(8)
            self.sock.setblocking(False)
        except OSError as e:
            raise CmdlineError(option, f"Failed to bind socket: {os.strerror(e.errno or 0)}"
                               if e.errno else str(e)) from None
        self.fd = self.sock.fileno()
        vm.loop.qemu_set_fd_handler(self.fd, _server_accept, None, self)

    def describe(self) -> str:
        if self.spec.backend == "unix":
            return f"unix:{self.address}"
        return f"tcp:{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in list(self.sessions):
            s.close()
        self.vm.loop.qemu_set_fd_handler(self.fd, None, None, None)
        self.sock.close()
        if self.spec.backend == "unix":
            try:
                os.unlink(self.spec.path)
            except OSError:
                pass


def _server_accept(srv: SocketServer) -> None:
    try:
        conn, _ = srv.sock.accept()
    except (BlockingIOError, InterruptedError):
        return
    except OSError as e:  # pragma: no cover - EMFILE and the like
        if e.errno in (errno.EMFILE, errno.ENFILE):
            return
        raise
    conn.setblocking(False)
    sess = srv.factory(srv, conn)
    srv.sessions.append(sess)
    sess.opened()
