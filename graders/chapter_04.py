"""Graders for chapter 04, superposition and sparse autoencoders.

The references are `solutions/superposition_saes.py`. Each grader runs the learner's
function and the reference on seeded random inputs (feature batches, toy-model weights,
small random SAEs of the course's `SparseAutoencoder` class) and, for the CE-loss
exercise, on the shipped `code-2l` and its shipped SAE. Where the outputs differ,
diagnostics compute what each common mistake would have given (the L1 penalty on the
wrong tensor, a decoder normalised along the wrong axis, variance explained averaged per
token, L0 counted per sequence, the wrong baseline, ...) and name the mistake that matches.

The learner's objects are only called, with tensors, numbers and `toy_models` modules.
"""

from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from graders.core import Chapter, GraderFailure, as_tensor, compare_tensors, looks_like
from graders.models import shipped
from solutions import superposition_saes as reference
from toy_models.data import load_python_corpus, random_windows
from toy_models.sae import SAEConfig, SparseAutoencoder, load_sae

CHAPTER = Chapter("04_superposition_and_saes")
SEEDS = ({}, {"seed": 1})


# --------------------------------------------------------------------------- helpers

def random_sae(seed: int, d_in: int = 12, d_sae: int = 40, architecture: str = "relu", k: int = 0) -> SparseAutoencoder:
    """A small SAE with random weights and biases, so that about half its features fire."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(d_in, d_sae, "blocks.0.mlp.hook_post", architecture, k=k))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in sae.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))
        sae.normalize_decoder()
    return sae.eval()


def random_acts(seed: int, shape: tuple[int, ...]) -> Tensor:
    """Activations with a mean far from zero and a different scale in every dimension,
    like real ones, so that subtracting the wrong mean shows."""
    generator = torch.Generator().manual_seed(seed)
    d_in = shape[-1]
    mean = 2 * torch.randn(d_in, generator=generator)
    scale = torch.rand(d_in, generator=generator) * 2 + 0.2
    return mean + scale * torch.randn(shape, generator=generator)


def random_feature_acts(seed: int, shape: tuple[int, ...], p_active: float = 0.2) -> Tensor:
    """Sparse, non-negative feature activations."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=generator) * 3
    return torch.where(torch.rand(shape, generator=generator) < p_active, values, 0.0)


@cache
def validation_tokens(seed: int):
    corpus = load_python_corpus("validation")
    return random_windows(corpus, 6, 64, generator=torch.Generator().manual_seed(100 + seed))


# --------------------------------------------------------------------------- superposition

@CHAPTER.exercise("importance_weighted_loss", points=1, reference=reference.importance_weighted_loss, variants=SEEDS,
                  hint="(importance * (x - x_hat) ** 2).sum(dim=-1).mean(dim=0): one loss per instance.")
