"""Hubs on whole machines (net/hub.c): several NICs and a TAP on one hub, two hubs apart,
broadcast to every other port exactly once and never back, back-pressure through a hub."""
from __future__ import annotations

import struct

import qnetlearn as qn
from qnetlearn.net.hub import net_hub_port_can_receive
from qnetlearn.net.stack import build_arp, build_udp

RXDESC = struct.Struct("<QHHBBH")
TXDESC = struct.Struct("<QII")
HOST_MAC = "02:00:0a:00:02:02"
BCAST = build_arp(1, HOST_MAC, "10.0.2.2", "00:00:00:00:00:00", "10.0.2.15").ljust(60, b"\0")


class E1000:
    """Just enough of a driver for one e1000 of a machine without a guest."""

    def __init__(self, vm: qn.Machine, devfn: int, ring: int, n: int = 8) -> None:
        self.vm, self.devfn, self.ring, self.n = vm, devfn, ring, n
        self.bar0 = vm.pci_config_read(devfn, 0x10, 4) & ~0xF
        vm.pci_config_write(devfn, 4, 2, vm.pci_config_read(devfn, 4, 2) | 0x6)
        self.bufs = ring + 0x1000
        for i in range(n):
            vm.memory.write_bytes(ring + 16 * i, RXDESC.pack(self.bufs + 2048 * i, 0, 0, 0, 0, 0))
        for off, val in ((0x2800, ring), (0x2804, 0), (0x2808, 16 * n), (0x2810, 0),
                         (0x2818, n - 1), (0x100, 0x2 | 0x8000),             # RCTL EN|BAM
                         (0x3800, ring + 0x8000), (0x3804, 0), (0x3808, 16 * n),
                         (0x3810, 0), (0x3818, 0), (0x400, 0x2)):            # TCTL EN
            self.w(off, val)
        self.tdt = 0

    def w(self, off: int, val: int) -> None:
        self.vm.memory.write(self.bar0 + off, 4, val)

    def r(self, off: int) -> int:
        return self.vm.memory.read(self.bar0 + off, 4)

    def received(self) -> list[bytes]:
        out = []
        for i in range(self.r(0x2810)):                     # up to RDH (no wrap here)
            addr, length, _c, status, _e, _s = RXDESC.unpack(
                self.vm.memory.read_bytes(self.ring + 16 * i, 16))
            assert status & 0x3 == 0x3
            out.append(self.vm.memory.read_bytes(addr, length - 4))
        return out

    def send(self, frame: bytes) -> None:
        buf = self.ring + 0x9000 + 2048 * self.tdt
        self.vm.memory.write_bytes(buf, frame)
        self.vm.memory.write_bytes(self.ring + 0x8000 + 16 * self.tdt,
                                   TXDESC.pack(buf, 0x0B000000 | len(frame), 0))
        self.tdt += 1
        self.w(0x3818, self.tdt)


def machine(line: str) -> tuple[qn.Machine, list[E1000]]:
    vm = qn.Machine.from_cmdline(line, guest=None)
    vm.boot()
    nics = [E1000(vm, dev.devfn, 0x100000 * (k + 1)) for k, dev in enumerate(vm.nics)]
    vm.run()                                                 # RCTL's 1 s hold passes
    return vm, nics


def test_three_ports_broadcast_reaches_the_two_others_once_never_back():
    vm, (a, b) = machine("-net nic,model=e1000 -net nic,model=e1000 -net tap")
    hub = vm.hubs.hubs[0]
    assert len(hub.ports) == 3
    host = vm.host()
    host.send(BCAST)                                          # from the TAP
    vm.run()
    assert a.received() == [BCAST] and b.received() == [BCAST]
    assert host.recv() is None                               # never back to the TAP
    frame = build_udp("52:54:00:12:34:57", "ff:ff:ff:ff:ff:ff", "10.0.2.16", "10.0.2.255",
                      9, 9, b"hi" * 10)                        # 62 bytes: no padding
    b.send(frame)                                             # from the second NIC
    vm.run()
    assert a.received() == [BCAST, frame] and b.received() == [BCAST]   # not back to b
    assert host.recv() == frame and host.recv() is None


