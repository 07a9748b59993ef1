"""The pc machine: RAM, the PCI bus, the APICs, netdevs, NICs and the guest (hw/i386/pc.c).

``Machine.from_cmdline`` reads a QEMU command line (``system/vl.py``), then builds what QEMU
builds: each ``-netdev`` backend, each hub and hub port, each NIC on PCI bus 0 peered with
its backend, the local APIC window and the I/O APIC, and (unless ``guest=None``) a
simulated Linux guest that finds its NICs by probing PCI configuration space.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .accel.cpu import X86CPU
from .accel.kvm import kvm_set_irq
from .hw.intc.ioapic import IOAPICCommonState
from .hw.intc.apic import APIC_DEFAULT_ADDRESS, APICCommonState
from .hw.pci.pci import PCIBus, PCIDevice
from .net.hub import Hubs
from .net.net import NetClientState
from .net.tap import HostEnd, SimTap, TAPState
from .system.main_loop import VCPU_COST_NS, MainLoop
from .system.memory import RAM, AddressSpace
from .system.vl import CmdlineError, MachineConfig, NicConfig, parse_cmdline
from .trace import Recorder, Stats

#: where the firmware puts 32-bit memory BARs (below the I/O APIC at 0xFEC00000)
PCI_MMIO_BASE = 0xFE000000
PCI_IO_BASE = 0xC000
GUEST_IP = "10.0.2.15"


def _nic_models() -> dict[str, Callable[["Machine", NicConfig, NetClientState | None], PCIDevice]]:
    from .hw.net import NIC_MODELS
    return NIC_MODELS


class PCIHostBridge(PCIDevice):
    """i440FX host bridge at 00:00.0 (so bus 0 looks as on QEMU's pc machine)."""

    subsystem_vendor_id, subsystem_id = 0x1AF4, 0x1100      # QEMU's default subsystem ids

    vendor_id, device_id, class_id = 0x8086, 0x1237, 0x0600


class PIIX3(PCIDevice):
    """PIIX3 PCI-to-ISA bridge at 00:01.0 (routes PCI INTx to the I/O APIC)."""

    subsystem_vendor_id, subsystem_id = 0x1AF4, 0x1100

    vendor_id, device_id, class_id = 0x8086, 0x7000, 0x0601


class VGA(PCIDevice):
    """QEMU's default VGA at 00:02.0; present so that the first NIC lands at 00:03.0."""

    subsystem_vendor_id, subsystem_id = 0x1AF4, 0x1100

    vendor_id, device_id, class_id = 0x1234, 0x1111, 0x0300


class Machine:
    """A QEMU pc machine with its network; see API.md."""

    def __init__(self, config: MachineConfig, guest: str | None = "linux") -> None:
        self.config = config
        self.accel = config.accel
        self.ignored_options = list(config.ignored_options)
        self.loop = MainLoop()
        self.loop.cost_ns["vcpu"] = VCPU_COST_NS[self.accel]
        if config.ram_size > PCI_MMIO_BASE:
            # QEMU's pc puts RAM beyond the PCI hole above 4 GiB; that split is not modelled
            raise CmdlineError("-m", f"ram size too large: qnetlearn's pc machine keeps RAM "
                               f"below the PCI hole (at most {PCI_MMIO_BASE >> 20} MiB)")
        self.ram = RAM(config.ram_size)
        self.memory = AddressSpace("memory", self.ram)
        self.pci = PCIBus(self.memory, self.loop)
        kvm = self.accel == "kvm"
        self.apic = APICCommonState(lambda: self.loop.clock_ns, in_kernel=kvm)
        self.memory.map(APIC_DEFAULT_ADDRESS, self.apic.region)
        self.ioapic = IOAPICCommonState(self.memory, self.loop, self.apic if kvm else None)
        ioapic = self.ioapic
        self.pci.set_gsi = (lambda gsi, level: kvm_set_irq(ioapic, gsi, level)) if kvm \
            else ioapic.set_irq
        self.apic.eoi_broadcast = ioapic.eoi_broadcast
        self.cpu = X86CPU(self.loop, self.memory, self.pci, self.apic)
        self.cpu.accel = self.accel
        if kvm:
            self.cpu.in_kernel_regions = {self.apic.region, ioapic.region}
        for slot, dev in enumerate((PCIHostBridge("i440FX"), PIIX3("PIIX3"), VGA("VGA"))):
            self.pci.register(dev, slot)
        self.hubs = Hubs()
        self.netdevs: dict[str, NetClientState] = {}
        self.taps: dict[str, TAPState] = {}
        self.hosts: dict[str, HostEnd] = {}
        self.nics: list[PCIDevice] = []
        self.devices: dict[str, PCIDevice] = {}
        self._build_network()
        self.guest: Any = None
        if guest is not None:
            from .guest import LinuxGuest
            self.guest = LinuxGuest(self.cpu, ip=GUEST_IP, static_arp={
                h.ip: h.mac for h in self.hosts.values()})
        self.booted = False
        from .monitor import machine_created
        machine_created(self)          # -qmp / -monitor sockets; the notebook magic's machine

    @classmethod
    def from_cmdline(cls, cmdline: str | Sequence[str], guest: str | None = "linux") -> "Machine":
        """Build the machine a QEMU command line describes (API.md)."""
        return cls(parse_cmdline(cmdline), guest=guest)

    # -- building ---------------------------------------------------------------------
    def _build_network(self) -> None:
        cfg = self.config
        pending_peer: dict[str, str] = {}
        for nd in cfg.netdevs:
            peer = self.netdevs.get(nd.peer) if nd.peer else None
            if nd.type == "tap":
                nc = self._new_tap(nd.id, nd.opts, peer)
            elif nd.type == "hubport":
                nc = self.hubs.net_hub_add_port(nd.hubid or 0, nd.id, peer).nc
            else:  # pragma: no cover - vl.py rejects other types
                raise CmdlineError(f"-netdev {nd.type}", "netdev type not modelled")
            if nd.peer and peer is None:
                pending_peer[nd.id] = nd.peer
            self.netdevs[nd.id] = nc
        for a, b in pending_peer.items():       # a -net tap created after its hub port
            na, nb = self.netdevs[a], self.netdevs[b]
            na.peer, nb.peer = nb, na
        models = _nic_models()
        for nic in cfg.nics:
            peer = self.netdevs.get(nic.netdev) if nic.netdev else None
            dev = models[nic.model](self, nic, peer)
            self.pci.register(dev, nic.addr, nic.function)
            self.nics.append(dev)
            self.devices[nic.id or nic.name] = dev
        for tap_id, host in self.hosts.items():   # static ARP, as the goldens were recorded
            nc = self.netdevs[tap_id]
            nic = self._nic_behind(nc)
            if nic is not None:
                host.stack.add_static_arp(GUEST_IP, nic.mac)
                host.default_peer_ip = GUEST_IP

    def _new_tap(self, name: str, opts: dict[str, str], peer: NetClientState | None) -> NetClientState:
        ifname = opts.get("ifname") or f"tap{len(self.taps)}"
        if opts.get("host", "sim") == "kernel":
            from .net.tap_linux import open_kernel_tap
            fd = open_kernel_tap(opts.get("ifname") or "tap%d", opts)   # the kernel numbers it
            tap = TAPState(self.loop, peer, name, fd, fd.ifname, opts)
        else:
            vnet_hdr = opts.get("vnet_hdr", "on").lower() not in ("off", "false", "no")
            tap = TAPState(self.loop, peer, name, SimTap(ifname, vnet_hdr), ifname, opts)
            self.hosts[name] = HostEnd(tap, self.loop.run, lambda: self.loop.clock_ns)
        self.taps[name] = tap
        return tap.nc

    def _nic_behind(self, nc: NetClientState) -> Any:
        """The NIC device a backend reaches directly or through its hub."""
        peer = nc.peer
        if peer is None:
            return None
        if peer.info.type == "nic":
            return peer.opaque
        if peer.info.type == "hubport":          # the first NIC on the hub: the guest's eth0
            for port in reversed(peer.opaque.hub.ports):
                if port.nc.peer is not None and port.nc.peer.info.type == "nic":
                    return port.nc.peer.opaque
        return None

    # -- firmware and running ----------------------------------------------------------
    def boot(self) -> "Machine":
        """Firmware assigns BARs; the guest probes its NICs and fills its RX rings."""
        if self.booted:
            return self
        self._firmware_assign_bars()
        self.booted = True
        if self.guest is not None:
            self.guest.boot()
            self.run()
        return self

    def _firmware_assign_bars(self) -> None:
        """What SeaBIOS does: size each BAR by writing ones, place it, enable decoding."""
        addr = PCI_MMIO_BASE
        port = PCI_IO_BASE
        for devfn in sorted(self.pci.devices):
            dev = self.pci.devices[devfn]
            for num in sorted(dev.bars):
                bar = dev.bars[num]
                off = 0x10 + 4 * num
                dev.config_write(off, 0xFFFFFFFF, 4)
                size = (~dev.config_read(off, 4) & 0xFFFFFFF0) + 1 & 0xFFFFFFFF
                if bar.type & 1:      # port I/O: numbered as SeaBIOS does, never decoded here
                    port = (port + size - 1) & ~(size - 1)
                    dev.config_write(off, port | 1, 4)
                    port += size
                    continue
                addr = (addr + size - 1) & ~(size - 1)
                dev.config_write(off, addr, 4)
                if bar.type & 0x4:
                    dev.config_write(off + 4, 0, 4)
                addr += size
            if dev.bars:
                dev.config_write(0x04, dev.config_read(0x04, 2) | 0x2, 2)
            if dev.interrupt_pin:       # the PIIX3 routing, for the OS to read (0x3c)
                dev.config_write(0x3C, self.pci.gsi_of(dev), 1)

    def step(self) -> bool:
        """Run exactly one event (fd handler, bottom half, timer or guest slice)."""
        return self.loop.step()

    def run(self, timeout: float | None = None, max_events: int = 10_000_000) -> int:
        """Run until nothing is pending; with ``timeout`` also wait on real fds (seconds)."""
        return self.loop.run(timeout=timeout, max_events=max_events)

    @property
    def clock_ns(self) -> int:
        return self.loop.clock_ns

    def record(self, max_steps: int | None = None) -> Recorder:
        """``with vm.record() as rec:`` attaches a recorder to every tracepoint."""
        return Recorder(self, max_steps=max_steps)

    # -- lookups (API.md) --------------------------------------------------------------
    def host(self, netdev_id: str | None = None) -> HostEnd:
        if netdev_id is None:
            if not self.hosts:
                raise KeyError("this machine has no simulated TAP host end")
            return next(iter(self.hosts.values()))
        return self.hosts[netdev_id]

    def device(self, dev_id: str) -> PCIDevice:
        return self.devices[dev_id]

    def netdev(self, netdev_id: str) -> NetClientState:
        return self.netdevs[netdev_id]

    def monitor(self, cmd: str) -> str:
        """Run one HMP command (``info network``, ``x /4x 0x1000``...); QEMU 7.2's output."""
        from .monitor.hmp import hmp_command
        return hmp_command(self, cmd)

    def pci_config_read(self, devfn: int, offset: int, size: int) -> int:
        return self.pci.config_read(devfn, offset, size)

    def pci_config_write(self, devfn: int, offset: int, size: int, value: int) -> None:
        self.pci.config_write(devfn, offset, size, value)

    def irq_level(self, line: int) -> int:
        """Level of INTx GSI ``line`` (the wire-OR of the PCI functions routed to it)."""
        return self.pci.irq_level(line)

    @property
    def stats(self) -> Stats:
        """All counters: the vCPU's exits and accesses, interrupts, each device's and each
        net client's counters (drops by reason), prefixed by who counted them."""
        out = Stats()
        for k, v in self.cpu.stats.items():
            out[f"cpu: {k}"] += v
        for k, v in self.apic.stats.items():
            out[f"apic: {k}"] += v
        for k, v in self.ioapic.stats.items():
            out[f"ioapic: {k}"] += v
        for name, dev in self.devices.items():
            for k, v in dev.stats.items():
                out[f"{name}: {k}"] += v
        for nc in self.all_clients():
            for k, v in nc.stats.items():
                out[f"{nc.name}: {k}"] += v
        return out

    def all_clients(self) -> list[NetClientState]:
        """Every NetClientState: backends, hub ports and NIC front ends."""
        seen: list[NetClientState] = list(self.netdevs.values())
        for dev in self.nics:
            seen.append(dev.nc)  # type: ignore[attr-defined]
        for hub in self.hubs.hubs:
            seen.extend(p.nc for p in hub.ports if p.nc not in seen)
        return seen

    def describe_state(self, r: Any) -> dict[str, Any]:
        """The state a recording shows at one step, read through ``r`` (a StateReader)."""
        out: dict[str, Any] = {"devices": {}, "netqueues": {}}
        for name, dev in self.devices.items():
            out["devices"][name] = dev.state(r)
        for nc in self.all_clients():
            q = nc.incoming_queue
            out["netqueues"][nc.name] = {"count": r.get(q, "nq_count", 0),
                                         "packets": list(r.get(q, "packets", ())),
                                         "receive_disabled": r.get(nc, "receive_disabled", False),
                                         "stats": r.stats(nc.stats)}
        out["apic"] = self.apic.state(r)
        out["ioapic"] = self.ioapic.state(r)
        return out

    def close(self) -> None:
        """Close real TAP devices (their downscript runs) and the monitor sockets."""
        from .monitor import machine_closed
        machine_closed(self)
        for tap in self.taps.values():
            if tap.nc.info.cleanup is not None:
                tap.nc.info.cleanup(tap.nc)
        self.taps.clear()

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
