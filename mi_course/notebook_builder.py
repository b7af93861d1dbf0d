"""Build nbgrader *source* notebooks: from a chapter's literate source, or from cells.

A chapter is one text file, ``solutions/<chapter>.py``, in jupytext's percent format: a
``# %% [markdown]`` cell is Markdown (commented out), a ``# %%`` cell is plain Python, and
the file runs top to bottom as a script. :func:`build_chapter` turns it into the nbgrader
source notebook ``solutions/<chapter>.ipynb``; ``mi-course release`` builds every chapter
that way and releases the student notebooks in ``course/`` through nbgrader.

What nbgrader needs is cell metadata, written in the cell's header line::

    # %% exercise="bracket_depth" difficulty=2 minutes=15
    from solutions.three_buckets import bracket_depth

This is the whole vocabulary:

``exercise="name" difficulty=D minutes=M`` (code cell)
    An exercise of the chapter's graders, ``D`` out of 5 and about ``M`` minutes. The
    builder replaces the cell by the solution cell generated from the grader's reference
    (``graders.core.load_chapter(chapter).exercises[name].reference``: its signature and
    docstring shown, its body hidden) and the graded ``check(name)`` cell after it, with
    the grader's points and hidden variants. Import the reference in the cell, so that the
    source still runs as a script. Every exercise of the graders needs its cell.
``effort=["name", ...]`` (markdown cell)
    The cell introduces these exercises: it ends with the hardest one's difficulty and
    their time together.
``exercise_table=true`` (markdown cell, left empty)
    Replaced by the table of the chapter's exercises, in notebook order: points (from the
    graders), difficulty and time.
``written_answer="grade_id" points=P`` (markdown cell)
    An answer the learner writes, graded by hand in nbgrader for ``P`` points; the cell's
    text is the model answer, which the student notebook replaces by a stub.
``tags=["skip-when-grading"]`` (any cell)
    Cell tags, kept as they are; this one (``graders.submission.SKIP_TAG``) marks a cell
    that grading need not run (training, plots, long analyses).

Any other key is an error, so that a typo cannot silently drop an exercise.

**How to add a chapter.** Write its graders, ``graders/chapter_NN.py`` (with the chapter
registered in ``graders.core.CHAPTERS``), its reference code, ``solutions/<topic>.py``,
and its source, ``solutions/NN_<name>.py``; then run ``mi-course release``, which writes
``solutions/NN_<name>.ipynb`` and ``course/NN_<name>.ipynb`` (``--check`` says what is stale,
as a test does).

The cell helpers below (:func:`markdown`, :func:`code`, :func:`solution`,
:func:`graded_test`, :func:`written_answer`, :func:`notebook`, :func:`write`) build
notebooks directly, for tests. Cells carry exactly the nbgrader (schema version 3)
metadata that ``nbgrader generate_assignment`` validates. Text is dedented and stripped,
so triple-quoted blocks can be indented like the surrounding code. Cell ids are derived
from the grade id or the cell text, never random, so rebuilding a chapter gives
byte-identical files.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import jupytext
import nbformat
from nbformat.notebooknode import NotebookNode

from graders.core import check_call

__all__ = ["markdown", "code", "solution", "solution_from_reference", "graded_test", "written_answer", "notebook",
           "write", "CHAPTER_SOURCES", "CELL_KEYS", "build_all", "build_chapter", "check_cell", "exercise_table"]

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


def code(text: str) -> NotebookNode:
    """A plain code cell."""
    return nbformat.v4.new_code_cell(_clean(text))


def solution(text: str, grade_id: str) -> NotebookNode:
    """A code cell the student edits.  The part between ``### BEGIN SOLUTION``
    and ``### END SOLUTION`` is replaced by the stub on release; without
    those markers the whole cell is."""
    cell = nbformat.v4.new_code_cell(_clean(text))
    cell.metadata["nbgrader"] = _nbgrader(grade_id, solution=True)
    return cell


def solution_from_reference(function, grade_id: str | None = None) -> NotebookNode:
    """A solution cell made from a reference function's or class's own source.

    The signature and docstring stay visible to the learner; the body goes between the
    solution markers, so the student notebook keeps the signature and gets a stub. In a
    class, each method's body gets its own markers, so the class line, its docstring and
    attributes, and every method's signature and docstring stay. The notebook is generated
    from the reference, so the two cannot drift apart.
    """
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    if isinstance(definition, ast.ClassDef):
        functions = [node for node in definition.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if not functions:
            raise ValueError(f"{function.__name__} has no method to hide")
    elif isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        functions = [definition]
    else:
        raise TypeError(f"{function!r} is neither a function nor a class")
    lines = source.splitlines()
    for body in sorted((_hidden_lines(node) for node in functions), reverse=True):  # bottom up: indices hold
        first, last = body
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        lines[first:last] = [f"{indent}### BEGIN SOLUTION", *lines[first:last], f"{indent}### END SOLUTION"]
    return solution("\n".join(lines), grade_id or function.__name__)


def _hidden_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """The 0-based [first, last) line range of a function's body after its docstring."""
    body = function.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str)
    if has_docstring and len(body) == 1:
        raise ValueError(f"{function.name} has a docstring but no body to hide")
    first_hidden = body[1] if has_docstring else body[0]
    if first_hidden.lineno == function.lineno:
        raise ValueError(f"{function.name} has its body on its signature's line: put it on lines of its own")
    return first_hidden.lineno - 1, body[-1].end_lineno


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
    path.write_text(_json(nb), encoding="utf-8")
    return path


