"""Carry a student's function from the notebook's kernel into a grading worker process.

The function is sent as its compiled code (``marshal``, the worker runs the same Python)
with what it needs from the notebook: the helper functions it calls (recursively), the
modules and library objects it names (sent as ``module.name`` and imported again in the
worker, so the worker's emulator is a fresh, unpatched one), and plain values (numbers,
strings, tuples...).  Anything else the notebook defined (a class, an open file...) stays
behind; using it in the worker raises ``NameError`` and the grader says which name it was.
"""
from __future__ import annotations

import builtins
import importlib
import marshal
import pickle
import types
from typing import Any

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _code_names(c)
    return names


def _plain(v: Any, depth: int = 0) -> bool:
    if isinstance(v, _PLAIN):
        return True
    if depth > 4:
        return False
    if isinstance(v, (tuple, list, frozenset, set)):
        return all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(_plain(k, depth + 1) and _plain(x, depth + 1) for k, x in v.items())
    return False


def _importable(obj: Any) -> tuple[str, str] | None:
    """(module, qualname) if importing them again gives this very object."""
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not mod or not qual or mod == "__main__" or "<locals>" in qual:
        return None
    try:
        found: Any = importlib.import_module(mod)
        for part in qual.split("."):
            found = getattr(found, part)
    except Exception:
        return None
    return (mod, qual) if found is obj else None


class _Packer:
    def __init__(self, root_globals: dict[str, Any]) -> None:
        self.g = root_globals
        self.globals: dict[str, Any] = {}       # name -> description
        self.functions: dict[int, int] = {}     # id(function) -> index in self.table
        self.table: list[Any] = []
        self.missing: list[str] = []

    def value(self, v: Any) -> Any:
        if isinstance(v, types.ModuleType):
            return ("module", v.__name__)
        if isinstance(v, types.FunctionType):
            ref = _importable(v)
            if ref is not None and v.__globals__ is not self.g:
                return ("ref",) + ref
            return ("fn", self.function(v))
        if _plain(v):
            return ("value", pickle.dumps(v))
        ref = _importable(v)
        if ref is not None:
            return ("ref",) + ref
        return None

    def function(self, fn: types.FunctionType) -> int:
        if id(fn) in self.functions:
            return self.functions[id(fn)]
        k = len(self.table)
        self.functions[id(fn)] = k
        self.table.append(None)
        closure = []
        for cell in fn.__closure__ or ():
            try:
                closure.append(self.value(cell.cell_contents))
            except ValueError:                    # an empty cell
                closure.append(None)
        defaults = [self.value(d) for d in fn.__defaults__ or ()]
        kwdefaults = {n: self.value(d) for n, d in (fn.__kwdefaults__ or {}).items()}
        if fn.__globals__ is self.g:
            for name in _code_names(fn.__code__):
                if name in self.globals or name not in self.g:
                    continue
                v = self.g[name]
                if hasattr(builtins, name) and not (isinstance(v, types.FunctionType)
                                                    and v.__globals__ is self.g):
                    continue          # e.g. IPython's own open(): the worker has the builtin
                self.globals[name] = None           # placeholder against recursion
                desc = self.value(self.g[name])
                if desc is None:
                    self.missing.append(name)
                    del self.globals[name]
                else:
                    self.globals[name] = desc
        self.table[k] = (marshal.dumps(fn.__code__), fn.__name__, fn.__qualname__, defaults,
                         kwdefaults, closure)
        return k


def pack(fn: Any) -> bytes:
    """The function and what it needs, as bytes for :func:`unpack`."""
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"the grader needs a function written with def, not {type(fn).__name__}")
    p = _Packer(fn.__globals__)
    root = p.function(fn)
    return pickle.dumps({"root": root, "table": p.table, "globals": p.globals,
                         "missing": p.missing})


def unpack(data: bytes) -> tuple[types.FunctionType, list[str]]:
    """Rebuild the function in this process; also returns the names left behind."""
    d = pickle.loads(data)
    g: dict[str, Any] = {"__name__": "__student__", "__builtins__": builtins}
    made: dict[int, types.FunctionType] = {}

    def value(desc: Any) -> Any:
        if desc is None:
            return None
        kind = desc[0]
        if kind == "module":
            return importlib.import_module(desc[1])
        if kind == "ref":
            obj: Any = importlib.import_module(desc[1])
            for part in desc[2].split("."):
                obj = getattr(obj, part)
            return obj
        if kind == "value":
            return pickle.loads(desc[1])
        if kind == "fn":
            return function(desc[1])
        raise ValueError(kind)

    def function(k: int) -> types.FunctionType:
        if k in made:
            return made[k]
        code_b, name, qual, defaults, kwdefaults, closure = d["table"][k]
        code = marshal.loads(code_b)
        cells = tuple(types.CellType() for _ in closure)
        f = types.FunctionType(code, g, name, None, cells or None)
        made[k] = f
        f.__qualname__ = qual
        f.__defaults__ = tuple(value(x) for x in defaults) or None
        f.__kwdefaults__ = {n: value(x) for n, x in kwdefaults.items()} or None
        for cell, desc in zip(cells, closure):
            if desc is not None:
                cell.cell_contents = value(desc)
        return f

    for name, desc in d["globals"].items():
        g[name] = value(desc)
    return function(d["root"]), list(d["missing"])
