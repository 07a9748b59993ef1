"""The monitor in a notebook: the ``%qemu`` magic and a small console widget.

::

    %load_ext qnetlearn.monitor.magic
    %qemu info network            # HMP on the last Machine created
    %qemu_use vm                  # ... or on this one
    %%qemu                        # a cell of commands, each shown after its prompt
    info pci
    info virtio-queue-status /machine/peripheral/net-pci0/virtio-backend 0
    %qemu_console                 # a (qemu) prompt widget (ipywidgets Text + Output)

``monitor_console(vm)`` returns the same widget for use outside magics.  ipywidgets is
imported only when a widget is made.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from . import last_machine
from .console import PROMPT
from .hmp import HMPMonitor

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

_CURRENT: "weakref.ReferenceType[Any] | None" = None


def current_machine() -> "Machine":
    """The machine ``%qemu`` talks to: the one ``%qemu_use`` chose, else the last created."""
    vm = _CURRENT() if _CURRENT is not None else None
    if vm is None:
        vm = last_machine()
    if vm is None:
        raise RuntimeError("no qnetlearn Machine exists yet: create one "
                           "(qn.Machine.from_cmdline(...)) or choose one with %qemu_use vm")
    return vm


def use_machine(vm: "Machine") -> None:
    global _CURRENT
    _CURRENT = weakref.ref(vm)


def run_lines(vm: "Machine", text: str, echo: bool) -> str:
    """Run each non-empty line as an HMP command; with ``echo``, each after its prompt."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if echo:
            out.append(PROMPT + line + "\n")
        out.append(vm.monitor(line))
    return "".join(out)


def qemu_magic(line: str, cell: str | None = None) -> None:
    """``%qemu CMD`` runs one HMP command; ``%%qemu`` runs a cell of them."""
    vm = current_machine()
    if cell is None:
        print(vm.monitor(line), end="")
    else:
        text = (line + "\n" + cell) if line.strip() else cell
        print(run_lines(vm, text, echo=True), end="")


def monitor_console(vm: "Machine | None" = None) -> Any:
    """A ``(qemu)`` prompt widget: type a command, press Enter, read the answer."""
    import ipywidgets as widgets
    vm = vm if vm is not None else current_machine()
    mon = HMPMonitor(vm)
    out = widgets.Output(layout=widgets.Layout(max_height="24em", overflow="auto",
                                               border="1px solid #ccc"))
    text = widgets.Text(placeholder="info network", description=PROMPT.strip(),
                        continuous_update=False,
                        layout=widgets.Layout(width="100%"))

    def submit(change: dict[str, Any]) -> None:
        line = change["new"]
        if not line:
            return
        out.append_stdout(PROMPT + line + "\n" + mon.command(line))
        text.value = ""

    text.observe(submit, names="value")
    box = widgets.VBox([out, text])
    box.monitor = mon            # type: ignore[attr-defined]  # for tests and power users
    box.submit = lambda line: submit({"new": line})   # type: ignore[attr-defined]
    return box


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext qnetlearn.monitor.magic``."""

    def qemu_use(line: str) -> None:
        """``%qemu_use vm``: ``%qemu`` talks to the Machine this expression names."""
        from ..machine import Machine
        vm = ipython.ev(line.strip() or "None")
        if not isinstance(vm, Machine):
            raise TypeError(f"%qemu_use wants a qnetlearn Machine, not {type(vm).__name__}")
        use_machine(vm)

    def qemu_console(line: str) -> Any:
        """``%qemu_console [vm]``: show a (qemu) prompt widget."""
        vm = ipython.ev(line) if line.strip() else None
        return monitor_console(vm)

    ipython.register_magic_function(qemu_magic, "line_cell", "qemu")
    ipython.register_magic_function(qemu_use, "line", "qemu_use")
    ipython.register_magic_function(qemu_console, "line", "qemu_console")


def unload_ipython_extension(ipython: Any) -> None:  # pragma: no cover - nothing to undo
    pass


__all__ = ["load_ipython_extension", "monitor_console", "current_machine", "use_machine",
           "qemu_magic"]
