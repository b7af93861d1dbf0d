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
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import nbformat
from nbformat.reader import NotJSONError

from graders.core import CHAPTERS, LearnerCodeFailed, Result, Verdict, load_chapter
from graders.submission import cells_to_run, chapter_of
from mi_course.remote import Sandbox, Zygote
from mi_course.sandbox import Containment, Limits, detect_containment

__all__ = ["StudentFile", "StudentGrade", "find_submissions", "grade_class", "resolve_chapter"]

REPO_ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = REPO_ROOT / "course"
#: Folders the learner's code must not read: the references, the hidden tests, the instructor's files.
SECRET_DIRS = (REPO_ROOT / "graders", REPO_ROOT / "solutions", REPO_ROOT / "instructor")
MAX_NOTEBOOK_BYTES = 20 * 2**20
#: Each sandbox's learner runs as its own user id, which owns no file on the machine.
SANDBOX_UID_BASE = 0x70000000


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
    """The notebooks to grade: `folder/*.ipynb` (student = file name), or nbgrader's
    `folder/{student}/{chapter}/*.ipynb` (`folder` being `submitted/` or the course folder
    that holds it)."""
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    nbgrader_layout = sorted(folder.glob(f"*/{chapter}/*.ipynb"))
    if nbgrader_layout:
        by_student: dict[str, list[Path]] = {}
        for path in nbgrader_layout:
            by_student.setdefault(path.parent.parent.name, []).append(path)
        # the chapter's notebook if the student kept its name, else their only notebook
        return [StudentFile(student, next((p for p in paths if p.stem == chapter), paths[0]))
                for student, paths in sorted(by_student.items())]
    return [StudentFile(path.stem, path) for path in sorted(folder.glob("*.ipynb"))]


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
                  zygote_address: str, hidden: list[Path]) -> StudentGrade:
    started = time.monotonic()
    chapter = load_chapter(chapter_name)
    grade = StudentGrade(submission.student, chapter_name, 0.0, chapter.max_points, [],
                         sandbox=containment.name, containment=containment.describe())
    notebook, grade.problems = read_notebook(submission.path, chapter_name)
    if notebook is None:
        grade.results = [asdict_result(Result(name, Verdict.ERROR, 0, exercise.points, grade.problems[0], exercise.hint))
                         for name, exercise in chapter.exercises.items()]
        return grade
    uid = SANDBOX_UID_BASE + os.getpid() if containment.isolated else None
    sandbox = Sandbox(zygote_address, cells_to_run(notebook), limits, containment, hidden=hidden, uid=uid)
    results = []
    for name, exercise in chapter.exercises.items():
        try:
            with sandbox.exercise(name) as obj:
                result = chapter.missing(name) if obj is None else exercise.run(obj)
        except LearnerCodeFailed as failed:  # the notebook, or the exercise process, did not even start
            result = Result(name, failed.verdict, 0, exercise.points, failed.message, exercise.hint)
        results.append(result)
    sandbox.stop()
    grade.results = [asdict_result(result) for result in results]
    grade.score = sum(result.points for result in results)
    grade.cell_errors = [list(error) for error in sandbox.cell_errors]
    grade.events = sandbox.events
    grade.seconds = round(time.monotonic() - started, 2)
    return grade


def asdict_result(result: Result) -> dict:
    return {**asdict(result), "verdict": result.verdict.value}


# --------------------------------------------------------------------------- the class

def grading_code_digest() -> str:
    """The course's code, which a grade depends on: graders, references, models, this grader."""
    digest = hashlib.sha256()
    for package in ("graders", "solutions", "toy_models", "mi_course"):
        for source in sorted((REPO_ROOT / package).rglob("*.py")):
            digest.update(source.read_bytes())
    return digest.hexdigest()


