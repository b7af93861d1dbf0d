"""Solution cells generated from references (functions and classes), chapter sources built into
notebooks, and the chapters' notebooks up to date."""

import inspect
from pathlib import Path

import pytest
import torch

from graders.chapter_01 import CHAPTER as CHAPTER_01
from mi_course.notebook_builder import build_chapter, solution_from_reference
from mi_course.release import stale_chapters
from mi_course.runtime.paths import COURSE_DIR, SOLUTIONS_DIR


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


class ReferenceScale(torch.nn.Module):
    """Multiplies by a learned scale."""

    factor_name = "scale"  # a class attribute the learner keeps

    def __init__(self, size: int):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(size))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x times the scale."""
        return x * self.scale


def test_a_class_keeps_its_outline_and_hides_each_method_body():
    lines = solution_from_reference(ReferenceScale).source.splitlines()
    assert lines == [
        "class ReferenceScale(torch.nn.Module):",
        '    """Multiplies by a learned scale."""',
        "",
        '    factor_name = "scale"  # a class attribute the learner keeps',
        "",
        "    def __init__(self, size: int):",
        "        ### BEGIN SOLUTION",
        "        super().__init__()",
        "        self.scale = torch.nn.Parameter(torch.ones(size))",
        "        ### END SOLUTION",
        "",
        "    @torch.no_grad()",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        '        """x times the scale."""',
        "        ### BEGIN SOLUTION",
        "        return x * self.scale",
        "        ### END SOLUTION",
    ]


def test_the_student_stub_of_a_class_is_still_a_class_with_its_signatures():
    """nbgrader replaces each region with the stub: what is left compiles, and defines
    the same methods with the same signatures."""
    from nbgrader.preprocessors import ClearSolutions

    from mi_course.release import nbgrader_config

    stub_cell, _ = ClearSolutions(config=nbgrader_config()).preprocess_cell(
        solution_from_reference(ReferenceScale), {"language": "python"}, 0)
    namespace = {"torch": torch}
    exec(stub_cell.source, namespace)
    stub = namespace["ReferenceScale"]
    assert "### BEGIN SOLUTION" not in stub_cell.source
    assert stub.__doc__ == ReferenceScale.__doc__ and stub.forward.__doc__ == ReferenceScale.forward.__doc__
    for method in ("__init__", "forward"):
        assert inspect.signature(getattr(stub, method)) == inspect.signature(getattr(ReferenceScale, method))
    with pytest.raises(NotImplementedError):
        stub(3)


def test_what_has_no_body_to_hide_is_refused():
    class Empty:
        """Nothing to write."""

    with pytest.raises(ValueError, match="no method to hide"):
        solution_from_reference(Empty)
    with pytest.raises(TypeError, match="neither a function nor a class"):
        solution_from_reference(torch.nn.functional)


def copy_of_chapter_01(tmp_path, edit) -> Path:
    source = SOLUTIONS_DIR / "01_three_buckets.py"
    copy = tmp_path / source.name  # the file name says which chapter's graders it has
    copy.write_text(edit(source.read_text(encoding="utf-8")), encoding="utf-8")
    return copy


def test_a_chapter_source_builds_its_exercise_cells_from_the_graders(tmp_path):
    nb = build_chapter(copy_of_chapter_01(tmp_path, lambda text: text))
    cells = {cell.get("id"): cell for cell in nb.cells}
    assert cells["bracket_depth"].source.startswith("def bracket_depth(")
    assert "### BEGIN SOLUTION" in cells["bracket_depth"].source
    assert cells["check_bracket_depth"].metadata["nbgrader"]["points"] == CHAPTER_01.exercises["bracket_depth"].points
    assert nb.metadata["mi_course"] == {"chapter": "01_three_buckets"}


@pytest.mark.parametrize("edit, error", [
    (lambda text: text.replace('exercise="steer"', 'exercize="steer"'), "unknown metadata"),
    (lambda text: text.replace('exercise="steer"', 'exercise="stear"'), "no exercise cell for steer"),
], ids=["a misspelt key", "a misspelt exercise"])
def test_a_chapter_source_with_a_typo_is_refused(tmp_path, edit, error):
    with pytest.raises(ValueError, match=error):
        build_chapter(copy_of_chapter_01(tmp_path, edit))


def test_notebooks_are_up_to_date():
    """solutions/*.ipynb are what their chapter sources build, and course/ is their release."""
    assert stale_chapters(SOLUTIONS_DIR, COURSE_DIR) == [], "run: mi-course release"
