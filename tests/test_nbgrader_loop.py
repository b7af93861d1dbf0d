"""The nbgrader loop an instructor runs, end to end, on a tiny fixture chapter.

The nbgrader commands run in-process through ``NbGraderApp`` with exactly the
argv an instructor types (the ``nbgrader`` console script is
``NbGraderApp.launch_instance``), from the repository root so that the
repository's ``nbgrader_config.py`` is the one in force; only
``CourseDirectory.root`` is pointed at a temporary directory.  Starting the
``nbgrader`` executable five times would cost ~5 s of imports each.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from pathlib import Path

import nbformat
import pytest

from mi_course.notebook_builder import code, graded_test, markdown, notebook, solution, write
from mi_course.release import CODE_STUB, is_stale, release, stage_source
from mi_course.release import main as release_main

# nbgrader 0.9.6's gradebook code triggers harmless autoflush warnings under SQLAlchemy 2.x
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

REPO = Path(__file__).resolve().parents[1]
SECRET = "HIDDEN_CHECK_7f3a"  # appears only inside the hidden test region
SOLUTION_MARK = "SOLUTION_BODY_91c2"  # appears only inside solution regions

ADD_OK = "def add(a, b):\n    return a + b"
SQUARE_OK = "def square(x):\n    return x * x"
# passes the visible test square(3) == 9 but not the hidden square(-4) == 16
SQUARE_CHEAT = "def square(x):\n    return abs(x) * x"


def fixture_chapter() -> nbformat.NotebookNode:
    return notebook([
        markdown("# Fixture chapter\nTwo tiny exercises."),
        solution(f'''
            def add(a, b):
                """Return the sum of a and b."""
                ### BEGIN SOLUTION
                return a + b  # {SOLUTION_MARK}
                ### END SOLUTION
        ''', grade_id="add"),
        graded_test("assert add(1, 2) == 3\nassert add(-1, 1) == 0\nprint('add: ok')",
                    grade_id="test_add", points=2),
        markdown("## Squares"),
        solution(f'''
            def square(x):
                ### BEGIN SOLUTION
                return x * x  # {SOLUTION_MARK}
                ### END SOLUTION
        ''', grade_id="square"),
        graded_test(f'''
            assert square(3) == 9
            ### BEGIN HIDDEN TESTS
            assert square(-4) == 16, "{SECRET}"
            ### END HIDDEN TESTS
            print("square: ok")
        ''', grade_id="test_square", points=3),
    ])


@pytest.fixture(scope="module")
def solutions_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("solutions")
    write(fixture_chapter(), d / "fixture.ipynb")
    return d


def _cells(path: Path) -> dict[str, nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


# --------------------------------------------------------------------------- release()

def test_release_makes_student_notebooks(solutions_dir, tmp_path):
    course = tmp_path / "course"
    paths = release(solutions_dir, course)
    assert paths == [course / "fixture.ipynb"]
    text = paths[0].read_text()
    assert SOLUTION_MARK not in text and "BEGIN SOLUTION" not in text
    assert SECRET not in text and "HIDDEN TESTS" not in text

    cells = _cells(paths[0])
    for gid in ("add", "square"):
        assert CODE_STUB.splitlines()[1] in cells[gid].source  # indented inside the def
        assert cells[gid].source.startswith(f"def {gid}(")
        assert cells[gid].metadata["nbgrader"]["checksum"]  # autograde needs it
    assert cells["test_square"].source == 'assert square(3) == 9\nprint("square: ok")'
    assert cells["test_add"].metadata["editable"] is False
    assert cells["test_add"].metadata["nbgrader"]["points"] == 2
    nb = nbformat.read(paths[0], as_version=4)
    nbformat.validate(nb)
    assert all(c.get("outputs", []) == [] for c in nb.cells)

    # deterministic: a second release into another folder is byte-identical
    again = release(solutions_dir, tmp_path / "again")
    assert again[0].read_bytes() == paths[0].read_bytes()
    assert is_stale(solutions_dir, course) == []


def test_is_stale_reports_edited_missing_and_orphaned(solutions_dir, tmp_path):
    course = tmp_path / "course"
    (student,) = release(solutions_dir, course)
    student.write_text(student.read_text().replace("Two tiny", "Three tiny"))
    assert is_stale(solutions_dir, course) == ["fixture.ipynb"]
    student.unlink()
    assert is_stale(solutions_dir, course) == ["fixture.ipynb"]
    release(solutions_dir, course)
    (course / "gone.ipynb").write_bytes(student.read_bytes())  # chapter deleted from solutions/
    (course / "notes.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))  # not released
    assert is_stale(solutions_dir, course) == ["gone.ipynb"]

    # the same through the module's command line
    args = ["--solutions", str(solutions_dir), "--course", str(course)]
    assert release_main([*args, "--check"]) == 1
    (course / "gone.ipynb").unlink()
    assert release_main([*args, "--check"]) == 0
    assert release_main(["--solutions", str(solutions_dir), "--stage", str(tmp_path / "nbg")]) == 0
    assert (tmp_path / "nbg" / "source" / "fixture" / "fixture.ipynb").exists()


def test_release_gives_cells_without_ids_stable_ids(tmp_path):
    sols = tmp_path / "solutions"
    nb = json.loads(nbformat.writes(fixture_chapter()))
    for cell in nb["cells"]:
        del cell["id"]
    sols.mkdir()
    (sols / "noid.ipynb").write_text(json.dumps(nb))
    first = release(sols, tmp_path / "a")[0].read_bytes()
    assert release(sols, tmp_path / "b")[0].read_bytes() == first


def test_release_reports_nbgrader_errors(tmp_path):
    sols = tmp_path / "solutions"
    bad = notebook([code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])  # not a solution cell
    write(bad, sols / "bad.ipynb")
    with pytest.raises(RuntimeError, match="Solution region detected in a non-solution cell"):
        release(sols, tmp_path / "course")
    assert not (tmp_path / "course" / "bad.ipynb").exists()


# --------------------------------------------------------------------------- the loop

def nbgrader(*argv: str) -> str:
    """Run ``nbgrader <argv>`` in-process, as nbgrader's own test-suite does."""
    from jupyter_core.application import NoStart
    from nbgrader.apps import NbGraderApp

    app = NbGraderApp.instance()
    buf = io.StringIO()
    rc = 0
    try:
        app.initialize(list(argv))
        app.init_logging(logging.StreamHandler, [buf], color=False, subapps=True)
        app.start()
    except NoStart:  # how a Jupyter app says "the subcommand ran"
        pass
    except SystemExit as e:
        rc = e.code or 0
    finally:
        app.reset()
    log = buf.getvalue()
    print(log)  # shown by pytest when the test fails
    assert rc == 0, f"nbgrader {' '.join(argv)} exited {rc}:\n{log}"
    assert "| ERROR]" not in log, f"nbgrader {' '.join(argv)} logged errors:\n{log}"
    return log


