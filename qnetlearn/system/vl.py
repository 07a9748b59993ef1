"""QEMU's command line, read as QEMU 7.2 reads it (softmmu/vl.c, util/qemu-option.c, net/net.c).

:func:`parse_cmdline` takes a ``qemu-system-x86_64`` command line and returns a
:class:`MachineConfig`: the machine, accelerator, RAM and CPUs, and the network *as QEMU
would create it*: every NetClientState backend (``-netdev``, ``-net``, ``-nic``, hub ports) in
QEMU's creation order, the hubs, and the NICs in PCI order with their names and MAC
addresses.  Options that do not touch the network are accepted and listed verbatim in
``ignored_options``; an option QEMU does not know, or a bad network option, raises
:class:`CmdlineError` whose message starts with the option text, as QEMU's
``qemu-system-x86_64: -netdev tap,id=hn0,foo=1: Invalid parameter 'foo'``.

How QEMU reads a command line (and this module with it):

* ``lookup_opt`` (vl.c): ``-opt`` or ``--opt``; an option either takes the next word as its
  argument or takes none (the ``HAS_ARG`` column of qemu-options.hx).  A word not starting
  with ``-`` is a disk image.
* ``opts_parse`` / ``get_opt_name_value`` (util/qemu-option.c): ``key=value,key=value``;
  the first item may omit ``key=`` (the *implied* key: ``type`` for -netdev/-net/-nic,
  ``driver`` for -device, ``size`` for -m, ``cpus`` for -smp); ``,,`` is a literal comma
  inside a value; a bare ``key`` means ``key=on`` and ``nokey`` means ``key=off``
  (deprecated short form); the last occurrence of a key wins; ``id=`` must be an identifier
  and unique in its option list.
* ``keyval_parse_into`` (util/keyval.c) for ``-machine``/``-M``: the same, but a bare key
  after the first is an error.
* ``net_init_clients`` (net/net.c): all ``-netdev`` first, then ``-nic``, then ``-net``;
  every ``-net`` client except ``nic,netdev=X`` first gets a hub port
  (``net_hub_add_port``, named ``hub<N>port<k>``) and peers with it.  NICs requested by
  ``-nic``/``-net nic`` are created by the board (``pc_nic_init``), before any ``-device``.

Beyond QEMU 7.2 the course's QEMU 2.x syntax is accepted: ``vlan=N`` on ``-net`` (hub N)
and on a NIC ``-device``, ``name=`` on ``-net``, and a few removed options (``-no-kvm``,
``-soundhw``, ...), each with a warning.  Deviations from QEMU are listed in
:data:`DEVIATIONS`.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = [
    "CmdlineError", "CmdlineHelp", "NetdevConfig", "NicConfig", "MachineConfig",
    "parse_cmdline", "QEMU_OPTIONS", "DEVIATIONS", "DEFAULT_MAC",
]

#: Where qnetlearn knowingly differs from QEMU 7.2, and why.
DEVIATIONS: tuple[str, ...] = (
    "Generated client names are '#net<N>' with N counting from 0 in QEMU's order of "
    "id_generate() calls; QEMU appends two random digits ('#net176' is counter 1, random "
    "76), which would make names irreproducible.",
    "Legacy QEMU 2.x syntax is accepted with a warning: vlan=N on -net and on NIC -device "
    "(hub N), name= on -net, and some removed options (-no-kvm, -soundhw, -tb-size, ...).",
    "Negative hubid=/vlan= are rejected (QEMU accepts any int32 and names the port "
    "'hub-1port0').",
    "A hubport's netdev= must name a backend that is not yet peered; QEMU aborts on an "
    "in-use backend (assertion) and lets a hub port peer with another hub port.",
    "Two net clients may not share a name (QEMU allows an automatic hub port name such "
    "as 'hub0port1' to repeat a -netdev id; lookups then find the first).",
    "An unknown accelerator always raises; QEMU reports 'invalid accelerator' and falls "
    "back to the next one in the list.",
    "QEMU's default '-net nic -net user' (no network option, no -nodefaults) creates the "
    "e1000 on hub 0 but not the slirp backend, which qnetlearn does not model (a warning).",
    "help/? requests (-netdev help, -device e1000,help, -machine help, ...) raise "
    "CmdlineHelp carrying the text instead of printing and exiting.",
    "qnetlearn-only tap option host=sim|kernel (QEMU would say Invalid parameter 'host').",
    "Properties and options added up to QEMU 8.1 are accepted as well.",
)

#: The MAC address QEMU gives the first NIC without one (qemu_macaddr_default_if_unset).
DEFAULT_MAC = "52:54:00:12:34:56"


class CmdlineError(ValueError):
    """A command line QEMU would refuse.  ``str(e)`` is ``"<option text>: <reason>"``."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}" if option else reason)


class CmdlineHelp(CmdlineError):
    """A help request (``help`` or ``?``): QEMU prints ``.reason`` and exits."""


# --------------------------------------------------------------------------------------
# The option table (qemu-options.hx: DEF(name, HAS_ARG or 0, ...)), x86_64 system emulator
# --------------------------------------------------------------------------------------
_WITH_ARG = """
machine M cpu accel smp numa add-fd set global boot m mem-path k audio audiodev device name
uuid fda fdb hda hdb hdc hdd cdrom blockdev drive mtdblock sd fsdev virtfs iscsi usbdevice
display spice rotate vga g vnc acpitable smbios netdev nic net chardev tpmdev bios pflash
kernel append initrd dtb compat fw_cfg serial parallel monitor qmp qmp-pretty mon debugcon
pidfile overcommit gdb d D dfilter seed L xen-domid action loadvm option-rom rtc icount
watchdog-action echr incoming chroot runas prom-env semihosting-config sandbox readconfig
trace plugin qtest qtest-log run-with msg dump-vmstate object watchdog
"""
_WITHOUT_ARG = """
h help version mem-prealloc audio-help snapshot usb nographic portrait full-screen
win2k-hack no-fd-bootchk no-acpi no-hpet singlestep preconfig S s enable-kvm xen-attach
xen-domid-restrict no-reboot no-shutdown daemonize only-migratable nodefaults
semihosting old-param no-user-config async-teardown enable-sync-profile perfmap jitdump
"""
#: QEMU's options: name -> whether it takes an argument.
QEMU_OPTIONS: dict[str, bool] = {
    **{n: True for n in _WITH_ARG.split()}, **{n: False for n in _WITHOUT_ARG.split()}}
#: Options whose arch_mask excludes x86 ("Option not supported for this target").
_NOT_THIS_TARGET = frozenset({"g", "prom-env", "semihosting", "semihosting-config",
                              "old-param"})
#: Options QEMU 2.x had and 7.2 no longer has: name -> (takes an argument, removed in).
_LEGACY_OPTIONS: dict[str, tuple[bool, str]] = {
    "no-kvm": (False, "5.2"), "no-kvm-irqchip": (False, "5.2"), "no-kvm-pit": (False, "5.2"),
    "no-kvm-pit-reinjection": (False, "5.2"), "tdf": (False, "5.2"),
    "localtime": (False, "3.1"), "nodefconfig": (False, "3.0"), "enable-fips": (False, "7.1"),
    "no-quit": (False, "7.0"), "alt-grab": (False, "7.1"), "ctrl-grab": (False, "7.1"),
    "sdl": (False, "7.1"), "curses": (False, "7.1"), "show-cursor": (False, "7.1"),
    "xen-create": (False, "5.0"), "enable-nesting": (False, "1.0"),
    "soundhw": (True, "7.1"), "balloon": (True, "3.1"), "tb-size": (True, "6.0"),
    "realtime": (True, "6.0"), "writeconfig": (True, "6.0"), "virtioconsole": (True, "4.0"),
    "pcidevice": (True, "1.3"), "clock": (True, "4.0"), "startdate": (True, "3.0"),
    "bt": (True, "3.1"), "hdachs": (True, "2.9"),
}
#: Options qnetlearn models (everything else is listed in ``ignored_options``).
_HONOURED = frozenset({"netdev", "nic", "net", "device", "machine", "M", "accel",
                       "enable-kvm", "m", "smp", "monitor", "qmp", "qmp-pretty", "nodefaults",
                       "no-kvm"})

# --------------------------------------------------------------------------------------
# Values (util/cutils.c, qapi/qapi-util.c)
# --------------------------------------------------------------------------------------
_INT_RE = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_U64 = 1 << 64


def _strtoll(s: str) -> int | None:
    """strtoll(s, &end, 0) with nothing left over: decimal, 0x hex or 0 octal."""
    m = _INT_RE.match(s)
    if not m:
        return None
    digits = m.group(2)
    if len(digits) > 66:                 # overflows any 64-bit type (ERANGE)
        return -(1 << 200) if m.group(1) == "-" else 1 << 200
    v = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits, 8) if digits != "0" \
        and digits.startswith("0") else int(digits)
    return -v if m.group(1) == "-" else v


def _strtoull(s: str) -> int | None:
    """qemu_strtou64(s, NULL, 0): as strtoull, a '-' wraps modulo 2**64; None on error."""
    v = _strtoll(s)
    if v is None or abs(v) >= _U64:
        return None
    return v % _U64


def _parse_uint(s: str) -> int | None:
    """parse_uint(s, 0) (the opts visitor's unsigned numbers): no sign allowed."""
    t = s.lstrip()
    if t.startswith(("-", "+")):
        return None
    v = _strtoll(t)
    return v if v is not None and v < _U64 else None


_SIZE_RE = re.compile(r"\s*(\d*)(\.\d*)?([bBkKmMgGtTpPeE]?)\Z")
_SIZE_MUL = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
             "P": 1 << 50, "E": 1 << 60}


