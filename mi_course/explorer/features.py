"""What each feature of a sparse autoencoder does: the numbers behind the feature explorer.

A feature is known by two things (Bricken et al. 2023, "Towards Monosemanticity"):

* **what makes it fire**: the text on which it is most active, how often it fires at all,
  and how its activations are spread (a histogram);
* **what it does when it fires**: its decoder direction, carried through the rest of the
  model's linear path to the unembedding, says which next tokens it pushes up (promotes)
  and which it pushes down (suppresses).

The first half needs the model run over text; the second needs only weights. Every
function here is pure: the model, the SAE and the tokens come in as arguments, so the
explorer works with any SAE that has `cfg.hook_name`, `encode`, and `W_dec [d_sae, d_in]`.
The first half takes any function from tokens to feature activations (`sparse_activations`),
so the attribution-graph page reads a transcoder's features with it too.

Activations are kept *sparse* (the nonzero entries only): an SAE's features are off on
almost every token, so a list of (token, feature, value) triples holds everything the
explorer needs in a sliver of the memory of a dense [tokens, d_sae] table.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from toy_models.data import load_python_corpus

#: MLP neurons of block L: a feature's direction lives in neuron space, so W_out carries it
#: into the residual stream.
MLP_NEURON_HOOK = re.compile(r"^blocks\.(\d+)\.mlp\.hook_post$")
#: Hooks that already live in the residual stream's basis (d_model): W_dec is a residual
#: direction as it stands.
RESIDUAL_HOOK = re.compile(r"^blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|mlp_out|attn_out)$")


def validation_windows(n_windows: int, window_len: int, *, seed: int = 0) -> Int[Tensor, "window pos"]:
    """``n_windows`` windows of the validation corpus, drawn without replacement.

    The corpus is cut into consecutive, non-overlapping windows and a seeded random subset
    is taken. Non-overlapping matters here (unlike for training): overlapping windows would
    show the same text twice among a feature's top snippets.
    """
    corpus = load_python_corpus("validation")
    n_available = corpus.shape[0] // window_len
    if not 1 <= n_windows <= n_available:
        raise ValueError(
            f"n_windows={n_windows}: the validation corpus has {n_available} windows of {window_len} bytes."
        )
    all_windows = corpus[: n_available * window_len].view(n_available, window_len)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n_available, generator=generator)[:n_windows].sort().values
    return all_windows[chosen]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is not a bool
class SparseActivations:
    """The nonzero feature activations on a batch of windows, one entry per (token, feature).

    ``token_index`` counts tokens row by row: token (w, p) is ``w * n_pos + p``. Each
    window's largest activation of each feature, and where it is, are kept densely as well:
    they are small, and they are what a feature's top snippets are chosen from.
    """

    n_windows: int
    n_pos: int
    d_sae: int  # the number of features, of an SAE or any other dictionary
    token_index: Int[Tensor, " nnz"]
    feature: Int[Tensor, " nnz"]
    value: Float[Tensor, " nnz"]
    window_max: Float[Tensor, "window d_sae"]
    window_argmax: Int[Tensor, "window d_sae"]

    @property
    def n_tokens(self) -> int:
        return self.n_windows * self.n_pos

    @property
    def window(self) -> Int[Tensor, " nnz"]:
        return self.token_index.long() // self.n_pos

    @property
    def pos(self) -> Int[Tensor, " nnz"]:
        return self.token_index.long() % self.n_pos


#: How the explorer reads features: a batch of tokens in, every feature's activation on
#: every token out. Any dictionary fits: an SAE, a transcoder, a single layer's neurons.
FeatureActivations = Callable[[Int[Tensor, "batch pos"]], Float[Tensor, "batch pos d_features"]]


def encoder_at_hook(model: nn.Module, hook_name: str, encode: Callable[[Tensor], Tensor]) -> FeatureActivations:
    """Features that ``encode`` reads from the model's activation at ``hook_name``: an SAE's
    (``sae.cfg.hook_name``, ``sae.encode``) or a transcoder's (``cfg.hook_in``, ``encode``)."""

    def feature_activations(tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_features"]:
        _, cache = model.run_with_cache(tokens, names_filter=hook_name)
        return encode(cache[hook_name])

    return feature_activations


@torch.no_grad()
def sparse_activations(
    feature_activations: FeatureActivations,
    tokens: Int[Tensor, "window pos"],
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> SparseActivations:
    """Read the features on ``tokens``, ``batch_size`` windows at a time, and keep the
    nonzero activations."""
    n_windows, n_pos = tokens.shape
    token_index, feature, value, window_max, window_argmax = [], [], [], [], []
    offset = 0
    for batch in tqdm(tokens.split(batch_size), desc="feature activations", disable=not progress):
        acts = feature_activations(batch).float()  # [batch, pos, d_features]
        best = acts.max(dim=1)
        window_max.append(best.values)
        window_argmax.append(best.indices)
        rows, columns = acts.flatten(0, 1).nonzero(as_tuple=True)
        # int32 halves the memory of the entries, which can number tens of millions.
        token_index.append((rows + offset).int())
        feature.append(columns.int())
        value.append(acts.flatten(0, 1)[rows, columns])
        offset += batch.numel()
    return SparseActivations(
        n_windows=n_windows,
        n_pos=n_pos,
        d_sae=acts.shape[-1],
        token_index=torch.cat(token_index),
        feature=torch.cat(feature),
        value=torch.cat(value),
        window_max=torch.cat(window_max),
        window_argmax=torch.cat(window_argmax),
    )


def sparse_feature_activations(
    model: nn.Module,
    sae: nn.Module,
    tokens: Int[Tensor, "window pos"],
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> SparseActivations:
    """Run the model over ``tokens``, encode the activation at ``sae.cfg.hook_name``, and
    keep the nonzero feature activations."""
    encoder = encoder_at_hook(model, sae.cfg.hook_name, sae.encode)
    return sparse_activations(encoder, tokens, batch_size=batch_size, progress=progress)


def firing_frequency(acts: SparseActivations) -> Float[Tensor, " d_sae"]:
    """The fraction of tokens on which each feature is nonzero."""
    return torch.bincount(acts.feature.long(), minlength=acts.d_sae).float() / acts.n_tokens


def max_activation(acts: SparseActivations) -> Float[Tensor, " d_sae"]:
    """Each feature's largest activation; 0 for a feature that never fires."""
    maxima = torch.zeros(acts.d_sae)
    return maxima.scatter_reduce(0, acts.feature.long(), acts.value, reduce="amax", include_self=True)


def activation_histogram(
    acts: SparseActivations, n_bins: int = 20, *, chunk_size: int = 2**22
) -> Int[Tensor, "d_sae n_bins"]:
    """Counts of each feature's nonzero activations in ``n_bins`` equal bins from 0 to its
    maximum (bin i covers [i, i+1) * max / n_bins; the maximum itself goes in the last bin).

    Each feature gets its own scale: a shared one would squash rare, weak features into bin 0.
    """
    maxima = max_activation(acts).clamp_min(1e-12)
    counts = torch.zeros(acts.d_sae * n_bins, dtype=torch.long)
    for start in range(0, acts.value.shape[0], chunk_size):  # chunks bound the memory used
        chunk = slice(start, start + chunk_size)
        feature = acts.feature[chunk].long()
        bins = (acts.value[chunk] / maxima[feature] * n_bins).long().clamp(0, n_bins - 1)
        counts += torch.bincount(feature * n_bins + bins, minlength=acts.d_sae * n_bins)
    return counts.view(acts.d_sae, n_bins)


@dataclass(frozen=True, eq=False)
class TopActivations:
    """Per feature, its k most active windows (at most one entry per window, so the
    top snippets show k different pieces of text), best first. A feature that fires in
    fewer than k windows has value 0 in the unused slots."""

    window: Int[Tensor, "d_sae k"]
    pos: Int[Tensor, "d_sae k"]
    value: Float[Tensor, "d_sae k"]


def top_activations(acts: SparseActivations, k: int) -> TopActivations:
    value, window = acts.window_max.T.topk(min(k, acts.n_windows), dim=-1)
    return TopActivations(window=window, pos=acts.window_argmax.T.gather(1, window), value=value)


def window_activations(
    acts: SparseActivations, feature: Int[Tensor, " n"], window: Int[Tensor, " n"], *, chunk_size: int = 2**22
) -> Float[Tensor, "n pos"]:
    """The dense activations of ``feature[i]`` over every position of ``window[i]``."""
    # Number the requested (feature, window) pairs, then drop each sparse entry into its row.
    row_of_key = torch.full((acts.d_sae * acts.n_windows,), -1, dtype=torch.long)
    row_of_key[feature * acts.n_windows + window] = torch.arange(feature.shape[0])
    dense = torch.zeros(feature.shape[0], acts.n_pos)
    for start in range(0, acts.value.shape[0], chunk_size):  # chunks bound the memory used
        chunk = slice(start, start + chunk_size)
        token_index = acts.token_index[chunk].long()
        row = row_of_key[acts.feature[chunk].long() * acts.n_windows + token_index // acts.n_pos]
        wanted = row >= 0
        dense[row[wanted], token_index[wanted] % acts.n_pos] = acts.value[chunk][wanted]
    return dense


def decoder_residual_directions(model: nn.Module, sae: nn.Module) -> Float[Tensor, "d_sae d_model"]:
    """Each feature's decoder direction, as a direction in the residual stream.

    An SAE on MLP neurons writes in neuron space, and the MLP's output matrix W_out is the
    only step from there to the residual stream; an SAE on the residual stream (or on an
    MLP's or attention's output, which is added to it as it stands) writes there already.
    """
    hook_name = sae.cfg.hook_name
    mlp = MLP_NEURON_HOOK.match(hook_name)
    if mlp:
        return sae.W_dec @ model.blocks[int(mlp.group(1))].mlp.W_out
    if RESIDUAL_HOOK.match(hook_name):
        return sae.W_dec
    raise ValueError(
        f"No linear path from {hook_name!r} to the residual stream is known: the explorer reads "
        "SAEs on MLP neurons (blocks.L.mlp.hook_post) or on the residual stream "
        "(blocks.L.hook_resid_pre/mid/post, hook_mlp_out, hook_attn_out)."
    )


def feature_logit_effects(
    model: nn.Module, sae: nn.Module, *, fold_ln_final: bool = True
) -> Float[Tensor, "d_sae d_vocab"]:
    """How much each feature's decoder direction raises each token's logit, per unit of
    activation: the direct path through the unembedding (later layers are ignored).

    The final LayerNorm scales each residual dimension by ``ln_final.w`` before the
    unembedding; folding it in gives the direction's effect as the model reads it. LN's
    division by the stream's norm is left out: it rescales every token alike.
    """
    with torch.no_grad():
        directions = decoder_residual_directions(model, sae)
        if fold_ln_final and hasattr(model.ln_final, "w"):
            directions = directions * model.ln_final.w
        return directions @ model.W_U


TokenScores = tuple[Int[Tensor, "feature k"], Float[Tensor, "feature k"]]


def promoted_tokens(effects: Float[Tensor, "feature d_vocab"], k: int) -> tuple[TokenScores, TokenScores]:
    """The k most promoted tokens (largest effect first) and the k most suppressed
    (most negative first), as (token ids, effects) pairs."""
    up = effects.topk(k, dim=-1)
    down = effects.topk(k, dim=-1, largest=False)
    return (up.indices, up.values), (down.indices, down.values)


@dataclass(frozen=True, eq=False)
class FeatureSummary:
    """Everything the explorer shows, for every feature of one SAE."""

    tokens: Int[Tensor, "window pos"]
    acts: SparseActivations
    frequency: Float[Tensor, " d_sae"]
    max_activation: Float[Tensor, " d_sae"]
    histogram: Int[Tensor, "d_sae n_bins"]
    top: TopActivations
    logit_effects: Float[Tensor, "d_sae d_vocab"]


def summarize_features(
    model: nn.Module,
    sae: nn.Module,
    tokens: Int[Tensor, "window pos"],
    *,
    top_k: int = 8,
    n_bins: int = 20,
    batch_size: int = 64,
    progress: bool = True,
) -> FeatureSummary:
    """Run the model once over ``tokens`` and summarise every feature of ``sae``."""
    acts = sparse_feature_activations(model, sae, tokens, batch_size=batch_size, progress=progress)
    return FeatureSummary(
        tokens=tokens,
        acts=acts,
        frequency=firing_frequency(acts),
        max_activation=max_activation(acts),
        histogram=activation_histogram(acts, n_bins),
        top=top_activations(acts, top_k),
        logit_effects=feature_logit_effects(model, sae),
    )
