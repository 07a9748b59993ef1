"""The QMP-level queries both monitors share (QEMU's ``qmp_*`` functions behind HMP and QMP).

In QEMU an HMP ``info`` command usually calls the QMP command of the same meaning and
formats its result; the same split is kept here.  Every function takes the
:class:`~qnetlearn.machine.Machine` first and returns plain JSON-able data with QEMU 7.2's
member names (``qapi/*.json``), or raises :class:`QMPError` with QEMU's error class and text.

Sources for the formats (read, not copied): QEMU 7.2 ``qapi/virtio.json``,
``qapi/pci.json``, ``hw/virtio/virtio.c`` (``qmp_x_query_virtio*``), ``hw/pci/pci.c``
(``qmp_query_pci``), ``net/net.c`` (``qmp_set_link``).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ..standard_headers.virtio_ring import VRING_DESC, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT

if TYPE_CHECKING:  # pragma: no cover
    from ..hw.pci.pci import PCIDevice
    from ..hw.virtio.virtio import VirtIODevice, VirtQueue
    from ..machine import Machine
    from ..net.net import NetClientState

QEMU_VERSION = {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}
VIRTIO_QUEUE_MAX = 1024
VIRTIO_PCI_VRING_ALIGN = 4096


class QMPError(Exception):
    """A QMP error: ``{"error": {"class": cls, "desc": desc}}``."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.cls = cls
        self.desc = desc

    def to_qmp(self) -> dict[str, Any]:
        return {"class": self.cls, "desc": self.desc}


# ---------------------------------------------------------------------------------------
# Run state, name, version
# ---------------------------------------------------------------------------------------
def qmp_query_status(vm: "Machine") -> dict[str, Any]:
    """query-status (softmmu/runstate.c): the emulator is always running."""
    return {"status": "running", "singlestep": False, "running": True}


def vm_name(vm: "Machine") -> str | None:
    """The ``-name`` given on the command line (``guest=`` or the implied first value)."""
    for opt in vm.config.ignored_options:
        if opt.startswith("-name ") or opt.startswith("--name "):
            arg = opt.split(" ", 1)[1]
            for part in arg.split(","):
                if part.startswith("guest="):
                    return part[len("guest="):]
            first = arg.split(",")[0]
            if "=" not in first:
                return first
    return None


def qmp_query_name(vm: "Machine") -> dict[str, Any]:
    """query-name: ``{"name": ...}`` only when ``-name`` was given."""
    name = vm_name(vm)
    return {} if name is None else {"name": name}


def qmp_query_version(vm: "Machine") -> dict[str, Any]:
    return {"qemu": dict(QEMU_VERSION["qemu"]), "package": QEMU_VERSION["package"]}


def qmp_query_kvm(vm: "Machine") -> dict[str, Any]:
    return {"enabled": vm.accel == "kvm", "present": True}


# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------
def net_clients(vm: "Machine") -> list["NetClientState"]:
    """QEMU's ``net_clients`` list order: backends and hub ports in the order
    ``net_init_clients`` made them, then the NICs as the board and ``-device`` made them."""
    out: list[NetClientState] = list(vm.netdevs.values())
    for dev in vm.nics:
        nc = getattr(dev, "nc", None)
        if nc is not None and nc not in out:
            out.append(nc)
    for hub in vm.hubs.hubs:
        for port in hub.ports:
            if port.nc not in out:
                out.append(port.nc)
    return out


def qmp_set_link(vm: "Machine", name: str, up: bool) -> None:
    """set_link (net/net.c qmp_set_link): every client of that name, then its peer."""
    from ..net.net import qemu_set_link
    ncs = [nc for nc in net_clients(vm) if nc.name == name]
    if not ncs:
        raise QMPError(f"Device '{name}' not found", "DeviceNotFound")
    qemu_set_link(ncs[0], bool(up))
    for nc in ncs[1:]:     # further queues of a multiqueue client (none modelled today)
        nc.link_down = not up


