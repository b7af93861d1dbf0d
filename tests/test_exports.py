"""What `mi-course grade` exports for other systems, and `mi-course gradescope`, the autograder.

Gradescope's results.json is checked against the keys and types its specification documents
(https://gradescope-autograders.readthedocs.io/en/latest/specs/); the LMS's CSV by reading it
back. The grades are built by hand, one of them hostile: its messages, which a student's code
writes, are full of JSON's, CSV's, HTML's and Markdown's metacharacters. Only the last tests
grade real notebooks.
"""

import csv
import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from graders.core import Exercise, GraderFailure, load_chapter
from graders.reporting import MAX_MESSAGE_CHARS, gradescope_results
from graders.results import Result, StudentGrade
from mi_course import grading
from mi_course.cli import main
from mi_course.grading import (
    StudentFile,
    UnsafeOutputError,
    _troubles,
    grade_class,
    grade_for_gradescope,
    lms_csv_path,
    write_gradebook,
    write_lms_csv,
)
from mi_course.runtime.containment import Containment
from mi_course.runtime.verdicts import Verdict

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "01_three_buckets"
EXERCISES = list(load_chapter(CHAPTER).exercises)
FULL = load_chapter(CHAPTER).max_points
POINTS = {name: exercise.points for name, exercise in load_chapter(CHAPTER).exercises.items()}
CONTAINMENT = Containment("limits only", "resource limits only (a test)")

# What a student's code may put in an error message: a try at closing JSON's strings and objects, CSV's
# quotes and rows, HTML, Markdown, a formula, control and non-ASCII characters, and far too much of it.
HOSTILE = ('", "score": 13, "status": "passed"}, {"name": "x", "score": 13, "max_score": 0, "output": "'
           '"}]} "," ",\r\n13,13,13\n\'\'\' \\" \\u0022 <script>alert(1)</script> <b>13 / 13</b> **13 / 13** '
           '=HYPERLINK("http://x") \x00\x1b[31m \u2028\u2029 héllo wörld 中文 🙂 ' + "long " * 20_000)

# ------------------------------------------------------------------------ the documented format

NUMBER = (int, float)
#: results.json's keys, each optional, with the type the specification gives it.
RESULTS_KEYS = {"score": NUMBER, "execution_time": NUMBER, "output": str, "output_format": str,
                "test_output_format": str, "test_name_format": str, "visibility": str, "stdout_visibility": str,
                "extra_data": dict, "tests": list, "leaderboard": list}
#: A test's keys, each optional, with its type.
TEST_KEYS = {"score": NUMBER, "max_score": NUMBER, "status": str, "name": str, "name_format": str, "number": str,
             "output": str, "output_format": str, "tags": list, "visibility": str, "extra_data": dict}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
FORMATS = {"text", "simple_format", "html", "md", "ansi"}
STATUSES = {"passed", "failed"}


def _assert_typed(data: dict, keys: dict) -> None:
    assert set(data) <= set(keys), f"undocumented keys: {set(data) - set(keys)}"
    for key, value in data.items():
        assert isinstance(value, keys[key]) and not isinstance(value, bool), f"{key}: {value!r}"


def assert_documented(results: dict) -> None:
    """`results` is a results.json as Gradescope documents it, which shows every text as plain text."""
    _assert_typed(results, RESULTS_KEYS)
    assert "score" in results or all("score" in test for test in results["tests"])
    assert {results[key] for key in ("visibility", "stdout_visibility") if key in results} <= VISIBILITIES
    assert [results[key] for key in ("output_format", "test_output_format", "test_name_format")] == ["text"] * 3
    for test in results.get("tests", []):
        _assert_typed(test, TEST_KEYS)
        assert test.get("visibility", "visible") in VISIBILITIES and test.get("status", "passed") in STATUSES
        assert {test[key] for key in ("output_format", "name_format") if key in test} <= {"text"}


# ------------------------------------------------------------------------ grades built by hand

