"""Solution cells generated from reference functions."""

import pytest
import torch

from mi_course.notebook_builder import solution_from_reference


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
