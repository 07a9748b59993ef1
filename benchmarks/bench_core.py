"""Core figures of the emulator, one JSON line each (issue: performance).

Each figure is the median of several runs, with min and max, measured in one process so
ratios are fair.  Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_core.py``.
"""
from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Callable

import qnetlearn as qn
from qnetlearn.net.stack import build_echo_request
from qnetlearn.trace import tracepoint

SEED = ("qemu-system-x86_64 disk.img -machine pc-i440fx-2.3,accel=kvm,usb=off "
        "-netdev tap,id=hn0,script=/etc/qemu-ifup,downscript=/etc/qemu-ifdown "
        "-device virtio-net-pci,id=net-pci0,netdev=hn0 -vnc :7 -m 2048 -smp 2 "
        "-device piix3-usb-uhci -device usb-tablet -monitor stdio")
VIRTIO = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
E1000 = "-net nic,model=e1000 -net tap"
RUNS = 5


def emit(figure: str, values: list[float], unit: str, **extra: object) -> None:
    print(json.dumps({"figure": figure, "median": round(statistics.median(values), 3),
                      "min": round(min(values), 3), "max": round(max(values), 3),
                      "runs": len(values), "unit": unit, **extra}), flush=True)


def timed(fn: Callable[[], object], runs: int = RUNS) -> list[float]:
    out = []
    for _ in range(runs):
        gc.collect()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def plain(a: int, b: int) -> int:
    return a + b


@tracepoint("benchmarks/bench_core.py")
def traced(a: int, b: int) -> int:
    return a + b


def bench_tracepoint() -> None:
    n = 1_000_000

    def loop(f: Callable[[int, int], int]) -> None:
        for i in range(n):
            f(i, 1)
    p = timed(lambda: loop(plain), 7)
    t = timed(lambda: loop(traced), 7)
    emit("plain call", [x / n * 1e9 for x in p], "ns")
    emit("disabled tracepoint call", [x / n * 1e9 for x in t], "ns")
    emit("disabled tracepoint / plain call", [a / b for a, b in zip(t, p)], "ratio",
         target="<= 1.1")


def bench_import() -> None:
    code = "import time; t=time.perf_counter(); import qnetlearn; print(time.perf_counter()-t)"
    vals = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) * 1000 for _ in range(RUNS)]
    emit("import qnetlearn", vals, "ms", target="<= 100")


def bench_boot() -> None:
    emit("from_cmdline(seed) + boot()",
         [x * 1000 for x in timed(lambda: qn.Machine.from_cmdline(SEED).boot(), 7)], "ms",
         target="<= 20")


def frames_per_second(line: str, n: int, record: bool = False) -> float:
    vm = qn.Machine.from_cmdline(line)
    vm.boot()
    host = vm.host()
    frame = build_echo_request(host.mac, vm.nics[0].mac, host.ip, "10.0.2.99", 1, 1,
                               payload=bytes(18))        # 64-byte frame, not for the guest's IP
    assert len(frame) == 60
    batch = 32
    rec = vm.record() if record else None
    if rec is not None:
        rec.start()
    t = time.perf_counter()
    for _ in range(n // batch):
        for _ in range(batch):
            host.send(frame + bytes(4))
        vm.run()
    dt = time.perf_counter() - t
    if rec is not None:
        rec.stop()
    assert vm.guest.stack.stats["drop: IPv4 packet not for us"] >= n // batch * batch
    return n / dt


def pings_per_second(n: int, record: bool = False) -> tuple[float, object]:
    vm = qn.Machine.from_cmdline(VIRTIO)
    vm.boot()
    vm.host().ping(count=2)
    rec = vm.record() if record else None
    if rec is not None:
        rec.start()
    t = time.perf_counter()
    rtts = vm.host().ping(count=n)
    dt = time.perf_counter() - t
    if rec is not None:
        rec.stop()
    assert all(r is not None for r in rtts)
    return n / dt, rec


def bench_packet_path() -> None:
    emit("host-to-guest 64-byte frames/s, virtio-net", [frames_per_second(VIRTIO, 20_000)
                                                       for _ in range(RUNS)], "frames/s",
         target=">= 100000")
    emit("host-to-guest 64-byte frames/s, e1000 behind a hub",
         [frames_per_second(E1000, 20_000) for _ in range(RUNS)], "frames/s", target=">= 50000")
    plain_rate = [pings_per_second(2000)[0] for _ in range(RUNS)]
    rec_rate = [pings_per_second(2000, record=True)[0] for _ in range(RUNS)]
    emit("ping round trips/s, virtio-net", plain_rate, "pings/s", target=">= 20000")
    emit("ping round trips/s with a recorder", rec_rate, "pings/s")
    emit("slowdown with a recorder", [a / b for a, b in zip(plain_rate, rec_rate)], "ratio",
         target="<= 3")


def recorder_bytes_per_step(frames: int) -> tuple[float, int]:
    """Record ``frames`` host-to-guest frames; traced memory of the recording per step."""
    vm = qn.Machine.from_cmdline(VIRTIO)
    vm.boot()
    host = vm.host()
    frame = build_echo_request(host.mac, vm.nics[0].mac, host.ip, "10.0.2.99", 1, 1,
                               payload=bytes(18)) + bytes(4)
    gc.collect()
    tracemalloc.start()
    with vm.record() as rec:
        for _ in range(frames // 32):
            for _ in range(32):
                host.send(frame)
            vm.run()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size / len(rec.steps), len(rec.steps)


def bench_recorder_memory() -> None:
    for frames in (10_000, 100_000):
        per_step, steps = recorder_bytes_per_step(frames)
        emit(f"recorder memory per step after {frames} frames", [per_step], "bytes",
             steps=steps, target="<= 1024, flat")


def bench_hub_scaling() -> None:
    """A broadcast frame into hub 0 with N ports (the TAP and N-1 e1000s of the guest):
    every other port delivers it once, into its NIC's ring and up the guest's stack."""
    for ports in (2, 4, 16):
        nics = " ".join(f"-netdev hubport,id=p{i},hubid=0 -device e1000,netdev=p{i}"
                        for i in range(ports - 1))
        vm = qn.Machine.from_cmdline(f"-netdev tap,id=hn0 -netdev hubport,id=pt,hubid=0,"
                                     f"netdev=hn0 {nics}")
        vm.boot()
        host = vm.host()
        frame = b"\xff" * 6 + bytes.fromhex(host.mac.replace(":", "")) + b"\x88\xb5" + bytes(46)
        n = 4_000

        def run() -> None:
            for _ in range(n // 32):
                for _ in range(32):
                    host.send(frame)
                vm.run()
        rates = [n / t for t in timed(run, 3)]
        got = sum(nic.nc.stats["rx"] for nic in vm.nics)
        assert got == 3 * (n // 32 * 32) * (ports - 1), got
        emit(f"broadcast frames/s into a hub with {ports} ports", rates, "frames/s",
             deliveries_per_frame=ports - 1,
             deliveries_per_second=round(statistics.median(rates) * (ports - 1)),
             target="cost linear in ports")


def main() -> None:
    bench_tracepoint()
    bench_import()
    bench_boot()
    bench_packet_path()
    bench_hub_scaling()
    bench_recorder_memory()


if __name__ == "__main__":
    main()