def a_grade(student: str, message: str = "wrong shape", *, hidden: str = "") -> StudentGrade:
    """Full marks on the first exercise; the second failed with `message`; the third failed under a
    hidden variant, with `hidden` (if given); the rest not attempted."""
    results = []
    for i, name in enumerate(EXERCISES):
        if i == 0:
            results.append(Result(name, Verdict.PASS, POINTS[name], POINTS[name]))
        elif i == 1 or (i == 2 and hidden):
            results.append(Result(name, Verdict.FAIL, 0, POINTS[name], hidden if i == 2 else message,
                                  "Use x @ W[:, 0].", hidden_variant=i == 2))
        else:
            results.append(Result(name, Verdict.NOT_ATTEMPTED, 0, POINTS[name], f"`{name}` is a stub."))
    return StudentGrade(student, CHAPTER, POINTS[EXERCISES[0]], FULL, results, problems=[f"a problem: {message}"],
                        cell_errors=[(4, f"ValueError: {message}")], events=["killed after 12 s"],
                        sandbox=CONTAINMENT.name, containment=CONTAINMENT.describe())


HIDDEN_DETAILS = "wrong for seed 1 (n_layers=3)\n(This was with seed 1; check(fit_probe, seed=1) runs this case alone.)"


def test_results_json_has_the_documented_keys_and_one_test_per_exercise() -> None:
    grade = a_grade("alice", hidden=HIDDEN_DETAILS)
    results = json.loads(grading._json(gradescope_results(grade)))
    assert_documented(results)
    scored = [test for test in results["tests"] if "score" in test]
    assert [test["name"] for test in scored] == EXERCISES
    assert [(t["score"], t["max_score"]) for t in scored] == [(r.points, r.max_points) for r in grade.results]
    assert results["score"] == sum(test["score"] for test in scored) == grade.score
    assert [t["status"] for t in scored] == ["passed"] + ["failed"] * (len(EXERCISES) - 1)
    assert scored[0]["output"] == f"PASS: {EXERCISES[0]} ({POINTS[EXERCISES[0]]:g}/{POINTS[EXERCISES[0]]:g} points)"
    assert "wrong shape" in scored[1]["output"] and "Hint: Use x @ W[:, 0]." in scored[1]["output"]
    for note in ("a problem: wrong shape", "cell 4: ValueError: wrong shape", "killed after 12 s", CONTAINMENT.describe()):
        assert note in results["output"]


def test_the_details_of_a_hidden_variant_wait_until_the_grades_are_published() -> None:
    results = gradescope_results(a_grade("alice", hidden=HIDDEN_DETAILS))
    failed = EXERCISES[2]
    [visible] = [test for test in results["tests"] if test["name"] == failed]
    [details] = [test for test in results["tests"] if test["name"] != failed and test["name"].startswith(failed)]
    assert visible["visibility"] == "visible" and visible["status"] == "failed" and visible["score"] == 0
    assert "seed 1" not in visible["output"] and "hidden test" in visible["output"]
    assert "Hint: Use x @ W[:, 0]." in visible["output"]
    assert details["visibility"] == "after_published" and details["output"] == HIDDEN_DETAILS
    assert "score" not in details and "max_score" not in details  # the exercise's points are counted once
    assert {test["visibility"] for test in results["tests"] if test is not details} == {"visible"}


def test_an_exercise_that_fails_only_under_a_hidden_variant_says_so() -> None:
    def grade(obj, *, seed: int = 0) -> None:
        if obj(seed) != 2 * seed:
            raise GraderFailure(f"wrong for seed {seed}")

    exercise = Exercise("double", 1, grade, "Multiply by 2.", None, variants=({"seed": 0}, {"seed": 1}))
    hidden = exercise.run(lambda x: 0)  # right for seed 0, the visible test, only
    assert hidden.verdict is Verdict.FAIL and hidden.hidden_variant and "seed 1" in hidden.message
    visible = exercise.run(lambda x: -1)
    assert visible.verdict is Verdict.FAIL and not visible.hidden_variant
    assert not exercise.run(lambda x: 2 * x).hidden_variant
    assert Result.from_json(hidden.to_json()) == hidden


