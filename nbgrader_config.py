# nbgrader configuration for instructors of this course.
#
# nbgrader reads this file when you run `nbgrader ...` from the repository
# root (it looks in the current directory).  Every chapter of the course is
# one nbgrader assignment named after its notebook, e.g. the assignment
# 00_transformer_from_scratch holds 00_transformer_from_scratch.ipynb.
#
# Layout under CourseDirectory.root (nbgrader's standard one):
#   source/<chapter>/<chapter>.ipynb            instructor version, copied from
#                                               solutions/ by
#                                               `python -m mi_course.release --stage instructor`
#   release/<chapter>/<chapter>.ipynb           student version (= course/<chapter>.ipynb)
#   downloaded/<chapter>/archive/               submissions from your LMS, for zip_collect
#   submitted/<student>/<chapter>/<chapter>.ipynb
#   autograded/<student>/<chapter>/             executed and scored submissions
#   feedback/<student>/<chapter>/<chapter>.html feedback to hand back
#   gradebook.db                                the scores (sqlite)
import os

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)

# Keep all grading state in its own folder so the repository root stays clean
# (add `instructor/` to .gitignore: it holds student work and grades).
c.CourseDirectory.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "instructor")

# Names the course in the gradebook, and the exchange folder if you hand out
# assignments with `nbgrader release_assignment` on a shared JupyterHub.
c.CourseDirectory.course_id = "mi_course"

# The stub that replaces each `### BEGIN SOLUTION ... ### END SOLUTION` region.
# Imported from the course package so that `nbgrader generate_assignment`
# produces exactly the student notebooks committed in course/
# (mi_course.release.release() uses the same value).
try:
    from mi_course.release import CODE_STUB, TEXT_STUB
except ImportError:  # the course package is not installed in this environment
    CODE_STUB = ('# YOUR CODE HERE\n'
                 'raise NotImplementedError("Write your solution here, then run the check below.")')
    TEXT_STUB = "YOUR ANSWER HERE"
c.ClearSolutions.code_stub = {"python": CODE_STUB}
c.ClearSolutions.text_stub = TEXT_STUB

# Seconds a single cell may run while autograding.  nbgrader's default (30 s)
# is too short for the chapters that train toy models on a CPU.  (`Execute` is
# nbgrader's subclass of nbconvert's ExecutePreprocessor.)
c.Execute.timeout = 600

# A cell that hits the timeout is interrupted and scored as an error instead
# of stopping the whole autograde run (nbgrader's default, stated here on purpose).
c.Execute.interrupt_on_timeout = True

# zip_collect: how to read the student id and the notebook name from the
# files extracted from instructor/downloaded/<chapter>/archive/.  nbgrader has
# no default for this, it must be set.  Accepted forms:
#   archive/<student_id>.zip  containing <chapter>.ipynb (folders inside are fine)
#   archive/<student_id>__<chapter>.ipynb                (a bare notebook)
# The regex is matched against the full path of each extracted file.
c.FileNameCollectorPlugin.named_regexp = (
    r".*[/\\]extracted[/\\](?P<student_id>[^/\\]+?)(?:__|[/\\](?:.*[/\\])?)(?P<file_id>[^/\\]+\.ipynb)$"
)

# Skip extracted notebooks whose name is not a released notebook (Jupyter
# checkpoints, macOS "._" files, renamed copies); each one is logged.
c.ZipCollectApp.strict = True
