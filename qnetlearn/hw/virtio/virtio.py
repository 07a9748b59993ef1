"""Virtio devices and split virtqueues, device side (QEMU's hw/virtio/virtio.c).

A split virtqueue lives in guest RAM: a descriptor table, the *available* ring the driver
writes, the *used* ring the device writes (virtio 1.x §2.7).  The device pops chains from
the available ring (:func:`virtqueue_pop`), fills used entries (:func:`virtqueue_fill`),
publishes them (:func:`virtqueue_flush`) and, unless the driver asked for silence, notifies
(:func:`virtio_notify`).  Everything the device reads from the guest is untrusted: a bad
index, a loop, a buffer outside RAM... calls :func:`virtio_error`, which marks the device
broken until reset, as QEMU does; no Python exception leaves the device.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable

from ...system.main_loop import EventNotifier
from ...system.memory import MemTxError
from ...trace import Stateful, Stats, tracepoint
from ...trace import events as trace
from ...standard_headers.virtio_ring import (
    VIRTIO_RING_F_EVENT_IDX, VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC, VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY)
from ...standard_headers.virtio_config import (
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1)

if TYPE_CHECKING:  # pragma: no cover
    from ...system.memory import RAM

VIRTQUEUE_MAX_SIZE = 1024
VIRTIO_NO_VECTOR = 0xFFFF
VIRTIO_F_NOTIFY_ON_EMPTY = 24
VIRTIO_F_ANY_LAYOUT = 27
EVENT_IDX = 1 << VIRTIO_RING_F_EVENT_IDX
NOTIFY_ON_EMPTY = 1 << VIRTIO_F_NOTIFY_ON_EMPTY
#: sizeof(VirtQueueElement) in QEMU 7.2, printed by the virtqueue_alloc_element event
ELEMENT_SIZE = 56

_USED_ELEM = struct.Struct("<II")


@tracepoint("hw/virtio/virtio.c", show=("event_idx", "new_idx", "old"))
def vring_need_event(event_idx: int, new_idx: int, old: int) -> bool:
    """Notify iff ``event_idx`` lies in [old, new) modulo 2^16 (virtio 1.x §2.7.10)."""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF


class VirtQueueElement:
    """A popped chain: where the device may read (out) and write (in)."""

    __slots__ = ("index", "out_sg", "in_sg", "ndescs", "serial")

    def __init__(self, index: int, out_sg: list[tuple[int, int]],
                 in_sg: list[tuple[int, int]], ndescs: int, serial: int) -> None:
        self.index = index            # the head descriptor, as the used ring reports it
        self.out_sg = out_sg          # device-readable (addr, len)
        self.in_sg = in_sg            # device-writable (addr, len)
        self.ndescs = ndescs
        self.serial = serial          # the device's count of elements: names them in traces

    @property
    def out_num(self) -> int:
        return len(self.out_sg)

    @property
    def in_num(self) -> int:
        return len(self.in_sg)

    def __repr__(self) -> str:
        return f"<elem head={self.index} out={self.out_sg} in={self.in_sg}>"


class VirtQueue(Stateful):
    """One split virtqueue, device side."""

    _state_ = ("num", "desc", "avail", "used", "last_avail_idx", "shadow_avail_idx",
               "used_idx", "signalled_used", "signalled_used_valid", "inuse", "vector",
               "notification", "enabled")

    def __init__(self, vdev: "VirtIODevice", index: int, num_max: int,
                 handle_output: Callable[["VirtIODevice", "VirtQueue"], None] | None) -> None:
        self.vdev = vdev
        self.queue_index = index
        self.name = f"vq{index}"
        self.num_max = num_max
        self.handle_output = handle_output
        self.host_notifier = EventNotifier(f"{vdev.name}-vq{index}-notifier")
        self.reset()

    def reset(self) -> None:
        self.num = self.num_max
        self.desc = self.avail = self.used = 0
        self.last_avail_idx = self.shadow_avail_idx = self.used_idx = 0
        self.signalled_used = 0
        self.signalled_used_valid = False
        self.inuse = 0
        self.vector = VIRTIO_NO_VECTOR
        self.notification = True
        self.enabled = False

    @property
    def ready(self) -> bool:
        return self.avail != 0

    def state(self, r: Any) -> dict[str, Any]:
        """The ring as it is in guest RAM at a recorded step, and the device's indices."""
        g = lambda n: r.get(self, n)  # noqa: E731
        num, desc, avail, used = g("num"), g("desc"), g("avail"), g("used")
        out: dict[str, Any] = {k: g(k) for k in self._state_}
        out["name"] = self.name
        if not avail or not num:
            return out
        table = r.ram(desc, 16 * num)
        out["descriptors"] = [dict(zip(("addr", "len", "flags", "next"),
                                       VRING_DESC.unpack_from(table, 16 * i))) for i in range(num)]
        ar = r.ram(avail, 6 + 2 * num)
        out["avail_flags"], out["avail_idx"] = struct.unpack_from("<HH", ar, 0)
        out["avail_ring"] = list(struct.unpack_from(f"<{num}H", ar, 4))
        out["used_event"] = struct.unpack_from("<H", ar, 4 + 2 * num)[0]
        ur = r.ram(used, 6 + 8 * num)
        out["used_flags"], out["used_idx_ram"] = struct.unpack_from("<HH", ur, 0)
        out["used_ring"] = [dict(zip(("id", "len"), _USED_ELEM.unpack_from(ur, 4 + 8 * i)))
                            for i in range(num)]
        out["avail_event"] = struct.unpack_from("<H", ur, 4 + 8 * num)[0]
        return out


