"""Chapter 01's graders, notebook and release, end to end.

The wrong implementations are the solution notebook's own cells with one realistic
mistake edited in, so each reads as a small diff against the right answer.
"""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from graders import Verdict, load_submission
from graders.chapter_01 import CHAPTER
from mi_course import checking
from solution_edits import edited_solution
from mi_course.cli import COURSE_DIR, SOLUTIONS_DIR
from mi_course.release import is_stale

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_three_buckets.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK
STUDENT = COURSE_DIR / NOTEBOOK


@pytest.fixture(scope="module")
def solution():
    return load_submission(SOLUTION)


UPDATE = "current = (current + is_open[:, pos] - is_close[:, pos]).clamp(min=0)"
STORE = "depth[:, pos] = current"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    ("bracket_depth", [(f"{UPDATE}\n        {STORE}", f"{STORE}\n        {UPDATE}")], "off by one"),
    ("bracket_depth", [(".clamp(min=0)", "")], "clamp the running depth at 0"),
    ("bracket_depth", [('torch.tensor([ord("("), ord("["), ord("{")])', 'torch.tensor([ord("(")])'),
                       ('torch.tensor([ord(")"), ord("]"), ord("}")])', 'torch.tensor([ord(")")])')], "only parentheses"),
    ("closing_paren_accuracy", [("logits[:, :-1].argmax", "logits.argmax"), ('tokens[:, 1:] == ord(")")', 'tokens == ord(")")')],
     "the logits at p predict the token at p + 1"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))', "(predictions == tokens[:, 1:])")], "every position"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))',
                                 '(tokens[:, 1:][predictions == ord(")")] == ord(")"))')], "where the model predicts ')'"),
    ("fit_probe", [("targets = labels.float()", "targets = 1 - labels.float()")], "points the wrong way"),
    ("fit_probe", [("torch.optim.SGD([direction, bias]", "torch.optim.SGD([direction]")], "bias of 0"),
    ("fit_probe", [("torch.optim.SGD", "torch.optim.Adam")], "plain gradient descent"),
    ("fit_probe", [("acts @ direction + bias, targets)", "acts @ direction + bias, targets, reduction='sum')")],
     "differ"),
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts[:n_train] @ direction"),
                                 ("labels[n_train:]).float()", "labels[:n_train]).float()")], "trained on"),
    ("held_out_probe_accuracy", [("fit_probe(acts[:n_train], labels[:n_train]", "fit_probe(acts, labels")],
     "trained the probe on all the examples"),
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts @ direction"), ("labels[n_train:]).float()", "labels).float()")],
     "on all the examples"),
    ("ablate_direction", [("unit = direction / direction.norm()", "unit = direction")], "did not normalise"),
    ("ablate_direction", [("einops.einsum(resid, unit,", "einops.einsum(resid, direction,")], "divided by |d| once"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return along[..., None] * unit")], "returned the component"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return resid * 0")], "zeroed the whole vector"),
    ("steer", [("alpha * direction / direction.norm()", "alpha * direction")], "did not normalise"),
    ("steer", [("return resid + alpha * direction / direction.norm()", "return resid * alpha")], "does not scale"),
    ("head_ablation_effect", [("float(ablated - clean)", "float(clean - ablated)")], "sign is reversed"),
    ("head_ablation_effect", [("float(ablated - clean)", "float(ablated)")], "returned the ablated metric"),
    ("head_ablation_effect", [("z[:, :, head] = 0", "z[:, :, :] = 0")], "zeroed every head"),
    ("head_ablation_effect", [('f"blocks.{layer}.attn.hook_z"', 'f"blocks.{1 - layer}.attn.hook_z"')], "wrong layer"),
]

ALSO_RIGHT = [
    ("ablate_direction", [("return resid - along[..., None] * unit",
                           "return resid - (resid @ direction / direction.norm() ** 2)[..., None] * direction")]),
    ("closing_paren_accuracy", [(".float().mean()", ".double().mean().item()")]),
]


@pytest.mark.parametrize("name", CHAPTER.exercises)
def test_grader_passes_the_reference(name):
    exercise = CHAPTER.exercises[name]
    assert exercise.run(exercise.reference).verdict is Verdict.PASS


@pytest.mark.parametrize("name, edits, words", WRONG, ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(WRONG)])
def test_grader_fails_a_wrong_implementation_and_names_the_mistake(solution, name, edits, words):
    result = CHAPTER.exercises[name].run(edited_solution(solution, name, edits))
    assert result.verdict in (Verdict.FAIL, Verdict.ERROR)
    assert words in result.message, result.summary()
    assert "Traceback" not in result.message


def test_every_exercise_has_at_least_two_wrong_implementations():
    counts = Counter(name for name, _, _ in WRONG)
    assert {name: counts[name] for name in CHAPTER.exercises if counts[name] < 2} == {}


@pytest.mark.parametrize("name, edits", ALSO_RIGHT, ids=[name for name, _ in ALSO_RIGHT])
def test_grader_accepts_another_right_answer(solution, name, edits):
    result = CHAPTER.exercises[name].run(edited_solution(solution, name, edits))
    assert result.verdict is Verdict.PASS, result.summary()


def test_mi_course_check_passes_the_solution_notebook(capsys):
    assert checking.main(SOLUTION) == 0
    assert torch.is_grad_enabled(), "loading the notebook turned gradients off in the grading process"
    out = capsys.readouterr().out
    assert f"Score: {CHAPTER.max_points:g} / {CHAPTER.max_points:g}" in out
    assert out.count(" pass ") == len(CHAPTER.exercises)


def test_mi_course_check_on_the_student_notebook_reports_not_attempted():
    run = subprocess.run([sys.executable, "-m", "mi_course.cli", "check", str(STUDENT)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert run.stdout.count("not attempted") == len(CHAPTER.exercises), run.stdout
    assert f"Score: 0 / {CHAPTER.max_points:g}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_course_notebook_is_released():
    assert STUDENT.exists()
    assert NOTEBOOK not in is_stale(SOLUTIONS_DIR, COURSE_DIR), "run: mi-course release"


def test_the_solution_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))
    assert printed.count("PASS: ") == sum(len(exercise.variants) for exercise in CHAPTER.exercises.values())
    for words in ("majority baseline", "ablate the depth-probe direction", "alone takes the accuracy", "'is a space' probe"):
        assert words in printed
    assert all(output.get("output_type") != "error" for cell in nb.cells for output in cell.get("outputs", []))
