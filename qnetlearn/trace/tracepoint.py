"""Tracepoints under QEMU's names, with no cost while nobody records.

QEMU compiles its trace events to a check of one flag (``trace_event_get_state``).  We do
better: a traced function stays the plain function until a recorder attaches.  Attaching
swaps the function's ``__code__`` for a two-line wrapper that reports the call, and
detaching swaps the original code back.  Because the function *object* is unchanged, every
reference to it (module globals, imports elsewhere, ``NetClientInfo.receive`` slots, class
attributes) is traced, and a disabled tracepoint costs exactly a plain call.

Two kinds exist:

* **call tracepoints** (``@tracepoint("net/net.c")``) record a ``call`` step on entry and a
  ``return`` step on exit: they build the call stacks the course shows;
* **trace events** (``@trace_event("vq {vq} elem {elem} len {len} idx {idx}")``) are QEMU's
  ``trace-events`` lines: empty functions called at the point where QEMU calls
  ``trace_<name>()``, recorded as ``event`` steps.

The same code swap lets an exercise run a student's function in place of a call
tracepoint's own code (:meth:`Tracepoint.plug`, used by ``qn.plug``): the wrapper then calls
``tp.orig``, which is the student's function, and a recorder attached meanwhile records it
under the tracepoint's name.
"""
from __future__ import annotations

import inspect
from operator import itemgetter
from types import CodeType, FunctionType
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: every tracepoint ever declared, in declaration order
REGISTRY: list["Tracepoint"] = []
#: tracepoints by (kind, name): a call and a trace event may share QEMU's name
BY_NAME: dict[tuple[str, str], "Tracepoint"] = {}


class Tracepoint:
    """One traced function or trace event."""

    __slots__ = ("name", "kind", "src", "func", "code", "orig", "argnames", "show",
                 "shown_names", "fmt", "index", "_wrapper", "glob", "_get", "pristine",
                 "handler", "_specialised")

    def __init__(self, func: FunctionType, kind: str, src: str, show: tuple[str, ...],
                 fmt: str | None, name: str | None = None) -> None:
        if func.__code__.co_freevars:
            raise TypeError(f"tracepoint {func.__qualname__} must not be a closure")
        self.name = name or func.__name__
        self.kind = kind                      # "call" or "event"
        self.src = src                        # QEMU source file that holds it
        self.func = func
        self.code = func.__code__
        self.glob = func.__globals__
        self.argnames = tuple(inspect.signature(func).parameters)
        self.show = tuple(self.argnames.index(a) for a in show)
        self.shown_names = tuple(self.argnames[i] for i in self.show)
        self._get = itemgetter(*self.show) if self.show else None
        self.fmt = fmt
        self.index = len(REGISTRY)
        # An untraced copy of the original, for the wrapper to call.
        self.orig = FunctionType(self.code, self.glob, self.name, func.__defaults__)
        self.orig.__kwdefaults__ = func.__kwdefaults__
        #: ``orig`` while nothing is plugged in (see :meth:`plug`)
        self.pristine = self.orig
        #: the attached recorder's handler, or None
        self.handler: Callable[..., Any] | None = None
        self._wrapper = _wrapper_code(self.index, func.__name__, kind)
        self._specialised: dict[str, CodeType] = {}

    def attach(self, handler: Callable[..., Any]) -> None:
        """Route calls to ``handler(tp, args, kwargs)`` (call) or ``handler(tp, args)``."""
        self.handler = handler
        self.glob[f"_qn_tp_{self.index}"] = (self, handler)
        self.func.__code__ = self._wrapper

    def attach_specialised(self, template: str, ctx: tuple) -> None:
        """Attach a handler written as source: ``template`` is compiled for this function's
        own signature (see :func:`_specialise`), so a recorded call costs one extra frame
        and no argument packing; it finds ``(tp, *ctx)`` in the global ``_qn_tp_{index}``."""
        code = self._specialised.get(template)
        if code is None:
            code = self._specialised[template] = _specialise(self, template)
        self.handler = ctx[0]
        self.glob[f"_qn_tp_{self.index}"] = (self, *ctx)
        self.func.__code__ = code

    def detach(self) -> None:
        self.handler = None
        if self.plugged:
            self.glob[f"_qn_tp_{self.index}"] = (self, _call_orig)
            self.func.__code__ = self._wrapper
            return
        self.func.__code__ = self.code
        self.glob.pop(f"_qn_tp_{self.index}", None)

    # -- exercise slots (qnetlearn.grading) ---------------------------------------------
    @property
    def plugged(self) -> bool:
        return self.orig is not self.pristine

    def plug(self, impl: Callable[..., Any]) -> None:
        """Run ``impl`` in place of the function's own code, for every caller.

        ``impl`` becomes ``orig``, what the wrapper (or an attached recorder, which then
        records ``impl`` under this tracepoint's name) calls.  :meth:`unplug` undoes it.
        """
        if self.kind != "call":
            raise TypeError(f"{self.name} is a trace event, not a function to replace")
        self.orig = impl
        if self.handler is None:
            self.glob[f"_qn_tp_{self.index}"] = (self, _call_orig)
            self.func.__code__ = self._wrapper

    def unplug(self) -> None:
        self.orig = self.pristine
        if self.handler is None:
            self.func.__code__ = self.code
            self.glob.pop(f"_qn_tp_{self.index}", None)

    def shown_args(self, args: tuple, kwargs: dict) -> tuple:
        """The values of the arguments worth showing, in ``shown_names`` order."""
        if len(args) > self.show[-1] and self.show[-1] == max(self.show):
            v = self._get(args)  # type: ignore[misc]
            return v if len(self.show) > 1 else (v,)
        n = len(args)
        return tuple(args[i] if i < n else kwargs.get(self.argnames[i]) for i in self.show)

    def __repr__(self) -> str:
        return f"<tracepoint {self.kind} {self.name} ({self.src})>"


