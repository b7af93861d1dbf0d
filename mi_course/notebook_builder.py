"""Build nbgrader *source* notebooks from Python.

A chapter is a list of cells::

    from mi_course.notebook_builder import markdown, code, solution, graded_test, notebook, write

    nb = notebook([
        markdown("# Adding numbers"),
        solution('''
            def add(a, b):
                ### BEGIN SOLUTION
                return a + b
                ### END SOLUTION
        ''', grade_id="add"),
        graded_test("assert add(1, 2) == 3", grade_id="test_add", points=2),
    ])
    write(nb, "solutions/99_example.ipynb")

Cells carry exactly the nbgrader (schema version 3) metadata that
``nbgrader generate_assignment`` validates.  Text is dedented and stripped, so
triple-quoted blocks can be indented like the surrounding code.  Cell ids are
derived from the grade id or the cell text, never random, so rebuilding a
chapter gives byte-identical files.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
from os import PathLike
from pathlib import Path
from typing import Iterable

import nbformat
from nbformat.notebooknode import NotebookNode

__all__ = ["markdown", "code", "solution", "solution_from_reference", "graded_test", "notebook", "write",
           "tagged", "check_cell", "exercise_table", "effort_section", "written_answer"]

_GRADE_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # nbgrader v3 schema, non-empty


def _clean(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def _nbgrader(grade_id: str, *, grade: bool = False, solution: bool = False,
              locked: bool = False, points: float | None = None) -> dict:
    if not _GRADE_ID.match(grade_id) or len(grade_id) > 64:
        raise ValueError(f"grade_id {grade_id!r} must match [A-Za-z0-9_-]+ (at most 64 chars)")
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked,
            "schema_version": 3, "solution": solution}
    if grade:
        if points is None or points < 0:
            raise ValueError(f"graded cell {grade_id!r} needs points >= 0")
        meta["points"] = points
    return meta


def markdown(text: str) -> NotebookNode:
    """A plain markdown cell."""
    return nbformat.v4.new_markdown_cell(_clean(text))


def code(text: str, *, locked: bool = False, grade_id: str | None = None) -> NotebookNode:
    """A plain code cell; ``locked=True`` makes it read-only for students
    (nbgrader restores its text at autograde time), which needs a ``grade_id``."""
    cell = nbformat.v4.new_code_cell(_clean(text))
    if locked:
        if grade_id is None:
            raise ValueError("a locked cell needs a grade_id")
        cell.metadata["nbgrader"] = _nbgrader(grade_id, locked=True)
    return cell


def solution(text: str, grade_id: str) -> NotebookNode:
    """A code cell the student edits.  The part between ``### BEGIN SOLUTION``
    and ``### END SOLUTION`` is replaced by the stub on release; without
    those markers the whole cell is."""
    cell = nbformat.v4.new_code_cell(_clean(text))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, solution=True)
    return cell


def solution_from_reference(function, grade_id: str | None = None) -> NotebookNode:
    """A solution cell made from a reference function's own source.

    The signature and docstring stay visible to the learner; the body goes between the
    solution markers, so the student notebook keeps the signature and gets a stub. The
    notebook is generated from the reference, so the two cannot drift apart.
    """
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    if not isinstance(definition, ast.FunctionDef):
        raise TypeError(f"{function!r} is not a plain function")
    body = definition.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
        and isinstance(body[0].value.value, str)
    if has_docstring and len(body) == 1:
        raise ValueError(f"{function.__name__} has a docstring but no body to hide")
    first_hidden = body[1] if has_docstring else body[0]
    lines = source.splitlines()
    start = first_hidden.lineno - 1
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    text = "\n".join([
        *lines[:start],
        f"{indent}### BEGIN SOLUTION",
        *lines[start:],
        f"{indent}### END SOLUTION",
    ])
    return solution(text, grade_id or function.__name__)


def written_answer(text: str, grade_id: str, points: float) -> NotebookNode:
    """A markdown cell the student writes in, graded by hand in nbgrader (``grade`` and
    ``solution`` both set). ``text`` is the model answer, replaced by the text stub on
    release. `mi-course check` grades only code exercises and leaves it alone."""
    cell = nbformat.v4.new_markdown_cell(_clean(text))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, grade=True, solution=True, points=points)
    return cell


def graded_test(text: str, grade_id: str, points: float) -> NotebookNode:
    """A read-only, autograded test cell worth ``points``: full marks when it
    runs without error, zero otherwise.  Lines between
    ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed from
    the student notebook and put back when autograding.

    nbgrader also scores zero if the cell writes to stderr (a warning does),
    and takes a number the cell's last expression evaluates to as partial
    credit, so end the cell with a statement (an ``assert``, a ``print``)."""
    cell = nbformat.v4.new_code_cell(_clean(text))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, grade=True, locked=True, points=points)
    return cell


def notebook(cells: Iterable[NotebookNode], kernel: str = "python3") -> NotebookNode:
    """Assemble cells into a notebook with deterministic cell ids and a
    Python kernelspec (nbgrader picks the code stub by kernel language)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": kernel}
    nb.metadata["language_info"] = {"name": "python"}
    seen: set[str] = set()
    grade_ids: set[str] = set()
    for cell in cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None:
            if gid in grade_ids:
                raise ValueError(f"duplicate grade_id {gid!r}")
            grade_ids.add(gid)
            base = gid
        else:
            digest = hashlib.sha1(cell.source.encode()).hexdigest()[:8]
            base = f"{cell.cell_type[:2]}-{digest}"
        cid, n = base, 1
        while cid in seen:
            n += 1
            cid = f"{base}-{n}"
        seen.add(cid)
        cell = nbformat.from_dict(dict(cell))
        cell["id"] = cid
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def write(nb: NotebookNode, path: str | PathLike) -> Path:
    """Write ``nb`` as canonical nbformat JSON (sorted keys, trailing newline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- chapter helpers
# A chapter's builder passes its graders' `Chapter` (exercises with points and variants)
# and its EFFORT table {exercise: (difficulty out of 5, minutes)}.


def tagged(cell: NotebookNode, *tags: str) -> NotebookNode:
    cell.metadata["tags"] = list(tags)
    return cell


def _check_call(name: str, variant) -> str:
    return f"check({name}" + "".join(f", {key}={value!r}" for key, value in variant.items()) + ")"


def check_cell(chapter, name: str) -> NotebookNode:
    """The graded test after an exercise: `check(name)` with the grader's first variant,
    then, hidden from the learner, its other variants (other seeds, other shapes)."""
    exercise = chapter.exercises[name]
    visible, *hidden = (_check_call(name, variant) for variant in exercise.variants)
    return graded_test(
        "\n".join([visible, "### BEGIN HIDDEN TESTS", *hidden, "### END HIDDEN TESTS"]),
        grade_id=f"check_{name}",
        points=exercise.points,
    )


def _stars(difficulty: int) -> str:
    return "★" * difficulty + "☆" * (5 - difficulty)


def exercise_table(chapter, effort: dict[str, tuple[int, int]]) -> str:
    """A markdown table of the chapter's exercises: points, difficulty and time."""
    rows = [f"| `{name}` | {chapter.exercises[name].points:g} | {_stars(difficulty)} | {minutes} min |"
            for name, (difficulty, minutes) in effort.items()]
    total = f"| total | {chapter.max_points:g} | | {sum(minutes for _, minutes in effort.values())} min |"
    return "\n".join(["| exercise | points | difficulty | time |", "|---|---|---|---|", *rows, total])


def effort_section(effort: dict[str, tuple[int, int]], text: str, *exercises: str) -> NotebookNode:
    """A markdown cell introducing exercises, ending with their difficulty and time."""
    difficulty = max(effort[name][0] for name in exercises)
    minutes = sum(effort[name][1] for name in exercises)
    line = f"**Difficulty** {_stars(difficulty)} · **Time** about {minutes} minutes"
    return markdown(textwrap.dedent(text).strip("\n") + "\n\n" + line)
