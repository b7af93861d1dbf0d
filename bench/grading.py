"""`mi-course grade` against `nbgrader autograde`: the same submissions, side by side.

Makes N submissions of one chapter from its released notebook (a third with every
exercise answered, a third with every other exercise answered, a third untouched), then
grades them twice, each as the instructor's command, timed end to end:

* `nbgrader autograde CHAPTER`, in a fresh nbgrader course folder, with this
  repository's `nbgrader_config.py` (one notebook after another, every cell executed in
  the student's kernel);
* `mi-course grade`, sandboxed (isolated wherever bubblewrap can build a view) and in
  parallel on all cores.

It prints both times, their ratio, and whether the two agree on every student's score.
Run it on an otherwise idle machine:

    python bench/grading.py                  # chapter 01, 20 students
    python bench/grading.py --chapter 02 --students 24
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mi_course.grading import resolve_chapter
from mi_course.runtime.containment import detect_containment
from mi_course.runtime.paths import COURSE_DIR, REPO_ROOT, SOLUTIONS_DIR

#: The venv's commands first, as if it were activated: nbgrader runs `alembic` by name. Not resolved: the venv's
#: python links to one outside the venv, whose folder has no alembic.
ENV = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])}


def make_submissions(chapter: str, students: int, folder: Path) -> dict[str, Path]:
    """{student: notebook}: solution cells copied into the released notebook."""
    released = nbformat.read(COURSE_DIR / f"{chapter}.ipynb", as_version=4)
    solution = nbformat.read(SOLUTIONS_DIR / f"{chapter}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    paths = {}
    for i in range(students):
        notebook = nbformat.from_dict(released)
        answered = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") in answers]
        for j, cell in enumerate(answered):
            if i % 3 == 0 or (i % 3 == 1 and j % 2 == 0):
                cell.source = answers[cell.metadata["nbgrader"]["grade_id"]]
        student = f"student{i:02d}"
        paths[student] = folder / "submitted" / student / chapter / f"{chapter}.ipynb"
        paths[student].parent.mkdir(parents=True)
        nbformat.write(notebook, paths[student])
    return paths


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def nbgrader_scores(course: Path, chapter: str) -> dict[str, float]:
    csv_path = course / "grades.csv"
    subprocess.run([sys.executable, "-m", "nbgrader", "export", f"--CourseDirectory.root={course}",
                    f"--to={csv_path}"], check=True, cwd=REPO_ROOT, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(csv_path, newline="") as file:
        return {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(file) if row["assignment"] == chapter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="01")
    parser.add_argument("--students", type=int, default=20)
    args = parser.parse_args()
    chapter = resolve_chapter(args.chapter)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        course = Path(tmp) / "course"
        (course / "source" / chapter).mkdir(parents=True)
        shutil.copy(SOLUTIONS_DIR / f"{chapter}.ipynb", course / "source" / chapter)
        root = f"--CourseDirectory.root={course}"
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", chapter, root], check=True, cwd=REPO_ROOT,
                       env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        make_submissions(chapter, args.students, course)
        print(f"{args.students} submissions of {chapter}; {os.cpu_count()} cores; "
              f"sandbox: {detect_containment().describe()}")

        ours_out = Path(tmp) / "ours" / "grades.csv"
        ours = timed([sys.executable, "-m", "mi_course.cli", "grade", str(course / "submitted"), "--chapter", chapter,
                      "--out", str(ours_out)], stderr=subprocess.DEVNULL)
        print(f"mi-course grade:    {ours:7.1f} s  ({ours / args.students:.2f} s per student)", flush=True)
        theirs = timed([sys.executable, "-m", "nbgrader", "autograde", chapter, root], stderr=subprocess.DEVNULL)
        print(f"nbgrader autograde: {theirs:7.1f} s  ({theirs / args.students:.2f} s per student)")
        print(f"ratio: mi-course grade is {theirs / ours:.1f}x faster")

        with open(ours_out, newline="") as file:
            our_scores = {row["student"]: float(row["score"]) for row in csv.DictReader(file)}
        their_scores = nbgrader_scores(course, chapter)
        differ = {s: (our_scores.get(s), their_scores.get(s)) for s in our_scores if our_scores.get(s) != their_scores.get(s)}
        print("scores agree for every student" if not differ else f"scores differ (ours, nbgrader's): {differ}")


if __name__ == "__main__":
    main()
