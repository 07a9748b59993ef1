"""Exercise slots: a student's function in place of the emulator's own (``qn.plug``).

A *slot* is one of the emulator's call tracepoints, named after the QEMU (or Linux)
function it is: ``vring_need_event``, ``virtqueue_pop``, ``net_hub_receive``...
``with qn.plug(vring_need_event=mine):`` swaps the function's code (the tracepoint
machinery of ``qnetlearn/trace/tracepoint.py``), so every caller, whatever name it holds
the function by, runs ``mine`` for the duration of the block, and a recording made
meanwhile shows ``mine`` running under the slot's name.

The student's function runs *guarded*:

* an exception, a return value of the wrong type, a call that runs longer than the time
  limit (``timeout`` seconds per call, checked by a trace hook on the student's own code
  only), or more than ``max_output`` characters printed is a :class:`StudentError` whose
  message names the slot and the cause in plain words;
* the emulator is never the one that crashes.  **Policy**: the failed call is completed by
  the emulator's own function (the reference), and the slot is *tripped*: every later call
  in the block runs the reference too.  So a device sees a well-formed answer, the run
  finishes, and the error is kept in :attr:`Plug.errors`.  If even the reference cannot
  finish the call (the student's code left the state unusable), the slot's *failsafe* ends
  the call the way the emulator ends a guest's bad input: ``virtio_error`` for the virtio
  slots, a counted drop for the net layer and e1000, a spurious interrupt for the notify
  decisions.  At the end of the block the first error is raised (``on_error="raise"``, the
  default) or only kept (``on_error="record"``, what the graders use).
"""
from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass, field
from types import CodeType, FrameType, FunctionType
from typing import Any, Callable

from ..trace.tracepoint import Tracepoint

#: how long one call of a student's function may run, in seconds (wall clock)
DEFAULT_TIMEOUT = 1.0
#: characters a student's function may print during one plug before it is an error
DEFAULT_MAX_OUTPUT = 1_000_000
#: characters of that output passed through to the real stdout (the rest is counted)
SHOWN_OUTPUT = 10_000

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StudentError(Exception):
    """The student's function failed in its slot; the message says how, in plain words."""

    def __init__(self, slot: str, cause: str, call: int = 0, args: str = "",
                 detail: str = "", kind: str = "error") -> None:
        self.slot = slot
        self.cause = cause      # one line: "raised ZeroDivisionError: division by zero"
        self.call = call        # which call of the slot (1 = the first)
        self.args_text = args   # the arguments of that call, shortened
        self.detail = detail    # the student's part of the traceback, if any
        self.kind = kind        # "exception", "timeout", "return", "output", "reference"
        where = f" (call {call}: {slot}({args}))" if call else ""
        super().__init__(f"your {slot} {cause}{where}")

    def __reduce__(self) -> Any:
        return (StudentError, (self.slot, self.cause, self.call, self.args_text, self.detail,
                               self.kind))


class _Stop(BaseException):
    """Raised inside the student's code to stop it (time limit, output limit...)."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


# -- slots ---------------------------------------------------------------------------------

@dataclass
class Slot:
    """One function students may replace."""

    name: str
    module: str                                   # where the emulator's function lives
    attr: str                                     # its name there ("VirtNet.try_fill_recv")
    returns: str                                  # what it must return, in words
    check_return: Callable[[Any], Any]            # returns the value to use, or raises TypeError
    failsafe: Callable[..., Any]                  # ends a call when even the reference cannot
    lesson: str = ""                              # the lesson that teaches it
    #: other tracepoints to plug while this slot is plugged: attr -> shim(student_fn) -> fn
    companions: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = \
        field(default_factory=dict)

    @property
    def function(self) -> FunctionType:
        return _resolve(self.module, self.attr)

    @property
    def tracepoint(self) -> Tracepoint:
        return _tracepoint_of(self.function)


def _resolve(module: str, attr: str) -> Any:
    import importlib
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _tracepoint_of(func: Any) -> Tracepoint:
    from ..trace.tracepoint import REGISTRY
    for tp in REGISTRY:
        if tp.func is func:
            return tp
    raise LookupError(f"{getattr(func, '__qualname__', func)} is not a call tracepoint")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise TypeError


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError
    return v


def _none(v: Any) -> None:
    if v is not None:
        raise TypeError


def _element_or_none(v: Any) -> Any:
    from ..hw.virtio.virtio import VirtQueueElement
    if v is None or isinstance(v, VirtQueueElement):
        return v
    raise TypeError


# failsafes: how a call ends when neither the student's code nor the reference can end it
def _fs_virtio_pop(vq: Any, *_a: Any, **_k: Any) -> None:
    from ..hw.virtio.virtio import virtio_error
    virtio_error(vq.vdev, "the exercise's virtqueue_pop failed")
    return None


def _fs_virtio_fill(vq: Any, *_a: Any, **_k: Any) -> None:
    from ..hw.virtio.virtio import virtio_error
    virtio_error(vq.vdev, "the exercise's virtqueue_fill failed")


def _fs_true(*_a: Any, **_k: Any) -> bool:
    return True                      # a spurious interrupt is harmless; a lost one is not


def _fs_none(*_a: Any, **_k: Any) -> None:
    return None


def _fs_hub(hub: Any, source_port: Any, buf: bytes, len: int) -> int:  # noqa: A002
    source_port.nc.count_drop(len, "exercise function failed")
    return len


def _fs_queue_send(queue: Any, sender: Any, flags: int, data: bytes, size: int,
                   sent_cb: Any) -> int:
    sender.count_drop(size, "exercise function failed")
    return size


def _fs_e1000(nc: Any, buf: bytes, *_a: Any) -> int:
    nc.opaque.stats["drop: exercise function failed"] += 1
    return -1


def _fs_refill(vi: Any) -> bool:
    return False                     # "out of memory": the driver retries later


def _e1000_iov_shim(student: Callable[..., Any]) -> Callable[..., Any]:
    """The net layer calls ``receive_iov``: flatten and go through the plugged
    ``e1000_receive``, so the recording shows the student's function under its name."""
    def e1000_receive_iov(nc: Any, iov: list[bytes]) -> int:
        from ..hw.net.e1000 import e1000_receive
        return e1000_receive(nc, iov[0] if len(iov) == 1 else b"".join(iov))
    return e1000_receive_iov


