"""How long rebuilding a transcoder takes, and how the shipped ones compare with the SAE.

It prints:

* `mi-course train code-2l-transcoder-1` (or `--layer 0`) as the command would run it,
  into a scratch folder (imports, reading the activations, training, evaluating and
  saving), its training alone, and the figures the rebuilt transcoder reaches;
* the figures recorded in the shipped checkpoints' config.json, beside those of the
  shipped SAE `code-2l-sae` (which reads layer 0's MLP neurons and writes them back);
* code-2l's next-token loss with both shipped transcoders in place of its MLPs at once,
  measured now on the validation windows the recorded metrics use.

The course aims at a few minutes per transcoder on a 2-core laptop:

    python bench/train_transcoders.py
"""

import argparse
import tempfile
import time
from pathlib import Path

FIGURES = ("fraction_variance_explained", "l0", "dead_fraction", "ce_loss_recovered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=1, help="which transcoder to rebuild (default: 1)")
    args = parser.parse_args()

    start = time.perf_counter()  # the imports count, as they do for the command
    from toy_models import load_pretrained
    from toy_models.checkpoints import checkpoint_dir, read_description
    from toy_models.sae import SHIPPED_SAE, validation_windows
    from toy_models.threads import one_thread
    from toy_models.train import train
    from toy_models.transcoder import TRANSCODER_RECIPES, load_transcoders, replacement_losses

    name = f"code-2l-transcoder-{args.layer}"
    with tempfile.TemporaryDirectory() as scratch:
        train(name, Path(scratch) / name, progress=False)
        rebuilt = read_description(Path(scratch) / name)
    print(f"{name}, rebuilt: command {time.perf_counter() - start:.1f} s, "
          f"training loop {rebuilt['recipe']['train_seconds']:.1f} s")

    columns = {"rebuilt": rebuilt["metrics"]}
    for shipped in [*sorted(TRANSCODER_RECIPES), SHIPPED_SAE]:
        columns[shipped] = read_description(checkpoint_dir(shipped))["metrics"]
    print(f"{'':<28}" + "".join(f"{column:>22}" for column in columns))
    for figure in FIGURES:
        print(f"{figure:<28}" + "".join(f"{metrics[figure]:>22.3f}" for metrics in columns.values()))

    model = load_pretrained("code-2l")
    n_windows = TRANSCODER_RECIPES[name].n_eval_windows
    with one_thread():
        losses = replacement_losses(model, load_transcoders("code-2l"), validation_windows(n_windows, model.cfg.n_ctx))
    print(f"both transcoders at once, on {n_windows} validation windows: "
          + ", ".join(f"{key} {value:.3f}" for key, value in losses.items()))


if __name__ == "__main__":
    main()
