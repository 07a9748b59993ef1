"""A real Linux TAP (``-netdev tap,host=kernel``): net/tap-linux.c, and the main loop on real fds.

The tests marked ``root`` create their own network namespace (``qnl-test-<pid>-<n>``), run
the emulator inside it, and delete it afterwards, so nothing touches the host's networks.
They are skipped, with the reason, when not root or without /dev/net/tun and ``ip``.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import qnetlearn as qn
from qnetlearn.net import tap_linux
from qnetlearn.net.dump import read_pcap
from qnetlearn.net.net import NetClientInfo, qemu_new_net_client, qemu_send_packet
from qnetlearn.net.tap import TAPState
from qnetlearn.net.tap_linux import KernelTapError, check_ifname, kernel_tap_available
from qnetlearn.system.main_loop import MainLoop

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SEED = ("qemu-system-x86_64 disk.img -machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,host=kernel,ifname=qtap0,script=no,downscript=no "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
E1000 = "-net nic,model=e1000 -net tap,host=kernel,ifname=qtap0,script=no,downscript=no"
GUEST = "10.0.2.15"


# -- without privileges ----------------------------------------------------------------------
@pytest.mark.parametrize("name, why", [
    ("", "empty"), ("a" * 16, "at most 15"), ("..", "'.' and '..'"), ("tap/0", "'/'"),
    ("tap 0", "white space"), ("tap:0", "':'"), ("tap%s", "'%d'"), ("t%d%d", "'%d'"),
])
def test_bad_interface_names_are_refused_with_the_rule(name, why):
    with pytest.raises(KernelTapError, match="bad TAP interface name") as e:
        check_ifname(name)
    assert why in str(e.value)


@pytest.mark.parametrize("name", ["tap0", "qtap%d", "a" * 15, "eth-x_1.2"])
def test_good_interface_names_pass(name):
    check_ifname(name)


def test_missing_dev_net_tun_says_modprobe_tun(monkeypatch, tmp_path):
    monkeypatch.setattr(tap_linux, "DEV_TUN", str(tmp_path / "no-such-tun"))
    with pytest.raises(KernelTapError, match=r"modprobe tun"):
        tap_linux.open_kernel_tap("qtap0", {"script": "no", "downscript": "no"})


def test_missing_default_script_names_it_and_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(tap_linux, "DEFAULT_SCRIPT", str(tmp_path / "qemu-ifup"))
    with pytest.raises(KernelTapError, match=r"qemu-ifup.*does not exist.*script=no"):
        tap_linux.open_kernel_tap("qtap0", {"downscript": "no"})
    with pytest.raises(KernelTapError, match=r"/nonexistent/up does not exist"):
        tap_linux.open_kernel_tap("qtap0", {"script": "/nonexistent/up", "downscript": "no"})


def test_script_that_is_not_executable(tmp_path):
    script = tmp_path / "up"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(KernelTapError, match="not executable"):
        tap_linux.open_kernel_tap("qtap0", {"script": str(script), "downscript": "no"})


def test_kernel_tap_available_says_what_it_has_or_needs():
    ok, text = kernel_tap_available()
    assert isinstance(ok, bool) and text
    if ok:
        assert text.startswith("ready")
    else:
        assert "needs" in text and "recorded run" in text


def test_a_bad_kernel_tap_option_fails_before_anything_is_opened():
    with pytest.raises(KernelTapError, match="bad TAP interface name"):
        qn.Machine.from_cmdline("-netdev tap,id=hn0,host=kernel,ifname=a/b,script=no", guest=None)


def test_tap_capture_sees_each_frame_once_without_its_vnet_header():
    """TAPState.capture: the frames crossing the TAP fd, as tcpdump on the TAP shows them."""
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0 -device virtio-net-pci,id=n0,netdev=hn0")
    vm.boot()
    seen: list[tuple[str, bytes]] = []
    vm.taps["hn0"].capture = lambda d, f: seen.append((d, f))
    assert vm.host().ping(count=2)[1] is not None
    assert [d for d, _ in seen] == ["to-guest", "to-host"] * 2
    assert vm.taps["hn0"].host_vnet_hdr_len == 12         # virtio 1.0 asked for 12
    for _d, f in seen:
        assert f[12:14] == b"\x08\x00" and len(f) == 98     # Ethernet + IPv4, no header
    assert seen[0][1][:6] == bytes.fromhex("525400123456")


def test_tap_close_is_idempotent_and_unregisters_the_fd():
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0,vnet_hdr=off", guest=None)
    tap = vm.taps["hn0"]
    assert any(h.fd is tap.fd for h in vm.loop.handlers)
    tap.close()
    tap.close()
    assert not any(h.fd is tap.fd for h in vm.loop.handlers)


class _RealFd:
    """A socketpair end the main loop watches as a real fd."""

    def __init__(self, loop: MainLoop) -> None:
        self.a, self.b = socket.socketpair()
        self.a.setblocking(False)
        self.got: list[tuple[int, bytes]] = []
        self.loop = loop
        loop.qemu_set_fd_handler(self.a.fileno(), self.on_read, None, self)

    @staticmethod
    def on_read(self: "_RealFd") -> None:
        self.got.append((self.loop.clock_ns, self.a.recv(100)))


def test_real_time_run_does_not_fire_timers_before_their_wall_time():
    """With real fds and a timeout, a virtual 150 ms timer fires after >= 150 wall ms and
    the virtual clock follows the wall clock while the loop waits."""
    loop = MainLoop()
    fd = _RealFd(loop)
    fired: list[tuple[float, int]] = []
    t0 = time.monotonic()
    t = loop.timer_new_ns(lambda _o: fired.append((time.monotonic() - t0, loop.clock_ns)),
                          None)
    loop.timer_mod(t, loop.clock_ns + 150_000_000)
    fd.b.send(b"x")                       # a real frame is already waiting
    loop.run(timeout=0.05)
    assert fd.got and fd.got[0][1] == b"x"
    assert not fired                      # only 50 wall ms have passed
    loop.run(timeout=1.0, until=lambda: bool(fired))
    assert fired
    wall, virt = fired[0]
    assert wall >= 0.145
    assert virt >= 150_000_000
    assert loop.clock_ns < 150_000_000 + 100_000_000   # it tracked wall time, not more
    fd.a.close()
    fd.b.close()


def test_without_timeout_virtual_time_still_jumps():
    loop = MainLoop()
    fd = _RealFd(loop)
    fired = []
    t = loop.timer_new_ns(lambda _o: fired.append(loop.clock_ns), None)
    loop.timer_mod(t, 10_000_000_000)     # 10 virtual seconds
    t0 = time.monotonic()
    loop.run()                            # deterministic mode: jump, do not sleep
    assert fired and fired[0] >= 10_000_000_000
    assert time.monotonic() - t0 < 1.0
    fd.a.close()
    fd.b.close()


def test_eagain_on_a_real_fd_queues_the_frame_until_the_fd_is_writable():
    """tap_receive_iov on EAGAIN: the net layer keeps the frame, the main loop watches the
    fd for writing (tap_write_poll) and flushes the queue when it can take frames again.
    A datagram socketpair stands in for the TAP fd (frame boundaries kept, no root)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = MainLoop()
    fd = tap_linux.KernelTap(os.dup(a.fileno()), "sp0", 0, None, created=False)
    tap = TAPState(loop, None, "t0", fd, "sp0")
    nic = qemu_new_net_client(NetClientInfo("nic", receive=lambda nc, buf: len(buf)), tap.nc,
                              "test-nic", "nic0")
    frames = [bytes([i]) * 1000 for i in range(40)]
    for f in frames:
        qemu_send_packet(nic, f, len(f))
    queued = len(tap.nc.incoming_queue)
    assert queued > 0 and tap.write_poll                 # EAGAIN: kept, fd watched
    assert fd.stats["write EAGAIN"] >= 1
    got: list[bytes] = []
    b.setblocking(False)
    end = time.monotonic() + 5
    while len(got) < len(frames) and time.monotonic() < end:
        try:
            while True:
                got.append(b.recv(4096))
        except BlockingIOError:
            pass
        loop.run(timeout=0.01)
    assert got == frames                                 # none lost, order kept
    assert len(tap.nc.incoming_queue) == 0 and not tap.write_poll
    tap.close()
    assert fd.closed
    a.close()
    b.close()


