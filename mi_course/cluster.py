"""Grade a class on a Dask cluster: `mi-course grade SUBMISSIONS --chapter NN --scheduler tcp://HOST:PORT`.

    dask scheduler                                   # on one machine; it prints its address, tcp://HOST:8786
    mi-course worker tcp://HOST:8786 --nworkers 8    # on each grading machine: a worker process per core
    mi-course grade submitted/ --chapter 01 --scheduler tcp://HOST:8786

The instructor's machine (the client) does all that `grade_class` does but the grading itself: it
reads the notebooks, decides whose saved results still hold (their fingerprints), and alone writes
results, feedback and gradebooks, so a run resumes exactly as on one machine. A student's notebook
travels to a worker as bytes, with its file name and the student's id, never as a path; the worker
grades it as `grade_class` would, in a sandbox forked from the zygote its `GradingPlugin` started, and
sends back the grade as JSON text: plain data made by the grader's process, never an object of the
student's code, which the client checks again, field by field (`_received`).

What a cluster adds:

* **One version of the course.** A grade depends on the course's code and checkpoints
  (`grading_code_digest`): the client sends its digest with each student, and a worker with another
  refuses; the client then stops and says which worker, rather than zeroing the class.
* **Workers that die.** The sandbox contains a student's code, but a machine can still run out of
  memory. A worker's nanny starts a dead worker process again; the student it was grading loses that
  attempt only, and is graded again on another worker. A student whose grading takes down two workers
  gets a zero that says so.
* **A worker holds only the student it grades.** The scheduler hands each worker its next student once
  it is done with the last, so that a worker's death costs no student waiting behind it an attempt;
  and it holds only a few students more than there are workers, not a whole class's notebooks.

The last two are the scheduler's settings (`SCHEDULER_SETTINGS`), which the client sets as it connects.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from distributed import Client, Future, KilledWorker, Worker, WorkerPlugin, get_worker

from graders.core import load_chapter
from graders.results import StudentGrade
from mi_course.grading import GradingStopped, StudentFile, failed_grade, grade_or_zero, grading_code_digest
from mi_course.runtime.containment import Containment, Limits, detect_containment
from mi_course.runtime.remote import Zygote

__all__ = ["DaskGrading", "GradingPlugin", "KILLED_TWO_WORKERS", "dask_setup", "grade_on_worker"]

#: The grading plugin's name on each worker.
PLUGIN = "mi-course-grading"
#: What the client sets on the scheduler: a student's grading may take down one worker, and is graded again
#: elsewhere (a second is the notebook's doing); and a worker, of one thread, is sent one student at a time.
SCHEDULER_SETTINGS = {"allowed_failures": 1, "WORKER_SATURATION": 1.0}
KILLED_TWO_WORKERS = "the notebook's grading killed two workers"
#: How often the client looks for worker threads that joined (a restarted worker) while no student finishes.
POLL_SECONDS = 1.0


# --------------------------------------------------------------------------- the workers

class GradingPlugin(WorkerPlugin):
    """What a worker process grades with, for as long as it runs: the course version it has, the
    sandbox its machine can build, and a zygote that forks each student's sandbox (so torch is
    imported once per worker process, not once per student)."""

    def setup(self, worker: Worker) -> None:
        self.code_digest = grading_code_digest()
        self.containment = detect_containment()
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ for its workers, which turns off glibc's
        # adaptive mmap threshold: every large tensor is then mapped and unmapped afresh,
        # and a student took 1.7x as long as on one machine. The sandboxes keep glibc's default.
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        self.zygote = Zygote()

    def teardown(self, worker: Worker) -> None:
        self.zygote.close()

    def grade(self, student: str, file_name: str, notebook: bytes, chapter: str, limits: Limits) -> StudentGrade:
        """The student's grade, graded as `grade_class` grades on one machine: the notebook is written to a
        private folder (under its own file name, from which a notebook without metadata is told its
        chapter), hidden from the sandbox."""
        with tempfile.TemporaryDirectory(prefix="mi-course-submission-") as folder:  # mode 0700
            path = Path(folder) / Path(file_name).name
            path.write_bytes(notebook)
            return grade_or_zero(StudentFile(student, path), chapter, limits, self.containment, self.zygote.address,
                                 hidden=(Path(folder),))


async def dask_setup(worker: Worker) -> None:
    """`dask worker --preload mi_course.cluster`, which `mi-course worker` runs: make the worker a grading one.
    Its zygote starts before the worker joins the scheduler, and a worker whose zygote cannot start never does."""
    await worker.plugin_add(GradingPlugin(), name=PLUGIN, catch_errors=False)


def _sandbox(dask_worker: Worker) -> list[str] | None:
    """The worker's sandbox, [mode, reason]; None if it is no grading worker."""
    plugin = dask_worker.plugins.get(PLUGIN)
    return None if plugin is None else [plugin.containment.mode, plugin.containment.reason]


