"""Every chapter's notebooks say which chapter they are, so that a renamed copy is still
recognised and one handed in for the wrong chapter is refused with a reason."""

import shutil
from pathlib import Path

import nbformat
import pytest

from graders.core import CHAPTERS
from graders.submission import chapter_of
from mi_course.grading import read_notebook
from mi_course.runtime.paths import COURSE_DIR, SOLUTIONS_DIR


@pytest.mark.parametrize("folder", [COURSE_DIR, SOLUTIONS_DIR], ids=["course", "solutions"])
@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_a_renamed_notebook_is_still_its_chapter(tmp_path: Path, folder: Path, chapter: str) -> None:
    notebook = nbformat.read(folder / f"{chapter}.ipynb", as_version=4)
    assert notebook.metadata["mi_course"] == {"chapter": chapter}
    assert chapter_of(notebook, tmp_path / "homework (final).ipynb") == chapter


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_a_notebook_handed_in_for_the_wrong_chapter_is_refused(tmp_path: Path, chapter: str) -> None:
    names = list(CHAPTERS)
    other = names[(names.index(chapter) + 1) % len(names)]
    handed_in = tmp_path / f"{other}.ipynb"  # named for the other chapter, but it is this one
    shutil.copy(COURSE_DIR / f"{chapter}.ipynb", handed_in)
    notebook, problems = read_notebook(handed_in, other)
    assert notebook is None
    assert problems == [f"This is a notebook of chapter {chapter}, not of chapter {other}: was the right file handed in?"]
