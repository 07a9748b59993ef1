"""The interactive (qemu) prompt through a pseudo-terminal, pipes, and in a notebook."""
from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import qnetlearn as qn

ROOT = Path(__file__).resolve().parents[1]
VIRTIO = "-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no " \
         "-device virtio-net-pci,id=net-pci0,netdev=hn0"
INFO_NETWORK = ("net-pci0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\r\n"
                " \\ hn0: index=0,type=tap,ifname=qtap0,script=no,downscript=no\r\n")


class Pty:
    """A child process on a pseudo-terminal, read until a token appears."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm")
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                     env=env, close_fds=True)
        os.close(slave)
        self.buf = b""

    def expect(self, token: bytes, timeout: float = 60.0) -> bytes:
        end = time.monotonic() + timeout
        while token not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not select.select(
                    [self.master], [], [], 0)[0]:
                raise AssertionError(f"{token!r} not seen; got {self.buf!r}")
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    self.buf += os.read(self.master, 4096)
                except OSError:
                    pass
        i = self.buf.index(token) + len(token)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


@pytest.mark.parametrize("entry", ["console", "qnetlearn-run"])
def test_prompt_through_a_pty(entry: str) -> None:
    """``(qemu) info network`` at the prompt, with readline line editing (Ctrl-A/Ctrl-E,
    history with the Up key) and Tab completion, then ``quit``."""
    line = VIRTIO + " -monitor stdio"
    if entry == "console":
        argv = [sys.executable, "-m", "qnetlearn.monitor.console", line]
    else:
        if not (ROOT / "qnetlearn" / "cli.py").exists():
            pytest.skip("qnetlearn run is not there yet")
        argv = [sys.executable, "-m", "qnetlearn", "run", line.replace("script=no,", "host=sim,script=no,")]
    t = Pty(argv)
    try:
        t.expect(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n")
        t.expect(b"(qemu) ")
        t.send("info network\r")
        out = t.expect(b"(qemu) ").decode()
        assert out == "info network\r\n" + INFO_NETWORK + "(qemu) "
        t.send("network\x01info \x05\r")           # type, go to the start, insert, go to end
        assert INFO_NETWORK in t.expect(b"(qemu) ").decode()
        t.send("\x1b[A\r")                         # Up: the previous command again
        assert INFO_NETWORK in t.expect(b"(qemu) ").decode()
        t.send("info virtio-qu\t")                 # Tab completes the unique prefix
        assert t.expect(b"eue-").replace(b"\x07", b"").endswith(b"info virtio-queue-")
        t.send("status /machine/peripheral/net-pci0/virtio-backend 0\r")
        assert b"  queue_index:          0\r\n" in t.expect(b"(qemu) ")
        t.send("foo\r")
        assert b"unknown command: 'foo'\r\n" in t.expect(b"(qemu) ")
        t.send("quit\r")
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()


def test_prompt_on_pipes() -> None:
    p = subprocess.run([sys.executable, "-m", "qnetlearn.monitor.console", VIRTIO],
                       input="info network\ninfo status\n", capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ("QEMU 7.2.0 monitor - type 'help' for more information\n(qemu) "
                        + INFO_NETWORK.replace("\r\n", "\n") + "(qemu) VM status: running\n"
                        "(qemu) \n")


def test_run_monitor_stdio_drives_the_machine() -> None:
    """Called from the main thread, the console runs the machine while it waits for input:
    a ping the host starts keeps going between two commands."""
    from qnetlearn.monitor.console import run_monitor_stdio
    from qnetlearn.net.stack import build_echo_request
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    host = vm.host()
    host.send(build_echo_request(host.mac, vm.guest.mac, host.ip, "10.0.2.15", 0x77, 1))
    r, w = os.pipe()
    os.write(w, b"info virtio-queue-status net-pci0/virtio-backend 0\nquit\nnever run\n")
    os.close(w)
    out = io.StringIO()
    with os.fdopen(r, "r") as stdin:
        run_monitor_stdio(vm, stdin, out, poll=0.01)
    text = out.getvalue()
    assert text.startswith("QEMU 7.2.0 monitor - type 'help' for more information\n(qemu) "
                           "net-pci0/virtio-backend:\n")
    used = vm.device("net-pci0").vdev.vq[0].used
    assert "never run" not in text
    assert text.endswith(f"  used:         0x{used:016x}\n(qemu) ")
    assert host.recv() is not None                 # the guest answered the echo meanwhile
    # plain text streams (no file descriptor) work too
    out2 = io.StringIO()
    run_monitor_stdio(vm, io.StringIO("info status\nq\ninfo status\n"), out2)
    assert out2.getvalue().count("VM status: running") == 1


def test_notebook_magic_and_widget() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from qnetlearn.monitor import magic
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "qnetlearn.monitor.magic")
        vm1 = qn.Machine.from_cmdline(VIRTIO, guest=None)
        vm2 = qn.Machine.from_cmdline("-net nic,model=e1000 -net tap", guest=None)
        buf = io.StringIO()
        sys_stdout, sys.stdout = sys.stdout, buf
        try:
            shell.run_line_magic("qemu", "info network")      # the last machine made: vm2
            shell.user_ns["vm"] = vm1
            shell.run_line_magic("qemu_use", "vm")
            shell.run_line_magic("qemu", "info network")
            shell.run_cell_magic("qemu", "", "info status\n\ninfo version\n")
        finally:
            sys.stdout = sys_stdout
        text = buf.getvalue()
        assert text.startswith("hub 0\n \\ hub0port1: #net")
        assert "net-pci0: index=0,type=nic" in text
        assert text.endswith("(qemu) info status\nVM status: running\n"
                             "(qemu) info version\n7.2.0\n")
        with pytest.raises(TypeError):
            shell.run_line_magic("qemu_use", "42")
        pytest.importorskip("ipywidgets")
        box = magic.monitor_console(vm1)
        box.submit("info network")
        out, text_w = box.children
        assert out.outputs[-1]["text"].startswith("(qemu) info network\nnet-pci0: index=0")
        text_w.value = "info status"                 # what pressing Enter in the box does
        assert out.outputs[-1]["text"] == "(qemu) info status\nVM status: running\n"
        assert text_w.value == ""
    finally:
        InteractiveShell.clear_instance()
