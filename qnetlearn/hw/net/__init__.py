"""NIC models (QEMU's hw/net/), by the name ``-device`` and ``-net nic,model=`` use."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ...machine import Machine
    from ...net.net import NetClientState
    from ...system.vl import NicConfig


def _virtio_net_pci(machine: "Machine", cfg: "NicConfig", peer: "NetClientState | None") -> Any:
    from .virtio_net import VirtIONetPCI
    return VirtIONetPCI(machine, cfg, peer)


def _e1000(machine: "Machine", cfg: "NicConfig", peer: "NetClientState | None") -> Any:
    from .e1000 import E1000State
    return E1000State(machine, cfg, peer)


NIC_MODELS: dict[str, Callable[..., Any]] = {"virtio-net-pci": _virtio_net_pci, "e1000": _e1000}
