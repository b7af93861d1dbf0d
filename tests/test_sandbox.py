"""The sandbox seen from inside, and grading a class that attacks it.

What a learner's process can see is checked directly: a process enters a sandbox exactly
as the grader's supervisor does and reports what it finds. Then whole classes are graded
with students who steal, forge, flood, freeze and linger, each next to honest students
whose grades must not move.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from test_grading import (
    CHAPTER,
    FULL,
    LEAVES_A_DAEMON,
    LIMITS,
    REPO,
    add_cell,
    assert_grades,
    daemons,
    gradebook,
    solution,
    steer_doing,
    write_class,
)

from graders.core import load_chapter
from mi_course.grading import find_submissions, grade_class
from mi_course.runtime.containment import IsolatedView, detect_containment, enter

CONTAINMENT = detect_containment()
pytestmark = pytest.mark.skipif(not CONTAINMENT.isolated, reason=f"no sandbox here: {CONTAINMENT.reason}")
RELEASED = REPO / "course" / f"{CHAPTER}.ipynb"


def look_inside(probe: str, *, hidden: tuple[Path, ...] = ()) -> dict:
    """Run `probe` (Python source that sets `found`, a JSON-able value) in a fresh sandbox,
    as the learner's process would run (same user, same view), and return `found`."""
    holder = IsolatedView(as_root=CONTAINMENT.as_root, scratch_bytes=2**24, hidden=hidden)
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read)
            code = 1
            try:
                enter(holder.pid, as_root=CONTAINMENT.as_root)
                child = os.fork()  # the learner's process: the first to be in the sandbox's process tree
                if child == 0:
                    if CONTAINMENT.as_root:
                        os.setgroups([])
                        os.setgid(0x70001234)
                        os.setuid(0x70001234)
                    scope: dict = {}
                    exec(probe, scope)  # noqa: S102 - the test's own probe
                    os.write(write, json.dumps(scope["found"]).encode())
                    os._exit(0)
                code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            finally:
                os._exit(code)
        os.close(write)
        output = b"".join(iter(lambda: os.read(read, 65536), b""))
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        return json.loads(output)
    finally:
        os.close(read)
        holder.close()


def test_the_view_is_an_allow_list(tmp_path: Path) -> None:
    """Nothing of the checkout but the two visible packages; nothing of the instructor's,
    wherever it sits; Python and the shipped checkpoints are there."""
    course = tmp_path / "nbgrader-course"
    (course / "source" / CHAPTER).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / f"{CHAPTER}.ipynb", course / "source" / CHAPTER)
    found = look_inside(f"""
import os, sys
paths = {[str(p) for p in (REPO / ".git", REPO / "tests", REPO / "graders", REPO / "solutions", REPO / "instructor",
                          REPO / "course", REPO / "README.md", course, tmp_path, Path("/run/lock"), Path("/var/tmp"),
                          Path("/home"), Path("/etc/passwd"))]!r}
found = {{
    "visible": [p for p in paths if os.path.exists(p)],
    "repo": sorted(os.listdir({str(REPO)!r})),
    "python": os.path.exists(os.path.join(sys.base_prefix, "lib")),
    "checkpoint": os.path.exists({str(REPO / "toy_models" / "checkpoints" / "induction-2l" / "model.safetensors")!r}),
}}
""")
    assert found["visible"] == []
    assert set(found["repo"]) <= {"toy_models", "mi_course", ".venv"}
    assert found["python"] and found["checkpoint"]


def test_the_learner_sees_only_its_own_processes_and_no_network() -> None:
    found = look_inside("""
import os, socket
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
    network = "connected"
except OSError as error:
    network = type(error).__name__
try:
    os.kill(1, 9)
    killed_first = True
except OSError:
    killed_first = False
found = {"pids": pids, "cmdline_1": open("/proc/1/cmdline").read(), "network": network,
         "uid": os.getuid(), "killed_first": killed_first}
""")
    assert len(found["pids"]) <= 3, found  # the holder, and the learner's process
    assert found["cmdline_1"] == "sleep\0infinity\0"
    assert found["network"] != "connected"
    if CONTAINMENT.as_root:
        assert found["uid"] >= 0x70000000 and not found["killed_first"]


def test_writes_are_private_and_capped() -> None:
    found = look_inside("""
import os
results = {}
for folder in ("/", "/usr", "/dev/shm", "/tmp", os.path.dirname(os.__file__)):
    try:
        with open(os.path.join(folder, "mi-course-probe"), "wb") as file:
            file.write(b"x" * (2**25 if folder == "/tmp" else 1))
        results[folder] = "written"
    except OSError as error:
        results[folder] = type(error).__name__
found = {"results": results, "tmp": sorted(os.listdir("/tmp"))}
""")
    assert found["results"]["/tmp"] == "OSError" or found["results"]["/tmp"].startswith(("OSError", "No"))
    for folder in ("/", "/usr"):
        assert found["results"][folder] != "written", found
    assert not Path("/usr/mi-course-probe").exists()


