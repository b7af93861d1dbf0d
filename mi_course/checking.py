"""`mi-course check NOTEBOOK`: grade every exercise of a learner's notebook.

The notebook's code runs in this process (see `graders.submission`), then each exercise's
grader runs, with every variant the nbgrader hidden tests use. The report is a table of
exercises, points, verdicts and the first line of each message, the total score, then
the full message and hint of each exercise that failed or raised an error.
"""

import sys
import textwrap
from pathlib import Path

from graders import Result, Submission, Verdict, load_chapter, load_submission

MESSAGE_WIDTH = 72


def check_notebook(path: str | Path) -> tuple[Submission, list[Result]]:
    submission = load_submission(path)
    return submission, load_chapter(submission.chapter).grade_namespace(submission.namespace)


def report(submission: Submission, results: list[Result]) -> str:
    rows = [("exercise", "points", "verdict", "message")]
    for result in results:
        first_line = result.message.splitlines()[0] if result.message else ""
        rows.append((result.exercise, f"{result.points:g}/{result.max_points:g}", result.verdict.value,
                     textwrap.shorten(first_line, MESSAGE_WIDTH, placeholder=" ...")))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{submission.path.name} (chapter {submission.chapter})", ""]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    score = sum(result.points for result in results)
    lines += ["", f"Score: {score:g} / {sum(result.max_points for result in results):g}"]

    for result in results:
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            lines += ["", result.summary()]
    # A stub raising NotImplementedError is already reported as "not attempted".
    broken = [error for error in submission.cell_errors if not error.error.startswith("NotImplementedError")]
    if broken:
        lines += ["", "Cells that raised an error while the notebook ran (what they define may be missing):"]
        lines += [f"  cell {error.cell}: {textwrap.shorten(error.error, 100, placeholder=' ...')}" for error in broken]
    return "\n".join(lines)


def main(path: str | Path) -> int:
    """Print the report; exit status 0 only if every exercise passes."""
    try:
        submission, results = check_notebook(path)
    except (OSError, ValueError) as error:  # no such file, not a notebook, unknown chapter
        print(f"mi-course check: {error}", file=sys.stderr)
        return 2
    print(report(submission, results))
    return 0 if all(result.verdict is Verdict.PASS for result in results) else 1
