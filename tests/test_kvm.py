"""The seed's machine under KVM: in-kernel irqchip, ioeventfd, exits counted (accel/kvm)."""
from __future__ import annotations

import qnetlearn as qn
from qnetlearn.net.stack import build_echo_request
from spec_driver import SpecDriver

NET = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
TAIL = ["address_space_stl_le", "address_space_stl_internal", "memory_region_dispatch_write"]


def rx_machine(accel: str):
    vm = qn.Machine.from_cmdline(f"-machine pc,accel={accel} {NET}", guest=None)
    vm.boot()
    d = SpecDriver(vm, vm.device("net-pci0").devfn)
    d.add_rx_buffers(4)
    vm.run()
    return vm, d


def echo() -> bytes:
    return build_echo_request("02:00:0a:00:02:02", "52:54:00:12:34:56", "10.0.2.2",
                              "10.0.2.15", 5, 1)


def test_accelerator_is_chosen_as_qemu_chooses_it():
    assert qn.Machine.from_cmdline(NET, guest=None).accel == "tcg"
    assert qn.Machine.from_cmdline(f"-enable-kvm {NET}", guest=None).accel == "kvm"
    assert qn.Machine.from_cmdline(f"-accel kvm {NET}", guest=None).accel == "kvm"
    assert qn.Machine.from_cmdline(f"-machine pc-i440fx-2.3,accel=kvm {NET}",
                                   guest=None).accel == "kvm"


def test_msi_under_kvm_goes_to_the_kernel_through_kvm_send_msi():
    vm, _d = rx_machine("kvm")
    assert vm.apic.region.name == "kvm-apic-msi"
    with vm.record() as rec:
        vm.host().send(echo())
        vm.run()
    i = [k for k in rec.find("kvm_set_msi") if rec.step(k).kind == "call"][0]
    stack = rec.callstack(i)
    assert stack[stack.index("address_space_stl_le"):] == TAIL + [
        "kvm_apic_mem_write", "kvm_send_msi", "kvm_set_msi"]
    assert [m.data for m in vm.apic.delivered] == [0x27]
    trace = rec.to_qemu_trace()
    assert "apic_deliver_irq" not in trace          # the LAPIC is in the kernel
    assert "MSI write to kvm-apic-msi addr=0xfee01004 data=0x27 by=device" in trace


def test_msi_under_tcg_goes_to_the_userspace_apic():
    vm, _d = rx_machine("tcg")
    with vm.record() as rec:
        vm.host().send(echo())
        vm.run()
    i = [k for k in rec.find("apic_deliver_irq") if rec.step(k).kind == "call"][0]
    stack = rec.callstack(i)
    assert stack[stack.index("address_space_stl_le"):] == TAIL + [
        "apic_mem_write", "apic_send_msi", "apic_deliver_irq"]


def tx_kick(accel: str) -> qn.Machine:
    vm, d = rx_machine(accel)
    before = dict(vm.cpu.stats)
    f = echo()
    buf = d.alloc(12 + len(f))
    vm.memory.write_bytes(buf, bytes(12) + f)
    d.add_chain(d.queues[1], [(buf, 12 + len(f), False)])
    vm.cpu.mmio_write(d.queues[1].notify_addr, 2, 1)    # the kick, as the vCPU does it
    vm.run()
    assert vm.host().recv() == f
    return {k: vm.cpu.stats[k] - before.get(k, 0) for k in vm.cpu.stats
            if vm.cpu.stats[k] != before.get(k, 0)}


def test_a_tx_kick_exits_under_tcg_but_not_under_kvm():
    tcg = tx_kick("tcg")
    kvm = tx_kick("kvm")
    assert tcg["ioeventfd kicks"] == kvm["ioeventfd kicks"] == 1
    assert tcg["mmio write virtio-pci-notify-virtio-net"] == 1
    assert "exits KVM_EXIT_MMIO" not in kvm and not any(k.startswith("mmio") for k in kvm)


def test_guest_lapic_and_register_accesses_under_kvm():
    vm, d = rx_machine("kvm")
    vm.cpu.mmio_write(0xFEE000B0, 4, 0)                 # EOI: handled in the kernel
    vm.cpu.mmio_read(d.common + 0x14, 1)                # device_status: a real exit
    st = vm.cpu.stats
    assert st["in-kernel write kvm-apic-msi"] == 1
    assert st["exits KVM_EXIT_MMIO"] == 1 and st["mmio read virtio-pci-common-virtio-net"] == 1


def per_echo(line: str, n: int = 10) -> dict[str, float]:
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    vm.host().ping(count=3)                        # past the first ping's set-up work
    before = dict(vm.cpu.stats)
    assert all(vm.host().ping(count=n))
    return {k: (v - before.get(k, 0)) / n for k, v in vm.cpu.stats.items()
            if v != before.get(k, 0)}


def test_a_virtio_echo_costs_no_exit_under_kvm():
    kvm = per_echo(f"-enable-kvm {NET}")
    assert "exits KVM_EXIT_MMIO" not in kvm and "exits KVM_EXIT_IO" not in kvm
    assert kvm["ioeventfd kicks"] == 1 and kvm["interrupts"] == 2
    tcg = per_echo(NET)
    assert tcg["mmio accesses"] == 3               # the TX notify and two EOIs go through QEMU
    assert tcg["mmio write virtio-pci-notify-virtio-net"] == 1


def test_an_e1000_echo_costs_the_register_exits_its_driver_makes():
    line = "-net nic,model=e1000 -net tap"
    kvm = per_echo(f"-enable-kvm {line}")
    regs = kvm["mmio read e1000-mmio"] + kvm["mmio write e1000-mmio"]
    assert kvm["exits KVM_EXIT_MMIO"] == regs > 5  # every register access is an exit
    tcg = per_echo(line)
    # ICR, IMC, STATUS, RDT, TDT, IMS, STATUS, then ICR, IMC, STATUS, IMS, STATUS: as the
    # e1000 golden, two interrupts per echo under TCG
    assert tcg["mmio read e1000-mmio"] + tcg["mmio write e1000-mmio"] == 12
    assert tcg["interrupts"] == 2
