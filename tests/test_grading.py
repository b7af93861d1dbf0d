"""`mi-course grade`: hostile, broken and honest submissions earn exactly what they should.

Each hostile or broken submission is the chapter 01 solution notebook with one thing
changed (an exercise's cell replaced, a cell added, the file mangled), so its expected
score is the full score minus what that one change may cost. The corpus is graded in one
run, as a class would be.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from graders.core import CHAPTERS, load_chapter
from graders.reporting import _escape_inline
from mi_course.grading import find_submissions, grade_class, read_notebook
from mi_course.runtime.containment import Containment, Limits, detect_containment

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "01_three_buckets"
SOLUTION = REPO / "solutions" / f"{CHAPTER}.ipynb"
FULL = load_chapter(CHAPTER).max_points
POINTS = {name: exercise.points for name, exercise in load_chapter(CHAPTER).exercises.items()}
LIMITS = Limits(exercise_seconds=12, exercise_cpu_seconds=2, cell_seconds=8, notebook_seconds=60,
                memory_bytes=2**30, file_bytes=2**20)
CONTAINMENT = detect_containment()
needs_isolation = pytest.mark.skipif(not CONTAINMENT.isolated, reason=f"sandbox isolation unavailable: {CONTAINMENT.reason}")


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOLUTION, as_version=4)


def replace_exercise(notebook: nbformat.NotebookNode, name: str, source: str) -> nbformat.NotebookNode:
    """The notebook with the solution cell of exercise `name` replaced by `source`."""
    [cell] = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name]
    cell.source = source
    return notebook


def edit_exercise(notebook: nbformat.NotebookNode, name: str, old: str, new: str) -> nbformat.NotebookNode:
    """The notebook with `old` replaced by `new` in the solution cell of exercise `name`."""
    [cell] = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name]
    assert old in cell.source, f"{old!r} is no longer in the solution of {name}: update this test"
    cell.source = cell.source.replace(old, new)
    return notebook


def add_cell(notebook: nbformat.NotebookNode, source: str, at: int = 3) -> nbformat.NotebookNode:
    notebook.cells.insert(at, nbformat.v4.new_code_cell(source))
    return notebook


def steer_doing(body: str) -> nbformat.NotebookNode:
    """The solution, with `steer` (1 point) doing `body` instead of its job."""
    indented = "\n".join("    " + line for line in body.splitlines())
    return replace_exercise(solution(), "steer", f"def steer(resid, direction, alpha):\n{indented}\n")


#: A cell that leaves a daemon behind: a process in a session of its own, whose parent has exited.
LEAVES_A_DAEMON = ("import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                   "        os.execv('/usr/bin/sleep', ['sleep', '4321.5'])\n    os._exit(0)\n")


def daemons() -> list[str]:
    """The pids of the daemons LEAVES_A_DAEMON starts that are still running, anywhere on the machine."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes() == b"sleep\x004321.5\x00":
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