def submission(released: Path, answers: dict[str, str]) -> str:
    """The released notebook with some cells' text replaced, as a student saves it."""
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nbformat.writes(nb)


def test_instructor_loop(solutions_dir, tmp_path, monkeypatch):
    root = tmp_path / "instructor"
    monkeypatch.chdir(REPO)  # nbgrader reads ./nbgrader_config.py
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter_config"))  # no personal config
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    at_root = f"--CourseDirectory.root={root}"

    # 1. stage the chapter and generate the student version (+ gradebook entries)
    stage_source(solutions_dir, root)
    nbgrader("generate_assignment", "fixture", at_root)
    released = root / "release" / "fixture" / "fixture.ipynb"
    assert (root / "gradebook.db").exists()
    # the committed course/ notebooks are exactly nbgrader's student version
    assert released.read_bytes() == release(solutions_dir, tmp_path / "course")[0].read_bytes()
    assert SECRET not in released.read_text() and SOLUTION_MARK not in released.read_text()

    # 2. three submissions
    alice = submission(released, {"add": ADD_OK, "square": SQUARE_OK})          # 2 + 3
    bob = submission(released, {"test_add": "pass"})  # stubs untouched, tampers with a test: 0
    carol = submission(released, {"add": ADD_OK, "square": SQUARE_CHEAT})      # 2 + 0 (hidden)
    archive = root / "downloaded" / "fixture" / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "alice.zip", "w") as zf:  # <student>.zip, a folder inside
        zf.writestr("fixture/fixture.ipynb", alice)
        zf.writestr("fixture/.ipynb_checkpoints/fixture-checkpoint.ipynb", bob)  # junk: skipped
    (archive / "bob__fixture.ipynb").write_text(bob)  # a bare <student>__<notebook>.ipynb
    carol_dir = root / "submitted" / "carol" / "fixture"  # or copied straight into submitted/
    carol_dir.mkdir(parents=True)
    (carol_dir / "fixture.ipynb").write_text(carol)

    log = nbgrader("zip_collect", "fixture", at_root)
    assert "Skipped notebook with invalid name 'fixture-checkpoint.ipynb'" in log
    for student in ("alice", "bob"):
        assert (root / "submitted" / student / "fixture" / "fixture.ipynb").exists()
    assert (root / "submitted" / "alice" / "fixture" / "fixture.ipynb").read_text() == alice

    # 3. autograde (one kernel per notebook), feedback, export
    nbgrader("autograde", "fixture", at_root)
    graded = _cells(root / "autograded" / "carol" / "fixture" / "fixture.ipynb")
    assert SECRET in graded["test_square"].source  # hidden tests are put back for grading
    assert _cells(root / "autograded" / "bob" / "fixture" / "fixture.ipynb")["test_add"].source \
        .startswith("assert add(1, 2) == 3")  # the tampered test cell was restored

    nbgrader("generate_feedback", "fixture", at_root)
    for student in ("alice", "bob", "carol"):
        html = (root / "feedback" / student / "fixture" / "fixture.html").read_text()
        assert "test_square" in html
    feedback = {s: (root / "feedback" / s / "fixture" / "fixture.html").read_text()
                for s in ("alice", "bob", "carol")}
    assert "Score: 5.0 / 5.0" in feedback["alice"] and "Score: 2.0 / 5.0" in feedback["carol"]
    assert "NotImplementedError" in feedback["bob"]
    # nbgrader's design: feedback shows the hidden tests, so hand it back after the deadline
    assert SECRET in feedback["carol"]

    grades = tmp_path / "grades.csv"
    nbgrader("export", f"--to={grades}", at_root)
    rows = list(csv.DictReader(grades.open()))
    scores = {r["student_id"]: float(r["score"]) for r in rows}
    assert scores == {"alice": 5.0, "bob": 0.0, "carol": 2.0}
    assert {r["assignment"] for r in rows} == {"fixture"}
    assert {float(r["max_score"]) for r in rows} == {5.0}


def test_repository_config_loads():
    """The instructor config parses and sets what the loop relies on."""
    from traitlets.config.loader import PyFileConfigLoader

    c = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    assert c.CourseDirectory.root == str(REPO / "instructor")
    assert c.ClearSolutions.code_stub == {"python": CODE_STUB}
    assert c.Execute.timeout >= 300
    assert c.FileNameCollectorPlugin.named_regexp