# ---------------------------------------------------------------------------------------
# PCI
# ---------------------------------------------------------------------------------------
#: pci_class_descriptions (hw/pci/pci.c), the classes a pc machine shows
PCI_CLASS_DESC = {
    0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0106: "SATA controller",
    0x0180: "Storage controller", 0x0200: "Ethernet controller", 0x0280: "Network controller",
    0x0300: "VGA controller", 0x0380: "Display controller", 0x0401: "Audio controller",
    0x0403: "Audio controller", 0x0500: "RAM controller", 0x0600: "Host bridge",
    0x0601: "ISA bridge", 0x0604: "PCI bridge", 0x0680: "Bridge", 0x0c03: "USB controller",
    0x0c05: "SMBus", 0x0780: "Communication controller", 0x00ff: "Unclassified",
}
PCI_BAR_UNMAPPED = (1 << 64) - 1


def pci_bar_mapped_address(dev: "PCIDevice", num: int) -> int:
    """Where BAR ``num`` is mapped now, or PCI_BAR_UNMAPPED (QEMU's ``r->addr``).

    Memory BARs: where ``pci_update_mappings`` mapped them.  I/O BARs (no port I/O space
    is modelled): the port the firmware programmed, as SeaBIOS would have enabled it."""
    from ..hw.pci.pci import PCI_BASE_ADDRESS_SPACE_IO
    bar = dev.bars[num]
    if bar.type & PCI_BASE_ADDRESS_SPACE_IO:
        addr = dev.bar_address(num)
        return addr if addr else PCI_BAR_UNMAPPED
    return PCI_BAR_UNMAPPED if bar.addr is None else bar.addr


def pci_irq_line(vm: "Machine", dev: "PCIDevice") -> int:
    """PCI_INTERRUPT_LINE; while still 0, the GSI the PIIX3 routes the pin to (what the
    firmware writes there on a real pc machine)."""
    from ..hw.pci.pci import PCI_INTERRUPT_LINE
    line = dev.config[PCI_INTERRUPT_LINE]
    if not line:
        try:
            line = vm.pci.gsi_of(dev)
        except Exception:  # pragma: no cover - defensive
            line = 0
    return line


def qmp_query_pci_device(vm: "Machine", dev: "PCIDevice") -> dict[str, Any]:
    from ..hw.pci.pci import (PCI_BASE_ADDRESS_MEM_PREFETCH, PCI_BASE_ADDRESS_MEM_TYPE_64,
                              PCI_BASE_ADDRESS_SPACE_IO, PCI_INTERRUPT_PIN)
    c = dev.config
    vendor, device = struct.unpack_from("<HH", c, 0)
    cls = struct.unpack_from("<H", c, 0x0A)[0]
    svendor, sid = struct.unpack_from("<HH", c, 0x2C)
    class_info: dict[str, Any] = {"class": cls}
    if cls in PCI_CLASS_DESC:
        class_info = {"desc": PCI_CLASS_DESC[cls], "class": cls}
    info: dict[str, Any] = {
        "bus": 0, "slot": dev.devfn >> 3, "function": dev.devfn & 7,
        "class_info": class_info,
        "id": {"device": device, "vendor": vendor, "subsystem": sid,
               "subsystem-vendor": svendor},
    }
    pin = c[PCI_INTERRUPT_PIN]
    if pin:
        info["irq"] = pci_irq_line(vm, dev)
    info["irq_pin"] = pin
    info["qdev_id"] = dev.id or ""
    regions = []
    for num in sorted(dev.bars):
        bar = dev.bars[num]
        r: dict[str, Any] = {"bar": num}
        if bar.type & PCI_BASE_ADDRESS_SPACE_IO:
            r["type"] = "io"
        else:
            r["type"] = "memory"
            r["prefetch"] = bool(bar.type & PCI_BASE_ADDRESS_MEM_PREFETCH)
            r["mem_type_64"] = bool(bar.type & PCI_BASE_ADDRESS_MEM_TYPE_64)
        r["address"] = pci_bar_mapped_address(dev, num)
        r["size"] = bar.size
        regions.append(r)
    info["regions"] = regions
    return info