# Every submission: (notebook or raw bytes, expected score, text the feedback must contain).
HOSTILE = {
    "infinite_loop": (steer_doing("while True:\n    pass"), FULL - 1, "more than 2 s of CPU time"),
    "sleeps_forever": (steer_doing("import time\nwhile True:\n    time.sleep(1)"), FULL - 1, "ran for more than 12 s"),
    # Address space the bomb never touches still counts, so it stops at the limit in little CPU time.
    "memory_bomb": (steer_doing("import numpy as np\nhoard = []\nwhile True:\n    hoard.append(np.empty(10**7))"),
                    FULL - 1, "MemoryError"),
    "sys_exit": (steer_doing("import sys\nsys.exit(0)"), FULL - 1, "sys.exit(0)"),
    "os_exit": (steer_doing("import os\nos._exit(0)"), FULL - 1, "exit status 0"),
    "segfault": (steer_doing("import ctypes\nctypes.string_at(0)"), FULL - 1, "SIGSEGV"),
    "always_equal": (steer_doing("class Yes:\n    def __eq__(self, other): return True\n    def __bool__(self): return True\nreturn Yes()"),
                     FULL - 1, "expected a tensor"),
    "patches_the_checks": (add_cell(steer_doing("return resid"),
                                    "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)\n"
                                    "torch.testing.assert_close = lambda *a, **k: None"), FULL - 1, "steer"),
    "prints_a_pass": (steer_doing("print('PASS: steer (1/1 points)')\nimport os\nos.write(1, b'PASS')\nreturn resid"), FULL - 1, "steer"),
    "slow_cell": (add_cell(solution(), "while True:\n    pass"), FULL, "ran for more than 8 s and was stopped"),
    "huge_answer": (steer_doing("import torch\nreturn torch.zeros(10**8)"), FULL - 1, "could not be sent back"),
    "writes_huge_file": (add_cell(solution(), "with open('big.bin', 'wb') as f:\n    f.write(b'0' * 10**7)"), FULL, "File too large"),
}
ISOLATED_ONLY = {
    "fork_bomb": (steer_doing("import os\nwhile True:\n    os.fork()"), FULL - 1, "steer"),
    "reads_hidden_tests": (steer_doing(f"return open({str(REPO / 'graders' / 'chapter_01.py')!r}).read()"), FULL - 1, "No such file"),
    "deletes_files": (add_cell(solution(), f"import shutil\nshutil.rmtree({str(REPO / 'toy_models' / 'checkpoints')!r})"),
                      FULL, "Read-only file system"),
    "opens_a_connection": (steer_doing("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)"), FULL - 1, "OSError"),
}
BROKEN = {
    "invalid_json": (b'{"cells": [', 0, "not valid JSON"),
    "other_chapter": (nbformat.read(REPO / "solutions" / "00_transformer_from_scratch.ipynb", as_version=4), 0, "chapter 00"),
    "wrong_kernel": (None, 0, "'R'"),  # built below
    "renamed_function": (replace_exercise(solution(), "steer", "def steer_vector(resid, direction, alpha):\n    return resid + alpha * direction / direction.norm()\n"),
                         FULL - 1, "defines no `steer`"),
    "deleted_graded_cell": (None, FULL - 1, "graded cell `steer` is missing"),
    "duplicated_graded_cell": (None, FULL, "appears 2 times"),
    "enormous_outputs": (None, 0, "over the limit"),
}
HONEST = {
    "full_marks": (solution(), FULL, "| `steer` | 1 / 1 | pass |"),
    "partial": (replace_exercise(steer_doing("return resid + alpha * direction"), "ablate_direction",
                                 "def ablate_direction(resid, direction):\n    return resid - (resid @ direction)[..., None] * direction\n"),
                FULL - 3, "Likely mistake: you did not normalise the direction"),
    "empty": (nbformat.read(REPO / "course" / f"{CHAPTER}.ipynb", as_version=4), 0, "not attempted"),
    # Right answers in numpy's types, and a probe fitted in float64, which the next exercise uses.
    "numpy_answers": (edit_exercise(solution(), "closing_paren_accuracy", ".float().mean()", ".float().numpy().mean()"),
                      FULL, "| `closing_paren_accuracy` | 2 / 2 | pass |"),
    "float64_probe": (edit_exercise(solution(), "fit_probe", "return direction.detach(), bias.detach()",
                                    "return direction.detach().double(), bias.detach().double()"),
                      FULL, "| `held_out_probe_accuracy` | 2 / 2 | pass |"),
    # A wrong probe: the exercise that uses it fails too, and is told where to look.
    "reversed_probe": (edit_exercise(solution(), "fit_probe", "return direction.detach(), bias.detach()",
                                     "return -direction.detach(), -bias.detach()"),
                       FULL - POINTS["fit_probe"] - POINTS["held_out_probe_accuracy"],
                       "Your `held_out_probe_accuracy` uses your `fit_probe`, which fails its own check: fix it first"),
}


