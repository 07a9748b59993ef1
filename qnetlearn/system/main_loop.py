"""The event loop: fd handlers, bottom halves, timers, the vCPU (util/main-loop.c, util/async.c).

QEMU's main loop polls file descriptors, runs the handlers of the ready ones, runs the
scheduled bottom halves and the expired timers, and its vCPU threads run the guest beside
it.  Here one thread does it all, one *event* at a time, so that a recording is a single
deterministic sequence: the same inputs give the same steps.  :meth:`MainLoop.step` picks
the next event in a fixed order: a scheduled bottom half, the vCPU if it has work, the
next ready fd handler (round robin), then the earliest expired timer.  When nothing is
ready the virtual clock jumps to the next timer; with real file descriptors registered and
a wall-clock timeout, it waits on them with ``selectors`` and the virtual clock follows the
wall clock while it waits (see :meth:`MainLoop.run`).

Virtual time (``QEMU_CLOCK_VIRTUAL``, ns) advances by a fixed cost per event (the costs
below), and jumps to timers; it is the clock of recordings, pcap files and ping times.
"""
from __future__ import annotations

import heapq
import selectors
import time
from collections import deque
from typing import Any, Callable, Protocol

from ..trace import CONTEXT

#: virtual nanoseconds each kind of event costs.  A vCPU slice (an interrupt handler, a
#: NAPI poll) is slow under TCG, which translates and emulates the guest's code; the
#: recordings of real QEMU show about 0.1-0.3 ms per slice.  Under KVM the guest runs at
#: native speed (a few microseconds).  ``Machine`` picks the vCPU cost by accelerator.
COST_NS = {"fd": 2_000, "bh": 1_000, "timer": 500, "vcpu": 100_000}
VCPU_COST_NS = {"tcg": 100_000, "kvm": 3_000}


class SimFd(Protocol):
    """A simulated file descriptor: the main loop polls it like a real one."""

    def readable(self) -> bool: ...
    def writable(self) -> bool: ...


class EventNotifier:
    """QEMU's EventNotifier: an eventfd.  ``set`` makes it readable; reading clears it."""

    def __init__(self, name: str = "eventfd") -> None:
        self.name = name
        self.count = 0
        self.signals = 0

    def set(self) -> None:
        self.count += 1
        self.signals += 1

    def test_and_clear(self) -> bool:
        fired = self.count > 0
        self.count = 0
        return fired

    def readable(self) -> bool:
        return self.count > 0

    def writable(self) -> bool:
        return True


class QEMUBH:
    """A bottom half: a callback the main loop runs soon, once per schedule."""

    __slots__ = ("cb", "opaque", "name", "scheduled", "loop")

    def __init__(self, loop: "MainLoop", cb: Callable[[Any], None], opaque: Any, name: str) -> None:
        self.loop = loop
        self.cb = cb
        self.opaque = opaque
        self.name = name
        self.scheduled = False


class QEMUTimer:
    """A timer on the virtual clock; ``context`` says whether the vCPU or the main loop runs it."""

    __slots__ = ("cb", "opaque", "expire_time", "context", "name", "seq")

    def __init__(self, cb: Callable[[Any], None], opaque: Any, context: str, name: str) -> None:
        self.cb = cb
        self.opaque = opaque
        self.context = context
        self.name = name
        self.expire_time = -1
        self.seq = 0


class FdHandler:
    __slots__ = ("fd", "read", "write", "opaque")

    def __init__(self, fd: Any, read: Callable | None, write: Callable | None, opaque: Any) -> None:
        self.fd = fd
        self.read = read
        self.write = write
        self.opaque = opaque


class VCPU(Protocol):
    def has_work(self) -> bool: ...
    def run(self) -> None: ...


