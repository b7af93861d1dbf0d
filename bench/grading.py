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

With `--cluster`, the peer is instead `mi-course grade --scheduler`: a Dask scheduler and
`mi-course worker` with as many worker processes as the local pool has (one per core),
all on the loopback address, started before the clock starts. It prints the throughput of
both, side by side, and whether their gradebooks are the same file.

Run it on an otherwise idle machine:

    python bench/grading.py                  # chapter 01, 20 students
    python bench/grading.py --chapter 02 --students 24
    python bench/grading.py --chapter 05 --students 20 --cluster
"""

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
from distributed import Client

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


@contextlib.contextmanager
def loopback_cluster(workers: int, logs: Path) -> Iterator[str]:
    """A Dask scheduler and `mi-course worker` with `workers` processes on 127.0.0.1; yields
    the scheduler's address once every worker has joined (its sandbox zygote started)."""
    scheduler_file = logs / "scheduler.json"
    commands = [[sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--no-dashboard", "--scheduler-file", str(scheduler_file)]]
    processes = []
    try:
        processes.append(subprocess.Popen(commands[0], cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        while not scheduler_file.exists():
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "mi_course.cli", "worker", address, "--nworkers", str(workers)], cwd=REPO_ROOT,
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=300)
        yield address
    finally:
        for process in reversed(processes):  # each a session: its workers, zygotes and sandboxes with it
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def compare_with_cluster(chapter: str, students: int, submitted: Path, tmp: Path) -> None:
    """The local pool and a loopback cluster of as many worker processes, side by side."""
    workers = os.cpu_count() or 1
    grade = [sys.executable, "-m", "mi_course.cli", "grade", str(submitted), "--chapter", chapter,
             "--workers", str(workers)]
    local_out, cluster_out = tmp / "local" / "grades.csv", tmp / "cluster" / "grades.csv"
    local = timed([*grade, "--out", str(local_out)], stderr=subprocess.DEVNULL)
    with loopback_cluster(workers, tmp) as address:
        cluster = timed([*grade, "--out", str(cluster_out), "--scheduler", address], stderr=subprocess.DEVNULL)
    for name, seconds in (("local pool", local), ("loopback cluster", cluster)):
        print(f"{name + ',':18s} {workers} worker processes: {seconds:7.1f} s  ({students / seconds:.2f} students/s, "
              f"{seconds / students:.2f} s per student, {seconds * workers / students:.2f} core-seconds per student)")
    print(f"ratio: the cluster takes {cluster / local:.2f}x the local pool's time")
    same = local_out.read_bytes() == cluster_out.read_bytes()
    print("the two gradebooks are the same file" if same else "the two gradebooks DIFFER")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default="01")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--cluster", action="store_true",
                        help="compare with a loopback Dask cluster instead of nbgrader autograde")
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
        if args.cluster:
            compare_with_cluster(chapter, args.students, course / "submitted", Path(tmp))
            return

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