class VirtIODevice(Stateful):
    """What every virtio device shares: status, features, queues, ISR, config space.

    The transport (``virtio_pci.py``) sets ``notify`` (how to raise a vector) and ``dma``
    (guest RAM while bus mastering is on, else None).
    """

    _state_ = ("status", "isr", "broken", "broken_reason", "guest_features", "config_vector",
               "generation")
    device_id = 0

    def __init__(self, name: str, host_features: int) -> None:
        self.name = name
        self.host_features = host_features
        self.guest_features = 0
        self.status = 0
        self.isr = 0
        self.broken = False
        self.broken_reason = ""
        self.config_vector = VIRTIO_NO_VECTOR
        self.generation = 0
        self.vq: list[VirtQueue] = []
        self.notify: Callable[[int], None] = lambda vector: None      # k->notify
        self.dma: "RAM | None" = None
        self.ioeventfd_started = False
        self.elements = 0             # elements popped so far (QEMU's allocation count)
        self.stats = Stats()

    def virtio_add_queue(self, num: int,
                         handle_output: Callable[["VirtIODevice", VirtQueue], None] | None
                         ) -> VirtQueue:
        vq = VirtQueue(self, len(self.vq), num, handle_output)
        self.vq.append(vq)
        return vq

    def has_feature(self, bit: int) -> bool:
        return bool(self.guest_features >> bit & 1)

    # device models override these
    def get_config(self) -> bytes:
        return b""

    def set_features(self, features: int) -> None:
        """The driver's feature choice, after FEATURES_OK (device-specific part)."""

    def set_status(self, status: int) -> None:
        """Device-specific reaction to a status change (e.g. DRIVER_OK)."""

    def reset(self) -> None:
        """virtio_reset: back to the state after power-on."""
        self.status = 0
        self.isr = 0
        self.guest_features = 0
        self.broken = False
        self.broken_reason = ""
        self.config_vector = VIRTIO_NO_VECTOR
        for vq in self.vq:
            vq.reset()


# -- ring accesses (vring_* in QEMU) ---------------------------------------------------

def _no_dma() -> "RAM":
    """Bus mastering is off: every ring access fails, as QEMU's DMA would."""
    raise MemTxError(0, 0)


def vring_avail_idx(vq: VirtQueue) -> int:
    vq.shadow_avail_idx = (vq.vdev.dma or _no_dma()).lduw(vq.avail + 2)
    return vq.shadow_avail_idx


def vring_avail_flags(vq: VirtQueue) -> int:
    return (vq.vdev.dma or _no_dma()).lduw(vq.avail)


def vring_get_used_event(vq: VirtQueue) -> int:
    return (vq.vdev.dma or _no_dma()).lduw(vq.avail + 4 + 2 * vq.num)