def _refusal(code_digest: str, mode: str, dask_worker: Worker) -> str | None:
    """Why the worker will not grade for a client with this course version and sandbox mode; None if it will."""
    plugin = dask_worker.plugins.get(PLUGIN)
    if plugin is None:
        return "not started by `mi-course worker` (no grading plugin)"
    if plugin.code_digest != code_digest:
        return (f"another version of the course (code and checkpoints {plugin.code_digest[:12]}, here "
                f"{code_digest[:12]}): install the same version on every worker and on this machine, start "
                "the workers again, and grade again")
    if plugin.containment.mode != mode:
        return (f"another sandbox ({plugin.containment.mode!r}, not {mode!r}), so that grades would depend on "
                "the worker: see `bwrap --version` on each machine")
    return None


def grade_on_worker(student: str, file_name: str, notebook: bytes, chapter: str, limits: dict, code_digest: str,
                    mode: str) -> str:
    """The task each student is: {"grade": their grade (`StudentGrade.to_json`)}, or {"refused": why} if
    this worker is not one to grade them (`_refusal`), as JSON text."""
    worker = get_worker()
    why_not = _refusal(code_digest, mode, worker)
    if why_not is not None:
        return json.dumps({"refused": f"worker {worker.address} refused to grade: {why_not}"})
    grade = worker.plugins[PLUGIN].grade(student, file_name, notebook, chapter, Limits(**limits))
    return json.dumps({"grade": grade.to_json()}, allow_nan=False)


# --------------------------------------------------------------------------- the client

