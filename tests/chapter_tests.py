"""The tests every chapter's graders must pass, written once.

A chapter's test module (tests/test_graders_NN.py) imports them (`__all__`) and defines their cases:

* `CHAPTER`, the chapter's graders, and `NOTEBOOK`, its notebook's file name;
* `WRONG`: realistic wrong implementations, (exercise, [(old, new), ...] edits of the
  solution cell, words the failure message must contain): at least two per exercise;
* `ALSO_RIGHT`: right answers written differently, (exercise, edits), which must pass.

`pytest_generate_tests` in conftest.py parametrizes the tests from those names.
"""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from solution_edits import edited_solution

from graders import load_submission
from graders.reporting import summary
from mi_course import checking
from mi_course.runtime.paths import COURSE_DIR, SOLUTIONS_DIR
from mi_course.runtime.verdicts import Verdict

__all__ = [  # what a chapter's test module imports
    "solution", "test_grader_passes_the_reference", "test_grader_fails_a_wrong_implementation_and_names_the_mistake",
    "test_every_exercise_has_at_least_two_wrong_implementations", "test_grader_accepts_another_right_answer",
    "test_mi_course_check_passes_the_solution_notebook", "test_mi_course_check_on_the_student_notebook_reports_not_attempted",
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
