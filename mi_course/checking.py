"""`mi-course check NOTEBOOK`: grade every exercise of a learner's notebook.

The notebook's code runs in this process (see `graders.submission`), then each exercise's
grader runs, with every variant the nbgrader hidden tests use. The report
(`graders.reporting.notebook_report`) is a table of exercises, points, verdicts and the
first line of each message, the total score, then the full message and hint of each
exercise that failed or raised an error.
"""

import sys
from pathlib import Path

from graders import Submission, load_chapter, load_submission
from graders.reporting import notebook_report
from graders.results import Result
from mi_course.runtime.verdicts import Verdict


def check_notebook(path: str | Path) -> tuple[Submission, list[Result]]:
    submission = load_submission(path)
    return submission, load_chapter(submission.chapter).grade_namespace(submission.namespace)


def main(path: str | Path) -> int:
    """Print the report; exit status 0 only if every exercise passes."""
    try:
        submission, results = check_notebook(path)
    except (OSError, ValueError) as error:  # no such file, not a notebook, unknown chapter
        print(f"mi-course check: {error}", file=sys.stderr)
        return 2
    cell_errors = [(error.cell, error.error) for error in submission.cell_errors]
    print(notebook_report(submission.path.name, submission.chapter, results, cell_errors))
    return 0 if all(result.verdict is Verdict.PASS for result in results) else 1
