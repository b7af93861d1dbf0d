"""The tests every chapter's graders must pass, written once.

A chapter's test module (tests/test_graders_NN.py) imports them (`__all__`) and defines their cases:

* `CHAPTER`, the chapter's graders, and `NOTEBOOK`, its notebook's file name;
* `WRONG`: realistic wrong implementations, (exercise, [(old, new), ...] edits of the
  solution cell, words the failure message must contain): at least two per exercise;
* `ALSO_RIGHT`: right answers written differently, (exercise, edits), which must pass.

Each case is tried both ways a learner meets it: graded (every variant, as `mi-course
check` and nbgrader's hidden tests grade it) and through the notebook's `check(obj)`,
whose verdict must agree: no PASS in the notebook for code the graded notebook fails.

`pytest_generate_tests` in conftest.py parametrizes the tests from those names.
"""

import contextlib
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest
import torch
from solution_edits import edited_namespace, edited_solution, users_of

from graders import load_submission
from graders.core import FRESH_SEEDS, ExerciseNotPassed
from graders.reporting import summary
from mi_course import checking
from mi_course.runtime.paths import COURSE_DIR, SOLUTIONS_DIR
from mi_course.runtime.verdicts import Verdict

__all__ = [  # what a chapter's test module imports
    "solution", "test_grader_passes_the_reference", "test_grader_fails_a_wrong_implementation_and_names_the_mistake",
    "test_every_exercise_has_at_least_two_wrong_implementations", "test_grader_accepts_another_right_answer",
    "test_mi_course_check_passes_the_solution_notebook", "test_mi_course_check_on_the_student_notebook_reports_not_attempted",
    "test_check_in_the_notebook_never_passes_a_wrong_implementation", "test_the_graded_notebook_fails_a_wrong_implementation",
    "test_check_in_the_notebook_passes_another_right_answer", "test_a_wrong_piece_is_blamed_in_the_pieces_that_use_it",
    "test_grader_passes_the_reference_whatever_seed_check_draws",
    "test_grader_accepts_another_right_answer_whatever_seed_check_draws",
]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def solution(request):
    """The solution notebook's namespace, loaded once per chapter."""
    return load_submission(SOLUTIONS_DIR / request.module.NOTEBOOK)


def test_grader_passes_the_reference(request, exercise_name):
    exercise = request.module.CHAPTER.exercises[exercise_name]
    result = exercise.run(exercise.reference)
    assert result.verdict is Verdict.PASS, summary(result)


def test_grader_fails_a_wrong_implementation_and_names_the_mistake(request, solution, wrong):
    name, edits, words = wrong
    result = request.module.CHAPTER.exercises[name].run(edited_solution(solution, name, edits))
    assert result.verdict in (Verdict.FAIL, Verdict.ERROR)
    assert words in result.message, summary(result)
    assert "Traceback" not in result.message


def test_every_exercise_has_at_least_two_wrong_implementations(request):
    counts = Counter(name for name, _, _ in request.module.WRONG)
    assert {name: counts[name] for name in request.module.CHAPTER.exercises if counts[name] < 2} == {}


def test_grader_accepts_another_right_answer(request, solution, also_right):
    name, edits = also_right
    result = request.module.CHAPTER.exercises[name].run(edited_solution(solution, name, edits))
    assert result.verdict is Verdict.PASS, summary(result)


#: Seeds `check(obj)` may draw (graders.core.FRESH_SEEDS): the lowest, and two others fixed
#: here so that a failure is reproducible. A right answer must pass whichever it draws.
DRAWN_SEEDS = (FRESH_SEEDS[0], 4_321, FRESH_SEEDS[1] - 1)


def drawn_variants(exercise) -> list[dict]:
    if "seed" not in exercise.settings:
        pytest.skip(f"{exercise.name} takes no seed: check(obj) runs exactly the graded variants")
    return [exercise.drawn_variant(seed) for seed in DRAWN_SEEDS]


def test_grader_passes_the_reference_whatever_seed_check_draws(request, exercise_name):
    exercise = request.module.CHAPTER.exercises[exercise_name]
    result = exercise.run(exercise.reference, drawn_variants(exercise))
    assert result.verdict is Verdict.PASS, summary(result)


def test_grader_accepts_another_right_answer_whatever_seed_check_draws(request, solution, also_right):
    name, edits = also_right
    exercise = request.module.CHAPTER.exercises[name]
    result = exercise.run(edited_solution(solution, name, edits), drawn_variants(exercise))
    assert result.verdict is Verdict.PASS, summary(result)


def notebook_check(namespace: dict, name: str, variant: str = "") -> str:
    """What the notebook prints when its learner runs `check(name)` (with `variant`, as in `, seed=1`)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(f"check({name}{variant})", namespace)  # noqa: S102 - as the notebook's cell runs it
    return printed.getvalue()


def graded_cell(solution, name: str) -> str:
    """The source of the notebook's graded cell that checks `name`, hidden tests included."""
    (source,) = [cell.source for cell in nbformat.read(solution.path, as_version=4).cells
                 if cell.metadata.get("nbgrader", {}).get("grade_id") == f"check_{name}"]
    return source


def test_check_in_the_notebook_never_passes_a_wrong_implementation(request, solution, wrong):
    name, edits, words = wrong
    printed = notebook_check(edited_namespace(solution, name, edits), name)
    assert not printed.startswith("PASS"), printed
    assert words in printed, printed


def test_the_graded_notebook_fails_a_wrong_implementation(request, solution, wrong, monkeypatch):
    """Under nbgrader the graded cell, with its hidden tests, raises: the exercise scores 0."""
    name, edits, _ = wrong
    namespace = edited_namespace(solution, name, edits)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(ExerciseNotPassed), contextlib.redirect_stdout(io.StringIO()):
        exec(graded_cell(solution, name), namespace)  # noqa: S102


def test_check_in_the_notebook_passes_another_right_answer(request, solution, also_right):
    name, edits = also_right
    printed = notebook_check(edited_namespace(solution, name, edits), name)
    assert printed.startswith("PASS"), printed


def test_a_wrong_piece_is_blamed_in_the_pieces_that_use_it(request, solution, wrong_piece):
    """A learner whose `name` is wrong, with every piece that uses it run again after it: each
    of those pieces passes, or fails saying that `name` fails its own check."""
    name, edits, _ = wrong_piece
    users = users_of(request.module.CHAPTER, name)
    namespace = edited_namespace(solution, name, edits, rerun=users)
    for user in users:
        printed = notebook_check(namespace, user)
        assert printed.startswith("PASS") or f"uses your `{name}`, which" in printed, printed


def test_mi_course_check_passes_the_solution_notebook(request, capsys):
    chapter = request.module.CHAPTER
    assert checking.main(SOLUTIONS_DIR / request.module.NOTEBOOK) == 0
    assert torch.is_grad_enabled(), "loading the notebook turned gradients off in the grading process"
    out = capsys.readouterr().out
    assert f"Score: {chapter.max_points:g} / {chapter.max_points:g}" in out
    assert out.count(" pass ") == len(chapter.exercises)


def test_mi_course_check_on_the_student_notebook_reports_not_attempted(request):
    chapter = request.module.CHAPTER
    run = subprocess.run([sys.executable, "-m", "mi_course.cli", "check", str(COURSE_DIR / request.module.NOTEBOOK)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert run.stdout.count("not attempted") == len(chapter.exercises), run.stdout
    assert f"Score: 0 / {chapter.max_points:g}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
