"""`mi-course grade --scheduler`: a class graded on a Dask cluster gets the files it gets on one machine,
and a worker that dies costs only the attempt it was grading.

The cluster is real, on the loopback address: a `dask scheduler` and two worker processes that
`mi-course worker` starts, each a process of its own. All of it, and every grading run, imports one
copy of the course's packages (run from that copy's folder, which Python puts first on the path), so
that an edit to the working tree while the test runs cannot give the client and the workers two
versions of the course (which they would refuse, rightly).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from test_grading import BROKEN, CHAPTER, FULL, HONEST, HOSTILE, add_cell, assert_grades, solution, write_class

from mi_course.cluster import KILLED_TWO_WORKERS
from mi_course.grading import CODE_PACKAGES

REPO = Path(__file__).resolve().parents[1]
#: Honest, empty, hostile and broken, none of whose grades depend on the time or memory limits.
CLASS = {name: corpus[name] for corpus, names in [
    (HONEST, ["full_marks", "partial", "empty"]), (HOSTILE, ["os_exit", "segfault", "always_equal"]),
    (BROKEN, ["invalid_json", "wrong_kernel", "renamed_function"])] for name in names}
#: A full-marks notebook that takes a few seconds: time enough to kill the worker grading it.
SLOW = add_cell(solution(), "import time\ntime.sleep(3)")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every process of these tests runs in: a copy of the course's packages."""
    packages = tmp_path_factory.mktemp("course")
    for package in CODE_PACKAGES:
        shutil.copytree(REPO / package, packages / package, ignore=shutil.ignore_patterns("__pycache__"))
    return packages


def _start(command: list[str], course: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as output:  # a session of its own: stopped whole, workers, zygotes and sandboxes
        return subprocess.Popen(command, cwd=course, env={**os.environ, "PYTHONPATH": str(course)}, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """Stop the process and all it started: asked first (the workers then stop their zygotes), then killed."""
    for sent, wait in [(signal.SIGTERM, 30), (signal.SIGKILL, 10)]:
        try:
            os.killpg(process.pid, sent)
            process.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture(scope="module")
def cluster(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The scheduler's address, once two grading workers have joined it."""
    logs = tmp_path_factory.mktemp("cluster")
    scheduler_file = logs / "scheduler.json"
    processes = [_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                         "--no-dashboard", "--scheduler-file", str(scheduler_file)], course, logs / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        processes.append(_start([sys.executable, "-m", "mi_course.cli", "worker", address, "--nworkers", "2"], course,
                                logs / "workers.log"))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=300)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


def grade(course: Path, submissions: Path, out: Path, *options: str) -> None:
    run = subprocess.run([sys.executable, "-m", "mi_course.cli", "grade", str(submissions), "--chapter", CHAPTER,
                          "--out", str(out), *options], cwd=course, env={**os.environ, "PYTHONPATH": str(course)},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def files(out: Path) -> dict[str, object]:
    """What a run writes: each file's bytes; of the JSON files (saved results, Gradescope's), their data
    but how long the student took."""
    return {path.relative_to(out.parent).as_posix(): path.read_bytes() if path.suffix != ".json" else
            {field: value for field, value in json.loads(path.read_text()).items()
             if field not in ("seconds", "execution_time")}
            for path in sorted(out.parent.rglob("*.*"))}


def test_a_cluster_grades_a_class_as_one_machine_does(cluster: str, course: Path, tmp_path: Path) -> None:
    write_class(tmp_path / "submissions", CLASS)
    here, there = tmp_path / "here" / "grades.csv", tmp_path / "there" / "grades.csv"
    grade(course, tmp_path / "submissions", here)
    # Two students' results, saved by the run on one machine, for the cluster's run to resume from.
    resumed = [there.parent / "grades-results" / f"{student}.json" for student in ("full_marks", "invalid_json")]
    resumed[0].parent.mkdir(parents=True)
    for saved in resumed:
        shutil.copy2(here.parent / "grades-results" / saved.name, saved)
    saved_at = [saved.stat().st_mtime_ns for saved in resumed]
    grade(course, tmp_path / "submissions", there, "--scheduler", cluster)
    assert [saved.stat().st_mtime_ns for saved in resumed] == saved_at, "their fingerprints hold on the cluster too"
    assert files(there) == files(here) and there.read_bytes() == here.read_bytes()
    assert_grades(there, CLASS)


def kill_workers_grading(address: str, kills: dict[str, int], killed: Counter, done: threading.Event) -> None:
    """Kill the worker process grading each student in `kills`, as many times as it says, as the kernel's
    OOM killer would: SIGKILL, out of the blue. (Its nanny starts it again.)"""
    with Client(address, timeout=30) as client:
        while not done.is_set() and killed != kills:
            for worker, keys in client.processing().items():
                for student in {key.split("-", 2)[2] for key in keys} & kills.keys():
                    if killed[student] < kills[student]:
                        os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
                        killed[student] += 1
                        while worker in client.processing():  # until the scheduler has seen it die
                            time.sleep(0.05)
            time.sleep(0.05)


def test_a_worker_that_dies_costs_only_the_attempt_it_was_grading(cluster: str, course: Path, tmp_path: Path) -> None:
    # Five students, more than twice the workers' threads: the scheduler queues them (see DaskGrading.grade).
    corpus = {**{name: CLASS[name] for name in ("full_marks", "empty", "os_exit")},
              "killed_once": (SLOW, FULL, "| `steer` | 1 / 1 | pass |"), "kills_two": (SLOW, 0, KILLED_TWO_WORKERS)}
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "out" / "grades.csv"
    kills, killed, done = {"killed_once": 1, "kills_two": 2}, Counter(), threading.Event()
    killer = threading.Thread(target=kill_workers_grading, args=(cluster, kills, killed, done))
    killer.start()
    try:
        grade(course, tmp_path / "submissions", out, "--scheduler", cluster)
    finally:
        done.set()
        killer.join()
    assert killed == kills
    assert_grades(out, corpus)  # every student graded, and as they should be
