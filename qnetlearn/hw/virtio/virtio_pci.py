"""The modern virtio-pci transport (QEMU's hw/virtio/virtio-pci.c; virtio 1.x §4.1).

A virtio device appears on PCI as a *proxy*: vendor capabilities in configuration space
point the driver at four structures in BAR 4 (common configuration at 0x0000, ISR at
0x1000, device configuration at 0x2000, notifications at 0x3000), and MSI-X lives in BAR 1.
The proxy is transitional (device 0x1000) like QEMU's ``virtio-net-pci`` on the i440FX: it
also declares the legacy I/O BAR 0, which is not modelled (no port I/O space here).

``virtio_pci_notify`` is the transport's ``k->notify``: MSI-X when enabled, else INTx
driven by ISR bit 0.  Queue notifications use ioeventfds once the driver sets DRIVER_OK:
the guest's write to the notify region only signals an EventNotifier, and the main loop
runs the queue's handler (virtio_queue_host_notifier_read), as QEMU does under TCG.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from ...system.memory import ContainerRegion, MemoryRegion
from ...trace import events as trace
from ...trace import tracepoint
from ..pci.msix import msix_init_exclusive_bar, msix_notify, msix_vector_unuse, msix_vector_use
from ..pci.pci import (PCI_BASE_ADDRESS_MEM_PREFETCH, PCI_BASE_ADDRESS_MEM_TYPE_64,
                       PCI_BASE_ADDRESS_SPACE_IO, PCIDevice)
from ...standard_headers.pci_regs import PCI_CAP_ID_VNDR
from .virtio import (VIRTIO_NO_VECTOR, VirtIODevice, virtio_queue_host_notifier_read,
                     virtio_queue_notify, virtio_set_status)
from ...standard_headers.virtio_config import VIRTIO_CONFIG_S_DRIVER_OK
from ...standard_headers.virtio_pci import (
    VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
    VIRTIO_PCI_CAP_NOTIFY_CFG)

if TYPE_CHECKING:  # pragma: no cover
    from ...system.main_loop import MainLoop

NOTIFY_OFF_MULTIPLIER = 4
MODERN_BAR = 4
MSIX_BAR = 1
COMMON = {0x00: "device_feature_select", 0x04: "device_feature",
          0x08: "guest_feature_select", 0x0c: "guest_feature", 0x10: "msix_config",
          0x12: "num_queues", 0x14: "device_status", 0x15: "config_generation",
          0x16: "queue_select", 0x18: "queue_size", 0x1a: "queue_msix_vector",
          0x1c: "queue_enable", 0x1e: "queue_notify_off", 0x20: "queue_desc_lo",
          0x24: "queue_desc_hi", 0x28: "queue_avail_lo", 0x2c: "queue_avail_hi",
          0x30: "queue_used_lo", 0x34: "queue_used_hi"}


class VirtIOPCIProxy(PCIDevice):
    """A virtio device on PCI bus 0 (transitional ids, modern interface)."""

    vendor_id = 0x1AF4
    subsystem_vendor_id = 0x1AF4
    interrupt_pin = 1

    def __init__(self, name: str, dev_id: str | None, vdev: VirtIODevice, loop: "MainLoop",
                 nvectors: int) -> None:
        self.device_id = 0x1000 + vdev.device_id - 1          # transitional
        self.subsystem_id = vdev.device_id
        super().__init__(name, dev_id)
        self.vdev = vdev
        self.loop = loop
        vdev.stats = self.stats
        vdev.notify = lambda vector: virtio_pci_notify(self, vector)
        self.dfselect = 0
        self.gfselect = 0
        self.guest_features = [0, 0]
        self.queue_sel = 0
        self._staged: dict[int, dict[str, int]] = {}
        self.nvectors = nvectors
        # BAR 0: the legacy I/O interface (declared, not modelled)
        self.pci_register_bar(0, PCI_BASE_ADDRESS_SPACE_IO,
                              MemoryRegion(f"{name}-legacy", 0x40, owner=self))
        self.msix = msix_init_exclusive_bar(self, nvectors, MSIX_BAR)
        short = vdev.name
        self.common_region = MemoryRegion(f"virtio-pci-common-{short}", 0x1000, self._common_read,
                                   self._common_write, self._describe_common, owner=self)
        self.isr_region = MemoryRegion(f"virtio-pci-isr-{short}", 0x1000, self._isr_read,
                                lambda o, v, s: None, owner=self)
        self.device_region = MemoryRegion(f"virtio-pci-device-{short}", 0x1000, self._device_read,
                                   self._device_write, owner=self)
        self.notify_region = MemoryRegion(f"virtio-pci-notify-{short}", 0x1000, lambda o, s: 0,
                                   self._notify_write, owner=self)
        bar = ContainerRegion(f"virtio-pci-{short}", 0x4000, owner=self)
        for i, mr in enumerate((self.common_region, self.isr_region, self.device_region,
                                 self.notify_region)):
            bar.add_subregion(i * 0x1000, mr)
        self.modern_bar = bar
        self.pci_register_bar(MODERN_BAR, PCI_BASE_ADDRESS_MEM_TYPE_64 |
                              PCI_BASE_ADDRESS_MEM_PREFETCH, bar)
        for cfg_type, off in ((VIRTIO_PCI_CAP_COMMON_CFG, 0x0000), (VIRTIO_PCI_CAP_ISR_CFG, 0x1000),
                              (VIRTIO_PCI_CAP_DEVICE_CFG, 0x2000),
                              (VIRTIO_PCI_CAP_NOTIFY_CFG, 0x3000)):
            self._add_vendor_cap(cfg_type, off, 0x1000)

    def _add_vendor_cap(self, cfg_type: int, offset: int, length: int) -> None:
        """struct virtio_pci_cap (+ notify_off_multiplier for the notify capability)."""
        size = 20 if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG else 16
        cap = self.pci_add_capability(PCI_CAP_ID_VNDR, size)
        struct.pack_into("<BBBBxxII", self.config, cap + 2, size, cfg_type, MODERN_BAR, 0,
                         offset, length)
        if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG:
            struct.pack_into("<I", self.config, cap + 16, NOTIFY_OFF_MULTIPLIER)

    # -- identity and state ----------------------------------------------------------
    @property
    def broken(self) -> bool:  # type: ignore[override]
        return self.vdev.broken

    @broken.setter
    def broken(self, value: bool) -> None:
        pass  # PCIDevice's initialiser sets it; the virtio device owns it

    @property
    def broken_reason(self) -> str:  # type: ignore[override]
        return self.vdev.broken_reason

    @broken_reason.setter
    def broken_reason(self, value: str) -> None:
        pass

    def command_changed(self) -> None:
        self.vdev.dma = self.dma_ram

    def state(self, r: Any) -> dict[str, Any]:
        v = self.vdev
        return {"status": r.get(v, "status", 0), "isr": r.get(v, "isr", 0),
                "broken": r.get(v, "broken", False), "broken_reason": r.get(v, "broken_reason", ""),
                "guest_features": r.get(v, "guest_features", 0),
                "queues": [vq.state(r) for vq in v.vq],
                "msix": self.msix.state(r),
                "stats": r.stats(self.stats)}

    # -- common configuration --------------------------------------------------------
    def _describe_common(self, offset: int, value: int) -> str:
        return f"{self.common_region.name}[0x{offset:x} {COMMON.get(offset, '?')}] 0x{value:x}"

    def _staged_q(self) -> dict[str, int]:
        return self._staged.setdefault(self.queue_sel, {})

    def _common_read(self, offset: int, size: int) -> int:
        vdev = self.vdev
        vq = vdev.vq[self.queue_sel] if self.queue_sel < len(vdev.vq) else None
        if offset == 0x00:
            return self.dfselect
        if offset == 0x04:
            return (vdev.host_features >> (32 * self.dfselect)) & 0xFFFFFFFF \
                if self.dfselect <= 1 else 0
        if offset == 0x08:
            return self.gfselect
        if offset == 0x0C:
            return self.guest_features[self.gfselect] if self.gfselect <= 1 else 0
        if offset == 0x10:
            return vdev.config_vector
        if offset == 0x12:
            return len(vdev.vq)
        if offset == 0x14:
            return vdev.status
        if offset == 0x15:
            return vdev.generation
        if offset == 0x16:
            return self.queue_sel
        if vq is None:
            return 0
        st = self._staged_q()
        if offset == 0x18:
            return st.get("num", vq.num)
        if offset == 0x1A:
            return vq.vector
        if offset == 0x1C:
            return int(vq.enabled)
        if offset == 0x1E:
            return self.queue_sel
        for base, name in ((0x20, "desc"), (0x28, "avail"), (0x30, "used")):
            if base <= offset < base + 8:
                val = st.get(name, getattr(vq, name))
                return (val >> (32 * ((offset - base) // 4))) & 0xFFFFFFFF
        return 0

    def _common_write(self, offset: int, value: int, size: int) -> None:
        vdev = self.vdev
        if offset == 0x00:
            self.dfselect = value
        elif offset == 0x08:
            self.gfselect = value
        elif offset == 0x0C:
            if self.gfselect <= 1:
                self.guest_features[self.gfselect] = value & 0xFFFFFFFF
                virtio_set_features(vdev, self.guest_features[0] | self.guest_features[1] << 32)
        elif offset == 0x10:
            if vdev.config_vector != VIRTIO_NO_VECTOR:
                msix_vector_unuse(self, vdev.config_vector)
            vdev.config_vector = value if value < self.nvectors else VIRTIO_NO_VECTOR
            if vdev.config_vector != VIRTIO_NO_VECTOR:
                msix_vector_use(self, vdev.config_vector)
        elif offset == 0x14:
            if not value & VIRTIO_CONFIG_S_DRIVER_OK:
                self._stop_ioeventfd()
            virtio_set_status(vdev, value & 0xFF)
            if value & VIRTIO_CONFIG_S_DRIVER_OK:
                self._start_ioeventfd()
            if vdev.status == 0:
                self.virtio_pci_reset()
        elif offset == 0x16:
            self.queue_sel = value
        elif self.queue_sel < len(vdev.vq):
            vq = vdev.vq[self.queue_sel]
            st = self._staged_q()
            if offset == 0x18:
                if value and not value & (value - 1) and value <= vq.num_max:
                    st["num"] = value
            elif offset == 0x1A:
                if vq.vector != VIRTIO_NO_VECTOR:
                    msix_vector_unuse(self, vq.vector)
                vq.vector = value if value < self.nvectors else VIRTIO_NO_VECTOR
                if vq.vector != VIRTIO_NO_VECTOR:
                    msix_vector_use(self, vq.vector)
            elif offset == 0x1C:
                if value == 1:
                    vq.num = st.get("num", vq.num)
                    vq.desc = st.get("desc", 0)
                    vq.avail = st.get("avail", 0)
                    vq.used = st.get("used", 0)
                    vq.enabled = True
            else:
                for base, name in ((0x20, "desc"), (0x28, "avail"), (0x30, "used")):
                    if base <= offset < base + 8:
                        shift = 32 * ((offset - base) // 4)
                        old = st.get(name, 0)
                        st[name] = (old & ~(0xFFFFFFFF << shift)) | (value & 0xFFFFFFFF) << shift

    def virtio_pci_reset(self) -> None:
        """Status 0: the device and the transport's per-queue state go back to reset."""
        self._stop_ioeventfd()
        vdev = self.vdev
        for vq in vdev.vq:
            if vq.vector != VIRTIO_NO_VECTOR:
                msix_vector_unuse(self, vq.vector)
        if vdev.config_vector != VIRTIO_NO_VECTOR:
            msix_vector_unuse(self, vdev.config_vector)
        vdev.reset()
        self.guest_features = [0, 0]
        self._staged.clear()
        self.pci_set_irq(0)

    # -- ioeventfd -----------------------------------------------------------------------
    def _start_ioeventfd(self) -> None:
        if self.vdev.ioeventfd_started:
            return
        self.vdev.ioeventfd_started = True
        for vq in self.vdev.vq:
            if vq.enabled:
                self.notify_region.ioeventfds.append((vq.queue_index * NOTIFY_OFF_MULTIPLIER, 0,
                                               vq.host_notifier))
                self.loop.qemu_set_fd_handler(vq.host_notifier, virtio_queue_host_notifier_read,
                                              None, vq)

    def _stop_ioeventfd(self) -> None:
        if not self.vdev.ioeventfd_started:
            return
        self.vdev.ioeventfd_started = False
        for vq in self.vdev.vq:
            self.loop.qemu_set_fd_handler(vq.host_notifier, None, None, None)
            if vq.host_notifier.test_and_clear():      # a kick still pending: run it now
                virtio_queue_notify(self.vdev, vq.queue_index)
        self.notify_region.ioeventfds.clear()

    # -- ISR, device config, notify --------------------------------------------------
    def _isr_read(self, offset: int, size: int) -> int:
        """Read-to-clear; also lowers INTx (virtio 1.x §4.1.4.5)."""
        val = self.vdev.isr
        self.vdev.isr = 0
        self.pci_set_irq(0)
        return val

    def _device_read(self, offset: int, size: int) -> int:
        cfg = self.vdev.get_config()
        return int.from_bytes(cfg[offset:offset + size].ljust(size, b"\0"), "little")

    def _device_write(self, offset: int, value: int, size: int) -> None:
        self.vdev.stats["device config writes ignored"] += 1

    def _notify_write(self, offset: int, value: int, size: int) -> None:
        """A notify write that reached QEMU's device code (no ioeventfd yet)."""
        trace.virtio_pci_notify_write(offset, value, size)
        queue = offset // NOTIFY_OFF_MULTIPLIER
        virtio_queue_notify(self.vdev, queue)


def virtio_set_features(vdev: VirtIODevice, val: int) -> None:
    """virtio_set_features: keep what the device offers; ignored after FEATURES_OK."""
    from .virtio import VIRTIO_CONFIG_S_FEATURES_OK
    if vdev.status & VIRTIO_CONFIG_S_FEATURES_OK:
        vdev.stats["feature writes after FEATURES_OK"] += 1
        return
    if val & ~vdev.host_features:
        vdev.stats["features the device does not offer"] += 1
    vdev.guest_features = val & vdev.host_features
    vdev.set_features(vdev.guest_features)


@tracepoint("hw/virtio/virtio-pci.c", show=("vector",))
def virtio_pci_notify(d: VirtIOPCIProxy, vector: int) -> None:
    """The transport's notify: an MSI-X vector, or INTx following ISR bit 0."""
    if d.msix.enabled:
        if vector != VIRTIO_NO_VECTOR:
            msix_notify(d, vector)
    else:
        d.pci_set_irq(d.vdev.isr & 1)