# -- with a real TAP in a namespace of our own (root) ------------------------------------------
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and /dev/net/tun (CI runs as root)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: `modprobe tun` (or give the container /dev/net/tun)")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command: apt-get install iproute2")


_ns_counter = itertools.count()


def _sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, **kw)


@pytest.fixture
def netns():
    """A network namespace of this test's own (IPv6 off, so only our traffic crosses the
    TAP), deleted afterwards with every process still in it."""
    _need_root()
    name = f"qnl-test-{os.getpid()}-{next(_ns_counter)}"
    r = _sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    try:
        _sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1", check=False)
        _sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        pids = _sh("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _sh("ip", "netns", "del", name, check=False)


def in_ns(ns: str, code: str, timeout: float = 60, user: int | None = None) -> dict:
    """Run Python ``code`` inside the namespace (as ``user`` if given); it prints one JSON
    object last."""
    code = textwrap.dedent(code)
    if user is not None:
        # import first: the interpreter's own files may not be readable by that user
        code = ("import os, json, qnetlearn, qnetlearn.net.tap_linux\n"
                f"os.setgroups([])\nos.setgid({user})\nos.setuid({user})\n" + code)
    r = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", code],
                       capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert r.returncode == 0, f"child failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def link_exists(ns: str, ifname: str) -> bool:
    return _sh("ip", "-n", ns, "link", "show", ifname, check=False).returncode == 0


TAP_LAYER = r'''
import json, os, socket, subprocess
import qnetlearn as qn
from qnetlearn.net.net import qemu_send_packet, qemu_set_vnet_hdr_len

vm = qn.Machine.from_cmdline(
    "-netdev tap,id=hn0,host=kernel,ifname=qtap%d,script=no,downscript=no,vnet_hdr=VNET "
    "-device virtio-net-pci,id=nic0,netdev=hn0", guest=None)
tap = vm.taps["hn0"]
out = {"ifname": tap.ifname, "flags": tap.fd.tun_flags(), "hdr": tap.fd.vnet_hdr_sz,
       "tun_flags": open(f"/sys/class/net/{tap.ifname}/tun_flags").read().strip()}
if tap.fd.vnet_hdr_sz:
    qemu_set_vnet_hdr_len(tap.nc, 12)             # what virtio-net 1.0 asks: TUNSETVNETHDRSZ
    out["kernel_hdr"] = tap.fd.kernel_vnet_hdr_sz()
seen = []
tap.capture = lambda d, f: seen.append([d, f.hex()])
subprocess.run(["ip", "link", "set", tap.ifname, "up"], check=True)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((tap.ifname, 0))
s.settimeout(2)
to_guest = bytes.fromhex("525400123456" "020000000001" "88b5") + b"host to guest" + bytes(40)
s.send(to_guest)
nic = vm.device("nic0")
vm.loop.run(timeout=2, until=lambda: len(nic.nc.incoming_queue) > 0)
q = nic.nc.incoming_queue
out["queued"] = [p.data.hex() for p in q.packets]
out["read_poll"] = tap.read_poll
to_host = bytes.fromhex("020000000001" "525400123456" "88b5") + b"guest to host" + bytes(40)
qemu_send_packet(nic.nc, to_host, len(to_host))
got = None
while True:
    data, addr = s.recvfrom(65536)
    if addr[2] != socket.PACKET_OUTGOING:
        got = data
        break
out["host_got"] = got.hex()
out["seen"] = seen
name = tap.ifname
vm.close()
out["gone"] = not os.path.exists(f"/sys/class/net/{name}")
print(json.dumps(out))
'''


@pytest.mark.root
@pytest.mark.parametrize("vnet", ["on", "off"])
def test_frames_cross_a_real_tap_both_ways(netns, vnet):
    """Written into the TAP from the namespace, a frame reaches tap_send and waits in the
    NIC's queue (no guest: no RX buffers); a frame the NIC sends comes out of the TAP."""
    r = in_ns(netns, TAP_LAYER.replace("VNET", vnet))
    assert re.fullmatch(r"qtap\d+", r["ifname"])          # the kernel numbered 'qtap%d'
    flags = 0x0002 | 0x1000 | (0x4000 if vnet == "on" else 0)
    assert r["flags"] & 0xF00F == flags & 0xF00F
    assert int(r["tun_flags"], 16) & 0xF00F == flags
    assert r["hdr"] == (10 if vnet == "on" else 0)
    if vnet == "on":
        assert r["kernel_hdr"] == 12
    to_guest = bytes.fromhex("525400123456020000000001" "88b5") + b"host to guest" + bytes(40)
    assert r["queued"] == [to_guest.hex()]                # the virtio_net_hdr was removed
    assert r["read_poll"] is False                        # back-pressure: TAP reads paused
    to_host = bytes.fromhex("020000000001525400123456" "88b5") + b"guest to host" + bytes(40)
    assert r["host_got"] == to_host.hex()
    assert r["seen"] == [["to-guest", to_guest.hex()], ["to-host", to_host.hex()]]
    assert r["gone"]


@pytest.mark.root
def test_opening_errors_name_cause_and_fix(netns):
    _sh("ip", "-n", netns, "link", "add", "qveth0", "type", "veth", "peer", "name", "qveth1")
    _sh("ip", "-n", netns, "link", "add", "qbr0", "type", "bridge")
    _sh("ip", "-n", netns, "tuntap", "add", "dev", "qtun0", "mode", "tun")
    r = in_ns(netns, r'''
        import json
        from qnetlearn.net.tap_linux import open_kernel_tap, KernelTapError
        out = {}
        NO = {"script": "no", "downscript": "no"}
        for name in ("qveth0", "qbr0", "qtun0"):
            try:
                open_kernel_tap(name, NO)
            except KernelTapError as e:
                out[name] = str(e)
        first = open_kernel_tap("qbusy0", NO)
        try:
            open_kernel_tap("qbusy0", NO)
        except KernelTapError as e:
            out["busy"] = str(e)
        first.close()
        print(json.dumps(out))
    ''')
    assert "'qveth0' exists and is not a TAP device (it is a" in r["qveth0"]
    assert "ip link del qveth0" in r["qveth0"]
    assert "'qbr0' exists and is not a TAP device (it is a bridge)" in r["qbr0"]
    assert "TUN (layer 3) device, not a TAP" in r["qtun0"]
    assert "already open" in r["busy"]
    assert not link_exists(netns, "qbusy0")


@pytest.mark.root
def test_without_privileges_the_error_says_root_or_cap_net_admin(netns):
    r = in_ns(netns, r'''
        import json
        from qnetlearn.net.tap_linux import open_kernel_tap, KernelTapError, kernel_tap_available
        try:
            open_kernel_tap("qtap0", {"script": "no", "downscript": "no"})
            out = {"error": None}
        except KernelTapError as e:
            out = {"error": str(e)}
        out["available"] = kernel_tap_available()
        print(json.dumps(out))
    ''', user=65534)
    assert r["error"] and "run as root or give the process CAP_NET_ADMIN" in r["error"]
    ok, text = r["available"]
    assert ok is False and "root or CAP_NET_ADMIN" in text


@pytest.mark.root
def test_script_and_downscript_run_with_the_interface_name(netns, tmp_path):
    log = tmp_path / "log"
    up, down, bad = tmp_path / "up", tmp_path / "down", tmp_path / "bad"
    up.write_text(f'#!/bin/sh\necho "up $1 $(cat /sys/class/net/$1/tun_flags)" >> {log}\n'
                  'ip link set "$1" up\n')
    down.write_text(f'#!/bin/sh\necho "down $1" >> {log}\n')
    bad.write_text("#!/bin/sh\nexit 3\n")
    for p in (up, down, bad):
        p.chmod(0o755)
    r = in_ns(netns, f'''
        import json, os
        import qnetlearn as qn
        from qnetlearn.net.tap_linux import open_kernel_tap, KernelTapError
        vm = qn.Machine.from_cmdline(
            "-netdev tap,id=hn0,host=kernel,ifname=qs0,script={up},downscript={down}", guest=None)
        state = open("/sys/class/net/qs0/operstate").read().strip()
        flags = open("/sys/class/net/qs0/flags").read().strip()
        vm.close()
        out = {{"flags": flags, "gone": not os.path.exists("/sys/class/net/qs0")}}
        try:
            open_kernel_tap("qs1", {{"script": "{bad}", "downscript": "{down}"}})
        except KernelTapError as e:
            out["bad"] = str(e)
        out["bad_gone"] = not os.path.exists("/sys/class/net/qs1")
        print(json.dumps(out))
    ''')
    assert int(r["flags"], 16) & 1                        # IFF_UP: the script brought it up
    assert log.read_text().splitlines() == ["up qs0 0x5002", "down qs0"]
    assert r["gone"]
    assert f"network script {bad} qs1 failed with status 3" in r["bad"]
    assert r["bad_gone"]                                  # no TAP left, no downscript run


@pytest.mark.root
def test_an_existing_persistent_tap_is_attached_and_left_in_place(netns):
    _sh("ip", "-n", netns, "tuntap", "add", "dev", "qper0", "mode", "tap")
    r = in_ns(netns, r'''
        import json
        from qnetlearn.net.tap_linux import open_kernel_tap
        t = open_kernel_tap("qper0", {"script": "no", "downscript": "no"})
        out = {"created": t.created, "name": t.ifname}
        t.close()
        print(json.dumps(out))
    ''')
    assert r == {"created": False, "name": "qper0"}
    assert link_exists(netns, "qper0")          # it was the user's; closing keeps it


# -- the emulator as a process, pinged by the real kernel -----------------------------------
class Emulator:
    """``qnetlearn run`` inside the namespace, as a user would start it."""

    def __init__(self, ns: str, line: str, tmp: Path, pcap: bool = True) -> None:
        self.ns = ns
        self.err_path = tmp / "run.err"
        self.out_path = tmp / "run.out"
        self.pcap = tmp / "run.pcap" if pcap else None
        cmd = ["ip", "netns", "exec", ns, PY, "-m", "qnetlearn", "run", line]
        if self.pcap:
            cmd += ["--pcap", str(self.pcap)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=open(self.out_path, "w"),
                                     stderr=open(self.err_path, "w"))

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "is up;" in self.stderr():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"qnetlearn run did not come up:\n{self.stderr()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.stdin:
                self.proc.stdin.close()


def _wait_gone(ns: str, ifname: str, timeout: float = 5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not link_exists(ns, ifname):
            return True
        time.sleep(0.05)
    return False


UDP_CLIENT = r'''
import json, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"qnetlearn echo test", ("10.0.2.15", 7))
data, addr = s.recvfrom(2048)
print(json.dumps({"data": data.decode(), "from": list(addr)}))
'''


def _contiguous(small: list[bytes], big: list[bytes]) -> bool:
    return any(big[i:i + len(small)] == small for i in range(len(big) - len(small) + 1))


RTTS: dict[str, list[float]] = {}


def _nic_case(model: str) -> str:
    if model == "e1000":
        try:
            import qnetlearn.hw.net.e1000  # noqa: F401
        except ImportError as e:
            pytest.skip(f"the e1000 model is not there yet ({e})")
        return E1000
    return SEED


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("model", ["virtio-net-pci", "e1000"])
def test_real_ping_and_udp_echo_through_the_emulator(netns, tmp_path, model):
    """The seed's machine on a real TAP: `ping -c 5` gets five replies, UDP echo answers,
    tcpdump on the TAP sees exactly the frames of the project's own pcap, and SIGTERM
    closes the machine and removes the TAP."""
    if shutil.which("ping") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs ping and tcpdump (apt-get install iputils-ping tcpdump)")
    line = _nic_case(model)
    emu = Emulator(netns, line, tmp_path)
    tcpdump = None
    try:
        emu.wait_ready()
        assert link_exists(netns, "qtap0")
        _sh("ip", "-n", netns, "addr", "add", "10.0.2.2/24", "dev", "qtap0")
        _sh("ip", "-n", netns, "link", "set", "qtap0", "up")
        cap = tmp_path / "tcpdump.pcap"
        td_err = tmp_path / "tcpdump.err"
        tcpdump = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-i", "qtap0",
                                    "-n", "-U", "--immediate-mode", "-s", "0",
                                    "-w", str(cap)],
                                   stdout=subprocess.DEVNULL, stderr=open(td_err, "w"))
        end = time.monotonic() + 10
        while "listening on" not in td_err.read_text() and time.monotonic() < end:
            time.sleep(0.05)
        ping = _sh("ip", "netns", "exec", netns, "ping", "-c", "5", "-W", "2", GUEST,
                   check=False, timeout=60)
        assert "5 packets transmitted, 5 received" in ping.stdout, ping.stdout + ping.stderr
        RTTS[model] = [float(x) for x in re.findall(r"time=([\d.]+) ms", ping.stdout)]
        udp = _sh("ip", "netns", "exec", netns, PY, "-c", UDP_CLIENT, timeout=30)
        got = json.loads(udp.stdout)
        assert got == {"data": "qnetlearn echo test", "from": [GUEST, 7]}
        time.sleep(0.3)
        tcpdump.send_signal(signal.SIGINT)
        tcpdump.wait(10)
        tcpdump = None
        assert emu.stop(signal.SIGTERM) == 0, emu.stderr()
        assert "SIGTERM: shutting down" in emu.stderr()
        assert _wait_gone(netns, "qtap0", timeout=1)
        theirs = [f for _t, f in read_pcap(cap)]
        ours = [f for _t, f in read_pcap(emu.pcap)]
        echo = [f for f in theirs if len(f) >= 35 and f[12:14] == b"\x08\x00" and f[23] == 1]
        assert len(echo) == 10                     # five requests, five replies
        udp_frames = [f for f in theirs if len(f) >= 42 and f[12:14] == b"\x08\x00"
                      and f[23] == 17 and b"qnetlearn echo test" in f]
        assert len(udp_frames) == 2                # the datagram and its echo
        assert any(f[12:14] == b"\x08\x06" for f in ours)    # the ARP was for real
        assert theirs and _contiguous(theirs, ours), (len(theirs), len(ours))
    finally:
        if tcpdump is not None:
            tcpdump.kill()
        if emu.proc.poll() is None:
            emu.proc.kill()
            emu.proc.wait()


