"""The names the course uses, in its own words; with a recording, where each one ran."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .show import Table

__all__ = ["GLOSSARY", "glossary"]

#: name -> what it is, in one line
GLOSSARY: dict[str, str] = {
    "NetClientState": "one end of a network connection inside QEMU: a backend (TAP), a "
                      "NIC's front end, or a hub port; each has a peer",
    "peer": "the NetClientState at the other end: what a client's packets are handed to",
    "NetQueue": "a client's queue of packets its peer could not take yet",
    "tap_send": "fd handler: the TAP has frames from the host; read them and send them on",
    "qemu_send_packet_async": "send a frame to the peer; if it cannot take it now, queue it "
                              "and call sent_cb later",
    "qemu_net_queue_send": "deliver now or append to the NetQueue",
    "qemu_deliver_packet_iov": "call the receiving client's receive function",
    "virtio_net_receive": "virtio-net's receive function: put a frame into guest RX buffers",
    "virtqueue_pop": "take the next buffer chain the driver made available",
    "virtqueue_fill": "write one used-ring entry (which chain, how many bytes)",
    "virtqueue_flush": "publish used entries by moving used->idx",
    "virtio_notify": "tell the driver about used buffers, unless it asked not to be told",
    "msix_notify": "send a vector's MSI-X message, or set its pending bit if masked",
    "msi_send_message": "the message is a 4-byte write to an address",
    "address_space_stl_le": "a 4-byte little-endian store into the physical address space",
    "virtio_queue_notify": "the driver kicked a queue: there is work in it",
    "virtio_net_handle_tx_bh": "TX kick handler: schedule the TX bottom half",
    "virtio_net_flush_tx": "the TX bottom half: pop chains and send them to the peer",
    "tap_receive_iov": "write a frame to the TAP: the host sees it",
    "net_hub_receive": "a hub sends what one port received to every other port",
    "e1000_receive_iov": "the e1000's receive function: fill RX descriptors, raise ICR",
    "bottom half": "a callback the main loop runs soon, once per scheduling",
    "ioeventfd": "an eventfd the kernel (KVM) or QEMU signals on a write to a notify "
                 "address, so the write needs no full emulation on the vCPU",
    "main-loop / vcpu0": "the two threads of a recording: QEMU's I/O thread and the guest's CPU",
}


def glossary(rec: Any = None) -> Table:
    """The glossary; with ``rec``, also each function's source file and how often it ran."""
    if rec is None:
        return Table([[k, v] for k, v in GLOSSARY.items()], ["name", "meaning"],
                     title="glossary")
    runs: Counter = Counter()
    src: dict[str, str] = {}
    for s in rec.steps:
        if s.kind == "call":
            runs[s.name] += 1
            src.setdefault(s.name, s.src)
    rows = [[k, v, src.get(k, ""), runs.get(k, "")] for k, v in GLOSSARY.items()]
    return Table(rows, ["name", "meaning", "QEMU file", "calls in this recording"],
                 title="glossary, with this recording")
