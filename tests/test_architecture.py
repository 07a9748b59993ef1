"""The one rule (DESIGN.md): device models and guest drivers meet only where hardware meets."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "qnetlearn"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the qnetlearn modules a file imports (relative ones resolved)."""
    return modules_in(path.read_text(), ["qnetlearn", *path.relative_to(PKG).with_suffix("").parts])


def modules_in(src: str, here: list[str]) -> set[str]:
    tree = ast.parse(src)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m.startswith("qnetlearn")}


@pytest.mark.parametrize("side,other", [("guest", "hw"), ("hw", "guest")])
def test_guest_and_devices_never_import_each_other(side, other):
    files = sorted((PKG / side).rglob("*.py"))
    assert files, f"qnetlearn/{side} has no modules"
    bad = {str(f.relative_to(PKG)): sorted(m for m in imported_modules(f)
                                           if m.startswith(f"qnetlearn.{other}"))
           for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_check_sees_relative_imports():
    """The checker itself: a relative import of hw from guest is caught."""
    mods = modules_in("from ..hw.net import virtio_net\nfrom ..net import stack\n",
                      ["qnetlearn", "guest", "probe"])
    assert "qnetlearn.hw.net" in mods and "qnetlearn.net" in mods


def test_the_emulator_core_needs_only_the_standard_library():
    import subprocess
    import sys
    code = ("import sys, qnetlearn as qn\n"
            "vm = qn.Machine.from_cmdline('-netdev tap,id=hn0 -device virtio-net-pci,netdev=hn0')\n"
            "vm.boot(); assert all(vm.host().ping(count=2))\n"
            "third = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'ipywidgets','anywidget','matplotlib','networkx','nbgrader','numpy','IPython'})\n"
            "print(third)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PKG.parent).stdout.strip()
    assert out == "[]"