@pytest.mark.root
def test_sigkill_leaves_no_tap_behind(netns, tmp_path):
    emu = Emulator(netns, SEED, tmp_path, pcap=False)
    try:
        emu.wait_ready()
        assert link_exists(netns, "qtap0")
        emu.stop(signal.SIGKILL)
        assert emu.proc.returncode == -signal.SIGKILL
        assert _wait_gone(netns, "qtap0")
        assert _sh("ip", "-n", netns, "link", "show", "qtap0", check=False).returncode != 0
    finally:
        if emu.proc.poll() is None:
            emu.proc.kill()


@pytest.mark.root
def test_sigint_closes_the_machine_and_runs_the_downscript(netns, tmp_path):
    log = tmp_path / "down.log"
    down = tmp_path / "down"
    down.write_text(f'#!/bin/sh\necho "$1 $(cat /sys/class/net/$1/tun_flags)" > {log}\n')
    down.chmod(0o755)
    line = SEED.replace("downscript=no", f"downscript={down}")
    emu = Emulator(netns, line, tmp_path, pcap=False)
    try:
        emu.wait_ready()
        assert emu.stop(signal.SIGINT) == 0, emu.stderr()
        assert log.read_text().split() == ["qtap0", "0x5002"]   # ran while the TAP existed
        assert _wait_gone(netns, "qtap0", timeout=1)
    finally:
        if emu.proc.poll() is None:
            emu.proc.kill()


def teardown_module(module) -> None:
    for model, rtts in RTTS.items():
        if rtts:
            print(f"\nreal ping RTT through the emulator ({model}): min/median/max "
                  f"{min(rtts):.3f}/{statistics.median(rtts):.3f}/{max(rtts):.3f} ms")


@pytest.mark.root
def test_a_failing_downscript_is_reported_not_fatal(netns, tmp_path):
    down = tmp_path / "down"
    down.write_text("#!/bin/sh\nexit 4\n")
    down.chmod(0o755)
    emu = Emulator(netns, SEED.replace("downscript=no", f"downscript={down}"), tmp_path,
                   pcap=False)
    try:
        emu.wait_ready()
        assert emu.stop(signal.SIGTERM) == 0
        assert f"network script {down} qtap0 failed with status 4" in emu.stderr()
        assert _wait_gone(netns, "qtap0", timeout=1)
    finally:
        if emu.proc.poll() is None:
            emu.proc.kill()