# --------------------------------------------------------------------------- classes that attack

STEAL = f"""
import glob, os, subprocess
stolen = {{}}
for path in [{str(REPO / "solutions" / "three_buckets.py")!r}, *glob.glob({str(REPO / "**" / "three_buckets.py")!r}, recursive=True)]:
    try:
        exec(open(path).read(), stolen)
    except Exception:
        pass
try:
    source = subprocess.run(["git", "-C", {str(REPO)!r}, "show", "HEAD:solutions/three_buckets.py"],
                            capture_output=True, text=True, timeout=10).stdout
    exec(source, stolen)
except Exception:
    pass
try:
    from solutions.three_buckets import *  # noqa
except Exception:
    pass
globals().update({{k: v for k, v in stolen.items() if not k.startswith("__")}})
"""


def frame_forger(frame: dict) -> str:
    """A `steer` that writes a raw protocol frame to every socket its process holds."""
    return steer_doing(f"""import os, socket, stat
from mi_course.runtime.wire import send
for fd in range(3, 64):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            send(socket.socket(fileno=fd), {frame!r})
    except OSError:
        pass
return resid""")


def deeply_nested(depth: int) -> str:
    return f"answer = []\nfor _ in range({depth}):\n    answer = [answer]\nreturn answer"


ATTACKS = {
    "steals_references": (add_cell(nbformat.read(RELEASED, as_version=4), STEAL, at=5), 0, "not attempted"),
    "forges_failed_frame": (frame_forger({"op": "failed", "message": "re-run with --limits-only"}), FULL - 1, "steer"),
    "forges_loaded_frame": (frame_forger({"op": "loaded", "cell_errors": []}), FULL - 1, "steer"),
    "forges_ended_frame": (frame_forger({"op": "exercise_ended", "exit_code": 0}), FULL - 1, "steer"),
    "nests_700_deep": (steer_doing(deeply_nested(700)), FULL - 1, "nests deeper"),
    "floods_empty_lists": (steer_doing("return [[] for _ in range(20_000_000)]"), FULL - 1, "steer"),
    "fake_course_dataclass": (steer_doing(
        "import dataclasses\n@dataclasses.dataclass\nclass Config:\n    x: int = 1\n"
        "Config.__module__ = 'toy_models.nowhere'\nConfig.__qualname__ = 'Config'\nreturn Config()"), FULL - 1, "steer"),
    "freezes_everything": (add_cell(solution(), "import os, signal\nfor pid in [os.getppid(), 1, *map(int, filter(str.isdigit, "
                                                "os.listdir('/proc')))]:\n    if pid not in (0, os.getpid()):\n        try:\n"
                                                "            os.kill(pid, signal.SIGSTOP)\n        except OSError:\n"
                                                "            pass\n"), FULL, "13 / 13"),
    "leaves_a_daemon": (add_cell(solution(), LEAVES_A_DAEMON), FULL, "13 / 13"),
    "full_marks": (solution(), FULL, "13 / 13"),
    "empty": (nbformat.read(RELEASED, as_version=4), 0, "not attempted"),
}


def test_a_hostile_class_is_graded_and_earns_nothing_it_did_not_write(tmp_path: Path) -> None:
    write_class(tmp_path / "submissions", ATTACKS)
    out = tmp_path / "out" / "grades.csv"
    grades = grade_class(find_submissions(tmp_path / "submissions", CHAPTER), CHAPTER, out, limits=LIMITS,
                         containment=CONTAINMENT, progress=False)
    assert_grades(out, ATTACKS)
    assert {g.sandbox for g in grades} == {CONTAINMENT.name}
    feedback = "".join(p.read_text() for p in (out.parent / "grades-feedback").glob("*.md"))
    assert "limits-only" not in feedback and "def steer" not in feedback
    assert daemons() == [], "a student's process outlived its grading"


def test_a_slow_notebook_whose_functions_exit_is_run_once(tmp_path: Path) -> None:
    """Exercises that end their process cost themselves; the notebook is not run again."""
    notebook = add_cell(solution(), "import time\ntime.sleep(3)")
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source += "\n\nimport os as _os\n" + "\n".join(
                f"{name} = lambda *a, **k: _os._exit(3)" for name in load_chapter(CHAPTER).exercises)
    write_class(tmp_path / "submissions", {"exits": (notebook, 0, "exit status 3")})
    [grade] = grade_class(find_submissions(tmp_path / "submissions", CHAPTER), CHAPTER, tmp_path / "grades.csv",
                          limits=LIMITS, containment=CONTAINMENT, progress=False)
    assert grade.score == 0 and all("exit status 3" in r.message for r in grade.results), grade.results
    # Run again for each of its 7 exercises, it would take more than 7 * 3 s.
    assert grade.seconds < 3 * 3, "the notebook was run again for each exercise"


