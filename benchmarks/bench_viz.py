"""How fast the visuals are: one JSON line per measurement.

* ``render``: median (and 95th percentile) milliseconds to render one step of each view,
  over every step of a recorded ping (the ring view is a 256-entry virtqueue);
* ``build``: seconds to build each player for a recording of at least 1,000 steps (every
  frame rendered once, identical frames stored once), with its number of distinct frames
  and the size of what it sends to the browser.

Run: ``.venv/bin/python benchmarks/bench_viz.py``
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qnetlearn as qn  # noqa: E402
import qnetlearn.viz  # noqa: E402,F401
from qnetlearn.viz.replay import Replay  # noqa: E402
from qnetlearn.viz.views import (CallStackView, InterruptView, NetQueueView, RingView,  # noqa: E402
                                 TopologyView)

VIRTIO = "-netdev tap,id=hn0 -device virtio-net-pci,id=net-pci0,netdev=hn0"
E1000 = "-netdev tap,id=hn0 -device e1000,id=nic0,netdev=hn0"


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def record(cmdline: str, min_steps: int = 0):
    vm = qn.Machine.from_cmdline(cmdline).boot()
    with vm.record() as rec:
        vm.host().ping()
        while len(rec.steps) < min_steps:
            vm.host().ping()
    return vm, rec


def per_step(rec, views, label: str) -> None:
    moments = list(Replay(rec).moments())
    for v in views:
        v.prepare(moments[0].replay)
        times = []
        for m in moments:
            t = time.perf_counter()
            v.render(m)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        emit(bench="render", recording=label, view=v.name, title=v.title, steps=len(times),
             median_ms=round(statistics.median(times), 3),
             p95_ms=round(times[int(len(times) * 0.95) - 1], 3))


def main() -> None:
    vm, rec = record(VIRTIO)
    per_step(rec, [CallStackView(), RingView("net-pci0", 0), RingView("net-pci0", 1),
                   InterruptView("net-pci0"), NetQueueView(), TopologyView(vm)],
             "virtio ping")
    per_step(rec, [CallStackView(True), RingView("net-pci0", 0, True),
                   InterruptView("net-pci0", True)], "virtio ping, slide=True")
    vm_e, rec_e = record(E1000)
    per_step(rec_e, [RingView("nic0", 0), InterruptView("nic0")], "e1000 ping")

    _vm, big = record(VIRTIO, 1000)
    players = [("RingPlayer", lambda: qn.viz.RingPlayer(big, device="net-pci0", queue=0)),
               ("CallStackPlayer", lambda: qn.viz.CallStackPlayer(big)),
               ("InterruptPlayer", lambda: qn.viz.InterruptPlayer(big)),
               ("NetQueuePlayer", lambda: qn.viz.NetQueuePlayer(big)),
               ("Topology", lambda: qn.viz.Topology(big.machine, big)),
               ("TimelinePlayer", lambda: qn.viz.TimelinePlayer(big)),
               ("Lesson", lambda: qn.viz.Lesson(big))]
    for name, make in players:
        make()                                   # first use: imports, caches
        t = time.perf_counter()
        p = make()
        took = time.perf_counter() - t
        emit(bench="build", player=name, steps=p.n, seconds=round(took, 3),
             frames=[len(v["frames"]) for v in p._payload["views"]],
             payload_kb=round(len(json.dumps(p._data)) / 1024))


if __name__ == "__main__":
    main()
