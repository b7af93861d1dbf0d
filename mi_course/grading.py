"""`mi-course grade`: grade a class's notebooks in sandboxes, in parallel, resumably.

    mi-course grade SUBMISSIONS --chapter 00 --out grades.csv

SUBMISSIONS is a folder of notebooks (`alice.ipynb`, ...), or nbgrader's
`submitted/{student}/{chapter}/` layout. For each student the grader:

1. reads the notebook as data and checks it (valid JSON and notebook format, this
   chapter, a Python kernel, graded cells present once each), without running it;
2. runs its code in a sandbox (`mi_course.remote`, `mi_course.sandbox`), and grades each
   exercise with the chapter's graders *in the grader's process*, calling the learner's
   objects through proxies: nothing the learner's code prints, writes or returns is taken
   as a verdict, only as an answer to compare with the reference;
3. writes the student's results atomically to `<out>-results/<student>.json`, and a
   feedback file `<out>-feedback/<student>.md`.

Then the class's gradebook (`--out`, CSV) is written, keeping any previous one beside
it. A run that is interrupted resumes where it stopped: a student whose notebook and
graders have not changed since their results were written is not graded again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import stat
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import nbformat
from nbformat.reader import NotJSONError

from graders.core import CHAPTERS, Chapter, LearnerCodeFailed, Result, Verdict, load_chapter
from graders.submission import cells_to_run, chapter_of
from mi_course.remote import Sandbox, Zygote
from mi_course.sandbox import VISIBLE_PACKAGES, Containment, Limits, detect_containment

__all__ = ["StudentFile", "StudentGrade", "find_submissions", "grade_class", "resolve_chapter"]

REPO_ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = REPO_ROOT / "course"
MAX_NOTEBOOK_BYTES = 20 * 2**20
#: As root, each student's code runs as a user id of its own, drawn from this range.
SANDBOX_UID_BASE, SANDBOX_UIDS = 0x70000000, 2**24
#: What a grade depends on besides the notebook: every file of these (code, checkpoints, data).
CODE_PACKAGES = ("graders", "solutions", "toy_models", "mi_course")
#: A student id names their results and feedback files: it stays well under the 255 bytes a file name may have.
MAX_STUDENT_ID = 100
#: The bytes a student id keeps as they are; any other, and a leading `.`, `-` or `@`, becomes %XX.
_ID_BYTES = frozenset((string.ascii_letters + string.digits + "_-.@").encode())
#: The learner writes the messages of the feedback: each is cut to this many characters, the file to this many bytes.
MAX_MESSAGE_CHARS = 4000
MAX_FEEDBACK_BYTES = 64 * 2**10


@dataclass(frozen=True)
class StudentFile:
    student: str
    path: Path


@dataclass
class StudentGrade:
    student: str
    chapter: str
    score: float
    max_score: float
    results: list[dict]  # Result fields, verdict as its value
    problems: list[str] = field(default_factory=list)  # about the notebook itself
    cell_errors: list[list] = field(default_factory=list)  # [cell index, error]
    events: list[str] = field(default_factory=list)  # containment events
    sandbox: str = ""  # "isolated" or "limits only"
    containment: str = ""  # what that meant, in words
    fingerprint: str = ""  # notebook + graders + limits: results are reused while it holds
    seconds: float = 0.0


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
    for grade_id in _released_grade_ids(chapter):
        if found_ids[grade_id] == 0:
            problems.append(f"The graded cell `{grade_id}` is missing from the notebook (deleted?); "
                            "its exercise is graded from whatever the rest of the notebook defines.")
        elif found_ids[grade_id] > 1:
            problems.append(f"The graded cell `{grade_id}` appears {found_ids[grade_id]} times (duplicated?); "
                            "the last definition run is the one graded.")
    return notebook, problems


def _released_grade_ids(chapter: str) -> list[str]:
    released = nbformat.read(COURSE_DIR / f"{chapter}.ipynb", as_version=4)
    return [cell.metadata["nbgrader"]["grade_id"] for cell in released.cells
            if cell.metadata.get("nbgrader", {}).get("grade_id")]


def grade_student(submission: StudentFile, chapter_name: str, limits: Limits, containment: Containment,
                  zygote_address: str, hidden: tuple[Path, ...]) -> StudentGrade:
    started = time.monotonic()
    chapter = load_chapter(chapter_name)
    grade = StudentGrade(submission.student, chapter_name, 0.0, chapter.max_points, [],
                         sandbox=containment.name, containment=containment.describe())
    notebook, grade.problems = read_notebook(submission.path, chapter_name)
    if notebook is None:
        grade.results = [asdict_result(Result(name, Verdict.ERROR, 0, exercise.points, grade.problems[0], exercise.hint))
                         for name, exercise in chapter.exercises.items()]
        return grade
    sandbox = Sandbox(zygote_address, cells_to_run(notebook), limits, containment, hidden=hidden,
                      uid=learner_uid(), references=course_references(chapter))
    results = []
    try:
        for name, exercise in chapter.exercises.items():
            try:
                with sandbox.exercise(name) as obj:
                    result = chapter.missing(name) if obj is None else exercise.run(obj)
            except LearnerCodeFailed as failed:  # the notebook, or the exercise process, did not even start
                result = Result(name, failed.verdict, 0, exercise.points, failed.message, exercise.hint)
            results.append(result)
    finally:
        sandbox.stop()
    grade.results = [asdict_result(result) for result in results]
    grade.score = sum(result.points for result in results)
    grade.cell_errors = [list(error) for error in sandbox.cell_errors]
    grade.events = sandbox.events
    grade.seconds = round(time.monotonic() - started, 2)
    return grade


def learner_uid() -> int | None:
    """As root, a user id of its own for each student's code, which owns no file on the
    machine; else None (the code runs as the grader's own, unprivileged, user)."""
    return SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UIDS) if os.geteuid() == 0 else None