def _call_orig(tp: Tracepoint, args: tuple, kwargs: dict) -> Any:
    """The handler of a plugged tracepoint while no recorder is attached."""
    return tp.orig(*args, **kwargs)


def _wrapper_code(index: int, name: str, kind: str) -> CodeType:
    if kind == "call":
        src = (f"def {name}(*args, **kwargs):\n"
               f"    tp, h = _qn_tp_{index}\n"
               f"    return h(tp, args, kwargs)\n")
    else:
        src = (f"def {name}(*args):\n"
               f"    tp, h = _qn_tp_{index}\n"
               f"    h(tp, args)\n")
    ns: dict[str, Any] = {}
    exec(compile(src, f"<tracepoint {name}>", "exec"), ns)
    return ns[name].__code__


def _specialise(tp: Tracepoint, template: str) -> CodeType:
    """Compile ``template`` into a wrapper with ``tp``'s exact parameters.

    The template's fields: ``{name}``, ``{index}``, ``{params}`` (the parameter list,
    without defaults: the function object keeps its ``__defaults__``), ``{call}`` (the
    arguments, passed on as received), ``{shown}`` (a tuple of the shown arguments) and
    ``{argv}`` (a tuple of all the positional ones)."""
    code = tp.code
    flags = code.co_flags
    names = code.co_varnames
    npos, nkw = code.co_argcount, code.co_kwonlyargcount
    pos, kwonly = list(names[:npos]), list(names[npos:npos + nkw])
    i = npos + nkw
    star = names[i] if flags & inspect.CO_VARARGS else None
    starstar = names[i + (star is not None)] if flags & inspect.CO_VARKEYWORDS else None
    params = pos[:]
    if code.co_posonlyargcount:
        params.insert(code.co_posonlyargcount, "/")
    if star or kwonly:
        params.append(f"*{star or ''}")
    params += kwonly
    call = pos + ([f"*{star}"] if star else []) + [f"{k}={k}" for k in kwonly]
    if starstar:
        params.append(f"**{starstar}")
        call.append(f"**{starstar}")

    def tup(items: list[str]) -> str:
        return f"({', '.join(items)},)" if items else "()"

    src = template.format(name=tp.func.__name__, index=tp.index, params=", ".join(params),
                          call=", ".join(call),
                          shown=tup([tp.argnames[j] for j in tp.show]),
                          argv=tup(pos + ([f"*{star}"] if star else [])))
    ns: dict[str, Any] = {}
    exec(compile(src, f"<tracepoint {tp.name}>", "exec"), ns)
    return ns[tp.func.__name__].__code__


def is_traced(func: Callable[..., Any]) -> bool:
    """Is someone listening to this tracepoint now?  (Its code is the wrapper.)  Lets a
    device skip building an event's text that nobody would see."""
    return func.__code__.co_filename.startswith("<tracepoint")


def _register(func: FunctionType, kind: str, src: str, show: tuple[str, ...],
              fmt: str | None, name: str | None) -> Tracepoint:
    tp = Tracepoint(func, kind, src, show, fmt, name)
    prev = BY_NAME.get((kind, tp.name))
    # C functions are per file: QEMU's hw/net/e1000.c and Linux's virtio_net.c both have a
    # start_xmit.  The same name twice in one source file is a mistake; BY_NAME keeps the first.
    if prev is not None and prev.src == src:
        raise ValueError(f"{kind} tracepoint {tp.name} declared twice in {src}")
    REGISTRY.append(tp)
    BY_NAME.setdefault((kind, tp.name), tp)
    return tp


def tracepoint(src: str, show: tuple[str, ...] = (), name: str | None = None) -> Callable[[F], F]:
    """Declare a call tracepoint; ``src`` is the QEMU (or Linux) file of the function."""
    def deco(func: F) -> F:
        _register(func, "call", src, show, None, name)  # type: ignore[arg-type]
        return func
    return deco


def trace_event(fmt: str, src: str = "trace-events") -> Callable[[F], F]:
    """Declare a QEMU trace event; ``fmt`` is its text with ``{arg}`` fields."""
    def deco(func: F) -> F:
        argnames = tuple(inspect.signature(func).parameters)
        _register(func, "event", src, argnames, fmt, None)  # type: ignore[arg-type]
        return func
    return deco
