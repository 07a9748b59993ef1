"""QMP served to QEMU's own client library (qemu.qmp) and to raw sockets, while the
machine runs in the test thread."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import qnetlearn as qn
from qnetlearn.monitor import monitor_servers

qmp = pytest.importorskip("qemu.qmp")
from qemu.qmp import ExecuteError, QMPClient  # noqa: E402

VD = "/machine/peripheral/net-pci0/virtio-backend"
VIRTIO = "-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no " \
         "-device virtio-net-pci,id=net-pci0,netdev=hn0"
GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
            b'"package": ""}, "capabilities": ["oob"]}}\r\n')


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="qnl"))     # short: unix socket paths max 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_until(vm: qn.Machine, ev: threading.Event, timeout: float = 30.0,
              client: "ClientThread | None" = None) -> None:
    """Run the machine's main loop (QMP is served from it) until ``ev`` is set; a client
    thread that failed meanwhile raises its error here."""
    end = time.monotonic() + timeout
    while not ev.is_set():
        if client is not None and client.error is not None:
            raise client.error
        assert time.monotonic() < end, "timed out"
        vm.run(timeout=0.02)


class ClientThread(threading.Thread):
    """Run an async QMP client in its own thread with its own event loop."""

    def __init__(self, coro: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.coro = coro
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.coro())
        except BaseException as e:  # reported by the test thread
            self.error = e
        finally:
            self.done.set()


async def wait_event(ev: threading.Event) -> None:
    await asyncio.get_running_loop().run_in_executor(None, ev.wait, 30)


def test_qmp_client_session_and_set_link(sockdir: Path) -> None:
    path = sockdir / "qmp.sock"
    vm = qn.Machine.from_cmdline(f"{VIRTIO} -qmp unix:{path},server=on,wait=off "
                                 "-name guest=qmptest").boot()
    r: dict[str, Any] = {}
    link_down, link_up = threading.Event(), threading.Event()
    sent_down, sent_up = threading.Event(), threading.Event()

    async def session() -> None:
        c = QMPClient("qnetlearn-test")
        await c.connect(str(path))            # greeting + qmp_capabilities (enable: oob)
        r["greeting"] = c.greeting
        r["status"] = await c.execute("query-status")
        r["name"] = await c.execute("query-name")
        r["version"] = await c.execute("query-version")
        r["commands"] = await c.execute("query-commands")
        r["pci"] = await c.execute("query-pci")
        r["virtio"] = await c.execute("x-query-virtio")
        r["vstatus"] = await c.execute("x-query-virtio-status", {"path": VD})
        r["hmp"] = await c.execute("human-monitor-command",
                                   {"command-line": "info network"})
        q0 = {"path": VD, "queue": 0}
        r["rx0"] = await c.execute("x-query-virtio-queue-status", q0)
        try:
            await c.execute("set_link", {"name": "nosuch", "up": False})
        except ExecuteError as e:
            r["notfound"] = (e.error.error.class_, e.error.error.desc)
        try:
            await c.execute("x-query-virtio-queue-status", {"path": VD})
        except ExecuteError as e:
            r["missing"] = (e.error.error.class_, e.error.error.desc)
        try:
            await c.execute("no-such-command")
        except ExecuteError as e:
            r["unknown"] = (e.error.error.class_, e.error.error.desc)
        r["down"] = await c.execute("set_link", {"name": "hn0", "up": False})
        link_down.set()
        await wait_event(sent_down)           # the host pings while the link is down
        r["rx_down"] = await c.execute("x-query-virtio-queue-status", q0)
        r["up"] = await c.execute("set_link", {"name": "hn0", "up": True})
        link_up.set()
        await wait_event(sent_up)
        r["rx_up"] = await c.execute("x-query-virtio-queue-status", q0)
        r["element"] = await c.execute("x-query-virtio-queue-element", q0)
        await c.disconnect()

    t = ClientThread(session)
    t.start()
    try:
        run_until(vm, link_down, client=t)
        tap = vm.netdev("hn0")
        assert tap.link_down and vm.device("net-pci0").nc.link_down
        assert vm.host().ping(count=3) == [None, None, None]
        assert tap.stats["drop: link down"] == 3          # counted, with their reason
        sent_down.set()
        run_until(vm, link_up, client=t)
        assert None not in vm.host().ping(count=2)           # delivered again
        assert tap.stats["drop: link down"] == 3
        sent_up.set()
        run_until(vm, t.done)
    finally:
        vm.close()
    if t.error is not None:
        raise t.error
    assert r["greeting"].QMP.version == {"qemu": {"micro": 0, "minor": 2, "major": 7},
                                         "package": ""}
    assert r["greeting"].QMP.capabilities == ["oob"]
    assert r["status"] == {"status": "running", "singlestep": False, "running": True}
    assert r["name"] == {"name": "qmptest"}
    assert r["version"] == {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}
    names = {c["name"] for c in r["commands"]}
    assert {"qmp_capabilities", "query-status", "query-pci", "query-name",
            "human-monitor-command", "set_link", "x-query-virtio", "x-query-virtio-status",
            "x-query-virtio-queue-status"} <= names
    devs = r["pci"][0]["devices"]
    nic = next(d for d in devs if d["qdev_id"] == "net-pci0")
    assert nic["slot"] == 3 and nic["id"]["vendor"] == 0x1af4 and nic["id"]["device"] == 0x1000
    assert nic["class_info"] == {"desc": "Ethernet controller", "class": 0x0200}
    assert [(x["bar"], x["type"]) for x in nic["regions"]] == [(0, "io"), (1, "memory"),
                                                               (4, "memory")]
    assert nic["regions"][2]["mem_type_64"] and nic["regions"][2]["prefetch"]
    assert r["virtio"] == [{"path": VD, "name": "virtio-net"}]
    assert r["vstatus"]["name"] == "virtio-net" and r["vstatus"]["device-id"] == 1
    assert "VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready" in \
        r["vstatus"]["status"]["statuses"]
    assert r["hmp"] == vm.monitor("info network")
    assert set(r["rx0"]) == {"name", "queue-index", "inuse", "vring-num", "vring-num-default",
                             "vring-align", "vring-desc", "vring-avail", "vring-used",
                             "last-avail-idx", "shadow-avail-idx", "used-idx",
                             "signalled-used", "signalled-used-valid"}
    assert r["notfound"] == ("DeviceNotFound", "Device 'nosuch' not found")
    assert r["missing"] == ("GenericError", "Parameter 'queue' is missing")
    assert r["unknown"] == ("CommandNotFound", "The command no-such-command has not been found")
    assert r["down"] == {} and r["up"] == {}
    # nothing reached the guest while the link was down; both pings did afterwards
    assert r["rx_down"]["used-idx"] == r["rx0"]["used-idx"]
    assert r["rx_up"]["used-idx"] == r["rx0"]["used-idx"] + 2
    assert r["element"]["name"] == "virtio-net" and r["element"]["descs"][0]["flags"] == ["write"]
    assert not path.exists()                               # vm.close() removed the socket


def recv_until(vm: qn.Machine, s: socket.socket, done: Callable[[bytes], bool],
               timeout: float = 10.0) -> bytes:
    """Run the machine (it serves the non-blocking socket ``s``) until what arrived on ``s``
    satisfies ``done``; return it."""
    buf = b""
    end = time.monotonic() + timeout
    while not done(buf):
        assert time.monotonic() < end, buf
        vm.run(timeout=0.02)
        try:
            buf += s.recv(65536)
        except BlockingIOError:
            pass
    return buf


def recv_lines(vm: qn.Machine, s: socket.socket, n: int, timeout: float = 10.0) -> list[Any]:
    """Run the machine until ``n`` CRLF-terminated JSON lines arrived on ``s``."""
    buf = recv_until(vm, s, lambda b: b.count(b"\r\n") >= n, timeout)
    lines = buf.split(b"\r\n")
    assert lines[-1] == b""
    return [json.loads(x) for x in lines[:-1]]


def test_qmp_raw_socket_errors_keep_the_session(sockdir: Path) -> None:
    path = sockdir / "q.sock"
    vm = qn.Machine.from_cmdline(f"{VIRTIO} -qmp unix:{path},server=on,wait=off", guest=None)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.setblocking(False)
    try:
        buf = recv_until(vm, s, lambda b: b.endswith(b"\r\n"))
        assert buf == GREETING                       # byte for byte, CRLF as QEMU
        s.sendall(b'{"execute": "query-status", "id": 1}')
        assert recv_lines(vm, s, 1) == [{"error": {
            "class": "CommandNotFound",
            "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": 1}]
        # two requests in one write, the second in two pieces
        s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-')
        assert recv_lines(vm, s, 1) == [{"return": {}}]
        s.sendall(b'name", "id": "x"}')
        assert recv_lines(vm, s, 1) == [{"return": {}, "id": "x"}]
        s.sendall(b'{"execute": }\n')
        (err,) = recv_lines(vm, s, 1)
        assert err["error"]["class"] == "GenericError"
        assert err["error"]["desc"].startswith("JSON parse error")
        s.sendall(b'this is not json\n[1, 2]\n{"exec": "x"}\n{"execute": 1}\n'
                  b'{"execute": "set_link", "arguments": {"name": "hn0", "up": "no"}}\n'
                  b'{"execute": "qmp_capabilities"}\n')
        errs = recv_lines(vm, s, 9)
        descs = [e["error"]["desc"] for e in errs]
        assert descs[:4] == ["JSON parse error, invalid keyword 'this'",
                             "JSON parse error, invalid keyword 'is'",
                             "JSON parse error, invalid keyword 'not'",
                             "JSON parse error, invalid keyword 'json'"]
        assert descs[4:] == [
            "QMP input must be a JSON object",
            "QMP input member 'exec' is unexpected",
            "QMP input member 'execute' must be a string",
            "Invalid parameter type for 'up', expected: boolean",
            "Capabilities negotiation is already complete, command ignored"]
        assert errs[-1]["error"]["class"] == "CommandNotFound"
        # ... and the session (and the machine) carry on
        s.sendall(b"{'execute': 'human-monitor-command', "
                  b"'arguments': {'command-line': 'info network'}, 'id': [1, {'a': 2}]}")
        assert recv_lines(vm, s, 1) == [{"return": vm.monitor("info network"),
                                         "id": [1, {"a": 2}]}]
        s.sendall(b'{"execute": "set_link", "arguments": {"name": "hn0", "up": false}}')
        assert recv_lines(vm, s, 1) == [{"return": {}}]
        assert vm.netdev("hn0").link_down
    finally:
        s.close()
        vm.close()


def test_qmp_tcp_and_pretty(sockdir: Path) -> None:
    vm = qn.Machine.from_cmdline(f"{VIRTIO} -qmp tcp:127.0.0.1:0,server=on,wait=off "
                                 f"-qmp-pretty unix:{sockdir / 'p.sock'},server=on,wait=off",
                                 guest=None)
    tcp, pretty = monitor_servers(vm)
    host, port = tcp.address
    out: dict[str, Any] = {}

    async def session() -> None:
        c = QMPClient("tcp")
        await c.connect((host, port))
        out["status"] = await c.execute("query-status")
        await c.disconnect()

    t = ClientThread(session)
    t.start()
    try:
        run_until(vm, t.done)
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sockdir / "p.sock"))
        s.setblocking(False)
        buf = recv_until(vm, s, lambda b: b.endswith(b"}\r\n"))
        assert buf.startswith(b'{\r\n    "QMP": {\r\n')
        s.close()
    finally:
        vm.close()
    if t.error is not None:
        raise t.error
    assert out["status"]["running"] is True


def test_qmp_bad_option_is_a_cmdline_error(sockdir: Path) -> None:
    with pytest.raises(qn.CmdlineError, match="server=off"):
        qn.Machine.from_cmdline(f"{VIRTIO} -qmp unix:{sockdir / 'x'},server=off", guest=None)
    with pytest.raises(qn.CmdlineError, match="not modelled"):
        qn.Machine.from_cmdline(f"{VIRTIO} -qmp pty", guest=None)
    vm = qn.Machine.from_cmdline(f"{VIRTIO} -qmp unix:{sockdir / 'w'},server", guest=None)
    assert any("wait=on is not modelled" in w for w in vm.config.warnings)
    vm.close()


@pytest.mark.skipif(shutil.which("qmp-shell", path=os.path.dirname(sys.executable)) is None,
                    reason="qmp-shell is not installed next to this Python")
def test_qmp_shell(sockdir: Path) -> None:
    """QEMU's qmp-shell (its shorthand syntax, and -H for HMP) talks to our server."""
    path = sockdir / "s.sock"
    vm = qn.Machine.from_cmdline(f"{VIRTIO} -qmp unix:{path},server=on,wait=off", guest=None)
    shell = shutil.which("qmp-shell", path=os.path.dirname(sys.executable))
    results: dict[str, str] = {}
    done = threading.Event()

    def run() -> None:
        try:
            for key, args, text in (("qmp", [], "query-status\nset_link name=hn0 up=false\n"),
                                    ("hmp", ["-H"], "info network\n")):
                p = subprocess.run([shell, *args, str(path)], input=text, text=True,
                                   capture_output=True, timeout=30)
                results[key] = p.stdout + p.stderr
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        run_until(vm, done, timeout=60)
    finally:
        vm.close()
    assert '"running": true' in results["qmp"], results
    assert vm.netdev("hn0").link_down
    assert "net-pci0: index=0,type=nic,model=virtio-net-pci" in results["hmp"], results
