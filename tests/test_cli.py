"""The ``qnetlearn`` command: topology, trace, costs, run (simulated host end), bad lines."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import qnetlearn as qn
from qnetlearn.cli import LiveTrace, main
from qnetlearn.net.dump import read_pcap

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VIRTIO = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
HUB = "-net nic,model=e1000 -net tap"
SEED = ("qemu-system-x86_64 disk.img -machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "qnetlearn", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def has_e1000() -> bool:
    try:
        import qnetlearn.hw.net.e1000  # noqa: F401
        return True
    except ImportError:
        return False


# -- topology ---------------------------------------------------------------------------------
def test_topology_of_the_seed(capsys):
    assert main(["topology", SEED]) == 0
    out = capsys.readouterr().out
    assert "hn0          tap      script=/etc/qemu-ifup downscript=/etc/qemu-ifdown" in out
    assert "peer: NIC net-pci0 (virtio-net-pci)" in out
    assert "00:03.0  net-pci0     virtio-net-pci  mac 52:54:00:12:34:56  netdev hn0" in out
    assert "tap hn0 <-> virtio-net-pci net-pci0" in out
    assert "Hubs:\n  (none)" in out


def test_topology_of_a_hub(capsys):
    assert main(["topology", HUB]) == 0
    out = capsys.readouterr().out
    assert "hub 0" in out
    assert "hub0port0    peer: NIC e1000.0 (e1000)" in out
    assert "hub0port1    peer: tap #net1" in out
    assert "tap #net1 <-> hub 0 (hub0port1) <-> e1000 e1000.0" in out


def test_topology_never_opens_a_real_tap(capsys):
    line = "-netdev tap,id=hn0,host=kernel,ifname=qnl-never0 -device virtio-net-pci,netdev=hn0"
    assert main(["topology", line]) == 0
    assert "host=kernel ifname=qnl-never0" in capsys.readouterr().out
    assert not os.path.exists("/sys/class/net/qnl-never0")


def test_topology_svg(tmp_path, capsys):
    pytest.importorskip("networkx", reason="--svg needs the course extras (networkx)")
    pytest.importorskip("matplotlib", reason="--svg needs the course extras (matplotlib)")
    svg = tmp_path / "t.svg"
    assert main(["topology", HUB + " " + VIRTIO, "--svg", str(svg)]) == 0
    text = svg.read_text()
    assert "<svg" in text and "</svg>" in text


# -- trace ------------------------------------------------------------------------------------
def _reference_trace(line: str, n: int) -> tuple[str, int]:
    vm = qn.Machine.from_cmdline(line).boot()
    with vm.record() as rec:
        vm.host().ping(count=n)
    return rec.to_qemu_trace(), len(rec.steps)


def test_trace_qemu_format_is_exactly_to_qemu_trace(capsys):
    assert main(["trace", VIRTIO, "--ping", "2"]) == 0
    cap = capsys.readouterr()
    expected, _ = _reference_trace(VIRTIO, 2)
    assert cap.out == expected
    assert "[main] virtqueue_fill vq vq0 elem elem1 len 110 idx 0" in cap.out
    assert "2/2 echo replies" in cap.err


def test_trace_json_lines(capsys):
    assert main(["trace", VIRTIO, "--ping", "1", "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    _, nsteps = _reference_trace(VIRTIO, 1)
    assert len(lines) == nsteps
    steps = [json.loads(x) for x in lines]
    for s in steps:
        assert list(s) == ["kind", "name", "depth", "args", "time_ns", "context"]
        assert s["kind"] in ("call", "return", "event")
    assert steps[0]["name"] == "tap_send" and steps[0]["depth"] == 0
    fill = next(s for s in steps if s["name"] == "virtqueue_fill" and s["kind"] == "event")
    assert fill["kind"] == "event" and fill["args"]["len"] == 110
    assert {s["context"] for s in steps} >= {"main-loop", "vcpu0"}


def test_trace_warmup_and_pcap(tmp_path, capsys):
    pcap = tmp_path / "t.pcap"
    assert main(["trace", VIRTIO, "--ping", "3", "--warmup", "2", "--pcap", str(pcap)]) == 0
    frames = read_pcap(pcap)
    assert len(frames) == 6
    for i, (_t, f) in enumerate(frames):
        assert len(f) == 98 and f[12:14] == b"\x08\x00" and f[23] == 1   # IPv4 ICMP
        assert f[34] == (8 if i % 2 == 0 else 0)         # request, reply, ...
    assert frames[0][1][:6] == bytes.fromhex("525400123456")   # no virtio_net_hdr in front
    assert [t for t, _ in frames] == sorted(t for t, _ in frames)


def test_trace_pcap_reads_back_with_tshark(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    pcap = tmp_path / "t.pcap"
    assert main(["trace", VIRTIO, "--pcap", str(pcap)]) == 0
    r = subprocess.run(["tshark", "-r", str(pcap)], capture_output=True, text=True)
    assert "Echo (ping) request" in r.stdout and "Echo (ping) reply" in r.stdout


@pytest.mark.skipif(not has_e1000(), reason="the e1000 model is not there yet")
def test_trace_through_a_hub(capsys):
    assert main(["trace", HUB, "--ping", "1"]) == 0
    out = capsys.readouterr().out
    assert "e1000" in out


def test_trace_without_a_tap_is_a_clear_error(capsys):
    assert main(["trace", "-device virtio-net-pci,id=n0"]) == 1
    assert "no -netdev tap" in capsys.readouterr().err


def test_trace_ignores_host_kernel(capsys):
    line = "-netdev tap,id=hn0,host=kernel,ifname=qnl-never1 -device virtio-net-pci,netdev=hn0"
    assert main(["trace", line]) == 0
    assert "host=kernel ignored for hn0" in capsys.readouterr().err
    assert not os.path.exists("/sys/class/net/qnl-never1")


# -- costs ------------------------------------------------------------------------------------
def test_costs_table(capsys):
    assert main(["costs", VIRTIO, "--ping", "4"]) == 0
    out = capsys.readouterr().out
    assert "accelerator tcg, 4 echo request/reply pairs" in out
    for row in ("MMIO accesses (TCG)", "PIO accesses (TCG)", "eventfd kicks",
                "interrupts", "bytes copied by devices"):
        assert row in out
    copied = next(x for x in out.splitlines() if x.startswith("bytes copied by devices"))
    assert float(copied.split()[4]) == 220.0          # 110 in + 110 out per echo
    assert "every counter that changed:" in out


def test_costs_under_kvm_counts_exits(capsys):
    assert main(["costs", "-machine pc,accel=kvm " + VIRTIO, "--ping", "3"]) == 0
    out = capsys.readouterr().out
    assert "accelerator kvm" in out and "MMIO exits" in out


# -- bad command lines ------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["topology", "trace", "costs", "run"])
def test_bad_command_line_prints_the_reason_and_exits_1(cmd, capsys):
    assert main([cmd, "-netdev tap,id=hn0,foo=1"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "qnetlearn: -netdev tap,id=hn0,foo=1: Invalid parameter 'foo'"


def test_help_request_prints_help(capsys):
    assert main(["topology", "-netdev help"]) == 0
    assert "tap" in capsys.readouterr().out


def test_usage_errors():
    assert main([]) == 2
    assert main(["nonsense"]) == 2
    assert main(["trace", VIRTIO, "--format", "xml"]) == 2
    assert main(["--help"]) == 0


# -- through a real process -------------------------------------------------------------------
def test_subprocess_topology_trace_costs():
    r = cli("topology", SEED)
    assert r.returncode == 0 and "virtio-net-pci" in r.stdout
    r = cli("trace", VIRTIO, "--ping", "1")
    assert r.returncode == 0 and r.stdout == _reference_trace(VIRTIO, 1)[0]
    r = cli("trace", VIRTIO, "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["name"] == "tap_send"
    r = cli("costs", VIRTIO, "--ping", "2")
    assert r.returncode == 0 and "interrupts" in r.stdout


def test_subprocess_bad_command_line_has_no_traceback():
    r = cli("trace", "-netdev tap,id=hn0 -device virtio-net-pci,netdev=nope")
    assert r.returncode == 1
    assert r.stderr.startswith("qnetlearn: -device virtio-net-pci,netdev=nope:")
    assert "Traceback" not in r.stderr


def test_console_script_is_installed():
    exe = Path(PY).with_name("qnetlearn")
    if not exe.exists():
        pytest.skip("the qnetlearn console script is not installed in this environment")
    r = subprocess.run([str(exe), "topology", VIRTIO], capture_output=True, text=True)
    assert r.returncode == 0 and "net-pci0" in r.stdout


# -- run, on the simulated host end (no privileges needed) -----------------------------------
def _run_proc(args: list[str], tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    out, err = tmp / "out", tmp / "err"
    p = subprocess.Popen([PY, "-m", "qnetlearn", "run", *args], cwd=REPO,
                         stdin=subprocess.PIPE, stdout=open(out, "w"), stderr=open(err, "w"))
    return p, out, err


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(path.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_with_a_simulated_host_stops_cleanly_on_a_signal(tmp_path, sig):
    line = "-netdev tap,id=hn0,host=sim -device virtio-net-pci,netdev=hn0"
    p, out, err = _run_proc([line, "--trace", "virtio_*"], tmp_path)
    try:
        _wait_for(err, "is up;", p)
        assert "netdev hn0: simulated TAP tap0" in err.read_text()
        p.send_signal(sig)
        assert p.wait(15) == 0
        assert f"{signal.Signals(sig).name}: shutting down" in err.read_text()
        assert "[vcpu0] virtio_set_status vdev vdev0 val 15" in out.read_text()
    finally:
        if p.poll() is None:
            p.kill()
        p.stdin.close()


def test_run_refuses_a_bad_line(capsys):
    assert main(["run", "-netdev tap,id=hn0 -device e1001,netdev=hn0"]) == 1
    assert "e1001" in capsys.readouterr().err


def test_run_uses_the_monitor_console_when_there_is_one(monkeypatch, capsys):
    """-monitor stdio calls qnetlearn.monitor.console.run_monitor_stdio(vm, stdin, stdout);
    when it returns (quit), the run ends and the machine is closed."""
    seen = {}

    def run_monitor_stdio(vm, stdin, stdout):
        seen["tap"] = vm.taps["hn0"]
        stdout.write("(qemu) ")
        return None

    fake = types.ModuleType("qnetlearn.monitor.console")
    fake.run_monitor_stdio = run_monitor_stdio
    monkeypatch.setitem(sys.modules, "qnetlearn.monitor.console", fake)
    line = "-netdev tap,id=hn0,host=sim -device virtio-net-pci,netdev=hn0 -monitor stdio"
    assert main(["run", line]) == 0
    cap = capsys.readouterr()
    assert "(qemu) " in cap.out and "quit: shutting down" in cap.err
    assert seen["tap"].closed


def test_live_trace_prints_what_to_qemu_trace_prints():
    """The live printer of `run --trace` formats events as rec.to_qemu_trace() does."""
    pats = ["virtqueue_*", "virtio_notify", "msix_*", "apic_*"]
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    buf = io.StringIO()
    live = LiveTrace(pats, buf).attach()
    try:
        vm.host().ping(count=2)
    finally:
        live.detach()
    expected, _ = _reference_trace(VIRTIO, 2)
    import fnmatch
    keep = [x for x in expected.splitlines()
            if any(fnmatch.fnmatchcase(x.split()[1], p) for p in pats)]
    assert buf.getvalue().splitlines() == keep
    assert live.printed == len(keep) > 10


def test_live_trace_can_name_traced_functions():
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    buf = io.StringIO()
    live = LiveTrace(["tap_send", "qemu_send_packet_async"], buf).attach()
    try:
        vm.host().ping(count=1)
    finally:
        live.detach()
    lines = buf.getvalue().splitlines()
    assert lines[:2] == ["[main] > tap_send", "[main] > qemu_send_packet_async size 110"]


def test_run_without_dev_net_tun_says_what_to_do(monkeypatch, capsys):
    from qnetlearn.net import tap_linux
    monkeypatch.setattr(tap_linux, "DEV_TUN", "/nonexistent/tun")
    line = "-netdev tap,id=hn0,script=no,downscript=no -device virtio-net-pci,netdev=hn0"
    assert main(["run", line]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qnetlearn: /nonexistent/tun does not exist") and "modprobe tun" in err


def test_run_defaults_to_qemus_ifup_script(monkeypatch, tmp_path, capsys):
    """Like QEMU, a tap without script= runs /etc/qemu-ifup; a missing one is named."""
    from qnetlearn.net import tap_linux
    monkeypatch.setattr(tap_linux, "DEFAULT_SCRIPT", str(tmp_path / "qemu-ifup"))
    assert main(["run", "-netdev tap,id=hn0 -device virtio-net-pci,netdev=hn0"]) == 1
    err = capsys.readouterr().err
    assert f"network script {tmp_path / 'qemu-ifup'} (QEMU's default) does not exist" in err
    assert "script=no" in err


def _has_console() -> bool:
    try:
        from qnetlearn.monitor.console import run_monitor_stdio  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_console(), reason="qnetlearn.monitor.console is not there yet")
def test_run_monitor_stdio_prompt_in_process(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("info network\nquit\n"))
    line = "-netdev tap,id=hn0,host=sim -device virtio-net-pci,id=net-pci0,netdev=hn0 " \
           "-monitor stdio"
    assert main(["run", line]) == 0
    cap = capsys.readouterr()
    assert "(qemu) " in cap.out and " \\ hn0: index=0,type=tap" in cap.out
    assert "quit: shutting down" in cap.err


@pytest.mark.skipif(not _has_console(), reason="qnetlearn.monitor.console is not there yet")
def test_run_monitor_stdio_prompt_in_a_process(tmp_path):
    line = "-netdev tap,id=hn0,host=sim -device virtio-net-pci,id=net-pci0,netdev=hn0 " \
           "-monitor stdio"
    p, out, err = _run_proc([line], tmp_path)
    try:
        _wait_for(err, "is up;", p)
        p.stdin.write(b"info network\n")
        p.stdin.flush()
        _wait_for(out, "type=tap", p)
        p.send_signal(signal.SIGTERM)              # a signal ends the prompt too
        assert p.wait(15) == 0
        assert "SIGTERM: shutting down" in err.read_text()
    finally:
        if p.poll() is None:
            p.kill()
        p.stdin.close()