def vring_set_avail_event(vq: VirtQueue, val: int) -> None:
    """Tell the driver which avail index to kick at; only while notifications are on."""
    if not vq.notification:
        return
    (vq.vdev.dma or _no_dma()).stw(vq.used + 4 + 8 * vq.num, val)


def vring_used_flags_set(vq: VirtQueue, mask: int, on: bool) -> None:
    ram = vq.vdev.dma or _no_dma()
    flags = ram.lduw(vq.used)
    ram.stw(vq.used, (flags | mask) if on else (flags & ~mask))


def virtio_queue_empty(vq: VirtQueue) -> bool:
    """No chain waits: the avail index equals ours (read from RAM only when needed)."""
    if vq.vdev.broken or not vq.avail:
        return True
    if vq.shadow_avail_idx != vq.last_avail_idx:
        return False
    try:
        return vring_avail_idx(vq) == vq.last_avail_idx
    except MemTxError:
        return True


@tracepoint("hw/virtio/virtio.c", show=("enable",))
def virtio_queue_set_notification(vq: VirtQueue, enable: int) -> None:
    """Ask the driver to kick (or not): NO_NOTIFY flag, or avail_event with EVENT_IDX."""
    vq.notification = bool(enable)
    if not vq.desc:
        return
    try:
        if vq.vdev.guest_features & EVENT_IDX:
            vring_set_avail_event(vq, vring_avail_idx(vq))
        else:
            vring_used_flags_set(vq, VRING_USED_F_NO_NOTIFY, not enable)
    except MemTxError as e:
        virtio_error(vq.vdev, f"Cannot access the rings of {vq.name}: {e}")


# -- errors ------------------------------------------------------------------------------

@tracepoint("hw/virtio/virtio.c", show=("reason",))
def virtio_error(vdev: VirtIODevice, reason: str) -> None:
    """The guest gave us something malformed: NEEDS_RESET, a config interrupt, and the
    device processes nothing more until the driver resets it (virtio 1.x §2.1.2)."""
    vdev.stats["virtio_error"] += 1
    vdev.broken_reason = reason
    if vdev.has_feature(VIRTIO_F_VERSION_1):
        vdev.status |= VIRTIO_CONFIG_S_NEEDS_RESET
        virtio_notify_config(vdev)
    vdev.broken = True


# -- popping chains ----------------------------------------------------------------------

def _read_desc(ram: "RAM", table: int, i: int) -> tuple[int, int, int, int]:
    return ram.unpack(VRING_DESC, table + 16 * i)


@tracepoint("hw/virtio/virtio.c")
def virtqueue_pop(vq: VirtQueue, sz: int = ELEMENT_SIZE) -> VirtQueueElement | None:
    """Take the next available chain, or None (empty, broken, or malformed)."""
    vdev = vq.vdev
    if vdev.broken or virtio_queue_empty(vq):
        return None
    try:
        return _split_pop(vq, sz)
    except MemTxError as e:
        virtio_error(vdev, f"bogus descriptor or out of resources ({e})")
        return None


