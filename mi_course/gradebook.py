"""`mi-course grade --gradebook`: the sandbox's scores, in nbgrader's own gradebook.

`nbgrader autograde` scores a test cell by running it in the student's kernel, after the
student's own code: a notebook that redefines `check`, or patches what it compares with,
earns the points there. So its scores are only a placeholder, which

    nbgrader autograde 01_three_buckets
    mi-course grade instructor/submitted --chapter 01 --gradebook

replaces: autograde registers each submission in the gradebook (and renders the notebooks
that formgrader shows and feedback quotes), then `mi-course grade` grades each notebook in
its sandbox and writes, through nbgrader's API (`nbgrader.api.Gradebook`), for each
exercise:

* the `auto_score` of its graded cell, `check_<name>` (`Exercise.grade_ids`): the points
  the sandbox gave;
* the `auto_comment` of its solution cell, `<name>`: why, in the grader's words, which
  formgrader and the feedback show unless a grader wrote a comment of their own.

`manual_score`, `extra_credit` and `manual_comment` are never written, and cells graded by
hand (a written answer) not at all: a grade given in formgrader stays, and as in nbgrader
it takes precedence over the auto score. Rows are updated in place, never added, so running
the command again changes nothing else; running `nbgrader autograde` again puts the
kernel's scores back, until the next `mi-course grade --gradebook`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from graders.core import load_chapter
from graders.results import Result, StudentGrade

__all__ = ["GradebookError", "GradebookReport", "nbgrader_database", "record_sandboxed_scores"]

#: The longest reason written into a comment: formgrader shows it in a small box.
MAX_COMMENT = 2000


class GradebookError(ValueError):
    """nbgrader's gradebook cannot take the sandbox's scores (no database, or not this chapter's assignment)."""


@dataclass
class GradebookReport:
    """What `record_sandboxed_scores` did, by nbgrader student id (or by path, for a notebook that is no
    submission of nbgrader's)."""

    recorded: list[str] = field(default_factory=list)  # their auto scores are now the sandbox's
    skipped: dict[str, str] = field(default_factory=dict)  # graded, but not written: why
    #: In the gradebook, but not graded here: their auto scores are still the kernel's.
    untouched: list[str] = field(default_factory=list)


def nbgrader_database(given: str, submissions: Path, chapter: str) -> str:
    """The database URL of nbgrader's gradebook, checked to hold the chapter's assignment:
    `given` (a database URL, or the path of a sqlite file), or if empty nbgrader's default for
    the course that `submissions` belongs to, `<course root>/gradebook.db`, the course root
    being the folder that holds `submitted/`."""
    if "://" in given:
        url = given
    else:
        path = Path(given) if given else _course_root(submissions) / "gradebook.db"
        if not path.is_file():
            raise GradebookError(f"There is no gradebook at {path}: run `nbgrader generate_assignment {chapter}` "
                                 f"and `nbgrader autograde {chapter}` first, or give --gradebook the database.")
        if not _holds_grades(path):  # else nbgrader's Gradebook would add its tables to whatever file it is
            raise GradebookError(f"{path} is not an nbgrader gradebook (a sqlite database with nbgrader's tables).")
        url = f"sqlite:///{path.resolve()}"
    with _gradebook(url) as gradebook:
        _checked_cells(gradebook, chapter)
    return url


def _holds_grades(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)) as database:
            return database.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'grade'").fetchone() \
                is not None
    except sqlite3.DatabaseError:  # not a database at all
        return False


def _course_root(submissions: Path) -> Path:
    if (submissions / "submitted").is_dir():
        return submissions
    if submissions.name == "submitted":
        return submissions.parent
    raise GradebookError(f"{submissions} is not nbgrader's submitted/ folder, nor a course folder holding one: "
                         "give --gradebook the database (a path, or a database URL).")


