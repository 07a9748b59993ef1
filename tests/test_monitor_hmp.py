"""HMP (``vm.monitor``): QEMU 7.2's text, checked against the real outputs in golden-qemu."""
from __future__ import annotations

import re
import shlex
import socket
import time
from pathlib import Path

import pytest

import qnetlearn as qn
from qnetlearn.monitor.hmp import HMP_CMDS, HMP_INFO_CMDS
from qnetlearn.trace.golden import golden_dir

GOLDENS = ["virtio", "virtio-noeventidx", "virtio-nomrg", "e1000-hub", "e1000-hubport"]
VD = "/machine/peripheral/net-pci0/virtio-backend"
VIRTIO = "-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no " \
         "-device virtio-net-pci,id=net-pci0,netdev=hn0"
E1000_HUB = "-net nic,model=e1000 -net tap,ifname=qtap0,script=no,downscript=no"


def run_info(name: str) -> str:
    return (golden_dir() / f"{name}-run-info.txt").read_text()


def golden_cmdline(name: str, guest_dir: Path) -> list[str]:
    """The golden's QEMU command line (shell-quoted in the file), $GUEST_DIR -> guest_dir;
    its -monitor unix socket then lives in guest_dir/runs/<name>/ (served by us)."""
    line = run_info(name).split("## command line\n")[1].split("\n")[0]
    (guest_dir / "runs" / name).mkdir(parents=True, exist_ok=True)
    return shlex.split(line.replace("$GUEST_DIR", str(guest_dir)))


def golden_info_network(name: str) -> str:
    return run_info(name).split("## info network\n")[1].split("## ")[0]


def norm_ids(text: str) -> str:
    """-net clients get a generated id (#net<N>, QEMU's N has random digits)."""
    return re.sub(r"#net\d+", "#netN", text)


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # unix socket paths are limited to 108 bytes: keep the base short
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="qnl"))
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


# -- info network, against the real QEMU outputs ------------------------------------------
@pytest.mark.parametrize("name", GOLDENS)
def test_info_network_matches_qemu(name: str, short_tmp: Path) -> None:
    vm = qn.Machine.from_cmdline(golden_cmdline(name, short_tmp), guest=None)
    try:
        assert norm_ids(vm.monitor("info network")) == norm_ids(golden_info_network(name))
    finally:
        vm.close()


def test_golden_monitor_socket_serves_hmp(short_tmp: Path) -> None:
    """The goldens' own ``-monitor unix:...,server=on,wait=off`` is served: banner, prompt,
    echo and the same ``info network``, with QEMU's CRLF line ends."""
    vm = qn.Machine.from_cmdline(golden_cmdline("virtio", short_tmp), guest=None)
    path = short_tmp / "runs" / "virtio" / "mon.sock"
    try:
        assert path.exists()
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        s.setblocking(False)
        got = b""

        def pump(until: bytes, timeout: float = 5.0) -> bytes:
            nonlocal got
            end = time.monotonic() + timeout
            while until not in got and time.monotonic() < end:
                vm.run(timeout=0.02)
                try:
                    got += s.recv(65536)
                except BlockingIOError:
                    pass
            out, got = got, b""
            return out

        assert pump(b"(qemu) ") == \
            b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) "
        s.sendall(b"info network\n")
        out = pump(b"(qemu) ").decode()
        expected = golden_info_network("virtio").replace("\n", "\r\n")
        assert out == "info network\r\n" + expected + "(qemu) "
        s.sendall(b"quit\n")
        pump(b"never", timeout=0.3)
        assert s.recv(10) == b""          # quit closed the connection
        s.close()
    finally:
        vm.close()
    assert not path.exists()


# -- info virtio-queue-status / -element, against the real QEMU outputs ---------------------
def vq_state(vm: qn.Machine, label: str) -> str:
    """What run_golden.sh's vqstate() records: grep'd queue-status lines and the avail/used
    part of queue-element with runs of spaces and newlines squeezed to one space."""
    out = [f"=== {label}"]
    for q in (0, 1):
        st = vm.monitor(f"info virtio-queue-status {VD} {q}")
        out += [ln for ln in st.splitlines()
                if re.search(r"queue_index|inuse|used_idx|signalled|avail_idx", ln)]
        el = vm.monitor(f"info virtio-queue-element {VD} {q}")
        tail = el[el.index("  avail:"):]
        out.append(re.sub(r"[ \n]+", " ", tail))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", ["virtio", "virtio-noeventidx", "virtio-nomrg"])
