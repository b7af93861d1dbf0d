"""How long training `induction-2l` takes, on one torch thread and on two, side by side.

For each thread count it prints, from a fresh Python process:

* `mi-course train induction-2l` as a command would run it (imports, the 600 training
  steps, evaluation and saving), and its training loop alone;
* the live run of chapters 00 and 02 (`INDUCTION_LIVE`: 250 smaller steps), which the
  course aims to train in at most 10 s on an idle 2-core laptop, with the induction score
  it reaches.

The course trains on one thread (`toy_models.threads`): the second column shows what the
default of one thread per core would cost. Run on an otherwise idle machine, then on a
busy one:

    python bench/train_induction.py
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_COUNTS = (1, 2)


def measure(threads: int) -> dict[str, float]:
    """In this process: set torch's thread count for training, then time both runs."""
    start = time.perf_counter()  # the imports count, as they do for the command
    from toy_models import threads as training_threads
    from toy_models.checkpoints import read_description
    from toy_models.train import INDUCTION_LIVE, TRANSFORMER_JOBS, evaluate_induction, train, train_transformer

    training_threads.TRAINING_THREADS = threads
    with tempfile.TemporaryDirectory() as scratch:
        train("induction-2l", Path(scratch) / "induction-2l", progress=False)
        description = read_description(Path(scratch) / "induction-2l")
    command_seconds = time.perf_counter() - start
    live_start = time.perf_counter()
    live, _ = train_transformer(INDUCTION_LIVE, TRANSFORMER_JOBS["induction-2l"].batches(INDUCTION_LIVE),
                                progress=False)
    live_seconds = time.perf_counter() - live_start
    return {
        "command": command_seconds,
        "training loop": description["recipe"]["train_seconds"],
        "shipped: best layer-1 induction score": description["metrics"]["max_layer1_induction_score"],
        "live run (INDUCTION_LIVE)": live_seconds,
        "live: best layer-1 induction score": evaluate_induction(live)["max_layer1_induction_score"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="(internal) measure in this process, on this many threads")
    args = parser.parse_args()
    if args.threads is not None:
        print(json.dumps(measure(args.threads)))
        return
    columns = {}
    for threads in THREAD_COUNTS:
        run = subprocess.run([sys.executable, __file__, "--threads", str(threads)],
                             check=True, capture_output=True, text=True)
        columns[threads] = json.loads(run.stdout.splitlines()[-1])
    print(f"{'induction-2l':<40}" + "".join(f"{f'{n} thread' + ('s' if n > 1 else ''):>12}" for n in THREAD_COUNTS))
    for figure in columns[THREAD_COUNTS[0]]:
        unit = "" if "score" in figure else " s"
        print(f"{figure:<40}" + "".join(f"{columns[n][figure]:>10.{3 if unit == '' else 1}f}{unit or '  '}"
                                        for n in THREAD_COUNTS))


if __name__ == "__main__":
    main()
