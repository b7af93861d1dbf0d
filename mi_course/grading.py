"""`mi-course grade`: grade a class's notebooks in sandboxes, in parallel, resumably.

    mi-course grade SUBMISSIONS --chapter 00 --out grades.csv

SUBMISSIONS is a folder of notebooks (`alice.ipynb`, ...), or nbgrader's
`submitted/{student}/{chapter}/` layout. For each student the grader:

1. reads the notebook as data and checks it (valid JSON and notebook format, this
   chapter, a Python kernel, graded cells present once each), without running it;
2. runs its code in a sandbox (`mi_course.runtime`), and grades each exercise with the
   chapter's graders *in the grader's process*, calling the learner's objects through
   proxies: nothing the learner's code prints, writes or returns is taken as a verdict,
   only as an answer to compare with the reference;
3. writes the student's results atomically to `<out>-results/<student>.json`, a feedback
   file `<out>-feedback/<student>.md`, and their results in Gradescope's format,
   `<out>-gradescope/<student>.json` (`graders.reporting.gradescope_results`).

With `--scheduler`, step 2 happens on a Dask cluster's workers instead (`mi_course.cluster`); the
rest, writing every file included, stays on this machine.

Then the class's gradebook (`--out`, CSV) is written, keeping any previous one beside
it, and the points alone for an LMS to import, `<out>-lms.csv` (`write_lms_csv`). A run
that is interrupted resumes where it stopped: a student whose notebook and graders have
not changed since their results were written is not graded again.

`mi-course gradescope` is the same grading, of the one notebook that Gradescope's
autograder hands in (`grade_for_gradescope`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import stat
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

import nbformat
from nbformat.reader import NotJSONError

from graders.core import CHAPTERS, Chapter, load_chapter
from graders.reporting import feedback, gradescope_results
from graders.results import Result, StudentGrade
from graders.submission import cells_to_run, chapter_of
from mi_course.runtime.containment import VISIBLE_PACKAGES, Containment, Limits, detect_containment
from mi_course.runtime.paths import package_dirs
from mi_course.runtime.remote import LearnerNotebook, Zygote
from mi_course.runtime.verdicts import LearnerCodeFailed, Verdict

__all__ = ["GradingStopped", "RemoteGrading", "StudentFile", "failed_grade", "find_submissions", "grade_class",
           "grade_for_gradescope", "grade_or_zero", "resolve_chapter", "write_gradebook", "write_lms_csv"]

MAX_NOTEBOOK_BYTES = 20 * 2**20
#: As root, each student's code runs as a user id of its own, drawn from this range.
SANDBOX_UID_BASE, SANDBOX_UIDS = 0x70000000, 2**24
#: What a grade depends on besides the notebook: every file of these (code, checkpoints, data).
CODE_PACKAGES = ("graders", "solutions", "toy_models", "mi_course")
#: A student id names their results and feedback files: it stays well under the 255 bytes a file name may have.
MAX_STUDENT_ID = 100
#: The bytes a student id keeps as they are; any other, and a leading `.`, `-` or `@`, becomes %XX.
_ID_BYTES = frozenset((string.ascii_letters + string.digits + "_-.@").encode())


@dataclass(frozen=True)
class StudentFile:
    student: str
    path: Path


def resolve_chapter(name: str) -> str:
    """'00', '0', or the full name -> the full chapter name."""
    matches = [chapter for chapter in CHAPTERS if chapter == name or chapter.split("_")[0] == name.zfill(2)]
    if len(matches) != 1:
        raise ValueError(f"Unknown chapter {name!r}. Chapters: {', '.join(CHAPTERS)}.")
    return matches[0]


def find_submissions(folder: Path, chapter: str) -> list[StudentFile]:
    """The notebooks to grade: `folder/*.ipynb`, or nbgrader's `folder/{student}/{chapter}/*.ipynb`
    (`folder` being `submitted/` or the course folder that holds it). In a flat folder the student
    is the file's name, less the `__{chapter}` that nbgrader's zip_collect appends
    (`alice__01_three_buckets.ipynb` is alice's). Each student's id is safe as a file name
    (see `_student_ids`)."""
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    nbgrader_layout = sorted(folder.glob(f"*/{chapter}/*.ipynb"))
    if nbgrader_layout:
        by_student: dict[str, list[Path]] = {}
        for path in nbgrader_layout:
            by_student.setdefault(path.parent.parent.name, []).append(path)
        # the chapter's notebook if the student kept its name, else their only notebook
        return _student_ids([(student, next((p for p in paths if p.stem == chapter), paths[0]))
                             for student, paths in sorted(by_student.items())])
    # `__01_three_buckets.ipynb` names no student: it keeps its whole name rather than none
    return _student_ids([(path.stem.removesuffix(f"__{chapter}") or path.stem, path)
                         for path in sorted(folder.glob("*.ipynb"))])


def _student_ids(found: list[tuple[str, Path]]) -> list[StudentFile]:
    """Each (name, notebook) under an id that names its results and feedback files: the name made
    safe (`_safe_name`), and shared with no other student, even where the file system ignores case
    (`Alice` and `alice`, or `alice.ipynb` and `alice__{chapter}.ipynb`). Ids that would share a file
    each get a digest of their notebook's path after a `~`, which `_safe_name` only writes before a
    digest of its own."""
    safe = [_safe_name(name) for name, _ in found]
    sharing = Counter(student.lower() for student in safe)
    submissions = []
    for (name, path), student in zip(found, safe, strict=True):
        if sharing[student.lower()] > 1:
            student = f"{student}~{_short_digest(os.fsencode(path))}"
        if student != name:
            print(f"warning: {path} is graded as student {student!r}: a safe file name, and no other's",
                  file=sys.stderr)
        submissions.append(StudentFile(student, path))
    return submissions


def _safe_name(name: str) -> str:
    """`name` as a file name with no path separator that is neither hidden, nor read as an option by
    a command, nor as a formula by a spreadsheet opening the gradebook (no leading `.`, `-` or `@`):
    letters, digits and `_-.@` as they are, any other byte as %XX (`%` too, so two names never give
    one). A name too long for a file name is cut, and a digest of the whole added after a `~`."""
    raw = os.fsencode(name)
    safe = "".join(chr(byte) if byte in _ID_BYTES and not (i == 0 and byte in b".-@") else f"%{byte:02X}"
                   for i, byte in enumerate(raw))
    return safe if len(safe) <= MAX_STUDENT_ID else f"{safe[:MAX_STUDENT_ID - 17]}~{_short_digest(raw)}"


def _short_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# --------------------------------------------------------------------------- one student

def read_notebook(path: Path, chapter: str) -> tuple[nbformat.NotebookNode | None, list[str]]:
    """The notebook, checked as data; None and the reason if it cannot be graded, else the
    notebook and any problems worth telling the student."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None, [f"The notebook is {path.stat().st_size / 2**20:.0f} MB, over the limit of "
                      f"{MAX_NOTEBOOK_BYTES / 2**20:.0f} MB: clear its outputs (Edit > Clear Outputs of All Cells)."]
    try:
        notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(notebook)
    except (NotJSONError, UnicodeDecodeError):
        return None, ["The file is not a valid notebook: it is not valid JSON (was it saved completely?)."]
    except Exception as error:  # noqa: BLE001 - nbformat's errors are many
        return None, [f"The file is not a valid Jupyter notebook: {str(error).splitlines()[0][:300]}"]
    try:
        found = chapter_of(notebook, path)
    except ValueError:
        found = chapter
    if found != chapter:
        return None, [f"This is a notebook of chapter {found}, not of chapter {chapter}: was the right file handed in?"]
    language = notebook.metadata.get("kernelspec", {}).get("language", "python")
    if language.lower() != "python":
        return None, [f"The notebook's kernel is {language!r}, not Python: the course's notebooks run in a Python kernel."]
    problems = []
    found_ids = Counter(cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells)
    graded_cells = [grade_id for exercise in load_chapter(chapter).exercises.values() for grade_id in exercise.grade_ids]
    for grade_id in graded_cells:
        if found_ids[grade_id] == 0:
            problems.append(f"The graded cell `{grade_id}` is missing from the notebook (deleted?); "
                            "its exercise is graded from whatever the rest of the notebook defines.")
        elif found_ids[grade_id] > 1:
            problems.append(f"The graded cell `{grade_id}` appears {found_ids[grade_id]} times (duplicated?); "
                            "the last definition run is the one graded.")
    return notebook, problems