def course_references(chapter: Chapter) -> list[str]:
    """The chapter's references that a notebook can import ("module:qualname"): what a
    graded object must not be, inherit from, wrap or call. (The others, in `solutions`,
    are not in the sandbox at all.)"""
    found = []
    for exercise in chapter.exercises.values():
        for obj in getattr(exercise.reference, "__mro__", [exercise.reference]):
            name = f"{obj.__module__}:{obj.__qualname__}"
            if obj.__module__.split(".")[0] in VISIBLE_PACKAGES and name not in found:
                found.append(name)
    return found


def _failed_grade(submission: StudentFile, chapter_name: str, containment: Containment, error: BaseException) -> StudentGrade:
    """Whatever went wrong while grading one student is that student's zero, with the reason."""
    chapter = load_chapter(chapter_name)
    message = (f"The grader could not grade this notebook ({type(error).__name__}: {str(error)[:300]}). "
               "Please tell your instructor.")
    return StudentGrade(submission.student, chapter_name, 0.0, chapter.max_points,
                        [asdict_result(Result(name, Verdict.ERROR, 0, exercise.points, message, exercise.hint))
                         for name, exercise in chapter.exercises.items()],
                        sandbox=containment.name, containment=containment.describe())


def asdict_result(result: Result) -> dict:
    return {**asdict(result), "verdict": result.verdict.value}


# --------------------------------------------------------------------------- the class

