"""Reference solutions for chapter 04, superposition and sparse autoencoders.

Each function is an exercise of `solutions/04_superposition_and_saes.ipynb`: the notebook's
exercise cells are generated from these definitions, and `graders/chapter_04.py` grades
learners against them. The SAE module they work on, `toy_models.sae.SparseAutoencoder`,
is the course's own (like the transformer of chapter 00, it lives in `toy_models`).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from toy_models.sae import SparseAutoencoder

# --------------------------------------------------------------------------- toy models of superposition


def importance_weighted_loss(
    x: Float[Tensor, "batch instances features"],
    x_hat: Float[Tensor, "batch instances features"],
    importance: Float[Tensor, " features"],
) -> Float[Tensor, " instances"]:
    """The toy model's loss, per instance: importance-weighted squared error, summed over
    features and averaged over the batch."""
    return (importance * (x - x_hat) ** 2).sum(dim=-1).mean(dim=0)


def feature_dimensionality(W: Float[Tensor, "instances hidden features"]) -> Float[Tensor, "instances features"]:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2, per instance and feature (W_i is column i).

    Features with a column of norm zero (not represented) get dimensionality 0."""
    norms = W.norm(dim=1)  # [instances, features]
    unit = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = torch.einsum("nhi,nhj->nij", unit, W)  # overlaps[n, i, j] = W_i_hat . W_j
    return norms**2 / (overlaps**2).sum(dim=-1).clamp_min(1e-8)


# --------------------------------------------------------------------------- a sparse autoencoder


def topk_activation(pre_acts: Float[Tensor, "... d_sae"], k: int) -> Float[Tensor, "... d_sae"]:
    """TopK SAE activation: ReLU, then keep the k largest entries of each row and zero the rest."""
    acts = torch.relu(pre_acts)
    values, indices = acts.topk(k, dim=-1)
    return torch.zeros_like(acts).scatter(-1, indices, values)


def sae_training_loss(
    sae: SparseAutoencoder, acts: Float[Tensor, "batch d_in"], l1_coefficient: float
) -> Float[Tensor, ""]:
    """Reconstruction error (squared, summed over d_in, averaged over the batch) plus
    l1_coefficient times the L1 norm of the feature activations (averaged over the batch)."""
    feature_acts = sae.encode(acts)
    reconstruction = sae.decode(feature_acts)
    reconstruction_loss = (reconstruction - acts).pow(2).sum(dim=-1).mean()
    sparsity_loss = feature_acts.abs().sum(dim=-1).mean()
    return reconstruction_loss + l1_coefficient * sparsity_loss


def normalize_decoder(W_dec: Float[Tensor, "d_sae d_in"]) -> Float[Tensor, "d_sae d_in"]:
    """W_dec with every feature's direction (a row) rescaled to unit norm."""
    return W_dec / W_dec.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- metrics


def l0_norm(feature_acts: Float[Tensor, "... d_sae"]) -> float:
    """The number of active features per token, averaged over every token."""
    return (feature_acts > 0).float().sum(dim=-1).mean().item()


def fraction_variance_explained(
    acts: Float[Tensor, "tokens d_in"], reconstruction: Float[Tensor, "tokens d_in"]
) -> float:
    """1 - (total squared error) / (total squared distance of acts from their mean), pooled over tokens."""
    error = (acts - reconstruction).pow(2).sum()
    total = (acts - acts.mean(dim=0)).pow(2).sum()
    return (1 - error / total).item()


def dead_and_dense_fractions(
    feature_acts: Float[Tensor, "tokens d_sae"], dense_threshold: float = 0.1
) -> tuple[float, float]:
    """(share of features never active on these tokens, share active on more than
    `dense_threshold` of them). A feature active on exactly `dense_threshold` of the
    tokens is not dense."""
    frequency = (feature_acts > 0).float().mean(dim=0)
    return (frequency == 0).float().mean().item(), (frequency > dense_threshold).float().mean().item()


def ce_loss_recovered(model: nn.Module, sae: SparseAutoencoder, tokens: Int[Tensor, "batch pos"]) -> float:
    """(CE_zero_ablation - CE_sae) / (CE_zero_ablation - CE_clean), where CE_sae splices the
    SAE's reconstruction in at `sae.cfg.hook_name` and CE_zero_ablation puts zeros there."""
    hook = sae.cfg.hook_name
    with torch.no_grad():
        clean = model(tokens, return_type="loss")
        spliced = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(hook, lambda acts, hook: sae(acts))])
        zero = model.run_with_hooks(
            tokens, return_type="loss", fwd_hooks=[(hook, lambda acts, hook: torch.zeros_like(acts))]
        )
    return ((zero - spliced) / (zero - clean)).item()


# --------------------------------------------------------------------------- using the features


def top_activations(feature_acts: Float[Tensor, "batch pos"], k: int) -> Int[Tensor, "k 2"]:
    """The (batch, pos) indices of the k largest activations of one feature, largest first."""
    order = feature_acts.flatten().topk(k).indices
    pos = feature_acts.shape[1]
    return torch.stack([order // pos, order % pos], dim=-1)


def clamp_feature(
    acts: Float[Tensor, "... d_in"], sae: SparseAutoencoder, feature: int, value: float
) -> Float[Tensor, "... d_in"]:
    """`acts` with feature `feature`'s activation set to `value` and everything else kept
    (the SAE's reconstruction error too): add (value - current) times its decoder row."""
    current = sae.encode(acts)[..., feature]
    return acts + (value - current)[..., None] * sae.W_dec[feature]