def qmp_query_pci(vm: "Machine") -> list[dict[str, Any]]:
    """query-pci: bus 0 and its functions in devfn order."""
    devs = [qmp_query_pci_device(vm, vm.pci.devices[d]) for d in sorted(vm.pci.devices)]
    return [{"bus": 0, "devices": devs}]


# ---------------------------------------------------------------------------------------
# Virtio
# ---------------------------------------------------------------------------------------
VIRTIO_CONFIG_STATUS = [   # virtio_config_status_map, in QEMU's table order
    (4, "VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready"),
    (8, "VIRTIO_CONFIG_S_FEATURES_OK: Feature negotiation complete"),
    (2, "VIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device"),
    (0x40, "VIRTIO_CONFIG_S_NEEDS_RESET: Irrecoverable error, device needs reset"),
    (0x80, "VIRTIO_CONFIG_S_FAILED: Error in guest, device failed"),
    (1, "VIRTIO_CONFIG_S_ACKNOWLEDGE: Valid virtio device found"),
]
VIRTIO_TRANSPORT_FEATURES = [   # virtio_transport_map in QEMU 7.2 (no RING_RESET yet)
    (24, "VIRTIO_F_NOTIFY_ON_EMPTY: Notify when device runs out of avail. descs. on VQ"),
    (27, "VIRTIO_F_ANY_LAYOUT: Device accepts arbitrary desc. layouts"),
    (32, "VIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)"),
    (33, "VIRTIO_F_IOMMU_PLATFORM: Device can be used on IOMMU platform"),
    (34, "VIRTIO_F_RING_PACKED: Device supports packed VQ layout"),
    (35, "VIRTIO_F_IN_ORDER: Device uses buffers in same order as made available by driver"),
    (36, "VIRTIO_F_ORDER_PLATFORM: Memory accesses ordered by platform"),
    (37, "VIRTIO_F_SR_IOV: Device supports single root I/O virtualization"),
    (28, "VIRTIO_RING_F_INDIRECT_DESC: Indirect descriptors supported"),
    (29, "VIRTIO_RING_F_EVENT_IDX: Used & avail. event fields enabled"),
]
VIRTIO_NET_FEATURES = [   # virtio_net_feature_map in QEMU 7.2
    (0, "VIRTIO_NET_F_CSUM: Device handling packets with partial checksum supported"),
    (1, "VIRTIO_NET_F_GUEST_CSUM: Driver handling packets with partial checksum supported"),
    (2, "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: Control channel offloading reconfig. supported"),
    (3, "VIRTIO_NET_F_MTU: Device max MTU reporting supported"),
    (5, "VIRTIO_NET_F_MAC: Device has given MAC address"),
    (7, "VIRTIO_NET_F_GUEST_TSO4: Driver can receive TSOv4"),
    (8, "VIRTIO_NET_F_GUEST_TSO6: Driver can receive TSOv6"),
    (9, "VIRTIO_NET_F_GUEST_ECN: Driver can receive TSO with ECN"),
    (10, "VIRTIO_NET_F_GUEST_UFO: Driver can receive UFO"),
    (11, "VIRTIO_NET_F_HOST_TSO4: Device can receive TSOv4"),
    (12, "VIRTIO_NET_F_HOST_TSO6: Device can receive TSOv6"),
    (13, "VIRTIO_NET_F_HOST_ECN: Device can receive TSO with ECN"),
    (14, "VIRTIO_NET_F_HOST_UFO: Device can receive UFO"),
    (15, "VIRTIO_NET_F_MRG_RXBUF: Driver can merge receive buffers"),
    (16, "VIRTIO_NET_F_STATUS: Configuration status field available"),
    (17, "VIRTIO_NET_F_CTRL_VQ: Control channel available"),
    (18, "VIRTIO_NET_F_CTRL_RX: Control channel RX mode supported"),
    (19, "VIRTIO_NET_F_CTRL_VLAN: Control channel VLAN filtering supported"),
    (20, "VIRTIO_NET_F_CTRL_RX_EXTRA: Extra RX mode control supported"),
    (21, "VIRTIO_NET_F_GUEST_ANNOUNCE: Driver sending gratuitous packets supported"),
    (22, "VIRTIO_NET_F_MQ: Multiqueue with automatic receive steering supported"),
    (23, "VIRTIO_NET_F_CTRL_MAC_ADDR: MAC address set through control channel"),
    (57, "VIRTIO_NET_F_HASH_REPORT: Hash reporting supported"),
    (60, "VIRTIO_NET_F_RSS: RSS RX steering supported"),
    (61, "VIRTIO_NET_F_RSC_EXT: Extended coalescing info supported"),
    (62, "VIRTIO_NET_F_STANDBY: Device acting as standby for primary device with same "
         "MAC addr. supported"),
    (63, "VIRTIO_NET_F_SPEED_DUPLEX: Device set linkspeed and duplex"),
    (6, "VIRTIO_NET_F_GSO: Handling GSO-type packets supported"),
    (27, "VHOST_NET_F_VIRTIO_NET_HDR: Virtio-net headers for RX and TX packets supported"),
    (26, "VHOST_F_LOG_ALL: Logging write descriptors supported"),
    (30, "VHOST_USER_F_PROTOCOL_FEATURES: Vhost-user protocol features negotiation "
         "supported"),
]
VIRTIO_DEVICE_FEATURES = {1: VIRTIO_NET_FEATURES}
#: the descriptor flags qmp_decode_vring_desc_flags knows, in its table order
VRING_DESC_FLAGS = [(1, "next"), (2, "write"), (4, "indirect"), (1 << 7, "avail"),
                    (1 << 15, "used")]