_SLOTS: dict[str, Slot] = {}


def all_slots() -> dict[str, Slot]:
    """Every slot, by name."""
    if not _SLOTS:
        v = "qnetlearn.hw.virtio.virtio"
        for s in (
            Slot("vring_need_event", v, "vring_need_event", "True or False", _bool, _fs_true,
                 "06-notifications"),
            Slot("virtqueue_pop", v, "virtqueue_pop", "a VirtQueueElement or None",
                 _element_or_none, _fs_virtio_pop, "04-virtio-rings"),
            Slot("virtqueue_fill", v, "virtqueue_fill", "None", _none, _fs_virtio_fill,
                 "05-receive-path"),
            Slot("virtio_should_notify", v, "virtio_should_notify", "True or False", _bool,
                 _fs_true, "06-notifications"),
            Slot("net_hub_receive", "qnetlearn.net.hub", "net_hub_receive",
                 "the number of bytes consumed (an int)", _int, _fs_hub, "08-hubs-and-e1000"),
            Slot("qemu_net_queue_send", "qnetlearn.net.queue", "qemu_net_queue_send",
                 "an int (the size delivered, or 0 when the packet was queued)", _int,
                 _fs_queue_send, "03-net-queues"),
            Slot("msix_notify", "qnetlearn.hw.pci.msix", "msix_notify", "None", _none,
                 _fs_none, "06-notifications"),
            Slot("e1000_receive", "qnetlearn.hw.net.e1000", "e1000_receive",
                 "an int (bytes consumed, 0 to queue, -1 dropped)", _int, _fs_e1000,
                 "08-hubs-and-e1000", companions={"e1000_receive_iov": _e1000_iov_shim}),
            Slot("try_fill_recv", "qnetlearn.guest.virtio_net", "VirtNet.try_fill_recv",
                 "True or False", _bool, _fs_refill, "05-receive-path"),
        ):
            _SLOTS[s.name] = s
    return _SLOTS


def get_slot(name: str) -> Slot:
    try:
        return all_slots()[name]
    except KeyError:
        raise KeyError(f"no exercise slot named {name!r}; slots: "
                       f"{', '.join(sorted(all_slots()))}") from None


# -- the guard -----------------------------------------------------------------------------

def _short(value: Any, n: int = 60) -> str:
    try:
        text = repr(value)
    except BaseException:                      # a student's object with a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[:n - 3] + "..."


def _text(e: BaseException, n: int = 200) -> str:
    try:
        text = str(e)
    except BaseException:
        text = ""
    return text if len(text) <= n else text[:n - 3] + "..."


