"""The interactive ``(qemu)`` prompt: ``-monitor stdio`` and HMP over a socket.

:func:`run_monitor_stdio` serves a prompt on a text stream pair while the machine runs:
the input is never read with a blocking call in the emulator's thread.  When stdin is a
terminal, a helper thread reads lines with the standard library's ``readline`` (line
editing, history, Tab completion of command names) and hands each finished line to the main
loop through a pipe registered with ``vm.loop.qemu_set_fd_handler``; otherwise stdin's own
file descriptor is registered.  Commands always run in the main loop's thread, between two
emulator events.  ``quit`` (or ``q``, or end of input) ends the prompt.  Called from
another thread while the main thread runs the machine (``qnetlearn run`` does this), it
reads in that thread instead and runs each command through ``vm.monitor(line)``.

``python -m qnetlearn.monitor.console "<qemu command line>"`` builds and boots the machine
and gives the prompt (``qnetlearn run ... -monitor stdio`` is the same prompt).

:class:`HMPSession` is HMP over ``-monitor unix:PATH,server=on,wait=off`` (or ``tcp:``):
QEMU's banner and prompt, CRLF line ends; ``quit`` closes the connection (QEMU would exit).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from typing import IO, TYPE_CHECKING, Any

from .chardev import SocketServer, SocketSession, parse_chardev
from .hmp import HMPMonitor, command_names

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

#: the longest command line a socket monitor buffers
MAX_LINE = 1 << 20
BANNER = "QEMU 7.2.0 monitor - type 'help' for more information\n"
PROMPT = "(qemu) "


class MonitorConsole:
    """A ``(qemu)`` prompt on ``stdin``/``stdout``, served from ``vm``'s main loop.

    ``start()`` registers the input with the loop; the caller keeps running the loop
    (``vm.run(timeout=...)``) until ``finished``; ``stop()`` unregisters.
    """

    def __init__(self, vm: "Machine", stdin: IO[str] | None = None,
                 stdout: IO[str] | None = None, use_readline: bool | None = None) -> None:
        self.vm = vm
        self.mon = HMPMonitor(vm)
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.finished = False
        try:
            self.fd: int | None = self.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None
        if use_readline is None:
            use_readline = (self.fd is not None and os.isatty(self.fd)
                            and self.stdin is sys.stdin and self.stdout is sys.stdout)
        self.use_readline = use_readline
        self._registered: int | None = None
        self._pending = ""
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None

    # -- output ------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except (OSError, ValueError):       # the terminal went away
            self.finished = True

    def execute(self, line: str) -> str:
        """Run one command line, print its output; ``quit`` ends the console."""
        out = self.mon.command(line)
        if out:
            self._write(out)
        if self.mon.quit_requested:
            self.finished = True
        return out

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._write(BANNER)
        if self.use_readline:
            r, w = os.pipe()
            self._pipe = (r, w)
            self._registered = r
            self.vm.loop.qemu_set_fd_handler(r, _console_pipe_readable, None, self)
            self._thread = threading.Thread(target=self._reader, name="qemu-monitor-readline",
                                            daemon=True)
            self._thread.start()
            self._ready.set()
        elif self.fd is not None:
            self._registered = self.fd
            self.vm.loop.qemu_set_fd_handler(self.fd, _console_stdin_readable, None, self)
            self._write(PROMPT)

    def stop(self) -> None:
        self.finished = True
        if self._registered is not None:
            self.vm.loop.qemu_set_fd_handler(self._registered, None, None, None)
            self._registered = None
        self._ready.set()                   # let the reader thread leave
        if self._pipe is not None:
            for fd in self._pipe:
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass
            self._pipe = None

    # -- the readline thread (terminals) -----------------------------------------------
    def _reader(self) -> None:
        _setup_readline()
        while True:
            self._ready.wait()
            self._ready.clear()
            if self.finished:
                return
            try:
                line: str | None = input(PROMPT)
            except EOFError:
                line = None
            except Exception:  # pragma: no cover
                line = None
            self._lines.put(line)
            pipe = self._pipe
            if pipe is None:
                return
            try:
                os.write(pipe[1], b"\n")
            except OSError:  # pragma: no cover
                return

    def _from_reader(self) -> None:
        if self._pipe is not None:
            try:
                os.read(self._pipe[0], 4096)
            except OSError:  # pragma: no cover
                pass
        while not self._lines.empty():
            line = self._lines.get()
            if line is None:
                self._write("\n")
                self.finished = True
            else:
                self.execute(line)
            if self.finished:
                self.stop()
                return
        self._ready.set()

    # -- plain file descriptors (pipes, files, sockets) --------------------------------
    def _from_stdin(self) -> None:
        assert self.fd is not None
        try:
            data = os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if self._pending.strip():
                self.execute(self._pending)
            else:
                self._write("\n")
            self.finished = True
            self.stop()
            return
        self._pending += data.decode("utf-8", "replace")
        while "\n" in self._pending and not self.finished:
            line, self._pending = self._pending.split("\n", 1)
            self.execute(line.rstrip("\r"))
            if not self.finished:
                self._write(PROMPT)
        if self.finished:
            self.stop()


def _console_pipe_readable(con: MonitorConsole) -> None:
    con._from_reader()


def _console_stdin_readable(con: MonitorConsole) -> None:
    con._from_stdin()


def run_monitor_stdio(vm: "Machine", stdin: IO[str] | None = None,
                      stdout: IO[str] | None = None, poll: float = 0.1,
                      drive_loop: bool | None = None) -> None:
    """The ``-monitor stdio`` prompt: ``(qemu)`` on the stream pair until ``quit`` or end of
    input, while the machine runs.

    Called from the main thread (``drive_loop`` true), it runs the machine itself
    (``vm.run(timeout=poll)`` in a loop) and reads input through fd handlers of the main
    loop.  Called from another thread while the main thread runs the machine (as
    ``qnetlearn run`` does), it reads input in that thread (readline on a terminal) and runs
    each command with ``vm.monitor(line)``, which the caller may wrap to serialise it with
    the main loop.  Streams without a file descriptor (``io.StringIO``) are read at once."""
    if drive_loop is None:
        drive_loop = threading.current_thread() is threading.main_thread()
    con = MonitorConsole(vm, stdin, stdout)
    if not drive_loop or con.fd is None:
        _run_blocking(con, drive_loop)
        return
    con.start()
    try:
        while not con.finished:
            vm.run(timeout=poll)
    finally:
        con.stop()


def _run_blocking(con: MonitorConsole, drive_loop: bool) -> None:
    """Read and run commands in the calling thread (the machine runs elsewhere, or the
    input is a plain text stream)."""
    from .hmp import default_monitor
    vm = con.vm
    con._write(BANNER)
    if con.use_readline:
        _setup_readline()
    while not con.finished:
        if con.use_readline:
            try:
                line: str | None = input(PROMPT)
            except EOFError:
                line = None
        else:
            con._write(PROMPT)
            try:
                line = con.stdin.readline()
            except (OSError, ValueError):
                line = ""
            if not line:
                line = None
        if line is None:
            con._write("\n")
            return
        line = line.rstrip("\r\n")
        if drive_loop:
            con.execute(line)
            vm.run()
            continue
        mon = default_monitor(vm)
        out = vm.monitor(line)          # the caller's (possibly locked) entry point
        if out:
            con._write(out)
        if mon.quit_requested:
            mon.quit_requested = False
            con.finished = True


def _setup_readline() -> None:
    """Tab completion of command names for the standard library's readline."""
    try:
        import readline
    except ImportError:  # pragma: no cover - no readline on this platform
        return
    names = command_names()

    def complete(text: str, state: int) -> str | None:
        buf = readline.get_line_buffer().lstrip()
        k = len(buf.split(" ")) - 1
        words = sorted({n.split(" ")[k] for n in names
                        if n.startswith(buf) and len(n.split(" ")) > k})
        return words[state] if state < len(words) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" ")
    readline.parse_and_bind("tab: complete")


