"""Reference solutions of chapter 02, induction heads.

Each function is an exercise: `solutions/02_induction_heads.py` turns its source into the
notebook's solution cell (signature and docstring visible, body hidden in the student
notebook), and `graders/chapter_02.py` grades learners' code against it. They use only the
names the notebook imports: torch, einops, Float, Int, Tensor, FactoredMatrix,
Transformer, next_token_loss.
"""

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix

from toy_models.model import Transformer, next_token_loss

__all__ = [
    "previous_token_scores", "current_token_scores", "first_token_scores", "prefix_matching_scores",
    "in_context_learning_score", "head_ablation_losses", "direct_logit_attribution", "full_ov_circuit", "top1_copying_accuracy",
    "k_composition_score", "induction_circuit",
]


def previous_token_scores(pattern: Float[Tensor, "batch n_heads query_pos key_pos"]) -> Float[Tensor, " n_heads"]:
    """Each head's mean attention from a token to the token just before it.

    Averaged over the batch and over every query that has a previous token (positions
    1 to pos - 1).
    """
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))


def current_token_scores(pattern: Float[Tensor, "batch n_heads query_pos key_pos"]) -> Float[Tensor, " n_heads"]:
    """Each head's mean attention from a token to itself, over the batch and all positions."""
    return pattern.diagonal(offset=0, dim1=-2, dim2=-1).mean(dim=(0, -1))


def first_token_scores(pattern: Float[Tensor, "batch n_heads query_pos key_pos"]) -> Float[Tensor, " n_heads"]:
    """Each head's mean attention to the first position, over the batch and all queries."""
    return pattern[..., 0].mean(dim=(0, -1))


def prefix_matching_scores(
    tokens: Int[Tensor, "batch pos"], pattern: Float[Tensor, "batch n_heads query_pos key_pos"]
) -> Float[Tensor, " n_heads"]:
    """Each head's mean attention from a token to every position that *follows* an earlier
    occurrence of that token (key k with tokens[k - 1] == tokens[q], k <= q).

    The attention to all such keys is summed per query, then averaged over every
    (sequence, query) pair that has at least one such key, pooled over the batch: the sum
    over all those pairs divided by their number, not a mean per sequence first (the
    queries with no such key cannot prefix-match, and are left out).
    """
    # previous[b, q, k]: the token before key k is the token at query q
    previous = tokens[:, None, :-1] == tokens[:, :, None]  # [batch, query, key - 1]
    targets = torch.nn.functional.pad(previous, (1, 0), value=False)  # key 0 follows nothing
    targets = targets & torch.ones_like(targets).tril()  # only keys a query can see
    attended = einops.einsum(pattern, targets.to(pattern.dtype), "b h q k, b q k -> b h q")
    has_target = targets.any(dim=-1)  # [batch, query]
    return (attended * has_target[:, None]).sum(dim=(0, 2)) / has_target.sum()


def in_context_learning_score(per_token_loss: Float[Tensor, "batch pos"], early: int, late: int) -> Float[Tensor, ""]:
    """Olsson et al.'s in-context learning score: the mean loss at token index `late` minus
    the mean loss at token index `early` (over the batch). Negative when the model predicts
    later tokens better, having read more of the context."""
    return per_token_loss[:, late].mean() - per_token_loss[:, early].mean()


@torch.no_grad()
def head_ablation_losses(
    model: Transformer, tokens: Int[Tensor, "batch pos"], seq_len: int, kind: str = "zero"
) -> Float[Tensor, "n_layers n_heads"]:
    """The loss on the repeat with each head ablated in turn, one run per head.

    `tokens` are a start token then a random block of `seq_len` tokens repeated once. The
    loss is the mean next-token loss over the last `seq_len - 1` predictions (the tokens of
    the repeat that induction can predict). Ablating a head replaces its output `hook_z`
    with 0 (`kind="zero"`), or with its mean over the batch at each position
    (`kind="mean"`, computed on these tokens).
    """
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_z"))
    losses = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            mean_z = cache["z", layer][:, :, head].mean(dim=0)  # [pos, d_head]

            def ablate(z: Tensor, hook, head: int = head, mean_z: Tensor = mean_z) -> Tensor:
                z[:, :, head] = 0.0 if kind == "zero" else mean_z
                return z

            logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", ablate)])
            per_token = next_token_loss(logits, tokens, per_token=True)
            losses[layer, head] = per_token[:, -(seq_len - 1):].mean()
    return losses