def _args_text(args: tuple, kwargs: dict) -> str:
    parts = [_short(a, 40) for a in args] + [f"{k}={_short(v, 40)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _is_emulator(code: CodeType, cache: dict[CodeType, bool] = {}) -> bool:  # noqa: B006
    r = cache.get(code)
    if r is None:
        r = cache[code] = code.co_filename.startswith(_PKG_DIR)
    return r


class _CappedOutput(io.TextIOBase):
    """sys.stdout/stderr while student code runs: passes a little on, counts the rest."""

    def __init__(self, guard: "_Guard", real: Any) -> None:
        self.guard = guard
        self.real = real

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        g = self.guard
        text = str(s)
        g.printed += len(text)
        if g.printed > g.max_output:
            raise _Stop("output", f"printed more than {g.max_output:,} characters")
        room = SHOWN_OUTPUT - g.shown
        if room > 0:
            part = text[:room]
            g.shown += len(part)
            try:
                self.real.write(part)
                if len(part) < len(text):
                    self.real.write(f"\n[qnetlearn: output of {g.slot_names} cut here]\n")
            except Exception:
                pass
        return len(text)

    def flush(self) -> None:
        try:
            self.real.flush()
        except Exception:
            pass


class _Guard:
    """Time and output limits around the student's code, shared by the slots of a plug."""

    def __init__(self, timeout: float, max_output: int, forbidden: set[CodeType],
                 slot_names: str) -> None:
        self.timeout = timeout
        self.max_output = max_output
        self.forbidden = forbidden        # the reference functions' code: not to be called
        self.slot_names = slot_names
        self.depth = 0
        self.in_reference = 0             # > 0 while a guard runs the reference on purpose
        self.deadline = 0.0
        self.printed = 0
        self.shown = 0
        self.ticks = 0
        self._saved: tuple[Any, Any, Any] | None = None

    # the trace hook: only the student's frames get a line tracer
    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code in self.forbidden and not self.in_reference:
            raise _Stop("reference", "called the emulator's own "
                        f"{code.co_name} (write it yourself)")
        if _is_emulator(code):
            return None
        if time.monotonic() > self.deadline:
            self._time_up()
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.ticks += 1
            if not self.ticks & 63 and time.monotonic() > self.deadline:
                self._time_up()
        return self._local

    def _time_up(self) -> None:
        if ALARM[0]:
            # An exception from a trace function unsets the trace, which calls the audit
            # hooks with that exception pending: with the worker's hook it would be lost.
            # Let the alarm raise it, from a signal handler, right now.
            import signal
            signal.setitimer(signal.ITIMER_REAL, 1e-4, 0.05)
            return
        raise _Stop("timeout", f"ran longer than the time limit of {self.timeout:g} s "
                    "(an endless loop?)")

    def _alarm(self, signum: int, frame: Any) -> None:
        if self.depth and not self.in_reference:
            raise _Stop("timeout", f"ran longer than the time limit of {self.timeout:g} s "
                        "(an endless loop, or a call that does not return?)")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        self.deadline = time.monotonic() + self.timeout
        if ALARM[0]:
            import signal
            self._old_alarm = signal.signal(signal.SIGALRM, self._alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout + 0.25, 0.05)
        self._saved = (sys.gettrace(), sys.stdout, sys.stderr)
        sys.stdout = _CappedOutput(self, sys.stdout)  # type: ignore[assignment]
        sys.stderr = _CappedOutput(self, sys.stderr)  # type: ignore[assignment]
        sys.settrace(self._global)
        _STUDENT_DEPTH[0] += 1                # after settrace: a worker's audit hook checks it

    def leave(self) -> None:
        self.depth -= 1
        if self.depth:
            return
        old_trace, out, err = self._saved  # type: ignore[misc]
        _STUDENT_DEPTH[0] = max(0, _STUDENT_DEPTH[0] - 1)   # first: the audit hook reads it
        sys.stdout, sys.stderr = out, err
        sys.settrace(old_trace)
        if ALARM[0]:
            import signal
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_alarm)


#: > 0 while a student's function runs (the grading worker's audit hook reads it)
_STUDENT_DEPTH = [0]
#: also stop a student's call with SIGALRM (a call stuck in C, a loop that swallows the
#: trace hook's stop); only the grading worker turns it on: it owns its main thread
ALARM = [False]