def test_virtio_queue_state_matches_qemu(name: str, short_tmp: Path) -> None:
    """Before ping 1, after ping 1 and after 5 more: the indices the emulator models
    (used_idx, signalled_used(_valid), last/shadow_avail_idx, inuse, ring flags and
    indices) are QEMU's own, line for line."""
    vm = qn.Machine.from_cmdline(golden_cmdline(name, short_tmp)).boot()
    try:
        got = vq_state(vm, "before ping -c 1")
        assert vm.host().ping(count=1)[0] is not None
        got += vq_state(vm, "after ping -c 1")
        assert None not in vm.host().ping(count=5)
        got += vq_state(vm, "after ping -c 5 -i 0.2")
        assert got == (golden_dir() / f"{name}-vq-state.txt").read_text()
    finally:
        vm.close()


def test_virtio_queue_status_full_format() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    out = vm.monitor(f"info virtio-queue-status {VD} 1")
    vq = vm.device("net-pci0").vdev.vq[1]
    assert out == (
        f"{VD}:\n"
        "  device_name:          virtio-net\n"
        "  queue_index:          1\n"
        "  inuse:                0\n"
        "  used_idx:             0\n"
        "  signalled_used:       0\n"
        "  signalled_used_valid: false\n"
        "  last_avail_idx:       0\n"
        "  shadow_avail_idx:     0\n"
        "  VRing:\n"
        "    num:          256\n"
        "    num_default:  256\n"
        "    align:        4096\n"
        f"    desc:         0x{vq.desc:016x}\n"
        f"    avail:        0x{vq.avail:016x}\n"
        f"    used:         0x{vq.used:016x}\n")
    el = vm.monitor(f"info virtio-queue-element {VD} 0")
    assert re.fullmatch(rf"{VD}:\n  device_name: virtio-net\n  index:   0\n  desc:\n    descs:\n"
                        r"        addr 0x[0-9a-f]+ len 1536 \(write\)\n  avail:\n    flags: 0\n"
                        r"    idx:   256\n    ring:  0\n  used:\n    flags: 0\n    idx:   0\n", el)
    # a partial QOM path resolves as in QEMU; errors are QEMU's
    assert vm.monitor("info virtio-queue-status net-pci0/virtio-backend 0").startswith(
        "net-pci0/virtio-backend:\n  device_name:          virtio-net\n")
    assert vm.monitor("info virtio-queue-status /machine/peripheral/net-pci0 0") == \
        "Error: Path /machine/peripheral/net-pci0 is not a VirtIODevice\n"
    assert vm.monitor(f"info virtio-queue-status {VD} 2") == "Error: Invalid virtqueue number 2\n"
    assert vm.monitor(f"info virtio-queue-element {VD} 7") == "Error: Invalid virtqueue number 7\n"
    assert vm.monitor(f"info virtio-queue-status {VD} -1") == \
        "'virtio-queue-status' has failed: integer is for 32-bit values\n" \
        'Try "help info virtio-queue-status" for more information\n'


def test_info_virtio_and_status() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    assert vm.monitor("info virtio") == f"{VD} [virtio-net]\n"
    out = vm.monitor(f"info virtio-status {VD}")
    lines = out.splitlines()
    assert lines[0] == f"{VD}:"
    assert lines[1] == "  device_name:             virtio-net "      # QEMU's trailing space
    assert "  device_id:               1" in lines
    assert "  started:                 true" in lines
    assert "  num_vqs:                 2" in lines
    assert "  endianness:              little" in lines
    i = lines.index("  status:")
    assert lines[i + 1:i + 5] == [
        "\tVIRTIO_CONFIG_S_ACKNOWLEDGE: Valid virtio device found,",
        "\tVIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device,",
        "\tVIRTIO_CONFIG_S_FEATURES_OK: Feature negotiation complete,",
        "\tVIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready"]
    g = lines.index("  Guest features:")
    assert "\tVIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)" in lines[g:]
    assert "\tVIRTIO_NET_F_MRG_RXBUF: Driver can merge receive buffers," in lines[g:]
    assert lines.index("  Host features:") < lines.index("  Backend features:")
    vm2 = qn.Machine.from_cmdline(E1000_HUB, guest=None)
    assert vm2.monitor("info virtio") == "Error: No virtio devices found\n"
    assert vm.monitor("info virtio-vhost-queue-status " + VD + " 0") == \
        "Error: Error: vhost device has not started yet\n"


