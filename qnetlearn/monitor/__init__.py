"""The QEMU monitor (QEMU's monitor/): HMP, the interactive prompt, and QMP.

* ``vm.monitor("info network")`` runs one HMP command (:mod:`.hmp`), text as QEMU 7.2
  prints it.
* :func:`.console.run_monitor_stdio` is ``-monitor stdio``'s ``(qemu)`` prompt;
  ``-monitor unix:PATH,server=on,wait=off`` serves the same over a socket.
* ``-qmp unix:PATH,server=on,wait=off`` (or ``tcp:HOST:PORT,...``) serves QMP (:mod:`.qmp`)
  to real clients such as ``qemu.qmp``'s ``QMPClient`` and ``qmp-shell``.
* In a notebook: ``%load_ext qnetlearn.monitor.magic``, then ``%qemu info network``.

This package module stays import-light: the machine calls :func:`machine_created` for
every machine, and only a machine with ``-qmp``/socket ``-monitor`` options loads more.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..machine import Machine

_LAST: "weakref.ReferenceType[Any] | None" = None
_SERVERS: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()
_SOCKET_CHARDEVS = ("unix:", "tcp:", "telnet:")


def machine_created(vm: "Machine") -> None:
    """Hook run at the end of ``Machine.__init__``: remember the machine (for the notebook
    magic) and start the monitor servers its ``-qmp``/``-monitor`` options ask for."""
    global _LAST
    _LAST = weakref.ref(vm)
    cfg = vm.config
    wanted = list(cfg.qmp) + list(cfg.qmp_pretty) + [
        m for m in cfg.monitor if m.startswith(_SOCKET_CHARDEVS)]
    for m in cfg.monitor:
        if m != "stdio" and not m.startswith(_SOCKET_CHARDEVS):
            cfg.warnings.append(f"-monitor {m}: only stdio (qnetlearn run), unix: and tcp: "
                                "monitors are modelled; this one is not served")
    if not wanted:
        return
    from .console import hmp_server
    from .qmp import qmp_server
    servers: list[Any] = []
    try:
        for text in cfg.qmp:
            servers.append(qmp_server(vm, text))
        for text in cfg.qmp_pretty:
            servers.append(qmp_server(vm, text, pretty=True))
        for text in cfg.monitor:
            if text.startswith(_SOCKET_CHARDEVS):
                servers.append(hmp_server(vm, text))
    except BaseException:
        for s in servers:
            s.close()
        raise
    _SERVERS[vm] = servers


def machine_closed(vm: "Machine") -> None:
    """Hook run by ``Machine.close``: stop serving its monitors (sockets closed, unix
    socket files removed)."""
    for s in _SERVERS.pop(vm, []):
        s.close()


def monitor_servers(vm: "Machine") -> list[Any]:
    """The QMP and HMP socket servers of ``vm`` (each has ``.address`` and ``.sessions``)."""
    return list(_SERVERS.get(vm, []))


def last_machine() -> "Machine | None":
    """The machine created last in this process, if it still exists."""
    return _LAST() if _LAST is not None else None


__all__ = ["machine_created", "machine_closed", "monitor_servers", "last_machine"]