def record_sandboxed_scores(url: str, chapter: str, graded: Iterable[tuple[Path, StudentGrade]]) -> GradebookReport:
    """Write each sandboxed grade into the gradebook at `url`, as the module's docstring says.
    `graded` holds each notebook, in nbgrader's layout `submitted/{student}/{chapter}/{chapter}.ipynb`,
    with its grade. Everything is written in one transaction: all of it, or none."""
    report = GradebookReport()
    with _gradebook(url) as gradebook:
        checks = _checked_cells(gradebook, chapter)
        for path, grade in graded:
            student = path.parent.parent.name
            if path.parent.name != chapter or path.stem != chapter:
                report.skipped[str(path)] = (f"not nbgrader's submission of {chapter}: nbgrader grades "
                                             f"submitted/<student>/{chapter}/{chapter}.ipynb only")
            elif (submitted := _submission(gradebook, chapter, student)) is None:
                report.skipped[student] = f"not in the gradebook: run `nbgrader autograde {chapter}` first"
            else:
                _record(submitted, checks, grade)
                report.recorded.append(student)
        submitters = [submission.student.id for submission in gradebook.find_assignment(chapter).submissions]
        report.untouched = sorted(set(submitters) - set(report.recorded))
        gradebook.db.commit()
    return report


def _gradebook(url: str):
    from nbgrader.api import Gradebook  # here, not above: `mi-course grade` imports nbgrader only when it needs it

    return Gradebook(url, course_id="")  # "": the course the database has, rather than a new one


def _checked_cells(gradebook, chapter: str) -> dict[str, str]:
    """{graded cell: exercise} of the chapter's notebook in the gradebook, after checking that its
    autograded cells (graded code cells) are exactly the exercises' checks, with their points:
    else the assignment was not released from this version of the chapter."""
    from nbgrader.api import MissingEntry

    exercises = load_chapter(chapter).exercises.values()
    try:
        notebook = gradebook.find_notebook(chapter, chapter)
    except MissingEntry:
        raise GradebookError(f"The gradebook has no notebook {chapter} in an assignment {chapter}: "
                             f"run `nbgrader generate_assignment {chapter}` first.") from None
    in_gradebook = {cell.name: cell.max_score for cell in notebook.grade_cells if cell.cell_type == "code"}
    expected = {exercise.grade_ids[1]: exercise.points for exercise in exercises}
    if in_gradebook.keys() != expected.keys() or any(not math.isclose(in_gradebook[name], points)
                                                     for name, points in expected.items()):
        raise GradebookError(f"The gradebook's {chapter} is not this course's: its autograded cells are "
                             f"{in_gradebook}, the chapter's graders expect {expected}. Release it again "
                             f"(`python -m mi_course.release --stage instructor`, `nbgrader generate_assignment {chapter}`).")
    return {exercise.grade_ids[1]: exercise.name for exercise in exercises}


def _submission(gradebook, chapter: str, student: str):
    from nbgrader.api import MissingEntry

    try:
        return gradebook.find_submission_notebook(chapter, chapter, student)
    except MissingEntry:
        return None


def _record(submitted, checks: dict[str, str], grade: StudentGrade) -> None:
    """One student's sandboxed results into their submitted notebook's grades and comments.
    A grade whose auto score changes is flagged for review if a grader had overridden it."""
    results = {result.exercise: result for result in grade.results}
    comments = {comment.name: comment for comment in submitted.comments}
    for row in submitted.grades:
        if row.name not in checks:  # graded by hand: the grader's alone
            continue
        result = results[checks[row.name]]
        if row.auto_score is None or not math.isclose(row.auto_score, result.points):
            row.auto_score = result.points
            row.needs_manual_grade = row.manual_score is not None
        if (comment := comments.get(result.exercise)) is not None:
            comment.auto_comment = _reason(grade, result)


def _reason(grade: StudentGrade, result: Result) -> str:
    text = (f"mi-course grade scored this in its sandbox ({grade.sandbox}), not in the notebook's kernel: "
            f"{result.points:g} / {result.max_points:g}, {result.verdict.value}.")
    if result.message:
        text += f"\n{result.message}"
    return text[:MAX_COMMENT]
