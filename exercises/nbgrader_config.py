"""nbgrader configuration of the qnetlearn exercises: this directory is the course.

    cd exercises
    nbgrader generate_assignment vring_need_event      # -> release/vring_need_event/
    nbgrader autograde vring_need_event --create       # grades submitted/*/vring_need_event/

Run nbgrader with the Python environment where qnetlearn is installed on PATH (nbgrader
starts ``alembic`` and the ``python3`` kernel from it).  For a class on JupyterHub, see
docs/grading.md (the exchange directory and the course id are set there, per host).
"""
import os

c = get_config()  # noqa: F821 - provided by nbgrader's config loader

c.CourseDirectory.course_id = "qnetlearn"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# The graded cells call qn.exercises.grade(), which runs the student's function in a
# worker process with its own limits (1 s per call, a budget per cell); this is the outer
# limit for a whole cell.
c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True
# QNETLEARN_GRADING tells qn.exercises.check() (the students' instant-feedback cells) that
# the notebook is being graded, so it does nothing; the graded cells do the testing.
c.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--IPKernelApp.exec_lines=import os; os.environ['QNETLEARN_GRADING'] = '1'",
]

# A student's notebook that prints a lot keeps only this much in the graded copy.
c.LimitOutput.max_lines = 400
c.LimitOutput.max_traceback = 60

# What the released notebooks put where the solution was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