def grading_code_digest() -> str:
    """The course's code, which a grade depends on: graders, references, models, this grader;
    every file of theirs, since a retrained checkpoint or a data file changes grades as code does."""
    files = sorted(path.relative_to(REPO_ROOT).as_posix() for package in CODE_PACKAGES
                   for path in (REPO_ROOT / package).rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")
    return _digest(part for name in files for part in (name.encode(), (REPO_ROOT / name).read_bytes()))


def fingerprint(path: Path, chapter: str, code_digest: str, limits: Limits, containment_name: str) -> str:
    """What a student's results depend on: their notebook, the chapter and its released notebook
    (which says what the graded cells are), the course's code, the limits, and the sandbox."""
    released = COURSE_DIR / f"{chapter}.ipynb"
    return _digest([path.read_bytes(), chapter.encode(), released.read_bytes(), code_digest.encode(),
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


def _grade_and_save(submission: StudentFile, chapter: str, limits: Limits, containment: Containment,
                    zygote_address: str, hidden: tuple[Path, ...], results_dir: Path, key: str) -> StudentGrade:
    try:
        grade = grade_student(submission, chapter, limits, containment, zygote_address, hidden)
    except Exception as error:  # noqa: BLE001 - one notebook never stops the class being graded
        print(f"mi-course grade: {submission.student} ({submission.path}): {type(error).__name__}: {error}",
              file=sys.stderr)
        grade = _failed_grade(submission, chapter, containment, error)
    grade.fingerprint = key
    _write_atomically(results_dir / f"{submission.student}.json", json.dumps(asdict(grade), indent=1))
    return grade


def _saved(results_dir: Path, student: str, key: str, chapter: str) -> StudentGrade | None:
    """The student's saved results, if they still hold: written for this student and chapter, from
    the same notebook, code, limits and sandbox (`key`, their fingerprint). Anything else found
    there (a link, a file that is not a StudentGrade as `_grade_and_save` writes it) is ignored, and
    the student graded again."""
    try:
        # O_NONBLOCK: opening a FIFO planted there would otherwise wait forever
        descriptor = os.open(results_dir / f"{student}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(descriptor, encoding="utf-8") as file:
            data = json.load(file) if stat.S_ISREG(os.fstat(descriptor).st_mode) else None
    except (OSError, ValueError, RecursionError):  # ValueError: not UTF-8, or not JSON; RecursionError: nested deep
        return None
    if not _is_saved_grade(data) or (data["fingerprint"], data["student"], data["chapter"]) != (key, student, chapter):
        return None
    return StudentGrade(**data)


_NUMBER = (int, float)
#: Each field of a saved StudentGrade, with its type as JSON gives it back.
_GRADE_FIELDS = {"student": str, "chapter": str, "score": _NUMBER, "max_score": _NUMBER, "results": list,
                 "problems": list, "cell_errors": list, "events": list, "sandbox": str, "containment": str,
                 "fingerprint": str, "seconds": _NUMBER}
_RESULT_FIELDS = {"exercise": str, "verdict": str, "points": _NUMBER, "max_points": _NUMBER, "message": str,
                  "hint": str}


def _is_saved_grade(data: object) -> bool:
    """Whether `data`, read from a results file, is a StudentGrade as `_grade_and_save` writes it:
    what `feedback` and `write_gradebook` then read cannot fail on a wrong type."""
    return (_has_fields(data, _GRADE_FIELDS)
            and all(_has_fields(result, _RESULT_FIELDS) and result["verdict"] in {v.value for v in Verdict}
                    for result in data["results"])
            and all(isinstance(text, str) for text in [*data["problems"], *data["events"]])
            and all(isinstance(error, list) and len(error) == 2 and type(error[0]) is int and isinstance(error[1], str)
                    for error in data["cell_errors"]))


def _has_fields(data: object, fields: dict[str, type | tuple[type, ...]]) -> bool:
    return (isinstance(data, dict) and data.keys() == fields.keys()
            and all(isinstance(data[name], kind) for name, kind in fields.items()))


def grade_class(submissions: Iterable[StudentFile], chapter: str, out: Path, *, limits: Limits = Limits(),
                workers: int | None = None, containment: Containment | None = None,
                progress: bool = True) -> list[StudentGrade]:
    """Grade every submission (reusing saved results that still hold), then write the
    gradebook `out` and one feedback file per student."""
    from tqdm.auto import tqdm

    submissions = list(submissions)
    containment = containment or detect_containment()
    results_dir, feedback_dir = _output_dirs(out)
    # Absent from the sandbox anyway (it shows only an allow-list), unless they lie inside it.
    hidden = (*{s.path.resolve().parent for s in submissions}, results_dir.resolve(), feedback_dir.resolve(),
              out.resolve().parent)
    code_digest = grading_code_digest()
    keys = {s.student: fingerprint(s.path, chapter, code_digest, limits, containment.name) for s in submissions}
    grades = {s.student: saved for s in submissions if (saved := _saved(results_dir, s.student, keys[s.student], chapter))}
    to_grade = [s for s in submissions if s.student not in grades]
    if to_grade:
        with Zygote() as zygote, ProcessPoolExecutor(
            max_workers=min(workers or os.cpu_count() or 1, len(to_grade)), mp_context=get_context("fork"),
        ) as pool:
            futures = {pool.submit(_grade_and_save, s, chapter, limits, containment, zygote.address, hidden,
                                   results_dir, keys[s.student]): s for s in to_grade}
            for future in tqdm(futures, desc=f"grading {chapter}", unit="student", disable=not progress):
                grades[futures[future].student] = future.result()
    ordered = [grades[s.student] for s in submissions]
    for grade in ordered:
        _write_atomically(feedback_dir / f"{grade.student}.md", feedback(grade))
    write_gradebook(out, ordered, chapter)
    return ordered


class UnsafeOutputError(ValueError):
    """The grader, often run as root, will not write where another user could plant links or files."""


def _output_dirs(out: Path) -> tuple[Path, Path]:
    """`<out>-results` and `<out>-feedback`, made private to the instructor, after checking that no
    other user may swap in their own files or links there (or in the folder that holds `out`)."""
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _refuse_writable_by_others(out.parent, out.parent.stat())
    _refuse_link(out)  # now rather than after grading the class
    results_dir, feedback_dir = out.with_name(f"{out.stem}-results"), out.with_name(f"{out.stem}-feedback")
    for folder in (results_dir, feedback_dir):
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
    return results_dir, feedback_dir


def _refuse_writable_by_others(folder: Path, info: os.stat_result) -> None:
    if info.st_mode & 0o022:
        raise UnsafeOutputError(f"{folder} may be written by other users (mode {stat.filemode(info.st_mode)}), who "
                                "could put links to system files where the grader writes: grade into a folder only "
                                "you may write to (e.g. --out instructor/grades.csv), or `chmod go-w` it.")


def _refuse_link(out: Path) -> None:
    if out.is_symlink():
        raise UnsafeOutputError(f"The gradebook {out} is a link: give --out the file itself, or another name.")


def write_gradebook(out: Path, grades: list[StudentGrade], chapter: str) -> None:
    """The class's CSV: one row per student, one column per exercise. A gradebook already
    there is kept, renamed with the time it was last written."""
    _refuse_link(out)  # the gradebook is the link, or the file it points to? Refuse rather than guess
    exercises = list(load_chapter(chapter).exercises)
    rows = [["student", "score", "max_score", *exercises, "problems", "sandbox"]]
    for grade in grades:
        points = {result["exercise"]: result["points"] for result in grade.results}
        notes = [*grade.problems, *(f"cell {i}: {e}" for i, e in grade.cell_errors), *grade.events]
        rows.append([grade.student, f"{grade.score:g}", f"{grade.max_score:g}",
                     *(f"{points.get(name, 0):g}" for name in exercises), " | ".join(notes)[:2000], grade.sandbox])
    if out.exists():  # not a link (refused above), in a folder no one else may write to (`_output_dirs`)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(out.lstat().st_mtime))
        out.replace(out.with_name(f"{out.stem}.{stamp}{out.suffix}"))
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    _write_atomically(out, text.getvalue())


def feedback(grade: StudentGrade) -> str:
    """A student's feedback, as Markdown. Much of its text comes from the learner's code (error
    messages, names), so every text is escaped (`_escape_inline`), fenced (`_fenced`) or a code
    span (`_code`): none can write Markdown of its own, such as a points line, a table row or a
    heading."""
    text = _escape_inline
    blocks = [f"# Feedback: {text(grade.chapter)}",
              f"**{text(grade.student)}**: {grade.score:g} / {grade.max_score:g} points"]
    # one block per item: a notebook of many failing cells makes a long list, which the cut may shorten
    if grade.problems:
        blocks += ["## About the notebook", *(f"- {text(problem)}" for problem in grade.problems)]
    if grade.cell_errors:
        blocks += ["## Cells that raised an error when the notebook was run",
                   *(f"- cell {index}: {text(error)}" for index, error in grade.cell_errors)]
    blocks += ["## Exercises", "\n".join([
        "| exercise | points | verdict |", "|---|---|---|",
        *(f"| {_code(r['exercise'])} | {r['points']:g} / {r['max_points']:g} | {text(r['verdict'])} |"
          for r in grade.results)])]
    for result in grade.results:
        if result["verdict"] != Verdict.PASS.value:
            blocks.append(f"### {_code(result['exercise'])}: {text(result['verdict'])}")
            blocks += [_fenced(result["message"])] if result["message"] else []
            blocks += [f"Hint: {text(result['hint'])}"] if result["hint"] else []
    if grade.events:
        blocks += ["## Stopped by the sandbox", *(f"- {text(event)}" for event in grade.events)]
    blocks.append(f"_Graded in a sandbox ({text(grade.containment)})._")
    return _within(blocks, MAX_FEEDBACK_BYTES)


#: The characters that can start Markdown (emphasis, code, links, HTML, entities, headings, lists, table
#: cells, strikethrough), each of which a backslash makes literal (CommonMark).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&])")


def _escape_inline(text: str) -> str:
    """`text` as Markdown that shows as it is and writes no markup: on one line (a line of its own
    could start a heading, a list or a table row), with every character of Markdown's escaped."""
    return _MARKDOWN.sub(r"\\\1", " ".join(_cut(text).split()))


def _code(name: str) -> str:
    """`name` as a code span, shown as it is: on one line, between runs of backticks longer than any
    in it, and with `|` escaped, which a table cell needs even in a code span (GFM)."""
    name = " ".join(_cut(name).split()).replace("|", "\\|")
    ticks = "`" * (1 + max(map(len, re.findall("`+", name)), default=0))
    # a space pads a name that starts or ends with a backtick, which would join the fence; one is taken off each side
    return f"{ticks} {name} {ticks}" if name.startswith("`") or name.endswith("`") else f"{ticks}{name}{ticks}"


def _fenced(text: str) -> str:
    """`text` as a code block, shown as it is: only a run of at least as many backticks as its
    fence could close it (CommonMark), and the fence is longer than any run in the text."""
    text = _cut(text)
    fence = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]} [... cut: {len(text) - MAX_MESSAGE_CHARS} more characters]"


def _within(blocks: list[str], limit: int) -> str:
    """The blocks as one Markdown text of at most `limit` bytes: those that fit, then a note if any
    did not. Only whole blocks are kept, so the cut never leaves a code fence open."""
    note = f"_The rest of this feedback was cut: it was over {limit // 2**10} kB._"
    size = len(note.encode()) + 1  # room for the note (and the last newline), whether it is needed or not
    for kept, block in enumerate(blocks):
        size += len(block.encode()) + 2
        if size > limit:
            return "\n\n".join([*blocks[:kept], note]) + "\n"
    return "\n\n".join(blocks) + "\n"