def grade_student(submission: StudentFile, chapter_name: str, limits: Limits, containment: Containment,
                  zygote_address: str, hidden: tuple[Path, ...]) -> StudentGrade:
    started = time.monotonic()
    chapter = load_chapter(chapter_name)
    grade = StudentGrade(submission.student, chapter_name, 0.0, chapter.max_points, [],
                         sandbox=containment.name, containment=containment.describe())
    notebook, grade.problems = read_notebook(submission.path, chapter_name)
    if notebook is None:
        grade.results = [Result(name, Verdict.ERROR, 0, exercise.points, grade.problems[0], exercise.hint)
                         for name, exercise in chapter.exercises.items()]
        return grade
    learner = LearnerNotebook(zygote_address, cells_to_run(notebook), limits, containment, hidden=hidden,
                              uid=learner_uid(), references=course_references(chapter))

    def grade_exercise(name: str) -> Result:
        exercise = chapter.exercises[name]
        try:
            with learner.exercise(name) as obj:
                return chapter.missing(name) if obj is None else exercise.run(obj)
        except LearnerCodeFailed as failed:  # the notebook, or the exercise process, did not even start
            return Result(name, failed.verdict, 0, exercise.points, failed.message, exercise.hint)

    try:
        grade.results = chapter.grade_each(grade_exercise)  # a failure is blamed on a failing piece it uses
    finally:
        learner.stop()
    grade.score = sum(result.points for result in grade.results)
    grade.cell_errors = learner.cell_errors
    grade.events = learner.events
    grade.seconds = round(time.monotonic() - started, 2)
    return grade


