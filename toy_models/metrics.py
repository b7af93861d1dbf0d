"""The headline measurements of the shipped models.

These are also the references that chapter graders compare learners' code against:
one definition of each, here.
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.model import Transformer


def induction_score_of_pattern(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"], seq_len: int
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each token of the repeated half to the token *after* its earlier
    occurrence: the one an induction head copies from.

    That source sits seq_len - 1 positions back, on a diagonal of the pattern; its last
    seq_len entries are the repeated half, whether or not a start token comes first.
    """
    stripe = pattern.diagonal(offset=-(seq_len - 1), dim1=-2, dim2=-1)
    return stripe[..., -seq_len:].mean(dim=(0, -1))


@torch.no_grad()
def induction_scores(
    model: Transformer, repeated_tokens: Int[Tensor, "batch pos"], seq_len: int
) -> Float[Tensor, "n_layers n_heads"]:
    """Every head's induction score on sequences made of a random block repeated."""
    _, cache = model.run_with_cache(repeated_tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    return torch.stack(
        [induction_score_of_pattern(cache["pattern", layer], seq_len) for layer in range(model.cfg.n_layers)]
    )


def logit_diff(
    final_logits: Float[Tensor, "batch d_vocab"],
    correct_tokens: Int[Tensor, " batch"],
    wrong_tokens: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """How much the model prefers the right answer to the wrong one, per prompt, in logits."""
    correct = final_logits.gather(-1, correct_tokens[:, None]).squeeze(-1)
    wrong = final_logits.gather(-1, wrong_tokens[:, None]).squeeze(-1)
    return correct - wrong


def positional_pattern(
    model: Transformer, ln_scale: Float[Tensor, "pos 1"], layer: int, head: int
) -> Float[Tensor, "query_pos key_pos"]:
    """The attention pattern a head would have if the residual stream held only the
    positional embeddings, normalised by `ln_scale` (the scale its LayerNorm applies at
    each position on real input, e.g. the batch mean of `hook_scale`): what the head's
    QK circuit does by position alone, at the size its scores really have."""
    attn, ln = model.blocks[layer].attn, model.blocks[layer].ln1
    W_pos = model.pos_embed.W_pos
    x = (W_pos - W_pos.mean(dim=-1, keepdim=True)) / ln_scale * ln.w + ln.b
    queries = x @ attn.W_Q[head] + attn.b_Q[head]
    keys = x @ attn.W_K[head] + attn.b_K[head]
    scores = queries @ keys.T / model.cfg.d_head**0.5
    future = torch.ones_like(scores, dtype=torch.bool).triu(diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)
