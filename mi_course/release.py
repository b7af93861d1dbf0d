"""Build the chapters' nbgrader source notebooks, and turn them into student notebooks.

:func:`release_chapters` builds ``solutions/<chapter>.ipynb`` from each chapter's source
``solutions/<chapter>.py`` (:mod:`mi_course.notebook_builder`), then releases them all
into ``course/``; :func:`stale_chapters` says which of either is out of date.

nbgrader wants one folder per assignment (``source/<assignment>/<nb>.ipynb``)
while this course keeps its chapters flat (``solutions/<chapter>.ipynb``).  So:

* :func:`stage_source` copies every chapter to
  ``<nbgrader root>/source/<chapter>/<chapter>.ipynb`` (one assignment per
  chapter), ready for the instructor's ``nbgrader generate_assignment``;
* :func:`release` stages into a temporary nbgrader course, runs nbgrader's own
  ``GenerateAssignment`` converter (stubs for solutions, hidden tests removed,
  outputs cleared, checksums added) and writes ``course/<chapter>.ipynb``;
* :func:`is_stale` says which committed student notebooks differ from a fresh
  release.

Staging gives cells without an id a deterministic one (nbformat would invent
random ids), so releasing twice gives byte-identical files, and the committed
``course/`` notebooks are exactly what ``nbgrader generate_assignment`` puts in
``<nbgrader root>/release/``.

Command line (from the repository root), the same as ``mi-course release``::

    python -m mi_course.release                   # chapter sources -> solutions/*.ipynb -> course/
    python -m mi_course.release --check           # exit 1 if any of them is stale
    python -m mi_course.release --stage instructor  # solutions/ -> instructor/source/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from os import PathLike
from pathlib import Path

from traitlets.config import Config

from mi_course.notebook_builder import build_all
from toy_models.exercises import STUB_MESSAGE

__all__ = ["CODE_STUB", "TEXT_STUB", "nbgrader_config", "stage_source", "render",
           "release", "is_stale", "release_chapters", "stale_chapters", "main"]

#: Replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region.
CODE_STUB = f'# YOUR CODE HERE\nraise NotImplementedError("{STUB_MESSAGE}")'
#: Replaces the answer in a written-answer (markdown solution) cell.
TEXT_STUB = "YOUR ANSWER HERE"

_log = logging.getLogger(__name__)


def nbgrader_config() -> Config:
    """The nbgrader settings that shape the student notebooks; the repository's
    ``nbgrader_config.py`` uses the same stubs."""
    c = Config()
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = TEXT_STUB
    return c


def _chapters(solutions_dir: Path) -> list[Path]:
    return sorted(p for p in Path(solutions_dir).glob("*.ipynb") if p.is_file())


def _normalized_source(path: Path) -> str:
    """The notebook's JSON with an id on every cell (``cell-<index>`` where the
    author left none), so that nbformat does not invent random ones."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 0) < 5:
        nb["nbformat_minor"] = 5
    used = {c["id"] for c in nb.get("cells", []) if c.get("id")}
    for i, cell in enumerate(nb.get("cells", [])):
        if not cell.get("id"):
            cid = f"cell-{i}"
            while cid in used:
                cid += "x"
            cell["id"] = cid
            used.add(cid)
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def stage_source(solutions_dir: str | PathLike, nbgrader_root: str | PathLike) -> list[Path]:
    """Copy each ``solutions/<ch>.ipynb`` to ``<nbgrader_root>/source/<ch>/<ch>.ipynb``.

    Files are rewritten only when their content changes.  Returns the staged paths.
    """
    out = []
    for src in _chapters(Path(solutions_dir)):
        dest = Path(nbgrader_root) / "source" / src.stem / src.name
        text = _normalized_source(src)
        if not dest.exists() or dest.read_text(encoding="utf-8") != text:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
        out.append(dest)
    return out


