"""qnetlearn.system.vl: QEMU 7.2's command line (softmmu/vl.c, util/qemu-option.c, net/net.c)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnetlearn.system.vl import (DEFAULT_MAC, CmdlineError, CmdlineHelp, MachineConfig,
                                 parse_cmdline)

SEED = ("sudo x86_64-softmmu/qemu-system-x86_64 /home/hkucs/colo_ubuntu_single.img "
        "-machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "golden-qemu"
if not GOLDEN_DIR.is_dir():
    GOLDEN_DIR = Path("/work/shared/reference/golden-qemu")


def info_network_names(cfg: MachineConfig) -> list[str]:
    """The name skeleton of `info network` (net_hub_info, then hmp_info_network)."""
    lines: list[str] = []
    by_id = {nd.id: nd for nd in cfg.netdevs}
    for hub in reversed(cfg.hubs):                    # hubs and ports: newest first
        lines.append(f"hub {hub}")
        for nd in reversed([n for n in cfg.netdevs if n.type == "hubport" and n.hubid == hub]):
            peer = nd.nic or nd.peer
            lines.append(f" \\ {nd.id}: {peer}" if peer else f" \\ {nd.id}")
    for nic in cfg.nics:
        if nic.netdev and by_id[nic.netdev].type == "hubport":
            continue
        lines.append(nic.name)
        if nic.netdev:
            lines.append(f" \\ {nic.netdev}")
    return lines


def golden_names(info: str) -> list[str]:
    """Golden `info network` text reduced to names; '#net176' is counter 1 + 2 random digits."""
    out = []
    for line in info.strip().splitlines():
        parts = line.split(": ")
        keep = parts[:2] if line.startswith(" \\") and len(parts) > 2 else parts[:1]
        out.append(re.sub(r"#net(\d+)\d\d\b", r"#net\1", ": ".join(keep)))
    return out


# --------------------------------------------------------------------------------------
# The seed's command line
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", [SEED, SEED.replace("sudo ", ""),
                                  SEED.split(" ", 2)[2],            # no program name
                                  "ip netns exec qnlgold " + SEED.replace("sudo ", "")])
def test_seed_line(line: str) -> None:
    cfg = parse_cmdline(line)
    assert cfg.accel == "kvm"
    assert cfg.machine == "pc-i440fx-2.3"
    assert cfg.machine_opts == {"usb": "off"}
    assert cfg.ram_size == 2 << 30
    assert cfg.smp == 2
    assert len(cfg.netdevs) == 1
    hn0 = cfg.netdev("hn0")
    assert (hn0.type, hn0.opts) == ("tap", {"script": "/etc/qemu-ifup",
                                            "downscript": "/etc/qemu-ifdown"})
    assert hn0.nic == "net-pci0" and hn0.hubid is None
    assert cfg.hubs == []
    [nic] = cfg.nics
    assert (nic.model, nic.id, nic.name, nic.netdev, nic.mac) == (
        "virtio-net-pci", "net-pci0", "net-pci0", "hn0", "52:54:00:12:34:56")
    assert nic.addr is None
    assert cfg.monitor == ["stdio"]
    assert cfg.ignored_options == ["/home/hkucs/colo_ubuntu_single.img", "-vnc :7",
                                   "-device piix3-usb-uhci", "-device usb-tablet"]
    assert cfg.warnings == []


def test_seed_program_and_launcher() -> None:
    cfg = parse_cmdline(SEED)
    assert cfg.program == "x86_64-softmmu/qemu-system-x86_64"
    assert cfg.launcher == ["sudo"]


def test_list_input_equals_string_input() -> None:
    assert parse_cmdline(shlex.split(SEED)) == parse_cmdline(SEED)
    assert parse_cmdline(tuple(shlex.split(SEED))[1:]) .nics == parse_cmdline(SEED).nics


# --------------------------------------------------------------------------------------
# The golden recordings' command lines (reference/golden-qemu/*-run-info.txt)
# --------------------------------------------------------------------------------------
GOLDEN = {
    "virtio": ("-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no "
               "-device virtio-net-pci,id=net-pci0,netdev=hn0",
               "net-pci0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\n"
               " \\ hn0: index=0,type=tap,ifname=qtap0,script=no,downscript=no"),
    "virtio-noeventidx": ("-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no "
                          "-device virtio-net-pci,id=net-pci0,netdev=hn0,event_idx=off",
                          "net-pci0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:"
                          "12:34:56\n \\ hn0: index=0,type=tap,ifname=qtap0,script=no,"
                          "downscript=no"),
    "e1000-hub": ("-net nic,model=e1000 -net tap,ifname=qtap0,script=no,downscript=no",
                  "hub 0\n \\ hub0port1: #net176: index=0,type=tap,ifname=qtap0,script=no,"
                  "downscript=no\n \\ hub0port0: e1000.0: index=0,type=nic,model=e1000,"
                  "macaddr=52:54:00:12:34:56"),
    "e1000-hubport": ("-netdev tap,id=hn0,ifname=qtap0,script=no,downscript=no "
                      "-netdev hubport,id=p1,hubid=0,netdev=hn0 -netdev hubport,id=p0,hubid=0 "
                      "-device e1000,netdev=p0",
                      "hub 0\n \\ p0: e1000.0: index=0,type=nic,model=e1000,macaddr=52:54:00:"
                      "12:34:56\n \\ p1: hn0: index=0,type=tap,ifname=qtap0,script=no,"
                      "downscript=no"),
}
GOLDEN_PREFIX = ("qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nographic -no-reboot "
                 "-kernel vmlinuz -initrd initramfs.cpio.gz "
                 "-append 'console=ttyS0 quiet ipv6.disable=1' "
                 "-chardev pipe,id=ser0,path=/tmp/ser -serial chardev:ser0 "
                 "-monitor unix:/tmp/mon.sock,server=on,wait=off -msg timestamp=on "
                 "-trace events=/tmp/events -D /tmp/trace.log ")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_network_layout(name: str) -> None:
    net, info = GOLDEN[name]
    cfg = parse_cmdline(GOLDEN_PREFIX + net)
    assert info_network_names(cfg) == golden_names(info)
    assert cfg.accel == "tcg" and cfg.ram_size == 256 << 20 and cfg.smp == 1
    assert cfg.monitor == ["unix:/tmp/mon.sock,server=on,wait=off"]
    assert [n.mac for n in cfg.nics] == [DEFAULT_MAC]
    assert "-append console=ttyS0 quiet ipv6.disable=1" in cfg.ignored_options
    assert not [w for w in cfg.warnings if "no peer" in w or "hub" in w]


@pytest.mark.parametrize("path", sorted(GOLDEN_DIR.glob("*-run-info.txt")) or [None],
                         ids=lambda p: p.name if p else "missing")
def test_golden_files(path: Path | None) -> None:
    """The full command lines recorded with real QEMU 7.2, exactly as the files hold them."""
    if path is None:
        pytest.skip("reference/golden-qemu is not available")
    text = path.read_text()
    cmd = text.split("## command line\n", 1)[1].split("\n", 1)[0]
    info = text.split("## info network\n", 1)[1].split("\n## ", 1)[0]
    cfg = parse_cmdline(cmd)
    assert info_network_names(cfg) == golden_names(info)
    assert cfg.accel == "tcg"
    if "event_idx=off" in cmd:
        assert cfg.nics[0].props["event_idx"] == "off"
    if "mrg_rxbuf=off" in cmd:
        assert cfg.nics[0].props["mrg_rxbuf"] == "off"


def test_legacy_net_creation_order_and_names() -> None:
    cfg = parse_cmdline("-net nic,model=e1000 -net tap,ifname=qtap0,script=no,downscript=no")
    assert [(n.id, n.type, n.hubid, n.peer, n.nic) for n in cfg.netdevs] == [
        ("hub0port0", "hubport", 0, None, "e1000.0"),
        ("hub0port1", "hubport", 0, "#net1", None),
        ("#net1", "tap", None, "hub0port1", None)]
    assert cfg.netdev("#net1").opts == {"ifname": "qtap0", "script": "no",
                                        "downscript": "no"}
    [nic] = cfg.nics
    assert (nic.model, nic.id, nic.name, nic.netdev, nic.source) == (
        "e1000", None, "e1000.0", "hub0port0", "-net")
    assert cfg.hubs == [0]


def test_netdevs_come_before_net_and_board_nics_before_device() -> None:
    """net_init_clients: -netdev, then -nic, then -net; pc_nic_init before -device."""
    cfg = parse_cmdline("-device virtio-net-pci,netdev=hn0 -net nic -net tap "
                        "-nic tap,model=virtio -netdev tap,id=hn0")
    assert [n.id for n in cfg.netdevs] == ["hn0", "#net0", "hub0port0", "hub0port1", "#net2"]
    assert [(n.name, n.netdev, n.mac, n.source) for n in cfg.nics] == [
        ("virtio-net-pci.0", "#net0", "52:54:00:12:34:56", "-nic"),
        ("e1000.0", "hub0port0", "52:54:00:12:34:57", "-net"),
        ("virtio-net-pci.1", "hn0", "52:54:00:12:34:58", "-device")]


# --------------------------------------------------------------------------------------
# Option grammar
# --------------------------------------------------------------------------------------
def test_comma_escapes() -> None:
    cfg = parse_cmdline(["-netdev", "tap,id=hn0,ifname=a,,b,script=/x,,,,y,downscript=no,",
                         "-device", "e1000,netdev=hn0,romfile=,,rom"])
    assert cfg.netdev("hn0").opts == {"ifname": "a,b", "script": "/x,,y", "downscript": "no"}
    assert cfg.nics[0].props["romfile"] == ",rom"


def test_implied_first_value_and_escape() -> None:
    # the implied value goes through get_opt_value too: the driver is "e1000,netdev=x"
    cfg = parse_cmdline("-device e1000,,netdev=x -nodefaults")
    assert cfg.nics == [] and cfg.ignored_options == ["-device e1000,,netdev=x"]
    cfg = parse_cmdline("-netdev type=tap,id=a -device e1000,netdev=a")
    assert cfg.netdev("a").type == "tap"
    cfg = parse_cmdline("-netdev id=a,type=tap,id=b -device e1000,netdev=a")
    assert [n.id for n in cfg.netdevs] == ["a"]       # opts_parse_id: the first id wins


def test_last_key_wins_and_double_dash() -> None:
    cfg = parse_cmdline("--netdev tap,id=hn0,ifname=t0,ifname=t1 --device "
                        "virtio-net-pci,netdev=hn0,mrg_rxbuf=off,mrg_rxbuf=on --m 1G")
    assert cfg.netdev("hn0").opts["ifname"] == "t1"
    assert cfg.nics[0].props["mrg_rxbuf"] == "on"
    assert cfg.ram_size == 1 << 30


def test_short_form_booleans() -> None:
    cfg = parse_cmdline("-netdev tap,id=hn0,vnet_hdr -device virtio-net-pci,netdev=hn0,"
                        "noevent_idx,mrg_rxbuf,csum=false,guest_csum=yes")
    assert cfg.netdev("hn0").opts["vnet_hdr"] == "on"
    props = cfg.nics[0].props
    assert (props["event_idx"], props["mrg_rxbuf"], props["csum"], props["guest_csum"]) == (
        "off", "on", "off", "on")
    assert any("short-form boolean option 'noevent_idx' deprecated" in w
               for w in cfg.warnings)


@pytest.mark.parametrize("arg,size", [("2048", 2048 << 20), ("2G", 2 << 30),
                                      ("512M", 512 << 20), ("size=2G", 2 << 30),
                                      ("1.5G", 3 << 29), ("0", 128 << 20),
                                      ("1000k", 1024000), ("4G,slots=2,maxmem=8G", 4 << 30)])
def test_memory_sizes(arg: str, size: int) -> None:
    assert parse_cmdline(["-m", arg]).ram_size == size


def test_defaults() -> None:
    cfg = parse_cmdline("-nodefaults")
    assert (cfg.machine, cfg.accel, cfg.ram_size, cfg.smp) == ("pc", "tcg", 128 << 20, 1)
    assert cfg.nics == [] and cfg.netdevs == [] and cfg.monitor == []


def test_default_nic_without_network_options() -> None:
    """vl.c adds '-net nic -net user' when no network option is given."""
    cfg = parse_cmdline("disk.img -m 256")
    assert [(n.name, n.netdev, n.mac) for n in cfg.nics] == [("e1000.0", "hub0port0",
                                                              DEFAULT_MAC)]
    assert any("-net user" in w for w in cfg.warnings)
    assert "hub 0 is not connected to host network" in cfg.warnings
    # a -device NIC does not clear default_net; -net none / -nic none do
    assert len(parse_cmdline("-device e1000").nics) == 2
    assert parse_cmdline("-net none").nics == []
    assert parse_cmdline("-nic none").nics == []


@pytest.mark.parametrize("line,accel", [
    ("", "tcg"), ("-enable-kvm", "kvm"), ("-accel kvm", "kvm"), ("-machine accel=kvm", "kvm"),
    ("-M pc,accel=kvm:tcg", "kvm"), ("-machine accel=tcg:kvm", "tcg"),
    ("-accel xen -accel kvm", "kvm"), ("qemu-kvm -m 256", "kvm"),
    ("/usr/bin/qemu-system-x86_64 -accel tcg,thread=single", "tcg"),
    ("-enable-kvm -machine accel=tcg", "tcg"), ("-no-kvm", "tcg")])
def test_accelerator(line: str, accel: str) -> None:
    assert parse_cmdline(line).accel == accel


def test_accel_options_and_monitors() -> None:
    cfg = parse_cmdline("-accel kvm,kernel-irqchip=split -monitor stdio -monitor none "
                        "-qmp unix:/tmp/q.sock,server=on,wait=off "
                        "-qmp tcp:127.0.0.1:4444,server=on,wait=off")
    assert cfg.accel_opts == {"kernel-irqchip": "split"}
    assert cfg.monitor == ["stdio"]
    assert cfg.qmp == ["unix:/tmp/q.sock,server=on,wait=off",
                       "tcp:127.0.0.1:4444,server=on,wait=off"]


def test_smp_topologies() -> None:
    assert parse_cmdline("-smp 4").smp == 4
    assert parse_cmdline("-smp sockets=2,cores=2,threads=2").smp == 8
    assert parse_cmdline("-smp 2,maxcpus=4").smp == 2


def test_ignored_options_listed_verbatim() -> None:
    cfg = parse_cmdline("qemu-system-x86_64 disk.img -nographic -no-reboot -snapshot -S "
                        "-daemonize -cpu host -vga std -display none -name vm1 -usb "
                        "-usbdevice tablet -rtc base=utc -boot c -object iothread,id=io0 "
                        "-global e1000.mitigation=off -D log.txt -trace events=e -nodefaults")
    assert cfg.ignored_options == [
        "disk.img", "-nographic", "-no-reboot", "-snapshot", "-S", "-daemonize", "-cpu host",
        "-vga std", "-display none", "-name vm1", "-usb", "-usbdevice tablet",
        "-rtc base=utc", "-boot c", "-object iothread,id=io0", "-global e1000.mitigation=off",
        "-D log.txt", "-trace events=e"]


# --------------------------------------------------------------------------------------
# NICs, MACs, hubs
# --------------------------------------------------------------------------------------
def test_mac_counting_three_nics() -> None:
    cfg = parse_cmdline("-netdev tap,id=a -netdev tap,id=b -netdev tap,id=c "
                        "-device e1000,netdev=a -device virtio-net-pci,netdev=b "
                        "-device e1000,netdev=c")
    assert [(n.name, n.mac) for n in cfg.nics] == [
        ("e1000.0", "52:54:00:12:34:56"), ("virtio-net-pci.0", "52:54:00:12:34:57"),
        ("e1000.1", "52:54:00:12:34:58")]


def test_mac_explicit_ones_are_skipped_once_created() -> None:
    """qemu_macaddr_default_if_unset marks 52:54:00:12:34:xx used as each NIC is created."""
    cfg = parse_cmdline("-device e1000 -device e1000,mac=52:54:00:12:34:57 -device e1000 "
                        "-device e1000,mac=02:00:00:00:00:01 -device e1000 -nodefaults")
    assert [n.mac for n in cfg.nics] == ["52:54:00:12:34:56", "52:54:00:12:34:57",
                                         "52:54:00:12:34:58", "02:00:00:00:00:01",
                                         "52:54:00:12:34:59"]
    # an explicit address is only taken when its NIC is created: a later one can collide
    cfg = parse_cmdline("-device e1000 -device e1000,mac=52:54:00:12:34:56 -nodefaults")
    assert [n.mac for n in cfg.nics] == [DEFAULT_MAC, DEFAULT_MAC]
    assert any("same MAC" in w for w in cfg.warnings)


def test_net_nic_mac_forms() -> None:
    cfg = parse_cmdline("-net nic,macaddr=52-54-00-aa-bb-cc -net nic,macaddr=0x10203 -net none")
    assert [n.mac for n in cfg.nics] == ["52:54:00:aa:bb:cc", "00:00:00:01:02:03"]


def test_nic_names_count_per_model() -> None:
    cfg = parse_cmdline("-device e1000,id=first -device e1000 -device virtio-net -nodefaults")
    assert [n.name for n in cfg.nics] == ["first", "e1000.1", "virtio-net-pci.0"]
    assert [n.model for n in cfg.nics] == ["e1000", "e1000", "virtio-net-pci"]
    assert "nic e1000.1 has no peer" in cfg.warnings


def test_legacy_vlans_give_two_hubs() -> None:
    cfg = parse_cmdline("-net nic,vlan=1,model=virtio -net tap,vlan=1,ifname=t1 "
                        "-net nic,vlan=0 -net tap,vlan=0,ifname=t0")
    assert cfg.hubs == [1, 0]
    assert [(n.id, n.hubid, n.peer or n.nic) for n in cfg.netdevs if n.type == "hubport"] == [
        ("hub1port0", 1, "virtio-net-pci.0"), ("hub1port1", 1, "#net1"),
        ("hub0port0", 0, "e1000.0"), ("hub0port1", 0, "#net3")]
    assert cfg.netdev("#net3").opts["ifname"] == "t0"
    assert [(n.name, n.netdev) for n in cfg.nics] == [("virtio-net-pci.0", "hub1port0"),
                                                      ("e1000.0", "hub0port0")]
    assert sum("vlan=" in w for w in cfg.warnings) == 4


def test_legacy_name_and_device_vlan() -> None:
    cfg = parse_cmdline("-net tap,vlan=2,name=uplink,ifname=t2 -device e1000,vlan=2")
    assert cfg.netdev("uplink").peer == "hub2port0"
    assert cfg.nics[0].netdev == "hub2port1"
    assert cfg.hubs == [2]


def test_hubport_attached_to_netdev_and_net_nic_netdev() -> None:
    cfg = parse_cmdline("-netdev tap,id=t -netdev hubport,id=hp,hubid=3,netdev=t "
                        "-netdev hubport,id=hq,hubid=3 -net nic,netdev=hq,model=virtio")
    assert cfg.hubs == [3]
    assert cfg.netdev("t").peer == "hp" and cfg.netdev("hp").peer == "t"
    assert cfg.netdev("hq").nic == "virtio-net-pci.0"
    assert not [w for w in cfg.warnings if "hub" in w or "peer" in w]


def test_nic_option_creates_netdev_and_nic() -> None:
    cfg = parse_cmdline("-nic tap,id=n1,model=virtio-net-pci,mac=02:00:00:00:00:02,"
                        "ifname=tap0,script=no -nic hubport,hubid=0 -nic hubport,hubid=0")
    assert [(n.id, n.type) for n in cfg.netdevs] == [("n1", "tap"), ("#net0", "hubport"),
                                                     ("#net1", "hubport")]
    assert cfg.netdev("n1").opts == {"ifname": "tap0", "script": "no"}
    assert [(n.model, n.netdev, n.mac) for n in cfg.nics] == [
        ("virtio-net-pci", "n1", "02:00:00:00:00:02"), ("e1000", "#net0", DEFAULT_MAC),
        ("e1000", "#net1", "52:54:00:12:34:57")]


def test_pci_addresses() -> None:
    cfg = parse_cmdline("-netdev tap,id=a -device e1000,netdev=a,addr=0x5.0 "
                        "-device virtio-net-pci,addr=4,multifunction=on -net nic,addr=6 "
                        "-net none")
    assert [(n.name, n.addr, n.function) for n in cfg.nics] == [
        ("e1000.0", 6, 0), ("e1000.1", 5, 0), ("virtio-net-pci.0", 4, 0)]


def test_json_netdev_and_device() -> None:
    cfg = parse_cmdline(['-netdev', '{"type":"tap","id":"hostnet0","ifname":"t0",'
                         '"vnet_hdr":true}',
                         '-device', '{"driver":"virtio-net-pci","netdev":"hostnet0",'
                         '"id":"net0","mac":"52:54:00:ab:cd:ef","bus":"pci.0","addr":"0x3",'
                         '"event_idx":false,"rx_queue_size":512}'])
    assert cfg.netdev("hostnet0").opts == {"ifname": "t0", "vnet_hdr": "on"}
    [nic] = cfg.nics
    assert (nic.name, nic.mac, nic.addr) == ("net0", "52:54:00:ab:cd:ef", 3)
    assert nic.props["event_idx"] == "off" and nic.props["rx_queue_size"] == "512"


def test_unused_netdev_is_a_warning() -> None:
    cfg = parse_cmdline("-netdev tap,id=hn0")
    assert cfg.nics == [] and "netdev hn0 has no peer" in cfg.warnings


def test_tap_host_option() -> None:
    cfg = parse_cmdline("-netdev tap,id=hn0,ifname=qtap0,host=kernel,script=no,downscript=no "
                        "-device virtio-net-pci,netdev=hn0")
    assert cfg.netdev("hn0").opts["host"] == "kernel"


def test_error_object() -> None:
    with pytest.raises(CmdlineError) as ei:
        parse_cmdline("-netdev tap,id=hn0,foo=1")
    e = ei.value
    assert str(e) == "-netdev tap,id=hn0,foo=1: Invalid parameter 'foo'"
    assert (e.option, e.reason) == ("-netdev tap,id=hn0,foo=1", "Invalid parameter 'foo'")
    assert isinstance(e, ValueError)


# --------------------------------------------------------------------------------------
# Malformed command lines: (command line, offending option text, reason fragment)
# --------------------------------------------------------------------------------------
BAD = [
    ("-foo", "-foo", "invalid option"),
    ("-m 256 --bar 1", "--bar", "invalid option"),
    ("-netdev tap,id=hn0 -m", "-m", "requires an argument"),
    ("-g 800x600", "-g 800x600", "not supported for this target"),
    ("-netdev foo,id=x", "-netdev foo,id=x", "does not accept value 'foo'"),
    ("-netdev user,id=u0", "-netdev user,id=u0", "not modelled"),
    ("-netdev socket,id=s0,listen=:1234", "-netdev socket,id=s0,listen=:1234", "not modelled"),
    ("-netdev stream,id=s0,addr.type=inet", "-netdev stream,id=s0,addr.type=inet",
     "not modelled"),
    ("-net user", "-net user", "not modelled"),
    ("-nic tap,model=e1000,addr=3", "-nic tap,model=e1000,addr=3", "Invalid parameter 'addr'"),
    ("-netdev tap", "-netdev tap", "Parameter 'id' is missing"),
    ("-netdev tap,id=hn0,foo=1", "-netdev tap,id=hn0,foo=1", "Invalid parameter 'foo'"),
    ("-netdev tap,id=hn0,vlan=1", "-netdev tap,id=hn0,vlan=1", "Invalid parameter 'vlan'"),
    ("-netdev tap,id=hn0,=1", "-netdev tap,id=hn0,=1", "Invalid parameter ''"),
    ("-netdev tap,id=1bad", "-netdev tap,id=1bad", "Parameter 'id' expects an identifier"),
    ("-netdev tap,id=a,,b", "-netdev tap,id=a,,b", "Parameter 'id' expects an identifier"),
    ("-netdev tap,id=a -netdev tap,id=a", "-netdev tap,id=a", "Duplicate ID 'a' for netdev"),
    ("-netdev tap,id=a -nic tap,id=a", "-nic tap,id=a", "Duplicate ID 'a'"),
    ("-device e1000,id=d -device usb-tablet,id=d", "-device usb-tablet,id=d",
     "Duplicate ID 'd' for device"),
    ("-device virtio-net-pci,netdev=nope", "-device virtio-net-pci,netdev=nope",
     "Property 'virtio-net-device.netdev' can't find value 'nope'"),
    ("-netdev tap,id=hn0 -device virtio-net-pci,netdev=hn0 -device e1000,netdev=hn0",
     "-device e1000,netdev=hn0", "Property 'e1000.netdev' can't take value 'hn0', it's in use"),
    ("-netdev hubport,id=h,hubid=0 -net nic,netdev=h -device e1000,netdev=h",
     "-device e1000,netdev=h", "it's in use"),
    ("-device e1000,mac=52:54:00:12:34", "-device e1000,mac=52:54:00:12:34",
     "Property 'e1000.mac' doesn't take value '52:54:00:12:34'"),
    ("-net nic,macaddr=01:00:00:00:00:01", "-net nic,macaddr=01:00:00:00:00:01", "multicast"),
    ("-net nic,macaddr=zz", "-net nic,macaddr=zz", "invalid syntax for ethernet address"),
    ("-nic tap,mac=03:00:00:00:00:01", "-nic tap,mac=03:00:00:00:00:01", "multicast"),
    ("-device virtio-net-pci,event_idx=maybe", "-device virtio-net-pci,event_idx=maybe",
     "Parameter 'event_idx' expects 'on' or 'off'"),
    ("-netdev tap,id=hn0,vnet_hdr=2", "-netdev tap,id=hn0,vnet_hdr=2", "expects 'on' or 'off'"),
    ("-device virtio-net-pci,rx_queue_size=abc", "-device virtio-net-pci,rx_queue_size=abc",
     "Parameter 'rx_queue_size' expects integer"),
    ("-device virtio-net-pci,rx_queue_size=65536", "-device virtio-net-pci,rx_queue_size=65536",
     "expects uint16_t"),
    ("-device virtio-net-pci,rx_queue_size=100", "-device virtio-net-pci,rx_queue_size=100",
     "Invalid rx_queue_size (= 100)"),
    ("-device virtio-net-pci,disable-legacy=sometimes",
     "-device virtio-net-pci,disable-legacy=sometimes", "does not accept value 'sometimes'"),
    ("-m 2X", "-m 2X", "Parameter 'size' expects a non-negative number"),
    ("-m size=1G,foo=2", "-m size=1G,foo=2", "Invalid parameter 'foo'"),
    ("-m 1G,slots=2", "-m 1G,slots=2", "slots specified but no max-size"),
    ("-smp 0x", "-smp 0x", "Parameter 'cpus' expects a number"),
    ("-smp 3,sockets=2,cores=2", "-smp 3,sockets=2,cores=2", "Invalid CPU topology"),
    ("-netdev hubport,id=p0", "-netdev hubport,id=p0", "Parameter 'hubid' is missing"),
    ("-netdev hubport,id=p0,hubid=zero", "-netdev hubport,id=p0,hubid=zero",
     "Parameter 'hubid' expects"),
    ("-netdev hubport,id=p0,hubid=-1", "-netdev hubport,id=p0,hubid=-1", "hubid"),
    ("-netdev hubport,id=p0,hubid=0,netdev=nope", "-netdev hubport,id=p0,hubid=0,netdev=nope",
     "netdev 'nope' not found"),
    ("-netdev hubport,id=p1,hubid=0,netdev=t -netdev tap,id=t",
     "-netdev hubport,id=p1,hubid=0,netdev=t", "netdev 't' not found"),
    ("-netdev hubport,id=p0,hubid=0 -netdev hubport,id=p1,hubid=0,netdev=p0",
     "-netdev hubport,id=p1,hubid=0,netdev=p0", "is a hub port"),
    ("-netdev tap,id=t -netdev hubport,id=p0,hubid=0,netdev=t "
     "-netdev hubport,id=p1,hubid=1,netdev=t", "-netdev hubport,id=p1,hubid=1,netdev=t",
     "in use"),
    ("-net hubport,hubid=0", "-net hubport,hubid=0", "only supported with -netdev/-nic"),
    ("-net nic,model=rtl9999", "-net nic,model=rtl9999", "Unsupported NIC model: rtl9999"),
    ("-net nic,model=rtl8139", "-net nic,model=rtl8139", "not modelled"),
    ("-net nic,model=help", "-net nic,model=help", "Available NIC models"),
    ("-net nic,vlan=x", "-net nic,vlan=x", "Parameter 'vlan' expects"),
    ("-net nic,vlan=-2", "-net nic,vlan=-2", "Parameter 'vlan' expects"),
    ("-net nic,netdev=nope", "-net nic,netdev=nope", "netdev 'nope' not found"),
    ("-net nic,addr=zz", "-net nic,addr=zz", "Invalid PCI device address zz for device e1000"),
    ("-device e1000,foo=1", "-device e1000,foo=1", "Property 'e1000.foo' not found"),
    ("-device e1000,addr=0x20", "-device e1000,addr=0x20",
     "Property 'e1000.addr' doesn't take value '0x20'"),
    ("-device e1000,addr=3.8", "-device e1000,addr=3.8", "doesn't take value '3.8'"),
    ("-device e1000,addr=1", "-device e1000,addr=1",
     "PCI: slot 1 function 0 not available for e1000, in use by PIIX3"),
    ("-device e1000,addr=4 -device virtio-net-pci,addr=4.0",
     "-device virtio-net-pci,addr=4.0", "in use by e1000"),
    ("-device e1000,bus=pci.7", "-device e1000,bus=pci.7", "Bus 'pci.7' not found"),
    ("-device rtl8139,netdev=n", "-device rtl8139,netdev=n", "not modelled"),
    ("-device e1000e", "-device e1000e", "not modelled"),
    ("-device id=x", "-device id=x", "Parameter 'driver' is missing"),
    ("-device '{\"driver\":\"e1000\",\"netdev\":5}'", '-device {"driver":"e1000","netdev":5}',
     "Invalid parameter type for 'netdev'"),
    ("-device {bad", "-device {bad", "JSON parse error"),
    ("-netdev '{\"type\":\"tap\",\"id\":\"a\",\"bogus\":1}'",
     '-netdev {"type":"tap","id":"a","bogus":1}', "Parameter 'bogus' is unexpected"),
    ("-netdev tap,id=hn0,helper=/usr/lib/qemu/qemu-bridge-helper",
     "-netdev tap,id=hn0,helper=/usr/lib/qemu/qemu-bridge-helper", "not modelled"),
    ("-netdev tap,id=hn0,vhost=on", "-netdev tap,id=hn0,vhost=on", "not modelled"),
    ("-netdev tap,id=hn0,fd=3", "-netdev tap,id=hn0,fd=3", "not modelled"),
    ("-netdev tap,id=hn0,queues=4", "-netdev tap,id=hn0,queues=4", "not modelled"),
    ("-netdev tap,id=hn0,host=vm", "-netdev tap,id=hn0,host=vm", "'sim' or 'kernel'"),
    ("-accel foo", "-accel foo", "invalid accelerator foo"),
    ("-machine accel=kvm:foo", "-machine accel=kvm:foo", "invalid accelerator foo"),
    ("-accel kvm,bogus=1", "-accel kvm,bogus=1", "Property 'kvm-accel.bogus' not found"),
    ("-enable-kvm -accel tcg", "-enable-kvm", "incompatible"),
    ("-machine foo-machine", "-machine foo-machine", "unsupported machine type"),
    ("-machine isapc", "-machine isapc", "not modelled"),
    ("-machine pc,usb", "-machine pc,usb", "Expected '=' after parameter 'usb'"),
    ("-machine pc,usb=perhaps", "-machine pc,usb=perhaps", "expects 'on' or 'off'"),
    ("-machine help", "-machine help", "Supported machines"),
    ("-netdev help", "-netdev help", "Available netdev backend types"),
    ("-device e1000,help", "-device e1000,help", "e1000 options"),
    ("-monitor ''", "-monitor ", "parse error"),
    ("-netdev 'tap,id=x", "-netdev 'tap,id=x", "cannot split"),
]


@pytest.mark.parametrize("line,option,reason", BAD, ids=[b[0][:60] for b in BAD])
def test_malformed(line: str, option: str, reason: str) -> None:
    with pytest.raises(CmdlineError) as ei:
        parse_cmdline(line)
    assert option in str(ei.value)
    assert str(ei.value).startswith(ei.value.option)
    assert reason in ei.value.reason
    assert option in ei.value.option


def test_help_is_a_cmdline_error_subclass() -> None:
    with pytest.raises(CmdlineHelp):
        parse_cmdline("-nic help")
    with pytest.raises(CmdlineHelp):
        parse_cmdline("-device help")


def test_multicast_mac_accepted_on_device() -> None:
    """QEMU only refuses a multicast MAC for -net nic/-nic; qdev's mac property takes it."""
    assert parse_cmdline("-device e1000,mac=01:00:5e:00:00:01 -nodefaults").nics[0].mac == \
        "01:00:5e:00:00:01"


