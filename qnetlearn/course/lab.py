"""Building, driving and poking machines the way the lessons do.

Everything goes through the public API (API.md): a QEMU command line, ``vm.host()``,
``vm.record()``, and the hardware as a driver sees it (``vm.pci_config_read``,
``vm.memory``).  The MSI-X helpers find the vector table exactly as a guest driver does:
walk the PCI capability list, read the table's BAR and offset, then read and write the
16-byte entries in the physical address space.
"""
from __future__ import annotations

from typing import Any

from .measure import stats_delta
from .show import Table

__all__ = [
    "SEED_CMDLINE", "VIRTIO", "E1000_HUB", "start", "record_ping", "record_guest_ping",
    "flood", "record_flood", "msix_table_address", "msix_entries", "mask_vector",
    "pba_bits", "steps_table", "echo_requests", "rx_room",
]

#: the seed article's command line, as its author typed it (minus ``sudo``)
SEED_CMDLINE = (
    "x86_64-softmmu/qemu-system-x86_64 /home/hkucs/colo_ubuntu_single.img "
    "-machine pc-i440fx-2.3,accel=kvm,usb=off "
    "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
    "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
    "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
#: the same network under TCG (QEMU's default accelerator, as the golden recordings)
VIRTIO = ("-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
          "-device virtio-net-pci,id=net-pci0,netdev=hn0")
#: the seed's second example: an e1000 and the TAP on hub 0 (legacy -net, no vlan=)
E1000_HUB = "-net nic,model=e1000 -net tap"

GUEST_IP = "10.0.2.15"
PCI_CAP_ID_MSIX = 0x11


def start(cmdline: str, warm: int = 1) -> Any:
    """Build the machine ``cmdline`` describes, boot it, and ping it ``warm`` times so that
    one-time work (the guest's first-interrupt set-up) is out of the way."""
    from ..machine import Machine
    vm = Machine.from_cmdline(cmdline)
    vm.boot()
    if warm:
        vm.host().ping(count=warm)
    return vm


def record_ping(machine: Any, count: int = 1, warm: int = 1) -> tuple[Any, Any]:
    """``(vm, rec)``: a recording of ``count`` pings from the host to the guest.
    ``machine`` is a command line (a new machine) or a booted machine."""
    vm = start(machine, warm) if isinstance(machine, str) else machine
    with vm.record() as rec:
        vm.host().ping(count=count)
    return vm, rec


def record_guest_ping(machine: Any, count: int = 1, warm: int = 1) -> tuple[Any, Any]:
    """``(vm, rec)``: the guest pings the host (TX first, then RX)."""
    vm = start(machine, warm) if isinstance(machine, str) else machine
    with vm.record() as rec:
        vm.guest.ping(vm.host().ip, count=count)
    return vm, rec


def echo_requests(vm: Any, n: int, ident: int = 0x77) -> None:
    """The host writes ``n`` echo requests into the TAP at once, without waiting for replies
    (what ``ping -f`` does at its fastest).  Nothing runs until ``vm.run()``."""
    stack = vm.host().stack
    for seq in range(1, n + 1):
        stack.ping(GUEST_IP, ident, seq)


def flood(vm: Any, n: int, ident: int = 0x77) -> int:
    """Send ``n`` echo requests at once, run the machine, return how many were answered."""
    stack = vm.host().stack
    echo_requests(vm, n, ident)
    vm.run()
    return sum(1 for (i, _s) in stack.echo_replies if i == ident)


def record_flood(machine: Any, n: int, warm: int = 1) -> tuple[Any, Any]:
    """``(vm, rec)``: a recording of ``n`` echo requests written at once, and their replies."""
    vm = start(machine, warm) if isinstance(machine, str) else machine
    with vm.record() as rec:
        flood(vm, n)
    return vm, rec


def rx_room(vm: Any, dev_id: str = "net-pci0") -> int:
    """RX buffers the driver has made available and the device has not taken yet:
    ``avail->idx`` read from guest RAM minus the device's ``last_avail_idx`` (mod 2**16)."""
    vq = vm.device(dev_id).vdev.rx_vq
    avail_idx = vm.memory.read(vq.avail + 2, 2)
    return (avail_idx - vq.last_avail_idx) & 0xFFFF


# -- MSI-X, as a driver finds it ----------------------------------------------------------
def _devfn(vm: Any, dev_id: str) -> int:
    return vm.device(dev_id).devfn


def msix_table_address(vm: Any, dev_id: str = "net-pci0") -> tuple[int, int, int]:
    """``(table address, PBA address, entries)``, read from PCI configuration space: walk
    the capability list to the MSI-X capability, then add each structure's offset to the
    address of the BAR it names."""
    devfn = _devfn(vm, dev_id)
    ptr = vm.pci_config_read(devfn, 0x34, 1) & 0xFC
    seen = set()
    while ptr and ptr not in seen:
        seen.add(ptr)
        if vm.pci_config_read(devfn, ptr, 1) == PCI_CAP_ID_MSIX:
            control = vm.pci_config_read(devfn, ptr + 2, 2)
            table = vm.pci_config_read(devfn, ptr + 4, 4)
            pba = vm.pci_config_read(devfn, ptr + 8, 4)

            def bar(bir: int) -> int:
                lo = vm.pci_config_read(devfn, 0x10 + 4 * bir, 4)
                addr = lo & ~0xF
                if lo & 0x4:       # 64-bit BAR
                    addr |= vm.pci_config_read(devfn, 0x14 + 4 * bir, 4) << 32
                return addr
            return (bar(table & 7) + (table & ~7), bar(pba & 7) + (pba & ~7),
                    (control & 0x7FF) + 1)
        ptr = vm.pci_config_read(devfn, ptr + 1, 1) & 0xFC
    raise LookupError(f"{dev_id} has no MSI-X capability")


def msix_entries(vm: Any, dev_id: str = "net-pci0") -> Table:
    """The MSI-X table as the guest reads it from memory (with the PBA bit of each)."""
    table, pba, n = msix_table_address(vm, dev_id)
    pending = pba_bits(vm, dev_id)
    rows = []
    for v in range(n):
        base = table + 16 * v
        lo, hi, data, ctrl = (vm.memory.read(base + 4 * k, 4) for k in range(4))
        rows.append([v, f"0x{hi:08x}{lo:08x}", f"0x{data:04x}", data & 0xFF,
                     "masked" if ctrl & 1 else "-", pending[v]])
    return Table(rows, ["entry", "address", "data", "vector", "mask", "PBA bit"],
                 title=f"{dev_id}: MSI-X table at 0x{table:x}, PBA at 0x{pba:x}")


def mask_vector(vm: Any, dev_id: str = "net-pci0", entry: int = 1, masked: bool = True) -> None:
    """Set or clear the mask bit of one MSI-X entry: a 4-byte write to its vector control
    word, as the guest's driver does (then the machine runs, so the effect follows)."""
    table, _pba, n = msix_table_address(vm, dev_id)
    if not 0 <= entry < n:
        raise IndexError(f"{dev_id} has MSI-X entries 0..{n - 1}")
    addr = table + 16 * entry + 12
    ctrl = vm.memory.read(addr, 4)
    vm.memory.write(addr, 4, (ctrl | 1) if masked else (ctrl & ~1))
    vm.run()


def pba_bits(vm: Any, dev_id: str = "net-pci0") -> list[int]:
    """The pending bit of each MSI-X entry, read from the PBA in memory."""
    _table, pba, n = msix_table_address(vm, dev_id)
    words = [vm.memory.read(pba + 8 * k, 8) for k in range((n + 63) // 64)]
    return [(words[v // 64] >> (v % 64)) & 1 for v in range(n)]


# -- reading a recording -------------------------------------------------------------------
def steps_table(rec: Any, start: int = 0, count: int = 15, kinds: tuple[str, ...] = ("call", "event")
                ) -> Table:
    """Steps ``start``.. of a recording (calls and events), indented by call depth."""
    rows = []
    steps = rec.steps
    i = start
    while i < len(steps) and len(rows) < count:
        s = steps[i]
        if s.kind in kinds:
            args = ", ".join(f"{k}={_short(v)}" for k, v in s.args.items() if k != "vdev")
            rows.append([i, s.context, s.kind, ". " * s.depth + s.name, args])
        i += 1
    return Table(rows, ["step", "thread", "kind", "function / event", "arguments"])


def _short(v: Any) -> str:
    if isinstance(v, int) and v > 4096:
        return hex(v)
    text = str(v)
    return text if len(text) <= 32 else text[:29] + "..."


def counters(vm: Any, keys: tuple[str, ...] = ()) -> dict[str, int]:
    """``vm.stats`` as a plain dict (only ``keys`` when given)."""
    st = dict(vm.stats)
    return {k: st.get(k, 0) for k in keys} if keys else st


def delta(before: dict[str, int], vm: Any) -> dict[str, int]:
    return dict(stats_delta(before, dict(vm.stats)))