def grade_importance_weighted_loss(importance_weighted_loss, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for batch, instances, features in ((16, 3, 5), (7, 1, 20)):
        x = torch.rand(batch, instances, features, generator=generator)
        x_hat = torch.rand(batch, instances, features, generator=generator)
        importance = 0.8 ** torch.arange(features).float()
        error = (x - x_hat) ** 2
        compare_tensors(
            importance_weighted_loss(x.clone(), x_hat.clone(), importance.clone()),
            reference.importance_weighted_loss(x, x_hat, importance),
            what=f"importance_weighted_loss on a batch of shape {(batch, instances, features)}",
            mistakes=[
                (looks_like(lambda: error.sum(-1).mean(0)), "you left out the importance weights."),
                (looks_like(lambda: (importance**2 * error).sum(-1).mean(0)),
                 "you weighted by importance squared; the paper weights each squared error by I_i itself."),
                (looks_like(lambda: (importance * error).mean(-1).mean(0)),
                 "you averaged over the features: sum the weighted errors over features, average over the batch."),
                (looks_like(lambda: (importance * error).sum(-1).sum(0)),
                 "you summed over the batch: average over it, so the loss does not grow with the batch size."),
                (lambda actual: actual.shape == (), "return one loss per instance, shape [instances], not one number."),
            ],
        )


@CHAPTER.exercise("feature_dimensionality", points=2, reference=reference.feature_dimensionality, variants=SEEDS,
                  hint="Normalise column i (W_i / ||W_i||), dot it with every column W_j, square, sum over j "
                       "(j = i included), and divide ||W_i||^2 by that.")
def grade_feature_dimensionality(feature_dimensionality, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 4, 9, generator=generator)
    # A pentagon in a plane (dimensionality 2/5 each) and an antipodal pair (1/2 each).
    angles = torch.arange(5) * 2 * torch.pi / 5
    pentagon = torch.stack([angles.cos(), angles.sin()])
    antipodal = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    # A feature the model dropped (a zero column): its dimensionality is 0, where 0 / 0 gives NaN.
    dropped = torch.tensor([[0.6, 0.0, 1.0], [0.8, 0.0, 0.0]])
    cases = [("random W of shape (3, 4, 9)", W), ("a pentagon in 2 dimensions", pentagon[None]),
             ("an antipodal pair and a feature of its own", antipodal[None]),
             ("two features and a dropped one (column 1 is zero)", dropped[None])]
    for description, weights in cases:
        unit = F.normalize(weights, dim=1)
        overlaps = torch.einsum("nhi,nhj->nij", unit, weights)
        raw = torch.einsum("nhi,nhj->nij", weights, weights)
        norms_sq = weights.norm(dim=1) ** 2
        compare_tensors(
            feature_dimensionality(weights.clone()), reference.feature_dimensionality(weights),
            what=f"feature_dimensionality for {description}",
            mistakes=[
                (looks_like(lambda: norms_sq / (raw**2).sum(-1)),
                 "you dotted W_i with W_j without normalising W_i first: use W_i_hat = W_i / ||W_i||."),
                (looks_like(lambda: norms_sq / ((overlaps**2).sum(-1) - norms_sq)),
                 "you left out the j = i term of the sum; it is ||W_i||^2 itself, which keeps D_i <= 1."),
                (looks_like(lambda: norms_sq / overlaps.abs().sum(-1)),
                 "you summed |W_i_hat . W_j| without squaring it."),
                (looks_like(lambda: weights.norm(dim=1) / (overlaps**2).sum(-1)),
                 "the numerator is ||W_i|| squared."),
                (lambda actual: actual.isnan().any(),
                 "a feature whose column is zero (the model dropped it) has dimensionality 0, not NaN: guard the "
                 "divisions by ||W_i|| and by the sum, which are 0 / 0 there (e.g. .clamp_min(1e-8))."),
            ],
        )


# --------------------------------------------------------------------------- the SAE

@CHAPTER.exercise("topk_activation", points=1, reference=reference.topk_activation, variants=SEEDS,
                  hint="ReLU first, then values, indices = x.topk(k, dim=-1); scatter the values into zeros.")
def grade_topk_activation(topk_activation, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # Mostly negative rows, so that some have fewer than k positive entries; and k = d_sae, which keeps every
    # positive entry.
    for shape, k in (((6, 10), 3), ((2, 5, 16), 4), ((4, 6), 6)):
        pre = torch.randn(shape, generator=generator) - 0.8
        values, indices = pre.topk(k, dim=-1)
        compare_tensors(
            topk_activation(pre.clone(), k), reference.topk_activation(pre, k),
            what=f"topk_activation on pre-activations of shape {shape}, k={k}",
            mistakes=[
                (looks_like(lambda: torch.zeros_like(pre).scatter(-1, indices, values)),
                 "you kept negative values: apply the ReLU too, so that a feature is never negatively active."),
                (looks_like(lambda: F.relu(pre).topk(k, dim=-1).values),
                 "you returned only the k values; return a tensor shaped like the input, zeros elsewhere."),
                (looks_like(lambda: torch.zeros_like(pre).scatter(-1, pre.abs().topk(k, dim=-1).indices,
                                                                  F.relu(pre).gather(-1, pre.abs().topk(k, dim=-1).indices))),
                 "you chose the k largest in absolute value: choose the k largest values."),
            ],
        )


@CHAPTER.exercise("sae_training_loss", points=2, reference=reference.sae_training_loss, variants=SEEDS,
                  hint="f = sae.encode(acts); x_hat = sae.decode(f); squared error summed over d_in, mean over "
                       "the batch, plus l1_coefficient * f.abs().sum(-1).mean().")
def grade_sae_training_loss(sae_training_loss, *, seed=0):
    sae = random_sae(seed)
    acts = random_acts(seed, (32, sae.cfg.d_in))
    f = sae.encode(acts).detach()
    x_hat = sae.decode(f).detach()
    mse = (x_hat - acts).pow(2).sum(-1).mean()
    pre = sae.hidden_pre(acts).detach()
    for l1 in (0.3, 1.7):
        compare_tensors(
            as_tensor(sae_training_loss(sae, acts.clone(), l1)), reference.sae_training_loss(sae, acts, l1),
            what=f"sae_training_loss of a random SAE (d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}) with l1_coefficient={l1}",
            mistakes=[
                (looks_like(lambda: mse + l1 * x_hat.abs().sum(-1).mean()),
                 "you put the L1 penalty on the reconstruction; it belongs on the feature activations "
                 "sae.encode(acts), which are what must be sparse."),
                (looks_like(lambda: mse + l1 * pre.abs().sum(-1).mean()),
                 "you put the L1 penalty on the pre-activations (before the ReLU); penalise the feature "
                 "activations sae.encode(acts): a negative pre-activation is already an inactive feature."),
                (looks_like(lambda: mse + l1 * acts.abs().sum(-1).mean()),
                 "you put the L1 penalty on the input activations; it belongs on sae.encode(acts)."),
                (looks_like(lambda: (x_hat - acts).pow(2).mean() + l1 * f.abs().sum(-1).mean()),
                 "you averaged the squared error over d_in as well: sum it over d_in, average over the batch."),
                (looks_like(lambda: mse), "the L1 penalty is missing."),
                (looks_like(lambda: mse + f.abs().sum(-1).mean()),
                 "you left out l1_coefficient: the penalty is l1_coefficient times the L1 norm."),
                (looks_like(lambda: mse + l1 * f.pow(2).sum(-1).mean()),
                 "you penalised the squared feature activations (L2); the sparsity penalty is their L1 norm."),
            ],
        )


@CHAPTER.exercise("normalize_decoder", points=1, reference=reference.normalize_decoder, variants=SEEDS,
                  hint="Each feature's direction is a row of W_dec [d_sae, d_in]: divide by W_dec.norm(dim=-1, keepdim=True).")
def grade_normalize_decoder(normalize_decoder, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    W_dec = 3 * torch.randn(24, 10, generator=generator)
    actual = normalize_decoder(W_dec.clone())
    compare_tensors(
        actual, reference.normalize_decoder(W_dec), what="normalize_decoder of a random W_dec of shape (24, 10)",
        mistakes=[
            (looks_like(lambda: W_dec),
             "W_dec came back unchanged: the decoder is not normalised. Without unit rows the L1 penalty "
             "can be dodged by shrinking the activations and growing the decoder."),
            (looks_like(lambda: W_dec / W_dec.norm(dim=0, keepdim=True)),
             "you normalised the columns (dim 0); each feature's direction is a row of W_dec, so normalise dim -1."),
            (looks_like(lambda: W_dec / W_dec.norm()), "you divided by the norm of the whole matrix; normalise each row."),
        ],
    )


# --------------------------------------------------------------------------- metrics

@CHAPTER.exercise("l0_norm", points=1, reference=reference.l0_norm, variants=SEEDS,
                  hint="(feature_acts > 0).float().sum(dim=-1).mean(): count per token, then average over all tokens.")
def grade_l0_norm(l0_norm, *, seed=0):
    for shape in ((50, 30), (4, 9, 30)):
        f = random_feature_acts(seed, shape)
        active = (f > 0).float()
        compare_tensors(
            as_tensor(l0_norm(f.clone())), torch.tensor(reference.l0_norm(f)),
            what=f"l0_norm of feature activations of shape {shape}",
            mistakes=[
                (looks_like(lambda: (active.flatten(0, -2).amax(0)).sum()),
                 "you counted the features active anywhere in the batch; L0 counts per token, then averages."),
                (looks_like(lambda: active.sum(dim=tuple(range(1, f.ndim))).mean()),
                 "you counted per sequence (over positions and features) instead of per token."),
                (looks_like(lambda: f.sum(-1).mean()), "you summed the activations (that is the L1 norm); count the non-zero ones."),
                (looks_like(lambda: active.mean()), "you averaged over the features too: L0 is a count per token, not a fraction."),
                (looks_like(lambda: active.sum()), "you summed over every token: average over them."),
            ],
        )


@CHAPTER.exercise("fraction_variance_explained", points=2, reference=reference.fraction_variance_explained,
                  variants=SEEDS,
                  hint="1 - ((acts - reconstruction)**2).sum() / ((acts - acts.mean(dim=0))**2).sum(): "
                       "one ratio of totals, with the mean taken over tokens (per dimension).")
def grade_fraction_variance_explained(fraction_variance_explained, *, seed=0):
    acts = random_acts(seed, (64, 10))
    noise = torch.randn(acts.shape, generator=torch.Generator().manual_seed(seed + 7))
    # A reconstruction whose error differs from token to token, as real ones do.
    reconstruction = acts + noise * torch.linspace(0.1, 1.5, 64)[:, None]
    error = (acts - reconstruction).pow(2)
    centred = acts - acts.mean(dim=0)
    compare_tensors(
        as_tensor(fraction_variance_explained(acts.clone(), reconstruction.clone())),
        torch.tensor(reference.fraction_variance_explained(acts, reconstruction)),
        what="fraction_variance_explained on 64 tokens of 10-d activations",
        mistakes=[
            (looks_like(lambda: (1 - error.sum(-1) / centred.pow(2).sum(-1)).mean()),
             "you averaged per-token ratios; pool the squared error and the variance over all tokens first, "
             "then divide once (tokens near the mean would otherwise dominate)."),
            (looks_like(lambda: 1 - error.sum() / acts.pow(2).sum()),
             "you did not subtract the mean: the variance is measured about the mean activation, acts.mean(dim=0)."),
            (looks_like(lambda: 1 - error.sum() / (acts - acts.mean()).pow(2).sum()),
             "you subtracted the mean of every entry, acts.mean(); subtract each dimension's mean over tokens, "
             "acts.mean(dim=0)."),
            (looks_like(lambda: 1 - error.sum() / (acts - acts.mean(dim=-1, keepdim=True)).pow(2).sum()),
             "you subtracted each token's own mean (over dimensions); subtract the mean over tokens, acts.mean(dim=0)."),
            (looks_like(lambda: (1 - error.sum(0) / centred.pow(2).sum(0)).mean()),
             "you averaged per-dimension ratios; pool over dimensions as well, then divide once."),
            (looks_like(lambda: error.sum() / centred.pow(2).sum()),
             "you returned the fraction *unexplained*: subtract it from 1."),
            (looks_like(lambda: 1 - error.sum() / (acts.var(dim=0).sum() * len(acts))),
             "you used the unbiased variance, acts.var(dim=0), which divides by n - 1: the total squared distance "
             "from the mean is acts.var(dim=0, unbiased=False) * n (or just sum the squared distances)."),
        ],
    )


@CHAPTER.exercise("dead_and_dense_fractions", points=1, reference=reference.dead_and_dense_fractions, variants=SEEDS,
                  hint="frequency = (feature_acts > 0).float().mean(dim=0) per feature; dead: frequency == 0, "
                       "dense: frequency > dense_threshold; return the share of features of each kind.")
def grade_dead_and_dense_fractions(dead_and_dense_fractions, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens, d_sae = 200, 50
    rates = torch.rand(d_sae, generator=generator) * 0.3
    rates[:7] = 0.0  # dead
    values = torch.rand(tokens, d_sae, generator=generator) * 4
    f = torch.where(torch.rand(tokens, d_sae, generator=generator) < rates, values, 0.0)
    # Features that fire on exactly 10% and on exactly 25% of the tokens: at a threshold, which is not above it.
    for feature, share in ((7, 0.1), (8, 0.1), (9, 0.25)):
        f[:, feature] = 0.0
        f[torch.randperm(tokens, generator=generator)[:round(share * tokens)], feature] = 1.0 + share
    frequency = (f > 0).float().mean(dim=0)
    per_token = (f > 0).float().mean(-1)
    for threshold in (0.1, 0.25):
        actual = dead_and_dense_fractions(f.clone(), threshold)
        if not isinstance(actual, (tuple, list)) or len(actual) != 2:
            raise GraderFailure(f"dead_and_dense_fractions should return a pair (dead, dense), got {actual!r}.")
        compare_tensors(
            torch.tensor([float(as_tensor(value)) for value in actual]),
            torch.tensor(reference.dead_and_dense_fractions(f, threshold)),
            what=f"(dead, dense) fractions for 50 features over 200 tokens, dense_threshold={threshold} (features 7 "
                 "and 8 fire on exactly 10% of the tokens, feature 9 on exactly 25%)",
            mistakes=[
                (looks_like(lambda: torch.tensor([(frequency == 0).float().mean(), (frequency >= threshold).float().mean()])),
                 "you counted a feature that fires on exactly dense_threshold of the tokens as dense: dense means "
                 "*more* often than the threshold, frequency > dense_threshold."),
                (looks_like(lambda: torch.tensor(reference.dead_and_dense_fractions(f, 0.1))),
                 "you ignored dense_threshold and used 0.1: compare with the threshold you are given."),
                (looks_like(lambda: torch.tensor([(frequency == 0).float().mean(), (f.mean(0) > threshold).float().mean()])),
                 "you called a feature dense when its *mean activation* is above the threshold; use how often it fires."),
                (looks_like(lambda: torch.tensor([(frequency == 0).float().sum(), (frequency > threshold).float().sum()])),
                 "you returned counts of features; return fractions of d_sae."),
                (looks_like(lambda: torch.tensor([(per_token == 0).float().mean(), (per_token > threshold).float().mean()])),
                 "you computed the frequency over the wrong axis (per token); per feature, average over tokens (dim 0)."),
            ],
        )


@CHAPTER.exercise("ce_loss_recovered", points=2, reference=reference.ce_loss_recovered, variants=SEEDS,
                  hint="Three losses on the same tokens: clean, with the hook's output replaced by sae(acts), and "
                       "replaced by zeros (model.run_with_hooks(tokens, return_type='loss', fwd_hooks=[(name, fn)])). "
                       "Then (zero - sae) / (zero - clean).")
def grade_ce_loss_recovered(ce_loss_recovered, *, seed=0):
    model = shipped("code-2l")
    tokens = validation_tokens(seed)
    # The shipped SAE, damaged so that its score is well inside (0, 1).
    sae = load_sae()
    with torch.no_grad():
        sae.W_dec.mul_(0.6 if seed == 0 else 0.4)
        hook = sae.cfg.hook_name
        clean = model(tokens, return_type="loss")
        spliced = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, lambda a, hook: sae(a))])
        zero = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, lambda a, hook: torch.zeros_like(a))])
        mean = model.run_with_hooks(
            tokens, return_type="loss", fwd_hooks=[(hook, lambda a, hook: a.mean(dim=(0, 1)).expand_as(a))])
        compare_tensors(
            as_tensor(ce_loss_recovered(model, sae, tokens.clone())),
            torch.tensor(reference.ce_loss_recovered(model, sae, tokens)),
            what=f"ce_loss_recovered of a (damaged) SAE at {hook} on 6 validation windows",
            mistakes=[
                (looks_like(lambda: (spliced - clean) / (zero - clean)),
                 "you computed the share of the loss *lost* (sae - clean) / (zero - clean); recovered is "
                 "(zero - sae) / (zero - clean)."),
                (looks_like(lambda: (mean - spliced) / (mean - clean)),
                 "you used mean ablation as the baseline; this metric is measured against zero ablation."),
                (looks_like(lambda: (zero - spliced) / zero), "you divided by the zero-ablation loss; divide by (zero - clean)."),
                (looks_like(lambda: clean / spliced), "you took a ratio of losses; the metric compares both to zero ablation."),
            ],
        )


