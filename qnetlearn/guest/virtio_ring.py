"""The driver side of a split virtqueue (after Linux 6.1 drivers/virtio/virtio_ring.c).

The driver owns the descriptor table and the available ring, the device owns the used
ring (specs.md §1). Adding a buffer writes its descriptor chain, puts the chain's head in
the next available slot, and only then publishes the new ``avail.idx``; getting a buffer
reads the used ring from ``last_used_idx`` up to ``used.idx`` and gives the chain back to
the free list. Notification suppression runs both ways: ``virtqueue_kick_prepare`` asks
whether the device wants a kick (``avail_event`` with EVENT_IDX, else the used ring's
NO_NOTIFY flag), and the driver tells the device whether it wants interrupts through
``used_event`` (EVENT_IDX) or the avail ring's NO_INTERRUPT flag.

Every ring field is read and written in guest RAM through the vCPU, little endian, at the
spec's offsets; the shadow copies (``avail_idx_shadow``, ``desc_next``, ...) are what Linux
keeps in ``struct vring_virtqueue`` so it never has to read back what it wrote.
Memory barriers are no-ops in this single-threaded model, but the order of writes is the
one the spec requires.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..trace import Stateful, Stats, tracepoint
from ..standard_headers.virtio_ring import (
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY)

if TYPE_CHECKING:  # pragma: no cover
    from .kernel import GuestKernel

#: Linux's alignment of the used ring for virtio-pci modern queues (SMP_CACHE_BYTES)
SMP_CACHE_BYTES = 64
#: the legacy virtio-pci ring alignment (VIRTIO_PCI_VRING_ALIGN)
VIRTIO_PCI_VRING_ALIGN = 4096


SG = Sequence[tuple[int, int]]        # a scatter-gather list: (guest address, length)


def vring_need_event(event_idx: int, new_idx: int, old: int) -> bool:
    """Did the index move from ``old`` to ``new_idx`` pass ``event_idx``? (specs.md §1.5,
    Linux include/uapi/linux/virtio_ring.h vring_need_event): notify iff ``event_idx``
    lies in [old, new) modulo 2**16."""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF


def vring_layout(num: int, align: int) -> tuple[int, int, int]:
    """Offsets (avail, used, total size) of one contiguous split ring of ``num`` entries
    whose used ring is aligned to ``align`` (Linux vring_init and vring_size).

    The descriptor table starts at 0 (16 bytes each), the available ring follows it
    (flags, idx, ring[num], used_event), the used ring starts at the next multiple of
    ``align`` (flags, idx, ring[num] of 8 bytes, avail_event).
    """
    if num <= 0 or num & (num - 1) or num > 32768:
        raise ValueError(f"a split ring size is a power of two up to 32768, got {num}")
    if align <= 0 or align & (align - 1):
        raise ValueError(f"ring alignment must be a power of two, got {align}")
    avail = 16 * num
    used = (avail + 2 * (3 + num) + align - 1) & ~(align - 1)
    return avail, used, used + 6 + 8 * num


def vring_size(num: int, align: int) -> int:
    """Bytes of a contiguous split ring (Linux vring_size; specs.md §1.1's table)."""
    return vring_layout(num, align)[2]


class VringVirtqueue(Stateful):
    """One split virtqueue as the driver sees it (Linux ``struct vring_virtqueue``).

    ``notify(vq) -> bool`` is the transport's kick (virtio-pci: a 16-bit write to the
    queue's notify address); ``callback(vq)`` is the driver's interrupt callback.
    """

    _state_ = ("avail_idx_shadow", "avail_flags_shadow", "last_used_idx", "num_free",
               "free_head", "event_triggered", "broken")

    def __init__(self, kernel: "GuestKernel", index: int, num: int, desc: int, avail: int,
                 used: int, notify: Callable[["VringVirtqueue"], bool],
                 callback: Callable[["VringVirtqueue"], Any] | None, name: str,
                 event_idx: bool = False, indirect: bool = False) -> None:
        self.kernel = kernel
        self.ram = kernel.cpu.ram          # the RAM object; never a bound method of it
        self.index = index
        self.num = num
        self.name = name
        self.desc = desc
        self.avail = avail
        self.used = used
        # field addresses (specs.md §1.1)
        self.avail_idx_addr = avail + 2
        self.avail_ring = avail + 4
        self.used_event_addr = avail + 4 + 2 * num
        self.used_idx_addr = used + 2
        self.used_ring = used + 4
        self.avail_event_addr = used + 4 + 8 * num
        self.notify = notify
        self.callback = callback
        self.event = event_idx
        self.indirect = indirect
        self.priv: Any = None              # the transport's notify address
        self.broken = False
        self.event_triggered = False
        self.avail_idx_shadow = 0
        self.avail_flags_shadow = 0
        self.last_used_idx = 0
        self.num_added = 0
        self.num_free = num
        self.free_head = 0
        # desc_extra: the driver's own copy of each descriptor's flags and next
        self.desc_next = list(range(1, num)) + [0]
        self.desc_flags = [0] * num
        self.data: list[Any] = [None] * num             # token of each chain, by head
        self.indir: list[tuple[int, int] | None] = [None] * num
        self._indirect_pool: dict[int, list[int]] = {}
        self.stats = Stats()

    def __repr__(self) -> str:
        return (f"<vq {self.name} #{self.index} num {self.num} free {self.num_free} "
                f"avail {self.avail_idx_shadow} last_used {self.last_used_idx}>")

    # -- adding buffers -------------------------------------------------------------------
    def _alloc_indirect(self, n: int) -> int:
        pool = self._indirect_pool.get(n)
        if pool:
            return pool.pop()
        return self.kernel.dma_alloc(16 * n, 16)

    def virtqueue_add(self, out_sgs: SG, in_sgs: SG, data: Any) -> int:
        """Expose one buffer (device-readable ``out_sgs`` then device-writable ``in_sgs``)
        to the device; returns 0, or -28 (-ENOSPC) when the ring is full (Linux
        virtqueue_add_split). ``data`` is the token ``virtqueue_get_buf`` gives back."""
        if data is None:
            raise ValueError("virtqueue_add: the token must not be None")
        if self.broken:
            return -5                                      # -EIO
        total = len(out_sgs) + len(in_sgs)
        if total == 0:
            raise ValueError("virtqueue_add: an empty buffer")
        ram = self.ram
        pack = VRING_DESC.pack
        head = self.free_head
        if self.indirect and total > 1 and self.num_free:
            # One ring descriptor pointing at a table of ``total`` (specs.md §1.6).
            table = self._alloc_indirect(total)
            parts = []
            k = 0
            for sgs, write in ((out_sgs, 0), (in_sgs, VRING_DESC_F_WRITE)):
                for addr, length in sgs:
                    k += 1
                    f = write | (VRING_DESC_F_NEXT if k < total else 0)
                    parts.append(pack(addr, length, f, k))
            ram.write(table, b"".join(parts))
            nxt = self.desc_next[head]
            ram.write(self.desc + 16 * head, pack(table, 16 * total, VRING_DESC_F_INDIRECT, nxt))
            self.desc_flags[head] = VRING_DESC_F_INDIRECT
            self.indir[head] = (table, total)
            self.num_free -= 1
            self.free_head = nxt
            self.stats["indirect"] += 1
        else:
            if self.num_free < total:
                self.stats["add: ring full"] += 1
                if out_sgs:
                    # Linux forces a kick here so the device drains the ring (FIXME in
                    # virtqueue_add_split: "for historical reasons").
                    self.notify(self)
                return -28
            desc = self.desc
            flags = self.desc_flags
            nexts = self.desc_next
            i = head
            k = 0
            for sgs, write in ((out_sgs, 0), (in_sgs, VRING_DESC_F_WRITE)):
                for addr, length in sgs:
                    k += 1
                    f = write | (VRING_DESC_F_NEXT if k < total else 0)
                    flags[i] = f
                    ram.write(desc + 16 * i, pack(addr, length, f, nexts[i]))
                    i = nexts[i]
            self.num_free -= total
            self.free_head = i
        return self._publish(head, data)

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_add_inbuf(self, sg: SG, data: Any) -> int:
        """A device-writable buffer (RX): Linux virtqueue_add_inbuf."""
        if len(sg) == 1:
            return self._add_one(sg[0][0], sg[0][1], VRING_DESC_F_WRITE, data)
        return self.virtqueue_add((), sg, data)

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_add_outbuf(self, sg: SG, data: Any) -> int:
        """A device-readable buffer (TX): Linux virtqueue_add_outbuf."""
        if len(sg) == 1:
            return self._add_one(sg[0][0], sg[0][1], 0, data)
        return self.virtqueue_add(sg, (), data)

    def _add_one(self, addr: int, length: int, flags: int, data: Any) -> int:
        """virtqueue_add_split for a one-entry list (never indirect: Linux uses a table
        only for more than one entry), with the per-packet work kept small."""
        if data is None:
            raise ValueError("virtqueue_add: the token must not be None")
        if self.broken:
            return -5
        if not self.num_free:
            self.stats["add: ring full"] += 1
            if not flags:
                self.notify(self)
            return -28
        ram = self.ram
        head = self.free_head
        nxt = self.desc_next[head]
        self.desc_flags[head] = flags
        ram.write(self.desc + 16 * head, VRING_DESC.pack(addr, length, flags, nxt))
        self.num_free -= 1
        self.free_head = nxt
        return self._publish(head, data)

    def _publish(self, head: int, data: Any) -> int:
        """The end of virtqueue_add_split, once the chain is written: keep the token, put
        ``head`` in the next avail slot, then (after the write barrier) publish avail.idx."""
        self.data[head] = data
        ram = self.ram
        shadow = self.avail_idx_shadow
        ram.stw(self.avail_ring + 2 * (shadow & (self.num - 1)), head)
        self.avail_idx_shadow = shadow = (shadow + 1) & 0xFFFF
        ram.stw(self.avail_idx_addr, shadow)
        self.num_added += 1
        if self.num_added == 0xFFFF:
            self.virtqueue_kick()              # Linux: "theoretically possible", kick
        return 0

    # -- kicking the device -----------------------------------------------------------------
    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_kick_prepare(self) -> bool:
        """Does the device want to hear about the buffers added since the last call?

        With EVENT_IDX: yes iff ``avail_event`` (written by the device) lies in the
        window the avail index just moved through; else yes unless the used ring's flags
        say NO_NOTIFY (specs.md §1.5; Linux virtqueue_kick_prepare_split).
        """
        new = self.avail_idx_shadow
        old = (new - self.num_added) & 0xFFFF
        self.num_added = 0
        if self.event:       # vring_need_event(avail_event, new, old), inlined
            return (new - self.ram.lduw(self.avail_event_addr) - 1) & 0xFFFF < (new - old) & 0xFFFF
        return not self.ram.lduw(self.used) & VRING_USED_F_NO_NOTIFY

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_notify(self) -> bool:
        """Kick the device through the transport; a failed kick breaks the queue."""
        if self.broken:
            return False
        if not self.notify(self):
            self.broken = True
            return False
        self.stats["kicks"] += 1
        return True

    def virtqueue_kick(self) -> bool:
        if self.virtqueue_kick_prepare():
            return self.virtqueue_notify()
        return True

    # -- taking used buffers back -----------------------------------------------------------
    def more_used(self) -> bool:
        return self.last_used_idx != self.ram.lduw(self.used_idx_addr)

    def _detach_buf(self, head: int) -> None:
        """Give a finished chain back to the free list (Linux detach_buf_split)."""
        self.data[head] = None
        flags = self.desc_flags
        nexts = self.desc_next
        i = head
        n = 1
        while flags[i] & VRING_DESC_F_NEXT:
            i = nexts[i]
            n += 1
        nexts[i] = self.free_head
        self.free_head = head
        self.num_free += n
        ind = self.indir[head]
        if ind is not None:
            self.indir[head] = None
            self._indirect_pool.setdefault(ind[1], []).append(ind[0])

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_get_buf(self) -> tuple[Any, int] | None:
        """The next used buffer as (token, bytes the device wrote), or None (Linux
        virtqueue_get_buf_ctx_split). A bad id from the device breaks the queue."""
        if self.broken:
            return None
        ram = self.ram
        last = self.last_used_idx
        if last == ram.lduw(self.used_idx_addr):
            return None
        elem = ram.ldq(self.used_ring + 8 * (last & (self.num - 1)))
        head = elem & 0xFFFFFFFF
        if head >= self.num:
            return self._bad_ring(f"id {head} out of range")
        data = self.data[head]
        if data is None:
            return self._bad_ring(f"id {head} is not a head!")
        self._detach_buf(head)
        self.last_used_idx = last = (last + 1) & 0xFFFF
        if not self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            # "If we expect an interrupt for the next entry, tell host by writing event index"
            ram.stw(self.used_event_addr, last)
        return data, elem >> 32

    def _bad_ring(self, why: str) -> None:
        """Linux BAD_RING: the device made a mess; stop using the queue."""
        self.broken = True
        self.stats["bad ring: " + why] += 1
        self.kernel.printk(f"{self.name}: {why}")
        return None

    # -- interrupt suppression --------------------------------------------------------------
    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_disable_cb(self) -> None:
        """Ask the device for no more interrupts (Linux virtqueue_disable_cb_split, 6.1
        stable). With EVENT_IDX the hint is ``used_event`` = 0, written only if the
        device has not just interrupted (then it will not interrupt again anyway)."""
        if not self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow |= VRING_AVAIL_F_NO_INTERRUPT
            if self.event_triggered:
                return
            if self.event:
                self.ram.stw(self.used_event_addr, 0)
            else:
                self.ram.stw(self.avail, self.avail_flags_shadow)

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_enable_cb_prepare(self) -> int:
        """Turn interrupts back on: clear NO_INTERRUPT (without EVENT_IDX) and set
        ``used_event`` to the next entry we will read; returns that index for
        :meth:`virtqueue_poll` (Linux virtqueue_enable_cb_prepare_split)."""
        self.event_triggered = False
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.event:
                self.ram.stw(self.avail, self.avail_flags_shadow)
        last = self.last_used_idx
        self.ram.stw(self.used_event_addr, last)
        return last

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_poll(self, last_used_idx: int) -> bool:
        """Did the device use more buffers since ``virtqueue_enable_cb_prepare``?"""
        if self.broken:
            return False
        return last_used_idx != self.ram.lduw(self.used_idx_addr)

    def virtqueue_enable_cb(self) -> bool:
        """Re-enable interrupts; False if buffers are already pending (poll again)."""
        return not self.virtqueue_poll(self.virtqueue_enable_cb_prepare())

    @tracepoint("drivers/virtio/virtio_ring.c")
    def virtqueue_enable_cb_delayed(self) -> bool:
        """Re-enable interrupts, but ask for one only after about 3/4 of the outstanding
        buffers are used (Linux virtqueue_enable_cb_delayed_split, used for TX cleaning).
        False if that many are already used."""
        self.event_triggered = False
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.event:
                self.ram.stw(self.avail, self.avail_flags_shadow)
        last = self.last_used_idx
        bufs = ((self.avail_idx_shadow - last) & 0xFFFF) * 3 // 4
        ram = self.ram
        ram.stw(self.used_event_addr, (last + bufs) & 0xFFFF)
        if (ram.lduw(self.used_idx_addr) - last) & 0xFFFF > bufs:
            return False
        return True

    @tracepoint("drivers/virtio/virtio_ring.c", show=("irq",))
    def vring_interrupt(self, irq: int) -> bool:
        """The queue's interrupt: if the device used buffers, note that it raised an
        event and run the driver's callback (Linux vring_interrupt). False = IRQ_NONE."""
        if self.last_used_idx == self.ram.lduw(self.used_idx_addr):
            self.stats["interrupt with no work"] += 1
            return False
        if self.broken:
            return True
        if self.event:
            self.event_triggered = True
        cb = self.callback
        if cb is not None:
            cb(self)
        return True

    # -- teardown ---------------------------------------------------------------------------
    def detach_unused_buf(self) -> Any:
        """Take back a buffer the device never used (after a reset); None when none left."""
        for head, data in enumerate(self.data):
            if data is not None:
                self._detach_buf(head)
                self.avail_idx_shadow = (self.avail_idx_shadow - 1) & 0xFFFF
                self.ram.stw(self.avail_idx_addr, self.avail_idx_shadow)
                return data
        return None

    def get_vring_size(self) -> int:
        return self.num


def vring_create_virtqueue(kernel: "GuestKernel", index: int, num: int, vring_align: int,
                           notify: Callable[[VringVirtqueue], bool],
                           callback: Callable[[VringVirtqueue], Any] | None, name: str,
                           event_idx: bool = False, indirect: bool = False) -> VringVirtqueue:
    """Allocate one contiguous, zeroed split ring in guest RAM and its driver state
    (Linux vring_create_virtqueue_split): descriptors at the start (16-byte aligned, the
    block is page aligned), available ring after them, used ring at ``vring_align``."""
    avail_off, used_off, size = vring_layout(num, vring_align)
    base = kernel.dma_alloc(size, max(vring_align, 4096))
    return VringVirtqueue(kernel, index, num, base, base + avail_off, base + used_off,
                          notify, callback, name, event_idx=event_idx, indirect=indirect)