def test_a_hostile_message_stays_text_in_results_json() -> None:
    grade = a_grade("mallory", HOSTILE, hidden=HOSTILE)
    text = grading._json(gradescope_results(grade))
    results = json.loads(text)
    assert results == gradescope_results(grade)
    assert_documented(results)
    assert [t["name"] for t in results["tests"] if "score" in t] == EXERCISES  # no test added, none lost
    assert results["score"] == grade.score == POINTS[EXERCISES[0]]
    cut = HOSTILE[:MAX_MESSAGE_CHARS]
    [failed] = [test for test in results["tests"] if test["name"] == EXERCISES[1]]
    assert "\n    ".join(cut.splitlines()) in failed["output"] and "more characters" in failed["output"]
    assert all(len(test["output"]) < MAX_MESSAGE_CHARS + 1000 for test in results["tests"])
    assert len(text.encode()) < 200_000 and text.isascii()  # non-ASCII as \u escapes, nothing raw


# ------------------------------------------------------------------------ the LMS's CSV

def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames), list(reader)


def test_the_lms_csv_has_the_documented_columns_and_reads_back(tmp_path) -> None:
    grades = [a_grade("alice"), a_grade("mallory", HOSTILE, hidden=HOSTILE), replace(a_grade("bob"), score=0.5)]
    write_lms_csv(tmp_path / "lms.csv", grades, CHAPTER)
    columns, rows = read_csv(tmp_path / "lms.csv")
    assert columns == ["student_id", "total", "max", *EXERCISES]
    assert [row["student_id"] for row in rows] == ["alice", "mallory", "bob"]
    for grade, row in zip(grades, rows, strict=True):
        assert (float(row["total"]), float(row["max"])) == (grade.score, FULL)
        assert {name: float(row[name]) for name in EXERCISES} == {r.exercise: r.points for r in grade.results}
    assert "long" not in (tmp_path / "lms.csv").read_text()  # numbers only: no message reaches it


def test_the_gradebook_and_the_lms_csv_agree_on_every_point(tmp_path) -> None:
    grades = [a_grade("alice"), a_grade("mallory", HOSTILE)]
    write_gradebook(tmp_path / "grades.csv", grades, CHAPTER)
    write_lms_csv(tmp_path / "lms.csv", grades, CHAPTER)
    book, lms = read_csv(tmp_path / "grades.csv")[1], read_csv(tmp_path / "lms.csv")[1]
    assert [[row["student"], row["score"], row["max_score"], *(row[n] for n in EXERCISES)] for row in book] == \
        [[row["student_id"], row["total"], row["max"], *(row[n] for n in EXERCISES)] for row in lms]


