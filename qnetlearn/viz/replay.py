"""One pass over a recording that gives every view what it needs, step by step.

``Replay(rec).moments()`` yields a :class:`Moment` per step, in order.  A moment holds the
step, its live frames, and the recorded state (``rec.state(i)``, the very same dict) plus a
few extras the machine's state does not hold: the guest driver's side of each virtqueue
(``last_used_idx``, its shadow of ``avail.idx``) and the first bytes of the buffer a device
is working on.  States are rebuilt only at the steps where the recording's journal says
something changed (``rec.state`` is called in increasing order, so the recorder replays its
journal once); between those steps the same objects are handed out again, which also tells
the players which frames are equal.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from ..standard_headers.virtio_ring import (VRING_DESC, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT,
                                            VRING_DESC_F_WRITE)

if TYPE_CHECKING:  # pragma: no cover
    from ..trace.recorder import Recorder, Step

#: at most this many bytes of the buffer a device works on are kept (enough for a frame)
BUFFER_PEEK = 2048


class Moment:
    """Everything the views show at one step (see the module docstring)."""

    __slots__ = ("i", "k", "n", "step", "frames", "state", "extras", "version",
                 "prev_state", "prev_extras", "prev_version", "replay")

    def __init__(self, replay: "Replay", i: int, k: int, step: "Step", frames: list["Step"],
                 state: dict[str, Any], extras: dict[str, Any], version: int,
                 prev: "Moment | None") -> None:
        self.replay = replay
        self.i = i                    # the step's index in the recording (rec.state(i))
        self.k = k                    # its position among the kept steps (0-based)
        self.n = replay.n
        self.step = step
        self.frames = frames          # call steps of the live frames, outermost first
        self.state = state
        self.extras = extras
        self.version = version        # equal versions: equal states
        self.prev_state = prev.state if prev else None
        self.prev_extras = prev.extras if prev else None
        self.prev_version = prev.version if prev else -1

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.frames]


class Replay:
    """A recording prepared for the renderers (one sequential pass, see module docstring)."""

    def __init__(self, rec: "Recorder") -> None:
        self.rec = rec
        self.machine = rec.machine
        self.steps: list["Step"] = list(rec.steps)
        self.n = len(self.steps)
        self.base = rec.dropped_steps if rec.max_steps else 0
        self._drivers = _guest_queues(self.machine) if self.machine is not None else {}

    # -- which steps change the state --------------------------------------------------
    def change_points(self) -> set[int] | None:
        """Indices of the steps whose state differs from the previous step's, or None
        when the recorder does not say (then every step is rebuilt)."""
        journal = getattr(self.rec, "journal", None)
        if journal is None:
            return None
        return {entry[0] for entry in journal}

    def frames_at(self, k: int) -> list["Step"]:
        """The live frames at the ``k``-th kept step, outermost first (``rec.frames_at``)."""
        steps = self.steps
        base = self.base
        s = steps[k]
        chain: list["Step"] = []
        j = base + k if s.kind == "call" else s.parent
        while j >= base:
            c = steps[j - base]
            chain.append(c)
            j = c.parent
        chain.reverse()
        return chain

    # -- the pass ------------------------------------------------------------------------
    def moments(self) -> Iterator[Moment]:
        """A :class:`Moment` for every step, in order."""
        rec = self.rec
        changes = self.change_points()
        state: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        version = -1
        prev: Moment | None = None
        for k, step in enumerate(self.steps):
            i = self.base + k
            if k == 0 or changes is None or i in changes:
                state = rec.state(i) if self.machine is not None else {}
                extras = self._extras(i, state) if self.machine is not None else {}
                version += 1
            m = Moment(self, i, k, step, self.frames_at(k), state, extras, version, prev)
            yield m
            prev = m

    def moment(self, k: int) -> Moment:
        """The moment of the ``k``-th kept step, out of order (for static pictures)."""
        rec = self.rec
        prev = None
        if k > 0:
            i0 = self.base + k - 1
            st0 = rec.state(i0) if self.machine is not None else {}
            ex0 = self._extras(i0, st0) if self.machine is not None else {}
            prev = Moment(self, i0, k - 1, self.steps[k - 1], [], st0, ex0, 0, None)
        i = self.base + k
        st = rec.state(i) if self.machine is not None else {}
        ex = self._extras(i, st) if self.machine is not None else {}
        return Moment(self, i, k, self.steps[k], self.frames_at(k), st, ex, 1, prev)

    def _extras(self, i: int, state: dict[str, Any]) -> dict[str, Any]:
        """What the views show beyond ``rec.state(i)``: driver indices, buffer bytes."""
        r = self.rec.reader(i)
        drivers: dict[tuple[str, int], dict[str, Any]] = {}
        for key, gvq in self._drivers.items():
            drivers[key] = {"last_used_idx": r.get(gvq, "last_used_idx", 0),
                            "avail_idx_shadow": r.get(gvq, "avail_idx_shadow", 0),
                            "num_free": r.get(gvq, "num_free", 0),
                            "name": getattr(gvq, "name", "")}
        buffers: dict[tuple[str, int], dict[str, Any]] = {}
        for dev, ds in state.get("devices", {}).items():
            for qi, q in enumerate(ds.get("queues", ())):
                b = _buffer_of_interest(q)
                if b is not None:
                    _read_chain(r, q["descriptors"], b)
                    buffers[(dev, qi)] = b
        return {"drivers": drivers, "buffers": buffers}


def _guest_queues(machine: Any) -> dict[tuple[str, int], Any]:
    """The guest driver's VringVirtqueue for each (device id, queue index), matched by the
    address of the descriptor table both sides use."""
    guest = getattr(machine, "guest", None)
    if guest is None:
        return {}
    by_desc: dict[int, Any] = {}
    for nic in getattr(guest, "nics", ()):
        for obj in _attrs_and_one_below(nic):
            if hasattr(obj, "last_used_idx") and hasattr(obj, "desc"):
                by_desc[obj.desc] = obj
    out: dict[tuple[str, int], Any] = {}
    for dev_id, dev in machine.devices.items():
        vdev = getattr(dev, "vdev", None)
        for qi, vq in enumerate(getattr(vdev, "vq", ()) or ()):
            gvq = by_desc.get(getattr(vq, "desc", None))
            if gvq is not None:
                out[(dev_id, qi)] = gvq
    return out


def _attrs_and_one_below(obj: Any) -> Iterator[Any]:
    for v in list(vars(obj).values()):
        yield v
        if isinstance(v, (list, tuple)):
            yield from v
        elif hasattr(v, "__dict__") and not isinstance(v, type):
            for w in list(vars(v).values()):
                if isinstance(w, (list, tuple)):
                    yield from w
                else:
                    yield w


def in_flight_heads(q: dict[str, Any]) -> list[int]:
    """Heads of the chains the device popped and has not yet made used (oldest first).

    virtio-net completes in order, so they are the last ``inuse`` heads it took from the
    avail ring."""
    num = q.get("num") or 0
    ring = q.get("avail_ring")
    inuse = q.get("inuse") or 0
    if not num or not ring or inuse <= 0:
        return []
    last = q.get("last_avail_idx", 0)
    return [ring[(last - inuse + j) % num] for j in range(inuse)]


def chain_of(q: dict[str, Any], head: int, limit: int = 64) -> list[int]:
    """Descriptor indices of the chain starting at ``head`` (following NEXT)."""
    descs = q.get("descriptors") or ()
    out: list[int] = []
    d = head
    while 0 <= d < len(descs) and d not in out and len(out) < limit:
        out.append(d)
        if not descs[d]["flags"] & 1:
            break
        d = descs[d]["next"]
    return out


def _read_chain(r: Any, descs: list[dict[str, int]], b: dict[str, Any]) -> None:
    """Walk the chain at ``b["head"]`` as the device does (virtqueue_split_pop): through
    its NEXT links, or through the INDIRECT table it points to (big-packets RX buffers).
    Sets ``chain`` (the (addr, len, flags) of each buffer, or none when the head is a
    single buffer or the chain is malformed), the total ``len``, who writes, and ``bytes``:
    the first bytes of the buffers, in order, as the device sees them (header, frame)."""
    head = descs[b["head"]]
    src, i = descs, b["head"]
    if head["flags"] & VRING_DESC_F_INDIRECT:
        n = head["len"] // 16
        raw = r.ram(head["addr"], 16 * n) if 0 < n <= len(descs) * 4 else b""
        src = [dict(zip(("addr", "len", "flags", "next"), VRING_DESC.unpack_from(raw, 16 * k)))
               for k in range(len(raw) // 16)]
        i = 0
    chain: list[tuple[int, int, int]] = []
    while 0 <= i < len(src) and len(chain) < len(src):
        d = src[i]
        chain.append((d["addr"], d["len"], d["flags"]))
        if not d["flags"] & VRING_DESC_F_NEXT:
            break
        i = d["next"]
    else:
        chain = []                              # a loop or a link out of the table
    if len(chain) > 1 or (src is not descs and chain):
        b["chain"] = tuple(chain)
        b["indirect"] = src is not descs
        b["len"] = sum(ln for _a, ln, _f in chain)
        b["device_writes"] = any(f & VRING_DESC_F_WRITE for _a, _l, f in chain)
    else:
        chain = [(b["addr"], b["len"], 0)]
    want = b["written"] if b["written"] is not None and b["device_writes"] else b["len"]
    left = max(0, min(want, b["len"], BUFFER_PEEK))
    data = bytearray()
    for addr, ln, _f in chain:
        if left <= 0:
            break
        data += r.ram(addr, min(ln, left))
        left -= min(ln, left)
    b["bytes"] = bytes(data)


def _buffer_of_interest(q: dict[str, Any]) -> dict[str, Any] | None:
    descs = q.get("descriptors")
    num = q.get("num") or 0
    if not descs or not num:
        return None
    heads = in_flight_heads(q)
    last_avail = q.get("last_avail_idx", 0)
    nxt = q["avail_ring"][last_avail % num] if q.get("avail_idx", 0) != last_avail else None
    if heads:
        head, status, written = heads[-1], "in flight", None
    elif nxt is not None and 0 <= nxt < len(descs) and not descs[nxt]["flags"] & 2:
        head, status, written = nxt, "published by the driver, not yet taken", None
    else:
        used = q.get("used_idx", 0)
        if not used:
            return None
        e = q["used_ring"][(used - 1) % num]
        head, status, written = e["id"], "completed", e["len"]
    if not 0 <= head < len(descs):
        return None
    d = descs[head]
    return {"head": head, "addr": d["addr"], "len": d["len"], "status": status,
            "written": written, "device_writes": bool(d["flags"] & 2)}
