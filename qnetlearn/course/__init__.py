"""Helpers for the lessons in ``notebooks/``: predict-then-check questions whose answers
are computed from recordings, machines built and poked as the lessons do, the seed
article's call chains beside a recording, the golden comparison and the cost tables.

``import qnetlearn as qn`` then ``qn.course.predict(...)``; ipywidgets is imported only when
a widget is shown.
"""
from __future__ import annotations

from .compare import agreement, side_by_side, unified_diff, untraced
from .costs import cost_table, echo_costs, flood_costs, region_table
from .glossary import glossary
from .lab import (E1000_HUB, SEED_CMDLINE, VIRTIO, echo_requests, flood, mask_vector,
                  msix_entries, msix_table_address, pba_bits, record_flood,
                  record_guest_ping, record_ping, rx_room, start, steps_table)
from .measure import (called_by, caller_of, calls, chain_to, count_calls, count_events,
                      deepest_below, dispatches, drops, during, events, find_call,
                      guest_interrupts,
                      interrupt_vectors, msi_messages, netqueue_len, queue_state,
                      register_accesses, rx_used,
                      thread_of, tx_kicks, used_len)
from .predict import Predict, predict
from .seed import SEED_HUB_CHAIN, SEED_RX_CHAIN, compare_chain
from .show import Table, table

__all__ = [
    "predict", "Predict", "Table", "table", "glossary",
    "SEED_CMDLINE", "VIRTIO", "E1000_HUB", "start", "record_ping", "record_guest_ping",
    "record_flood", "flood", "echo_requests", "msix_table_address", "msix_entries",
    "mask_vector", "pba_bits", "steps_table", "rx_room",
    "calls", "events", "find_call", "deepest_below", "register_accesses", "called_by", "caller_of", "chain_to", "count_calls", "count_events", "dispatches", "drops",
    "during", "netqueue_len",
    "guest_interrupts", "interrupt_vectors", "msi_messages", "queue_state", "rx_used",
    "thread_of", "tx_kicks", "used_len",
    "SEED_RX_CHAIN", "SEED_HUB_CHAIN", "compare_chain",
    "side_by_side", "unified_diff", "agreement", "untraced",
    "cost_table", "echo_costs", "flood_costs", "region_table",
]
