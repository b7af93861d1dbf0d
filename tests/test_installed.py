"""The course installed as a package (not editable), used from outside any checkout.

Grading must find what it needs through the installed packages alone: the exercises and
points from the chapters' graders (not from the generated `course/` notebooks, which are
not packaged), and what the sandbox shows or hides from where those packages are.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mi_course.runtime.containment import detect_containment

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "01_three_buckets"


def _checkout_copy(destination: Path) -> Path:
    """The working tree's files (tracked, and new ones git does not ignore), so that the build
    sees neither a stale `build/` nor anything else ignored."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _checkout_copy(tmp_path_factory.mktemp("source"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    shutil.rmtree(source)
    return target


def _run(installed: Path, cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Python with only the installed packages of the course on its path, in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_installed_packages_are_the_ones_imported(installed, tmp_path) -> None:
    run = _run(installed, tmp_path, "-c", "import graders, mi_course, toy_models, solutions; "
               "print('\\n'.join(m.__file__ for m in (graders, mi_course, toy_models, solutions)))")
    assert run.returncode == 0, run.stderr
    assert all(Path(path).is_relative_to(installed) for path in run.stdout.split()), run.stdout
    assert not (installed / "course").exists() and not (installed / "tests").exists()


def test_a_class_is_graded_from_the_installed_packages(installed, tmp_path) -> None:
    submissions = tmp_path / "submitted"
    submissions.mkdir()
    shutil.copy(REPO / "solutions" / f"{CHAPTER}.ipynb", submissions / "alice.ipynb")
    out = tmp_path / "grades" / "grades.csv"
    run = _run(installed, tmp_path, "-m", "mi_course.cli", "grade", str(submissions), "--chapter", "01",
               "--out", str(out), "--workers", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    [alice] = list(csv.DictReader(out.open()))
    assert alice["score"] == alice["max_score"], alice
    assert alice["sandbox"] == detect_containment().name  # isolated wherever bubblewrap works here
    assert "graded cell" not in alice["problems"], alice  # the graded cells were found from the graders