def test_anonymous_device_paths() -> None:
    vm = qn.Machine.from_cmdline("-netdev tap,id=a -device virtio-net-pci,netdev=a "
                                 "-netdev tap,id=b -device virtio-net-pci,netdev=b", guest=None)
    assert vm.monitor("info virtio") == (
        "/machine/peripheral-anon/device[0]/virtio-backend [virtio-net]\n"
        "/machine/peripheral-anon/device[1]/virtio-backend [virtio-net]\n")
    # "virtio-backend" alone is ambiguous here, as object_resolve_path says
    assert vm.monitor("info virtio-status virtio-backend") == \
        "Error: Path virtio-backend is not a VirtIODevice\n"
    assert vm.monitor("info virtio-status device[1]/virtio-backend").startswith(
        "device[1]/virtio-backend:\n")


# -- info pci, info mtree, info irq -------------------------------------------------------
def test_info_pci_layout() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    out = vm.monitor("info pci")
    dev = vm.device("net-pci0")
    b1, b4 = dev.bars[1].addr, dev.bars[4].addr
    io = dev.bar_address(0)
    assert out.startswith("  Bus  0, device   0, function 0:\n    Host bridge: PCI device "
                          "8086:1237\n")
    assert ("  Bus  0, device   3, function 0:\n"
            "    Ethernet controller: PCI device 1af4:1000\n"
            "      PCI subsystem 1af4:0001\n"
            "      IRQ 11, pin A\n"
            f"      BAR0: I/O at 0x{io:04x} [0x{io + 0x3f:04x}].\n"
            f"      BAR1: 32 bit memory at 0x{b1:08x} [0x{b1 + 0xfff:08x}].\n"
            f"      BAR4: 64 bit prefetchable memory at 0x{b4:08x} [0x{b4 + 0x3fff:08x}].\n"
            '      id "net-pci0"\n') in out
    e = qn.Machine.from_cmdline(E1000_HUB).boot().monitor("info pci")
    assert "    Ethernet controller: PCI device 8086:100e\n" in e
    assert re.search(r"      BAR0: 32 bit memory at 0x[0-9a-f]{8} \[0x[0-9a-f]{8}\]\.\n"
                     r"      BAR1: I/O at 0x[0-9a-f]{4} \[0x[0-9a-f]{4}\]\.\n      id \"\"\n", e)
    unbooted = qn.Machine.from_cmdline(VIRTIO, guest=None).monitor("info pci")
    assert "      BAR1: 32 bit memory at 0xffffffffffffffff [0x00000ffe].\n" in unbooted


def test_info_mtree_tree() -> None:
    vm = qn.Machine.from_cmdline("-m 2048 " + VIRTIO).boot()
    out = vm.monitor("info mtree")
    dev = vm.device("net-pci0")
    m, v = dev.bars[1].addr, dev.bars[4].addr
    lines = out.splitlines()
    assert lines[:5] == [
        "address-space: cpu-memory-0",
        "address-space: memory",
        "  0000000000000000-ffffffffffffffff (prio 0, i/o): system",
        "    0000000000000000-000000007fffffff (prio 0, ram): alias ram-below-4g @pc.ram "
        "0000000000000000-000000007fffffff",
        "    0000000000000000-ffffffffffffffff (prio -1, i/o): pci"]
    assert f"      {m:016x}-{m + 0xfff:016x} (prio 1, i/o): virtio-net-pci-msix" in lines
    assert f"        {m:016x}-{m + 0x3f:016x} (prio 0, i/o): msix-table" in lines
    assert f"        {m + 0x800:016x}-{m + 0x807:016x} (prio 0, i/o): msix-pba" in lines
    assert f"        {v:016x}-{v + 0xfff:016x} (prio 0, i/o): virtio-pci-common-virtio-net" \
        in lines
    assert f"        {v + 0x3000:016x}-{v + 0x3fff:016x} (prio 0, i/o): " \
           "virtio-pci-notify-virtio-net" in lines
    assert "    00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic" in lines
    assert "    00000000fee00000-00000000feefffff (prio 4096, i/o): apic-msi" in lines
    assert out.endswith("\nmemory-region: pc.ram\n"
                        "  0000000000000000-000000007fffffff (prio 0, ram): pc.ram\n\n")
    assert "owner:{dev id=net-pci0}" in vm.monitor("info mtree -o")
    assert vm.monitor("info mtree -x") == \
        'mtree: unsupported option -x\nTry "help info mtree" for more information\n'