def _convert(table: list[tuple[int, str]], bitmap: int, is_status: bool) -> tuple[list[str], int]:
    """CONVERT_FEATURES: walk the table, *prepend* each set entry, clear its bit."""
    out: list[str] = []
    for bit, desc in table:
        mask = bit if is_status else 1 << bit
        if bitmap & mask:
            out.insert(0, desc)
            bitmap ^= mask
    return out, bitmap


def qmp_decode_status(status: int) -> dict[str, Any]:
    statuses, rest = _convert(VIRTIO_CONFIG_STATUS, status & 0xFF, True)
    out: dict[str, Any] = {"statuses": statuses}
    if rest:
        out["unknown-statuses"] = rest
    return out


def qmp_decode_features(device_id: int, bitmap: int) -> dict[str, Any]:
    transports, bitmap = _convert(VIRTIO_TRANSPORT_FEATURES, bitmap, False)
    out: dict[str, Any] = {"transports": transports}
    table = VIRTIO_DEVICE_FEATURES.get(device_id)
    if table is not None:
        dev, bitmap = _convert(table, bitmap, False)
        out["dev-features"] = dev
    if bitmap:
        out["unknown-dev-features"] = bitmap
    return out


def virtio_proxies(vm: "Machine") -> list["PCIDevice"]:
    """The virtio-pci proxies on bus 0, in creation (devfn) order."""
    return [vm.pci.devices[d] for d in sorted(vm.pci.devices)
            if getattr(vm.pci.devices[d], "vdev", None) is not None]


