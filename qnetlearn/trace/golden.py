"""The recordings of real QEMU 7.2 shipped with the package, and comparing traces with them.

``qnetlearn/data/golden-qemu/`` holds the normalized traces of one and five pings through
virtio-net and through e1000 behind a hub (its README says how they were made).  A ping
*cycle* starts where the host's echo request reaches the NIC: the RX
``virtqueue_alloc_element`` for virtio-net, the ``e1000x_vlan_is_vlan_pkt`` followed by
``e1000x_rx_flt_ucast_match`` for e1000.
"""
from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

_ELEM = re.compile(r"\belem(\d+)\b")
_RX_ALLOC = re.compile(r"virtqueue_alloc_element .* in_num [1-9]\d* out_num 0$")


def golden_dir() -> Path:
    return Path(str(resources.files("qnetlearn") / "data" / "golden-qemu"))


def golden_lines(name: str) -> list[str]:
    """The events of a golden file, without its header and ``# +ms`` comments."""
    text = (golden_dir() / name).read_text()
    return [line.split("  # +")[0] for line in text.splitlines()
            if line and not line.startswith("#")]


def _is_start(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _RX_ALLOC.search(line):
        return True
    return ("e1000x_vlan_is_vlan_pkt" in line and i + 1 < len(lines)
            and "e1000x_rx_flt_ucast_match" in lines[i + 1])


def ping_cycles(lines: list[str]) -> list[list[str]]:
    """Split a trace into ping cycles (anything before the first cycle is dropped)."""
    starts = [i for i in range(len(lines)) if _is_start(lines, i)]
    return [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)])]


def renumber_elements(lines: list[str]) -> list[str]:
    """Number ``elemN`` from 1 in order of appearance, so two cycles compare equal."""
    seen: dict[str, str] = {}

    def sub(m: re.Match[str]) -> str:
        return "elem" + seen.setdefault(m.group(1), str(len(seen) + 1))
    return [_ELEM.sub(sub, line) for line in lines]


def steady_cycle(name: str, index: int = 1) -> list[str]:
    """One steady-state ping cycle of a golden file (the second, by default)."""
    return renumber_elements(ping_cycles(golden_lines(name))[index])
