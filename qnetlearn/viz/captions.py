"""One sentence per step: what this step does, in plain words, and which function does it.

Captions come from a table of templates keyed by the step's function or trace-event name
(``TEMPLATES``); the numbers in them are read from the recorded step and state, never made
up.  A step without a template gets a generic sentence naming its QEMU (or Linux) source
file.  ``Captioner`` walks a recording once (it remembers which virtqueue and device a call
works on, and which descriptor chain each element is) and captions every step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .render.common import fmt_args, fmt_value, thread_title

if TYPE_CHECKING:  # pragma: no cover
    from .replay import Moment, Replay

Template = Callable[["Ctx"], "str | None"]


class Ctx:
    """What a template can read about one step."""

    __slots__ = ("m", "cap", "step", "args")

    def __init__(self, m: "Moment", cap: "Captioner") -> None:
        self.m = m
        self.cap = cap
        self.step = m.step
        self.args = m.step.args

    # -- lookups the templates share ------------------------------------------------------
    def parent_args(self) -> dict[str, Any]:
        """Arguments of the call this return (or event) belongs to."""
        s = self.step
        if s.kind == "return" or s.kind == "event":
            fr = self.m.frames
            if fr:
                return fr[-1].args
        return s.args

    def device(self) -> str | None:
        return self.cap.device_of(self.m.k)

    def queue(self) -> tuple[str, int, dict[str, Any]] | None:
        """(device, queue index, queue state) this step works on, if known."""
        dev = self.device()
        vq = self.cap.vq_of(self.m.k)
        if dev is None or vq is None:
            return None
        try:
            qi = int(vq[2:])
            q = self.m.state["devices"][dev]["queues"][qi]
        except (KeyError, IndexError, ValueError, TypeError):
            return None
        return dev, qi, q

    def hdr_len(self, dev: str | None = None) -> int:
        dev = dev or self.device()
        feats = self.m.state.get("devices", {}).get(dev or "", {}).get("guest_features", 0) or 0
        return 12 if feats >> 32 & 1 or feats >> 15 & 1 else 10

    def ret(self) -> Any:
        return self.args.get("ret")


def _rx_or_tx(qi: int) -> str:
    return "RX" if qi % 2 == 0 else "TX"


# ---- templates ----------------------------------------------------------------------------
# Keys: "kind:name" (kind call, return or event) or just "name" (any kind).

def _virtqueue_pop_call(c: Ctx) -> str:
    qq = c.queue()
    if qq is None:
        return "the device takes the next descriptor chain from the available ring"
    dev, qi, q = qq
    num = q.get("num") or 1
    if q.get("avail_idx") == q.get("last_avail_idx"):
        return (f"the device looks at {_rx_or_tx(qi)} queue {q['name']}: avail.idx = "
                f"last_avail_idx = {q['last_avail_idx']}, so the driver has published nothing new")
    slot = q["last_avail_idx"] % num
    return (f"the device takes the next chain from the {_rx_or_tx(qi)} available ring: "
            f"slot {slot} holds head {q['avail_ring'][slot]}")


def _virtqueue_pop_ret(c: Ctx) -> str:
    r = c.ret()
    if r is None:
        return "returns nothing: the available ring is empty, the loop ends"
    head = c.cap.head_in_text(r)
    return f"returns the element for the chain at head {head}" if head is not None else f"returns {r}"


def _virtqueue_pop_event(c: Ctx) -> str:
    a = c.args
    head = c.cap.elem_head.get(a.get("elem"))
    qq = c.queue()
    last = f" (last_avail_idx is now {qq[2]['last_avail_idx']})" if qq else ""
    hd = f"head {head}, " if head is not None else ""
    return (f"trace: {a.get('vq')} elem {a.get('elem')} = {hd}{a.get('in_num')} device-writable "
            f"and {a.get('out_num')} device-readable buffer(s){last}")


def _virtqueue_fill(c: Ctx) -> str:
    a = c.parent_args() if c.step.kind != "call" else c.args
    ln, idx = a.get("len", 0), a.get("idx", 0)
    qq = c.queue()
    if qq is None:
        return f"the device writes a used entry: {ln} bytes"
    dev, qi, q = qq
    num = q.get("num") or 1
    slot = (q.get("used_idx", 0) + (idx or 0)) % num
    heads = c.cap.current_heads(q)
    buf = f"buffer {heads[min(idx or 0, len(heads) - 1)]}" if heads else "the chain"
    if ln and qi % 2 == 0:
        h = c.hdr_len(dev)
        words = (f"{ln} bytes ({h}-byte header + {ln - h}-byte frame)" if ln > h
                 else f"{ln} bytes")
    elif qi % 2 == 1:
        words = "0 bytes written (a TX buffer is only read by the device)"
    else:
        words = f"{ln} bytes"
    what = "writes" if c.step.kind == "call" else ("has written" if c.step.kind == "return" else "writes")
    return f"the device {what} used entry {slot}: {buf}, {words}"


def _virtqueue_flush(c: Ctx) -> str:
    a = c.parent_args() if c.step.kind != "call" else c.args
    count = a.get("count", 1)
    qq = c.queue()
    if qq is None:
        return f"the device publishes {count} used entr{'y' if count == 1 else 'ies'}"
    q = qq[2]
    if c.step.kind == "call":
        old = q.get("used_idx_ram", 0)
        return (f"the device publishes {count} used entr{'y' if count == 1 else 'ies'}: "
                f"used.idx {old} → {(old + count) & 0xFFFF}; only now can the driver see "
                f"{'it' if count == 1 else 'them'}")
    return f"used.idx is now {q.get('used_idx_ram')} in guest RAM"


def _msix_notify(c: Ctx) -> str:
    v = c.parent_args().get("vector")
    dev = c.device()
    ent = None
    if dev is not None:
        ents = c.m.state.get("devices", {}).get(dev, {}).get("msix", {}).get("entries", [])
        if v is not None and v < len(ents):
            ent = ents[v]
    if c.step.kind == "return":
        return f"MSI-X vector {v} handled"
    if ent is None:
        return f"the device raises MSI-X vector {v}"
    if ent["masked"]:
        return (f"vector {v} is masked: the device only sets its pending bit in the PBA; the "
                f"message goes out when the guest unmasks it")
    return (f"vector {v} is not masked: its table entry says write data 0x{ent['data']:x} to "
            f"address 0x{ent['address']:x}")


def _msi_send(c: Ctx) -> str:
    msg = c.parent_args().get("msg")
    if msg is None or not hasattr(msg, "address"):
        return "the device sends its MSI message"
    return (f"an MSI is just a 4-byte memory write: data 0x{msg.data:x} to address "
            f"0x{msg.address:x} (inside the APIC's window at 0xfee00000)")


def _stl(c: Ctx) -> str:
    a = c.parent_args()
    if "addr" in a:
        return (f"the write of 0x{a.get('val', 0):x} to 0x{a['addr']:x} goes out on the "
                f"memory bus, to whichever region owns that address")
    return "a 4-byte store to the physical address space"


def _apic_send_msi(c: Ctx) -> str:
    a = c.parent_args()
    if "addr" not in a:
        return "the APIC decodes the MSI"
    dest = (a["addr"] >> 12) & 0xFF
    return (f"the local APIC decodes the write: destination APIC {dest}, vector "
            f"{a['data'] & 0xFF} (0x{a['data'] & 0xFF:x})")


def _apic_deliver(c: Ctx) -> str:
    v = c.args.get("vector", c.parent_args().get("vector"))
    if c.step.kind == "return":
        return f"vector {v} is now pending in the CPU's IRR"
    return f"vector {v} is set in the interrupt request register (IRR): the vCPU will take it"


def _handle_edge_irq(c: Ctx) -> str:
    v = c.parent_args().get("vector")
    if c.step.kind == "return":
        return f"the guest's handler for vector {v} is done"
    return (f"the vCPU takes vector {v} (its IRR bit moves to the ISR) and runs the guest "
            f"kernel's handler for it")


def _get_buf(c: Ctx) -> str | None:
    if c.step.kind == "call":
        return "the driver looks at the used ring: is there an entry past last_used_idx?"
    r = c.ret()
    if r is None:
        return "returns nothing: no new used entry (last_used_idx = used.idx)"
    text = str(r)
    if text.startswith("(") and "," in text:
        addr, ln = text.strip("()").split(",", 1)
        try:
            return f"returns a used buffer: address {hex(int(addr))}, {int(ln)} bytes written"
        except ValueError:
            pass
    return f"returns {text}"


def _kick_prepare(c: Ctx) -> str:
    if c.step.kind == "call":
        return ("does the device want a kick? (with EVENT_IDX: did avail.idx pass avail_event? "
                "otherwise: is VRING_USED_F_NO_NOTIFY clear?)")
    return ("returns true: the driver must notify the device" if c.ret()
            else "returns false: the device asked not to be notified; no VM exit")


def _should_notify(c: Ctx) -> str:
    if c.step.kind == "call":
        return ("does the driver want an interrupt? (with EVENT_IDX: did used.idx pass "
                "used_event? otherwise: is VRING_AVAIL_F_NO_INTERRUPT clear?)")
    return ("returns true: the guest is interrupted" if c.ret()
            else "returns false: the driver suppressed interrupts; none is sent")


def _set_notification(c: Ctx) -> str:
    en = c.parent_args().get("enable")
    if c.step.kind == "return":
        return None  # type: ignore[return-value]
    if en:
        return "the device asks the driver for kicks again (it has run out of work)"
    return ("the device tells the driver it needs no kicks while it works through the queue "
            "(VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX)")


def _mr_event(c: Ctx) -> str:
    a = c.args
    mr = a.get("mr")
    desc = None
    if mr is not None and hasattr(mr, "describe"):
        try:
            desc = mr.describe(a.get("offset", 0), a.get("value", 0))
        except Exception:  # noqa: BLE001 - a caption must never break the player
            desc = None
    where = "on the vCPU thread" if c.step.context.startswith("vcpu") else "in the main loop"
    verb = "reads" if c.step.name.endswith("read") else "writes"
    if desc:
        return f"trace: a memory access {where}: {desc}"
    who = "the guest" if c.step.context.startswith("vcpu") else "QEMU"
    name = getattr(mr, "name", "a memory region")
    return (f"trace: {who} {verb} 0x{a.get('value', 0):x} at offset 0x{a.get('offset', 0):x} "
            f"of {name}")


def _apic_writel(c: Ctx) -> str:
    note = str(c.args.get("note", "")).strip()
    if "EOI" in note:
        return f"the guest writes the APIC's EOI register: end of interrupt {note}"
    return f"the guest writes APIC register 0x{c.args.get('addr', 0):x} = 0x{c.args.get('val', 0):x}"


def _queue_append(c: Ctx) -> str:
    a = c.args
    return (f"{a.get('netdev')} cannot take it now: the {a.get('size')}-byte packet from "
            f"{a.get('sender')} waits in its NetQueue ({a.get('why')})")


def _net_drop(c: Ctx) -> str:
    a = c.args
    return f"{a.get('netdev')} dropped a {a.get('size')}-byte frame: {a.get('reason')}"


def _sender(c: Ctx) -> str:
    """Who sends, from the frames around the step: the TAP backend, a NIC or a hub."""
    for f in reversed(c.m.frames):
        if f.src == "net/tap.c":
            return "the TAP backend"
        if f.src == "net/hub.c":
            return "the hub, through one of its ports,"
        if f.src.startswith(("hw/net", "hw/virtio")):
            return "the NIC"
    return "the sender"


def _size(c: Ctx) -> str:
    s = c.parent_args().get("size")
    return f"{s}-byte " if s is not None else ""


def _f(text: str) -> Template:
    return lambda c: text


TEMPLATES: dict[str, Template] = {
    "call:tap_send": _f("the TAP file descriptor is readable: QEMU's main loop reads one frame "
                        "the host wrote into the TAP device"),
    "return:tap_send": _f("tap_send is done with this frame; the main loop goes on"),
    "call:qemu_send_packet_async": lambda c: (
        f"{_sender(c)} sends the {_size(c)}frame to its peer; if the peer is busy the frame waits "
        "and the sender is told when it was delivered" + (
            " (only then is the TAP read again)" if _sender(c) == "the TAP backend" else "")),
    "call:qemu_send_packet": lambda c: (f"{_sender(c)} sends the {_size(c)}frame to its peer "
                                        "(nobody waits for it if it has to be queued)"),
    "call:qemu_send_packet_async_with_flags": _f("picks the peer's incoming NetQueue and sends "
                                                 "the packet through it"),
    "call:qemu_net_queue_send": _f("deliver now if the receiver can take it, else append the "
                                   "packet to the queue and tell the sender to wait"),
    "call:qemu_net_queue_send_iov": _f("deliver now if the receiver can take it, else append "
                                       "the packet to the queue"),
    "call:qemu_net_queue_deliver": lambda c: (f"hands the {_size(c)}packet to the receiver; the "
                                              "queue is marked 'delivering' meanwhile"),
    "call:qemu_deliver_packet_iov": _f("calls the receiver's nc->info->receive function"),
    "return:qemu_deliver_packet_iov": lambda c: (f"the receiver took {c.ret()} bytes"
                                                 if isinstance(c.ret(), int) and c.ret() > 0
                                                 else f"the receiver returned {c.ret()}: "
                                                 "0 means 'busy, queue it'"),
    "call:qemu_net_queue_flush": _f("delivers the packets waiting in this queue, oldest first, "
                                    "until the receiver refuses one"),
    "call:qemu_flush_queued_packets": _f("the receiver can take packets again: flush its queue"),
    "call:virtio_net_receive": _f("the virtio-net device model receives the frame from its peer"),
    "call:virtio_net_receive_rcu": _f("takes RX buffers the guest posted, copies the virtio-net "
                                      "header and the frame into guest RAM, then fills and "
                                      "flushes the used ring"),
    "return:virtio_net_receive_rcu": lambda c: f"the device consumed {c.ret()} bytes",
    "virtio_queue_set_notification": _set_notification,
    "call:virtqueue_pop": _virtqueue_pop_call,
    "return:virtqueue_pop": _virtqueue_pop_ret,
    "event:virtqueue_pop": _virtqueue_pop_event,
    "event:virtqueue_alloc_element": lambda c: (f"trace: QEMU allocates element "
                                                f"{c.args.get('elem')} for the chain "
                                                f"({c.args.get('in_num')} in, "
                                                f"{c.args.get('out_num')} out)"),
    "call:virtqueue_fill": _virtqueue_fill,
    "return:virtqueue_fill": _virtqueue_fill,
    "call:virtqueue_flush": _virtqueue_flush,
    "return:virtqueue_flush": _virtqueue_flush,
    "call:virtqueue_push": lambda c: (f"virtqueue_push = virtqueue_fill + virtqueue_flush for one "
                                      f"element, {c.args.get('len')} bytes written"),
    "call:virtio_notify": _f("the device finished work on the queue: should it interrupt the guest?"),
    "virtio_should_notify": _should_notify,
    "event:virtio_notify": lambda c: f"trace: virtio_notify for {c.args.get('vq')}: the guest is told",
    "call:virtio_notify_vector": lambda c: (f"the queue's interrupt is MSI-X vector "
                                            f"{c.args.get('vector')}"),
    "call:virtio_pci_notify": lambda c: (f"virtio-pci raises MSI-X vector {c.args.get('vector')} "
                                         "(without MSI-X it would set the ISR bit and raise INTx)"),
    "msix_notify": _msix_notify,
    "call:msi_send_message": _msi_send,
    "call:address_space_stl_le": _stl,
    "call:address_space_stl_internal": _f("finds the memory region that owns the address (the "
                                          "APIC's MSI window) and dispatches the write to it"),
    "call:memory_region_dispatch_write": lambda c: (
        f"a write of 0x{c.args.get('value', 0):x} at offset 0x{c.args.get('offset', 0):x} of "
        f"{c.cap.region_of(c.m.k)}: its write handler runs" + (
            " (a VM exit: the guest stops, QEMU emulates the access)"
            if c.step.context.startswith("vcpu") else "")),
    "call:memory_region_dispatch_read": lambda c: (
        f"a read at offset 0x{c.args.get('offset', 0):x} of {c.cap.region_of(c.m.k)}" + (
            " (a VM exit: the guest stops, QEMU emulates the access)"
            if c.step.context.startswith("vcpu") else "")),
    "event:memory_region_ops_write": _mr_event,
    "event:memory_region_ops_read": _mr_event,
    "call:apic_mem_write": lambda c: (f"the local APIC's MMIO handler sees a write at offset "
                                      f"0x{c.args.get('offset', 0):x}"),
    "call:apic_send_msi": _apic_send_msi,
    "call:apic_deliver_irq": _apic_deliver,
    "return:apic_deliver_irq": _apic_deliver,
    "event:apic_mem_writel": _apic_writel,
    "handle_edge_irq": _handle_edge_irq,
    "call:handle_fasteoi_irq": lambda c: (f"the vCPU takes vector {c.args.get('vector')} (a "
                                          "level-triggered INTx through the I/O APIC) and runs "
                                          "the handler"),
    "call:vring_interrupt": _f("Linux's virtio interrupt handler: is there news in the used "
                               "ring? then call the queue's callback"),
    "call:skb_recv_done": _f("the virtio-net driver's RX callback: turn off RX interrupts and "
                             "schedule NAPI polling"),
    "call:skb_xmit_done": _f("the TX-complete callback: turn off TX interrupts and schedule TX "
                             "NAPI to reclaim the sent buffers"),
    "call:virtqueue_disable_cb": _f("the driver tells the device it wants no interrupts for now "
                                    "(VRING_AVAIL_F_NO_INTERRUPT, or an old used_event)"),
    "call:virtqueue_enable_cb_delayed": _f("re-enable interrupts, but only after most pending "
                                           "buffers are used (moves used_event ahead)"),
    "call:virtqueue_enable_cb_prepare": _f("re-enable interrupts: write used_event = "
                                           "last_used_idx and remember where we stopped"),
    "call:virtqueue_poll": _f("did the device add used entries while interrupts were off?"),
    "return:virtqueue_poll": lambda c: ("returns true: more work arrived, poll again" if c.ret()
                                        else "returns false: nothing new, NAPI is done"),
    "call:net_rx_action": _f("the NET_RX softirq runs the scheduled NAPI polls"),
    "call:virtnet_poll": _f("NAPI poll: the driver collects received buffers from the RX used ring"),
    "call:virtnet_poll_tx": _f("TX NAPI poll: reclaim the buffers the device has sent"),
    "virtqueue_get_buf": _get_buf,
    "call:free_old_xmit_skbs": _f("reclaim TX buffers the device has finished with"),
    "call:receive_buf": lambda c: (f"the driver strips the {c.hdr_len()}-byte virtio-net header and "
                                   f"hands the {c.args.get('len', 0) - c.hdr_len()}-byte frame to "
                                   "the network stack" if c.args.get("len") else
                                   "the driver hands the frame to the network stack"),
    "call:netif_receive_skb": _f("the guest's network stack handles the frame"),
    "call:dev_queue_xmit": _f("the guest's stack sends a frame out through the NIC"),
    "call:drivers/net/virtio_net.c:start_xmit": _f("the virtio-net driver puts the frame in the TX ring"),
    "call:virtqueue_add_outbuf": _f("the driver writes a descriptor for the frame and publishes "
                                    "its head in the available ring (avail.idx + 1)"),
    "virtqueue_kick_prepare": _kick_prepare,
    "call:virtqueue_notify": _f("the driver notifies (kicks) the device"),
    "call:vp_notify": _f("the kick: the driver writes the queue's index to its notify register, "
                         "an MMIO write that traps to the hypervisor (a VM exit)"),
    "call:virtio_queue_host_notifier_read": _f("the kick arrives through the queue's ioeventfd: "
                                               "the main loop reads it"),
    "call:virtio_queue_notify": lambda c: (f"queue {c.args.get('n')} was kicked: its output "
                                           "handler runs"),
    "event:virtio_queue_notify": lambda c: f"trace: virtio_queue_notify for {c.args.get('vq')}",
    "call:virtio_net_handle_tx_bh": _f("does not transmit here: it schedules the TX bottom half "
                                       "and turns kicks off meanwhile"),
    "call:virtio_net_tx_bh": _f("the TX bottom half runs in the main loop"),
    "call:virtio_net_flush_tx": _f("takes every chain from the TX available ring and sends each "
                                   "frame to the peer"),
    "return:virtio_net_flush_tx": lambda c: f"sent {c.ret()} frame(s)",
    "call:qemu_sendv_packet_async": _f("the device sends the frame to its peer"),
    "call:qemu_flush_or_purge_queued_packets": _f("delivers (or, if the peer is gone, drops) the "
                                                  "packets waiting for this client"),
    "call:xmit_seg": _f("the e1000 model finishes a TX segment and sends it"),
    # the guest's e1000 driver (Linux drivers/net/ethernet/intel/e1000/e1000_main.c)
    "call:e1000_intr": _f("the e1000 driver's interrupt handler: reads ICR (which clears it "
                          "and lowers INTA#), masks interrupts (IMC) and schedules NAPI"),
    "call:e1000_clean": _f("NAPI poll of the e1000 driver: clean the TX ring, then the RX ring"),
    "call:e1000_clean_rx_irq": _f("the driver takes the RX descriptors the NIC marked done (DD) "
                                  "and hands their frames to the stack"),
    "call:e1000_clean_tx_irq": _f("the driver reclaims the TX descriptors the NIC marked done (DD)"),
    "call:alloc_rx_buffers": lambda c: (f"the driver gives {c.args.get('cleaned_count', 'the')} "
                                        "cleaned RX descriptor(s) back to the NIC by moving RDT"),
    "call:e1000_xmit_frame": _f("the e1000 driver puts the frame in a TX descriptor and moves "
                                "TDT: the NIC sends it inside that register write"),
    "call:tap_receive_iov": _f("the TAP backend writes the frame to the TAP file descriptor: "
                               "the host's network stack receives it"),
    "event:net_queue_append": _queue_append,
    "event:net_drop": _net_drop,
    "event:guest": lambda c: f"guest kernel: {c.args.get('what')}",
    # e1000 (hw/net/e1000.c)
    "call:e1000_receive": _f("the e1000 model receives a frame: it writes it into the buffer "
                             "of the RX descriptor at the head (RDH) and sets DD|EOP"),
    "call:e1000_receive_iov": _f("the e1000 model receives a frame: it writes it into the "
                                 "buffer of the RX descriptor at the head (RDH) and sets DD|EOP"),
    "call:e1000_can_receive": _f("is there an RX descriptor the NIC owns (RDH != RDT)?"),
    "return:e1000_can_receive": lambda c: ("returns true: a buffer is free" if c.ret() else
                                           "returns false: no buffer; the frame waits in "
                                           "QEMU's queue"),
    "call:set_ics": _f("sets interrupt cause bits in ICR"),
    "call:set_interrupt_cause": _f("recomputes INTA#: high while ICR & IMS is not 0"),
    "call:e1000_mmio_write": lambda c: (f"the guest writes 0x{c.args.get('val', 0):x} to register "
                                        f"offset 0x{c.args.get('addr', 0):x} (a VM exit)"),
    "call:e1000_mmio_read": lambda c: (f"the guest reads register offset "
                                       f"0x{c.args.get('addr', 0):x} (a VM exit)"),
    "call:hw/net/e1000.c:start_xmit": _f("the e1000 model sends every descriptor between TDH "
                                         "and TDT"),
    "call:process_tx_desc": _f("the e1000 model processes one TX descriptor"),
    "call:e1000_send_packet": _f("the e1000 model hands a frame to its peer"),
    "call:e1000_mit_timer": _f("the interrupt mitigation timer expired: raise the held-back "
                               "interrupt"),
    "call:kvm_send_msi": _f("KVM: QEMU hands the MSI to the kernel's irqchip (KVM_SIGNAL_MSI)"),
    "call:kvm_set_msi": _f("KVM's in-kernel APIC receives the MSI"),
    "call:kvm_set_irq": _f("KVM: an INTx line level goes to the in-kernel I/O APIC"),
}


class Captioner:
    """Captions for the steps of one recording (see the module docstring)."""

    def __init__(self, replay: "Replay") -> None:
        self.replay = replay
        self.elem_head: dict[Any, int] = {}
        self._vq: dict[int, str] = {}
        self._dev: dict[int, str] = {}
        self._annotate()

    def _annotate(self) -> None:
        """Which virtqueue and device each call works on: from the trace events under it."""
        rp = self.replay
        machine = rp.machine
        by_vdev: dict[int, str] = {}
        virtio_devs: list[str] = []
        if machine is not None:
            for dev_id, dev in machine.devices.items():
                vdev = getattr(dev, "vdev", None)
                if vdev is not None:
                    by_vdev[id(vdev)] = dev_id
                    virtio_devs.append(dev_id)
        self._only_virtio = virtio_devs[0] if len(virtio_devs) == 1 else None
        base = rp.base
        open_calls: list[int] = []
        for k, s in enumerate(rp.steps):
            if s.kind == "call":
                open_calls.append(k)
            elif s.kind == "return":
                if open_calls:
                    open_calls.pop()
                if s.parent - base in self._vq:
                    self._vq[k] = self._vq[s.parent - base]
                continue
            a = s.args
            vq = a.get("vq") if s.kind == "event" else None
            vdev = a.get("vdev") if s.kind == "event" else None
            if isinstance(vq, str):
                self._vq[k] = vq
                for j in reversed(open_calls):
                    if j in self._vq:
                        break
                    self._vq[j] = vq
            if vdev is not None and id(vdev) in by_vdev:
                name = by_vdev[id(vdev)]
                self._dev[k] = name
                for j in reversed(open_calls):
                    if j in self._dev:
                        break
                    self._dev[j] = name
        # a return step works on what its call worked on
        for k, s in enumerate(rp.steps):
            if s.kind == "return" and s.parent - base in self._dev:
                self._dev[k] = self._dev[s.parent - base]

    def vq_of(self, k: int) -> str | None:
        if k in self._vq:
            return self._vq[k]
        s = self.replay.steps[k]
        p = s.parent - self.replay.base
        while p >= 0:
            if p in self._vq:
                return self._vq[p]
            p = self.replay.steps[p].parent - self.replay.base
        return None

    def device_of(self, k: int) -> str | None:
        steps, base = self.replay.steps, self.replay.base
        j = k
        while j >= 0:
            if j in self._dev:
                return self._dev[j]
            j = steps[j].parent - base
        return self._only_virtio

    def region_of(self, k: int) -> str:
        """The memory region a dispatch call at step ``k`` reaches (from the trace event
        that follows it), in words."""
        steps = self.replay.steps
        if k + 1 < len(steps):
            nxt = steps[k + 1]
            mr = nxt.args.get("mr") if nxt.kind == "event" else None
            if mr is not None:
                name = getattr(mr, "name", None)
                if name:
                    return f"the region {name}"
        return "a device's memory region"

    @staticmethod
    def head_in_text(r: Any) -> int | None:
        text = str(r)
        if "head=" in text:
            try:
                return int(text.split("head=", 1)[1].split()[0])
            except ValueError:
                return None
        return None

    def current_heads(self, q: dict[str, Any]) -> list[int]:
        from .replay import in_flight_heads
        return in_flight_heads(q)

    def caption(self, m: "Moment") -> str:
        """The sentence for moment ``m`` (moments must come in order)."""
        s = m.step
        c = Ctx(m, self)
        if s.kind == "event" and s.name == "virtqueue_pop":
            qq = c.queue()
            if qq is not None:
                q = qq[2]
                num = q.get("num") or 1
                self.elem_head[s.args.get("elem")] = q["avail_ring"][(q["last_avail_idx"] - 1) % num]
        text = None
        for key in (f"{s.kind}:{s.src}:{s.name}", f"{s.kind}:{s.name}", s.name):
            t = TEMPLATES.get(key)
            if t is not None:
                try:
                    text = t(c)
                except Exception:  # noqa: BLE001 - a caption must never break the player
                    text = None
                if text:
                    break
        if not text:
            text = generic(m)
        return f"{s.name}: {text}"


def generic(m: "Moment") -> str:
    """The sentence for a step no template knows."""
    s = m.step
    if s.kind == "call":
        shown = fmt_args(s.args)
        return f"a call into {s.src}" + (f" with {shown}" if shown else "")
    if s.kind == "return":
        ret = s.args.get("ret")
        caller = m.frames[-2].name if len(m.frames) >= 2 else "the main loop"
        if ret is None:
            return f"returns to {caller}"
        return f"returns {fmt_value(ret)} to {caller}"
    fmt = getattr(s.tp, "fmt", None)
    if fmt:
        try:
            args = {k: fmt_value(v) if not isinstance(v, (int, str)) else v
                    for k, v in s.args.items()}
            return f"trace event from {s.src}: {fmt.format(**args)}"
        except (KeyError, ValueError, IndexError):
            pass
    return f"trace event from {s.src}: {fmt_args(s.args)}"


def step_label(m: "Moment") -> str:
    """The line above the caption: kind, source file, thread and virtual time."""
    s = m.step
    kind = {"call": "call", "return": "return", "event": "trace event"}.get(s.kind, s.kind)
    return (f"{kind} · {s.src} · {thread_title(s.context)} · t = {s.time_ns / 1000:.3f} µs")
