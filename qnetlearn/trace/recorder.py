"""The recorder behind ``with vm.record() as rec``.

A recording is a list of :class:`Step` (call, return, event), the journal of state changes
made between steps (``trace/state.py``), and the image of the state at its start.  From
those, :meth:`Recorder.state` rebuilds the machine's state at any step, forwards or
backwards, without the recorder ever copying the whole state per step.
"""
from __future__ import annotations

import gc
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import state as _state
from .state import _STEP
from .tracepoint import REGISTRY, Tracepoint

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

#: which thread of QEMU a context runs on, for to_qemu_trace()
THREAD = {"main-loop": "main", "vcpu0": "vcpu0"}


class Context:
    """What is running now: the main loop or the vCPU (set by the event loop)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "main-loop"


CONTEXT = Context()


class Step:
    """One recorded step: a call, a return or a trace event."""

    __slots__ = ("kind", "tp", "depth", "parent", "time_ns", "context", "argv")

    def __init__(self, kind: str, tp: Tracepoint, depth: int, parent: int, time_ns: int,
                 context: str, argv: tuple) -> None:
        self.kind = kind
        self.tp = tp
        self.depth = depth
        self.parent = parent      # index of the call step of the enclosing frame, or -1
        self.time_ns = time_ns
        self.context = context
        self.argv = argv

    @property
    def name(self) -> str:
        return self.tp.name

    @property
    def src(self) -> str:
        return self.tp.src

    @property
    def args(self) -> dict[str, Any]:
        names = self.tp.argnames if self.kind == "event" else self.tp.shown_names
        if self.kind == "return":
            return {"ret": self.argv[0]} if self.argv else {}
        return dict(zip(names, self.argv))

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} depth={self.depth} {self.args}>"


def _step(t: tuple) -> Step:
    """A kept step as a :class:`Step`.  Steps are kept as tuples of plain values (the
    tracepoint by its index in REGISTRY): the garbage collector then stops tracking most
    of them, which keeps a long recording's collections cheap."""
    return Step(t[0], REGISTRY[t[1]], *t[2:])


class StepList(Sequence):
    """``rec.steps``: the recorded steps, kept as tuples and shown as :class:`Step`."""

    def __init__(self, raw: "list[tuple] | deque[tuple]") -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [_step(t) for t in list(self._raw)[i]]
        return _step(self._raw[i])

    def __iter__(self) -> Iterator[Step]:
        for t in self._raw:
            yield _step(t)


_PLAIN = frozenset((type(None), bool, int, float))


def _short(value: Any) -> Any:
    """What a step keeps of a return value: numbers, short text, None."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# What a traced function runs while a recorder is attached: the recorder's two handlers,
# compiled once per tracepoint with its own parameters (Tracepoint.attach_specialised), so
# recording a call costs one frame and no packing of arguments.  Its locals and builtins
# carry a _qn_ prefix, as a traced function's parameters (``len``, ``index``) may shadow them.
_ON_CALL = """\
def {name}({params}):
    (_qn_tp, _qn_R, _qn_rec, _qn_stack, _qn_push, _qn_pop, _qn_loop, _qn_ctx, _qn_step,
     _qn_plain, _qn_short, _qn_len) = _qn_tp_{index}
    _qn_i = _qn_step[0]
    _qn_rec(("call", {index}, _qn_len(_qn_stack), _qn_stack[-1] if _qn_stack else -1,
             _qn_loop.clock_ns, _qn_ctx.name, {shown}))
    _qn_step[0] = _qn_i + 1
    _qn_push(_qn_i)
    try:
        _qn_ret = _qn_tp.orig({call})
    finally:
        _qn_pop()
    _qn_n = _qn_step[0]
    _qn_rec(("return", {index}, _qn_len(_qn_stack), _qn_i, _qn_loop.clock_ns, _qn_ctx.name,
             (_qn_ret if _qn_ret.__class__ in _qn_plain else _qn_short(_qn_ret),)))
    _qn_step[0] = _qn_n + 1
    if _qn_n >= _qn_R._compact_at:
        _qn_R._compact()
    return _qn_ret
"""
_ON_EVENT = """\
def {name}({params}):
    (_qn_tp, _qn_R, _qn_rec, _qn_stack, _qn_push, _qn_pop, _qn_loop, _qn_ctx, _qn_step,
     _qn_plain, _qn_short, _qn_len) = _qn_tp_{index}
    _qn_rec(("event", {index}, _qn_len(_qn_stack), _qn_stack[-1] if _qn_stack else -1,
             _qn_loop.clock_ns, _qn_ctx.name, {argv}))
    _qn_n = _qn_step[0] = _qn_step[0] + 1
    if _qn_n >= _qn_R._compact_at:
        _qn_R._compact()
