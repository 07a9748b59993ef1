"""The simulated Linux guest: PCI probe, drivers, interrupt handling, a tiny IP stack.

It plays what the golden recordings' Linux 6.1 guest did (``reference/golden-qemu/``):
probe every PCI function, bind virtio-net (1af4:1000 transitional, 1af4:1041 modern) and
e1000 (8086:100e), bring the interfaces up with 10.0.2.15/24 and static ARP entries, and
answer pings. It reaches the machine only through its vCPU (``qnetlearn.accel.cpu``):
loads and stores, PCI configuration cycles, and the interrupt vectors in ``cpu.idt``.
This package never imports the emulated devices' package (``hw``; tests/test_architecture.py
checks it).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from ..net.stack import NetStack, mac_str
from .kernel import GuestError, GuestKernel

if TYPE_CHECKING:  # pragma: no cover
    from ..accel.cpu import X86CPU

__all__ = ["LinuxGuest", "GuestKernel", "GuestError"]

VIRTIO_VENDOR = 0x1AF4
INTEL_VENDOR = 0x8086


def _probe_virtio_net(kernel: GuestKernel, devfn: int, device: int) -> Any:
    from .virtio_net import virtnet_probe
    return virtnet_probe(kernel, devfn, device)


def _probe_e1000(kernel: GuestKernel, devfn: int, device: int) -> Any:
    try:
        mod = importlib.import_module(".e1000", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.e1000":
            raise
        kernel.printk(f"{devfn >> 3:02x}.{devfn & 7}: no e1000 driver in this guest")
        return None
    return mod.probe(kernel, devfn)


#: (vendor, device) -> probe(kernel, devfn, device); like a driver's pci_device_id table
PCI_DRIVERS: dict[tuple[int, int], Callable[[GuestKernel, int, int], Any]] = {
    (VIRTIO_VENDOR, 0x1000): _probe_virtio_net,
    (VIRTIO_VENDOR, 0x1041): _probe_virtio_net,
    (INTEL_VENDOR, 0x100E): _probe_e1000,
}


class LinuxGuest:
    """The guest a Machine runs (API.md, "The simulated guest")."""

    def __init__(self, cpu: "X86CPU", ip: str = "10.0.2.15",
                 static_arp: dict[str, str] | None = None, prefixlen: int = 24) -> None:
        self.cpu = cpu
        self.kernel = GuestKernel(cpu, ip, static_arp, prefixlen)
        self.nics: list[Any] = []
        self.probe_errors: list[tuple[int, str]] = []
        self.booted = False
        self._ident = 0x1000

    # -- what the course reads -------------------------------------------------------------
    @property
    def ip(self) -> str:
        return self.kernel.ip

    @property
    def mac(self) -> str | None:
        """The first NIC's MAC address (``ip link`` form), None before boot."""
        for nic in self.nics:
            return mac_str(nic.mac)
        return None

    @property
    def stack(self) -> NetStack | None:
        return self.kernel.stack

    @property
    def interrupts(self) -> dict[str, int]:
        """Interrupts taken per IRQ name, like /proc/interrupts."""
        return self.kernel.interrupts

    @property
    def dmesg(self) -> list[str]:
        return self.kernel.dmesg

    def __repr__(self) -> str:
        return f"<LinuxGuest {self.ip} nics={[getattr(n, 'name', '?') for n in self.nics]}>"

    # -- boot ----------------------------------------------------------------------------------
    def boot(self) -> "LinuxGuest":
        """Probe PCI and bind drivers on the vCPU, then bring every interface up (what the
        recorded guest's /init did); runs the machine until that work is done."""
        if self.booted:
            return self
        cpu = self.cpu
        cpu.schedule(self._boot)
        cpu.loop.run(until=lambda: self.booted)
        if not self.booted:
            raise GuestError("the guest did not get to run its boot work")
        cpu.loop.run(until=lambda: not cpu.has_work(), max_events=100_000)   # deferred work
        return self

    def _boot(self) -> None:
        k = self.kernel
        for devfn, vendor, device in k.pci_devices():
            probe = PCI_DRIVERS.get((vendor, device))
            if probe is None:
                continue
            try:
                nic = probe(k, devfn, device)
            except (GuestError, MemoryError) as e:
                self.probe_errors.append((devfn, str(e)))
                k.printk(f"{devfn >> 3:02x}.{devfn & 7}: probe failed: {e}")
                continue
            if nic is not None:
                self.nics.append(nic)
        for nic in self.nics:                 # ip link set ethN up
            up = getattr(nic, "open", None)
            if up is not None:
                up()
        self.booted = True

    # -- ping ----------------------------------------------------------------------------------
    def ping(self, ip: str | None = None, count: int = 1,
             timeout_events: int = 100_000) -> list[float | None]:
        """ICMP echo from the guest out through its first NIC; round-trip times in virtual
        microseconds (None: no reply within ``timeout_events`` events)."""
        if not self.booted:
            self.boot()
        st = self.kernel.stack
        if st is None:
            raise GuestError("the guest has no network interface")
        if ip is None:
            ip = next(iter(self.kernel.static_arp), "10.0.2.2")
        self._ident = (self._ident + 1) & 0xFFFF
        ident = self._ident
        run = self.cpu.loop.run
        rtts: list[float | None] = []
        for seq in range(1, count + 1):
            key = (ident, seq)
            self.cpu.schedule(st.ping, ip, ident, seq)
            run(until=lambda: key in st.echo_replies, max_events=timeout_events)
            if key in st.echo_replies:
                rtts.append((st.echo_replies[key] - st.echo_sent[key]) / 1000)
            else:
                rtts.append(None)
        run(max_events=timeout_events)
        return rtts
