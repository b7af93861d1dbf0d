"""Running a learner's notebook code, and saying where in it something went wrong.

Shared by the in-process checks (`check(...)` in a notebook, `mi-course check`) and by
the sandboxed grader's learner process, which cannot import `graders`.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import os
import sysconfig
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from IPython.core.inputtransformer2 import TransformerManager

from mi_course.runtime.paths import package_dirs

__all__ = ["new_namespace", "run_cell", "describe_error", "stub_name"]


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


def new_namespace() -> dict[str, Any]:
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


# Python's, torch's and the course's own code live in these folders; code anywhere else
# (a notebook cell, the learner's own module) is the learner's.
_NOT_LEARNER_DIRS = tuple(
    str(directory)
    for directory in (
        *{Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "purelib", "platlib")},
        *(found for package in ("graders", "mi_course", "toy_models") for found in package_dirs(package)),
    )
)


def _is_learner_code(filename: str) -> bool:
    on_disk = not filename.startswith("<") and os.path.exists(filename)  # cells are "<cell 3>" or not on disk
    return not (on_disk and str(Path(filename).resolve()).startswith(_NOT_LEARNER_DIRS))


def _learner_frame(tb: TracebackType | None, *, deepest_only: bool = False) -> tuple[str, int, str] | None:
    """(function's qualified name, line number, line text) of the deepest frame of learner
    code in the traceback; with `deepest_only`, only if the deepest frame of all is one."""
    found = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_learner_code(code.co_filename):
            line = linecache.getline(code.co_filename, tb.tb_lineno, tb.tb_frame.f_globals).strip()
            found = (code.co_qualname, tb.tb_lineno, line)
        elif deepest_only:
            found = None
        tb = tb.tb_next
    return found


def stub_name(error: NotImplementedError) -> str | None:
    """The learner's function that raised `error` itself (a stub not yet replaced), or
    None if it came from deeper down (torch raises NotImplementedError too)."""
    stub = _learner_frame(error.__traceback__, deepest_only=True)
    return None if stub is None else stub[0]


def describe_error(error: BaseException) -> str:
    """The exception, and the learner's line that raised it; no traceback through torch."""
    text = f"Your code raised {type(error).__name__}: {error}"
    where = _learner_frame(error.__traceback__)
    if where is None:  # the grader itself failed: say where, so that it can be reported
        last = traceback.extract_tb(error.__traceback__)[-1]
        return f"{text}\n  (raised in the grader, {Path(last.filename).name} line {last.lineno}: please report this)"
    qualname, lineno, line = where
    return f"{text}\n  in `{qualname}`, line {lineno}" + (f": {line}" if line else "")