def qemu_strtosz(s: str) -> int | None:
    """qemu_strtosz: '2048', '2G', '1.5M', '0x1000'; a fraction needs a suffix above B."""
    hm = re.fullmatch(r"\s*0[xX]([0-9a-fA-F]+)", s)
    if hm:
        v = int(hm.group(1)[-40:], 16) if len(hm.group(1)) <= 40 else _U64
        return v if v < _U64 else None
    m = _SIZE_RE.match(s)
    if not m or not (m.group(1) or (m.group(2) and len(m.group(2)) > 1)):
        return None
    if len(m.group(1)) > 40:
        return None                     # ERANGE
    mul = _SIZE_MUL[m.group(3).upper()]
    whole = int(m.group(1) or "0")
    frac = m.group(2) or ""
    if frac.strip(".0") and mul == 1:
        return None                     # "When a fraction is present, a scale is required"
    val = whole * mul
    if len(frac) > 1:
        val += math.floor(float("0" + frac) * mul + 0.5)
    return val if val < _U64 else None


def qapi_bool_parse(name: str, value: str) -> str:
    """qapi_bool_parse: on/yes/true/y or off/no/false/n, returned as 'on'/'off'."""
    if value in ("on", "yes", "true", "y"):
        return "on"
    if value in ("off", "no", "false", "n"):
        return "off"
    raise _Reason(f"Parameter '{name}' expects 'on' or 'off'")


def _is_help(s: str | None) -> bool:
    """is_help_option (include/qemu/help_option.h)."""
    return s in ("help", "?")