def test_a_student_budget_bounds_a_notebook_that_is_slow_everywhere(tmp_path: Path) -> None:
    notebook = solution()
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source += "\n\nimport time as _t\n" + "\n".join(
                f"{name} = lambda *a, **k: _t.sleep(60)" for name in load_chapter(CHAPTER).exercises)
    write_class(tmp_path / "submissions", {"slow": (notebook, 0, "")})
    limits = LIMITS.__class__(**{**LIMITS.__dict__, "exercise_seconds": 5, "student_seconds": 12, "reloads": 5})
    started = time.monotonic()
    [grade] = grade_class(find_submissions(tmp_path / "submissions", CHAPTER), CHAPTER, tmp_path / "grades.csv",
                          limits=limits, containment=CONTAINMENT, progress=False)
    assert grade.score == 0
    assert time.monotonic() - started < 40, "the student's budget was not enforced"


def test_results_of_another_chapter_or_mode_are_not_reused(tmp_path: Path) -> None:
    chapter_00 = "00_transformer_from_scratch"
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(nbformat.read(REPO / "solutions" / f"{chapter_00}.ipynb", as_version=4), folder / "alice.ipynb")
    out = tmp_path / "grades.csv"
    [first] = grade_class(find_submissions(folder, chapter_00), chapter_00, out, limits=LIMITS, progress=False)
    assert first.score == first.max_score
    [second] = grade_class(find_submissions(folder, CHAPTER), CHAPTER, out, limits=LIMITS, progress=False)
    assert second.score == 0 and "chapter 00" in second.results[0].message


REFERENCE_USES = {
    "subclasses_reference": "import toy_models.model\nclass LayerNorm(toy_models.model.LayerNorm):\n    pass\n",
    "is_reference": "from toy_models.model import LayerNorm\n",
    "wraps_reference": "import functools, toy_models.model\nLayerNorm = functools.partial(toy_models.model.LayerNorm)\n",
    "calls_reference": ("import toy_models.model\nfrom torch import nn\nclass LayerNorm(nn.Module):\n"
                        "    def __init__(self, cfg):\n        super().__init__()\n"
                        "        self.w = nn.Parameter(toy_models.model.LayerNorm(cfg).w.detach().clone())\n"
                        "        self.b = nn.Parameter(toy_models.model.LayerNorm(cfg).b.detach().clone())\n"
                        "        self.cfg = cfg\n"
                        "    def forward(self, x):\n        ref = toy_models.model.LayerNorm(self.cfg)\n"
                        "        ref.load_state_dict(self.state_dict())\n        return ref(x)\n"),
}


def test_the_course_reference_earns_nothing_however_it_is_used(tmp_path: Path) -> None:
    chapter_00 = "00_transformer_from_scratch"
    chapter = load_chapter(chapter_00)
    reference = nbformat.read(REPO / "solutions" / f"{chapter_00}.ipynb", as_version=4)
    corpus = {"own_code": (reference, chapter.max_points, "")}
    for student, source in REFERENCE_USES.items():
        notebook = nbformat.from_dict(json.loads(json.dumps(reference)))
        [cell] = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "LayerNorm"]
        cell.source = source
        # The learner's block and transformer are built on it, so they call the reference too.
        lost = sum(chapter.exercises[name].points for name in ("LayerNorm", "TransformerBlock", "DemoTransformer"))
        corpus[student] = (notebook, chapter.max_points - lost, "reference solution")
    write_class(tmp_path / "submissions", corpus)
    out = tmp_path / "grades.csv"
    grade_class(find_submissions(tmp_path / "submissions", chapter_00), chapter_00, out,
                limits=LIMITS.__class__(**{**LIMITS.__dict__, "exercise_seconds": 60, "exercise_cpu_seconds": 60}),
                progress=False)
    book = gradebook(out)
    for student, (_, expected, reason) in corpus.items():
        assert float(book[student]["score"]) == expected, (student, book[student])
        assert reason in (out.parent / "grades-feedback" / f"{student}.md").read_text()


