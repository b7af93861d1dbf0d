"""`mi-course`: start the course, check your work, grade a class (or be Gradescope's autograder), rebuild its
models and notebooks."""

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from mi_course.runtime.paths import COURSE_DIR, REPO_ROOT, SOLUTIONS_DIR

# nbgrader installs instructor tools into every Jupyter server; a learner needs none of
# them, and the formgrader logs an alarming error when started outside a course folder.
NBGRADER_SERVER_EXTENSIONS = ("assignment_list", "course_list", "formgrader", "validate_assignment")


def start(args: argparse.Namespace) -> int:
    """Open the student notebooks in JupyterLab."""
    disabled = ",".join(f"'nbgrader.server_extensions.{name}': False" for name in NBGRADER_SERVER_EXTENSIONS)
    command = [
        sys.executable, "-m", "jupyterlab", f"--notebook-dir={COURSE_DIR}",
        f"--ServerApp.jpserver_extensions={{{disabled}}}",
    ]
    if args.no_browser:
        command.append("--no-browser")
    if os.geteuid() == 0:  # containers and cloud machines often run as root
        command.append("--allow-root")
    return subprocess.call(command)


def train(args: argparse.Namespace) -> int:
    from toy_models.train import train as train_checkpoint

    metrics = train_checkpoint(args.name, args.out)
    for metric, value in metrics.items():
        print(f"{metric}: {value:.4f}")
    return 0


def check(args: argparse.Namespace) -> int:
    from mi_course.checking import main as check_notebook

    return check_notebook(args.notebook)


def _sandbox(args: argparse.Namespace, remote=None):
    """The limits the grading commands take, and the containment found (or the `remote` workers'), warned
    about if it is weak."""
    from mi_course.runtime.containment import Limits, detect_containment

    containment = remote.containment if remote is not None else detect_containment()
    if not containment.isolated:
        print(f"WARNING: no sandbox could be built, so students' code runs with {containment.describe()}: it can "
              "read whatever your user can read, including the reference solutions, and use the network.",
              file=sys.stderr)
    limits = Limits(exercise_seconds=args.exercise_seconds, exercise_cpu_seconds=int(args.exercise_seconds),
                    memory_bytes=int(args.memory_gb * 2**30))
    return limits, containment


def grade(args: argparse.Namespace) -> int:
    """Grade a class's notebooks in sandboxes; write the gradebook, the LMS's CSV, and each
    student's feedback and Gradescope results."""
    from mi_course.gradebook import GradebookError, nbgrader_database
    from mi_course.grading import (
        GradingStopped,
        UnsafeOutputError,
        find_submissions,
        grade_class,
        lms_csv_path,
        resolve_chapter,
    )

    chapter = resolve_chapter(args.chapter)
    submissions = find_submissions(args.submissions, chapter)
    if not submissions:
        print(f"No notebooks in {args.submissions} (looked for *.ipynb and */{chapter}/*.ipynb).", file=sys.stderr)
        return 1
    out = args.out or Path("instructor") / f"grades-{chapter}.csv"  # git-ignored: grades are never committed
    try:
        # nbgrader's gradebook is checked before the class is graded, not after
        database = args.gradebook is not None and nbgrader_database(args.gradebook, args.submissions, chapter)
        with _remote_grading(args.scheduler) as remote:  # None: on this machine
            limits, containment = _sandbox(args, remote)
            grades = grade_class(submissions, chapter, out, limits=limits, workers=args.workers,
                                 containment=containment, remote=remote)
    except (UnsafeOutputError, GradebookError, GradingStopped) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    mean = sum(g.score for g in grades) / len(grades)
    print(f"{len(grades)} students graded; mean {mean:.2f} / {grades[0].max_score:g}. Gradebook: {out}; "
          f"for your LMS: {lms_csv_path(out)}")
    return _record_in_nbgrader(database, chapter, submissions, grades) if database else 0


def _record_in_nbgrader(database: str, chapter: str, submissions: list, grades: list) -> int:
    """The sandbox's scores into nbgrader's gradebook (`mi_course.gradebook`); exit status 1 if a
    submission there still has the scores `nbgrader autograde` gave it."""
    from mi_course.gradebook import GradebookError, record_sandboxed_scores

    try:
        report = record_sandboxed_scores(database, chapter, [(s.path, g) for s, g in zip(submissions, grades, strict=True)])
    except GradebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"nbgrader's gradebook now holds the sandbox's scores of {len(report.recorded)} students.")
    for notebook, why in report.skipped.items():
        print(f"warning: {notebook}: {why}", file=sys.stderr)
    if report.untouched:
        print(f"warning: these submissions in nbgrader's gradebook were not graded here, and keep the scores "
              f"`nbgrader autograde` gave them in their own kernel: {', '.join(report.untouched)}", file=sys.stderr)
    return 1 if report.untouched else 0


