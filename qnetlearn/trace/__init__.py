"""Tracepoints, trace events and the recorder (QEMU's ``trace/`` and ``trace-events``)."""
from . import events
from .recorder import CONTEXT, Recorder, Step, StateReader, active
from .state import Stateful, Stats
from .tracepoint import REGISTRY, tracepoint, trace_event

__all__ = ["events", "CONTEXT", "Recorder", "Step", "StateReader", "active", "Stateful",
           "Stats", "REGISTRY", "tracepoint", "trace_event"]