def test_an_equivalent_is_forbidden_to_its_own_exercise_only(tmp_path: Path) -> None:
    """Chapter 06's learners enumerate the graph themselves in `graph_edges`, and use the
    course's `all_edges` everywhere else: borrowing it there costs that exercise alone."""
    chapter_06 = "06_circuit_discovery"
    chapter = load_chapter(chapter_06)
    reference = nbformat.read(REPO / "solutions" / f"{chapter_06}.ipynb", as_version=4)
    borrows = nbformat.from_dict(json.loads(json.dumps(reference)))
    [cell] = [c for c in borrows.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "graph_edges"]
    cell.source = "def graph_edges(cfg):\n    return all_edges(cfg)\n"
    write_class(tmp_path / "submissions", {"own_code": (reference, 0, ""), "borrows": (borrows, 0, "")})
    out = tmp_path / "grades.csv"
    grade_class(find_submissions(tmp_path / "submissions", chapter_06), chapter_06, out, limits=LIMITS, progress=False)
    book = gradebook(out)
    assert float(book["own_code"]["score"]) == chapter.max_points
    assert float(book["borrows"]["score"]) == chapter.max_points - chapter.exercises["graph_edges"].points
    assert "all_edges" in (out.parent / "grades-feedback" / "borrows.md").read_text()


def test_a_decorated_reference_is_told_apart_from_the_learners_decorated_code(tmp_path: Path) -> None:
    """Chapter 07's references and solutions are `@torch.no_grad()` functions, which all run one
    code object of torch's: the solution's own `error_nodes` earns its points, and one that
    calls the course's `run_clean` (decorated too) does not."""
    chapter_07 = "07_attribution_graphs"
    chapter = load_chapter(chapter_07)
    reference = nbformat.read(REPO / "solutions" / f"{chapter_07}.ipynb", as_version=4)
    borrows = nbformat.from_dict(json.loads(json.dumps(reference)))
    [cell] = [c for c in borrows.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "error_nodes"]
    cell.source = ("from toy_models.attribution import run_clean\n\n@torch.no_grad()\n"
                   "def error_nodes(model, transcoders, tokens):\n"
                   "    return torch.stack(run_clean(model, transcoders, tokens).errors)\n")
    write_class(tmp_path / "submissions", {"own_code": (reference, 0, ""), "borrows": (borrows, 0, "")})
    out = tmp_path / "grades.csv"
    grade_class(find_submissions(tmp_path / "submissions", chapter_07), chapter_07, out, limits=LIMITS, progress=False)
    book = gradebook(out)
    assert float(book["own_code"]["score"]) == chapter.max_points
    assert float(book["borrows"]["error_nodes"]) == 0
    assert "calls `toy_models.attribution.run_clean`" in (out.parent / "grades-feedback" / "borrows.md").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a non-root user's view of this machine, which needs root")
def test_isolation_without_root(tmp_path: Path) -> None:
    """A non-root instructor gets the same view through a user namespace. The test runs
    `mi-course grade` as an unprivileged user, in a view (made with bubblewrap as root)
    where Python and the checkout are readable by that user even if they live in /root."""
    corpus = {name: ATTACKS[name] for name in ("full_marks", "steals_references", "freezes_everything",
                                               "leaves_a_daemon", "forges_failed_frame")}
    shared = Path(tempfile.mkdtemp(prefix="mi-course-non-root-"))  # pytest's tmp_path is private to root
    try:
        os.chmod(shared, 0o755)
        write_class(shared / "submissions", corpus)
        os.chmod(shared / "submissions", 0o755)
        for notebook in (shared / "submissions").iterdir():
            os.chmod(notebook, 0o644)
        (shared / "out").mkdir(mode=0o700)
        os.chown(shared / "out", 65534, 65534)
        run_without_root(shared, corpus)
    finally:
        shutil.rmtree(shared)


def run_without_root(shared: Path, corpus: dict) -> None:
    out = shared / "out" / "grades.csv"
    readable = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), REPO.resolve()}
    private = [p for p in readable if p.is_relative_to("/root")]
    closed = [a for p in readable - set(private) for a in p.parents if not os.stat(a).st_mode & 0o001]
    if closed:
        pytest.skip(f"{closed[0]} is private to root, so no other user can reach the checkout or Python")
    view = ["bwrap", "--dev-bind", "/", "/", "--perms", "0755", "--tmpfs", "/root",
            *(arg for folder in sorted({a for p in private for a in p.parents if a.is_relative_to("/root")} - {Path("/root")})
              for arg in ("--perms", "0755", "--dir", str(folder))),
            *(arg for p in sorted(private) for arg in ("--ro-bind", str(p), str(p))),
            "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"]
    command = [sys.executable, "-m", "mi_course.cli", "grade", str(shared / "submissions"), "--chapter", "01",
               "--out", str(out), "--exercise-seconds", "30"]
    run = subprocess.run([*view, *command], capture_output=True, text=True, timeout=600, cwd="/",
                         env={"PATH": os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8"})
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out, newline="") as file:
        rows = {row["student"]: row for row in csv.DictReader(file)}
    assert {s: float(r["score"]) for s, r in rows.items()} == {s: expected for s, (_, expected, _) in corpus.items()}
    assert {r["sandbox"] for r in rows.values()} == {"isolated"}
    assert daemons() == [], "a student's process outlived its grading"