def _json(nb: NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------- chapters

#: Which file names in ``solutions/`` are chapter sources; the rest is reference code.
CHAPTER_SOURCES = "[0-9][0-9]_*.py"

#: The metadata a chapter source's cells may carry (see the module's docstring).
CELL_KEYS = {
    "code": {"exercise", "difficulty", "minutes", "tags"},
    "markdown": {"effort", "exercise_table", "written_answer", "points", "tags"},
}
_JUPYTEXT_LAYOUT = {"lines_to_next_cell"}  # how jupytext spaces the text file: not the notebook's


def build_all(solutions_dir: str | PathLike) -> dict[Path, str]:
    """Every chapter's nbgrader source notebook, as its source in ``solutions_dir`` builds it
    now: ``{notebook path: JSON text}``."""
    return {source.with_suffix(".ipynb"): _json(build_chapter(source))
            for source in sorted(Path(solutions_dir).glob(CHAPTER_SOURCES))}


def build_chapter(source: str | PathLike) -> NotebookNode:
    """The nbgrader source notebook of one chapter source, ``solutions/<chapter>.py``:
    its cells in order, each exercise cell replaced by the solution cell generated from
    the grader's reference and the graded check after it."""
    from graders.core import load_chapter

    source = Path(source)
    chapter = load_chapter(source.stem)
    cells = jupytext.read(source, fmt="py:percent").cells
    for cell in cells:
        cell.metadata = _declared(cell)
    effort = {cell.metadata["exercise"]: (cell.metadata["difficulty"], cell.metadata["minutes"])
              for cell in cells if "exercise" in cell.metadata}
    if missing := [name for name in chapter.exercises if name not in effort]:
        raise ValueError(f"{source.name} has no exercise cell for {', '.join(missing)}")
    if unknown := [name for name in effort if name not in chapter.exercises]:
        raise ValueError(f"{source.name} has exercise cells the graders do not know: {', '.join(unknown)}")
    nb = notebook(built for cell in cells for built in _build_cell(cell, chapter, effort))
    nb.metadata["mi_course"] = {"chapter": chapter.name}
    return nb


def _declared(cell: NotebookNode) -> dict:
    """The metadata the chapter's author wrote on a cell; a key outside the vocabulary is an error."""
    metadata = {key: value for key, value in cell.metadata.items() if key not in _JUPYTEXT_LAYOUT}
    if unknown := set(metadata) - CELL_KEYS[cell.cell_type]:
        raise ValueError(f"unknown metadata {sorted(unknown)} on a {cell.cell_type} cell: {cell.source[:60]!r}")
    return metadata


def _build_cell(cell: NotebookNode, chapter, effort: dict[str, tuple[int, int]]) -> list[NotebookNode]:
    metadata = cell.metadata
    if "exercise" in metadata:
        exercise = chapter.exercises[metadata["exercise"]]
        return [solution_from_reference(exercise.reference, exercise.grade_ids[0]), check_cell(chapter, exercise.name)]
    if "exercise_table" in metadata:
        return [markdown(exercise_table(chapter, effort))]
    if "written_answer" in metadata:
        return [written_answer(cell.source, metadata["written_answer"], metadata["points"])]
    if "effort" in metadata:
        built = markdown(cell.source + "\n\n" + _effort_line(effort, metadata["effort"]))
    else:
        built = markdown(cell.source) if cell.cell_type == "markdown" else code(cell.source)
    if "tags" in metadata:
        built.metadata["tags"] = metadata["tags"]
    return [built]


def check_cell(chapter, name: str) -> NotebookNode:
    """The graded test after an exercise: `check(name)` with the grader's first variant,
    then, hidden from the learner, its other variants (other seeds, other shapes)."""
    exercise = chapter.exercises[name]
    visible, *hidden = (check_call(name, variant) for variant in exercise.variants)
    return graded_test(
        "\n".join([visible, "### BEGIN HIDDEN TESTS", *hidden, "### END HIDDEN TESTS"]),
        grade_id=exercise.grade_ids[1],
        points=exercise.points,
    )


def _stars(difficulty: int) -> str:
    return "★" * difficulty + "☆" * (5 - difficulty)


def exercise_table(chapter, effort: dict[str, tuple[int, int]]) -> str:
    """A markdown table of the chapter's exercises, in the order of ``effort``: points
    (from the graders), difficulty and time."""
    rows = [f"| `{name}` | {chapter.exercises[name].points:g} | {_stars(difficulty)} | {minutes} min |"
            for name, (difficulty, minutes) in effort.items()]
    total = f"| total | {chapter.max_points:g} | | {sum(minutes for _, minutes in effort.values())} min |"
    return "\n".join(["| exercise | points | difficulty | time |", "|---|---|---|---|", *rows, total])


def _effort_line(effort: dict[str, tuple[int, int]], exercises: list[str]) -> str:
    """The line that ends a section introducing ``exercises``: the hardest one's
    difficulty, and their time together."""
    difficulty = max(effort[name][0] for name in exercises)
    minutes = sum(effort[name][1] for name in exercises)
    return f"**Difficulty** {_stars(difficulty)} · **Time** about {minutes} minutes"

