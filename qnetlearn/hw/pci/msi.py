"""Sending an MSI message: a 4-byte write by the device (QEMU's hw/pci/msi.c, pci.c)."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ...system.memory import MEMTX_OK, address_space_stl_le
from ...trace import tracepoint

if TYPE_CHECKING:  # pragma: no cover
    from .pci import PCIDevice


class MSIMessage(NamedTuple):
    address: int
    data: int


@tracepoint("hw/pci/msi.c", show=("msg",))
def msi_send_message(dev: "PCIDevice", msg: MSIMessage) -> None:
    """The device writes ``msg.data`` at ``msg.address`` on its bus-master address space
    (pci_msi_trigger): on x86 that address is the local APIC's window at 0xFEE00000."""
    if not dev.bus_master:
        dev.stats["drop: MSI with bus mastering off"] += 1
        return
    if address_space_stl_le(dev.bus_master_as, msg.address, msg.data) != MEMTX_OK:
        dev.stats["drop: MSI write to unassigned address"] += 1
    else:
        dev.stats["msi sent"] += 1