def test_info_irq_counts() -> None:
    vm = qn.Machine.from_cmdline(E1000_HUB).boot()
    vm.host().ping(count=2)
    out = vm.monitor("info irq")
    assert out.startswith("IRQ statistics for ioapic:\n")
    n = int(re.search(r"^11: (\d+)$", out, re.M).group(1))
    assert n == vm.ioapic.stats["pin 11 level 1"] > 0
    v = qn.Machine.from_cmdline(VIRTIO).boot()
    v.host().ping(count=3)
    out = v.monitor("info irq")
    assert re.search(r"^39: [1-9]\d*$", out, re.M) and re.search(r"^40: [1-9]\d*$", out, re.M)


# -- set_link ----------------------------------------------------------------------------
def test_set_link_drops_are_counted() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO).boot()
    assert vm.host().ping(count=1) != [None]
    assert vm.monitor("set_link hn0 off") == ""
    assert vm.host().ping(count=2) == [None, None]
    assert vm.netdev("hn0").stats["drop: link down"] == 2
    assert vm.monitor("set_link hn0 on") == ""
    assert None not in vm.host().ping(count=2)
    assert vm.monitor("set_link net-pci0 off") == ""          # a NIC's name works too
    assert vm.device("net-pci0").nc.link_down and vm.netdev("hn0").stats[
        "drop: receiver link down"] == 0
    assert vm.monitor("set_link net-pci0 on") == ""
    assert vm.monitor("set_link nosuch on") == "Error: Device 'nosuch' not found\n"
    assert vm.monitor("set_link hn0 up") == \
        "Expected 'on' or 'off'\nTry \"help set_link\" for more information\n"


# -- x / xp --------------------------------------------------------------------------------
def test_memory_dump_formats() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO, guest=None)
    vm.memory.write_bytes(0x1000, bytes(range(0x41, 0x51)) + b"\n'\\\x00")
    assert vm.monitor("xp /16xb 0x1000") == (
        "0000000000001000: 0x41 0x42 0x43 0x44 0x45 0x46 0x47 0x48\n"
        "0000000000001008: 0x49 0x4a 0x4b 0x4c 0x4d 0x4e 0x4f 0x50\n")
    assert vm.monitor("xp /2xw 0x1000") == "0000000000001000: 0x44434241 0x48474645\n"
    assert vm.monitor("xp /2xg 0x1000") == \
        "0000000000001000: 0x4847464544434241 0x504f4e4d4c4b4a49\n"
    assert vm.monitor("xp /3dh 0x1000") == "0000000000001000: 16961 17475 17989\n"
    assert vm.monitor("xp /2uw 0x1000") == "0000000000001000: 1145258561 1212630597\n"
    assert vm.monitor("xp /2ob 0x1000") == "0000000000001000: 0101 0102\n"
    assert vm.monitor("xp /4cb 0x100f") == "000000000000100f: 'P' '\\n' '\\'' '\\\\'\n"
    assert vm.monitor("xp /5x 0x1000") == (        # the format and size are remembered
        "0000000000001000: 0x41 0x42 0x43 0x44 0x45\n")
    # expressions, and x = xp (no paging)
    assert vm.monitor("x /1xb 0x800 + 0x800 + (2 * 3) - 6") == "0000000000001000: 0x41\n"
    assert vm.monitor("x/xw 0x1000") == vm.monitor("xp/xw 0x1000")
    assert vm.monitor("xp /1xw 0xf0000000") == "00000000f0000000: Cannot access memory\n"
    # the APIC window is MMIO: readable through its region
    assert vm.monitor("xp /1xw 0xfee00020") == "00000000fee00020: 0x00000000\n"
    assert vm.monitor("xp /i 0").startswith("qnetlearn: format 'i'")