# --------------------------------------------------------------------------------------
# Property test: nothing but CmdlineError ever escapes
# --------------------------------------------------------------------------------------
SEED_WORDS = shlex.split(SEED)
OPTION_NAMES = ["-netdev", "-device", "-net", "-nic", "-m", "-smp", "-machine", "-M",
                "-accel", "-enable-kvm", "-monitor", "-qmp", "-vnc", "-nodefaults",
                "-nographic", "--netdev", "-foo", "-", "--", "-S", "-cpu", "-no-kvm"]
KEYS = ["id", "type", "netdev", "mac", "macaddr", "model", "addr", "vlan", "hubid", "ifname",
        "script", "event_idx", "mrg_rxbuf", "rx_queue_size", "bus", "size", "maxmem",
        "slots", "accel", "usb", "cpus", "name", "help", "?", "", "no", "host", "queues"]
VALUES = ["tap", "hubport", "e1000", "virtio-net-pci", "virtio", "user", "hn0", "0", "1",
          "-1", "0x3", "3.1", "on", "off", "kvm", "tcg", "kvm:tcg", "2G", "52:54:00:12:34:56",
          "01:00:00:00:00:00", "help", "", ",", ",,", "=", "{", '{"type":"tap","id":"j"}',
          '{"driver":"e1000","addr":24}', "pc", "q35", "none", "stdio", "9" * 5000]

