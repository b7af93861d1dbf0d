"""Transcoders: a sparse, readable stand-in for one MLP.

An SAE rewrites an activation as a sparse sum of features and reads it back out at the
same place. A transcoder (Dunefsky et al. 2024) reads the MLP's *input* and predicts the
MLP's *output* through a sparse feature layer:

    f       = encode(x) = TopK(ReLU(x @ W_enc + b_enc))     [d_transcoder], mostly zeros
    mlp_hat = decode(f) = f @ W_dec + b_dec                  [d_model]

where x is what the MLP reads (`blocks.L.ln2.hook_normalized`) and the target is what it
writes (`blocks.L.hook_mlp_out`). Swapping every MLP for its transcoder gives a model
whose MLP layers are sparse and linear in their features, the starting point of an
attribution graph (chapter 07). The parameter names are SAELens's and circuit-tracer's.

Reading the pairs, training, splicing and scoring are the SAE's (`toy_models.sae`), which
serve any coder that reads at `cfg.hook_in` and predicts `cfg.hook_out`. What differs: the
target is another activation, and the loss is divided by that target's variance, so that
it reads as the fraction of the MLP output's variance left unexplained, on either layer.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from toy_models.checkpoints import checkpoint_dir, load_weights, read_description, save_checkpoint, shipped_names
from toy_models.data import load_python_corpus
from toy_models.sae import (
    Hook,
    ce_loss_recovered,
    collect_activations_at,
    evaluate_sae,
    keep_top_k,
    losses_with_hooks,
    splice_hooks,
    train_sparse_coder,
    validation_windows,
    zero_ablation_hook,
)
from toy_models.threads import one_thread


@dataclass(frozen=True)
class TranscoderConfig:
    d_model: int  # width of the residual stream: what the MLP reads and writes
    d_transcoder: int  # number of features
    layer: int  # the block whose MLP it stands in for
    k: int  # features kept per token (TopK)
    model_name: str = "code-2l"  # the shipped model it was trained on

    def __post_init__(self) -> None:
        if not 0 < self.k <= self.d_transcoder:
            raise ValueError(f"A transcoder needs 0 < k <= d_transcoder, got k={self.k}, d_transcoder={self.d_transcoder}.")

    @property
    def hook_in(self) -> str:
        return f"blocks.{self.layer}.ln2.hook_normalized"

    @property
    def hook_out(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"

    @classmethod
    def from_dict(cls, fields: dict) -> "TranscoderConfig":
        return cls(**fields)


class Transcoder(nn.Module):
    """encode: the MLP's input -> sparse features; decode: features -> the MLP's output."""

    def __init__(self, cfg: TranscoderConfig):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.d_model, cfg.d_transcoder))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_transcoder))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_transcoder, cfg.d_model))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_model))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Random unit decoder rows and a small random encoder: input and output live in
        different spaces, so (unlike an SAE's) the encoder cannot start as the decoder's
        transpose."""
        nn.init.normal_(self.W_dec)
        self.normalize_decoder()
        nn.init.normal_(self.W_enc, std=self.cfg.d_model**-0.5)

    def hidden_pre(self, mlp_in: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_transcoder"]:
        """The features' pre-activations: the number an attribution graph explains."""
        return mlp_in @ self.W_enc + self.b_enc

    def encode(self, mlp_in: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_transcoder"]:
        return keep_top_k(F.relu(self.hidden_pre(mlp_in)), self.cfg.k)

    def decode(self, feature_acts: Float[Tensor, "... d_transcoder"]) -> Float[Tensor, "... d_model"]:
        return feature_acts @ self.W_dec + self.b_dec

    def forward(self, mlp_in: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return self.decode(self.encode(mlp_in))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every feature's decoder row to unit norm (in place). Training keeps them
        there, so a feature's activation is the length of what it writes, and TopK keeps
        the features that write the most."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))


# ----------------------------------------------------------------------------------------
# Training


def transcoder_loss(
    transcoder: Transcoder,
    mlp_in: Float[Tensor, "batch d_model"],
    mlp_out: Float[Tensor, "batch d_model"],
    mlp_out_variance: float,
) -> tuple[Float[Tensor, ""], Float[Tensor, "batch d_transcoder"]]:
    """Squared error of the predicted MLP output (summed over d_model, mean over tokens)
    over the MLP output's variance (the same sum for the mean output): 1 is no better than
    always predicting the mean. Also returns the feature activations."""
    feature_acts = transcoder.encode(mlp_in)
    error = (transcoder.decode(feature_acts) - mlp_out).pow(2).sum(dim=-1).mean()
    return error / mlp_out_variance, feature_acts


def total_variance(acts: Float[Tensor, "tokens d"]) -> float:
    """Mean squared distance of a row from the mean row: what predicting the mean leaves."""
    return (acts - acts.mean(dim=0)).pow(2).sum(dim=-1).mean().item()


def train_transcoder(
    cfg: TranscoderConfig,
    mlp_in: Float[Tensor, "tokens d_model"],
    mlp_out: Float[Tensor, "tokens d_model"],
    *,
    steps: int,
    batch_size: int = 4096,
    lr: float = 1e-3,
    resample_every: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Transcoder, list[float]]:
    """Train a fresh transcoder with Adam to predict `mlp_out` from `mlp_in` (row i of
    each is the same token); return it (eval mode) and its loss per step. The loop is the
    SAE's (`toy_models.sae.train_sparse_coder`): dead features are resampled every
    `resample_every` steps, decoder rows renormalised after every step."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    transcoder = Transcoder(cfg)
    variance = total_variance(mlp_out)
    losses = train_sparse_coder(
        transcoder, lambda x, y: transcoder_loss(transcoder, x, y, variance), mlp_in, mlp_out,
        steps=steps, batch_size=batch_size, lr=lr, resample_every=resample_every, generator=generator,
        progress=progress, desc=f"training transcoder {cfg.layer}",
    )
    return transcoder.eval(), losses


# ----------------------------------------------------------------------------------------
# Evaluation: the SAE's metrics, on the MLP's output, and the model with every MLP replaced


@torch.no_grad()
def evaluate_transcoder(
    model: nn.Module, transcoder: Transcoder, tokens: Int[Tensor, "batch pos"], batch_size: int = 32
) -> dict[str, float]:
    """L0, dead and dense fractions, the fraction of the MLP output's variance explained,
    and the next-token loss with the transcoder in place of its MLP (`ce_transcoder`),
    against the clean model and the MLP's output zero-ablated (`ce_loss_recovered`)."""
    return evaluate_sae(model, transcoder, tokens, batch_size, label="transcoder")


@torch.no_grad()
def replacement_losses(
    model: nn.Module, transcoders: list[Transcoder], tokens: Int[Tensor, "batch pos"], batch_size: int = 32
) -> dict[str, float]:
    """Next-token loss with every transcoder spliced in at once, each reading what the
    transcoders before it wrote (the replacement model an attribution graph explains),
    against the clean model and every one of those MLPs zero-ablated."""
    runs: dict[str, list[Hook]] = {
        "clean": [],
        "transcoders": [hook for transcoder in transcoders for hook in splice_hooks(transcoder)],
        "zero_ablation": [(transcoder.cfg.hook_out, zero_ablation_hook) for transcoder in transcoders],
    }
    chunks = [losses_with_hooks(model, chunk, runs) for chunk in tokens.split(batch_size)]
    ce = {key: sum(chunk[key] for chunk in chunks) / len(chunks) for key in runs}
    return {
        **{f"ce_{key}": value for key, value in ce.items()},
        "ce_loss_recovered": ce_loss_recovered(ce["clean"], ce["transcoders"], ce["zero_ablation"]),
    }


# ----------------------------------------------------------------------------------------
# The shipped transcoders: their recipe, how to rebuild them, and loading them


@dataclass(frozen=True)
class TranscoderRecipe:
    transcoder: TranscoderConfig
    n_train_windows: int  # windows of n_ctx tokens from the training split, read once
    steps: int
    batch_size: int
    lr: float
    resample_every: int
    seed: int = 0
    n_eval_windows: int = 256  # validation windows the recorded metrics are measured on
    # What the tests hold the shipped weights to, on validation text.
    min_fraction_variance_explained: float = 0.85
    min_ce_loss_recovered: float = 0.85
    max_dead_fraction: float = 0.15


def shipped_transcoder_name(model_name: str, layer: int) -> str:
    return f"{model_name}-transcoder-{layer}"


TRANSCODER_RECIPES = {
    shipped_transcoder_name("code-2l", layer): TranscoderRecipe(
        transcoder=TranscoderConfig(d_model=128, d_transcoder=1024, layer=layer, k=16),
        n_train_windows=2048,
        steps=1000,
        batch_size=4096,
        lr=4e-3,
        resample_every=100,
    )
    for layer in (0, 1)
}


def train_and_save(name: str, directory: Path, model: nn.Module, progress: bool = True) -> dict[str, float]:
    """Rebuild transcoder `name` from its recipe into `directory`, on `model` (the recipe's
    `transcoder.model_name`, which the caller loads); return its validation metrics."""
    recipe = TRANSCODER_RECIPES[name]
    cfg = recipe.transcoder
    model = model.requires_grad_(False)
    started = time.perf_counter()
    mlp_in, mlp_out = collect_activations_at(
        model, load_python_corpus("train"), [cfg.hook_in, cfg.hook_out], recipe.n_train_windows,
        seed=recipe.seed, progress=progress,
    )
    transcoder, losses = train_transcoder(
        cfg, mlp_in, mlp_out, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
        resample_every=recipe.resample_every, seed=recipe.seed, progress=progress,
    )
    seconds = time.perf_counter() - started
    with one_thread():
        metrics = evaluate_transcoder(model, transcoder, validation_windows(recipe.n_eval_windows, model.cfg.n_ctx))
    record = {key: value for key, value in asdict(recipe).items() if key != "transcoder"}
    record["train_seconds"] = round(seconds, 1)
    save_checkpoint(directory, transcoder, cfg, kind="transcoder", recipe=record, metrics=metrics, loss_curve=losses)
    return metrics


def load_transcoder(name: str) -> Transcoder:
    """A shipped transcoder in eval mode, from `toy_models/checkpoints/<name>/` (no network)."""
    directory = checkpoint_dir(name)
    description = read_description(directory)
    if description["kind"] != "transcoder":
        raise ValueError(f"{name!r} holds a {description['kind']!r} model, not a transcoder.")
    return load_weights(directory, Transcoder(TranscoderConfig.from_dict(description["config"])))


def load_transcoders(model_name: str = "code-2l") -> list[Transcoder]:
    """The shipped transcoders of `model_name`, one per layer in layer order, frozen."""
    names = []
    while shipped_transcoder_name(model_name, len(names)) in shipped_names():
        names.append(shipped_transcoder_name(model_name, len(names)))
    if not names:
        raise ValueError(f"No shipped transcoders for {model_name!r}. Shipped checkpoints: {', '.join(shipped_names())}.")
    return [load_transcoder(name).requires_grad_(False) for name in names]