def id_wellformed(ident: str) -> bool:
    """id_wellformed (util/id.c): a letter, then letters, digits, '-', '.', '_'."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", ident))


class _Reason(Exception):
    """An error reason raised deep down; the caller adds the option text."""


# --------------------------------------------------------------------------------------
# QemuOpts (util/qemu-option.c)
# --------------------------------------------------------------------------------------
def get_opt_value(p: str, i: int) -> tuple[str, int]:
    """get_opt_value: the value from p[i] to the next single ','; ',,' is one ','."""
    out: list[str] = []
    n = len(p)
    while True:
        j = p.find(",", i)
        if j < 0:
            out.append(p[i:])
            return "".join(out), n
        if j + 1 < n and p[j + 1] == ",":
            out.append(p[i:j + 1])
            i = j + 2
            continue
        out.append(p[i:j])
        return "".join(out), j


_KEY_RE = re.compile(r"[^=,]*")


def get_opt_name_value(p: str, i: int, firstname: str | None,
                       warnings: list[str] | None) -> tuple[str, str, int, bool]:
    """get_opt_name_value: one ``key=value`` (or implied first value, or flag) from p[i].

    Returns (name, value, index after the separating comma, is_help).
    """
    m = _KEY_RE.match(p, i)
    end = m.end() if m else i
    is_help = False
    if end >= len(p) or p[end] != "=":
        if firstname:                       # implicitly named first option
            name = firstname
            value, j = get_opt_value(p, i)
        else:                               # option without value: a flag
            name, j = p[i:end], end
            prefix = ""
            if name.startswith("no"):
                name, value, prefix = name[2:], "off", "no"
            else:
                value = "on"
                is_help = _is_help(name)
            if not is_help and warnings is not None:
                warnings.append(f"short-form boolean option '{prefix}{name}' deprecated; "
                                f"please use {name}={value} instead")
    else:
        name = p[i:end]
        value, j = get_opt_value(p, end + 1)
    if j < len(p) and p[j] == ",":
        j += 1
    return name, value, j, is_help


@dataclass
class QemuOpts:
    """One parsed option argument (QemuOpts): its id and its key=value items in order."""

    list_name: str
    text: str
    id: str | None
    items: list[tuple[str, str]]
    help: bool = False

    def get(self, name: str, default: str | None = None) -> str | None:
        """qemu_opt_get: the last occurrence wins."""
        for k, v in reversed(self.items):
            if k == name:
                return v
        return default

    def pop(self, name: str) -> str | None:
        """qemu_opt_get_del: the last value, and every occurrence removed."""
        v = self.get(name)
        self.items = [(k, x) for k, x in self.items if k != name]
        return v

    def as_dict(self) -> dict[str, str]:
        """Keys in order of first appearance, each with its last value."""
        d: dict[str, str] = {}
        for k, v in self.items:
            d[k] = v
        return d


def opts_parse_id(params: str) -> str | None:
    """opts_parse_id: the first ``id=`` value (parsed without an implied key)."""
    i = 0
    while i < len(params):
        name, value, i, _ = get_opt_name_value(params, i, None, None)
        if name == "id":
            return value
    return None


# --------------------------------------------------------------------------------------
# What qnetlearn knows about QEMU's network backends and NIC models
# --------------------------------------------------------------------------------------
_STR, _BOOL, _U16, _U32, _I32, _SIZE, _ONOFFAUTO, _MAC, _NETDEV, _DEVFN = range(10)
_TYPE_NAMES = {_STR: "string", _BOOL: "boolean", _U16: "integer", _U32: "integer",
               _I32: "integer", _SIZE: "size", _ONOFFAUTO: "string", _MAC: "string",
               _NETDEV: "string", _DEVFN: "string"}

#: NetClientDriver (qapi/net.json) in QEMU 7.2, plus 2.x's -net dump.
_NETDEV_TYPES = ("none", "nic", "user", "tap", "l2tpv3", "socket", "stream", "dgram", "vde",
                 "bridge", "hubport", "netmap", "vhost-user", "vhost-vdpa", "vmnet-host",
                 "vmnet-shared", "vmnet-bridged")
_MODELLED_NETDEVS = ("tap", "hubport")
#: NetdevTapOptions, plus qnetlearn's host=sim|kernel.
_TAP_OPTS = {"ifname": _STR, "fd": _STR, "fds": _STR, "script": _STR, "downscript": _STR,
             "br": _STR, "helper": _STR, "sndbuf": _SIZE, "vnet_hdr": _BOOL, "vhost": _BOOL,
             "vhostfd": _STR, "vhostfds": _STR, "vhostforce": _BOOL, "queues": _U32,
             "poll-us": _U32, "host": _STR}
_HUBPORT_OPTS = {"hubid": _I32, "netdev": _STR}
#: NetLegacyNicOptions (-net nic).
_NIC_OPTS = {"netdev": _STR, "macaddr": _STR, "model": _STR, "addr": _STR, "vectors": _U32}

_PCI_PROPS = {"addr": _DEVFN, "romfile": _STR, "romsize": _U32, "rombar": _U32,
              "multifunction": _BOOL, "x-pcie-lnksta-dllla": _BOOL,
              "x-pcie-extcap-init": _BOOL, "failover_pair_id": _STR, "acpi-index": _U32,
              "x-pcie-err-unc-mask": _BOOL, "x-pcie-ari-nextfn-1": _BOOL}
_NIC_PROPS = {"mac": _MAC, "netdev": _NETDEV, "bootindex": _I32}
_E1000_PROPS = {**_PCI_PROPS, **_NIC_PROPS, "autonegotiation": _BOOL, "mitigation": _BOOL,
                "extra_mac_registers": _BOOL, "migrate_tso_props": _BOOL, "init-vet": _BOOL}
_VIRTIO_NET_BITS = (
    "csum guest_csum gso guest_tso4 guest_tso6 guest_ecn guest_ufo guest_announce host_tso4 "
    "host_tso6 host_ecn host_ufo mrg_rxbuf status ctrl_vq ctrl_rx ctrl_vlan ctrl_rx_extra "
    "ctrl_mac_addr ctrl_guest_offloads mq rss hash guest_rsc_ext "
    # DEFINE_VIRTIO_COMMON_FEATURES and virtio_properties (hw/virtio/virtio.c)
    "indirect_desc event_idx notify_on_empty any_layout iommu_platform packed queue_reset "
    "use-started use-disabled-flag x-disable-legacy-check x-mtu-bypass-backend failover "
    # virtio_pci_properties (hw/virtio/virtio-pci.c)
    "virtio-pci-bus-master-bug-migration migrate-extra modern-pio-notify x-disable-pcie "
    "page-per-vq x-ignore-backend-features ats x-ats-page-aligned x-pcie-deverr-init "
    "x-pcie-lnkctl-init x-pcie-pm-init x-pcie-flr-init aer disable-modern ioeventfd")
_VIRTIO_NET_PCI_PROPS = {
    **_PCI_PROPS, **_NIC_PROPS, **{n: _BOOL for n in _VIRTIO_NET_BITS.split()},
    "rsc_interval": _U32, "x-txtimer": _U32, "x-txburst": _I32, "tx": _STR,
    "rx_queue_size": _U16, "tx_queue_size": _U16, "host_mtu": _U16, "speed": _I32,
    "duplex": _STR, "disable-legacy": _ONOFFAUTO, "vectors": _U32}
#: The NIC models qnetlearn emulates: name -> properties.
NIC_MODELS: dict[str, dict[str, int]] = {"virtio-net-pci": _VIRTIO_NET_PCI_PROPS,
                                         "e1000": _E1000_PROPS}
#: qdev_alias_table entries that lead to a modelled NIC.
_DEVICE_ALIASES = {"virtio-net": "virtio-net-pci", "e1000-82540em": "e1000"}
#: QEMU (x86_64) NIC devices that qnetlearn does not emulate.
_OTHER_PCI_NICS = ("e1000-82544gc", "e1000-82545em", "e1000e", "igb", "i82550", "i82551",
                   "i82557a", "i82557b", "i82557c", "i82558a", "i82558b", "i82559a",
                   "i82559b", "i82559c", "i82559er", "i82562", "i82801", "ne2k_pci", "pcnet",
                   "rtl8139", "tulip", "vmxnet3", "virtio-net-pci-transitional",
                   "virtio-net-pci-non-transitional")
_OTHER_NIC_DEVICES = frozenset(_OTHER_PCI_NICS + ("ne2k_isa", "virtio-net-device",
                                                  "usb-net", "xen-net-device"))
#: The models ``-net nic,model=`` accepts on a pc (PCI NICs, plus ne2k_isa).
_PCI_NIC_MODELS = tuple(sorted(("e1000", "virtio-net-pci") + _OTHER_PCI_NICS))
#: The object whose name QEMU puts in "Property 'T.mac' ..." errors (the inner virtio
#: device for virtio-net-pci's aliased properties).
_PROP_OWNER = {("virtio-net-pci", "mac"): "virtio-net-device",
               ("virtio-net-pci", "netdev"): "virtio-net-device"}
_ACCELS = ("kvm", "tcg", "xen", "hax", "whpx", "nvmm", "hvf", "qtest")
_ACCEL_PROPS = {"tcg": ("thread", "tb-size", "split-wx", "one-insn-per-tb"),
                "kvm": ("kernel-irqchip", "kvm-shadow-mem", "dirty-ring-size",
                        "notify-vmexit", "notify-window", "xen-version",
                        "xen-gnttab-max-frames", "xen-evtchn-max-pirq")}
MAX_NICS = 8
_CHIPSET_DEVFNS = {0x00: "i440FX", 0x08: "PIIX3", 0x09: "piix3-ide"}
#: what qnetlearn's machine always puts on bus 0 (machine.py: an i440FX pc, q35 included,
#: with QEMU's default VGA at 00:02.0)
_BUILTIN_DEVFNS = {**_CHIPSET_DEVFNS, 0x10: "VGA"}


def _machine_kind(t: str) -> str | None:
    """Which family a QEMU x86_64 machine type belongs to, or None if QEMU has no such."""
    if t == "pc" or re.fullmatch(r"pc-(i440fx-)?\d+\.\d+", t):
        return "i440fx"
    if t == "q35" or re.fullmatch(r"pc-q35-\d+\.\d+", t):
        return "q35"
    if t in ("isapc", "microvm", "none", "x-remote", "xenfv", "xenpv", "xenfv-3.1",
             "xenfv-4.2"):
        return "other"
    return None


# --------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------
@dataclass
class NetdevConfig:
    """One backend NetClientState QEMU creates (a ``-netdev``, ``-net`` client or hub port).

    ``id`` is the client's name: the user's id, ``hub<N>port<k>`` for an automatic hub port
    (net_hub_port_new), or ``#net<N>`` generated for a ``-net``/``-nic`` without id.
    ``peer`` names the *backend* at the other end (a hub port and the tap it joins name each
    other); ``nic`` names the NIC at the other end, if one peers with this client.
    """

    id: str
    type: str
    opts: dict[str, str] = field(default_factory=dict)
    hubid: int | None = None
    peer: str | None = None
    nic: str | None = None


@dataclass
class NicConfig:
    """One NIC device, in PCI creation order.

    ``name`` is its NetClientState name (the ``-device`` id, else ``<model>.<n>`` from
    assign_name), ``netdev`` the client it peers with, ``mac`` the assigned address,
    ``addr`` the requested PCI slot (devfn >> 3) and ``function`` its function.
    ``props`` holds the device properties given, values normalised (booleans as on/off).
    """

    model: str
    id: str | None
    name: str
    netdev: str | None
    mac: str
    props: dict[str, str] = field(default_factory=dict)
    addr: int | None = None
    function: int = 0
    source: str = "-device"


@dataclass
class MachineConfig:
    """A parsed command line: what QEMU would build."""

    machine: str = "pc"
    accel: str = "tcg"
    ram_size: int = 128 << 20
    smp: int = 1
    netdevs: list[NetdevConfig] = field(default_factory=list)
    hubs: list[int] = field(default_factory=list)
    nics: list[NicConfig] = field(default_factory=list)
    monitor: list[str] = field(default_factory=list)
    qmp: list[str] = field(default_factory=list)
    qmp_pretty: list[str] = field(default_factory=list)
    ignored_options: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    machine_opts: dict[str, str] = field(default_factory=dict)
    accel_opts: dict[str, str] = field(default_factory=dict)
    program: str | None = None
    launcher: list[str] = field(default_factory=list)
    nodefaults: bool = False

    def netdev(self, name: str) -> NetdevConfig:
        """The backend client with this id/name."""
        for nd in self.netdevs:
            if nd.id == name:
                return nd
        raise KeyError(name)

    def nic(self, name: str) -> NicConfig:
        """The NIC with this name or -device id."""
        for n in self.nics:
            if name in (n.name, n.id):
                return n
        raise KeyError(name)


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------
_PROG_RE = re.compile(r"qemu-system|qemu-kvm")


def _split(cmdline: str | Sequence[str]) -> list[str]:
    if isinstance(cmdline, str):
        try:
            return shlex.split(cmdline)
        except ValueError as e:
            raise CmdlineError(cmdline, f"cannot split the command line: {e}") from None
    words = list(cmdline)
    for w in words:
        if not isinstance(w, str):
            raise CmdlineError(repr(w), "command line words must be strings")
    return words


@dataclass
class _NetSpec:
    """A -netdev/-net/-nic argument before its client is created."""

    text: str
    id: str | None
    items: dict[str, Any]
    json: bool = False


@dataclass
class _DevSpec:
    text: str
    driver: str
    id: str | None
    items: dict[str, Any]
    json: bool = False


class _Parser:
    """One run of QEMU's option loop (qemu_init) and network set-up (net_init_clients)."""

    def __init__(self) -> None:
        self.cfg = MachineConfig()
        self.warnings = self.cfg.warnings
        self.opts_ids: dict[str, set[str]] = {}    # QemuOptsList name -> ids used
        self.netdev_specs: list[_NetSpec] = []
        self.modern_netdevs: list[_NetSpec] = []
        self.nic_specs: list[_NetSpec] = []
        self.net_specs: list[_NetSpec] = []
        self.device_specs: list[_DevSpec] = []
        self.json_devices: list[_DevSpec] = []
        self.machine_dict: dict[str, str] = {}
        self.machine_text: dict[str, str] = {}
        self.accel_specs: list[QemuOpts] = []
        self.mem: QemuOpts | None = None
        self.smp: QemuOpts | None = None
        self.default_net = True
        self.default_nic = False                     # the NIC vl.c adds by default
        self.machine_kind = "i440fx"
        self.progname = ""
        # net_init_clients state
        self.clients: dict[str, NetdevConfig] = {}
        self.hub_ports: dict[int, int] = {}          # hub id -> num_ports
        self.id_counter = 0
        self.mac_table: dict[int, int] = {}
        self.nd_table: list[dict[str, Any]] = []
        self.devfns: dict[int, tuple[str, str | None]] = {}

    # -- QemuOpts ---------------------------------------------------------------------
    def qemu_opts_parse(self, list_name: str, text: str, params: str, implied: str | None,
                        merge: bool = False, desc: dict[str, int] | None = None,
                        into: QemuOpts | None = None) -> QemuOpts:
        """opts_parse + qemu_opts_create + opts_do_parse (+ opt_validate when desc)."""
        ident = opts_parse_id(params)
        if merge:
            if ident is not None:
                raise CmdlineError(text, "Invalid parameter 'id'")
        elif ident is not None:
            if not id_wellformed(ident):
                raise CmdlineError(text, "Parameter 'id' expects an identifier (identifiers "
                                   "consist of letters, digits, '-', '.', '_', starting "
                                   "with a letter)")
            used = self.opts_ids.setdefault(list_name, set())
            if ident in used:
                raise CmdlineError(text, f"Duplicate ID '{ident}' for {list_name}")
            used.add(ident)
        opts = into if into is not None else QemuOpts(list_name, text, ident, [])
        i, first = 0, implied
        while i < len(params):
            name, value, i, is_help = get_opt_name_value(params, i, first, self.warnings)
            first = None
            if is_help and desc is not None:     # only lists with a description ask
                opts.help = True
                return opts
            if name == "id":
                continue
            if desc is not None:
                if name not in desc:
                    raise CmdlineError(text, f"Invalid parameter '{name}'")
                try:
                    self.opt_validate(name, value, desc[name])
                except _Reason as r:
                    raise CmdlineError(text, str(r)) from None
            opts.items.append((name, value))
        return opts

    @staticmethod
    def opt_validate(name: str, value: str, kind: int) -> None:
        """opt_validate: parse_option_number / parse_option_size."""
        if kind == _U32:
            v = _strtoull(value)
            if v is None:
                if _strtoll(value) is not None:
                    raise _Reason(f"Value '{value}' is too large for parameter '{name}'")
                raise _Reason(f"Parameter '{name}' expects a number")
        elif kind == _SIZE:
            if qemu_strtosz(value) is None:
                raise _Reason(f"Parameter '{name}' expects a non-negative number below 2^64 "
                              "(optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, "
                              "tera-, peta- and exabytes, respectively)")

    # -- keyval -----------------------------------------------------------------------
    def keyval_parse_into(self, text: str, params: str, implied: str | None) -> bool:
        """keyval_parse_into (util/keyval.c) into the machine dict; returns 'help wanted'."""
        i, help_wanted = 0, False
        while i < len(params):
            m = _KEY_RE.match(params, i)
            end = m.end() if m else i
            key = params[i:end]
            if key and (end >= len(params) or params[end] != "="):
                if key in ("help", "?"):
                    help_wanted = True
                    i = end + 1
                    implied = None
                    continue
                if implied:
                    self.machine_dict[implied] = key
                    self.machine_text[implied] = text
                    i, implied = end + 1, None
                    continue
            implied = None
            for n, frag in enumerate(key.split(".")):
                if not (re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", frag)
                        or (n and frag.isdigit())):
                    raise CmdlineError(text, f"Invalid parameter '{key}'")
            if end >= len(params) or params[end] != "=":
                raise CmdlineError(text, f"Expected '=' after parameter '{key}'")
            value, j = get_opt_value(params, end + 1)
            self.machine_dict[key] = value
            self.machine_text[key] = text
            i = j + 1
        return help_wanted

    # -- the option loop (qemu_init, second pass) -------------------------------------
    def run(self, words: list[str]) -> MachineConfig:
        cfg = self.cfg
        for k, w in enumerate(words):
            if _PROG_RE.match(os.path.basename(w)) and not any(
                    x.startswith("-") and (x[2:] if x.startswith("--") else x[1:])
                    in QEMU_OPTIONS for x in words[:k]):
                cfg.program, cfg.launcher, words = w, words[:k], words[k + 1:]
                self.progname = w
                break
        i = 0
        while i < len(words):
            tok = words[i]
            if not tok.startswith("-"):
                cfg.ignored_options.append(tok)          # a disk image: drive_add(hda)
                i += 1
                continue
            name = tok[2:] if tok.startswith("--") else tok[1:]
            legacy = _LEGACY_OPTIONS.get(name)
            if name not in QEMU_OPTIONS and legacy is None:
                raise CmdlineError(tok, "invalid option")
            has_arg = QEMU_OPTIONS[name] if legacy is None else legacy[0]
            arg: str | None = None
            if has_arg:
                if i + 1 >= len(words):
                    raise CmdlineError(tok, "requires an argument")
                arg = words[i + 1]
                text = f"{tok} {arg}"
                i += 2
            else:
                text = tok
                i += 1
            if name in _NOT_THIS_TARGET:
                raise CmdlineError(text, "Option not supported for this target")
            if legacy is not None:
                self.warnings.append(f"{text}: option removed in QEMU {legacy[1]}; "
                                     + ("treated as -machine accel=tcg" if name == "no-kvm"
                                        else "ignored"))
            if name in _HONOURED:
                self.option(name, text, arg)
            else:
                cfg.ignored_options.append(text)
                if name == "cpu" and _is_help(arg):
                    raise CmdlineHelp(text, "-cpu help is not available in qnetlearn "
                                      "(the CPU model is not modelled)")
                if name in ("h", "help", "version"):
                    raise CmdlineHelp(text, "qnetlearn reads QEMU 7.2 command lines "
                                      "(qemu-system-x86_64); QEMU would print its "
                                      f"{'version' if name == 'version' else 'help'} "
                                      "and exit")
        return self.finish()

    def option(self, name: str, text: str, arg: str | None) -> None:
        """The switch in qemu_init for the options qnetlearn honours."""
        if name == "netdev":
            self.default_net = False
            self.parse_netdev(text, arg or "")
        elif name == "nic":
            self.default_net = False
            o = self.qemu_opts_parse("nic", text, arg or "", "type")
            self.nic_specs.append(_NetSpec(text, o.id, o.as_dict()))
        elif name == "net":
            self.default_net = False
            o = self.qemu_opts_parse("net", text, arg or "", "type")
            self.net_specs.append(_NetSpec(text, o.id, o.as_dict()))
        elif name == "device":
            self.parse_device(text, arg or "")
        elif name in ("machine", "M"):
            if self.keyval_parse_into(text, arg or "", "type"):
                raise CmdlineHelp(text, self.machine_help())
        elif name == "enable-kvm":
            self.machine_dict["accel"] = "kvm"
            self.machine_text["accel"] = text
        elif name == "no-kvm":
            self.machine_dict["accel"] = "tcg"
            self.machine_text["accel"] = text
        elif name == "accel":
            o = self.qemu_opts_parse("accel", text, arg or "", "accel")
            acc = o.get("accel")
            if acc is None or _is_help(acc):
                raise CmdlineHelp(text, "Accelerators supported in QEMU binary:\n"
                                  + "\n".join(("kvm", "tcg")) + "\n(qnetlearn models "
                                  "both; tcg is QEMU's default)")
            self.accel_specs.append(o)
        elif name == "m":
            self.mem = self.qemu_opts_parse("memory", text, arg or "", "size", merge=True,
                                            desc={"size": _SIZE, "slots": _U32,
                                                  "maxmem": _SIZE}, into=self.mem)
            if self.mem.help:
                raise CmdlineHelp(text, "memory options: size=<size>, slots=<number>, "
                                  "maxmem=<size>")
            self.mem.text = text
        elif name == "smp":
            self.smp = self.qemu_opts_parse(
                "smp-opts", text, arg or "", "cpus", merge=True,
                desc={k: _U32 for k in ("cpus", "sockets", "dies", "clusters", "cores",
                                        "threads", "maxcpus")}, into=self.smp)
            if self.smp.help:
                raise CmdlineHelp(text, "smp options: cpus, sockets, dies, clusters, cores, "
                                  "threads, maxcpus (numbers)")
            self.smp.text = text
        elif name == "monitor":
            assert arg is not None
            if not arg:
                raise CmdlineError(text, "parse error: empty monitor character device")
            if not arg.startswith("none"):
                self.cfg.monitor.append(arg)
        elif name in ("qmp", "qmp-pretty"):
            assert arg is not None
            if not arg:
                raise CmdlineError(text, "parse error: empty monitor character device")
            (self.cfg.qmp if name == "qmp" else self.cfg.qmp_pretty).append(arg)
        elif name == "nodefaults":
            self.cfg.nodefaults = True

    def parse_netdev(self, text: str, arg: str) -> None:
        """-netdev: JSON or stream/dgram go the 'modern' way (netdev_is_modern)."""
        if arg.startswith("{"):
            items = self.parse_json(text, arg)
            ident = items.get("id")
            if isinstance(ident, str):
                if not id_wellformed(ident):
                    raise CmdlineError(text, "Parameter 'id' expects an identifier")
                used = self.opts_ids.setdefault("netdev", set())
                if ident in used:
                    raise CmdlineError(text, f"Duplicate ID '{ident}' for netdev")
                used.add(ident)
            self.modern_netdevs.append(_NetSpec(text, ident if isinstance(ident, str)
                                                else None, items, json=True))
            return
        o = self.qemu_opts_parse("netdev", text, arg, "type")
        spec = _NetSpec(text, o.id, o.as_dict())
        if spec.items.get("type") in ("stream", "dgram"):
            self.modern_netdevs.append(spec)
        else:
            self.netdev_specs.append(spec)

    def parse_device(self, text: str, arg: str) -> None:
        """-device: QemuOpts (implied key 'driver') or JSON."""
        if arg.startswith("{"):
            items = self.parse_json(text, arg)
            driver = items.pop("driver", None)
            if not isinstance(driver, str):
                raise CmdlineError(text, "Parameter 'driver' is missing" if driver is None
                                   else "Invalid parameter type for 'driver', expected: "
                                   "string")
            ident = items.pop("id", None)
            if ident is not None and not isinstance(ident, str):
                raise CmdlineError(text, "Invalid parameter type for 'id', expected: string")
            self.json_devices.append(_DevSpec(text, driver, ident, items, json=True))
            return
        o = self.qemu_opts_parse("device", text, arg, "driver")
        items = o.as_dict()
        driver = items.pop("driver", None)
        if driver is None:
            raise CmdlineError(text, "Parameter 'driver' is missing")
        if _is_help(driver):
            raise CmdlineHelp(text, "Network devices:\n" + "\n".join(
                f'name "{m}", bus PCI' for m in _PCI_NIC_MODELS)
                + "\n(qnetlearn emulates virtio-net-pci and e1000)")
        if any(_is_help(k) and v == "on" for k, v in items.items()):
            raise CmdlineHelp(text, self.device_help(driver))
        self.device_specs.append(_DevSpec(text, driver, o.id, items))

    @staticmethod
    def parse_json(text: str, arg: str) -> dict[str, Any]:
        try:
            obj = json.loads(arg)
        except (ValueError, RecursionError) as e:
            raise CmdlineError(text, f"JSON parse error, {e}") from None
        if not isinstance(obj, dict):
            raise CmdlineError(text, "Invalid parameter type, expected: object")
        return obj

    # -- after the loop ---------------------------------------------------------------
    def finish(self) -> MachineConfig:
        """The rest of qemu_init: machine, accelerator, memory, smp, network, devices."""
        cfg = self.cfg
        self.select_machine()
        self.configure_accelerators()
        self.parse_memory_options()
        self.parse_smp()
        if self.default_net and not cfg.nodefaults:
            # vl.c: "-net nic" and "-net user" when no network option was given
            self.net_specs.append(_NetSpec("", None, {"type": "nic"}))
            self.default_nic = True
        else:
            self.default_nic = False
        self.net_init_clients()
        self.pc_nic_init()
        self.create_cli_devices()
        self.net_check_clients()
        return cfg

    def select_machine(self) -> None:
        """select_machine: the -machine type; other properties kept in machine_opts."""
        cfg = self.cfg
        t = self.machine_dict.get("type", "pc")
        text = self.machine_text.get("type", "-machine")
        kind = _machine_kind(t)
        if kind is None:
            raise CmdlineError(text, f"unsupported machine type '{t}' (use -machine help to "
                               "list supported machines)")
        if kind == "other":
            raise CmdlineError(text, f"machine type '{t}' exists in QEMU but is not modelled "
                               "by qnetlearn (it emulates the i440FX 'pc' machines)")
        if kind == "q35":
            self.warnings.append(f"{text}: machine '{t}' is built as an i440FX pc by "
                                 "qnetlearn (its NICs still sit on PCI bus 0)")
        self.machine_kind = kind
        cfg.machine = t
        cfg.machine_opts = {k: v for k, v in self.machine_dict.items()
                            if k not in ("type", "accel")}
        usb = cfg.machine_opts.get("usb")
        if usb is not None:
            try:
                cfg.machine_opts["usb"] = qapi_bool_parse("usb", usb)
            except _Reason as r:
                raise CmdlineError(self.machine_text["usb"], str(r)) from None

    def configure_accelerators(self) -> None:
        """configure_accelerators (vl.c): -accel list, or -machine accel=a:b, or default."""
        cfg = self.cfg
        legacy = self.machine_dict.get("accel")
        specs = list(self.accel_specs)
        if not specs:
            text = self.machine_text.get("accel", "")
            if legacy is None:
                legacy = "kvm:tcg" if self.progname.endswith("kvm") else "tcg:kvm"
            for a in legacy.split(":"):
                if a not in _ACCELS:
                    raise CmdlineError(text, f"invalid accelerator {a}")
                specs.append(QemuOpts("accel", text, None, [("accel", a)]))
        elif legacy is not None:
            raise CmdlineError(self.machine_text["accel"], "The -accel and \"-machine "
                               "accel=\" options are incompatible")
        for o in specs:
            a = o.get("accel") or ""
            if a not in _ACCELS:
                raise CmdlineError(o.text, f"invalid accelerator {a}")
            if a not in _ACCEL_PROPS:
                self.warnings.append(f"{o.text}: accelerator '{a}' exists in QEMU but is not "
                                     "modelled by qnetlearn; trying the next one")
                continue
            props: dict[str, str] = {}
            for k, v in o.items:
                if k == "accel":
                    continue
                if k not in _ACCEL_PROPS[a]:
                    raise CmdlineError(o.text, f"Property '{a}-accel.{k}' not found")
                props[k] = v
            if a == "kvm" and props.get("kernel-irqchip", "on") not in ("on", "off",
                                                                          "split"):
                raise CmdlineError(o.text, "Parameter 'kernel-irqchip' does not accept "
                                   f"value '{props['kernel-irqchip']}'")
            if a == "tcg" and props.get("thread", "single") not in ("single", "multi"):
                raise CmdlineError(o.text, "Invalid 'thread' setting "
                                   f"{props['thread']}")
            cfg.accel, cfg.accel_opts = a, props
            return
        raise CmdlineError(specs[-1].text if specs else "", "no accelerator found")

    def parse_memory_options(self) -> None:
        """parse_memory_options (vl.c) + machine_set_mem (hw/core/machine.c)."""
        cfg = self.cfg
        o = self.mem
        if o is None:
            return
        size_s = o.get("size")
        size = qemu_strtosz(size_s) if size_s is not None else 0
        assert size is not None
        if size and size_s is not None and size_s[-1:].isdigit():
            size = qemu_strtosz(size_s + "M")        # legacy suffix-less format: MiB
            if size is None:
                raise CmdlineError(o.text, f"Parameter 'memory.size' expects a size (a "
                                   f"suffix-less size is in MiB: '{size_s}M')")
        if not size:
            size = 128 << 20                           # mc->default_ram_size
        size = (size + 8191) & ~8191                   # QEMU_ALIGN_UP(size, 8192)
        if size >= _U64:
            raise CmdlineError(o.text, "ram size too large")
        maxmem_s, slots = o.get("maxmem"), o.get("slots")
        if maxmem_s is not None:
            maxmem = qemu_strtosz(maxmem_s) or 0
            if maxmem < size:
                raise CmdlineError(o.text, "invalid value of maxmem: maximum memory size "
                                   f"(0x{maxmem:x}) must be at least the initial memory "
                                   f"size (0x{size:x})")
            if slots is not None and _strtoull(slots) and maxmem == size:
                raise CmdlineError(o.text, "invalid value of maxmem: memory slots were "
                                   f"specified but maximum memory size (0x{maxmem:x}) is "
                                   f"equal to the initial memory size (0x{size:x})")
        elif slots is not None:
            raise CmdlineError(o.text, "slots specified but no max-size")
        cfg.ram_size = size

    def parse_smp(self) -> None:
        """machine_parse_smp_config (hw/core/machine-smp.c), cores preferred (since 6.2)."""
        o = self.smp
        if o is None:
            return
        v = {k: _strtoull(o.get(k) or "0") or 0 for k in
             ("cpus", "sockets", "dies", "clusters", "cores", "threads", "maxcpus")}
        if any(o.get(k) is not None and not v[k] for k in v):
            self.warnings.append(f"{o.text}: Deprecated CPU topology (considered invalid): "
                                 "CPU topology parameters must be greater than zero")
        if v["clusters"] > 1:
            raise CmdlineError(o.text, "clusters not supported by this machine's CPU topology")
        cpus, sockets, cores, threads, maxcpus = (v[k] for k in ("cpus", "sockets", "cores",
                                                                 "threads", "maxcpus"))
        dies = v["dies"] or 1
        if cpus == 0 and maxcpus == 0:
            sockets, cores, threads = sockets or 1, cores or 1, threads or 1
        else:
            maxcpus = maxcpus or cpus
            if cores == 0:
                sockets, threads = sockets or 1, threads or 1
                cores = maxcpus // (sockets * dies * threads)
            elif sockets == 0:
                threads = threads or 1
                sockets = maxcpus // (dies * cores * threads)
            if threads == 0:
                threads = maxcpus // (sockets * dies * cores) if sockets * cores else 0
        maxcpus = maxcpus or sockets * dies * cores * threads
        cpus = cpus or maxcpus
        topo = (f"sockets ({sockets}) * dies ({dies}) * cores ({cores}) * threads "
                f"({threads})")
        if sockets * dies * cores * threads != maxcpus:
            raise CmdlineError(o.text, "Invalid CPU topology: product of the hierarchy must "
                               f"match maxcpus: {topo} != maxcpus ({maxcpus})")
        if maxcpus < cpus:
            raise CmdlineError(o.text, "Invalid CPU topology: maxcpus must be equal to or "
                               f"greater than smp: {topo} == maxcpus ({maxcpus}) < smp_cpus "
                               f"({cpus})")
        limit = 255 if self.machine_kind == "i440fx" else 288
        if maxcpus > limit:
            raise CmdlineError(o.text, f"Invalid SMP CPUs {maxcpus}. The max CPUs supported "
                               f"by machine '{self.cfg.machine}' is {limit}")
        self.cfg.smp = cpus

    # -- net/net.c --------------------------------------------------------------------
    def id_generate(self) -> str:
        """id_generate(ID_NET) (util/id.c), without QEMU's two random digits."""
        n = self.id_counter
        self.id_counter += 1
        return f"#net{n}"

    def add_client(self, text: str, nd: NetdevConfig) -> NetdevConfig:
        if nd.id in self.clients:
            raise CmdlineError(text, f"Duplicate ID '{nd.id}'")
        self.clients[nd.id] = nd
        self.cfg.netdevs.append(nd)
        return nd

    def net_hub_add_port(self, text: str, hub_id: int, name: str | None,
                         peer: NetdevConfig | None) -> NetdevConfig:
        """net_hub_add_port (net/hub.c): find or create hub, new port hub<N>port<k>."""
        if hub_id not in self.hub_ports:
            self.hub_ports[hub_id] = 0
            self.cfg.hubs.append(hub_id)
        k = self.hub_ports[hub_id]
        self.hub_ports[hub_id] = k + 1
        auto = name is None
        name = name or f"hub{hub_id}port{k}"
        if auto and name in self.clients:
            raise CmdlineError(text, f"hub port name '{name}' is already the name of another "
                               "net client (QEMU would create two clients of one name; "
                               "qnetlearn needs names to be unique)")
        nd = NetdevConfig(name, "hubport", {} if auto else {"hubid": str(hub_id)},
                          hubid=hub_id)
        if not auto:
            self.add_client(text, nd)
        else:
            self.clients[name] = nd
            self.cfg.netdevs.append(nd)
        if peer is not None:
            nd.peer, peer.peer = peer.id, nd.id
        return nd

    def in_use(self, nd: NetdevConfig) -> str | None:
        """What a client is already peered with, if anything."""
        return nd.peer or nd.nic

    def visit_members(self, spec: _NetSpec, schema: dict[str, int],
                      skip: tuple[str, ...] = ()) -> dict[str, str]:
        """The opts visitor (or, for JSON, the QObject input visitor) on one variant."""
        out: dict[str, str] = {}
        for k, v in spec.items.items():
            if k in ("id", "type") or k in skip:
                continue
            if k not in schema:
                raise CmdlineError(spec.text, f"Parameter '{k}' is unexpected" if spec.json
                                   else f"Invalid parameter '{k}'")
            kind = schema[k]
            if spec.json:
                want = bool if kind == _BOOL else int if kind in (_U32, _I32, _SIZE) else str
                if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                    raise CmdlineError(spec.text, f"Invalid parameter type for '{k}', "
                                       f"expected: {_TYPE_NAMES[kind]}")
                v = ("on" if v else "off") if want is bool else str(v)
            try:
                out[k] = self.visit_value(k, v, kind)
            except _Reason as r:
                raise CmdlineError(spec.text, str(r)) from None
        return out

    @staticmethod
    def visit_value(name: str, v: str, kind: int) -> str:
        """opts_type_bool/int64/uint64/size plus visit_type_int32/uint32 range checks."""
        if kind == _BOOL:
            return qapi_bool_parse(name, v)
        if kind == _U32:
            n = _parse_uint(v)
            if n is None:
                raise _Reason(f"Parameter '{name}' expects a uint64 value")
            if n > 0xFFFFFFFF:
                raise _Reason(f"Parameter '{name}' expects uint32_t")
            return str(n)
        if kind == _I32:
            n = _strtoll(v)
            if n is None or not -(1 << 63) <= n < (1 << 63):
                raise _Reason(f"Parameter '{name}' expects an int64 value")
            if not -(1 << 31) <= n < (1 << 31):
                raise _Reason(f"Parameter '{name}' expects int32_t")
            return str(n)
        if kind == _SIZE:
            if qemu_strtosz(v) is None:
                raise _Reason(f"Parameter '{name}' expects a size value")
            return v
        return v

    def net_client_type(self, spec: _NetSpec, is_netdev: bool) -> str:
        """visit_type_Netdev's base members: id then type, and net_client_init1's checks."""
        t = spec.items.get("type")
        if is_netdev and isinstance(t, str) and _is_help(t):     # net_init_netdev
            raise CmdlineHelp(spec.text, "Available netdev backend types:\n"
                              + "\n".join(_NETDEV_TYPES[2:]) + "\n(qnetlearn models "
                              + ", ".join(_MODELLED_NETDEVS) + ")")
        if is_netdev and spec.id is None:
            raise CmdlineError(spec.text, "Parameter 'id' is missing")
        if t is None:
            raise CmdlineError(spec.text, "Parameter 'type' is missing")
        if not isinstance(t, str):
            raise CmdlineError(spec.text, "Invalid parameter type for 'type', expected: "
                               "string")
        if t not in _NETDEV_TYPES:
            if t == "dump" and not is_netdev:
                raise CmdlineError(spec.text, "network backend 'dump' (QEMU 2.x) exists no "
                                   "more and is not modelled by qnetlearn; use rec.to_pcap()")
            raise CmdlineError(spec.text, f"Parameter 'type' does not accept value '{t}' "
                               "(unknown netdev type)")
        if is_netdev and t in ("nic", "none"):
            raise CmdlineError(spec.text, f"network backend '{t}' is not compiled into this "
                               "binary")
        if not is_netdev and t == "hubport":
            raise CmdlineError(spec.text, "network backend 'hubport' is only supported with "
                               "-netdev/-nic")
        if t not in _MODELLED_NETDEVS and t not in ("nic", "none"):
            raise CmdlineError(spec.text, f"network backend '{t}' exists in QEMU but is not "
                               "modelled by qnetlearn (it models: "
                               + ", ".join(_MODELLED_NETDEVS) + ")")
        return t

    def net_client_init(self, spec: _NetSpec, is_netdev: bool) -> None:
        """net_client_init + net_client_init1 for -netdev/-nic (is_netdev) and -net."""
        t = self.net_client_type(spec, is_netdev)
        peer: NetdevConfig | None = None
        vlan, legacy_name = 0, None
        user_id = spec.id is not None
        if not is_netdev:
            if spec.id is None:
                spec.id = self.id_generate()    # net_client_init: "Create an ID for -net"
            if t == "none":
                extra = [k for k in spec.items if k not in ("type", "id")]
                if extra:
                    raise CmdlineError(spec.text, f"Invalid parameter '{extra[0]}'")
                return
            vlan, legacy_name = self.legacy_net_opts(spec)
        schema = _TAP_OPTS if t == "tap" else _HUBPORT_OPTS if t == "hubport" else _NIC_OPTS
        opts = self.visit_members(spec, schema, skip=("vlan", "name") if not is_netdev
                                  else ())
        if t == "hubport" and "hubid" not in opts:
            raise CmdlineError(spec.text, "Parameter 'hubid' is missing")
        assert spec.id is not None
        name = spec.id if (is_netdev or user_id or legacy_name is None) else legacy_name
        if not is_netdev and not (t == "nic" and "netdev" in opts):
            peer = self.net_hub_add_port(spec.text, vlan, None, None)
        if t != "nic" and name in self.clients:
            raise CmdlineError(spec.text, f"Duplicate ID '{name}'")
        if t == "tap":
            self.net_init_tap(spec, name, opts, peer)
        elif t == "hubport":
            self.net_init_hubport(spec, name, opts)
        else:
            self.net_init_nic(spec, name, opts, peer)

    def legacy_net_opts(self, spec: _NetSpec) -> tuple[int, str | None]:
        """QEMU <= 2.x -net ...,vlan=N,name=X (vlan: the hub id)."""
        vlan = 0
        v = spec.items.get("vlan")
        if v is not None:
            try:
                vlan = int(self.visit_value("vlan", v, _I32))
            except _Reason as r:
                raise CmdlineError(spec.text, str(r)) from None
            if vlan < 0:
                raise CmdlineError(spec.text, "Parameter 'vlan' expects a hub number >= 0")
            self.warnings.append(f"{spec.text}: vlan= was removed in QEMU 3.0 (7.2 says "
                                 "Invalid parameter 'vlan'); read as QEMU 2.x: hub "
                                 f"{vlan}")
            if spec.items.get("type") == "nic" and "netdev" in spec.items:
                self.warnings.append(f"{spec.text}: vlan= is ignored with netdev=")
        name = spec.items.get("name")
        if name is not None:
            self.warnings.append(f"{spec.text}: name= was removed in QEMU 6.0; read as QEMU "
                                 "2.x: the client's name")
        return vlan, name

    def net_init_tap(self, spec: _NetSpec, name: str, opts: dict[str, str],
                     peer: NetdevConfig | None) -> None:
        """net_init_tap (net/tap.c): only what qnetlearn's TAP models is accepted."""
        for k in ("fd", "fds", "vhostfd", "vhostfds", "helper", "br"):
            if k in opts:
                raise CmdlineError(spec.text, f"tap option '{k}' exists in QEMU but is not "
                                   "modelled by qnetlearn (its TAP is simulated, or a real "
                                   "Linux TAP opened by ifname with host=kernel)")
        for k in ("vhost", "vhostforce"):
            if opts.get(k) == "on":
                raise CmdlineError(spec.text, f"{k}=on (vhost-net) exists in QEMU but is not "
                                   "modelled by qnetlearn")
        if int(opts.get("queues", "1")) > 1:
            raise CmdlineError(spec.text, "multiqueue tap (queues > 1) exists in QEMU but is "
                               "not modelled by qnetlearn")
        if opts.get("host", "sim") not in ("sim", "kernel"):
            raise CmdlineError(spec.text, "Parameter 'host' expects 'sim' or 'kernel' "
                               "(qnetlearn's choice of TAP host end)")
        nd = self.add_client(spec.text, NetdevConfig(name, "tap", opts))
        if peer is not None:
            nd.peer, peer.peer = peer.id, nd.id

    def net_init_hubport(self, spec: _NetSpec, name: str, opts: dict[str, str]) -> None:
        """net_init_hubport (net/hub.c)."""
        hubid = int(opts["hubid"])
        if hubid < 0:
            raise CmdlineError(spec.text, "Parameter 'hubid' expects a hub number >= 0")
        hubpeer = None
        if "netdev" in opts:
            hubpeer = self.clients.get(opts["netdev"])
            if hubpeer is None:
                raise CmdlineError(spec.text, f"netdev '{opts['netdev']}' not found")
            if hubpeer.type == "hubport":
                raise CmdlineError(spec.text, f"netdev '{hubpeer.id}' is a hub port: a "
                                   "hubport's netdev= must name a backend such as a tap")
            if self.in_use(hubpeer):
                raise CmdlineError(spec.text, f"netdev '{hubpeer.id}' is in use (peer of "
                                   f"'{self.in_use(hubpeer)}')")
        nd = self.net_hub_add_port(spec.text, hubid, name, hubpeer)
        nd.opts = opts

    def net_init_nic(self, spec: _NetSpec, name: str, opts: dict[str, str],
                     peer: NetdevConfig | None) -> None:
        """net_init_nic (net/net.c): a NICInfo in nd_table, for the board to create."""
        if "netdev" in opts:
            peer = self.clients.get(opts["netdev"])
            if peer is None:
                raise CmdlineError(spec.text, f"netdev '{opts['netdev']}' not found")
        if len(self.nd_table) >= MAX_NICS:
            raise CmdlineError(spec.text, "too many NICs")
        mac = None
        if "macaddr" in opts:
            mac = net_parse_macaddr(opts["macaddr"])
            if mac is None:
                raise CmdlineError(spec.text, "invalid syntax for ethernet address")
            if mac[0] & 1:
                raise CmdlineError(spec.text, "NIC cannot have multicast MAC address (odd "
                                   "1st byte)")
        mac = self.qemu_macaddr_default_if_unset(mac)
        if "vectors" in opts and int(opts["vectors"]) > 0x7FFFFFF:
            raise CmdlineError(spec.text, f"invalid # of vectors: {opts['vectors']}")
        self.nd_table.append({"text": spec.text, "model": opts.get("model"), "mac": mac,
                              "netdev": peer, "devaddr": opts.get("addr"),
                              "vectors": opts.get("vectors"), "name": name})

    def net_param_nic(self, spec: _NetSpec) -> None:
        """net_param_nic (net/net.c): -nic TYPE,model=,mac=,... = netdev + board NIC."""
        t = spec.items.get("type")
        if t == "none":
            return
        if isinstance(t, str) and _is_help(t):
            raise CmdlineHelp(spec.text, "Available netdev backend types:\n"
                              + "\n".join(_NETDEV_TYPES[2:]) + "\n\nAvailable NIC models:\n"
                              + "\n".join(_PCI_NIC_MODELS))
        if len(self.nd_table) >= MAX_NICS:
            raise CmdlineError(spec.text, "no more on-board/default NIC slots available")
        if t is None:
            spec.items["type"] = "user"
        model = spec.items.pop("model", None)
        if spec.id is None:
            spec.id = self.id_generate()
        mac_s = spec.items.pop("mac", None)
        mac = None
        if mac_s is not None:
            mac = net_parse_macaddr(mac_s)
            if mac is None:
                raise CmdlineError(spec.text, "invalid syntax for ethernet address")
            if mac[0] & 1:
                raise CmdlineError(spec.text, "NIC cannot have multicast MAC address")
        mac = self.qemu_macaddr_default_if_unset(mac)
        self.net_client_init(spec, True)
        self.nd_table.append({"text": spec.text, "model": model, "mac": mac,
                              "netdev": self.clients[spec.id], "devaddr": None,
                              "vectors": None, "name": spec.id})

    def net_init_clients(self) -> None:
        """net_init_clients: -netdev (modern ones first), then -nic, then -net."""
        for spec in self.modern_netdevs + self.netdev_specs:
            self.net_client_init(spec, True)
        for spec in self.nic_specs:
            self.net_param_nic(spec)
        for spec in self.net_specs:
            self.net_client_init(spec, False)

    # -- MAC addresses (net/net.c) ----------------------------------------------------
    def qemu_macaddr_default_if_unset(self, mac: bytes | None) -> bytes:
        """qemu_macaddr_default_if_unset: 52:54:00:12:34:xx, lowest xx >= 0x56 not used.

        Only addresses with QEMU's 52:54:00:12:34 prefix count as used, and only once
        this has been called for them (that is, when their NIC is created).
        """
        base = bytes((0x52, 0x54, 0x00, 0x12, 0x34))
        if mac is not None and mac != bytes(6):
            if mac[:5] == base and 0x56 <= mac[5] < 0xFF:
                self.mac_table[mac[5]] = self.mac_table.get(mac[5], 0) + 1
            return mac
        free = next((i for i in range(0x56, 0xFF) if not self.mac_table.get(i)), 0xFF)
        if free < 0xFF:
            self.mac_table[free] = 1
        return base + bytes((free,))

    # -- the board's NICs (hw/i386/pc.c pc_nic_init, hw/pci/pci.c pci_nic_init_nofail) ---
    def pc_nic_init(self) -> None:
        default = "e1000" if self.machine_kind == "i440fx" else "e1000e"
        for nd in self.nd_table:
            text = nd["text"]
            model = nd["model"] or default
            if model == "virtio":
                model = "virtio-net-pci"
            if _is_help(model):
                raise CmdlineHelp(text, "Available NIC models:\n" + "\n".join(_PCI_NIC_MODELS)
                                  + "\n(qnetlearn emulates virtio-net-pci and e1000)")
            if model not in _PCI_NIC_MODELS and model != "ne2k_isa":
                raise CmdlineError(text, f"Unsupported NIC model: {model}")
            if model not in NIC_MODELS:
                if text == "" and self.default_nic:
                    self.warnings.append(f"the default NIC ({model}) is not modelled by "
                                         "qnetlearn; the machine has no NIC")
                    self.release_default_port(nd)
                    continue
                raise CmdlineError(text, f"NIC model '{model}' exists in QEMU but is not "
                                   "modelled by qnetlearn (it emulates virtio-net-pci and "
                                   "e1000)")
            slot = None
            if nd["devaddr"] is not None:
                parsed = pci_parse_devaddr(nd["devaddr"])
                if parsed is None or parsed[1] != 0:
                    raise CmdlineError(text, f"Invalid PCI device address {nd['devaddr']} "
                                       f"for device {model}")
                if parsed[0] != 0:
                    raise CmdlineError(text, "No support for non-zero PCI domains")
                slot = parsed[2]
            props = {"mac": format_mac(nd["mac"])}
            if nd["devaddr"] is not None:
                props["addr"] = nd["devaddr"]
            if nd["vectors"] is not None and model == "virtio-net-pci":
                check_msix_vectors(text, int(nd["vectors"]))
                props["vectors"] = nd["vectors"]
            self.realize_nic(text, model, None, nd["netdev"], nd["mac"], props, slot, 0,
                             source="-nic" if text.startswith(("-nic", "--nic")) else "-net")
        if self.default_nic:
            self.warnings.append("QEMU's default '-net user' (slirp) backend is not modelled "
                                 "by qnetlearn and was left out")

    def release_default_port(self, nd: dict[str, Any]) -> None:
        """Drop the default NIC's hub port and give its MAC back (qemu_macaddr_set_free)."""
        mac = nd["mac"]
        if self.mac_table.get(mac[5]) and mac[:5] == bytes((0x52, 0x54, 0x00, 0x12, 0x34)):
            self.mac_table[mac[5]] -= 1
        port = nd["netdev"]
        if port is not None and port.type == "hubport" and port.peer is None:
            self.cfg.netdevs.remove(port)
            del self.clients[port.id]
            if port.hubid is not None and not any(
                    n.hubid == port.hubid for n in self.cfg.netdevs):
                self.cfg.hubs.remove(port.hubid)

    def realize_nic(self, text: str, model: str, dev_id: str | None,
                    peer: NetdevConfig | None, mac: bytes | None, props: dict[str, str],
                    slot: int | None, function: int, source: str) -> None:
        """set_netdev (peer in use?), PCI slot check, MAC default, assign_name."""
        if peer is not None and self.in_use(peer):
            owner = _PROP_OWNER.get((model, "netdev"), model)
            raise CmdlineError(text, f"Property '{owner}.netdev' can't take value "
                               f"'{peer.id}', it's in use")
        devfns = self.devfns
        if slot is not None:
            devfn = slot << 3 | function
            other = devfns.get(devfn)
            if other is None and devfn in _BUILTIN_DEVFNS:
                other = (_BUILTIN_DEVFNS[devfn], None)
            if other is not None:
                raise CmdlineError(text, f"PCI: slot {slot} function {function} not available "
                                   f"for {model}, in use by {other[0]},id="
                                   f"{other[1] or '(null)'}")
        else:       # pci_bus_devfn: the first slot whose function 0 is free, as the machine
            devfn = next((d for d in range(0, 256, 8)
                          if d not in devfns and d not in _BUILTIN_DEVFNS), None)
            if devfn is None:
                raise CmdlineError(text, f"PCI: no slot/function available for {model}, all "
                                   "in use or reserved")
        devfns[devfn] = (model, dev_id)
        mac = self.qemu_macaddr_default_if_unset(mac)
        n = sum(1 for x in self.cfg.nics if x.model == model)
        name = dev_id if dev_id is not None else f"{model}.{n}"
        mac_s = format_mac(mac)
        dup = next((x.name for x in self.cfg.nics if x.mac == mac_s), None)
        if dup is not None:
            self.warnings.append(f"{text or 'default NIC'}: NIC {name} has the same MAC "
                                 f"address {mac_s} as NIC {dup}")
        nic = NicConfig(model, dev_id, name, peer.id if peer else None, mac_s, props, slot,
                        function, source)
        if peer is not None:
            peer.nic = name
        self.cfg.nics.append(nic)

    # -- -device (softmmu/qdev-monitor.c qdev_device_add) -----------------------------
    def create_cli_devices(self) -> None:
        """qemu_create_cli_devices: QemuOpts -device in order, then JSON ones."""
        used_ids = set(self.opts_ids.get("device", set()))
        for spec in self.device_specs + self.json_devices:
            if spec.json and spec.id is not None:
                if not id_wellformed(spec.id):
                    raise CmdlineError(spec.text, "Parameter 'id' expects an identifier")
                if spec.id in used_ids:
                    raise CmdlineError(spec.text, f"Duplicate device ID '{spec.id}'")
                used_ids.add(spec.id)
            driver = _DEVICE_ALIASES.get(spec.driver, spec.driver)
            if driver in NIC_MODELS:
                self.device_nic(spec, driver)
            elif driver in _OTHER_NIC_DEVICES:
                raise CmdlineError(spec.text, f"NIC model '{driver}' exists in QEMU but is "
                                   "not modelled by qnetlearn (it emulates virtio-net-pci and "
                                   "e1000)")
            elif "netdev" in spec.items:
                raise CmdlineError(spec.text, f"'{spec.driver}' is not a NIC model qnetlearn "
                                   "knows (it emulates virtio-net-pci and e1000)")
            else:
                self.cfg.ignored_options.append(spec.text)

    def device_nic(self, spec: _DevSpec, model: str) -> None:
        """qdev_device_add for a modelled NIC: properties, then realize."""
        schema = NIC_MODELS[model]
        props: dict[str, str] = {}
        mac: bytes | None = None
        slot: int | None = None
        function = 0
        peer: NetdevConfig | None = None
        vlan: int | None = None
        for k, v in spec.items.items():
            if k == "bus":
                props[k] = self.check_bus(spec, v)
                continue
            if k == "vlan":                          # QEMU <= 2.12: DEFINE_PROP_VLAN
                vlan = self.device_vlan(spec, v)
                props[k] = str(vlan)
                continue
            kind = schema.get(k)
            if kind is None:
                raise CmdlineError(spec.text, f"Property '{model}.{k}' not found")
            if spec.json and not (kind == _DEVFN and isinstance(v, int)
                                  and not isinstance(v, bool)):
                want = bool if kind == _BOOL else int if kind in (_U16, _U32, _I32) else str
                if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                    raise CmdlineError(spec.text, f"Invalid parameter type for '{k}', "
                                       f"expected: {_TYPE_NAMES[kind]}")
                v = ("on" if v else "off") if want is bool else str(v)
            owner = _PROP_OWNER.get((model, k), model)
            if kind == _MAC:
                mac = parse_mac_prop(v)
                if mac is None:
                    raise CmdlineError(spec.text, f"Property '{owner}.{k}' doesn't take value "
                                       f"'{v}'")
                props[k] = v
            elif kind == _NETDEV:
                peer = self.clients.get(v)
                if peer is None:
                    raise CmdlineError(spec.text, f"Property '{owner}.{k}' can't find value "
                                       f"'{v}'")
                props[k] = v
            elif kind == _DEVFN:
                devfn = v if isinstance(v, int) else set_pci_devfn(v)
                if devfn is None or not -1 <= devfn <= 255:
                    raise CmdlineError(spec.text, f"Property '{owner}.{k}' doesn't take value "
                                       f"'{v}'" if not isinstance(v, int) else
                                       "Parameter 'addr' expects a value between -1 and 255")
                if devfn >= 0:
                    slot, function = devfn >> 3, devfn & 7
                props[k] = str(v)
            else:
                try:
                    props[k] = self.prop_value(k, v, kind)
                except _Reason as r:
                    raise CmdlineError(spec.text, str(r)) from None
        if vlan is not None:
            if peer is not None:
                raise CmdlineError(spec.text, f"Property '{model}.vlan' can't be used with "
                                   "netdev= (they both set the NIC's peer)")
            peer = self.net_hub_port_find(spec.text, vlan)
        self.virtio_net_realize_checks(spec, model, props, peer)
        self.realize_nic(spec.text, model, spec.id, peer, mac, props, slot, function,
                         source="-device")

    @staticmethod
    def prop_value(name: str, v: str, kind: int) -> str:
        """The keyval input visitor and the qdev property setters' range checks."""
        if kind == _BOOL:
            return qapi_bool_parse(name, v)
        if kind in (_U16, _U32):
            n = _strtoull(v)
            if n is None:
                raise _Reason(f"Parameter '{name}' expects integer")
            if n > (0xFFFF if kind == _U16 else 0xFFFFFFFF):
                raise _Reason(f"Parameter '{name}' expects "
                              f"{'uint16_t' if kind == _U16 else 'uint32_t'}")
            return str(n)
        if kind == _I32:
            n = _strtoll(v)
            if n is None or not -(1 << 63) <= n < (1 << 63):
                raise _Reason(f"Parameter '{name}' expects integer")
            if not -(1 << 31) <= n < (1 << 31):
                raise _Reason(f"Parameter '{name}' expects int32_t")
            return str(n)
        if kind == _ONOFFAUTO:
            if v not in ("on", "off", "auto"):
                raise _Reason(f"Parameter '{name}' does not accept value '{v}'")
        return v

    def check_bus(self, spec: _DevSpec, bus: Any) -> str:
        """qbus_find: 'pci.0' (or the id of a -device that provides a bus)."""
        if not isinstance(bus, str):
            raise CmdlineError(spec.text, "Invalid parameter type for 'bus', expected: string")
        root = "pci.0" if self.machine_kind == "i440fx" else "pcie.0"
        ids = {d.id for d in self.device_specs + self.json_devices if d.id}
        if bus not in (root, "pci.0") and bus.split(".")[0] not in ids:
            raise CmdlineError(spec.text, f"Bus '{bus}' not found")
        if bus not in (root, "pci.0"):
            self.warnings.append(f"{spec.text}: bus '{bus}' is not modelled by qnetlearn; "
                                 "the NIC is put on bus 0")
        return bus

    def device_vlan(self, spec: _DevSpec, v: Any) -> int:
        try:
            n = int(self.visit_value("vlan", str(v), _I32))
        except _Reason as r:
            raise CmdlineError(spec.text, str(r)) from None
        if n < 0:
            raise CmdlineError(spec.text, "Parameter 'vlan' expects a hub number >= 0")
        self.warnings.append(f"{spec.text}: the vlan property was removed in QEMU 3.0; read "
                             f"as QEMU 2.x: the NIC joins hub {n}")
        return n

    def net_hub_port_find(self, text: str, hub_id: int) -> NetdevConfig:
        """net_hub_port_find (net/hub.c): a free port on the hub, else a new one."""
        for nd in reversed(self.cfg.netdevs):            # hub->ports is newest first
            if nd.type == "hubport" and nd.hubid == hub_id and not self.in_use(nd):
                return nd
        return self.net_hub_add_port(text, hub_id, None, None)

    def virtio_net_realize_checks(self, spec: _DevSpec, model: str, props: dict[str, str],
                                  peer: NetdevConfig | None) -> None:
        """The property checks in virtio_net_device_realize (hw/net/virtio-net.c)."""
        if model != "virtio-net-pci":
            return
        if "duplex" in props and props["duplex"] not in ("half", "full"):
            raise CmdlineError(spec.text, "'duplex' must be 'half' or 'full'")
        if int(props.get("speed", "-1")) < -1:
            raise CmdlineError(spec.text, "'speed' must be between 0 and INT_MAX")
        check_msix_vectors(spec.text, int(props.get("vectors", "4")))
        rx = int(props.get("rx_queue_size", "256"))
        if not (256 <= rx <= 1024 and rx & (rx - 1) == 0):
            raise CmdlineError(spec.text, f"Invalid rx_queue_size (= {rx}), must be a power "
                               "of 2 between 256 and 1024.")
        tx = int(props.get("tx_queue_size", "256"))
        if tx != 256:        # virtio_net_max_tx_queue_size: 256 unless vhost-user/vdpa
            raise CmdlineError(spec.text, f"Invalid tx_queue_size (= {tx}), must be a power "
                               "of 2 between 256 and 256")
        if "tx" in props and props["tx"] not in ("timer", "bh"):
            self.warnings.append(f"{spec.text}: virtio-net: Unknown option tx={props['tx']}, "
                                 "valid options: \"timer\" \"bh\"; defaulting to \"bh\"")

    # -- warnings (net_check_clients, net_hub_check_clients) --------------------------
    def net_check_clients(self) -> None:
        cfg = self.cfg
        for hub in cfg.hubs:
            has_nic = has_host = False
            for nd in cfg.netdevs:
                if nd.type != "hubport" or nd.hubid != hub:
                    continue
                if nd.nic:
                    has_nic = True
                elif nd.peer:
                    has_host = True
                else:
                    self.warnings.append(f"hub port {nd.id} has no peer")
            if has_host and not has_nic:
                self.warnings.append(f"hub {hub} with no nics")
            if has_nic and not has_host:
                self.warnings.append(f"hub {hub} is not connected to host network")
        for nd in cfg.netdevs:
            if not self.in_use(nd):
                self.warnings.append(f"netdev {nd.id} has no peer")
        for nic in cfg.nics:
            if nic.netdev is None:
                self.warnings.append(f"nic {nic.name} has no peer")

    # -- help texts -------------------------------------------------------------------
    def machine_help(self) -> str:
        return ("Supported machines (qnetlearn builds the i440FX pc):\n"
                "pc                   Standard PC (i440FX + PIIX, 1996) (alias of "
                "pc-i440fx-7.2)\n"
                "pc-i440fx-X.Y        Standard PC (i440FX + PIIX, 1996), versioned\n"
                "q35                  Standard PC (Q35 + ICH9, 2009) (built as pc by "
                "qnetlearn)")

    @staticmethod
    def device_help(driver: str) -> str:
        driver = _DEVICE_ALIASES.get(driver, driver)
        if driver not in NIC_MODELS:
            return f"qnetlearn has no property list for '{driver}'"
        shown = {_BOOL: "bool", _ONOFFAUTO: "OnOffAuto"}
        return f"{driver} options:\n" + "\n".join(
            f"  {k}=<{shown.get(t, _TYPE_NAMES[t])}>"
            for k, t in sorted(NIC_MODELS[driver].items()))


