"""``import qnetlearn.exercises``: the same module as ``qn.exercises``
(:mod:`qnetlearn.grading.exercises`), so notebooks may write
``from qnetlearn.exercises import check, grade, call, run``."""
import sys

from .grading import exercises as _exercises

sys.modules[__name__] = _exercises
