"""The seed article's two call chains, as data, laid beside what a recording shows.

The article lists function names one per line, QEMU 2.4 era, some of them function
pointers (``nc->info->receive``, ``k->notify``) and one line with three siblings
(``virtqueue_fill, virtqueue_flush, virtio_notify``).  :func:`compare_chain` walks that list
against the call stack the recording holds at the chain's deepest function, and says for
every line where it is in the recording: a frame of the stack, a sibling that was called
and had returned before, a pointer and what it pointed to, or absent.  Frames the
recording has and the article skips are listed too.
"""
from __future__ import annotations

from typing import Any, Sequence

from .show import Table

__all__ = ["SEED_RX_CHAIN", "SEED_HUB_CHAIN", "compare_chain", "RENAMED"]

#: the article's first chain (TAP -> virtio-net -> MSI-X)
SEED_RX_CHAIN: tuple[str, ...] = (
    "tap_send", "qemu_send_packet_async", "qemu_send_packet_async_with_flags",
    "qemu_net_queue_send", "qemu_net_queue_deliver", "qemu_deliver_packet",
    "nc->info->receive", "virtio_net_receive",
    "virtqueue_fill", "virtqueue_flush", "virtio_notify",
    "virtio_notify_vector", "k->notify", "virtio_pci_notify", "msix_notify",
    "msi_send_message", "address_space_stl_le", "address_space_stl_internal",
)
#: the article's second chain (TAP -> hub -> e1000); "..." is the article's own gap
SEED_HUB_CHAIN: tuple[str, ...] = (
    "tap_send", "qemu_send_packet_async", "qemu_send_packet_async_with_flags",
    "qemu_net_queue_send", "qemu_net_queue_deliver", "qemu_deliver_packet",
    "nc->info->receive", "net_hub_port_receive", "net_hub_receive", "qemu_send_packet",
    "qemu_send_packet_async", "qemu_sendv_packet_async", "...", "e1000_receive",
)
#: names the article uses that later QEMU spells differently (what to look for instead)
RENAMED: dict[str, tuple[str, ...]] = {
    "qemu_deliver_packet": ("qemu_deliver_packet_iov",),
    "e1000_receive": ("e1000_receive_iov",),
    "net_hub_port_receive": ("net_hub_port_receive_iov",),
    "net_hub_receive": ("net_hub_receive_iov",),
    "qemu_send_packet": ("qemu_sendv_packet",),
}


def _deepest_call(rec: Any, names: Sequence[str]) -> int:
    """The first call of the deepest-listed function of ``names`` the recording has."""
    steps = rec.steps
    for name in reversed(names):
        for cand in (name,) + RENAMED.get(name, ()):
            for i in rec.find(cand):
                if steps[i].kind == "call":
                    return i
    raise LookupError("none of the chain's functions is in this recording")


def compare_chain(rec: Any, chain: Sequence[str] = SEED_RX_CHAIN, until: str | None = None
                  ) -> Table:
    """The article's ``chain`` beside the recording (see the module docstring).

    The stack compared is the one live at the first call of ``until`` (default: the
    deepest function of ``chain`` that the recording has)."""
    steps = rec.steps
    at = _deepest_call(rec, [until] if until else list(chain))
    idx = [at]                         # indices of the live frames' call steps
    while steps[idx[-1]].parent >= 0:
        idx.append(steps[idx[-1]].parent)
    idx.reverse()
    names = [steps[i].name for i in idx]
    rows: list[list[Any]] = []
    cursor = 0

    def siblings_before(k: int) -> list[str]:
        """Functions frame ``k`` called, and that returned, before it called frame k+1."""
        lo, hi = idx[k], idx[k + 1] if k + 1 < len(idx) else at
        return [steps[j].name for j in range(lo + 1, hi)
                if steps[j].kind == "call" and steps[j].parent == lo]

    for item in chain:
        if item == "...":
            rows.append([item, "", "", "the article skips frames here"])
            continue
        if "->" in item:
            if cursor < len(names):
                rows.append([item, names[cursor], cursor,
                             "a function pointer: the recording shows where it led"])
            else:
                rows.append([item, "", "", "not reached in this recording"])
            continue
        cands = (item,) + RENAMED.get(item, ())
        pos = next((p for p in range(cursor, len(names)) if names[p] in cands), None)
        if pos is not None:
            for p in range(cursor, pos):
                rows.append(["", names[p], p, "in the recording, not in the article"])
            note = "same function" if names[pos] == item else \
                f"QEMU 7.2 calls it {names[pos]}"
            rows.append([item, names[pos], pos, note])
            cursor = pos + 1
            continue
        hit = None
        for k in range(max(cursor - 1, 0), len(idx)):     # a sibling of a deeper frame?
            sib = siblings_before(k)
            hit = next((c for c in cands if c in sib), None)
            if hit is not None:
                break
        if hit is not None:
            for p in range(cursor, k + 1):
                rows.append(["", names[p], p, "in the recording, not in the article"])
            cursor = max(cursor, k + 1)
            rows.append([item, hit, "", f"called by {names[k]}, returned before "
                         f"{names[k + 1] if k + 1 < len(names) else 'this step'}: "
                         "a sibling on the stack, not a caller"])
        else:
            rows.append([item, "", "", "not on this path in the recording"])
    for p in range(cursor, len(names)):
        rows.append(["", names[p], p, "past the article's last line"])
    return Table(rows, ["the article says", "the recording has", "stack depth", "note"],
                 title=f"call stack at step {at} ({names[-1]})",
                 highlight=[i for i, r in enumerate(rows) if r[0] and r[1] and r[2] != ""])