# ---------------------------------------------------------------------------------------
# HMP over a socket (-monitor unix:...,server=on,wait=off)
# ---------------------------------------------------------------------------------------
class HMPSession(SocketSession):
    """One client of a ``-monitor`` socket: banner, echo, output, prompt (CRLF)."""

    def __init__(self, server: SocketServer, conn: Any) -> None:
        super().__init__(server, conn)
        self.mon = HMPMonitor(server.vm)
        self.pending = b""

    def send(self, text: str) -> None:
        self.write(text.replace("\n", "\r\n"))

    def opened(self) -> None:
        self.send(BANNER + PROMPT)

    def received(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) > MAX_LINE and b"\n" not in self.pending:
            self.pending = b""                       # a runaway line: drop it
            self.send("qnetlearn: input line too long, dropped\n" + PROMPT)
            return
        while b"\n" in self.pending and not self.closed:
            raw, self.pending = self.pending.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.send(line + "\n")                       # QEMU's readline echoes
            self.send(self.mon.command(line))
            if self.mon.quit_requested:
                self.close()
                return
            self.send(PROMPT)


def hmp_server(vm: "Machine", text: str) -> SocketServer:
    """Serve HMP on the chardev ``text`` (a ``-monitor`` argument)."""
    option = f"-monitor {text}"
    spec = parse_chardev(option, text)
    if spec.wait:
        vm.config.warnings.append(f"{option}: wait=on is not modelled: the machine does not "
                                  "wait for a monitor client before it runs")
    return SocketServer(vm, spec, option, HMPSession)


# ---------------------------------------------------------------------------------------
# python -m qnetlearn.monitor.console "<qemu command line>"
# ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    from .. import CmdlineError, Machine
    ap = argparse.ArgumentParser(
        prog="python -m qnetlearn.monitor.console",
        description="Build a machine from a QEMU command line and give its (qemu) prompt.")
    ap.add_argument("cmdline", help="the QEMU command line, in one argument")
    ap.add_argument("--no-guest", action="store_true", help="no simulated Linux guest")
    ap.add_argument("--no-boot", action="store_true", help="do not boot (no firmware, no guest)")
    ns = ap.parse_args(argv)
    try:
        vm = Machine.from_cmdline(ns.cmdline, guest=None if ns.no_guest else "linux")
    except CmdlineError as e:
        print(f"qemu-system-x86_64: {e}", file=sys.stderr)
        return 1
    for w in vm.config.warnings:
        print(f"qemu-system-x86_64: warning: {w}", file=sys.stderr)
    try:
        if not ns.no_boot:
            vm.boot()
        run_monitor_stdio(vm)
    finally:
        vm.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