def _student_traceback(exc: BaseException) -> str:
    """The frames of the traceback that are the student's code (not the emulator's)."""
    import traceback
    tb = exc.__traceback__
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith(_PKG_DIR)]
    lines = traceback.format_list(frames[-5:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)[-2000:]


class Plug:
    """``with qn.plug(slot=fn, ...)``: see the module docstring."""

    def __init__(self, functions: dict[str, Callable[..., Any]], timeout: float = DEFAULT_TIMEOUT,
                 max_output: int = DEFAULT_MAX_OUTPUT, on_error: str = "raise") -> None:
        if on_error not in ("raise", "record"):
            raise ValueError("on_error must be 'raise' or 'record'")
        for name, fn in functions.items():
            get_slot(name)
            if not callable(fn):
                raise TypeError(f"qn.plug({name}=...) needs a function, not {_short(fn)}")
        self.functions = dict(functions)
        self.timeout = timeout
        self.max_output = max_output
        self.on_error = on_error
        self.errors: list[StudentError] = []
        self.calls: dict[str, int] = {name: 0 for name in functions}
        self.tripped: set[str] = set()
        self._inside: dict[str, int] = {name: 0 for name in functions}
        self._plugged: list[Tracepoint] = []
        self.active = False

    # -- entering and leaving ----------------------------------------------------------
    def __enter__(self) -> "Plug":
        forbidden: set[CodeType] = set()
        targets: list[tuple[Tracepoint, Callable[..., Any]]] = []
        for name, fn in self.functions.items():
            slot = get_slot(name)
            tp = slot.tracepoint
            if tp.plugged:
                raise RuntimeError(f"the slot {name} is already plugged (nested qn.plug?)")
            forbidden.add(tp.code)
            targets.append((tp, self._guarded(slot, tp, fn)))
            for attr, shim in slot.companions.items():
                ctp = _tracepoint_of(_resolve(slot.module, attr))
                forbidden.add(ctp.code)
                targets.append((ctp, self._companion(slot, ctp, shim(fn))))
        self._guard = _Guard(self.timeout, self.max_output, forbidden,
                             ", ".join(self.functions))
        for tp, impl in targets:
            tp.plug(impl)
            self._plugged.append(tp)
        self.active = True
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for tp in self._plugged:
            tp.unplug()
        self._plugged.clear()
        self.active = False
        if exc_type is None and self.errors and self.on_error == "raise":
            first = self.errors[0]
            more = len(self.errors) - 1
            if more and hasattr(first, "add_note"):
                first.add_note(f"({more} more error(s) after this one; see plug.errors)")
            raise first

    # -- one guarded call --------------------------------------------------------------
    def _guarded(self, slot: Slot, tp: Tracepoint, fn: Callable[..., Any]) -> Callable[..., Any]:
        reference = tp.pristine
        plug = self

        def run_reference(*args: Any, **kwargs: Any) -> Any:
            guard = plug._guard
            guard.in_reference += 1
            try:
                return reference(*args, **kwargs)
            finally:
                guard.in_reference -= 1

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if slot.name in plug.tripped:
                return run_reference(*args, **kwargs)
            plug.calls[slot.name] += 1
            n = plug.calls[slot.name]
            guard = plug._guard
            err: StudentError | None = None
            guard.enter()
            plug._inside[slot.name] += 1
            try:
                ret = fn(*args, **kwargs)
            except KeyboardInterrupt:
                raise
            except _Stop as e:
                err = StudentError(slot.name, e.text, n, _args_text(args, kwargs),
                                   kind=e.kind)
            except BaseException as e:  # noqa: BLE001 - the student's code: anything goes
                err = StudentError(slot.name, f"raised {type(e).__name__}: {_text(e)}",
                                   n, _args_text(args, kwargs), _student_traceback(e),
                                   kind="exception")
            finally:
                plug._inside[slot.name] -= 1
                guard.leave()
            if err is None:
                try:
                    return slot.check_return(ret)
                except TypeError:
                    err = StudentError(slot.name, f"returned {_short(ret)}; it must return "
                                       f"{slot.returns}", n, _args_text(args, kwargs),
                                       kind="return")
            plug.errors.append(err)
            plug.tripped.add(slot.name)
            try:
                return run_reference(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - the state the student's code left
                err.detail += (f"\nAfter that, the emulator's own {slot.name} could not "
                               f"finish the call either ({type(e).__name__}: {e}).")
                return slot.failsafe(*args, **kwargs)

        guarded.__name__ = getattr(fn, "__name__", slot.name)
        guarded.__qualname__ = guarded.__name__
        guarded.__wrapped__ = fn  # type: ignore[attr-defined]
        return guarded


    def _companion(self, slot: Slot, ctp: Tracepoint, impl: Callable[..., Any]
                   ) -> Callable[..., Any]:
        """A companion tracepoint (e1000_receive_iov for e1000_receive) leads to the
        student's function, except once the slot is tripped, or when the student's own
        code calls it (then the trace hook reports a call of the emulator's own code)."""
        reference = ctp.pristine
        plug = self

        def companion(*args: Any, **kwargs: Any) -> Any:
            if slot.name in plug.tripped or plug._inside[slot.name]:
                return reference(*args, **kwargs)
            return impl(*args, **kwargs)

        companion.__name__ = companion.__qualname__ = ctp.name
        return companion


def plug(timeout: float = DEFAULT_TIMEOUT, max_output: int = DEFAULT_MAX_OUTPUT,
         on_error: str = "raise", **functions: Callable[..., Any]) -> Plug:
    """``with qn.plug(vring_need_event=mine):`` runs ``mine`` in that slot (API.md)."""
    if not functions:
        raise TypeError(f"qn.plug needs at least one slot=function; slots: "
                        f"{', '.join(sorted(all_slots()))}")
    return Plug(functions, timeout=timeout, max_output=max_output, on_error=on_error)


__all__ = ["plug", "Plug", "StudentError", "Slot", "all_slots", "get_slot", "DEFAULT_TIMEOUT"]
