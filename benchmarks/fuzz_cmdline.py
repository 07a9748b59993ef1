"""The long run of tests/test_fuzz_cmdline.py: hostile QEMU command lines (issue 11, item 4).

The test file's three generators (mutations of real lines, random words, random text) run
with many more examples: every line either raises ``CmdlineError`` naming its option, or
builds a machine (or the machine refuses it with ``CmdlineError``) that boots and runs.
Anything else, or a message that does not name the option, is an escape; hypothesis shrinks
it and the run stops with the minimal line.  Prints one JSON line per generator and a total:

    {"generator": ..., "lines": ..., "refused_by_parser": ..., "refused_by_machine": ...,
     "built_and_ran": ..., "escaped": 0, "elapsed_s": ...}

    .venv/bin/python benchmarks/fuzz_cmdline.py                      # 200,000 lines
    .venv/bin/python benchmarks/fuzz_cmdline.py --lines 20000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fuzz_cmdline as harness  # noqa: E402 - after sys.path is set

GENERATORS: dict[str, tuple[Any, float]] = {   # name: (strategy, share of the lines)
    "mutated": (harness.mutated(), 0.5),
    "random words": (harness.RANDOM_WORDS, 0.25),
    "random text": (st.text(max_size=120), 0.25),
}


def run(name: str, strategy: Any, n: int) -> dict[str, Any]:
    counts: Counter[str] = Counter()

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(words: list[str] | str) -> None:
        counts[harness.build(words)] += 1  # the test's own checks, assertions included

    t = time.perf_counter()
    escaped = None
    try:
        prop()
    except Exception as e:                 # noqa: BLE001 - the finding, reported below
        escaped = " ".join([f"{type(e).__name__}: {e}", *getattr(e, "__notes__", ())])
    return {"generator": name, "lines": sum(counts.values()),
            "refused_by_parser": counts["parser"], "refused_by_machine": counts["machine"],
            "built_and_ran": counts["ran"], "escaped": int(escaped is not None),
            "finding": escaped,
            "elapsed_s": round(time.perf_counter() - t, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    total: Counter[str] = Counter()
    for name, (strategy, share) in GENERATORS.items():
        out = run(name, strategy, int(args.lines * share))
        print(json.dumps(out), flush=True)
        total.update({k: v for k, v in out.items() if isinstance(v, (int, float))})
    print(json.dumps({"generator": "total", **total}), flush=True)
    return 1 if total["escaped"] else 0


if __name__ == "__main__":
    sys.exit(main())