class DaskGrading:
    """The grading workers of a Dask cluster, for `grade_class(..., remote=DaskGrading(address))`
    (a `RemoteGrading`). Connecting checks the workers there: each was started by `mi-course worker`,
    runs this version of the course, and grades in the same sandbox; `GradingStopped` if not."""

    def __init__(self, scheduler: str, *, timeout: float = 60):
        self.code_digest = grading_code_digest()
        try:
            self.client = Client(scheduler, timeout=timeout, set_as_default=False)
        except OSError as error:  # timeouts included
            raise GradingStopped(f"could not reach the Dask scheduler at {scheduler}: {error}") from None
        try:
            def configure(dask_scheduler) -> None:  # defined here, so sent by value: the scheduler needs no course
                for name, value in SCHEDULER_SETTINGS.items():
                    setattr(dask_scheduler, name, value)

            self.client.run_on_scheduler(configure)
            self.containment = self._check_workers(scheduler, timeout)
        except BaseException:
            self.client.close()
            raise
        self.run = secrets.token_hex(4)  # in each task's key: this run's, not another client's

    def _check_workers(self, scheduler: str, timeout: float) -> Containment:
        """The workers' sandbox, once every worker there now has been checked (`_refusal`)."""
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise GradingStopped(f"no worker joined the scheduler {scheduler} in {timeout:g} s: start them with "
                                 f"`mi-course worker {scheduler}` on each grading machine") from None
        sandboxes = [sandbox for sandbox in self.client.run(_sandbox).values() if sandbox is not None]
        mode, reason = sandboxes[0] if sandboxes else ("", "")
        refused: dict[str, list[str]] = {}  # why: the workers
        for address, why in self.client.run(_refusal, self.code_digest, mode).items():
            if why is not None:
                refused.setdefault(why, []).append(address)
        if refused:
            raise GradingStopped("; ".join(f"{len(addresses)} worker(s) refused to grade ({', '.join(addresses[:4])}"
                                           f"{', ...' if len(addresses) > 4 else ''}): {why}"
                                           for why, addresses in refused.items()))
        return Containment(mode, reason)

    def grade(self, students: list[StudentFile], chapter: str, limits: Limits) -> Iterator[StudentGrade]:
        """Each student's grade, graded on a worker and checked here, as soon as it is done."""
        waiting = students[::-1]  # popped from the end: sent in the class's order
        in_flight: dict[Future, StudentFile] = {}
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()  # filled from the client's own thread
        try:
            while waiting or in_flight:
                # Twice the worker threads, and one: the scheduler queues a group of tasks (and hands each to a
                # worker as one falls free) only if it is larger than that. Counted again each time, as
                # workers die and return.
                room = 2 * sum(self.client.nthreads().values()) + 1 - len(in_flight)
                batch = [waiting.pop() for _ in range(min(room, len(waiting)))]
                for future, submission in zip(self._send(batch, chapter, limits), batch, strict=True):
                    in_flight[future] = submission
                    future.add_done_callback(finished.put)
                try:
                    future = finished.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                yield self._grade_of(future, in_flight.pop(future), chapter)
        finally:
            self.client.cancel(list(in_flight))

    def _send(self, batch: list[StudentFile], chapter: str, limits: Limits) -> list[Future]:
        """The students' tasks, sent at once, so that the scheduler sees the group whole."""
        if not batch:
            return []
        return self.client.map(
            grade_on_worker, [s.student for s in batch], [s.path.name for s in batch], [s.path.read_bytes() for s in batch],
            chapter=chapter, limits=asdict(limits), code_digest=self.code_digest, mode=self.containment.mode,
            key=[f"grade-{self.run}-{s.student}" for s in batch])  # one group, "grade"; named for the dashboard

    def _grade_of(self, future: Future, submission: StudentFile, chapter: str) -> StudentGrade:
        try:
            text = future.result()
        except KilledWorker:
            print(f"mi-course grade: {submission.student} ({submission.path}): {KILLED_TWO_WORKERS}", file=sys.stderr)
            return failed_grade(submission, chapter, self.containment, KILLED_TWO_WORKERS)
        except Exception as error:  # noqa: BLE001 - a cluster's many errors: the task never raises
            raise GradingStopped(f"grading {submission.student} on the cluster failed "
                                 f"({type(error).__name__}: {str(error)[:300]})") from error
        return _received(text, submission.student, chapter, self.containment.mode)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DaskGrading:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _received(text: object, student: str, chapter_name: str, mode: str) -> StudentGrade:
    """The grade a worker sent back for `student` (`grade_on_worker`), checked field by field, and against
    what was asked; `GradingStopped` if the worker refused, or sent anything else."""
    try:
        record = json.loads(text)
        if isinstance(record, dict) and record.keys() == {"refused"}:
            raise GradingStopped(str(record["refused"]))
        if not (isinstance(record, dict) and record.keys() == {"grade"}):
            raise ValueError("neither a grade nor a refusal")
        grade = StudentGrade.from_json(record["grade"])
    # TypeError: not text; ValueError: not JSON, or not a grade; RecursionError: nested deep
    except (TypeError, ValueError, RecursionError) as error:
        raise GradingStopped(f"a worker sent back something other than a grade of {student}: {str(error)[:300]}") from None
    chapter = load_chapter(chapter_name)
    checks = {
        "student": grade.student == student, "chapter": grade.chapter == chapter_name, "sandbox": grade.sandbox == mode,
        "exercises": [(r.exercise, r.max_points) for r in grade.results] == [
            (name, exercise.points) for name, exercise in chapter.exercises.items()],
        "points": all(0 <= r.points <= r.max_points for r in grade.results),
        "score": grade.score == sum(r.points for r in grade.results), "max_score": grade.max_score == chapter.max_points,
    }
    wrong = [field for field, holds in checks.items() if not holds]
    if wrong:
        raise GradingStopped(f"a worker sent back a grade of {student} with the wrong {', '.join(wrong)}")
    return grade
