"""Realistic wrong answers, made by editing the course's own solution cells."""

import nbformat

from graders import Submission
from mi_course.runtime.learner_code import run_cell


def edited_solution(solution: Submission, name: str, edits: list[tuple[str, str]]):
    """The object `name` defined by its solution cell with each `old` text replaced by
    `new`, in a copy of the solution notebook's namespace."""
    cells = nbformat.read(solution.path, as_version=4).cells
    (source,) = [cell.source for cell in cells if cell.metadata.get("nbgrader", {}).get("grade_id") == name]
    for old, new in edits:
        assert old in source, f"{old!r} is no longer in the solution of {name}: update this test's edit"
        source = source.replace(old, new)
    namespace = dict(solution.namespace)
    run_cell(source, namespace, f"<edited {name}>")
    return namespace[name]
