"""The long run of tests/test_fuzz_guest_inputs.py: a million guest programs (issue 11).

Each input is a byte string that ``run_input`` reads as a guest program against a fresh
machine (descriptor tables, avail rings, raw RAM, virtio common config, notify writes, MSI-X
table and PBA, PCI configuration space, e1000 registers and descriptors, host frames, link
changes, purges, runs) and checks: no exception escapes the emulator, devices write RAM
only where the guest handed it over, a broken virtio device has a reason and stays quiet,
MSI-X tables keep their size, used lengths never exceed the buffers, every net client's
frames are accounted for, and a witness NIC on its own TAP still passes frames.

Prints one JSON line per chunk and a final one:

    {"inputs": ..., "exceptions_escaped": 0, "property_violations": 0, "hangs": 0,
     "inputs_with_a_broken_device": ..., "frames_sent": ..., "frames_accounted": ...,
     "witness_ok": ..., "witness_skipped": ..., "elapsed_s": ...}

Engines: ``random`` (default: random programs and mutations of the kept regression inputs,
in ``--jobs`` processes; every other input is read in the offloads decoding, see
``run_input``) or ``atheris`` (coverage-guided, one process, if atheris is
installed: ``pip install atheris``).  Failing inputs are written to ``--findings`` as hex,
ready for ``tests/regressions/guest_inputs.json``.

    .venv/bin/python benchmarks/fuzz_guest_inputs.py                  # 1,000,000 inputs
    .venv/bin/python benchmarks/fuzz_guest_inputs.py --inputs 20000 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

SLOW_SECONDS = 1.0        # an input slower than this is reported (with its time)
HANG_SECONDS = 20.0       # ... and one slower than this is a finding


def _harness():
    import test_fuzz_guest_inputs as harness   # noqa: PLC0415 - after sys.path is set
    return harness


def mutate(rng: random.Random, data: bytes, max_len: int) -> bytes:
    """A byte-level mutation: flips, inserts, deletes, splices of random bytes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 3 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])
        else:
            buf[pos:pos + 4] = rng.randbytes(4)
    return bytes(buf[:max_len]) or b"\0"


def tally(st: Counter, out: Any) -> None:
    """Count one input that ran to its end (``out``: the harness's Outcome) into the
    figures ``report`` prints; both engines keep the same ones."""
    st["inputs"] += 1
    st["ops"] += out.ops
    st["exceptions_escaped"] += len(out.escaped)
    st["property_violations"] += len(out.violations)
    st["inputs_with_a_broken_device"] += bool(out.broken)
    st["frames_sent"] += out.frames_sent
    st["frames_accounted"] += out.frames_accounted
    st["witness_ok"] += out.witness_ok is True
    st["witness_skipped"] += out.witness_ok is None


def run_chunk(args: tuple[int, int, int, int, list[bytes]]) -> dict:
    """Run ``count`` inputs drawn from ``seed``; return the chunk's figures."""
    seed, count, max_len, _chunk, corpus = args
    h = _harness()
    rng = random.Random(seed)
    st: Counter = Counter()
    reasons: Counter = Counter()
    findings: list[dict] = []
    slowest = (0.0, "")
    for i in range(count):
        offloads = bool(i & 1)          # every other input in the offloads decoding
        if corpus and rng.random() < 0.3:
            data = mutate(rng, rng.choice(corpus), max_len)
        else:
            data = rng.randbytes(rng.randint(1, max_len))
        t = time.perf_counter()
        try:
            with h.time_limit(HANG_SECONDS):
                out = h.run_input(data, offloads=offloads)
        except h.Hang:
            st["hangs"] += 1
            findings.append({"kind": "hang", "input": data.hex(), "offloads": offloads})
            continue
        dt = time.perf_counter() - t
        if dt > slowest[0]:
            slowest = (dt, data.hex())
        if dt > SLOW_SECONDS:
            st["slow inputs"] += 1
        tally(st, out)
        st["inputs_with_offloads"] += offloads
        for b in out.broken:
            reasons[re.sub(r"\d+", "N", b.split(": ", 1)[-1])[:60]] += 1
        if not out.ok:
            findings.append({"kind": "escaped" if out.escaped else "violation",
                             "what": h.describe(out)[:2000], "input": data.hex(),
                             "offloads": offloads})
    return {"stats": dict(st), "reasons": dict(reasons), "findings": findings,
            "slowest": slowest}


