"""The event loop: fd handlers, bottom halves, timers, the vCPU (util/main-loop.c, util/async.c).

QEMU's main loop polls file descriptors, runs the handlers of the ready ones, runs the
scheduled bottom halves and the expired timers, and its vCPU threads run the guest beside
it.  Here one thread does it all, one *event* at a time, so that a recording is a single
deterministic sequence: the same inputs give the same steps.  :meth:`MainLoop.step` picks
the next event in a fixed order: a scheduled bottom half, the vCPU if it has work, the
next ready fd handler (round robin), then the earliest expired timer.  When nothing is
ready the virtual clock jumps to the next timer; with real file descriptors registered and
a wall-clock timeout, it waits on them with ``selectors``.

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

#: virtual nanoseconds each kind of event costs
COST_NS = {"fd": 2_000, "bh": 1_000, "timer": 500, "vcpu": 3_000}


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
        """Run exactly one event; False when nothing is pending (no timer left either)."""
        if self.bhs:
            bh = self.bhs.popleft()
            bh.scheduled = False
            self._run("main-loop", COST_NS["bh"], bh.cb, bh.opaque)
            return True
        vcpu = self.vcpu
        if vcpu is not None and vcpu.has_work():
            CONTEXT.name = "vcpu0"
            self.clock_ns += COST_NS["vcpu"]
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
            self._run("main-loop", COST_NS["fd"], cb, h.opaque)
            return True
        t = self._next_timer()
        if t is not None and (wait or t.expire_time <= self.clock_ns):
            heapq.heappop(self.timers)
            if t.expire_time > self.clock_ns:
                self.clock_ns = t.expire_time
            t.expire_time = -1
            self._run(t.context, COST_NS["timer"], t.cb, t.opaque)
            return True
        return False

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

        Returns the number of events run.  ``timeout`` is in wall-clock seconds.
        """
        n = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while n < max_events:
            if until is not None and until():
                break
            if self.step(wait=deadline is None or not self.real_fds):
                n += 1
                continue
            if deadline is None or not self.real_fds:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            t = self._next_timer()
            # wait for a real fd, but not past the next virtual timer (we do not sleep on
            # virtual time: it jumps), nor past the wall-clock deadline
            ready = self._poll_real(left if t is None else 0.001)
            if ready:
                if self.step(_real=ready):
                    n += 1
            elif t is not None:
                if self.step():
                    n += 1
        return n