def _remote_grading(scheduler: str | None):
    """The Dask cluster to grade on, connected and its workers checked (`mi_course.cluster`); without a
    scheduler, None: grade on this machine."""
    if scheduler is None:
        return contextlib.nullcontext()
    from mi_course.cluster import DaskGrading

    return DaskGrading(scheduler)


def worker(args: argparse.Namespace) -> int:
    """Become grading workers of a Dask cluster, for `mi-course grade --scheduler`: `dask worker` with a
    thread per worker process (each grades one student at a time) and `mi_course.cluster` preloaded, which
    starts each worker process's sandbox zygote, and refuses students sent by another course version."""
    command = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler, "--nthreads", "1",
               "--nworkers", str(args.nworkers or os.cpu_count() or 1)]
    environment = {
        **os.environ,
        # Preloaded by Dask's configuration, not `--preload`, which would import it (and torch) in the nannies' process too
        "DASK_DISTRIBUTED__WORKER__PRELOAD": '["mi_course.cluster"]',
        # Not Dask's MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap threshold and made the graders'
        # own tensor work slower than on one machine (see GradingPlugin.setup)
        "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": '{"MALLOC_TRIM_THRESHOLD_": None}',
    }
    os.execve(command[0], command, environment)  # signals (Ctrl-C, a service manager's stop) then reach dask itself


def gradescope(args: argparse.Namespace) -> int:
    """Gradescope's `run_autograder`: grade the notebook handed in, as `grade` would, and write
    Gradescope's results.json. The exit status is 0 whenever results.json was written, a zero
    included: Gradescope shows the student that file, not the status."""
    from mi_course.grading import UnsafeOutputError, grade_for_gradescope, resolve_chapter

    limits, containment = _sandbox(args)
    try:
        grade = grade_for_gradescope(args.submission, args.results, resolve_chapter(args.chapter), limits=limits,
                                     containment=containment)
    except UnsafeOutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{grade.score:g} / {grade.max_score:g} points. Results: {args.results}")
    return 0


def release(args: argparse.Namespace) -> int:
    """Rebuild solutions/*.ipynb from the chapter sources beside them, then course/ from
    those through nbgrader; with --check, only report what is out of date."""
    from mi_course.release import release_chapters, stale_chapters

    if args.check:
        stale = stale_chapters(SOLUTIONS_DIR, COURSE_DIR)
        for path in stale:
            print(f"stale: {path.relative_to(REPO_ROOT)}")
        if stale:
            print("run: mi-course release", file=sys.stderr)
        return 1 if stale else 0
    for path in release_chapters(SOLUTIONS_DIR, COURSE_DIR):
        print(path.relative_to(REPO_ROOT))
    return 0


def explore(args: argparse.Namespace) -> int:
    """Write the feature explorer of a shipped SAE and print where its page is."""
    from mi_course.explorer import build_explorer, load_labels
    from toy_models import load_pretrained
    from toy_models.sae import SHIPPED_SAE, load_sae

    name = args.sae or SHIPPED_SAE
    sae = load_sae(name)
    labels = load_labels(args.labels, sae.cfg.d_sae) if args.labels else None
    index = build_explorer(
        load_pretrained(sae.cfg.model_name), sae, args.out,
        n_windows=args.windows, n_features=args.features, labels=labels, title=f"Features of {name}",
    )
    print(index.resolve())
    return 0