def learner_uid() -> int | None:
    """As root, a user id of its own for each student's code, which owns no file on the
    machine; else None (the code runs as the grader's own, unprivileged, user)."""
    return SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UIDS) if os.geteuid() == 0 else None


def course_references(chapter: Chapter) -> dict[str, list[str]]:
    """For each exercise, what its graded object must not be, inherit from, wrap or call
    ("module:qualname", among what a notebook can import): the chapter's references, and the
    equivalents that this exercise's grader declares `forbidden`, with those of the pieces
    it `uses` (a learner's TransformerBlock may not call the course's Attention either). An
    equivalent forbidden to one exercise stays a tool for the others: chapter 06's learners
    enumerate the graph in `graph_edges` and loop over the course's `all_edges` elsewhere.
    (The references in `solutions` are not in the sandbox at all.)"""

    def visible(objects) -> list[str]:
        return [f"{obj.__module__}:{obj.__qualname__}" for obj in objects
                if obj.__module__.split(".")[0] in VISIBLE_PACKAGES]

    def pieces(name: str) -> list[str]:
        found = [name]
        for used in chapter.exercises[name].uses:
            found += [piece for piece in pieces(used) if piece not in found]
        return found

    everyone = [obj for exercise in chapter.exercises.values()
                for obj in getattr(exercise.reference, "__mro__", [exercise.reference])]
    return {name: list(dict.fromkeys(visible(everyone) + visible(
                obj for piece in pieces(name) for obj in chapter.exercises[piece].forbidden)))
            for name in chapter.exercises}


def failed_grade(submission: StudentFile, chapter_name: str, containment: Containment, why: str) -> StudentGrade:
    """Whatever went wrong while grading one student is that student's zero, with the reason."""
    chapter = load_chapter(chapter_name)
    message = f"The grader could not grade this notebook ({why}). Please tell your instructor."
    return StudentGrade(submission.student, chapter_name, 0.0, chapter.max_points,
                        [Result(name, Verdict.ERROR, 0, exercise.points, message, exercise.hint)
                         for name, exercise in chapter.exercises.items()],
                        sandbox=containment.name, containment=containment.describe())


# --------------------------------------------------------------------------- the class