# --------------------------------------------------------------------------- using the features

@CHAPTER.exercise("top_activations", points=1, reference=reference.top_activations, variants=SEEDS,
                  hint="Flatten, take .topk(k).indices, and turn each flat index back into (index // pos, index % pos).")
def grade_top_activations(top_activations, *, seed=0):
    for batch, pos, k in ((5, 13, 6), (9, 4, 3)):
        f = random_feature_acts(seed + batch, (batch, pos), p_active=0.6)
        flat = f.flatten().topk(k).indices
        actual = top_activations(f.clone(), k)
        compare_tensors(
            actual.long() if isinstance(actual, Tensor) else actual, reference.top_activations(f, k),
            what=f"top_activations of a feature's activations of shape (batch={batch}, pos={pos}), k={k}",
            mistakes=[
                (looks_like(lambda: torch.stack([flat % pos, flat // pos], -1)),
                 "each row should be (batch index, position), in that order."),
                (looks_like(lambda: torch.stack([flat // batch, flat % batch], -1)),
                 "you divided the flat index by batch; the flattened rows have length pos: use // pos and % pos."),
                (lambda actual: actual.shape == (k,), "return a [k, 2] tensor of (batch, position) pairs, not flat indices."),
                (looks_like(lambda: reference.top_activations(f, k).flip(0)),
                 "you returned them smallest first: the largest activation comes first."),
            ],
        )


@CHAPTER.exercise("clamp_feature", points=2, reference=reference.clamp_feature, variants=SEEDS,
                  hint="current = sae.encode(acts)[..., feature]; return acts + (value - current)[..., None] * sae.W_dec[feature].")
def grade_clamp_feature(clamp_feature, *, seed=0):
    sae = random_sae(seed)
    acts = random_acts(seed, (3, 5, sae.cfg.d_in))
    f = sae.encode(acts).detach()
    feature = int(f.gt(0).float().sum(dim=(0, 1)).argmax())  # one that is active on some tokens
    for value in (4.0, 0.0):  # 0 ablates the feature
        clamped = f.clone()
        clamped[..., feature] = value
        with torch.no_grad():
            compare_tensors(
                clamp_feature(acts.clone(), sae, feature, value), reference.clamp_feature(acts, sae, feature, value),
                what=f"clamp_feature(acts of shape {tuple(acts.shape)}, a random SAE, feature={feature}, value={value})",
                mistakes=[
                    (looks_like(lambda: sae.decode(clamped)),
                     "you returned the SAE's reconstruction with the feature clamped, which throws away the "
                     "reconstruction error (the part the SAE misses): change acts only along the feature's direction."),
                    (looks_like(lambda: acts + value * sae.W_dec[feature]),
                     "you added value times the feature's direction without removing what it already had: "
                     "add (value - current activation) times it."),
                    (looks_like(lambda: acts + (value - f[..., feature])[..., None] * sae.W_enc[:, feature]),
                     "you used the encoder's column; the feature writes to the model through its decoder row W_dec[feature]."),
                ],
            )
