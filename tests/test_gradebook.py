"""`mi-course grade --gradebook`: the sandbox's scores replace `nbgrader autograde`'s in nbgrader's gradebook.

One real nbgrader course of chapter 01, given a written answer graded by hand (as chapter 05's
capstone write-up is), with three students: an honest one; a cheater who leaves every stub and
redefines `check`, so that every test cell passes in their kernel; and a crasher whose `steer`
ends the process, which kills the kernel nbgrader grades in. The nbgrader commands run in-process
(`test_nbgrader_loop.nbgrader`), the in-kernel autograde once for the module (it is the slow part).
The students' notebooks leave out the chapter's demonstrations (cells tagged `skip-when-grading`,
which only the kernel would run), as a student may.
"""

from __future__ import annotations

import csv

import nbformat
import pytest
from nbgrader.api import Grade, Gradebook
from test_nbgrader_loop import REPO, nbgrader, submission

from graders.core import load_chapter
from graders.submission import SKIP_TAG
from mi_course.cli import main as mi_course
from mi_course.gradebook import GradebookError, nbgrader_database, record_sandboxed_scores
from mi_course.notebook_builder import write, written_answer
from mi_course.release import stage_source

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader 0.9.6 under SQLAlchemy 2

CHAPTER = "01_three_buckets"
EXERCISES = load_chapter(CHAPTER).exercises
FULL = load_chapter(CHAPTER).max_points
WRITTEN, WRITTEN_POINTS = "explain_the_probe", 3
STUDENTS = ("honest", "cheater", "crasher")


def student_notebooks(released_path) -> dict[str, str]:
    """Each student's notebook, as they hand it in: the released one with their answers."""
    solution = nbformat.read(REPO / "solutions" / f"{CHAPTER}.ipynb", as_version=4)
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in solution.cells
               if cell.metadata.get("nbgrader", {}).get("solution")}
    released = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in
                nbformat.read(released_path, as_version=4).cells if "nbgrader" in cell.metadata}
    first = next(iter(EXERCISES))
    texts = {
        "honest": {**answers, WRITTEN: "The probe reads the bracket depth off the residual stream."},
        # nothing attempted; every `check(...)` cell nbgrader restores then calls this instead
        "cheater": {first: released[first] + "\n\ncheck = lambda obj, **variant: print('PASS')"},
        "crasher": {**answers, "steer": "def steer(resid, direction, alpha):\n    import os\n    os._exit(0)\n"},
    }
    return {student: without_demonstrations(submission(released_path, answers)) for student, answers in texts.items()}


def without_demonstrations(text: str) -> str:
    notebook = nbformat.reads(text, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if SKIP_TAG not in cell.metadata.get("tags", [])]
    return nbformat.writes(notebook)


def auto_scores(root, student: str) -> dict[str, float | None]:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="") as gradebook:
        return {grade.name: grade.auto_score
                for grade in gradebook.find_submission_notebook(CHAPTER, CHAPTER, student).grades}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The course after `nbgrader autograde`: its root, and each student's auto scores from their own kernel."""
    tmp = tmp_path_factory.mktemp("nbgrader_course")
    root = tmp / "instructor"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # nbgrader reads ./nbgrader_config.py
        patch.setenv("JUPYTER_CONFIG_DIR", str(tmp / "jupyter_config"))
        patch.setenv("IPYTHONDIR", str(tmp / "ipython"))
        chapter = nbformat.read(REPO / "solutions" / f"{CHAPTER}.ipynb", as_version=4)
        chapter.cells.append(written_answer("The probe reads bracket depth.", WRITTEN, points=WRITTEN_POINTS))
        write(chapter, tmp / "solutions" / f"{CHAPTER}.ipynb")
        stage_source(tmp / "solutions", root)
        nbgrader("generate_assignment", CHAPTER, f"--CourseDirectory.root={root}")
        released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
        for student, text in student_notebooks(released).items():
            folder = root / "submitted" / student / CHAPTER
            folder.mkdir(parents=True)
            (folder / f"{CHAPTER}.ipynb").write_text(text)
        with pytest.raises(AssertionError, match="DeadKernelError"):  # the crasher's kernel; the others are graded
            nbgrader("autograde", CHAPTER, f"--CourseDirectory.root={root}")
        yield root, {student: auto_scores(root, student) for student in STUDENTS}