def grading_code_digest() -> str:
    """The course's code, which a grade depends on: graders, references, models, this grader;
    every file of theirs, since a retrained checkpoint or a data file changes grades as code does.
    The packages are found where Python imports them from, a checkout or an installation."""
    files = sorted((f"{package}/{path.relative_to(folder).as_posix()}", path) for package in CODE_PACKAGES
                   for folder in package_dirs(package) for path in folder.rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")
    return _digest(part for name, path in files for part in (name.encode(), path.read_bytes()))


def fingerprint(path: Path, chapter: str, code_digest: str, limits: Limits, containment_name: str) -> str:
    """What a student's results depend on: their notebook, the chapter, the course's code (whose
    graders say what the graded cells are), the limits, and the sandbox."""
    return _digest([path.read_bytes(), chapter.encode(), code_digest.encode(),
                    json.dumps(asdict(limits), sort_keys=True).encode(), containment_name.encode()])


def _digest(parts: Iterable[bytes]) -> str:
    """A digest of the parts, each prefixed by its length so that no two lists of parts give one."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    """Write the file whole or not at all. The temporary file is made new (O_EXCL, mode 0600) under
    a random name, so a link planted beside `path` is never written through; os.replace then swaps
    the name itself, and would replace a link at `path`, not write to where it points."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:  # interrupted too: leave no temporary files behind
        os.unlink(temporary)
        raise


def grade_or_zero(submission: StudentFile, chapter: str, limits: Limits, containment: Containment,
                  zygote_address: str, hidden: tuple[Path, ...]) -> StudentGrade:
    """`grade_student`, or, if the grader itself fails, the student's zero with the reason."""
    try:
        return grade_student(submission, chapter, limits, containment, zygote_address, hidden)
    except Exception as error:  # noqa: BLE001 - one notebook never stops the class being graded
        print(f"mi-course grade: {submission.student} ({submission.path}): {type(error).__name__}: {error}",
              file=sys.stderr)
        return failed_grade(submission, chapter, containment, f"{type(error).__name__}: {str(error)[:300]}")


def _saved(results_dir: Path, student: str, key: str, chapter: str) -> StudentGrade | None:
    """The student's saved results, if they still hold: written for this student and chapter, from
    the same notebook, code, limits and sandbox (`key`, their fingerprint). Anything else found
    there (a link, a file that is not a StudentGrade as `StudentGrade.to_json` writes it) is ignored,
    and the student graded again."""
    try:
        # O_NONBLOCK: opening a FIFO planted there would otherwise wait forever
        descriptor = os.open(results_dir / f"{student}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(descriptor, encoding="utf-8") as file:
            data = json.load(file) if stat.S_ISREG(os.fstat(descriptor).st_mode) else None
        grade = StudentGrade.from_json(data)
    # ValueError: not UTF-8, not JSON, or not a saved grade; RecursionError: nested deep
    except (OSError, ValueError, RecursionError):
        return None
    return grade if (grade.fingerprint, grade.student, grade.chapter) == (key, student, chapter) else None


class GradingStopped(RuntimeError):
    """Grading stopped before the class was done, for a reason the instructor must fix (a worker that runs
    another version of the course, a cluster that went away): the grades so far are saved, and the next
    run resumes from them."""


class RemoteGrading(Protocol):
    """Machines that grade the students for `grade_class` instead of this one (`mi_course.cluster.DaskGrading`)."""

    #: The sandbox every one of them grades in: part of each student's fingerprint.
    containment: Containment

    def grade(self, students: list[StudentFile], chapter: str, limits: Limits) -> Iterator[StudentGrade]:
        """Each student's grade, as `grade_or_zero` made it there and checked here, as soon as it is done,
        in any order; `GradingStopped` if they cannot go on."""
        ...


def _grade_here(students: list[StudentFile], chapter: str, limits: Limits, containment: Containment,
                hidden: tuple[Path, ...], workers: int | None) -> Iterator[StudentGrade]:
    """Each student's grade, graded on this machine, `workers` at a time (default: one per core), each in a
    sandbox forked from one zygote, as soon as it is done."""
    with Zygote() as zygote, ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(students)),
                                                 mp_context=get_context("fork")) as pool:
        futures = [pool.submit(grade_or_zero, s, chapter, limits, containment, zygote.address, hidden) for s in students]
        for future in as_completed(futures):
            yield future.result()


