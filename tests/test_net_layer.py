"""QEMU's net layer: NetQueue, peers, hubs and the TAP's back-pressure (net/*.c)."""
from __future__ import annotations

import qnetlearn as qn
from qnetlearn.net.hub import Hubs
from qnetlearn.net.net import (NetClientInfo, qemu_flush_queued_packets, qemu_new_net_client,
                               qemu_purge_queued_packets, qemu_send_packet,
                               qemu_send_packet_async, qemu_set_link)
from qnetlearn.net.queue import NQ_MAXLEN
from qnetlearn.net.stack import build_echo_request


class TestNIC:
    """A stand-in receiver: takes frames while ``accept`` is positive, then answers it."""

    __test__ = False

    def __init__(self, name: str = "nic", peer=None) -> None:
        self.got: list[bytes] = []
        self.answer = 1             # 1: take it; 0: busy (queue it); -1: refuse it
        self.nc = qemu_new_net_client(NetClientInfo("nic", receive=self.receive), peer,
                                      "test-nic", name, self)

    def receive(self, nc, buf: bytes) -> int:
        if self.answer > 0:
            self.got.append(bytes(buf))
            return len(buf)
        return self.answer


def sender(name: str = "src"):
    return qemu_new_net_client(NetClientInfo("tap"), None, "test", name)


def accounted(nc) -> int:
    peer_q = nc.peer.incoming_queue if nc.peer else None
    queued = sum(1 for p in peer_q.packets if p.sender is nc) if peer_q else 0
    drops = sum(v for k, v in nc.stats.items() if k.startswith("drop: "))
    return nc.stats["tx delivered"] + queued + drops


def test_deliver_at_once_when_the_receiver_takes_it():
    src = sender()
    nic = TestNIC(peer=src)
    assert qemu_send_packet_async(src, b"a" * 60, 60, None) == 60
    assert nic.got == [b"a" * 60]
    assert src.stats["tx"] == src.stats["tx delivered"] == 1


def test_busy_receiver_queues_and_sent_cb_fires_in_order_on_flush():
    src = sender()
    nic = TestNIC(peer=src)
    nic.answer = 0
    calls: list[tuple[str, int]] = []
    for i in range(3):
        ret = qemu_send_packet_async(src, bytes([i]) * 60, 60,
                                     lambda nc, n, i=i: calls.append((nc.name, i)))
        assert ret == 0
    q = nic.nc.incoming_queue
    assert len(q) == 3 and nic.nc.receive_disabled
    assert accounted(src) == src.stats["tx"] == 3
    nic.answer = 1
    qemu_flush_queued_packets(nic.nc)
    assert [g[0] for g in nic.got] == [0, 1, 2]          # FIFO
    assert calls == [("src", 0), ("src", 1), ("src", 2)]  # sent_cb in order
    assert len(q) == 0 and not nic.nc.receive_disabled


def test_flush_stops_at_the_first_refusal_and_keeps_order():
    src = sender()
    nic = TestNIC(peer=src)
    nic.answer = 0
    for i in range(4):
        qemu_send_packet_async(src, bytes([i]) * 60, 60, None)
    nic.answer = 1

    def take_two(nc, buf):
        if len(nic.got) >= 2:
            return 0
        nic.got.append(bytes(buf))
        return len(buf)
    nic.nc.info.receive = take_two
    qemu_flush_queued_packets(nic.nc)
    assert [g[0] for g in nic.got] == [0, 1]
    assert [p.data[0] for p in nic.nc.incoming_queue.packets] == [2, 3]


def test_full_queue_drops_only_packets_without_sent_cb_and_counts_them():
    src = sender()
    nic = TestNIC(peer=src)
    nic.answer = 0
    q = nic.nc.incoming_queue
    q.nq_maxlen = 4
    for _ in range(6):
        qemu_send_packet(src, b"x" * 60, 60)
    assert len(q) == 4 and src.stats["drop: queue full"] == 2
    qemu_send_packet_async(src, b"y" * 60, 60, lambda nc, n: None)   # has a sent_cb: kept
    assert len(q) == 5
    assert accounted(src) == src.stats["tx"] == 7
    assert NQ_MAXLEN == 10000