def _split_pop(vq: VirtQueue, sz: int) -> VirtQueueElement | None:
    vdev = vq.vdev
    ram = vdev.dma or _no_dma()
    num = vq.num
    if vq.inuse >= num:
        virtio_error(vdev, "Virtqueue size exceeded")
        return None
    avail_idx = vq.shadow_avail_idx
    if (avail_idx - vq.last_avail_idx) & 0xFFFF > num:
        virtio_error(vdev, f"Guest moved used index from {vq.last_avail_idx} to {avail_idx}")
        return None
    head = ram.lduw(vq.avail + 4 + 2 * (vq.last_avail_idx % num))
    vq.last_avail_idx = (vq.last_avail_idx + 1) & 0xFFFF
    if head >= num:
        virtio_error(vdev, f"Guest says index {head} is available")
        return None
    if vdev.guest_features & EVENT_IDX:
        vring_set_avail_event(vq, vq.last_avail_idx)

    out_sg: list[tuple[int, int]] = []
    in_sg: list[tuple[int, int]] = []
    table, limit, i = vq.desc, num, head
    addr, length, flags, nxt = _read_desc(ram, table, i)
    indirect = False
    seen = 0
    ram_size = ram.size
    while True:
        if flags & VRING_DESC_F_INDIRECT:
            # virtio 1.x §2.7.5.3.2: a device MUST accept zero or more direct descriptors
            # followed by one INDIRECT one.  QEMU honours INDIRECT only at the head; we
            # follow the spec here, and reject what the spec forbids the driver.
            if indirect:
                virtio_error(vdev, "Nested indirect descriptor")
                return None
            if flags & VRING_DESC_F_NEXT:
                virtio_error(vdev, "Indirect descriptor with NEXT set")
                return None
            if not length or length % 16:
                virtio_error(vdev, "Invalid size for indirect buffer table")
                return None
            if addr + length > ram_size:
                virtio_error(vdev, "Cannot map indirect buffer")
                return None
            indirect = True
            table, limit, i, seen = addr, length // 16, 0, 0
            addr, length, flags, nxt = _read_desc(ram, table, 0)
            continue
        seen += 1
        if seen > limit:
            virtio_error(vdev, "Looped descriptor")
            return None
        if len(in_sg) + len(out_sg) >= VIRTQUEUE_MAX_SIZE:
            # QEMU's virtqueue_map_desc: at most VIRTQUEUE_MAX_SIZE buffers per element
            virtio_error(vdev, "virtio: too many descriptors in one chain")
            return None
        if not length:
            virtio_error(vdev, "virtio: zero sized buffers are not allowed")
            return None
        if addr + length > ram_size:
            virtio_error(vdev, "virtio: bogus descriptor or out of resources")
            return None
        if flags & VRING_DESC_F_WRITE:
            in_sg.append((addr, length))
        else:
            if in_sg:
                virtio_error(vdev, "Incorrect order for descriptors")
                return None
            out_sg.append((addr, length))
        if not flags & VRING_DESC_F_NEXT:
            break
        if nxt >= limit:
            virtio_error(vdev, f"Desc next is {nxt}")
            return None
        i = nxt
        addr, length, flags, nxt = _read_desc(ram, table, i)

    vdev.elements += 1
    elem = VirtQueueElement(head, out_sg, in_sg, 1, vdev.elements)
    trace.virtqueue_alloc_element(elem.serial, sz, len(in_sg), len(out_sg))
    vq.inuse += 1
    trace.virtqueue_pop(vq.name, elem.serial, len(in_sg), len(out_sg))
    return elem


def virtqueue_unpop(vq: VirtQueue, elem: VirtQueueElement, len: int) -> None:
    """Pretend the last pop did not happen: the next pop returns the same chain."""
    vq.last_avail_idx = (vq.last_avail_idx - 1) & 0xFFFF
    virtqueue_detach_element(vq, elem, len)


def virtqueue_detach_element(vq: VirtQueue, elem: VirtQueueElement, len: int) -> None:
    vq.inuse -= elem.ndescs


def virtqueue_get_avail_bytes(vq: VirtQueue, max_in: int, max_out: int) -> tuple[int, int]:
    """Writable and readable bytes in the available chains, without popping them."""
    vdev = vq.vdev
    if vdev.broken or not vq.avail:
        return 0, 0
    in_total = out_total = 0
    try:
        ram = vdev.dma or _no_dma()
        idx = vq.last_avail_idx
        avail_idx = vring_avail_idx(vq)
        if (avail_idx - idx) & 0xFFFF > vq.num:
            virtio_error(vdev, f"Guest moved used index from {idx} to {avail_idx}")
            return 0, 0
        while idx != avail_idx:
            head = ram.lduw(vq.avail + 4 + 2 * (idx % vq.num))
            idx = (idx + 1) & 0xFFFF
            if head >= vq.num:
                virtio_error(vdev, f"Guest says index {head} is available")
                return 0, 0
            table, limit, i, seen, total, indirect = vq.desc, vq.num, head, 0, 0, False
            while True:
                addr, length, flags, nxt = _read_desc(ram, table, i)
                if flags & VRING_DESC_F_INDIRECT:
                    if indirect:
                        virtio_error(vdev, "Nested indirect descriptor")
                        return 0, 0
                    if not length or length % 16:
                        virtio_error(vdev, "Invalid size for indirect buffer table")
                        return 0, 0
                    if addr + length > ram.size:
                        virtio_error(vdev, "Cannot map indirect buffer")
                        return 0, 0
                    table, limit, i, seen, indirect = addr, length // 16, 0, 0, True
                    continue
                seen += 1
                total += 1
                if seen > limit:
                    virtio_error(vdev, "Looped descriptor")
                    return 0, 0
                if total > VIRTQUEUE_MAX_SIZE:
                    virtio_error(vdev, "virtio: too many descriptors in one chain")
                    return 0, 0
                if flags & VRING_DESC_F_WRITE:
                    in_total += length
                else:
                    out_total += length
                if in_total >= max_in and out_total >= max_out:
                    return in_total, out_total
                if not flags & VRING_DESC_F_NEXT:
                    break
                if nxt >= limit:
                    virtio_error(vdev, f"Desc next is {nxt}")
                    return 0, 0
                i = nxt
    except MemTxError as e:
        virtio_error(vdev, f"bogus descriptor or out of resources ({e})")
        return 0, 0
    return in_total, out_total


