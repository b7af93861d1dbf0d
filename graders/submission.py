"""Load a learner's notebook for grading: run its code, keep the objects it defines.

The code runs in this Python process, with the learner's permissions. That is right for
checking your own work; grading other people's notebooks needs a sandbox (a container
without network, limits on time and memory), which this module does not provide.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import torch
from IPython.core.inputtransformer2 import TransformerManager

from graders.core import CHAPTERS

__all__ = ["SKIP_TAG", "CellError", "Submission", "chapter_of", "load_submission", "run_cell"]

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


class _GradingShell:
    """Stands in for IPython's `get_ipython()`, which the transformed magics call: line
    magics and shell commands (`%matplotlib inline`, `!pip ...`) do nothing when grading,
    and a cell magic (`%%time`) just runs its cell."""

    def __init__(self, namespace: dict[str, Any]):
        self.namespace = namespace

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    system = getoutput = run_line_magic

    def run_cell_magic(self, magic: str, line: str, cell: str) -> None:
        exec(TransformerManager().transform_cell(cell), self.namespace)  # noqa: S102 - the learner's cell


def _is_graded_test(cell: nbformat.NotebookNode) -> bool:
    nbgrader = cell.metadata.get("nbgrader", {})
    return nbgrader.get("grade", False) and not nbgrader.get("solution", False)


def _new_namespace() -> dict[str, Any]:
    """The globals of a fresh notebook, as a kernel starts them."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    shell = _GradingShell(namespace)
    namespace["get_ipython"] = lambda: shell
    return namespace


def run_cell(source: str, namespace: dict[str, Any], filename: str) -> None:
    """Run one cell's code in `namespace`, discarding what it prints. Its lines are
    registered under `filename`, so that an error report can quote the learner's line."""
    python = TransformerManager().transform_cell(source)  # `%magic` and `!command` become calls
    linecache.cache[filename] = (len(python), None, python.splitlines(keepends=True), filename)
    code = compile(python, filename, "exec")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        exec(code, namespace)  # noqa: S102 - running the learner's notebook is the point


def load_submission(path: str | os.PathLike) -> Submission:
    """Run every code cell of the notebook at `path` in a fresh namespace, except the
    graded test cells (the graders run those checks themselves) and cells tagged
    `skip-when-grading`; return the namespace.

    A cell that raises is recorded and the next cell runs anyway, as when a learner runs
    the cells one by one: one broken exercise must not hide the others.
    """
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    chapter = chapter_of(notebook, path)
    namespace = _new_namespace()
    errors = []
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are drawn into nothing
    with _torch_global_state_restored():
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code" or _is_graded_test(cell) or SKIP_TAG in cell.metadata.get("tags", []):
                continue
            try:
                run_cell(cell.source, namespace, f"<cell {index}>")
            except (Exception, SystemExit) as error:  # noqa: BLE001 - recorded, grading goes on
                errors.append(CellError(index, f"{type(error).__name__}: {error}"))
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
