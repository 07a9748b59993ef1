"""A real TAP for lesson 9: the emulator in this process, the host side in a network namespace.

:func:`real_ping` opens a real Linux TAP (``-netdev tap,host=kernel``), moves the interface
into a network namespace of its own (the file descriptor keeps working across the move),
gives it 10.0.2.2/24 there, and runs the real ``ping`` and ``tcpdump`` in that namespace
while the emulator serves the TAP, recording.  Nothing touches the host's own networks:
the namespace, and with it the interface, is deleted at the end.

It needs root (or CAP_NET_ADMIN), ``/dev/net/tun``, ``ip``, ``ping`` and ``tcpdump``;
``available()`` says which is missing.  :func:`recorded_run` returns a run made this way
and shipped with the package, for machines where none of that is allowed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from importlib import resources
from typing import Any

__all__ = ["available", "real_ping", "recorded_run", "RealTapUnavailable"]

HOST_IP = "10.0.2.2"
GUEST_IP = "10.0.2.15"
LINES = {
    "virtio": "-netdev tap,id=hn0,host=kernel,ifname=qnl%d,script=no,downscript=no "
              "-device virtio-net-pci,id=net-pci0,netdev=hn0",
    "e1000": "-net nic,model=e1000 -net tap,host=kernel,ifname=qnl%d,script=no,downscript=no",
}


class RealTapUnavailable(RuntimeError):
    pass


def available() -> tuple[bool, str]:
    """``(ok, message)``: can this process run a real TAP with ping and tcpdump?"""
    from ..net.tap_linux import kernel_tap_available
    ok, why = kernel_tap_available()
    missing = [t for t in ("ping", "tcpdump") if shutil.which(t) is None]
    if missing:
        extra = "the " + " and ".join(f"`{t}` command" for t in missing) + \
            " (Debian: apt-get install iputils-ping tcpdump)"
        if ok:
            return False, f"a real TAP lesson also needs {extra}. Showing a recorded run instead."
        why = why.replace(". Showing", f"; {extra}. Showing")
    return ok, why


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def real_ping(model: str = "virtio", count: int = 3, timeout: float = 15.0) -> dict[str, Any]:
    """Run ``ping -c count`` from a namespace through a real TAP into the emulator.

    Returns the machine, the recording, the ping and tcpdump outputs, and the names used."""
    ok, why = available()
    if not ok:
        raise RealTapUnavailable(why)
    from ..net.tap_linux import KernelTapError
    try:
        return _real_ping(model, count, timeout)
    except subprocess.CalledProcessError as e:
        raise RealTapUnavailable(f"`{' '.join(e.cmd)}` failed: {(e.stderr or '').strip()}. "
                                 "Showing a recorded run instead.") from e
    except (OSError, KernelTapError) as e:      # opening the TAP, running a tool
        raise RealTapUnavailable(f"{e}. Showing a recorded run instead.") from e


def _real_ping(model: str, count: int, timeout: float) -> dict[str, Any]:
    from ..machine import Machine
    ns = f"qnl-lesson-{os.getpid()}"
    _ip("netns", "del", ns, check=False)            # a leftover of an interrupted run
    _ip("netns", "add", ns)
    vm = None
    procs: list[subprocess.Popen] = []
    try:
        vm = Machine.from_cmdline(LINES[model])
        vm.boot()
        tap = next(iter(vm.taps.values()))
        ifname = tap.ifname
        _ip("link", "set", ifname, "netns", ns)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], capture_output=True)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{HOST_IP}/24", "dev", ifname)
        _ip("-n", ns, "link", "set", ifname, "up")
        dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-n",
                                 "-l", "-e", "--immediate-mode"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(dump)
        end = time.monotonic() + 5
        while time.monotonic() < end:       # tcpdump prints "listening on" when ready
            vm.run(timeout=0.05)
            if dump.poll() is not None:
                break
            if os.path.exists(f"/proc/{dump.pid}"):
                time.sleep(0.2)
                break
        with vm.record() as rec:
            ping = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-c", str(count),
                                     "-i", "0.2", "-W", "2", GUEST_IP],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            procs.append(ping)
            end = time.monotonic() + timeout
            while ping.poll() is None and time.monotonic() < end:
                vm.run(timeout=0.05)
            vm.run(timeout=0.2)
        if ping.poll() is None:
            ping.kill()
        ping_out = ping.communicate()[0]
        dump.send_signal(signal.SIGINT)
        try:
            dump_out, dump_err = dump.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump_out, dump_err = dump.communicate()
        return {"vm": vm, "rec": rec, "model": model, "namespace": ns, "ifname": ifname,
                "ping": ping_out.strip(), "tcpdump": dump_out.strip(),
                "tcpdump_stderr": dump_err.strip(), "trace": rec.to_qemu_trace()}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if vm is not None:
            vm.close()
        _ip("netns", "del", ns, check=False)


def recorded_run(model: str = "virtio") -> dict[str, Any]:
    """A run of :func:`real_ping` made as root and shipped with the package."""
    path = resources.files("qnetlearn") / "course" / "data" / f"real-tap-{model}.json"
    return json.loads(path.read_text())


def save_run(run: dict[str, Any], path: str) -> None:
    """Keep a run's text (for :func:`recorded_run`)."""
    keep = {k: run[k] for k in ("model", "ifname", "ping", "tcpdump", "trace")}
    with open(path, "w") as f:
        json.dump(keep, f, indent=1)
