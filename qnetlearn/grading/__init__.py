"""Exercises: students write the emulator's own functions, and see what their code did.

* ``qn.plug(slot=function)`` (:mod:`.slots`): the live emulator runs a student's function in
  a slot, guarded (exceptions, wrong return types, time and output limits);
* ``qn.exercises.check(slot, function)`` (:mod:`.exercises`): the slot's public tests, with
  the student's run beside the reference run where they first differ;
* ``qn.exercises.grade(...)``: what the nbgrader assignments in ``exercises/`` call, in an
  isolated worker process (:mod:`.worker`).
"""
from .slots import Plug, StudentError, all_slots, plug

__all__ = ["plug", "Plug", "StudentError", "all_slots"]
