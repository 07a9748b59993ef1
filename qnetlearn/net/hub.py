"""Hubs: QEMU's legacy "VLANs", which copy every frame to all other ports (net/hub.c).

``-net nic -net tap`` (or ``vlan=N`` in QEMU 2.x) joins the NIC and the TAP to hub N through
one hub port each.  A hub port is an ordinary NetClientState whose peer is the NIC or the
backend; what it receives, :func:`net_hub_receive` sends on from every *other* port.
"""
from __future__ import annotations

from ..trace import tracepoint
from .net import (NetClientInfo, NetClientState, qemu_can_send_packet, qemu_new_net_client,
                  qemu_send_packet)
from .queue import qemu_net_queue_flush


class NetHub:
    def __init__(self, hub_id: int) -> None:
        self.id = hub_id
        self.num_ports = 0
        self.ports: list[NetHubPort] = []    # newest first, as QEMU inserts at the head


class NetHubPort:
    def __init__(self, hub: NetHub, port_id: int, nc: NetClientState) -> None:
        self.hub = hub
        self.id = port_id
        self.nc = nc


@tracepoint("net/hub.c", show=("len",))
def net_hub_receive(hub: NetHub, source_port: NetHubPort, buf: bytes, len: int) -> int:
    """Send the frame out of every port but the one it came in by; always "consumed"."""
    for port in hub.ports:
        if port is not source_port:
            qemu_send_packet(port.nc, buf, len)
    return len


@tracepoint("net/hub.c")
def net_hub_port_receive(nc: NetClientState, buf: bytes) -> int:
    port: NetHubPort = nc.opaque
    return net_hub_receive(port.hub, port, buf, len(buf))


def net_hub_port_can_receive(nc: NetClientState) -> bool:
    """A port can take a frame if some other port's peer can (the hub's only back-pressure)."""
    port: NetHubPort = nc.opaque
    return any(qemu_can_send_packet(p.nc) for p in port.hub.ports if p is not port)


def net_hub_flush(nc: NetClientState) -> bool:
    """Flush the queues of all other ports; True if a packet moved."""
    port: NetHubPort = nc.opaque
    moved = False
    for p in port.hub.ports:
        if p is not port:
            before = p.nc.incoming_queue.nq_count
            qemu_net_queue_flush(p.nc.incoming_queue)
            moved |= p.nc.incoming_queue.nq_count < before
    return moved


# A hub port receives flat frames, so a frame crosses the hub as the seed's second chain
# shows (net_hub_port_receive -> net_hub_receive -> qemu_send_packet): QEMU 2.4 delivered
# flat packets to ``receive``.  QEMU 7.2 delivers everything as an iovec and would take
# ``net_hub_port_receive_iov`` -> ``net_hub_receive_iov`` -> ``qemu_sendv_packet``; the
# frames, the order and the trace events are the same either way.
net_hub_port_info = NetClientInfo(type="hubport", receive=net_hub_port_receive,
                                  can_receive=net_hub_port_can_receive)


class Hubs:
    """The hubs of one machine (QEMU keeps them in a global list)."""

    def __init__(self) -> None:
        self.hubs: list[NetHub] = []

    def find(self, hub_id: int) -> NetHub | None:
        return next((h for h in self.hubs if h.id == hub_id), None)

    def net_hub_add_port(self, hub_id: int, name: str | None = None,
                         hubpeer: NetClientState | None = None) -> NetHubPort:
        """Create a port on hub ``hub_id`` (creating the hub too), peered with ``hubpeer``."""
        hub = self.find(hub_id)
        if hub is None:
            hub = NetHub(hub_id)
            self.hubs.append(hub)
        port_id = hub.num_ports
        hub.num_ports += 1
        nc = qemu_new_net_client(net_hub_port_info, hubpeer, "hub",
                                 name or f"hub{hub_id}port{port_id}")
        port = NetHubPort(hub, port_id, nc)
        nc.opaque = port
        hub.ports.insert(0, port)
        return port
