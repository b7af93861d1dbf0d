"""Load a learner's notebook for grading: run its code, keep the objects it defines.

The code runs in this Python process, with the learner's permissions. That is right for
checking your own work; to grade other people's notebooks, use `mi-course grade`, which
runs each notebook in a sandbox and decides the grades outside it (`mi_course.grading`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import torch

from graders.core import CHAPTERS
from mi_course.runtime.learner_code import new_namespace, run_cell

__all__ = ["SKIP_TAG", "CellError", "Submission", "chapter_of", "cells_to_run", "load_submission"]

#: Cells with this tag are not run when grading: long demos, such as training a model,
#: that no exercise depends on.
SKIP_TAG = "skip-when-grading"


@dataclass(frozen=True)
class CellError:
    cell: int  # index in the notebook, counting markdown cells too
    error: str  # "TypeError: ..."


@dataclass(frozen=True)
class Submission:
    path: Path
    chapter: str
    namespace: dict[str, Any]
    cell_errors: tuple[CellError, ...]


def chapter_of(notebook: nbformat.NotebookNode, path: Path) -> str:
    """The chapter a notebook belongs to: its `mi_course.chapter` metadata, or else the
    chapter whose name its file name starts with (a learner's copy may be renamed
    `00_transformer_from_scratch-Copy1.ipynb`)."""
    chapter = notebook.metadata.get("mi_course", {}).get("chapter")
    if chapter is None:
        chapter = next((name for name in CHAPTERS if path.stem.startswith(name)), None)
    if chapter not in CHAPTERS:
        raise ValueError(
            f"Cannot tell which chapter {path.name} is: name it after its chapter "
            f"({', '.join(CHAPTERS)}) or keep the notebook metadata mi_course.chapter."
        )
    return chapter


def _is_graded_test(cell: nbformat.NotebookNode) -> bool:
    nbgrader = cell.metadata.get("nbgrader", {})
    return nbgrader.get("grade", False) and not nbgrader.get("solution", False)


def cells_to_run(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(index, source) of the code cells grading runs: all but the graded test cells (the
    graders run those checks themselves) and cells tagged `skip-when-grading`."""
    return [
        (index, cell.source) for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and not _is_graded_test(cell) and SKIP_TAG not in cell.metadata.get("tags", [])
    ]


def load_submission(path: str | os.PathLike) -> Submission:
    """Run the notebook's `cells_to_run` in a fresh namespace, in this process; return it.

    A cell that raises is recorded and the next cell runs anyway, as when a learner runs
    the cells one by one: one broken exercise must not hide the others.
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    chapter = chapter_of(notebook, path)
    namespace = new_namespace()
    errors = []
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are drawn into nothing
    with _torch_global_state_restored():
        for index, source in cells_to_run(notebook):
            try:
                run_cell(source, namespace, f"<cell {index}>")
            except (Exception, SystemExit) as error:  # noqa: BLE001 - recorded, grading goes on
                errors.append(CellError(index, f"{type(error).__name__}: {error}"))
    if "matplotlib.pyplot" in sys.modules:  # the notebook's figures, kept open by pyplot, are not needed
        sys.modules["matplotlib.pyplot"].close("all")
    return Submission(path, chapter, namespace, tuple(errors))


@contextlib.contextmanager
def _torch_global_state_restored():
    """A notebook may switch torch's global settings (`torch.set_grad_enabled(False)` at the
    top is common); they must not leak into the graders or whatever runs next."""
    grad_enabled, dtype, threads = torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_grad_enabled(grad_enabled)
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