def grade_class(submissions: Iterable[StudentFile], chapter: str, out: Path, *, limits: Limits = Limits(),
                workers: int | None = None, containment: Containment | None = None,
                progress: bool = True, remote: RemoteGrading | None = None) -> list[StudentGrade]:
    """Grade every submission (reusing saved results that still hold), then write the
    gradebook `out`, the LMS's CSV beside it, and each student's feedback and Gradescope results.
    The grades come back in the submissions' order, whatever order the students finish in. The
    progress bar counts, as it goes, the students who scored nothing or had errors (`_troubles`).
    With `remote`, the students are graded on its machines, in their sandbox (`containment`, if given,
    must be theirs), and every file is still written here, each student's results as they come."""
    from tqdm.auto import tqdm

    submissions = list(submissions)
    if remote is not None and containment not in (None, remote.containment):
        raise ValueError(f"the remote workers grade in {remote.containment.name!r}, not {containment.name!r}")
    containment = remote.containment if remote is not None else containment or detect_containment()
    results_dir, feedback_dir, gradescope_dir = _output_dirs(out)
    # Absent from the sandbox anyway (it shows only an allow-list), unless they lie inside it.
    hidden = (*{s.path.resolve().parent for s in submissions}, results_dir.resolve(), feedback_dir.resolve(),
              gradescope_dir.resolve(), out.resolve().parent)
    code_digest = grading_code_digest()
    keys = {s.student: fingerprint(s.path, chapter, code_digest, limits, containment.name) for s in submissions}
    grades = {s.student: saved for s in submissions if (saved := _saved(results_dir, s.student, keys[s.student], chapter))}
    to_grade = [s for s in submissions if s.student not in grades]
    if to_grade:
        graded = (remote.grade(to_grade, chapter, limits) if remote is not None
                  else _grade_here(to_grade, chapter, limits, containment, hidden, workers))
        # Students whose saved results were reused count from the start, and not in the rate that gives the ETA.
        with closing(graded), tqdm(total=len(submissions), initial=len(grades), desc=f"grading {chapter}",
                                   unit="student", disable=not progress) as bar:
            troubles = _troubles(grades.values())
            bar.set_postfix(troubles)
            for grade in graded:  # the bar moves as each student is done, in any order
                grade.fingerprint = keys[grade.student]  # saved at once: a run stopped here resumes from it
                _write_atomically(results_dir / f"{grade.student}.json", _json(grade.to_json()))
                grades[grade.student] = grade
                # Counted as each student is done, not recounted over the class: a MOOC has thousands.
                troubles = {kind: count + troubles[kind] for kind, count in _troubles([grade]).items()}
                bar.set_postfix(troubles, refresh=False)  # shown with the update
                bar.update()
    ordered = [grades[s.student] for s in submissions]
    for grade in ordered:
        _write_atomically(feedback_dir / f"{grade.student}.md", feedback(grade))
        _write_atomically(gradescope_dir / f"{grade.student}.json", _json(gradescope_results(grade)))
    write_gradebook(out, ordered, chapter)
    write_lms_csv(lms_csv_path(out), ordered, chapter)
    return ordered


def grade_for_gradescope(submission_dir: Path, results_file: Path, chapter: str, *, limits: Limits = Limits(),
                         containment: Containment | None = None) -> StudentGrade:
    """Gradescope's autograder: grade the notebook Gradescope put in `submission_dir` as `grade_class`
    grades a class of one (in a private folder, thrown away after), and write its grade to
    `results_file` in Gradescope's format. A submission with no notebook to grade scores zero, and
    its output says why."""
    _refuse_link(results_file)
    containment = containment or detect_containment()
    notebook, why_not = _handed_in(submission_dir, chapter)
    if notebook is None:
        grade = StudentGrade("submission", chapter, 0.0, load_chapter(chapter).max_points, [], problems=[why_not],
                             sandbox=containment.name, containment=containment.describe())
    else:
        with tempfile.TemporaryDirectory(prefix="mi-course-gradescope-") as work:  # mode 0700
            [grade] = grade_class([StudentFile("submission", notebook)], chapter, Path(work) / "grades.csv",
                                  limits=limits, workers=1, containment=containment, progress=False)
    results_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(results_file, _json(gradescope_results(grade)))
    return grade


def _handed_in(folder: Path, chapter: str) -> tuple[Path | None, str]:
    """The notebook to grade among `folder/*.ipynb`: the one named after the chapter, else the only
    one; else None, and why. A link is not a notebook handed in: the grader, root on Gradescope,
    would read what it points to, and might quote it back."""
    notebooks = [path for path in sorted(folder.glob("*.ipynb")) if path.is_file() and not path.is_symlink()]
    named = [path for path in notebooks if path.stem == chapter]
    if named or len(notebooks) == 1:
        return (named or notebooks)[0], ""
    found = ", ".join(path.name for path in notebooks) or "none"
    return None, f"Hand in one notebook, {chapter}.ipynb, to be graded (notebooks found: {found})."


def _troubles(grades: Iterable[StudentGrade]) -> dict[str, int]:
    """What the progress bar counts, worth a look before the rest of the class is done: the students
    who scored nothing, and those with an exercise that ended in an error (a crash, a timeout, a
    notebook that could not be read or graded)."""
    grades = list(grades)
    return {"errors": sum(any(result.verdict is Verdict.ERROR for result in grade.results) for grade in grades),
            "zero": sum(grade.score == 0 for grade in grades)}  # in the order tqdm shows a postfix: by name