word = st.one_of(st.sampled_from(OPTION_NAMES + VALUES + SEED_WORDS),
                 st.text(alphabet="-=,.:{}\"'tapidnevc0123456789 ", max_size=25))


@st.composite
def option_arg(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(VALUES))
    items = draw(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)),
                          max_size=5))
    return ",".join([head] + [f"{k}={v}" if draw(st.booleans()) else k for k, v in items])


@st.composite
def mutated_seed(draw: st.DrawFn) -> list[str]:
    words = list(SEED_WORDS)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["drop", "dup", "swap", "insert", "arg", "chars"]))
        if not words and op != "insert":
            continue
        i = draw(st.integers(0, max(len(words) - 1, 0)))
        if op == "drop":
            del words[i]
        elif op == "dup":
            words.insert(i, words[i])
        elif op == "swap":
            j = draw(st.integers(0, len(words) - 1))
            words[i], words[j] = words[j], words[i]
        elif op == "insert":
            words[i:i] = [draw(st.sampled_from(OPTION_NAMES)), draw(option_arg())]
        elif op == "arg":
            words[i] = words[i] + "," + draw(option_arg())
        else:
            w = words[i]
            k = draw(st.integers(0, len(w)))
            words[i] = w[:k] + draw(st.text(alphabet=",=.:-x0 {}", max_size=3)) + w[k + 1:]
    return words


def _parse_or_cmdline_error(words: list[str] | str) -> None:
    try:
        cfg = parse_cmdline(words)
    except CmdlineError as e:
        assert isinstance(e.option, str) and isinstance(e.reason, str) and e.reason
        return
    assert isinstance(cfg, MachineConfig)
    names = [n.id for n in cfg.netdevs]
    assert len(names) == len(set(names))
    for nic in cfg.nics:
        assert nic.netdev is None or nic.netdev in names
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", nic.mac)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_seed())
def test_mutated_seed_lines_raise_only_cmdline_error(words: list[str]) -> None:
    _parse_or_cmdline_error(words)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(word, st.sampled_from(OPTION_NAMES), option_arg()), max_size=12))
def test_random_lines_raise_only_cmdline_error(words: list[str]) -> None:
    _parse_or_cmdline_error(words)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_random_strings_raise_only_cmdline_error(text: str) -> None:
    _parse_or_cmdline_error(text)