def render(solutions_dir: str | PathLike) -> dict[str, str]:
    """Run nbgrader's GenerateAssignment on every chapter, in a temporary course
    directory and without a gradebook; return ``{file name: student notebook JSON}``."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    chapters = _chapters(Path(solutions_dir))
    if not chapters:
        return {}
    with tempfile.TemporaryDirectory(prefix="mi_course_release_") as tmp:
        root = Path(tmp).resolve()
        stage_source(solutions_dir, root)
        cfg = nbgrader_config()
        cfg.CourseDirectory.root = str(root)
        # no gradebook for a plain release: both switches are needed (= `--no-db`)
        cfg.GenerateAssignment.no_database = True
        cfg.SaveCells.enabled = False
        coursedir = CourseDirectory(config=cfg)
        coursedir.assignment_id = "*"
        logger = logging.getLogger(f"{__name__}.nbgrader")
        logger.propagate = False  # nbgrader is chatty; its log is kept for errors only
        logger.setLevel(logging.INFO)
        converter = GenerateAssignment(coursedir=coursedir, config=cfg, log=logger)
        result = capture_log(converter)
        if not result["success"]:
            raise RuntimeError("nbgrader generate_assignment failed:\n"
                               + result.get("log", "") + result.get("error", ""))
        out = {}
        for ch in chapters:
            released = root / "release" / ch.stem / ch.name
            if not released.exists():
                raise RuntimeError(f"nbgrader produced no student notebook for {ch.name}:\n"
                                   + result.get("log", ""))
            out[ch.name] = released.read_text(encoding="utf-8")
        return out


def release(solutions_dir: str | PathLike, course_dir: str | PathLike) -> list[Path]:
    """Write the student version of every ``solutions/*.ipynb`` to
    ``course_dir/<same name>.ipynb`` (only rewriting files whose content changed).
    Returns the student notebook paths."""
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(solutions_dir).items():
        path = course_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def is_stale(solutions_dir: str | PathLike, course_dir: str | PathLike) -> list[str]:
    """File names of student notebooks in ``course_dir`` that are missing or differ
    from a fresh release, plus released notebooks (ones carrying nbgrader
    metadata) whose chapter no longer exists in ``solutions_dir``."""
    course_dir = Path(course_dir)
    fresh = render(solutions_dir)
    stale = [name for name, text in fresh.items()
             if not (course_dir / name).exists()
             or (course_dir / name).read_text(encoding="utf-8") != text]
    for path in sorted(course_dir.glob("*.ipynb")):
        if path.name not in fresh and '"nbgrader"' in path.read_text(encoding="utf-8"):
            stale.append(path.name)
    return sorted(stale)


def release_chapters(solutions_dir: str | PathLike, course_dir: str | PathLike) -> list[Path]:
    """Build every chapter's source notebook from its source, then release them all;
    rewrite only the files whose content changed. Returns the paths of both."""
    built = build_all(solutions_dir)
    for path, text in built.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return [*built, *release(solutions_dir, course_dir)]


def stale_chapters(solutions_dir: str | PathLike, course_dir: str | PathLike) -> list[Path]:
    """The source notebooks that differ from what their chapter sources build now, and the
    student notebooks that differ from a release of those fresh builds (see :func:`is_stale`)."""
    built = build_all(solutions_dir)
    stale = [path for path, text in built.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    with tempfile.TemporaryDirectory(prefix="mi_course_build_") as fresh:
        for path in _chapters(Path(solutions_dir)):  # a notebook without a source is released as it is
            (Path(fresh) / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        for path, text in built.items():
            (Path(fresh) / path.name).write_text(text, encoding="utf-8")
        stale += [Path(course_dir) / name for name in is_stale(fresh, course_dir)]
    return stale


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mi_course.release", description=__doc__.split("\n\n")[0])
    p.add_argument("--solutions", default="solutions", help="nbgrader source notebooks (default: solutions)")
    p.add_argument("--course", default="course", help="student notebooks (default: course)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="only report stale student notebooks; exit 1 if any")
    g.add_argument("--stage", metavar="NBGRADER_ROOT",
                   help="copy chapters into NBGRADER_ROOT/source/<chapter>/ for the nbgrader commands")
    a = p.parse_args(argv)
    if a.check:
        stale = stale_chapters(a.solutions, a.course)
        for path in stale:
            print(f"stale: {path}")
        if stale:
            print("run: python -m mi_course.release", file=sys.stderr)
        return 1 if stale else 0
    if a.stage:
        for path in stage_source(a.solutions, a.stage):
            print(path)
        return 0
    for path in release_chapters(a.solutions, a.course):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