def test_unicast_still_floods_every_port_and_the_nics_filter_it():
    """A hub does not learn addresses: a frame for NIC a also reaches NIC b, whose receive
    filter drops it (counted)."""
    vm, (a, b) = machine("-net nic,model=e1000 -net nic,model=e1000 -net tap")
    frame = build_udp(HOST_MAC, vm.nics[0].mac, "10.0.2.2", "10.0.2.15", 9, 9, b"x" * 20)
    vm.host().send(frame)
    vm.run()
    assert a.received() == [frame] and b.received() == []
    assert vm.nics[1].stats["drop: receive filter"] == 1


def test_a_virtio_net_and_an_e1000_on_one_hub():
    vm = qn.Machine.from_cmdline("-net nic,model=e1000 -net nic,model=virtio-net-pci "
                                 "-net tap", guest=None)
    ports = vm.hubs.hubs[0].ports
    assert len(ports) == 3
    assert {p.nc.peer.info.type for p in ports} == {"nic", "tap"}
    assert {type(d).__name__ for d in vm.nics} == {"E1000State", "VirtIONetPCI"}


def test_legacy_vlans_are_separate_hubs():
    vm, (a, b) = machine("-net nic,model=e1000,vlan=0 -net nic,model=e1000,vlan=1 "
                         "-net tap,vlan=0")
    assert sorted(h.id for h in vm.hubs.hubs) == [0, 1]
    vm.host().send(BCAST)
    vm.run()
    assert a.received() == [BCAST] and b.received() == []


def test_explicit_hubports():
    vm, (a,) = machine("-netdev tap,id=hn0 -netdev hubport,id=p1,hubid=0,netdev=hn0 "
                       "-netdev hubport,id=p0,hubid=0 -device e1000,netdev=p0")
    assert vm.netdev("p0").peer is vm.nics[0].nc
    vm.host().send(BCAST)
    vm.run()
    assert a.received() == [BCAST]


def test_back_pressure_crosses_the_hub_when_every_nic_is_full():
    vm, (a,) = machine("-net nic,model=e1000 -net tap")
    a.w(0x2818, 2)                                           # only two buffers
    vm.run()
    host = vm.host()
    for k in range(6):
        host.send(BCAST[:-1] + bytes([k]))
    vm.run()
    assert a.r(0x2810) == 2
    tap_port = vm.taps["#net1"].nc.peer if "#net1" in vm.taps else \
        next(iter(vm.taps.values())).nc.peer
    assert not net_hub_port_can_receive(tap_port)            # the only other port is full
    assert len(tap_port.incoming_queue) == 1                 # one waits at the hub port,
    assert len(host.dev.to_qemu) == 3                        # the TAP keeps the rest
    assert vm.nics[0].stats.get("drop: receiver overrun (no RX descriptors)", 0) == 0
    a.w(0x2818, 7)                                           # buffers again: flushed through
    vm.run()
    assert a.r(0x2810) == 6 and len(tap_port.incoming_queue) == 0 and not host.dev.to_qemu
    assert [f[-1] for f in a.received()] == list(range(6))


def test_one_full_nic_does_not_stop_the_hub_for_the_others():
    """QEMU: a hub port can receive while *any* other port can; the full NIC's frames wait
    in its own queue (no sent_cb there, so they are dropped only past 10000)."""
    vm, (a, b) = machine("-net nic,model=e1000 -net nic,model=e1000 -net tap")
    a.w(0x2818, 1)                                           # a: one buffer
    vm.run()
    for k in range(3):
        vm.host().send(BCAST[:-1] + bytes([k]))
    vm.run()
    assert len(b.received()) == 3 and len(a.received()) == 1
    assert len(vm.nics[0].nc.incoming_queue) == 2            # waiting for a's RDT
    a.w(0x2818, 7)
    vm.run()
    assert [f[-1] for f in a.received()] == [0, 1, 2]