def virtqueue_avail_bytes(vq: VirtQueue, in_bytes: int, out_bytes: int) -> bool:
    i, o = virtqueue_get_avail_bytes(vq, in_bytes, out_bytes)
    return in_bytes <= i and out_bytes <= o


# -- completing chains -------------------------------------------------------------------

def iov_from_buf(vdev: VirtIODevice, sg: list[tuple[int, int]], offset: int,
                 data: bytes | memoryview) -> int:
    """Copy ``data`` into the guest buffers ``sg`` from byte ``offset``; returns bytes copied."""
    ram = vdev.dma or _no_dma()
    done = 0
    n = len(data)
    for addr, length in sg:
        if offset >= length:
            offset -= length
            continue
        chunk = min(length - offset, n - done)
        ram.write(addr + offset, data[done:done + chunk])
        done += chunk
        offset = 0
        if done == n:
            break
    vdev.stats["bytes copied to guest"] += done
    return done


def iov_to_buf(vdev: VirtIODevice, sg: list[tuple[int, int]]) -> bytes:
    """Gather the guest buffers ``sg`` (device-readable part of a chain)."""
    ram = vdev.dma or _no_dma()
    if len(sg) == 1:
        addr, length = sg[0]
        data = ram.read(addr, length)
    else:
        data = b"".join(ram.read(a, n) for a, n in sg)
    vdev.stats["bytes copied from guest"] += len(data)
    return data


@tracepoint("hw/virtio/virtio.c", show=("len", "idx"))
def virtqueue_fill(vq: VirtQueue, elem: VirtQueueElement, len: int, idx: int) -> None:
    """Write the used entry {head, len} at used_idx + idx; invisible until the flush."""
    trace.virtqueue_fill(vq.name, elem.serial, len, idx)
    if vq.vdev.broken or not vq.used:
        return
    try:
        pos = (vq.used_idx + idx) % vq.num
        (vq.vdev.dma or _no_dma()).write(vq.used + 4 + 8 * pos, _USED_ELEM.pack(elem.index, len))
    except MemTxError as e:
        virtio_error(vq.vdev, f"Cannot write the used ring of {vq.name}: {e}")


@tracepoint("hw/virtio/virtio.c", show=("count",))
def virtqueue_flush(vq: VirtQueue, count: int) -> None:
    """Publish ``count`` filled entries by advancing used->idx."""
    if vq.vdev.broken:
        vq.inuse -= count
        return
    if not vq.used:
        return
    trace.virtqueue_flush(vq.name, count)
    old = vq.used_idx
    new = (old + count) & 0xFFFF
    try:
        (vq.vdev.dma or _no_dma()).stw(vq.used + 2, new)
    except MemTxError as e:
        virtio_error(vq.vdev, f"Cannot write the used ring of {vq.name}: {e}")
        return
    vq.used_idx = new
    vq.inuse -= count
    # the driver's used_event may now be behind us: forget what we signalled
    if ((new - vq.signalled_used + 0x8000) & 0xFFFF) - 0x8000 < (new - old) & 0xFFFF:
        vq.signalled_used_valid = False