def device_path(vm: "Machine", dev: "PCIDevice") -> str:
    """The canonical QOM path of a NIC: /machine/peripheral/<id> for ``-device ...,id=``,
    /machine/peripheral-anon/device[N] without id, /machine/unattached/device[N] for NICs
    the board made (``-net nic``, ``-nic``).  N counts such NICs only (QEMU also counts the
    other id-less devices, which qnetlearn does not model)."""
    if dev.id:
        return f"/machine/peripheral/{dev.id}"
    anon = unattached = 0
    for d, c in zip(vm.nics, vm.config.nics):
        board = c.source != "-device"
        if d is dev:
            return (f"/machine/unattached/device[{unattached}]" if board else
                    f"/machine/peripheral-anon/device[{anon}]")
        if d.id:
            continue
        if board:
            unattached += 1
        else:
            anon += 1
    return f"/machine/unattached/device[{dev.devfn}]"      # not a NIC (not reached today)


def virtio_backend_path(vm: "Machine", dev: "PCIDevice") -> str:
    return device_path(vm, dev) + "/virtio-backend"


def _resolve(vm: "Machine", path: str) -> Any:
    """object_resolve_path: an absolute path, or a partial one that matches one object."""
    objs: dict[str, Any] = {}
    for dev in vm.pci.devices.values():
        if dev in vm.nics:
            p = device_path(vm, dev)
            objs[p] = dev
            if getattr(dev, "vdev", None) is not None:
                objs[p + "/virtio-backend"] = dev.vdev
    if path.startswith("/"):
        return objs.get(path.rstrip("/") if path != "/" else path)
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    hits = [o for p, o in objs.items() if p.split("/")[-len(parts):] == parts]
    return hits[0] if len(hits) == 1 else None


def find_virtio_device(vm: "Machine", path: str) -> "VirtIODevice | None":
    from ..hw.virtio.virtio import VirtIODevice
    obj = _resolve(vm, path)
    return obj if isinstance(obj, VirtIODevice) else None


def _proxy_of(vm: "Machine", vdev: "VirtIODevice") -> Any:
    return next((d for d in virtio_proxies(vm) if d.vdev is vdev), None)


def qmp_x_query_virtio(vm: "Machine") -> list[dict[str, Any]]:
    """x-query-virtio: every realized virtio device, with its QOM path."""
    out = [{"path": virtio_backend_path(vm, d), "name": d.vdev.name} for d in virtio_proxies(vm)]
    if not out:
        raise QMPError("No virtio devices found")
    return out


def qmp_x_query_virtio_status(vm: "Machine", path: str) -> dict[str, Any]:
    """x-query-virtio-status: the VirtIODevice's fields, features and status decoded."""
    from ..hw.virtio.virtio import VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_F_VERSION_1
    vdev = find_virtio_device(vm, path)
    if vdev is None:
        raise QMPError(f"Path {path} is not a VirtIODevice")
    proxy = _proxy_of(vm, vdev)
    dev_id = vdev.device_id
    return {
        "name": vdev.name,
        "device-id": dev_id,
        "vhost-started": False,
        "device-endian": "little",
        "guest-features": qmp_decode_features(dev_id, vdev.guest_features),
        "host-features": qmp_decode_features(dev_id, vdev.host_features),
        "backend-features": qmp_decode_features(dev_id, vdev.host_features),
        "num-vqs": sum(1 for vq in vdev.vq if vq.num),
        "status": qmp_decode_status(vdev.status),
        "isr": vdev.isr,
        "queue-sel": getattr(proxy, "queue_sel", 0),
        "vm-running": True,
        "broken": bool(vdev.broken),
        "disabled": False,
        "use-started": True,
        "started": bool(vdev.status & VIRTIO_CONFIG_S_DRIVER_OK),
        "start-on-kick": not bool(vdev.host_features >> VIRTIO_F_VERSION_1 & 1),
        "disable-legacy-check": False,
        "bus-name": "virtio-bus",
        "use-guest-notifier-mask": True,
    }


def _virtqueue(vm: "Machine", path: str, queue: int, what: str) -> tuple["VirtIODevice", "VirtQueue"]:
    vdev = find_virtio_device(vm, path)
    if vdev is None:
        raise QMPError(f"Path {path} is not a {what}")
    if queue >= VIRTIO_QUEUE_MAX or queue >= len(vdev.vq) or not vdev.vq[queue].num:
        raise QMPError(f"Invalid virtqueue number {queue}")
    return vdev, vdev.vq[queue]


