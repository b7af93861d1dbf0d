"""How long the chapters take: each solution notebook end to end, and each check.

For every solution notebook it prints

* the notebook executed top to bottom with nbclient, as a learner runs it (training
  included), with its slowest cells;
* each exercise's check, timed in this process: the notebook's visible test alone, and
  what `check(Name)` runs after the exercise (every graded variant, as `mi-course check`
  and nbgrader run them, and one with a freshly drawn seed);
* `mi-course check` on the notebook, as a command (Python start-up and imports included).

Targets: each check about a second or less; each notebook a few minutes at most on two
cores. Run on an otherwise idle machine:

    python bench/notebooks.py
"""

import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from graders import load_chapter
from graders.submission import chapter_of
from mi_course.runtime.paths import REPO_ROOT, SOLUTIONS_DIR

REPEATS = 5  # each check is timed this many times; the median is shown


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def time_notebook(path: Path) -> dict[str, float]:
    """Execute the notebook, print its timings; return the seconds of each graded cell."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    total = time.perf_counter() - start
    cells = []
    for index, cell in enumerate(nb.cells):
        timing = cell.metadata.get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            cells.append((seconds(timing["iopub.execute_input"], timing["shell.execute_reply"]), index, cell))
    errors = [index for _, index, cell in cells if any(o.get("output_type") == "error" for o in cell.outputs)]
    print(f"{path.relative_to(REPO_ROOT)}: {total:.1f} s end to end (kernel start included), "
          f"{sum(s for s, _, _ in cells):.1f} s in its {len(cells)} code cells")
    for cell_seconds, index, cell in sorted(cells, key=lambda entry: entry[0], reverse=True)[:4]:
        print(f"  cell {index:2d}: {cell_seconds:6.2f} s  {cell.source.splitlines()[0][:60]}")
    if errors:
        print(f"  cells that raised an error: {errors}")
    return {cell.metadata["nbgrader"]["grade_id"]: cell_seconds for cell_seconds, _, cell in cells
            if cell.metadata.get("nbgrader", {}).get("grade")}


def time_checks(path: Path, graded_cells: dict[str, float]) -> None:
    """Each exercise's check in this process (median of REPEATS), and its graded cell as it
    ran in the notebook (the solution notebook's cells also run the hidden tests)."""
    chapter = load_chapter(chapter_of(nbformat.read(path, as_version=4), path))
    print(f"{'exercise':<20}{'visible test':>14}{'check(Name)':>15}{'graded cell':>14}")
    for exercise in chapter.exercises.values():
        exercise.run(exercise.reference)  # once untimed: first calls pay for lazy initialisation
        visible, every = [], []
        for _ in range(REPEATS):
            start = time.perf_counter()
            exercise.run(exercise.reference, exercise.variants[:1])
            visible.append(time.perf_counter() - start)
            start = time.perf_counter()
            exercise.run(exercise.reference, exercise.fresh_variants())
            every.append(time.perf_counter() - start)
        cell = graded_cells.get(f"check_{exercise.name}", float("nan"))
        print(f"{exercise.name:<20}{statistics.median(visible) * 1000:>11.1f} ms"
              f"{statistics.median(every) * 1000:>12.1f} ms{cell * 1000:>11.0f} ms")


def time_check_command(path: Path) -> None:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "mi_course.cli", "check", str(path)], capture_output=True, text=True)
    print(f"mi-course check {path.relative_to(REPO_ROOT)}: {time.perf_counter() - start:.1f} s, exit status {run.returncode}")


def main() -> None:
    for path in sorted(SOLUTIONS_DIR.glob("*.ipynb")):
        graded_cells = time_notebook(path)
        time_checks(path, graded_cells)
        time_check_command(path)
        print()


if __name__ == "__main__":
    main()
