"""Realistic wrong answers, made by editing the course's own solution cells."""

from collections.abc import Sequence

import nbformat

from graders import Chapter, Submission
from mi_course.runtime.learner_code import run_cell


def edited_namespace(solution: Submission, name: str, edits: list[tuple[str, str]], *,
                     rerun: Sequence[str] = ()) -> dict:
    """A copy of the solution notebook's namespace after the solution cell of `name` is run
    again with each `old` text replaced by `new`, then the solution cells of `rerun`, in
    order, so that those pieces use the edited `name`: a learner's notebook with one
    mistake in it."""
    cells = nbformat.read(solution.path, as_version=4).cells
    sources = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell.source for cell in cells}
    source = sources[name]
    for old, new in edits:
        assert old in source, f"{old!r} is no longer in the solution of {name}: update this test's edit"
        source = source.replace(old, new)
    namespace = dict(solution.namespace)
    run_cell(source, namespace, f"<edited {name}>")
    for user in rerun:
        run_cell(sources[user], namespace, f"<{user}, using the edited {name}>")
    return namespace


def edited_solution(solution: Submission, name: str, edits: list[tuple[str, str]], *, used_by: tuple[str, ...] = ()):
    """The object `name` defined by its solution cell with each `old` text replaced by
    `new`, in a copy of the solution notebook's namespace; or, given `used_by`, the last of
    those pieces, defined again after it so that they use the edited `name`."""
    return edited_namespace(solution, name, edits, rerun=used_by)[used_by[-1] if used_by else name]


def users_of(chapter: Chapter, name: str) -> list[str]:
    """The exercises of `chapter` that use exercise `name`, directly or through another, in the chapter's order."""
    users: list[str] = []
    for exercise in chapter.exercises.values():
        if any(used == name or used in users for used in exercise.uses):
            users.append(exercise.name)
    return users
