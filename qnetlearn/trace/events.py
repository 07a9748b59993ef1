"""QEMU's trace events (``hw/*/trace-events``), under QEMU's names and argument text.

Each is an empty function called where QEMU calls ``trace_<name>()``; a recorder turns the
calls into ``event`` steps (see ``tracepoint.py``).  Pointers are passed as the symbolic
names the goldens use (``vq0``) or as objects that ``to_qemu_trace`` numbers (``elem``,
``vdev``).  Events marked ``src="qnetlearn"`` are ours and never printed in QEMU's form.
"""
from __future__ import annotations

from typing import Any

from .tracepoint import trace_event

V = "hw/virtio/trace-events"
I = "hw/intc/trace-events"
N = "hw/net/trace-events"
M = "softmmu/trace-events"
P = "hw/pci/trace-events"


@trace_event("elem {elem} size {size} in_num {in_num} out_num {out_num}", V)
def virtqueue_alloc_element(elem: int, size: int, in_num: int, out_num: int) -> None: ...


@trace_event("vq {vq} elem {elem} in_num {in_num} out_num {out_num}", V)
def virtqueue_pop(vq: str, elem: int, in_num: int, out_num: int) -> None: ...


@trace_event("vq {vq} elem {elem} len {len} idx {idx}", V)
def virtqueue_fill(vq: str, elem: int, len: int, idx: int) -> None: ...


@trace_event("vq {vq} count {count}", V)
def virtqueue_flush(vq: str, count: int) -> None: ...


@trace_event("vdev {vdev} vq {vq}", V)
def virtio_notify(vdev: Any, vq: str) -> None: ...


@trace_event("vdev {vdev} n {n} vq {vq}", V)
def virtio_queue_notify(vdev: Any, n: int, vq: str) -> None: ...


@trace_event("vdev {vdev} val {val}", V)
def virtio_set_status(vdev: Any, val: int) -> None: ...


@trace_event("0x{addr:x} = 0x{val:x} ({size})", V)
def virtio_pci_notify_write(addr: int, val: int, size: int) -> None: ...


# ``mr.describe(offset, value)`` gives the golden text; ``by`` comes from the step's context
@trace_event("{text} by={by} size={size}", M)
def memory_region_ops_write(mr: Any, offset: int, value: int, size: int) -> None: ...


@trace_event("{text} by={by} size={size}", M)
def memory_region_ops_read(mr: Any, offset: int, value: int, size: int) -> None: ...


@trace_event("dev {name} enabled {enabled} masked {masked}", P)
def msix_write_config(name: str, enabled: int, masked: int) -> None: ...


@trace_event("dest {dest} dest_mode {dest_mode} delivery_mode {delivery_mode} "
             "vector {vector} trigger_mode {trigger_mode}", I)
def apic_deliver_irq(dest: int, dest_mode: int, delivery_mode: int, vector: int,
                     trigger_mode: int) -> None: ...


@trace_event("0x{addr:x} = 0x{val:08x}{note}", I)
def apic_mem_writel(addr: int, val: int, note: str) -> None: ...


@trace_event("0x{addr:x} = 0x{val:08x}", I)
def apic_mem_readl(addr: int, val: int) -> None: ...


@trace_event("vector: {vector} level: {level}", I)
def ioapic_set_irq(vector: int, level: int) -> None: ...


@trace_event("set remote irr for pin {n}", I)
def ioapic_set_remote_irr(n: int) -> None: ...


@trace_event("clear remote irr for pin {n} vector {vector}", I)
def ioapic_clear_remote_irr(n: int, vector: int) -> None: ...


@trace_event("EOI broadcast for vector {vector}", I)
def ioapic_eoi_broadcast(vector: int) -> None: ...


@trace_event("Is VLAN packet: {is_vlan}, ETH proto: 0x{proto:x}, VET: 0x{vet:x}", N)
def e1000x_vlan_is_vlan_pkt(is_vlan: int, proto: int, vet: int) -> None: ...


@trace_event("unicast match[{idx}]: {mac}", N)
def e1000x_rx_flt_ucast_match(idx: int, mac: str) -> None: ...


@trace_event("link_up: {link_up}, rx_enabled {rx_enabled}, pci_master {pci_master}", N)
def e1000x_rx_can_recv_disabled(link_up: int, rx_enabled: int, pci_master: int) -> None: ...


@trace_event("Receiver overrun: dropped packet of {size} bytes, RDH={rdh}, RDT={rdt}", N)
def e1000_receiver_overrun(size: int, rdh: int, rdt: int) -> None: ...


@trace_event("unicast mismatch: {mac}", N)
def e1000x_rx_flt_ucast_mismatch(mac: str) -> None: ...


@trace_event("inexact mismatch: {mac} MO {mo} MTA[{mta}] 0x{mta_val:x}", N)
def e1000x_rx_flt_inexact_mismatch(mac: str, mo: int, mta: int, mta_val: int) -> None: ...


@trace_event("VID mismatch: 0x{vid:X}", N)
def e1000x_rx_flt_vlan_mismatch(vid: int) -> None: ...


@trace_event("VID match: 0x{vid:X}", N)
def e1000x_rx_flt_vlan_match(vid: int) -> None: ...


@trace_event("Received packet dropped because the link is down STATUS = {status}", N)
def e1000x_rx_link_down(status: int) -> None: ...


@trace_event("Received packet dropped because receive is disabled RCTL = {rctl}", N)
def e1000x_rx_disabled(rctl: int) -> None: ...


@trace_event("Received packet dropped because it was oversized ({size} bytes)", N)
def e1000x_rx_oversized(size: int) -> None: ...


@trace_event("Start link auto negotiation", N)
def e1000x_link_negotiation_start() -> None: ...


@trace_event("Auto negotiation is completed", N)
def e1000x_link_negotiation_done() -> None: ...


@trace_event("cpu_index {cpu_index}, reason {reason}", "accel/kvm/trace-events")
def kvm_run_exit(cpu_index: int, reason: int) -> None: ...


# ---- qnetlearn's own events (not in QEMU; never printed by to_qemu_trace) ----

@trace_event("{netdev} dropped a frame of {size} bytes: {reason}", "qnetlearn")
def net_drop(netdev: str, size: int, reason: str) -> None: ...


@trace_event("{netdev} queued a frame of {size} bytes from {sender} ({why})", "qnetlearn")
def net_queue_append(netdev: str, sender: str, size: int, why: str) -> None: ...


@trace_event("{what}", "qnetlearn")
def guest(what: str) -> None: ...