def _broken_notebooks() -> None:
    wrong_kernel = solution()
    wrong_kernel.metadata.kernelspec = {"name": "ir", "display_name": "R", "language": "R"}
    deleted = solution()
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "steer"]
    duplicated = solution()
    [steer] = [c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "steer"]
    duplicated.cells.append(nbformat.from_dict(json.loads(json.dumps(steer))))
    enormous = solution()
    [first_code, *_] = [c for c in enormous.cells if c.cell_type == "code"]
    first_code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * 25 * 2**20)]
    for name, notebook in [("wrong_kernel", wrong_kernel), ("deleted_graded_cell", deleted),
                           ("duplicated_graded_cell", duplicated), ("enormous_outputs", enormous)]:
        BROKEN[name] = (notebook, *BROKEN[name][1:])


_broken_notebooks()


def write_class(folder: Path, corpus: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for student, (notebook, _, _) in corpus.items():
        path = folder / f"{student}.ipynb"
        if isinstance(notebook, bytes):
            path.write_bytes(notebook)
        else:
            nbformat.write(notebook, path)


def gradebook(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def assert_grades(out: Path, corpus: dict) -> None:
    book = gradebook(out)
    for student, (_, expected, feedback_text) in corpus.items():
        feedback = (out.parent / f"{out.stem}-feedback" / f"{student}.md").read_text()
        assert float(book[student]["score"]) == expected, f"{student}: {book[student]}\n{feedback}"
        # Messages appear as they are, in code blocks; notes about the notebook, escaped inline.
        assert feedback_text in feedback or _escape_inline(feedback_text) in feedback, (
            f"{student}: expected {feedback_text!r} in the feedback:\n{feedback}")


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> Path:
    corpus = {**HOSTILE, **BROKEN, **HONEST, **(ISOLATED_ONLY if CONTAINMENT.isolated else {})}
    folder = tmp_path_factory.mktemp("class")
    write_class(folder / "submissions", corpus)
    out = folder / "out" / "grades.csv"
    grade_class(find_submissions(folder / "submissions", CHAPTER), CHAPTER, out, limits=LIMITS, progress=False)
    return out


@pytest.mark.parametrize("student", [*HOSTILE, *BROKEN, *HONEST])
def test_each_submission_earns_what_it_should(graded_class: Path, student: str) -> None:
    corpus = {**HOSTILE, **BROKEN, **HONEST}
    assert_grades(graded_class, {student: corpus[student]})


@needs_isolation
@pytest.mark.parametrize("student", ISOLATED_ONLY)
def test_isolation_holds(graded_class: Path, student: str) -> None:
    assert_grades(graded_class, {student: ISOLATED_ONLY[student]})
    assert (REPO / "toy_models" / "checkpoints" / "induction-2l" / "model.safetensors").exists()


def test_partial_credit_is_per_exercise(graded_class: Path) -> None:
    row = gradebook(graded_class)["partial"]
    assert (row["steer"], row["ablate_direction"], row["fit_probe"]) == ("0", "0", str(int(POINTS["fit_probe"])))


def test_regrading_gives_the_same_grades_and_keeps_the_old_gradebook(tmp_path: Path) -> None:
    corpus = {name: HONEST[name] for name in ("full_marks", "partial")}
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "grades.csv"
    submissions = find_submissions(tmp_path / "submissions", CHAPTER)
    first = grade_class(submissions, CHAPTER, out, limits=LIMITS, progress=False)
    first_book = out.read_text()
    results = tmp_path / "grades-results" / "partial.json"
    results.unlink()  # forces a real regrade of one student
    second = grade_class(submissions, CHAPTER, out, limits=LIMITS, progress=False)
    assert [g.results for g in first] == [g.results for g in second]
    assert out.read_text() == first_book
    kept = [p for p in tmp_path.glob("grades.*.csv")]
    assert len(kept) == 1 and kept[0].read_text() == first_book


def test_limits_only_fallback_still_contains_crashes_and_loops(tmp_path: Path) -> None:
    corpus = {name: HOSTILE[name] for name in ("infinite_loop", "os_exit", "segfault", "memory_bomb")}
    corpus["full_marks"] = HONEST["full_marks"]
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "grades.csv"
    grades = grade_class(find_submissions(tmp_path / "submissions", CHAPTER), CHAPTER, out, limits=LIMITS,
                         containment=Containment("limits only", "testing the fallback"), progress=False)
    assert_grades(out, corpus)
    assert {g.sandbox for g in grades} == {"limits only"}


@pytest.mark.skipif(os.geteuid() != 0, reason="without root the fallback runs students as the grader's own user, "
                                              "whose other processes it cannot tell apart (see the README)")
def test_limits_only_fallback_ends_what_a_student_leaves_running(tmp_path: Path) -> None:
    corpus = {"leaves_a_daemon": (add_cell(solution(), LEAVES_A_DAEMON), FULL, "13 / 13")}
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "grades.csv"
    grade_class(find_submissions(tmp_path / "submissions", CHAPTER), CHAPTER, out, limits=LIMITS,
                containment=Containment("limits only", "testing the fallback"), progress=False)
    assert_grades(out, corpus)
    assert daemons() == [], "a student's process outlived its grading"


def test_a_killed_run_resumes_with_the_same_grades(tmp_path: Path) -> None:
    corpus = {f"student{i}": HONEST["full_marks" if i % 2 else "partial"] for i in range(6)}
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "grades.csv"
    command = [sys.executable, "-m", "mi_course.cli", "grade", str(tmp_path / "submissions"), "--chapter", "01",
               "--out", str(out), "--workers", "1"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = tmp_path / "grades-results"
    deadline = time.monotonic() + 240
    while len(list(results.glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the grader, its workers and its sandboxes, half way through
    run.wait()
    finished_before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 2 <= len(finished_before) < len(corpus) and not out.exists()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*.json") if p.name in finished_before} == finished_before
    assert_grades(out, corpus)


def test_nbgrader_layout_is_found(tmp_path: Path) -> None:
    for student in ("ada", "bo"):
        folder = tmp_path / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        nbformat.write(solution(), folder / f"{CHAPTER}.ipynb")
    found = find_submissions(tmp_path, CHAPTER)
    assert [(s.student, s.path.name) for s in found] == [("ada", f"{CHAPTER}.ipynb"), ("bo", f"{CHAPTER}.ipynb")]


def test_reading_a_notebook_never_runs_it(tmp_path: Path) -> None:
    path = tmp_path / "x.ipynb"
    canary = tmp_path / "ran"
    nbformat.write(add_cell(solution(), f"open({str(canary)!r}, 'w').close()"), path)
    notebook, problems = read_notebook(path, CHAPTER)
    assert notebook is not None and problems == [] and not canary.exists()


def _readable_by_others(path: Path) -> bool:
    return all(os.stat(folder).st_mode & 0o005 == 0o005 for folder in [path, *path.parents])


MODES = [pytest.param(CONTAINMENT, id="isolated", marks=needs_isolation),
         pytest.param(Containment("limits only", "testing the fallback"), id="limits-only", marks=pytest.mark.skipif(
             os.geteuid() == 0 and not _readable_by_others(Path(sys.base_prefix)),
             reason="as root, limits only runs a student as a user of their own, who cannot read this Python "
                    "(its folder is private to root), so notebooks that read the standard library's source fail"))]


@pytest.mark.parametrize("containment", MODES)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_grades_its_solution_full_and_its_student_notebook_zero(
        tmp_path: Path, chapter: str, containment: Containment) -> None:
    """The honest controls, in every mode: the sandbox's proxies support everything each chapter's
    graders do with learner objects, and a released notebook, untouched, earns nothing."""
    write_class(tmp_path / "submissions", {
        "reference": (nbformat.read(REPO / "solutions" / f"{chapter}.ipynb", as_version=4), 0, ""),
        "untouched": (nbformat.read(REPO / "course" / f"{chapter}.ipynb", as_version=4), 0, ""),
    })
    reference, untouched = grade_class(find_submissions(tmp_path / "submissions", chapter), chapter,
                                       tmp_path / "grades.csv", limits=Limits(exercise_seconds=120, exercise_cpu_seconds=120),
                                       containment=containment, progress=False)
    failed = [r for r in reference.results if r.verdict.value != "pass"]
    assert not failed and not reference.cell_errors, (failed, reference.cell_errors)
    assert reference.score == reference.max_score and {g.sandbox for g in (reference, untouched)} == {containment.name}
    assert untouched.score == 0 and {r.verdict.value for r in untouched.results} == {"not attempted"}, untouched.results