def report(total: Counter, t0: float, **extra: object) -> str:
    keys = ["inputs", "inputs_with_offloads", "exceptions_escaped", "property_violations", "hangs", "slow inputs",
            "inputs_with_a_broken_device", "frames_sent", "frames_accounted", "witness_ok",
            "witness_skipped", "ops"]
    line = {k.replace(" ", "_"): total.get(k, 0) for k in keys}
    line["elapsed_s"] = round(time.time() - t0, 1)
    line.update(extra)
    return json.dumps(line)


def corpus_from_regressions() -> list[bytes]:
    path = TESTS / "regressions" / "guest_inputs.json"
    if not path.exists():
        return []
    return [bytes.fromhex(c["input"]) for c in json.loads(path.read_text())]


def main_random(ns: argparse.Namespace) -> int:
    corpus = corpus_from_regressions()
    chunks = [(ns.seed * 1_000_003 + k, min(ns.chunk, ns.inputs - k * ns.chunk), ns.max_len,
               k, corpus) for k in range((ns.inputs + ns.chunk - 1) // ns.chunk)]
    total: Counter = Counter()
    reasons: Counter = Counter()
    findings_dir = Path(ns.findings)
    findings_dir.mkdir(parents=True, exist_ok=True)
    n_findings = 0
    slowest = (0.0, "")
    t0 = time.time()
    with multiprocessing.Pool(ns.jobs) as pool:
        for k, res in enumerate(pool.imap(run_chunk, chunks)):
            total.update(res["stats"])
            reasons.update(res["reasons"])
            if res["slowest"][0] > slowest[0]:
                slowest = res["slowest"]
            for f in res["findings"]:
                n_findings += 1
                (findings_dir / f"finding-{n_findings:04d}.json").write_text(json.dumps(f))
            print(report(total, t0, chunk=k + 1, findings=n_findings), flush=True)
    print(report(total, t0, final=True, findings=n_findings, findings_dir=str(findings_dir),
                 slowest_input_s=round(slowest[0], 3),
                 broken_reasons_top=dict(reasons.most_common(12))), flush=True)
    (findings_dir / "slowest-input.hex").write_text(slowest[1])
    bad = total["exceptions_escaped"] + total["property_violations"] + total["hangs"]
    return 1 if bad else 0


def main_atheris(ns: argparse.Namespace) -> int:
    import atheris  # noqa: PLC0415
    with atheris.instrument_imports(include=["qnetlearn"]):
        import qnetlearn  # noqa: F401,PLC0415
    h = _harness()
    total: Counter = Counter()
    t0 = time.time()
    findings_dir = Path(ns.findings)
    findings_dir.mkdir(parents=True, exist_ok=True)

    def one(data: bytes) -> None:
        if not data:
            return
        try:
            with h.time_limit(HANG_SECONDS):
                out = h.run_input(data[:ns.max_len])
        except h.Hang:
            total["hangs"] += 1
            (findings_dir / f"hang-{total['hangs']:04d}.hex").write_text(data.hex())
            return
        tally(total, out)
        if not out.ok:
            n = total["exceptions_escaped"] + total["property_violations"]
            (findings_dir / f"finding-{n:04d}.json").write_text(
                json.dumps({"what": h.describe(out)[:2000], "input": data.hex()}))
        if total["inputs"] % ns.chunk == 0:
            print(report(total, t0), flush=True)
        if total["inputs"] >= ns.inputs:
            print(report(total, t0, final=True), flush=True)
            os._exit(0)

    atheris.Setup([sys.argv[0], f"-max_len={ns.max_len}", f"-seed={ns.seed or 1}"], one)
    atheris.Fuzz()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-len", type=int, default=700)
    ap.add_argument("--engine", choices=["random", "atheris"], default="random")
    ap.add_argument("--findings", default=os.path.join(tempfile.gettempdir(),
                                                       "qnetlearn-fuzz-findings"))
    ns = ap.parse_args()
    return main_atheris(ns) if ns.engine == "atheris" else main_random(ns)


if __name__ == "__main__":
    sys.exit(main())
