"""Reference solutions of chapter 05, the honest limits, measured.

Each function is an exercise: `solutions/05_honest_limits.py` turns its source into the
notebook's solution cell, and `graders/chapter_05.py` grades learners' code against it.
They use only the names the notebook imports: torch, F (torch.nn.functional), Float, Int,
Tensor, Callable, itertools, einops, next_token_loss.
"""

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from solutions.three_buckets import ablate_direction  # chapter 01's, met again in section 5
from toy_models.model import next_token_loss

__all__ = [
    "match_features", "error_term_loss_effect", "circuit_transfer_rate", "ablate_direction", "patch_components",
    "patching_cost", "capstone_behaviour",
]


def match_features(W_dec_a: Float[Tensor, "d_sae_a d_in"], W_dec_b: Float[Tensor, "d_sae_b d_in"]) -> Float[Tensor, " d_sae_a"]:
    """For every feature of SAE a, the cosine similarity of its decoder direction (a row
    of W_dec_a) with the closest feature direction of SAE b: the largest signed cosine
    over b's features. 1 means b has the same feature; near 0, nothing like it."""
    unit_a = F.normalize(W_dec_a, dim=-1)
    unit_b = F.normalize(W_dec_b, dim=-1)
    cosines = unit_a @ unit_b.T  # [d_sae_a, d_sae_b]
    return cosines.max(dim=-1).values


@torch.no_grad()
def error_term_loss_effect(model, sae, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    """How much the model's next-token loss rises, at every prediction, when the SAE's error
    term is dropped: the per-token loss with the activation at `sae.cfg.hook_name` replaced
    by the reconstruction `sae(acts)` alone, minus the per-token loss with the
    reconstruction plus the error `acts - sae(acts)` (which is the clean run)."""
    hook = sae.cfg.hook_name

    def reconstruction_only(acts: Tensor, hook) -> Tensor:
        return sae(acts)

    def reconstruction_plus_error(acts: Tensor, hook) -> Tensor:
        return sae(acts) + (acts - sae(acts))

    without_error = model.run_with_hooks(tokens, fwd_hooks=[(hook, reconstruction_only)])
    with_error = model.run_with_hooks(tokens, fwd_hooks=[(hook, reconstruction_plus_error)])
    return next_token_loss(without_error, tokens, per_token=True) - next_token_loss(with_error, tokens, per_token=True)


def circuit_transfer_rate(circuits: list[dict[str, list[tuple[int, int]]]]) -> float:
    """How often a circuit found in one model would be found, by position alone, in another:
    the fraction of pairs of *different* models (each pair once) whose circuits name exactly
    the same (layer, head) set for every role. A role missing from a circuit has no heads."""
    def same(a: dict, b: dict) -> bool:
        return all(set(map(tuple, a.get(role, []))) == set(map(tuple, b.get(role, []))) for role in {*a, *b})

    pairs = list(itertools.combinations(circuits, 2))
    return sum(same(a, b) for a, b in pairs) / len(pairs)


@torch.no_grad()
def patch_components(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor],
) -> Float[Tensor, "n_layers n_components"]:
    """Noising, one component at a time, at every position at once: run the clean prompts
    with one component's output replaced by its value on the corrupted prompts; return the
    metric of each patched run. Columns 0 .. n_heads - 1 are the heads (`attn.hook_z`), and,
    when the model has MLPs, a last column is the layer's MLP (`hook_mlp_out`)."""
    has_mlp = not model.cfg.attn_only
    _, corrupted = model.run_with_cache(
        corrupted_tokens, names_filter=lambda name: name.endswith("hook_z") or name.endswith("hook_mlp_out"))
    results = torch.zeros(model.cfg.n_layers, model.cfg.n_heads + has_mlp)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            def patch_head(z: Tensor, hook, head: int = head) -> Tensor:
                z[:, :, head] = corrupted[hook.name][:, :, head]
                return z

            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch_head)])
            results[layer, head] = float(metric(logits))
        if has_mlp:
            name = f"blocks.{layer}.hook_mlp_out"
            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(name, lambda out, hook: corrupted[hook.name])])
            results[layer, -1] = float(metric(logits))
    return results


def patching_cost(n_layers: int, n_heads: int, n_pos: int, n_prompts: int) -> dict[str, int]:
    """Passes through the model (a forward and a backward pass count one each) to score
    every head at every position on `n_prompts` prompt pairs, run one pair at a time:
    "activation": a clean and a corrupted caching run per pair, then one patched forward
    pass per (layer, head, position); "attribution": per pair, a clean forward and
    backward pass and one corrupted forward pass, whatever the number of components."""
    return {
        "activation": n_prompts * (2 + n_layers * n_heads * n_pos),
        "attribution": n_prompts * 3,
    }


def capstone_behaviour() -> dict[str, str]:
    """Your capstone's behaviour of code-2l, as a minimal pair of prompts of the same byte
    length: on "clean" the model should prefer the next byte "answer" to "wrong", on
    "corrupted" much less; "component" is the one your patching says carries it most:
    a head "L{layer}H{head}" or an MLP "MLP{layer}"."""
    return {
        "clean": "        x = self.run(a",
        "corrupted": "        x = self.run[a",
        "answer": ")",
        "wrong": "]",
        "component": "L1H3",
    }