# --------------------------------------------------------------------------------------
# MAC and PCI address syntax
# --------------------------------------------------------------------------------------
_STRTOL16 = re.compile(r"\s*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)")


def check_msix_vectors(text: str, vectors: int) -> None:
    """virtio-pci's msix_init takes 1..PCI_MSIX_FLAGS_QSIZE + 1 (2048) vectors; with 0, or
    when msix_init fails, QEMU runs the device without MSI-X, which is not modelled."""
    if not 1 <= vectors <= 2048:
        raise CmdlineError(text, f"vectors={vectors}: QEMU then runs the device without MSI-X "
                           "(INTx only), which is not modelled by qnetlearn (1 to 2048 vectors)")


def net_parse_macaddr(p: str) -> bytes | None:
    """net_parse_macaddr (net/util.c): 6 hex numbers split by ':' or '-', or one number.

    A single number (strtol base 0, up to 0xFFFFFF) sets only the last three bytes, the
    first three staying 0, as in QEMU.
    """
    v = _strtoll(p)
    if v is not None and 0 <= v <= 0xFFFFFF:
        return bytes((0, 0, 0, v >> 16, (v >> 8) & 0xFF, v & 0xFF))
    out = []
    i = 0
    for n in range(6):
        m = _STRTOL16.match(p, i)
        assert m is not None
        digits = m.group(2)
        val = int(digits, 16) if digits else 0
        if m.group(1) == "-":
            val = -val
        val = max(-(1 << 63), min(val, (1 << 63) - 1))     # strtol clamps (ERANGE)
        out.append(val & 0xFF)
        i = m.end() if digits else i
        if n == 5:
            if i != len(p):
                return None
        else:
            if i >= len(p) or p[i] not in ":-":
                return None
            i += 1
    return bytes(out)


