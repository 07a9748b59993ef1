"""The virtio-over-PCI transport, modern interface, driver side (after Linux 6.1
drivers/virtio/virtio_pci_modern.c, virtio_pci_modern_dev.c, virtio_pci_common.c and the
status/feature steps of drivers/virtio/virtio.c).

A virtio PCI function describes itself with vendor capabilities (specs.md §5.2): where in
which BAR the common configuration, the notify area, the ISR byte and the device
configuration live. The driver finds them, then walks the initialisation sequence of
specs.md §3.2 through the common configuration (reset, ACKNOWLEDGE, DRIVER, features,
FEATURES_OK read back, queues, DRIVER_OK), and sets up one MSI-X vector for configuration
changes and one per virtqueue (vp_find_vqs_msix), falling back to one shared vector, then
to INTx. A queue is kicked by a 16-bit write of its index to its notify address.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..trace import tracepoint
from .kernel import GuestError
from ..standard_headers.pci_regs import PCI_SUBSYSTEM_ID
from .virtio_ring import SMP_CACHE_BYTES, VringVirtqueue, vring_create_virtqueue
from ..standard_headers.virtio_ring import VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC
from ..standard_headers.virtio_config import VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_VERSION_1
from ..standard_headers.virtio_pci import (
    VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
    VIRTIO_PCI_CAP_NOTIFY_CFG)

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import GuestKernel

# struct virtio_pci_cap (specs.md §5.2)
CAP_CFG_TYPE, CAP_BAR, CAP_OFFSET, CAP_LENGTH, CAP_NOTIFY_MULT = 3, 4, 8, 12, 16

# struct virtio_pci_common_cfg (specs.md §5.3; Linux VIRTIO_PCI_COMMON_*)
COMMON_DFSELECT = 0
COMMON_DF = 4
COMMON_GFSELECT = 8
COMMON_GF = 12
COMMON_MSIX = 16
COMMON_NUMQ = 18
COMMON_STATUS = 20
COMMON_CFGGENERATION = 21
COMMON_Q_SELECT = 22
COMMON_Q_SIZE = 24
COMMON_Q_MSIX = 26
COMMON_Q_ENABLE = 28
COMMON_Q_NOFF = 30
COMMON_Q_DESCLO = 32
COMMON_Q_AVAILLO = 40
COMMON_Q_USEDLO = 48
COMMON_MIN_LEN = 56

# device status (specs.md §3.1)

VIRTIO_MSI_NO_VECTOR = 0xFFFF
VIRTIO_PCI_ISR_QUEUE = 0x1
VIRTIO_PCI_ISR_CONFIG = 0x2
#: transport feature bits virtio_ring and this transport understand (vring_transport_features)
TRANSPORT_FEATURES = (1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX |
                      1 << VIRTIO_F_VERSION_1)
VIRTIO_PCI_VENDOR = 0x1AF4


def virtio_pci_device_id(kernel: "GuestKernel", devfn: int, pci_device: int) -> int:
    """The virtio device type of a PCI function: 0x1040 + type (modern), else the
    subsystem device ID (transitional 0x1000-0x103f), as virtio_pci_modern_probe reads it."""
    if pci_device >= 0x1040:
        return pci_device - 0x1040
    return kernel.pci_read(devfn, PCI_SUBSYSTEM_ID, 2)


class VirtioPCIDevice:
    """A virtio device on PCI, modern interface (Linux ``struct virtio_pci_device`` with
    its ``virtio_pci_modern_device`` and ``virtio_device``)."""

    def __init__(self, kernel: "GuestKernel", devfn: int, pci_device: int) -> None:
        self.kernel = kernel
        self.devfn = devfn
        self.pci_device = pci_device
        self.device_id = virtio_pci_device_id(kernel, devfn, pci_device)
        self.name = f"virtio{kernel.virtio_index}"
        kernel.virtio_index += 1
        self.common = self.isr = self.device = self.notify_base = 0
        self.device_len = self.notify_len = 0
        self.notify_off_multiplier = 0
        self.features = 0
        self.vqs: list[VringVirtqueue] = []
        self.config_vector = VIRTIO_MSI_NO_VECTOR
        self.msix_enabled = False
        self.per_vq_vectors = False
        self.intx_vector = 0
        self.config_changed: Callable[[], None] | None = None    # the driver's callback
        self.vectors: list[int] = []

    # -- finding the structures (vp_modern_probe) ------------------------------------------
    def _find_capability(self, cfg_type: int) -> int:
        """The first vendor capability of ``cfg_type`` whose BAR is real and assigned
        (Linux virtio_pci_find_capability); 0 if none."""
        k = self.kernel
        for pos in k.pci_vendor_capabilities(self.devfn):
            if k.pci_read(self.devfn, pos + CAP_CFG_TYPE, 1) != cfg_type:
                continue
            bar = k.pci_read(self.devfn, pos + CAP_BAR, 1)
            if bar > 5:
                continue                        # reserved BAR number: ignore the structure
            if k.pci_bar(self.devfn, bar):
                return pos
        return 0

    def _map_capability(self, pos: int, minlen: int, align: int) -> tuple[int, int]:
        """(address, length) a capability describes (Linux vp_modern_map_capability)."""
        k = self.kernel
        bar = k.pci_read(self.devfn, pos + CAP_BAR, 1)
        offset = k.pci_read(self.devfn, pos + CAP_OFFSET, 4)
        length = k.pci_read(self.devfn, pos + CAP_LENGTH, 4)
        if length < minlen:
            raise GuestError(f"virtio_pci: bad capability len {length} (>={minlen} expected)")
        if offset & (align - 1):
            raise GuestError(f"virtio_pci: offset {offset} not aligned to {align}")
        return k.pci_bar(self.devfn, bar) + offset, length

    def vp_modern_probe(self) -> None:
        """Find and map common, ISR, notify and device configuration."""
        common = self._find_capability(VIRTIO_PCI_CAP_COMMON_CFG)
        if not common:
            raise GuestError("virtio_pci: leaving for legacy driver (no common capability)")
        isr = self._find_capability(VIRTIO_PCI_CAP_ISR_CFG)
        notify = self._find_capability(VIRTIO_PCI_CAP_NOTIFY_CFG)
        if not isr or not notify:
            raise GuestError("virtio_pci: missing capabilities "
                             f"{'isr ' if not isr else ''}{'notify' if not notify else ''}")
        self.common, _ = self._map_capability(common, COMMON_MIN_LEN, 4)
        self.isr, _ = self._map_capability(isr, 1, 1)
        self.notify_off_multiplier = self.kernel.pci_read(self.devfn, notify + CAP_NOTIFY_MULT, 4)
        self.notify_base, self.notify_len = self._map_capability(notify, 2, 2)
        device = self._find_capability(VIRTIO_PCI_CAP_DEVICE_CFG)
        if device:
            self.device, self.device_len = self._map_capability(device, 0, 4)

    # -- status (virtio_pci_modern.c vp_get_status/vp_set_status/vp_reset) -------------------
    def get_status(self) -> int:
        return self.kernel.readb(self.common + COMMON_STATUS)

    def set_status(self, status: int) -> None:
        if status == 0:
            raise GuestError("set_status(0): use reset()")
        self.kernel.writeb(self.common + COMMON_STATUS, status)

    def add_status(self, status: int) -> None:
        """virtio_add_status: read the status and set more bits (never clear one)."""
        self.set_status(self.get_status() | status)

    def reset(self) -> None:
        """Write 0 and wait until the device reads back 0 (specs.md §3.2 step 1)."""
        self.kernel.writeb(self.common + COMMON_STATUS, 0)
        for _ in range(1000):
            if not self.get_status():
                return
        raise GuestError(f"{self.name}: device did not finish its reset")

    # -- features ----------------------------------------------------------------------------
    def get_features(self) -> int:
        """The 64 feature bits the device offers (device_feature_select 0 and 1)."""
        k, c = self.kernel, self.common
        k.writel(c + COMMON_DFSELECT, 0)
        lo = k.readl(c + COMMON_DF)
        k.writel(c + COMMON_DFSELECT, 1)
        hi = k.readl(c + COMMON_DF)
        return lo | hi << 32

    def set_features(self, features: int) -> None:
        k, c = self.kernel, self.common
        k.writel(c + COMMON_GFSELECT, 0)
        k.writel(c + COMMON_GF, features & 0xFFFFFFFF)
        k.writel(c + COMMON_GFSELECT, 1)
        k.writel(c + COMMON_GF, features >> 32)

    def has_feature(self, bit: int) -> bool:
        return bool(self.features >> bit & 1)

    def negotiate(self, driver_features: int) -> int:
        """Steps 4-6 of specs.md §3.2 (virtio_dev_probe, vp_finalize_features,
        virtio_features_ok): accept what both sides know, insist on VERSION_1 (the modern
        interface needs it), write the subset, set FEATURES_OK and check the device kept
        it. Returns the negotiated features."""
        offered = self.get_features()
        features = offered & (driver_features | TRANSPORT_FEATURES)
        if not features >> VIRTIO_F_VERSION_1 & 1:
            raise GuestError(f"{self.name}: device uses modern interface but does not have "
                             "VIRTIO_F_VERSION_1")
        self.features = features
        self.set_features(features)
        self.add_status(VIRTIO_CONFIG_S_FEATURES_OK)
        status = self.get_status()
        if not status & VIRTIO_CONFIG_S_FEATURES_OK:
            raise GuestError(f"{self.name}: device refuses features: {features:x}")
        return features

    # -- device configuration ------------------------------------------------------------------
    def config_generation(self) -> int:
        return self.kernel.readb(self.common + COMMON_CFGGENERATION)

    def cread_bytes(self, offset: int, n: int) -> bytes:
        """Bytes of device configuration, read one byte at a time and repeated if the
        device changed it meanwhile (virtio_cread_bytes with config_generation)."""
        if offset + n > self.device_len:
            raise GuestError(f"{self.name}: config read beyond {self.device_len} bytes")
        k = self.kernel
        for _ in range(100):
            gen = self.config_generation()
            data = bytes(k.readb(self.device + offset + i) for i in range(n))
            if self.config_generation() == gen:
                return data
        raise GuestError(f"{self.name}: device configuration keeps changing")

    def cread16(self, offset: int) -> int:
        if offset + 2 > self.device_len:
            raise GuestError(f"{self.name}: config read beyond {self.device_len} bytes")
        return self.kernel.readw(self.device + offset)

    # -- queues (setup_vq in virtio_pci_modern.c) ---------------------------------------------
    def _select(self, index: int) -> None:
        self.kernel.writew(self.common + COMMON_Q_SELECT, index)

    def setup_vq(self, index: int, callback: Callable[[VringVirtqueue], Any] | None,
                 name: str, msix_vec: int) -> VringVirtqueue:
        """Size, allocate and program one queue; verify its MSI-X vector (specs.md §5.6)."""
        k, c = self.kernel, self.common
        if index >= k.readw(c + COMMON_NUMQ):
            raise GuestError(f"{self.name}: no queue {index}")
        self._select(index)
        num = k.readw(c + COMMON_Q_SIZE)
        if not num or k.readw(c + COMMON_Q_ENABLE):
            raise GuestError(f"{self.name}: queue {index} unavailable")
        if num & (num - 1):
            raise GuestError(f"{self.name}: bad queue size {num}")
        vq = vring_create_virtqueue(k, index, num, SMP_CACHE_BYTES, self.vp_notify, callback,
                                    f"{self.name}-{name}",
                                    event_idx=self.has_feature(VIRTIO_RING_F_EVENT_IDX),
                                    indirect=self.has_feature(VIRTIO_RING_F_INDIRECT_DESC))
        k.writew(c + COMMON_Q_SIZE, num)
        k.lo_hi_writeq(c + COMMON_Q_DESCLO, vq.desc)
        k.lo_hi_writeq(c + COMMON_Q_AVAILLO, vq.avail)
        k.lo_hi_writeq(c + COMMON_Q_USEDLO, vq.used)
        off = k.readw(c + COMMON_Q_NOFF)
        if self.notify_off_multiplier:
            pos = off * self.notify_off_multiplier
            if pos + 2 > self.notify_len:
                raise GuestError(f"{self.name}: bad notification offset {off} for queue {index}")
        else:
            pos = 0
        vq.priv = self.notify_base + pos
        if msix_vec != VIRTIO_MSI_NO_VECTOR:
            k.writew(c + COMMON_Q_MSIX, msix_vec)
            if k.readw(c + COMMON_Q_MSIX) == VIRTIO_MSI_NO_VECTOR:
                raise GuestError(f"{self.name}: queue {index}: device could not map "
                                 f"MSI-X vector {msix_vec}")
        return vq

    def _set_config_vector(self, entry: int) -> None:
        k, c = self.kernel, self.common
        k.writew(c + COMMON_MSIX, entry)
        if k.readw(c + COMMON_MSIX) == VIRTIO_MSI_NO_VECTOR and entry != VIRTIO_MSI_NO_VECTOR:
            raise GuestError(f"{self.name}: device could not map config MSI-X vector {entry}")

    def find_vqs(self, queues: list[tuple[str, Callable[[VringVirtqueue], Any] | None]]
                 ) -> list[VringVirtqueue]:
        """Create the queues (name, callback) and their interrupts, then enable them
        (vp_modern_find_vqs -> vp_find_vqs): per-queue MSI-X vectors, else one shared
        MSI-X vector, else INTx."""
        errors = []
        for mode in ("msix-per-vq", "msix-shared", "intx"):
            try:
                if mode == "intx":
                    self._find_vqs_intx(queues)
                else:
                    self._find_vqs_msix(queues, per_vq=mode == "msix-per-vq")
                break
            except GuestError as e:
                errors.append(f"{mode}: {e}")
                self._undo_vqs()
        else:
            raise GuestError("; ".join(errors))
        k, c = self.kernel, self.common
        for vq in self.vqs:
            self._select(vq.index)
            k.writew(c + COMMON_Q_ENABLE, 1)
        return self.vqs

    def _undo_vqs(self) -> None:
        k = self.kernel
        for v in self.vectors:
            if v in k.irq_desc:
                k.free_irq(v)
        if self.msix_enabled:
            k.msix_disable(self.devfn)
            self.msix_enabled = False
        self.vectors = []
        self.vqs = []

    def _find_vqs_msix(self, queues: list[tuple[str, Callable[[VringVirtqueue], Any] | None]],
                       per_vq: bool) -> None:
        k = self.kernel
        with_cb = [q for q in queues if q[1] is not None]
        nvectors = 1 + len(with_cb) if per_vq else 2
        if k.msix_table_size(self.devfn) < nvectors:
            raise GuestError(f"{nvectors} MSI-X vectors wanted, device has "
                             f"{k.msix_table_size(self.devfn)}")
        self.vectors = [k.alloc_irq_vector() for _ in range(nvectors)]
        k.msix_enable(self.devfn, list(enumerate(self.vectors)))
        self.msix_enabled = True
        self.per_vq_vectors = per_vq
        k.request_irq(self.vectors[0], self.vp_config_changed, f"{self.name}-config")
        self._set_config_vector(0)
        self.config_vector = 0
        if not per_vq:
            k.request_irq(self.vectors[1], self.vp_vring_interrupt, f"{self.name}-virtqueues")
        entry = 1
        for index, (name, callback) in enumerate(queues):
            if callback is None:
                vec = VIRTIO_MSI_NO_VECTOR             # e.g. the control queue: no interrupt
            elif per_vq:
                vec, entry = entry, entry + 1
            else:
                vec = 1
            vq = self.setup_vq(index, callback, name, vec)
            self.vqs.append(vq)
            if per_vq and callback is not None:
                k.request_irq(self.vectors[vec], vq.vring_interrupt, f"{self.name}-{name}")

    def _find_vqs_intx(self, queues: list[tuple[str, Callable[[VringVirtqueue], Any] | None]]
                       ) -> None:
        """One level-triggered INTx for everything; the handler reads ISR (vp_interrupt)."""
        k = self.kernel
        gsi = k.pci_irq_gsi(self.devfn)
        if not gsi:
            raise GuestError("no INTx pin")
        vector = k.alloc_irq_vector()
        self.vectors = [vector]
        self.intx_vector = vector
        k.request_irq(vector, self.vp_interrupt, self.name, level=True)
        k.ioapic_route(gsi, vector, level=True)
        for index, (name, callback) in enumerate(queues):
            self.vqs.append(self.setup_vq(index, callback, name, VIRTIO_MSI_NO_VECTOR))

    # -- notifications and interrupts -------------------------------------------------------
    @tracepoint("drivers/virtio/virtio_pci_common.c")
    def vp_notify(self, vq: VringVirtqueue) -> bool:
        """Kick: write the queue's index (16 bits) to its notify address."""
        self.kernel.cpu.mmio_write(vq.priv, 2, vq.index)
        return True

    @tracepoint("drivers/virtio/virtio_pci_common.c")
    def vp_config_changed(self, irq: int) -> bool:
        """The configuration-change interrupt: tell the driver."""
        cb = self.config_changed
        if cb is not None:
            cb()
        return True

    def vp_vring_interrupt(self, irq: int) -> bool:
        """A shared queue interrupt: every queue with a callback checks its used ring."""
        handled = False
        for vq in self.vqs:
            if vq.callback is not None and vq.vring_interrupt(irq):
                handled = True
        return handled

    def vp_interrupt(self, irq: int) -> bool:
        """INTx: reading ISR tells why and lowers the line (specs.md §5.5)."""
        isr = self.kernel.readb(self.isr)
        if not isr:
            return False
        if isr & VIRTIO_PCI_ISR_CONFIG:
            self.vp_config_changed(irq)
        return self.vp_vring_interrupt(irq)