def fingerprint(path: Path, code_digest: str, limits: Limits) -> str:
    """What a student's results depend on: their notebook, the course's code, the limits."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(code_digest.encode())
    digest.update(json.dumps(asdict(limits), sort_keys=True).encode())
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _grade_and_save(submission: StudentFile, chapter: str, limits: Limits, containment: Containment,
                    zygote_address: str, hidden: list[Path], results_dir: Path, key: str) -> StudentGrade:
    grade = grade_student(submission, chapter, limits, containment, zygote_address, hidden)
    grade.fingerprint = key
    _write_atomically(results_dir / f"{submission.student}.json", json.dumps(asdict(grade), indent=1))
    return grade


def _saved(results_dir: Path, student: str, key: str) -> StudentGrade | None:
    try:
        saved = StudentGrade(**json.loads((results_dir / f"{student}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return saved if saved.fingerprint == key else None


def grade_class(submissions: Iterable[StudentFile], chapter: str, out: Path, *, limits: Limits = Limits(),
                workers: int | None = None, containment: Containment | None = None,
                progress: bool = True) -> list[StudentGrade]:
    """Grade every submission (reusing saved results that still hold), then write the
    gradebook `out` and one feedback file per student."""
    from tqdm.auto import tqdm

    submissions = list(submissions)
    containment = containment or detect_containment()
    results_dir, feedback_dir = _output_dirs(out)
    hidden = [*(d for d in SECRET_DIRS if d.is_dir()), *{s.path.resolve().parent for s in submissions},
              results_dir, feedback_dir]
    code_digest = grading_code_digest()
    keys = {s.student: fingerprint(s.path, code_digest, limits) for s in submissions}
    grades = {s.student: saved for s in submissions if (saved := _saved(results_dir, s.student, keys[s.student]))}
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


def _output_dirs(out: Path) -> tuple[Path, Path]:
    results_dir, feedback_dir = out.with_name(f"{out.stem}-results"), out.with_name(f"{out.stem}-feedback")
    for folder in (results_dir, feedback_dir):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)  # the learners' users may not read other students' results
    return results_dir, feedback_dir


def write_gradebook(out: Path, grades: list[StudentGrade], chapter: str) -> None:
    """The class's CSV: one row per student, one column per exercise. A gradebook already
    there is kept, renamed with the time it was last written."""
    exercises = list(load_chapter(chapter).exercises)
    rows = [["student", "score", "max_score", *exercises, "problems", "sandbox"]]
    for grade in grades:
        points = {result["exercise"]: result["points"] for result in grade.results}
        notes = [*grade.problems, *(f"cell {i}: {e}" for i, e in grade.cell_errors), *grade.events]
        rows.append([grade.student, f"{grade.score:g}", f"{grade.max_score:g}",
                     *(f"{points.get(name, 0):g}" for name in exercises), " | ".join(notes)[:2000], grade.sandbox])
    if out.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(out.stat().st_mtime))
        out.replace(out.with_name(f"{out.stem}.{stamp}{out.suffix}"))
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    _write_atomically(out, text.getvalue())


def feedback(grade: StudentGrade) -> str:
    """A student's feedback, as Markdown."""
    lines = [f"# Feedback: {grade.chapter}", "", f"**{grade.student}**: {grade.score:g} / {grade.max_score:g} points", ""]
    if grade.problems:
        lines += ["## About the notebook", "", *(f"- {problem}" for problem in grade.problems), ""]
    if grade.cell_errors:
        lines += ["## Cells that raised an error when the notebook was run", "",
                  *(f"- cell {index}: `{error}`" for index, error in grade.cell_errors), ""]
    lines += ["## Exercises", "", "| exercise | points | verdict |", "|---|---|---|"]
    lines += [f"| `{r['exercise']}` | {r['points']:g} / {r['max_points']:g} | {r['verdict']} |" for r in grade.results]
    lines.append("")
    for result in grade.results:
        if result["verdict"] != Verdict.PASS.value:
            lines += [f"### `{result['exercise']}`: {result['verdict']}", "", "```", result["message"], "```", ""]
            if result["hint"]:
                lines += [f"Hint: {result['hint']}", ""]
    if grade.events:
        lines += ["## Stopped by the sandbox", "", *(f"- {event}" for event in grade.events), ""]
    lines += [f"_Graded in a sandbox ({grade.containment})._", ""]
    return "\n".join(lines)
