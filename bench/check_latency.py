"""How long the notebook's `check(obj)` takes: every exercise, checked on its reference.

`check` runs every variant the graded notebook runs, and one with a seed drawn afresh
(`graders.core.Exercise.fresh_variants`), so its time is about what grading the exercise
takes. Each exercise is checked once to warm up (loading the shipped models), then timed
on the median of `--repeats` checks. Run it on an otherwise idle machine:

    python bench/check_latency.py            # every chapter
    python bench/check_latency.py 00 03      # chapters by number
"""

import argparse
import contextlib
import io
import statistics
import time

from graders.core import CHAPTERS, load_chapter, make_check


def seconds_per_check(check, obj, repeats: int) -> tuple[float, str]:
    """The median time of `check(obj)`, and the first line it printed."""
    printed = io.StringIO()
    times = []
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):  # progress bars too
        check(obj)
        for _ in range(repeats):
            start = time.perf_counter()
            check(obj)
            times.append(time.perf_counter() - start)
    return statistics.median(times), printed.getvalue().splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter numbers (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chosen = [name for name in CHAPTERS if not args.chapters or name[:2] in {c.zfill(2) for c in args.chapters}]
    for chapter_name in chosen:
        check = make_check(chapter_name)
        times = []
        for name, exercise in load_chapter(chapter_name).exercises.items():
            seconds, verdict = seconds_per_check(check, exercise.reference, args.repeats)
            times.append(seconds)
            print(f"{chapter_name[:2]}  {name:28s} {seconds:6.2f} s  {verdict}", flush=True)
        print(f"{chapter_name[:2]}  median {statistics.median(times):.2f} s, slowest {max(times):.2f} s\n", flush=True)


if __name__ == "__main__":
    main()
