"""Guest RAM (qnetlearn/system/memory.py): bounds, and the pages a recorder images."""
from __future__ import annotations

import pytest

from qnetlearn.system.memory import PAGE, RAM, MemTxError


@pytest.mark.parametrize("store,width", [("stw", 2), ("stl", 4), ("stq", 8), ("write", 32)])
def test_a_store_across_a_page_boundary_marks_both_pages(store: str, width: int):
    """A recording's start image holds the pages ever written (``touched``); a store that
    straddles two pages must mark both, or replaying the recording shows stale bytes."""
    ram = RAM(4 * PAGE)
    addr = 2 * PAGE - 1
    value = bytes(range(1, width + 1)) if store == "write" else (1 << 8 * width) - 1
    getattr(ram, store)(addr, value)
    assert ram.touched == {1, 2}
    image = ram.start_journal([])
    assert sorted(image) == [1, 2] and image[2][:width - 1] == ram.read(2 * PAGE, width - 1)
    ram.stop_journal()


@pytest.mark.parametrize("store,width", [("stw", 2), ("stl", 4), ("stq", 8)])
def test_a_store_past_the_end_of_ram_is_a_memtx_error(store: str, width: int):
    ram = RAM(PAGE)
    with pytest.raises(MemTxError):
        getattr(ram, store)(PAGE - width + 1, 0)
    with pytest.raises(MemTxError):
        getattr(ram, store)(-1, 0)
    assert ram.touched == set()