@tracepoint("hw/virtio/virtio.c", show=("len",))
def virtqueue_push(vq: VirtQueue, elem: VirtQueueElement, len: int) -> None:
    virtqueue_fill(vq, elem, len, 0)
    virtqueue_flush(vq, 1)


# -- notifications -----------------------------------------------------------------------

@tracepoint("hw/virtio/virtio.c")
def virtio_should_notify(vdev: VirtIODevice, vq: VirtQueue) -> bool:
    """Does the driver want an interrupt now?  (NO_INTERRUPT flag, or used_event.)"""
    try:
        if vdev.guest_features & NOTIFY_ON_EMPTY and not vq.inuse and \
                virtio_queue_empty(vq):
            return True
        if not vdev.guest_features & EVENT_IDX:
            return not vring_avail_flags(vq) & VRING_AVAIL_F_NO_INTERRUPT
        v = vq.signalled_used_valid
        vq.signalled_used_valid = True
        old = vq.signalled_used
        new = vq.signalled_used = vq.used_idx
        return not v or vring_need_event(vring_get_used_event(vq), new, old)
    except MemTxError:
        return True


@tracepoint("hw/virtio/virtio.c")
def virtio_notify(vdev: VirtIODevice, vq: VirtQueue) -> None:
    """Interrupt the driver for ``vq`` if it wants one."""
    if not virtio_should_notify(vdev, vq):
        vdev.stats["notifications suppressed"] += 1
        return
    trace.virtio_notify(vdev, vq.name)
    vdev.isr |= 1                       # virtio_irq -> virtio_set_isr
    virtio_notify_vector(vdev, vq.vector)


@tracepoint("hw/virtio/virtio.c", show=("vector",))
def virtio_notify_vector(vdev: VirtIODevice, vector: int) -> None:
    """Hand the vector to the transport (``k->notify`` = virtio_pci_notify)."""
    if vdev.broken and vector != vdev.config_vector:
        return
    vdev.stats["interrupts"] += 1
    vdev.notify(vector)


def virtio_notify_config(vdev: VirtIODevice) -> None:
    """A configuration change: ISR bit 1 and the config vector (only after DRIVER_OK)."""
    if not vdev.status & VIRTIO_CONFIG_S_DRIVER_OK:
        return
    vdev.isr |= 3
    vdev.generation = (vdev.generation + 1) & 0xFF
    vdev.stats["config interrupts"] += 1
    vdev.notify(vdev.config_vector)


@tracepoint("hw/virtio/virtio.c", show=("n",))
def virtio_queue_notify(vdev: VirtIODevice, n: int) -> None:
    """The driver kicked queue ``n``: run the device's handler for it."""
    if n >= len(vdev.vq):
        return
    vq = vdev.vq[n]
    if not vq.desc or vdev.broken:
        vdev.stats["kicks ignored"] += 1
        return
    trace.virtio_queue_notify(vdev, n, vq.name)
    vdev.stats["kicks"] += 1
    if vq.handle_output is not None:
        vq.handle_output(vdev, vq)


@tracepoint("hw/virtio/virtio.c")
def virtio_queue_host_notifier_read(vq: VirtQueue) -> None:
    """The ioeventfd of ``vq`` fired (the guest's notify write did not exit to QEMU's
    device code): the main loop runs the queue's handler."""
    if vq.host_notifier.test_and_clear():
        virtio_queue_notify(vq.vdev, vq.queue_index)


def virtio_set_status(vdev: VirtIODevice, val: int) -> None:
    """The driver wrote device_status (virtio 1.x §2.1); 0 resets."""
    trace.virtio_set_status(vdev, val)
    if vdev.has_feature(VIRTIO_F_VERSION_1) and val & VIRTIO_CONFIG_S_FEATURES_OK and \
            not vdev.status & VIRTIO_CONFIG_S_FEATURES_OK:
        if vdev.guest_features & ~vdev.host_features:
            return              # validation failed: FEATURES_OK stays clear
    vdev.status = val & 0xFF
    vdev.set_status(val)


__all__ = ["VirtIODevice", "VirtQueue", "VirtQueueElement", "virtqueue_pop", "virtqueue_fill",
           "virtqueue_flush", "virtqueue_push", "virtio_notify", "virtio_should_notify",
           "virtio_queue_notify", "virtio_error", "vring_need_event"]