def direct_logit_attribution(
    model: Transformer, cache, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "n_layers n_heads batch pos_minus_1"]:
    """Each head's *direct* contribution to the logit of the correct next token, at every
    position but the last (`cache` is from `model.run_with_cache(tokens)`).

    A head writes z @ W_O into the residual stream. The final LayerNorm centres the
    stream, divides it by its scale (`cache["ln_final.hook_scale"]`, frozen here so that
    the map is linear) and multiplies by `ln_final.w`; the unembedding then reads the
    correct token's column of W_U. Biases are left out.
    """
    correct = model.W_U.T[tokens[:, 1:]] * model.ln_final.w  # [batch, pos - 1, d_model]
    scale = cache["ln_final.hook_scale"][:, :-1]  # [batch, pos - 1, 1]
    per_layer = []
    for layer in range(model.cfg.n_layers):
        out = einops.einsum(cache["z", layer][:, :-1], model.blocks[layer].attn.W_O,
                            "batch pos head d_head, head d_head d_model -> batch pos head d_model")
        out = out - out.mean(dim=-1, keepdim=True)  # the final LayerNorm centres every component
        per_layer.append(einops.einsum(out / scale[:, :, None], correct,
                                       "batch pos head d_model, batch pos d_model -> head batch pos"))
    return torch.stack(per_layer)


def full_ov_circuit(model: Transformer, layer: int, head: int) -> FactoredMatrix:
    """The head's full OV circuit W_E W_V W_O W_U as a FactoredMatrix [d_vocab, d_vocab]:
    row s, column t is how much attending to token s raises the logit of token t (ignoring
    LayerNorm and biases)."""
    W_E = model.embed.W_E
    W_OV = FactoredMatrix(model.blocks[layer].attn.W_V[head], model.blocks[layer].attn.W_O[head])
    return W_E @ W_OV @ model.W_U


def top1_copying_accuracy(full_ov: FactoredMatrix | Float[Tensor, "d_vocab d_vocab"]) -> float:
    """The fraction of source tokens s whose own logit is the largest in row s of the full
    OV circuit: how often attending to a token makes the head predict that very token."""
    matrix = full_ov.AB if isinstance(full_ov, FactoredMatrix) else full_ov
    return (matrix.argmax(dim=-1) == torch.arange(matrix.shape[0])).float().mean().item()


def k_composition_score(
    W_OV: FactoredMatrix | Float[Tensor, "d_model d_model"], W_QK: FactoredMatrix | Float[Tensor, "d_model d_model"]
) -> float:
    """How much a later head's keys read what an earlier head writes:
    ||W_OV W_QK^T||_F / (||W_OV||_F ||W_QK||_F), with W_OV the earlier head's OV circuit
    and W_QK the later head's QK circuit (scores = x_query W_QK x_key^T, in the
    row-vector convention x @ W)."""
    W_OV = W_OV.AB if isinstance(W_OV, FactoredMatrix) else W_OV
    W_QK = W_QK.AB if isinstance(W_QK, FactoredMatrix) else W_QK
    composed = W_OV @ W_QK.T
    return (composed.norm() / (W_OV.norm() * W_QK.norm())).item()


def induction_circuit() -> dict[str, list[tuple[int, int]]]:
    """The induction circuit of the shipped induction-2l, as you measured it: for each role
    ("previous_token", "induction"), the (layer, head) of every head that plays it."""
    return {"previous_token": [(0, 0)], "induction": [(1, 0), (1, 1)]}