class MainLoop:
    """One machine's event loop and virtual clock."""

    def __init__(self) -> None:
        self.clock_ns = 0
        self.bhs: deque[QEMUBH] = deque()
        self.timers: list[tuple[int, int, QEMUTimer]] = []
        self._timer_seq = 0
        self.handlers: list[FdHandler] = []
        self._rr = 0
        self.vcpu: VCPU | None = None
        self.selector = selectors.DefaultSelector()
        self.real_fds: dict[int, FdHandler] = {}
        self.events_run = 0
        self.cost_ns = dict(COST_NS)
        self._vcpu_prepaid = False

    # -- bottom halves ---------------------------------------------------------------
    def qemu_bh_new(self, cb: Callable[[Any], None], opaque: Any, name: str = "bh") -> QEMUBH:
        return QEMUBH(self, cb, opaque, name)

    def qemu_bh_schedule(self, bh: QEMUBH) -> None:
        """Schedule ``bh``; scheduling it again before it runs changes nothing."""
        if not bh.scheduled:
            bh.scheduled = True
            self.bhs.append(bh)

    def qemu_bh_cancel(self, bh: QEMUBH) -> None:
        if bh.scheduled:
            bh.scheduled = False
            self.bhs.remove(bh)

    # -- timers ------------------------------------------------------------------------
    def timer_new_ns(self, cb: Callable[[Any], None], opaque: Any, context: str = "main-loop",
                     name: str = "timer") -> QEMUTimer:
        return QEMUTimer(cb, opaque, context, name)

    def timer_mod(self, t: QEMUTimer, expire_time: int) -> None:
        """Arm ``t`` to fire at ``expire_time`` (virtual ns), replacing any earlier arming."""
        self._timer_seq += 1
        t.expire_time = expire_time
        t.seq = self._timer_seq
        heapq.heappush(self.timers, (expire_time, t.seq, t))

    def timer_del(self, t: QEMUTimer) -> None:
        t.expire_time = -1   # stale heap entries are skipped

    @staticmethod
    def timer_pending(t: QEMUTimer) -> bool:
        return t.expire_time >= 0

    def _next_timer(self) -> QEMUTimer | None:
        timers = self.timers
        while timers:
            exp, seq, t = timers[0]
            if t.expire_time == exp and t.seq == seq:
                return t
            heapq.heappop(timers)
        return None

    # -- fd handlers -------------------------------------------------------------------
    def qemu_set_fd_handler(self, fd: Any, read: Callable | None, write: Callable | None,
                            opaque: Any) -> None:
        """Watch ``fd`` (an int or a simulated fd); NULL (None) callbacks stop a direction."""
        for h in self.handlers:
            if h.fd is fd or (isinstance(fd, int) and h.fd == fd):
                self.handlers.remove(h)
                break
        if isinstance(fd, int) and fd in self.real_fds:
            self.selector.unregister(fd)
            del self.real_fds[fd]
        if read is None and write is None:
            return
        h = FdHandler(fd, read, write, opaque)
        self.handlers.append(h)
        if isinstance(fd, int):
            mask = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
            self.selector.register(fd, mask, h)
            self.real_fds[fd] = h

    def _ready_handler(self, real_ready: dict[int, int]) -> tuple[FdHandler, bool] | None:
        hs = self.handlers
        n = len(hs)
        for k in range(n):
            h = hs[(self._rr + k) % n]
            fd = h.fd
            if isinstance(fd, int):
                ev = real_ready.get(fd, 0)
                r = bool(ev & selectors.EVENT_READ)
                w = bool(ev & selectors.EVENT_WRITE)
            else:
                r = h.read is not None and fd.readable()
                w = h.write is not None and fd.writable()
            if (r and h.read) or (w and h.write):
                self._rr = (self._rr + k + 1) % n
                return h, bool(r and h.read)
        return None

    def _poll_real(self, timeout: float | None) -> dict[int, int]:
        if not self.real_fds:
            return {}
        return {key.fd: ev for key, ev in self.selector.select(timeout)}

    # -- running -----------------------------------------------------------------------
    def step(self, _real: dict[int, int] | None = None, wait: bool = True) -> bool:
        """Run exactly one event; False when nothing is pending (no timer left either).

        Order: a bottom half; a timer whose time has come (it would have fired while the
        vCPU ran); a vCPU slice; a ready fd; else (``wait``) jump to the next timer.
        """
        cost = self.cost_ns
        if self.bhs:
            bh = self.bhs.popleft()
            bh.scheduled = False
            self._run("main-loop", cost["bh"], bh.cb, bh.opaque)
            return True
        timers = self.timers
        t = self._next_timer() if timers and timers[0][0] <= self.clock_ns else None
        if t is not None and t.expire_time <= self.clock_ns:
            self._fire(t)
            return True
        vcpu = self.vcpu
        if vcpu is not None and vcpu.has_work():
            if not self._vcpu_prepaid:
                # the slice takes time: a timer that expires meanwhile fires first, as it
                # would in QEMU's main-loop thread while the vCPU thread runs the guest
                self.clock_ns += cost["vcpu"]
                self._vcpu_prepaid = True
                t = self._next_timer()
                if t is not None and t.expire_time <= self.clock_ns:
                    self._fire(t)
                    return True
            self._vcpu_prepaid = False
            CONTEXT.name = "vcpu0"
            self.events_run += 1
            try:
                vcpu.run()
            finally:
                CONTEXT.name = "main-loop"
            return True
        ready = self._ready_handler(self._poll_real(0) if _real is None else _real)
        if ready is not None:
            h, is_read = ready
            cb = h.read if is_read else h.write
            self._run("main-loop", cost["fd"], cb, h.opaque)
            return True
        if wait and timers:
            t = self._next_timer()
        if t is not None and wait:
            self.clock_ns = t.expire_time
            self._fire(t)
            return True
        return False

    def _fire(self, t: QEMUTimer) -> None:
        heapq.heappop(self.timers)
        t.expire_time = -1
        self._run(t.context, self.cost_ns["timer"], t.cb, t.opaque)

    def _run(self, context: str, cost: int, cb: Callable[[Any], None], opaque: Any) -> None:
        CONTEXT.name = context
        self.clock_ns += cost
        self.events_run += 1
        try:
            cb(opaque)
        finally:
            CONTEXT.name = "main-loop"

    def run(self, timeout: float | None = None, max_events: int = 10_000_000,
            until: Callable[[], bool] | None = None) -> int:
        """Run until idle (or ``until()`` holds); with ``timeout`` also wait on real fds.

        Returns the number of events run.  ``timeout`` is in wall-clock seconds.  Without
        real fds (or without ``timeout``) the virtual clock jumps to the next timer when
        nothing else is ready.  With real fds and a ``timeout`` the machine runs in real
        time: while idle it sleeps in ``select`` until a real fd is ready or the next timer
        is due, and the virtual clock advances by the wall time slept, so a timer never
        fires before its time has passed on the wall clock (a guest's timeout does not
        expire while a real host is still answering).
        """
        n = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while n < max_events:
            if until is not None and until():
                break
            realtime = deadline is not None and bool(self.real_fds)
            if self.step(wait=not realtime):
                n += 1
                continue
            if not realtime:
                break
            start = time.monotonic()
            left = deadline - start   # type: ignore[operator]
            if left <= 0:
                break
            t = self._next_timer()
            if t is not None:
                left = min(left, max(0.0, (t.expire_time - self.clock_ns) / 1e9))
            ready = self._poll_real(left)
            self.clock_ns += int((time.monotonic() - start) * 1e9)
            if ready and self.step(_real=ready, wait=False):
                n += 1
        return n