def graph(args: argparse.Namespace) -> int:
    """Write the pruned attribution graph of a prompt on code-2l and its shipped transcoders:
    graph.json (circuit-tracer's schema) and a page that draws it; print its size and where."""
    from mi_course.graph_page import build_graph_page
    from toy_models import load_pretrained
    from toy_models.transcoder import load_transcoders

    index, graph_json = build_graph_page(
        load_pretrained("code-2l"), load_transcoders("code-2l"), args.prompt, args.out,
        node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, n_windows=args.windows,
    )
    kinds = [node["feature_type"] for node in graph_json["nodes"]]
    print(f"{len(kinds)} nodes ({kinds.count('cross layer transcoder')} features, "
          f"{kinds.count('mlp reconstruction error')} errors, {kinds.count('embedding')} tokens, "
          f"{kinds.count('logit')} logits) and {len(graph_json['links'])} edges. Graph: {index.parent / 'graph.json'}")
    print(index.resolve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mi-course", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    start_parser = commands.add_parser("start", help="open the course in JupyterLab")
    start_parser.add_argument("--no-browser", action="store_true", help="print the address instead")
    start_parser.set_defaults(run=start)

    train_parser = commands.add_parser("train", help="rebuild a shipped model from its recipe")
    train_parser.add_argument("name", help="e.g. induction-2l, code-2l, ioi-3l, superposition-5-2")
    train_parser.add_argument(
        "--out", type=Path, default=None, help="folder to write (default: replace the shipped checkpoint)"
    )
    train_parser.set_defaults(run=train)

    check_parser = commands.add_parser(
        "check", help="grade every exercise of your notebook (exit status 0 only if all pass)"
    )
    check_parser.add_argument("notebook", type=Path, help="e.g. course/00_transformer_from_scratch.ipynb")
    check_parser.set_defaults(run=check)

    grade_parser = commands.add_parser(
        "grade", help="grade a class's notebooks in sandboxes, in parallel; write a gradebook and feedback"
    )
    grade_parser.add_argument("submissions", type=Path,
                              help="a folder of notebooks, or nbgrader's submitted/{student}/{chapter}/ folder")
    grade_parser.add_argument("--chapter", required=True, help="e.g. 00 or 00_transformer_from_scratch")
    grade_parser.add_argument("--out", type=Path, default=None,
                              help="the gradebook, in a folder only you may write to; results and feedback go "
                                   "beside it (default: instructor/grades-<chapter>.csv)")
    grade_parser.add_argument("--workers", type=int, default=None,
                              help="students graded at once on this machine (default: cores)")
    grade_parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                              help="grade on a Dask cluster's workers (started with `mi-course worker ADDRESS`), "
                                   "e.g. tcp://10.0.0.5:8786; every file is still written here")
    grade_parser.add_argument("--gradebook", nargs="?", const="", default=None, metavar="DATABASE",
                              help="then replace the auto scores in nbgrader's gradebook (after `nbgrader autograde`) "
                                   "by the sandbox's: a sqlite file or a database URL (default: gradebook.db beside "
                                   "submitted/)")
    _add_limit_arguments(grade_parser)
    grade_parser.set_defaults(run=grade)

    worker_parser = commands.add_parser(
        "worker", help="grade for `mi-course grade --scheduler`: Dask workers on this machine, one per core"
    )
    worker_parser.add_argument("scheduler", help="the Dask scheduler's address, e.g. tcp://10.0.0.5:8786")
    worker_parser.add_argument("--nworkers", type=int, default=None,
                               help="worker processes, each grading one student at a time (default: cores)")
    worker_parser.set_defaults(run=worker)

    gradescope_parser = commands.add_parser(
        "gradescope", help="Gradescope's autograder: grade the notebook handed in, in a sandbox; write results.json"
    )
    gradescope_parser.add_argument("--chapter", required=True, help="e.g. 00 or 00_transformer_from_scratch")
    gradescope_parser.add_argument("--submission", type=Path, default=Path("/autograder/submission"),
                                   help="the folder holding the notebook (default: /autograder/submission)")
    gradescope_parser.add_argument("--results", type=Path, default=Path("/autograder/results/results.json"),
                                   help="the file to write (default: /autograder/results/results.json)")
    _add_limit_arguments(gradescope_parser)
    gradescope_parser.set_defaults(run=gradescope)

    release_parser = commands.add_parser(
        "release", help="rebuild solutions/*.ipynb from the chapter sources, then the student notebooks in course/"
    )
    release_parser.add_argument("--check", action="store_true", help="only report stale notebooks; exit 1 if any")
    release_parser.set_defaults(run=release)

    explore_parser = commands.add_parser(
        "explore", help="write a static web page browsing the features of a sparse autoencoder"
    )
    explore_parser.add_argument("--sae", default=None, help="a shipped SAE (default: the course's, code-2l-sae)")
    explore_parser.add_argument("--out", type=Path, default=Path("explorer"), help="folder (default: explorer/)")
    explore_parser.add_argument("--windows", type=int, default=1024, help="validation windows to read (default: 1024)")
    explore_parser.add_argument("--features", type=int, default=None, help="only the first K features (default: all)")
    explore_parser.add_argument("--labels", type=Path, default=None, help='a JSON file {"12": "a label", ...}')
    explore_parser.set_defaults(run=explore)

    graph_parser = commands.add_parser(
        "graph", help="write the attribution graph of a prompt (code-2l's transcoders) and a web page that draws it"
    )
    graph_parser.add_argument("prompt", help='the text whose next byte the graph explains, e.g. "def parse(self, text)"')
    graph_parser.add_argument("--out", type=Path, default=Path("graph"), help="folder (default: graph/)")
    graph_parser.add_argument("--node-threshold", type=float, default=0.8,
                              help="keep the nodes with this share of the influence on the output (default: 0.8)")
    graph_parser.add_argument("--edge-threshold", type=float, default=0.98,
                              help="then the edges with this share of the edge influence (default: 0.98)")
    graph_parser.add_argument("--windows", type=int, default=512,
                              help="validation windows searched for each feature's top snippets (default: 512)")
    graph_parser.set_defaults(run=graph)
    return parser


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exercise-seconds", type=float, default=60.0,
                        help="wall-clock and CPU time each exercise's code may use (default: 60)")
    parser.add_argument("--memory-gb", type=float, default=3.0, help="memory each notebook may use (default: 3)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
