"""How long `mi-course train induction-2l` takes to rebuild the model from scratch.

Prints the wall time of the whole command (imports, training, evaluation and saving) and
of the training loop alone, with the metrics it reached. Run on an otherwise idle machine:

    python bench/train_induction.py
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from toy_models.checkpoints import read_description


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "induction-2l"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mi_course.cli", "train", "induction-2l", "--out", str(out)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        command_seconds = time.perf_counter() - start
        description = read_description(out)
    print(f"mi-course train induction-2l: {command_seconds:.1f} s for the whole command")
    print(f"  of which the training loop: {description['recipe']['train_seconds']:.1f} s")
    for metric, value in description["metrics"].items():
        print(f"  {metric}: {value:.3f}")


if __name__ == "__main__":
    main()