def test_purge_drops_the_senders_packets_and_tells_it():
    src = sender()
    nic = TestNIC(peer=src)
    nic.answer = 0
    told = []
    qemu_send_packet_async(src, b"x" * 60, 60, lambda nc, n: told.append(n))
    qemu_send_packet_async(src, b"y" * 60, 60, lambda nc, n: told.append(n))
    qemu_purge_queued_packets(src)
    assert len(nic.nc.incoming_queue) == 0 and told == [0, 0]
    assert src.stats["drop: purged"] == 2 and accounted(src) == src.stats["tx"]


def test_refused_and_link_down_and_no_peer_are_counted_drops():
    src = sender()
    nic = TestNIC(peer=src)
    nic.answer = -1
    qemu_send_packet(src, b"x" * 60, 60)
    assert src.stats["drop: receiver refused it"] == 1
    nic.answer = 1
    qemu_set_link(src, False)
    qemu_send_packet(src, b"x" * 60, 60)
    assert src.stats["drop: link down"] == 1 and nic.got == []
    qemu_set_link(src, True)
    qemu_send_packet(src, b"x" * 60, 60)
    assert len(nic.got) == 1
    lonely = sender("lonely")
    qemu_send_packet(lonely, b"x" * 60, 60)
    assert lonely.stats["drop: no peer"] == 1
    assert accounted(src) == src.stats["tx"] == 3


def test_hub_forwards_to_every_other_port_once_never_back():
    hubs = Hubs()
    nics = [TestNIC(f"nic{i}") for i in range(3)]
    ports = [hubs.net_hub_add_port(0, None, n.nc) for n in nics]
    assert [p.nc.name for p in ports] == ["hub0port0", "hub0port1", "hub0port2"]
    bcast = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(46)
    qemu_send_packet(nics[1].nc, bcast, len(bcast))
    assert [len(n.got) for n in nics] == [1, 0, 1]
    assert nics[0].got == [bcast] and nics[2].got == [bcast]


def test_hub_back_pressure_queues_at_the_port_and_flushes_through_the_hub():
    hubs = Hubs()
    tapside = sender("tap")
    nic = TestNIC("nic")
    hubs.net_hub_add_port(0, None, tapside)
    nic_port = hubs.net_hub_add_port(0, None, nic.nc)
    nic.nc.info.can_receive = lambda nc: nic.answer > 0
    nic.answer = 0
    ret = qemu_send_packet_async(tapside, b"z" * 60, 60, lambda nc, n: None)
    assert ret == 0 and len(tapside.peer.incoming_queue) == 1
    nic.answer = 1
    qemu_flush_queued_packets(nic.nc)
    assert nic.got == [b"z" * 60] and len(tapside.peer.incoming_queue) == 0
    assert nic_port.nc.stats["tx delivered"] == 1


def test_tap_stops_reading_while_the_peer_cannot_receive():
    """The seed's point: back-pressure pauses the TAP, nothing is dropped."""
    # a machine with only a TAP, and a test NIC peered to it
    vm = qn.Machine.from_cmdline("-netdev tap,id=hn0,vnet_hdr=off", guest=None)
    tap_nc = vm.netdev("hn0")
    nic = TestNIC("nic", peer=tap_nc)
    nic.answer = 0
    host = vm.host("hn0")
    frames = [build_echo_request("02:00:0a:00:02:02", "52:54:00:12:34:56", "10.0.2.2",
                                 "10.0.2.15", 1, s) for s in range(5)]
    for f in frames:
        host.send(f)
    vm.run()
    tap = vm.taps["hn0"]
    assert not tap.read_poll and len(nic.nc.incoming_queue) == 1
    assert len(tap.fd.to_qemu) == 4                     # the kernel keeps the rest
    nic.answer = 1
    qemu_flush_queued_packets(nic.nc)                   # tap_send_completed re-enables reads
    assert tap.read_poll
    vm.run()
    assert nic.got == frames
    assert tap_nc.stats["tx"] == tap_nc.stats["tx delivered"] == 5