class UnsafeOutputError(ValueError):
    """The grader, often run as root, will not write where another user could plant links or files."""


def _output_dirs(out: Path) -> tuple[Path, Path, Path]:
    """`<out>-results`, `<out>-feedback` and `<out>-gradescope`, made private to the instructor, after
    checking that no other user may swap in their own files or links there (or in the folder that
    holds `out`, where the LMS's CSV goes too)."""
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _refuse_writable_by_others(out.parent, out.parent.stat())
    _refuse_link(out)  # now rather than after grading the class
    folders = tuple(out.with_name(f"{out.stem}-{kind}") for kind in ("results", "feedback", "gradescope"))
    for folder in folders:
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # an earlier run's, or someone else's: checked below
            pass
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise UnsafeOutputError(f"{folder} is not a folder of yours (it is a link, a file, or another user's): "
                                    "move it away, or give the gradebook another name with --out.")
        _refuse_writable_by_others(folder, info)
        folder.chmod(0o700)  # the learners' users may not read other students' results
    return folders


def _refuse_writable_by_others(folder: Path, info: os.stat_result) -> None:
    if info.st_mode & 0o022:
        raise UnsafeOutputError(f"{folder} may be written by other users (mode {stat.filemode(info.st_mode)}), who "
                                "could put links to system files where the grader writes: grade into a folder only "
                                "you may write to (e.g. --out instructor/grades.csv), or `chmod go-w` it.")


def _refuse_link(out: Path) -> None:
    if out.is_symlink():
        raise UnsafeOutputError(f"The gradebook {out} is a link: give --out the file itself, or another name.")


def write_gradebook(out: Path, grades: list[StudentGrade], chapter: str) -> None:
    """The class's CSV: one row per student, one column per exercise, then the notes about each
    notebook and the sandbox it ran in. A gradebook already there is kept, renamed with the time it
    was last written."""
    _refuse_link(out)  # the gradebook is the link, or the file it points to? Refuse rather than guess
    exercises = list(load_chapter(chapter).exercises)
    rows = [["student", "score", "max_score", *exercises, "problems", "sandbox"]]
    for grade in grades:
        notes = [*grade.problems, *(f"cell {i}: {e}" for i, e in grade.cell_errors), *grade.events]
        rows.append([*_points_row(grade, exercises), " | ".join(notes)[:2000], grade.sandbox])
    if out.exists():  # not a link (refused above), in a folder no one else may write to (`_output_dirs`)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(out.lstat().st_mtime))
        out.replace(out.with_name(f"{out.stem}.{stamp}{out.suffix}"))
    _write_atomically(out, _csv(rows))


def lms_csv_path(out: Path) -> Path:
    """The LMS's CSV of gradebook `out`: beside it, in the folder `_output_dirs` checks."""
    return out.with_name(f"{out.stem}-lms.csv")


def write_lms_csv(path: Path, grades: list[StudentGrade], chapter: str) -> None:
    """The points alone, for a learning management system's gradebook import (Canvas, Moodle,
    Blackboard, ... each maps the columns on import). Columns, in this order:

    * `student_id`: the student's id, as in the gradebook and the names of their files;
    * `total`: the points they earned; `max`: the points the chapter has;
    * one column per exercise, named after it, in the chapter's order: the points earned there.

    Numbers only, no notes (those are in the gradebook): every cell imports as it is."""
    _refuse_link(path)
    exercises = list(load_chapter(chapter).exercises)
    _write_atomically(path, _csv([["student_id", "total", "max", *exercises],
                                  *(_points_row(grade, exercises) for grade in grades)]))


def _points_row(grade: StudentGrade, exercises: list[str]) -> list[str]:
    """The student, their score, the chapter's points, and their points in each exercise: what both
    CSVs say of a student's points, said once."""
    points = {result.exercise: result.points for result in grade.results}
    return [grade.student, f"{grade.score:g}", f"{grade.max_score:g}", *(f"{points.get(name, 0):g}" for name in exercises)]


def _csv(rows: list[list[str]]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def _json(data: object) -> str:
    """JSON as `json.dumps` writes it, whatever the text inside: nothing of a student's can change
    its structure. No NaN or infinity, which are not JSON and which strict readers refuse."""
    return json.dumps(data, indent=1, allow_nan=False)