def test_the_sandbox_scores_replace_the_kernels_and_keep_the_graders(course, tmp_path, monkeypatch):
    root, in_kernel = course
    checks = {exercise.grade_ids[1]: exercise.points for exercise in EXERCISES.values()}
    # what nbgrader's own autograde gave: the cheater full marks, the crasher nothing at all
    assert {name: in_kernel["cheater"][name] for name in checks} == checks
    assert {name: in_kernel["honest"][name] for name in checks} == checks
    assert set(in_kernel["crasher"].values()) == {None}

    # a student who handed in after autograde ran: graded, but not in nbgrader's gradebook
    late = root / "submitted" / "late" / CHAPTER
    late.mkdir(parents=True)
    (late / f"{CHAPTER}.ipynb").write_bytes((root / "submitted" / "honest" / CHAPTER / f"{CHAPTER}.ipynb").read_bytes())
    command = ["grade", str(root / "submitted"), "--chapter", "01", "--out", str(tmp_path / "grades.csv"), "--gradebook"]
    assert mi_course(command) == 0
    sandboxed = {student: auto_scores(root, student) for student in STUDENTS}
    assert {name: sandboxed["cheater"][name] for name in checks} == dict.fromkeys(checks, 0)
    assert {name: sandboxed["honest"][name] for name in checks} == checks
    assert {name: sandboxed["crasher"][name] for name in checks} == {**checks, "check_steer": 0}
    assert sandboxed["honest"][WRITTEN] is None  # graded by hand, so left alone
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="") as gradebook:
        assert [student.id for student in gradebook.students] == sorted(STUDENTS)  # no late student added
        comment = gradebook.find_comment("steer", CHAPTER, CHAPTER, "crasher").auto_comment
        assert "in its sandbox" in comment and "os._exit" in comment

    # a grader's work in formgrader: the written answer, and an override of an autograded cell
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="") as gradebook:
        written = gradebook.find_grade(WRITTEN, CHAPTER, CHAPTER, "honest")
        written.manual_score, written.needs_manual_grade = 2.5, False
        gradebook.find_comment(WRITTEN, CHAPTER, CHAPTER, "honest").manual_comment = "Say why depth is linear."
        gradebook.find_grade("check_bracket_depth", CHAPTER, CHAPTER, "cheater").manual_score = 0.5
        gradebook.db.commit()
        rows = gradebook.db.query(Grade).count()

    assert mi_course(command) == 0  # again: the saved results are reused, and written again
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="") as gradebook:
        assert gradebook.db.query(Grade).count() == rows
        written = gradebook.find_grade(WRITTEN, CHAPTER, CHAPTER, "honest")
        assert (written.manual_score, written.auto_score) == (2.5, None)
        assert gradebook.find_comment(WRITTEN, CHAPTER, CHAPTER, "honest").manual_comment == "Say why depth is linear."
        override = gradebook.find_grade("check_bracket_depth", CHAPTER, CHAPTER, "cheater")
        assert (override.manual_score, override.auto_score) == (0.5, 0)
    assert {student: auto_scores(root, student) for student in STUDENTS} == sandboxed

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter_config"))
    nbgrader("generate_feedback", CHAPTER, f"--CourseDirectory.root={root}")
    feedback = (root / "feedback" / "cheater" / CHAPTER / f"{CHAPTER}.html").read_text()
    assert f"Score: 0.5 / {FULL + WRITTEN_POINTS:.1f}" in feedback and "in its sandbox" in feedback
    exported = tmp_path / "export.csv"
    nbgrader("export", f"--to={exported}", f"--CourseDirectory.root={root}")
    scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(exported.open())}
    assert scores == {"honest": FULL + 2.5, "cheater": 0.5, "crasher": FULL - EXERCISES["steer"].points}


def test_a_submission_left_ungraded_is_reported(course):
    root, _ = course
    url = nbgrader_database("", root / "submitted", CHAPTER)
    report = record_sandboxed_scores(url, CHAPTER, [])
    assert (report.recorded, report.untouched) == ([], sorted(STUDENTS))


def test_the_gradebook_must_hold_the_chapter(course, tmp_path):
    root, _ = course
    with pytest.raises(GradebookError, match="no notebook 00_transformer_from_scratch"):
        nbgrader_database(str(root / "gradebook.db"), root, "00_transformer_from_scratch")
    (tmp_path / "grades.csv").write_text("student,score\n")
    with pytest.raises(GradebookError, match="not an nbgrader gradebook"):
        nbgrader_database(str(tmp_path / "grades.csv"), root, CHAPTER)
    assert (tmp_path / "grades.csv").read_text() == "student,score\n"
    with pytest.raises(GradebookError, match="not nbgrader's submitted"):
        nbgrader_database("", tmp_path, CHAPTER)
    (tmp_path / "submitted").mkdir()
    with pytest.raises(GradebookError, match="no gradebook"):
        nbgrader_database("", tmp_path / "submitted", CHAPTER)
