"""`mi-course`: start the course, rebuild its models."""

import argparse
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = REPO_ROOT / "course"


def start(args: argparse.Namespace) -> int:
    """Open the student notebooks in JupyterLab."""
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={COURSE_DIR}"]
    if args.no_browser:
        command.append("--no-browser")
    return subprocess.call(command)


def train(args: argparse.Namespace) -> int:
    from toy_models.train import train as train_checkpoint

    metrics = train_checkpoint(args.name, args.out)
    for metric, value in metrics.items():
        print(f"{metric}: {value:.4f}")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