def qmp_x_query_virtio_queue_status(vm: "Machine", path: str, queue: int) -> dict[str, Any]:
    """x-query-virtio-queue-status: the device-side VirtQueue fields (no vhost here)."""
    vdev, vq = _virtqueue(vm, path, queue, "VirtIODevice")
    return {
        "name": vdev.name,
        "queue-index": vq.queue_index,
        "inuse": vq.inuse,
        "vring-num": vq.num,
        "vring-num-default": vq.num_max,
        "vring-align": VIRTIO_PCI_VRING_ALIGN,
        "vring-desc": vq.desc,
        "vring-avail": vq.avail,
        "vring-used": vq.used,
        "last-avail-idx": vq.last_avail_idx,
        "shadow-avail-idx": vq.shadow_avail_idx,
        "used-idx": vq.used_idx,
        "signalled-used": vq.signalled_used,
        "signalled-used-valid": bool(vq.signalled_used_valid),
    }


def qmp_x_query_virtio_vhost_queue_status(vm: "Machine", path: str, queue: int) -> dict[str, Any]:
    """x-query-virtio-vhost-queue-status: vhost is not modelled, so never started."""
    if find_virtio_device(vm, path) is None:
        raise QMPError(f"Path {path} is not a VirtIODevice")
    raise QMPError("Error: vhost device has not started yet")


def _decode_desc_flags(flags: int) -> list[str]:
    out: list[str] = []
    for bit, name in VRING_DESC_FLAGS:
        if flags & bit:
            out.insert(0, name)
    return out


def qmp_x_query_virtio_queue_element(vm: "Machine", path: str, queue: int,
                                     index: int | None = None) -> dict[str, Any]:
    """x-query-virtio-queue-element: the chain the avail ring names at ``index`` (default:
    last_avail_idx, the next one the device will pop), read from guest RAM.

    As in QEMU, reading avail->idx here refreshes the queue's shadow_avail_idx."""
    vdev, vq = _virtqueue(vm, path, queue, "VirtIO device")
    if not vq.desc:
        raise QMPError("Region caches not initialized")
    ram = vm.ram
    num = vq.num
    try:
        idx = vq.last_avail_idx if index is None else index
        head = ram.lduw(vq.avail + 4 + 2 * (idx % num))
        table, limit, i = vq.desc, num, head
        addr, length, flags, nxt = VRING_DESC.unpack(ram.read(table + 16 * i, 16))
        if flags & VRING_DESC_F_INDIRECT:
            if addr + length > ram.size:
                raise QMPError("Cannot map indirect buffer")
            table, limit, i = addr, length // 16, 0
            addr, length, flags, nxt = VRING_DESC.unpack(ram.read(table, 16))
        avail_flags, avail_idx = struct.unpack("<HH", ram.read(vq.avail, 4))
        vq.shadow_avail_idx = avail_idx          # vring_avail_idx() in QEMU does this
        used_flags, used_idx = struct.unpack("<HH", ram.read(vq.used, 4))
        descs: list[dict[str, Any]] = []
        while len(descs) < limit:
            descs.insert(0, {"flags": _decode_desc_flags(flags), "len": length, "addr": addr})
            if not flags & VRING_DESC_F_NEXT or nxt >= limit:
                break
            i = nxt
            addr, length, flags, nxt = VRING_DESC.unpack(ram.read(table + 16 * i, 16))
    except QMPError:
        raise
    except Exception as e:   # MemTxError: rings outside RAM
        raise QMPError(f"Cannot map descriptor ring ({e})") from None
    return {"name": vdev.name, "index": head, "descs": descs,
            "avail": {"flags": avail_flags, "idx": avail_idx, "ring": head},
            "used": {"flags": used_flags, "idx": used_idx}}
