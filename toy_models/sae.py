"""Sparse autoencoders (SAEs): a dictionary of features for one activation of a model.

An SAE rewrites an activation vector x (here a layer's MLP neurons of `code-2l`) as a
sparse, non-negative combination of many more directions than x has dimensions:

    f     = encode(x) = act((x - b_dec) @ W_enc + b_enc)     [d_sae], mostly zeros
    x_hat = decode(f) = f @ W_dec + b_dec                     [d_in]

Each row of W_dec is a feature's direction; the hope (Bricken et al. 2023, "Towards
Monosemanticity") is that each feature means one thing. Two ways to make f sparse:

* "relu": act = ReLU, and the loss adds an L1 penalty on f. Because the penalty could be
  dodged by shrinking f and growing W_dec, the rows of W_dec are kept at unit norm.
* "topk" (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): keep only the k
  largest pre-activations per token (after a ReLU) and zero the rest. The sparsity is
  exactly k, with no penalty to tune and no shrinkage of the features it keeps.

The parameter names are SAELens's, so what you learn here reads across to real SAEs.

A transcoder (`toy_models.transcoder`) is the same machine reading one activation and
predicting another: the MLP's output from its input. The reading, splicing, evaluating and
training below serve both, through `cfg.hook_in` (what the coder reads) and `cfg.hook_out`
(what it predicts), which for an SAE are one hook.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from toy_models.checkpoints import checkpoint_dir, load_weights, read_description, save_checkpoint
from toy_models.threads import one_thread

#: The SAE shipped with the course: `load_sae(SHIPPED_SAE)`.
SHIPPED_SAE = "code-2l-sae"

Architecture = Literal["relu", "topk"]


@dataclass(frozen=True)
class SAEConfig:
    d_in: int  # width of the activation it reads
    d_sae: int  # number of features (the dictionary size)
    hook_name: str  # where in the model it reads (and writes back), e.g. "blocks.0.mlp.hook_post"
    architecture: Architecture = "relu"
    k: int = 0  # "topk" only: features kept per token
    l1_coefficient: float = 0.0  # "relu" only: weight of the sparsity penalty
    model_name: str = "code-2l"  # the shipped model whose activations it reads

    def __post_init__(self) -> None:
        if self.architecture not in ("relu", "topk"):
            raise ValueError(f"architecture must be 'relu' or 'topk', got {self.architecture!r}.")
        if self.architecture == "topk" and not 0 < self.k <= self.d_sae:
            raise ValueError(f"A topk SAE needs 0 < k <= d_sae, got k={self.k}, d_sae={self.d_sae}.")

    @property
    def layer(self) -> int:
        """The block the hook is in: 1 for "blocks.1.mlp.hook_post"."""
        return int(self.hook_name.split(".")[1])

    @property
    def hook_in(self) -> str:
        """What it reads: an SAE reads and predicts the same activation."""
        return self.hook_name

    @property
    def hook_out(self) -> str:
        return self.hook_name

    @classmethod
    def from_dict(cls, fields: dict) -> "SAEConfig":
        return cls(**fields)


class SparseAutoencoder(nn.Module):
    """encode: d_in -> d_sae sparse features; decode: back to d_in."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Random unit decoder rows, and the encoder as their transpose: at the start each
        feature reads along the direction it writes, a good place to begin (Conerly et al.)."""
        nn.init.normal_(self.W_dec)
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.T)

    def hidden_pre(self, acts: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """The features' pre-activations, before the ReLU (or the top-k)."""
        return (acts - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, acts: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        pre = F.relu(self.hidden_pre(acts))
        if self.cfg.architecture == "topk":
            return keep_top_k(pre, self.cfg.k)
        return pre

    def decode(self, feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        return feature_acts @ self.W_dec + self.b_dec

    def forward(self, acts: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_in"]:
        return self.decode(self.encode(acts))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every feature's decoder row to unit norm (in place)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))


def keep_top_k(x: Float[Tensor, "... d_sae"], k: int) -> Float[Tensor, "... d_sae"]:
    """Zero all but the k largest entries of each row."""
    values, indices = x.topk(k, dim=-1)
    return torch.zeros_like(x).scatter(-1, indices, values)


# ----------------------------------------------------------------------------------------
# Reading activations, and writing reconstructions back into the model

#: A forward hook as `run_with_hooks` takes it: (hook point name, fn(activation, hook)).
Hook = tuple[str, Callable[[Tensor, object], Tensor | None]]


def activations_at(
    model: nn.Module, tokens: Int[Tensor, "batch pos"], hook_names: Sequence[str]
) -> list[Float[Tensor, "batch pos d"]]:
    """The activations at each of `hook_names` for every token, from one forward pass
    (caching only those)."""
    _, cache = model.run_with_cache(tokens, names_filter=list(hook_names))
    return [cache[name] for name in hook_names]


def hook_activations(
    model: nn.Module, tokens: Int[Tensor, "batch pos"], hook_name: str
) -> Float[Tensor, "batch pos d_in"]:
    """The activation at `hook_name` for every token (caching only that one)."""
    return activations_at(model, tokens, [hook_name])[0]


@torch.no_grad()
def feature_activations(
    model: nn.Module, sae: SparseAutoencoder, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos d_sae"]:
    """Every feature's activation on every token of `tokens`."""
    return sae.encode(hook_activations(model, tokens, sae.cfg.hook_name))


def splice_hook(sae: SparseAutoencoder) -> Callable[[Tensor, object], Tensor]:
    """A forward hook that replaces the activation by the SAE's reconstruction of it."""
    return lambda acts, hook: sae(acts)


def splice_hooks(coder: nn.Module) -> list[Hook]:
    """Forward hooks that replace the activation at `coder.cfg.hook_out` by the coder's
    prediction of it from `coder.cfg.hook_in`. An SAE reads and writes one hook; a
    transcoder remembers the MLP's input, then overwrites the MLP's output."""
    hook_in, hook_out = coder.cfg.hook_in, coder.cfg.hook_out
    if hook_in == hook_out:
        return [(hook_out, splice_hook(coder))]
    seen = {}

    def remember_input(acts: Tensor, hook: object) -> None:  # None: the activation is unchanged
        seen["acts"] = acts

    return [(hook_in, remember_input), (hook_out, lambda acts, hook: coder(seen.pop("acts")))]


def zero_ablation_hook(acts: Tensor, hook: object) -> Tensor:
    return torch.zeros_like(acts)


# ----------------------------------------------------------------------------------------
# Metrics: is it sparse, does it reconstruct, does the model still work on its output?


def l0_norm(feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, ""]:
    """Features active per token, averaged over tokens."""
    return (feature_acts > 0).float().sum(dim=-1).mean()


def fraction_variance_explained(
    acts: Float[Tensor, "tokens d_in"], reconstruction: Float[Tensor, "tokens d_in"]
) -> Float[Tensor, ""]:
    """1 - (squared error) / (variance about the mean activation), pooled over all tokens.

    Pooled, not averaged per token: a token whose activation is close to the mean has a
    tiny denominator, and one such token would swamp an average of per-token ratios.
    """
    error = (acts - reconstruction).pow(2).sum()
    total = (acts - acts.mean(dim=0)).pow(2).sum()
    return 1 - error / total


def firing_frequency(feature_acts: Float[Tensor, "tokens d_sae"]) -> Float[Tensor, " d_sae"]:
    """The fraction of tokens on which each feature is active."""
    return (feature_acts > 0).float().mean(dim=0)


DENSE_THRESHOLD = 0.1  # a feature active on more than 10% of tokens is "dense"


def dead_and_dense_fractions(frequency: Float[Tensor, " d_sae"]) -> tuple[float, float]:
    """Shares of features that never fire, and that fire on more than DENSE_THRESHOLD of tokens."""
    return (frequency == 0).float().mean().item(), (frequency > DENSE_THRESHOLD).float().mean().item()


def ce_loss_recovered(ce_clean: float, ce_sae: float, ce_zero_ablation: float) -> float:
    """How much of the loss that zero-ablating the layer costs does the SAE win back?

    1 when splicing in the reconstruction costs nothing, 0 when it is as bad as zeros.
    """
    return (ce_zero_ablation - ce_sae) / (ce_zero_ablation - ce_clean)


@torch.no_grad()
def losses_with_hooks(
    model: nn.Module, tokens: Int[Tensor, "batch pos"], runs: dict[str, list[Hook]]
) -> dict[str, float]:
    """The model's next-token loss on `tokens` under each named set of forward hooks."""
    return {
        name: model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks).item() for name, hooks in runs.items()
    }


@torch.no_grad()
def spliced_losses(
    model: nn.Module, sae: nn.Module, tokens: Int[Tensor, "batch pos"], label: str = "sae"
) -> dict[str, float]:
    """Next-token loss of the model as it is, with the coder's prediction spliced in (under
    `label`: an SAE's reconstruction at its hook, a transcoder's in place of its MLP's
    output), and with that activation replaced by zeros."""
    return losses_with_hooks(model, tokens, {
        "clean": [],
        label: splice_hooks(sae),
        "zero_ablation": [(sae.cfg.hook_out, zero_ablation_hook)],
    })


@torch.no_grad()
def evaluate_sae(
    model: nn.Module,
    sae: nn.Module,
    tokens: Int[Tensor, "batch pos"],
    batch_size: int = 32,
    label: str = "sae",
) -> dict[str, float]:
    """The headline metrics of `sae` (or of a transcoder, under `label`) on `tokens`
    (validation windows). The variance explained is the predicted activation's: for an
    SAE its input, for a transcoder the MLP's output."""
    targets, predictions, feats, losses = [], [], [], []
    for chunk in tokens.split(batch_size):
        x, y = (acts.flatten(0, 1) for acts in activations_at(model, chunk, [sae.cfg.hook_in, sae.cfg.hook_out]))
        f = sae.encode(x)
        targets.append(y)
        feats.append(f)
        predictions.append(sae.decode(f))
        losses.append(spliced_losses(model, sae, chunk, label))
    targets, predictions, feats = torch.cat(targets), torch.cat(predictions), torch.cat(feats)
    ce = {key: sum(loss[key] for loss in losses) / len(losses) for key in losses[0]}
    dead, dense = dead_and_dense_fractions(firing_frequency(feats))
    return {
        "l0": l0_norm(feats).item(),
        "fraction_variance_explained": fraction_variance_explained(targets, predictions).item(),
        "dead_fraction": dead,
        "dense_fraction": dense,
        **{f"ce_{key}": value for key, value in ce.items()},
        "ce_loss_recovered": ce_loss_recovered(ce["clean"], ce[label], ce["zero_ablation"]),
        "n_tokens": float(targets.shape[0]),
    }


# ----------------------------------------------------------------------------------------
# Training


def sae_loss(
    sae: SparseAutoencoder, acts: Float[Tensor, "batch d_in"]
) -> tuple[Float[Tensor, ""], Float[Tensor, "batch d_sae"]]:
    """Squared error (summed over d_in, mean over tokens), plus for "relu" the L1 penalty on
    the feature activations; also returns those activations."""
    feature_acts = sae.encode(acts)
    reconstruction = sae.decode(feature_acts)
    loss = (reconstruction - acts).pow(2).sum(dim=-1).mean()
    if sae.cfg.architecture == "relu":
        loss = loss + sae.cfg.l1_coefficient * feature_acts.abs().sum(dim=-1).mean()
    return loss, feature_acts


@torch.no_grad()
def resample_dead_features(
    sae: nn.Module,
    dead: Tensor,
    acts: Float[Tensor, "batch d_in"],
    generator: torch.Generator,
    targets: Float[Tensor, "batch d_out"] | None = None,
) -> int:
    """Point every dead feature at an input the SAE reconstructs badly (Bricken et al.).

    Inputs are drawn with probability proportional to their squared error, so the revived
    features go where the dictionary is missing something. Returns how many were revived.

    An SAE's target is its input: a revived feature reads and writes along that input's
    offset from b_dec (which the encoder subtracts). A transcoder's (`targets` given) are
    two vectors: it writes along the target's offset from b_dec and reads along the
    input's offset from the batch's mean input, which its encoder bias subtracts, so that
    the feature fires on inputs like this one and not on every input.
    """
    dead_ids = dead.nonzero().flatten()
    if len(dead_ids) == 0:
        return 0
    predicted = acts if targets is None else targets
    error = (sae(acts) - predicted).pow(2).sum(dim=-1)
    picks = torch.multinomial(error / error.sum(), len(dead_ids), replacement=True, generator=generator)
    directions = F.normalize(predicted[picks] - sae.b_dec, dim=-1)
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if (~dead).any() else 1.0
    sae.W_dec[dead_ids] = directions
    if targets is None:
        sae.W_enc[:, dead_ids] = directions.T * alive_norm * 0.2
        sae.b_enc[dead_ids] = 0.0
    else:
        centre = acts.mean(dim=0)
        sae.W_enc[:, dead_ids] = F.normalize(acts[picks] - centre, dim=-1).T * alive_norm * 0.2
        sae.b_enc[dead_ids] = -(centre @ sae.W_enc[:, dead_ids])
    return len(dead_ids)


def train_sparse_coder(
    coder: nn.Module,
    loss_fn: Callable[[Tensor, Tensor | None], tuple[Float[Tensor, ""], Tensor]],
    inputs: Float[Tensor, "tokens d_in"],
    targets: Float[Tensor, "tokens d_out"] | None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    resample_every: int,
    generator: torch.Generator,
    progress: bool,
    desc: str,
) -> list[float]:
    """Train `coder` (an SAE, or a transcoder) in place with Adam on random batches of
    rows of `inputs` and `targets` (None: an SAE, whose target is its input); return its
    loss per step. `loss_fn(input_batch, target_batch)` returns the loss and the feature
    activations. `resample_every` > 0 revives, that often, the features that did not fire
    since the last check. Decoder rows are renormalised after every step."""
    with torch.no_grad():  # start the bias at the data's mean: the best constant guess
        coder.b_dec.copy_((inputs if targets is None else targets)[:batch_size].mean(dim=0))
    optimizer = torch.optim.Adam(coder.parameters(), lr=lr)
    fired = torch.zeros(coder.W_dec.shape[0], dtype=torch.bool)
    losses = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    with one_thread():
        for step in bar:
            rows = torch.randint(0, len(inputs), (batch_size,), generator=generator)
            batch = inputs[rows]
            target_batch = None if targets is None else targets[rows]
            loss, feature_acts = loss_fn(batch, target_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            coder.normalize_decoder()
            losses.append(loss.item())
            fired |= (feature_acts > 0).any(dim=0)
            if resample_every and (step + 1) % resample_every == 0 and step + 1 < steps * 0.8:
                if resample_dead_features(coder, ~fired, batch, generator, target_batch):
                    optimizer.state.clear()  # stale Adam moments would undo the reset
                fired.zero_()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def train_sae(
    cfg: SAEConfig,
    acts: Float[Tensor, "tokens d_in"],
    *,
    steps: int,
    batch_size: int = 4096,
    lr: float = 1e-3,
    resample_every: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[SparseAutoencoder, list[float]]:
    """Train a fresh SAE with Adam on random batches of `acts`; return it (eval mode) and
    its loss per step. `resample_every` > 0 revives, that often, the features that did not
    fire since the last check. Decoder rows are renormalised after every step."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sae = SparseAutoencoder(cfg)
    losses = train_sparse_coder(
        sae, lambda batch, _: sae_loss(sae, batch), acts, None, steps=steps, batch_size=batch_size, lr=lr,
        resample_every=resample_every, generator=generator, progress=progress, desc="training SAE",
    )
    return sae.eval(), losses


@torch.no_grad()
def collect_activations_at(
    model: nn.Module,
    corpus: Int[Tensor, " n"],
    hook_names: Sequence[str],
    n_windows: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> list[Float[Tensor, "tokens d"]]:
    """The activations at each of `hook_names` on every token of `n_windows` random
    windows of `corpus`, read in one pass: row i of each is the same token."""
    from toy_models.data import random_windows

    windows = random_windows(corpus, n_windows, model.cfg.n_ctx, generator=torch.Generator().manual_seed(seed))
    with one_thread():
        chunks = [
            [acts.flatten(0, 1) for acts in activations_at(model, chunk, hook_names)]
            for chunk in tqdm(windows.split(batch_size), desc="activations", disable=not progress)
        ]
    return [torch.cat(per_hook) for per_hook in zip(*chunks)]


def collect_activations(
    model: nn.Module,
    corpus: Int[Tensor, " n"],
    hook_name: str,
    n_windows: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> Float[Tensor, "tokens d_in"]:
    """The activation at `hook_name` on every token of `n_windows` random windows of `corpus`."""
    return collect_activations_at(
        model, corpus, [hook_name], n_windows, seed=seed, batch_size=batch_size, progress=progress
    )[0]


# ----------------------------------------------------------------------------------------
# Loading the shipped SAE


def load_sae(name: str = SHIPPED_SAE) -> SparseAutoencoder:
    """A shipped SAE in eval mode, from `toy_models/checkpoints/<name>/` (no network)."""
    directory = checkpoint_dir(name)
    description = read_description(directory)
    if description["kind"] != "sae":
        raise ValueError(f"{name!r} holds a {description['kind']!r} model, not an SAE.")
    return load_weights(directory, SparseAutoencoder(SAEConfig.from_dict(description["config"])))


# ----------------------------------------------------------------------------------------
# The shipped SAE: its recipe, and how to rebuild it


@dataclass(frozen=True)
class SAERecipe:
    sae: SAEConfig
    n_train_windows: int  # windows of n_ctx tokens from the training split, read once
    steps: int
    batch_size: int
    lr: float
    resample_every: int
    seed: int = 0
    n_eval_windows: int = 256  # validation windows the recorded metrics are measured on


SAE_RECIPES = {
    SHIPPED_SAE: SAERecipe(
        sae=SAEConfig(d_in=512, d_sae=1024, hook_name="blocks.0.mlp.hook_post", architecture="topk", k=24),
        n_train_windows=2048,
        steps=1000,
        batch_size=4096,
        lr=4e-3,
        resample_every=200,
    ),
}


def sweep_recipe(d_sae: int, k: int, seed: int = 0) -> SAERecipe:
    """Chapter 05's small SAEs: the shipped SAE's hook, a few hundred steps on 32k tokens."""
    return SAERecipe(
        sae=SAEConfig(d_in=512, d_sae=d_sae, hook_name="blocks.0.mlp.hook_post", architecture="topk", k=k),
        n_train_windows=256, steps=300, batch_size=2048, lr=4e-3, resample_every=100, seed=seed, n_eval_windows=64,
    )


#: Chapter 05's sweep (`mi-course train code-2l-sae-256-k8`, ...): two sizes, three
#: sparsities, and one of them again from another seed, to see which features come back.
SWEEP_SAES = {
    **{f"code-2l-sae-{d_sae}-k{k}": sweep_recipe(d_sae, k) for d_sae in (64, 256) for k in (2, 8, 32)},
    "code-2l-sae-256-k8-seed1": sweep_recipe(256, 8, seed=1),
}
SAE_RECIPES.update(SWEEP_SAES)


def validation_windows(n_windows: int, n_ctx: int = 128, seed: int = 0) -> Int[Tensor, "batch pos"]:
    """Windows of the validation split: the SAE never saw these files."""
    from toy_models.data import load_python_corpus, random_windows

    return random_windows(load_python_corpus("validation"), n_windows, n_ctx, generator=torch.Generator().manual_seed(seed))


def train_and_save(name: str, directory: Path, model: nn.Module, progress: bool = True) -> dict[str, float]:
    """Rebuild SAE `name` from its recipe into `directory`, on `model` (the recipe's
    `sae.model_name`, which the caller loads); return its validation metrics."""
    from toy_models.data import load_python_corpus

    recipe = SAE_RECIPES[name]
    model = model.requires_grad_(False)
    started = time.perf_counter()
    acts = collect_activations(
        model, load_python_corpus("train"), recipe.sae.hook_name, recipe.n_train_windows,
        seed=recipe.seed, progress=progress,
    )
    sae, losses = train_sae(
        recipe.sae, acts, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
        resample_every=recipe.resample_every, seed=recipe.seed, progress=progress,
    )
    seconds = time.perf_counter() - started
    with one_thread():
        metrics = evaluate_sae(model, sae, validation_windows(recipe.n_eval_windows, model.cfg.n_ctx))
    record = {key: value for key, value in asdict(recipe).items() if key != "sae"}
    record["train_seconds"] = round(seconds, 1)
    save_checkpoint(directory, sae, recipe.sae, kind="sae", recipe=record, metrics=metrics, loss_curve=losses)
    return metrics


# ----------------------------------------------------------------------------------------
# What some of the shipped SAE's features mean

#: Features of the shipped SAE labelled from their top-activating snippets on the first
#: 96 x 128 bytes of the validation split. Each label is a rule in
#: `toy_models.code_concepts.CONCEPTS`, so a test can check it on those snippets.
FEATURE_LABELS: dict[int, str] = {
    736: "in a comment",
    10: "in a comment",
    765: "a digit",
    956: "an uppercase letter",
    1008: "in leading indentation",
    452: "in an identifier",
    382: "in 'self'",
    784: "in the attribute after 'self.'",
    993: "a colon",
    897: "a newline",
    791: "an opening bracket",
    785: "an equals sign",
    1002: "a comma",
}

#: What the top snippets show, more precisely than the checkable rule.
FEATURE_NOTES: dict[int, str] = {
    736: "the space after a `#` that starts a top-level comment line",
    10: "the `#` that starts an indented comment",
    765: "digits inside dates and version numbers (in comments)",
    956: "letters inside ALL-CAPS words (license text, constants)",
    1008: "the first space of the indentation after a statement's newline",
    452: "the first letter of a statement, right after its indentation",
    382: "the `f` of `self`",
    784: "the attribute name right after `self.`",
    993: "the colon that ends a `def`/`class` header, right after `)`",
    897: "the newline ending a statement that closes with `)`",
    791: "the `[` of a subscript or slice",
    785: "the `=` of an assignment, with spaces around it",
    1002: "the comma between a call's arguments",
}

#: The feature chapter 04 steers with.
STEERING_FEATURE: int = 956