@pytest.mark.parametrize("line,expected", [
    ("foo", "unknown command: 'foo'\n"),
    ("info foo", "unknown command: 'info foo'\n"),
    ("  foo bar", "unknown command: '  foo'\n"),
    ("xp /8z 0", "invalid char in format: 'z'\nTry \"help xp\" for more information\n"),
    ("xp", "unexpected end of expression\nTry \"help xp\" for more information\n"),
    ("xp 1/0", "division by zero\nTry \"help xp\" for more information\n"),
    ("xp (1", "')' expected\nTry \"help xp\" for more information\n"),
    ("xp $eax", "unknown register\nTry \"help xp\" for more information\n"),
    ("xp 0x10 junk", "xp: extraneous characters at the end of line\n"
                     "Try \"help xp\" for more information\n"),
    ("xp 99999999999999999999999", "number too large\nTry \"help xp\" for more information\n"),
    ("set_link", "set_link: string expected\nTry \"help set_link\" for more information\n"),
    ("info network extra", "network: extraneous characters at the end of line\n"
                           "Try \"help info network\" for more information\n"),
    ("", ""),
])
def test_errors_as_qemu_prints_them(line: str, expected: str) -> None:
    vm = qn.Machine.from_cmdline(VIRTIO, guest=None)
    assert vm.monitor(line) == expected


def test_no_traceback_for_odd_input() -> None:
    vm = qn.Machine.from_cmdline(E1000_HUB, guest=None)
    odd = ["info", "?", "help help", "x /", "xp /999999999xb 0", "set_link \"unterminated",
           "info virtio-queue-element", "info mtree -f -d -o -D", "info e1000 nope", "q extra",
           "x /10000000c 0xfffffffffffffff0", "\x00\x01", "info e1000", "help info e1000",
           "xp '", "xp 'a", "xp -1", "xp ~0", "info pci", "info irq", "info kvm", "info name"]
    for line in odd:
        out = vm.monitor(line)
        assert "Traceback" not in out and "internal error" not in out, (line, out)


def test_help() -> None:
    vm = qn.Machine.from_cmdline(VIRTIO, guest=None)
    top = vm.monitor("help")
    assert "info [subcommand] -- show various information about the system state\n" in top
    assert "set_link name on|off -- change the link status of a network adapter\n" in top
    assert "qnetlearn: no paging" in top                     # x says how it reads 'addr'
    assert top == vm.monitor("?")
    info = vm.monitor("help info")
    assert info == vm.monitor("info")
    assert "info network  -- show the network state\n" in info
    assert "info virtio-queue-status path queue -- Display status of a given virtio queue\n" \
        in info
    assert "qnetlearn only" in vm.monitor("help info e1000")
    assert vm.monitor("help info network") == "info network  -- show the network state\n"
    assert vm.monitor("help info nope") == "unknown command: 'info nope'\n"
    assert [c.name for c in HMP_INFO_CMDS] == sorted(c.name for c in HMP_INFO_CMDS)
    assert [c.name for c in HMP_CMDS] == sorted(c.name for c in HMP_CMDS)


def test_small_info_commands() -> None:
    vm = qn.Machine.from_cmdline("-name guest=demo " + VIRTIO, guest=None)
    assert vm.monitor("info version") == "7.2.0\n"
    assert vm.monitor("info status") == "VM status: running\n"
    assert vm.monitor("info name") == "demo\n"
    assert vm.monitor("info kvm") == "kvm support: disabled\n"
    assert qn.Machine.from_cmdline("-enable-kvm " + VIRTIO, guest=None).monitor(
        "info kvm") == "kvm support: enabled\n"
    assert vm.monitor("info history").endswith("3: 'info kvm'\n4: 'info history'\n")


def test_info_e1000_registers() -> None:
    vm = qn.Machine.from_cmdline(E1000_HUB).boot()
    vm.host().ping(count=1)
    before = vm.nics[0].icr
    out = vm.monitor("info e1000")
    assert out.startswith("e1000.0: e1000 (82540EM) at 00:03.0, macaddr=52:54:00:12:34:56, "
                          "link up")
    assert "STATUS 0x80080783" in out and "RX ring: base 0x" in out
    assert vm.nics[0].icr == before                  # read without side effects
    assert vm.monitor("info e1000 e1000.0") == out
    assert vm.monitor("info e1000 nope") == "Error: Device 'nope' not found\n"
