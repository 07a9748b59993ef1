"""MSI-X: the vector table and pending-bit array in a BAR (QEMU's hw/pci/msix.c).

Each vector is a 16-byte table entry written by the driver: message address (lo, hi),
message data, and vector control whose bit 0 masks the vector.  ``msix_notify`` sends the
entry's message, or, while the vector (or the whole function) is masked, sets its bit in
the PBA; unmasking a vector whose bit is set sends the message then.  PCI 3.0 §6.8.2.
"""
from __future__ import annotations

import struct
from typing import Any

from ...system.memory import ContainerRegion, MemoryRegion
from ...trace import Stateful, tracepoint
from ...trace import events as trace
from .msi import MSIMessage, msi_send_message
from .pci import PCI_BASE_ADDRESS_MEM_TYPE_64, PCIDevice
from ...standard_headers.pci_regs import PCI_CAP_ID_MSIX
from ...standard_headers.pci_regs import (
    PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_ENTRY_VECTOR_CTRL,
    PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL)

PCI_MSIX_PBA = 8
MSIX_PAGE_PENDING = 0x800
FIELDS = ("addr_lo", "addr_hi", "data", "vector_ctrl")


class MSIX(Stateful):
    """A function's MSI-X state: table, PBA, and the capability in config space."""

    _state_ = ("table", "pba")

    def __init__(self, dev: PCIDevice, nentries: int) -> None:
        self.dev = dev
        self.nentries = nentries
        self.table = bytearray(nentries * PCI_MSIX_ENTRY_SIZE)
        for v in range(nentries):
            self.table[v * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT
        self.pba = bytearray((nentries + 7) // 8)
        self.used = [0] * nentries
        self.cap = 0
        self.table_region = MemoryRegion("msix-table", nentries * PCI_MSIX_ENTRY_SIZE,
                                         self._table_read, self._table_write,
                                         self._describe_table, owner=dev)
        self.pba_region = MemoryRegion("msix-pba", len(self.pba) + (-len(self.pba) % 8),
                                       self._pba_read, lambda o, v, s: None,
                                       lambda o, v: f"msix-pba[0x{o:x}] 0x{v:x}", owner=dev)

    def image(self) -> dict[str, Any]:
        return {"table": bytes(self.table), "pba": bytes(self.pba)}

    # -- the capability ---------------------------------------------------------------
    @property
    def control(self) -> int:
        return struct.unpack_from("<H", self.dev.config, self.cap + PCI_MSIX_FLAGS)[0]

    @property
    def enabled(self) -> bool:
        return bool(self.control & PCI_MSIX_FLAGS_ENABLE)

    def function_masked(self) -> bool:
        c = self.control
        return not c & PCI_MSIX_FLAGS_ENABLE or bool(c & PCI_MSIX_FLAGS_MASKALL)

    def vector_masked(self, v: int) -> bool:
        ctrl = self.table[v * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL]
        return self.function_masked() or bool(ctrl & PCI_MSIX_ENTRY_CTRL_MASKBIT)

    def message(self, v: int) -> MSIMessage:
        lo, hi, data = struct.unpack_from("<III", self.table, v * 16)
        return MSIMessage(lo | hi << 32, data)

    def is_pending(self, v: int) -> bool:
        return bool(self.pba[v // 8] & (1 << (v % 8)))

    def _set_pending(self, v: int, on: bool) -> None:
        if on:
            self.pba[v // 8] |= 1 << (v % 8)
        else:
            self.pba[v // 8] &= ~(1 << (v % 8)) & 0xFF
        self._note("pba")

    # -- unmasking delivers what is pending --------------------------------------------
    def _handle_mask_update(self, v: int, was_masked: bool) -> None:
        if was_masked and not self.vector_masked(v) and self.is_pending(v):
            self._set_pending(v, False)
            msix_notify(self.dev, v)

    def write_config(self, old_control: int) -> None:
        """msix_write_config: after a write to message control."""
        new = self.control
        if new == old_control:
            return
        trace.msix_write_config(self.dev.name, int(self.enabled),
                                int(self.function_masked()))
        if new & PCI_MSIX_FLAGS_ENABLE and not old_control & PCI_MSIX_FLAGS_ENABLE:
            self.dev.pci_set_irq(0)     # enabling MSI-X deasserts INTx
        was_fn_masked = not old_control & PCI_MSIX_FLAGS_ENABLE or \
            bool(old_control & PCI_MSIX_FLAGS_MASKALL)
        for v in range(self.nentries):
            ctrl_masked = bool(self.table[v * 16 + 12] & PCI_MSIX_ENTRY_CTRL_MASKBIT)
            self._handle_mask_update(v, was_fn_masked or ctrl_masked)

    # -- the table and PBA regions -----------------------------------------------------
    def _table_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.table[offset:offset + size], "little")

    def _table_write(self, offset: int, value: int, size: int) -> None:
        v = offset // PCI_MSIX_ENTRY_SIZE
        was_masked = self.vector_masked(v)
        end = min(offset + size, len(self.table))     # bytes past the table go nowhere
        data = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        self.table[offset:end] = data[:end - offset]
        self._note("table")
        self._handle_mask_update(v, was_masked)

    def _describe_table(self, offset: int, value: int) -> str:
        return f"msix-table[entry {offset // 16} {FIELDS[(offset % 16) // 4]}] 0x{value:x}"

    def _pba_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.pba[offset:offset + size].ljust(size, b"\0"), "little")

    def state(self, r: Any) -> dict[str, Any]:
        """Table, PBA and message control as recorded (``r``, a StateReader)."""
        config = r.get(self.dev, "config", self.dev.config)
        control = struct.unpack_from("<H", config, self.cap + PCI_MSIX_FLAGS)[0]
        return msix_state(r.get(self, "table", b""), r.get(self, "pba", b""), self.nentries,
                          control)


def msix_state(table: bytes, pba: bytes, n: int, control: int) -> dict[str, Any]:
    entries = []
    for v in range(n):
        lo, hi, data, ctrl = struct.unpack_from("<IIII", table, v * 16)
        entries.append({"vector": v, "address": lo | hi << 32, "data": data,
                        "masked": bool(ctrl & 1),
                        "pending": bool(pba[v // 8] & (1 << (v % 8)))})
    return {"enabled": bool(control & PCI_MSIX_FLAGS_ENABLE),
            "function_masked": bool(control & PCI_MSIX_FLAGS_MASKALL), "entries": entries}


def msix_init_exclusive_bar(dev: PCIDevice, nentries: int, bar_nr: int) -> MSIX:
    """A BAR of its own holding the table at 0 and the PBA at 0x800 (as virtio-pci has)."""
    msix = MSIX(dev, nentries)
    bar = ContainerRegion(f"{dev.name}-msix", 0x1000, owner=dev)
    bar.add_subregion(0, msix.table_region)
    bar.add_subregion(MSIX_PAGE_PENDING, msix.pba_region)
    dev.pci_register_bar(bar_nr, 0, bar)
    msix_add_config(dev, msix, bar_nr, 0, bar_nr, MSIX_PAGE_PENDING)
    return msix


def msix_add_config(dev: PCIDevice, msix: MSIX, table_bar: int, table_off: int,
                    pba_bar: int, pba_off: int) -> None:
    cap = dev.pci_add_capability(PCI_CAP_ID_MSIX, 12)
    msix.cap = cap
    struct.pack_into("<HII", dev.config, cap + PCI_MSIX_FLAGS, msix.nentries - 1,
                     table_off | table_bar, pba_off | pba_bar)
    struct.pack_into("<H", dev.wmask, cap + PCI_MSIX_FLAGS,
                     PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL)
    dev.msix = msix  # type: ignore[attr-defined]


def msix_vector_use(dev: PCIDevice, v: int) -> None:
    dev.msix.used[v] += 1  # type: ignore[attr-defined]


def msix_vector_unuse(dev: PCIDevice, v: int) -> None:
    msix: MSIX = dev.msix  # type: ignore[attr-defined]
    if msix.used[v]:
        msix.used[v] -= 1
        if not msix.used[v]:
            msix._set_pending(v, False)


@tracepoint("hw/pci/msix.c", show=("vector",))
def msix_notify(dev: PCIDevice, vector: int) -> None:
    """Send vector's message, or set its pending bit while it is masked."""
    msix: MSIX = dev.msix  # type: ignore[attr-defined]
    if vector >= msix.nentries or not msix.used[vector]:
        return
    if msix.vector_masked(vector):
        msix._set_pending(vector, True)
        dev.stats["msix masked -> pending"] += 1
        return
    msi_send_message(dev, msix.message(vector))


__all__ = ["MSIX", "msix_init_exclusive_bar", "msix_notify", "msix_vector_use",
           "msix_vector_unuse", "PCI_BASE_ADDRESS_MEM_TYPE_64"]
