"""State that a recording can show at any step, stored as changes.

Objects whose state the course shows (virtqueues, NetQueues, MSI-X tables, APICs, counters)
derive from :class:`Stateful` and name their state attributes in ``_state_``.  While a
recorder is attached, assigning one of those attributes appends ``(step, id(obj), name, value)``
to the recorder's journal (the class's ``__setattr__`` is swapped in for the recording only,
so nothing is paid otherwise).  Containers changed in place call :meth:`Stateful._note`.
:class:`Stats` counters journal their items the same way, and guest RAM journals its writes
(``system/memory.py``).  A recording therefore holds one image of the state at its start
and every change after it, never full copies per step.
"""
from __future__ import annotations

import weakref
from collections import Counter
from typing import Any, ClassVar

#: the journal of the attached recorder, or None
JOURNAL: list | None = None
#: the attached recorder's images: id -> (object, its state at the start), or None
IMAGES: dict[int, tuple[Any, dict[str, Any]]] | None = None
#: number of the step the next journal entry belongs to
_STEP = [0]

_LIVE: "weakref.WeakSet[Stateful]" = weakref.WeakSet()
_CLASSES: list[type] = []


_IMMUTABLE = frozenset((int, bool, str, float, type(None), bytes, tuple, frozenset))


def _copy(value: Any) -> Any:
    """An immutable copy of a state value (containers become tuples or dicts)."""
    if type(value) in _IMMUTABLE:
        return value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "deque":
        return tuple(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, set):
        return frozenset(value)
    return value


def _journal_setattr(self: Any, name: str, value: Any) -> None:
    object.__setattr__(self, name, value)
    if name in self._state_set_ and JOURNAL is not None:
        JOURNAL.append((_STEP[0], id(self), name, _copy(value)))


class Stateful:
    """Base of objects whose ``_state_`` attributes are journaled while recording."""

    _state_: ClassVar[tuple[str, ...]] = ()
    _state_set_: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        names: set[str] = set()
        for base in cls.__mro__:
            names.update(getattr(base, "_state_", ()))
        cls._state_set_ = frozenset(names)
        _CLASSES.append(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> "Stateful":
        obj = super().__new__(cls)
        _LIVE.add(obj)
        if IMAGES is not None:                  # born while recording: no start image
            IMAGES[id(obj)] = (obj, {})
        return obj

    def _note(self, name: str) -> None:
        """Journal attribute ``name`` after an in-place change (list append, ...)."""
        if JOURNAL is not None:
            JOURNAL.append((_STEP[0], id(self), name, _copy(getattr(self, name))))

    def image(self) -> dict[str, Any]:
        """The current values of the state attributes."""
        return {n: _copy(getattr(self, n, None)) for n in self._state_set_}


class Stats(Counter):
    """Counters (packets, drops by reason, ...) whose changes a recording keeps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _LIVE_STATS[id(self)] = self
        if IMAGES is not None:
            IMAGES[id(self)] = (self, dict(self))


_LIVE_STATS: "weakref.WeakValueDictionary[int, Stats]" = weakref.WeakValueDictionary()


def _journal_setitem(self: Stats, key: str, value: int) -> None:
    dict.__setitem__(self, key, value)
    if JOURNAL is not None:
        JOURNAL.append((_STEP[0], id(self), key, value))


def start(journal: list) -> dict[int, tuple[Any, dict[str, Any]]]:
    """Start journaling into ``journal``; returns the image of every live object, by id.

    Journal entries name their object by ``id`` (a tuple of plain values is one the
    garbage collector stops tracking: long recordings stay cheap to collect); the images
    keep every journaled object alive, those born during the recording included, so an
    id never comes to mean another object."""
    global JOURNAL, IMAGES
    JOURNAL = journal
    _STEP[0] = 0
    for cls in _CLASSES:
        if cls._state_set_:
            cls.__setattr__ = _journal_setattr  # type: ignore[method-assign]
    Stats.__setitem__ = _journal_setitem  # type: ignore[method-assign]
    images: dict[int, tuple[Any, dict[str, Any]]] = {}
    for obj in list(_LIVE):
        images[id(obj)] = (obj, obj.image())
    for st in list(_LIVE_STATS.values()):
        images[id(st)] = (st, dict(st))
    IMAGES = images
    return images


def stop() -> None:
    global JOURNAL, IMAGES
    JOURNAL = IMAGES = None
    for cls in _CLASSES:
        if "__setattr__" in cls.__dict__:
            del cls.__setattr__
    if "__setitem__" in Stats.__dict__:
        del Stats.__setitem__


def set_step(n: int) -> None:
    _STEP[0] = n
