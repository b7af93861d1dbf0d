"""Solution cells generated from reference functions, and the chapters' notebooks up to date."""

import pytest
import torch

from mi_course.cli import COURSE_DIR, SOLUTIONS_DIR, built_chapters
from mi_course.notebook_builder import solution_from_reference
from mi_course.release import is_stale


@torch.no_grad()
def reference_double(x: torch.Tensor) -> torch.Tensor:
    """Twice x.

    A docstring the learner keeps.
    """
    doubled = x * 2  # a comment inside the solution
    return doubled


def reference_without_docstring(x):
    return x


def test_the_body_goes_between_the_markers_and_the_docstring_stays_outside():
    cell = solution_from_reference(reference_double)
    lines = cell.source.splitlines()
    assert lines[0] == "@torch.no_grad()"
    begin, end = lines.index("    ### BEGIN SOLUTION"), lines.index("    ### END SOLUTION")
    assert "A docstring the learner keeps." in "\n".join(lines[:begin])
    assert lines[begin + 1:end] == ["    doubled = x * 2  # a comment inside the solution", "    return doubled"]
    assert end == len(lines) - 1
    assert cell.metadata["nbgrader"]["grade_id"] == "reference_double"
    assert cell.metadata["nbgrader"]["solution"]


def test_a_function_without_docstring_hides_its_whole_body():
    lines = solution_from_reference(reference_without_docstring, grade_id="identity").source.splitlines()
    assert lines == ["def reference_without_docstring(x):", "    ### BEGIN SOLUTION", "    return x",
                     "    ### END SOLUTION"]


def test_classes_are_refused():
    with pytest.raises(TypeError, match="not a plain function"):
        solution_from_reference(torch.nn.Identity)


def test_notebooks_are_up_to_date():
    """solutions/*.ipynb are what their builder scripts write, and course/ is their release."""
    stale = [path.name for path, text in built_chapters().items() if path.read_text(encoding="utf-8") != text]
    assert stale == [], "run: mi-course release"
    assert is_stale(SOLUTIONS_DIR, COURSE_DIR) == [], "run: mi-course release"