def parse_mac_prop(s: str) -> bytes | None:
    """set_mac (hw/core/qdev-properties-system.c): exactly xx:xx:xx:xx:xx:xx (':' or '-')."""
    if not re.fullmatch(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}", s):
        return None
    return bytes(int(s[i:i + 2], 16) for i in range(0, 18, 3))


def format_mac(mac: bytes) -> str:
    """qemu_mac_strdup_printf."""
    return ":".join(f"{b:02x}" for b in mac)


def set_pci_devfn(s: str) -> int | None:
    """set_pci_devfn: 'slot[.fn]' in hex (slot <= 0x1f, fn <= 7) -> devfn, or None."""
    m = re.fullmatch(r"\s*(?:0[xX])?([0-9a-fA-F]+)(?:\.\s*(?:0[xX])?([0-9a-fA-F]+))?", s)
    if not m:
        return None
    slot, fn = int(m.group(1), 16), int(m.group(2) or "0", 16)
    if slot > 31 or fn > 7:
        return None
    return slot << 3 | fn


def pci_parse_devaddr(s: str) -> tuple[int, int, int] | None:
    """pci_parse_devaddr without function: '[[dom:]bus:]slot' in hex -> (dom, bus, slot)."""
    m = re.fullmatch(r"(?:(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):)?([0-9a-fA-F]+)", s)
    if not m:
        return None
    dom, bus, slot = (int(g, 16) if g else 0 for g in m.groups())
    if dom > 0xFFFF or bus > 0xFF or slot > 0x1F:
        return None
    return dom, bus, slot


# --------------------------------------------------------------------------------------
def parse_cmdline(cmdline: str | Sequence[str]) -> MachineConfig:
    """Read a QEMU command line as QEMU 7.2's qemu_init does; see the module docstring.

    ``cmdline`` is a string (split with :func:`shlex.split`) or a list of words, with or
    without the program name (a word whose basename starts with ``qemu-system`` or
    ``qemu-kvm``; words before it, such as ``sudo`` or ``ip netns exec NS``, are kept in
    ``launcher``).  Raises :class:`CmdlineError` for what QEMU would refuse.
    """
    return _Parser().run(_split(cmdline))