"""


class Recorder:
    """Records every tracepoint while attached; see API.md, "Recording and replay"."""

    def __init__(self, machine: "Machine | None" = None, max_steps: int | None = None) -> None:
        self.machine = machine
        self.max_steps = max_steps
        self._raw: list[tuple] | deque[tuple] = deque(maxlen=max_steps) if max_steps else []
        self._stopped_at = 0         # steps recorded when last stopped
        self._froze = False          # this recorder froze the collector's objects
        self.journal: list[tuple] = []
        self.images: dict[int, tuple[Any, dict[str, Any]]] = {}
        self.ram_image: dict[int, bytes] = {}
        self.frames: list[tuple[int, str, str, bytes]] = []  # (time_ns, netdev, type, frame)
        self._frame_steps: list[int] = []   # the step count when each frame was sent
        # with max_steps: when to fold the journal entries no kept step needs (_compact)
        self._compact_at = 2 * max_steps if max_steps else 1 << 62
        self._stack: list[int] = []
        self._loop: Any = machine.loop if machine is not None else _NoClock()
        self._cursor: tuple[int, dict, dict] | None = None
        self.active = False

    # -- attaching -------------------------------------------------------------------
    def start(self) -> "Recorder":
        if _ACTIVE[0] is not None:
            raise RuntimeError("another recorder is attached; stop it first")
        _ACTIVE[0] = self
        self.images = _state.start(self.journal)
        if self.machine is not None:
            self.ram_image = self.machine.memory.ram.start_journal(self.journal)
        _STEP[0] = self._stopped_at
        # The steps and the journal grow to millions of entries.  Tuples of plain values
        # leave the collector's view by themselves, but the lists holding them would be
        # walked by every full collection: freeze what exists now (those lists, the
        # machine, the notebook's objects) for the recording, unless someone else froze.
        self._froze = gc.get_freeze_count() == 0
        if self._froze:
            gc.freeze()
        stack = self._stack
        ctx = (self, self._raw.append, stack, stack.append, stack.pop, self._loop, CONTEXT,
               _STEP, _PLAIN, _short, len)
        for tp in REGISTRY:
            tp.attach_specialised(_ON_CALL if tp.kind == "call" else _ON_EVENT, ctx)
        self.active = True
        return self

    def stop(self) -> None:
        if not self.active:
            return
        for tp in REGISTRY:
            tp.detach()
        _state.stop()
        if self.machine is not None:
            self.machine.memory.ram.stop_journal()
        self._stopped_at = _STEP[0]
        if self._froze:
            gc.unfreeze()
        self.active = False
        _ACTIVE[0] = None

    def __enter__(self) -> "Recorder":
        return self.start() if not self.active else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def _n(self) -> int:
        """Steps recorded, the dropped ones included: while attached, the step counter
        the wrappers advance (``state._STEP``, which stamps the journal too)."""
        return _STEP[0] if self.active else self._stopped_at

    @property
    def steps(self) -> StepList:
        return StepList(self._raw)

    @property
    def dropped_steps(self) -> int:
        """Steps that ``max_steps`` dropped from the front."""
        return self._n - len(self._raw)

    def add_frame(self, netdev: str, kind: str, frame: bytes) -> None:
        """A frame a net client sent (for to_pcap); called by the net layer while recording."""
        self.frames.append((self._loop.clock_ns, netdev, kind, bytes(frame)))
        self._frame_steps.append(self._n)

    def _compact(self) -> None:
        """``max_steps``: keep memory bounded.  Journal entries that every kept step has
        already seen are folded into the start image (objects and RAM pages) and dropped;
        so are the frames sent before the oldest kept step.  Runs once per ``max_steps``
        steps, so each entry is folded once."""
        self._compact_at = self._n + self.max_steps  # type: ignore[operator]
        base = self._n - len(self._raw)              # the oldest step one can still ask for
        journal = self.journal
        n = len(journal)
        k = 0
        images = self.images
        pages = self.ram_image
        while k < n and journal[k][0] <= base:        # state(i) applies entries with step <= i
            _step, oid, key, value = journal[k]
            if oid is None:                           # a RAM write at address key
                write_pages(pages, key, value)
            else:
                images[oid][1][key] = value
            k += 1
        if k:
            del journal[:k]                           # in place: the journal is shared
            self._cursor = None
        steps = self._frame_steps
        j = 0
        while j < len(steps) and steps[j] <= base:
            j += 1
        if j:
            del self.frames[:j]
            del steps[:j]

    # -- reading a recording ------------------------------------------------------------
    def _local(self, i: int) -> int:
        return i - self.dropped_steps if self.max_steps else i

    def step(self, i: int) -> Step:
        return _step(self._raw[self._local(i)])

    def callstack(self, i: int) -> list[str]:
        """Names of the frames live at step ``i``, outermost first."""
        return [s.name for s in self.frames_at(i)]

    def frames_at(self, i: int) -> list[Step]:
        """The call steps of the frames live at step ``i``, outermost first."""
        raw = self._raw
        s = _step(raw[self._local(i)])
        chain: list[Step] = []
        j = i if s.kind == "call" else s.parent
        if s.kind == "return":
            j = s.parent
        while j >= 0 and self._local(j) >= 0:
            c = _step(raw[self._local(j)])
            chain.append(c)
            j = c.parent
        chain.reverse()
        return chain

    def find(self, name: str) -> list[int]:
        """Indices of the steps named ``name`` (calls, returns and events)."""
        base = self.dropped_steps if self.max_steps else 0
        ids = {tp.index for tp in REGISTRY if tp.name == name}
        return [base + k for k, t in enumerate(self._raw) if t[1] in ids]

    def __len__(self) -> int:
        return len(self._raw)

    # -- state at a step --------------------------------------------------------------
    def _replay(self, i: int) -> tuple[dict[int, dict[str, Any]], dict[int, bytearray]]:
        """Object attributes and RAM pages as they were when step ``i`` was recorded."""
        cur = self._cursor
        if cur is not None and cur[0] <= i:
            start, objs, pages = cur
            pos = self._jpos
        else:
            objs = {k: dict(img) for k, (_o, img) in self.images.items()}
            pages = {p: bytearray(b) for p, b in self.ram_image.items()}
            pos = 0
        journal = self.journal
        n = len(journal)
        while pos < n and journal[pos][0] <= i:
            _step, oid, key, value = journal[pos]
            if oid is None:
                write_pages(pages, key, value)          # a RAM write at address key
            else:
                objs.setdefault(oid, {})[key] = value
            pos += 1
        self._cursor = (i, objs, pages)
        self._jpos = pos
        return objs, pages

    def reader(self, i: int) -> "StateReader":
        objs, pages = self._replay(i)
        return StateReader(objs, pages)

    def state(self, i: int) -> dict[str, Any]:
        """Device and ring state at step ``i`` (see API.md)."""
        if self.machine is None:
            return {}
        return self.machine.describe_state(self.reader(i))

    def states(self) -> Iterator[dict[str, Any]]:
        """The state at every step, in order (cheaper than calling state(i) in a loop)."""
        base = self.dropped_steps if self.max_steps else 0
        for k in range(len(self.steps)):
            yield self.state(base + k)

    # -- exports ----------------------------------------------------------------------
    def to_qemu_trace(self) -> str:
        from .qemu_format import format_trace
        return format_trace(self.steps)

    def to_pcap(self, path: str, netdev: str | None = None) -> int:
        """Write the frames sent by every backend and NIC (or by one client) as pcap.

        Hub ports only forward what a backend or NIC sent, so they are left out unless named.
        """
        from ..net.dump import write_pcap
        frames = [(t, f) for t, nd, kind, f in self.frames
                  if (nd == netdev if netdev is not None else kind != "hubport")]
        write_pcap(path, frames)
        return len(frames)


_ACTIVE: list[Recorder | None] = [None]


class _NoClock:
    clock_ns = 0


def active() -> Recorder | None:
    """The attached recorder, if any."""
    return _ACTIVE[0]


def write_pages(pages: dict[int, bytearray], addr: int, data: bytes,
                fresh: Callable[[int], bytes] | None = None) -> None:
    """Write ``data`` at guest address ``addr`` into ``pages``, a sparse RAM image of 4 KiB
    pages by page number; a page not in it yet starts as ``fresh(page number)``, else zeros."""
    off = 0
    n = len(data)
    while off < n:
        page, po = divmod(addr + off, 4096)
        chunk = min(n - off, 4096 - po)
        buf = pages.get(page)
        if buf is None:
            buf = pages[page] = bytearray(4096) if fresh is None else bytearray(fresh(page))
        elif type(buf) is bytes:                     # a start image page (Recorder._compact)
            buf = pages[page] = bytearray(buf)
        buf[po:po + chunk] = data[off:off + chunk]
        off += chunk


def read_pages(pages: dict[int, bytearray], addr: int, n: int,
               missing: Callable[[int, int], bytes] | None = None) -> bytes:
    """``n`` bytes at guest address ``addr`` from a sparse page image (see write_pages); the
    bytes of a page not in it are ``missing(address, length)``, else zeros."""
    out = bytearray()
    off = 0
    while off < n:
        page, po = divmod(addr + off, 4096)
        chunk = min(n - off, 4096 - po)
        buf = pages.get(page)
        if buf is not None:
            out += buf[po:po + chunk]
        else:
            out += bytes(chunk) if missing is None else missing(addr + off, chunk)
        off += chunk
    return bytes(out)


class StateReader:
    """Reads state as it was at one step: ``r.get(obj, "attr")``, ``r.ram(addr, n)``."""

    def __init__(self, objs: dict[int, dict[str, Any]], pages: dict[int, bytearray]) -> None:
        self._objs = objs
        self._pages = pages

    def get(self, obj: Any, name: str, default: Any = None) -> Any:
        d = self._objs.get(id(obj))
        if d is not None and name in d:
            return d[name]
        return default

    def stats(self, st: Any) -> dict[str, int]:
        d = self._objs.get(id(st))
        return {k: v for k, v in (d or {}).items() if v}

    def ram(self, addr: int, n: int) -> bytes:
        return read_pages(self._pages, addr, n)

    def u16(self, addr: int) -> int:
        return int.from_bytes(self.ram(addr, 2), "little")

    def u32(self, addr: int) -> int:
        return int.from_bytes(self.ram(addr, 4), "little")

    def u64(self, addr: int) -> int:
        return int.from_bytes(self.ram(addr, 8), "little")