def test_an_lms_csv_that_is_a_link_is_refused(tmp_path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("system file")
    (tmp_path / "lms.csv").symlink_to(canary)
    with pytest.raises(UnsafeOutputError, match="link"):
        write_lms_csv(tmp_path / "lms.csv", [a_grade("alice")], CHAPTER)
    assert canary.read_text() == "system file"


# ------------------------------------------------------------------------ what grade_class writes

#: What each student's grading gives, in `_graded_by_hand`.
_BY_HAND: dict[str, StudentGrade] = {}


def _graded_by_hand(submission: StudentFile, *_) -> StudentGrade:
    """`grade_or_zero`, for a student of `_BY_HAND` (a module's function: the pool pickles it)."""
    return _BY_HAND[submission.student]


def _grades_without_sandboxes(monkeypatch, grades: dict[str, StudentGrade]) -> None:
    """grade_class's own code, with each student's grading replaced by `grades[student]` (in a
    worker of its pool, as a real grading would)."""
    @contextmanager
    def no_zygote():
        yield SimpleNamespace(address="unused")

    monkeypatch.setattr(grading, "grade_or_zero", _graded_by_hand)
    monkeypatch.setattr(grading, "Zygote", no_zygote)
    monkeypatch.setattr(grading, "grading_code_digest", lambda: "code")
    monkeypatch.setattr(f"{__name__}._BY_HAND", grades)


def _class(tmp_path: Path, students: list[str]) -> list[StudentFile]:
    (tmp_path / "submissions").mkdir()
    for student in students:
        (tmp_path / "submissions" / f"{student}.ipynb").write_text("{}")
    return [StudentFile(student, tmp_path / "submissions" / f"{student}.ipynb") for student in students]


def test_grade_class_writes_each_students_gradescope_results_and_the_lms_csv(tmp_path, monkeypatch) -> None:
    grades = {"alice": a_grade("alice"), "mallory": a_grade("mallory", HOSTILE, hidden=HOSTILE)}
    _grades_without_sandboxes(monkeypatch, grades)
    out = tmp_path / "instructor" / "grades.csv"
    grade_class(_class(tmp_path, list(grades)), CHAPTER, out, containment=CONTAINMENT, progress=False)
    folder = out.with_name("grades-gradescope")
    assert sorted(path.name for path in folder.iterdir()) == ["alice.json", "mallory.json"]
    assert folder.stat().st_mode & 0o777 == 0o700
    for student, grade in grades.items():
        assert json.loads((folder / f"{student}.json").read_text()) == gradescope_results(grade)
    assert lms_csv_path(out) == out.with_name("grades-lms.csv")
    assert [row["student_id"] for row in read_csv(lms_csv_path(out))[1]] == ["alice", "mallory"]


def test_the_progress_bar_moves_as_students_finish_and_counts_troubles(tmp_path, monkeypatch, capsys) -> None:
    """Whatever order the students finish in: the bar counts the class, with an ETA, and its
    running count of troubles ends with carol's."""
    failed = replace(a_grade("carol"), score=0.0, results=[Result(n, Verdict.ERROR, 0, POINTS[n], "killed")
                                                             for n in EXERCISES])
    grades = {"alice": a_grade("alice"), "bob": a_grade("bob"), "carol": failed}
    _grades_without_sandboxes(monkeypatch, grades)
    out = tmp_path / "grades.csv"
    ordered = grade_class(_class(tmp_path, list(grades)), CHAPTER, out, containment=CONTAINMENT, workers=3)
    assert [grade.student for grade in ordered] == ["alice", "bob", "carol"]  # the submissions' order
    frames = capsys.readouterr().err.replace("\n", "\r").split("\r")
    last = [frame for frame in frames if " 3/3 " in frame][-1]
    assert "<" in last and "errors=1" in last and "zero=1" in last, last  # [elapsed<remaining]: the ETA
    assert _troubles(grades.values()) == {"errors": 1, "zero": 1}


# ------------------------------------------------------------------------ the autograder

def test_no_notebook_to_grade_scores_zero_and_says_why(tmp_path) -> None:
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / f"{CHAPTER}.ipynb").symlink_to(REPO / "solutions" / f"{CHAPTER}.ipynb")
    results_file = tmp_path / "results" / "results.json"
    grade = grade_for_gradescope(tmp_path / "submission", results_file, CHAPTER, containment=CONTAINMENT)
    results = json.loads(results_file.read_text())
    assert_documented(results)
    assert grade.score == results["score"] == 0 and results["tests"] == []
    assert f"Hand in one notebook, {CHAPTER}.ipynb" in results["output"]


def test_a_results_file_that_is_a_link_is_refused(tmp_path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("system file")
    (tmp_path / "results.json").symlink_to(canary)
    with pytest.raises(UnsafeOutputError, match="link"):
        grade_for_gradescope(tmp_path, tmp_path / "results.json", CHAPTER, containment=CONTAINMENT)
    assert canary.read_text() == "system file"


@pytest.mark.parametrize("notebook, expected", [("solutions", FULL), ("course", 0)], ids=["solution", "stub"])
def test_the_gradescope_autograder_grades_the_notebook_handed_in(tmp_path, notebook, expected) -> None:
    submission = tmp_path / "autograder" / "submission"
    submission.mkdir(parents=True)
    (submission / f"{CHAPTER}.ipynb").write_bytes((REPO / notebook / f"{CHAPTER}.ipynb").read_bytes())
    results_file = tmp_path / "autograder" / "results" / "results.json"
    assert main(["gradescope", "--chapter", "01", "--submission", str(submission), "--results", str(results_file),
                 "--exercise-seconds", "12"]) == 0
    results = json.loads(results_file.read_text())
    assert_documented(results)
    scored = [test for test in results["tests"] if "score" in test]
    assert results["score"] == sum(test["score"] for test in scored) == expected
    assert sum(test["max_score"] for test in scored) == FULL
    assert {test["status"] for test in scored} == {"passed" if expected else "failed"}
