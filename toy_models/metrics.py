"""The headline measurements of the shipped models.

These are also the references that chapter graders compare learners' code against:
one definition of each, here.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.edge_patching import Edge
from toy_models.model import Transformer

Metric = Callable[[Tensor], Tensor]


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


# --- scoring circuit discovery (chapter 06) against a known circuit -----------------------

def answer_logprob(tokens: Int[Tensor, "batch pos"], positions: tuple[int, ...]) -> Metric:
    """The chapter's metric (given, not an exercise): the mean log-probability of the right
    next token, `tokens[:, i + 1]`, at each position i of `positions`."""
    where = torch.tensor(positions)
    answers = tokens[:, where + 1]

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        logprobs = logits[:, where].log_softmax(dim=-1)
        return logprobs.gather(-1, answers[..., None]).mean()

    return metric


def kl_from_full(full_logprobs: Tensor, logits: Tensor, positions: tuple[int, ...] | None) -> float:
    """KL(full model || circuit) of the next-token distributions, averaged over the batch
    and the positions (every position when `positions` is None): ACDC's measure of how far
    a circuit has drifted from the model (given to chapter 06's learners)."""
    logprobs = logits.log_softmax(dim=-1)
    if positions is not None:
        full_logprobs, logprobs = full_logprobs[:, list(positions)], logprobs[:, list(positions)]
    return F.kl_div(logprobs, full_logprobs, log_target=True, reduction="none").sum(dim=-1).mean().item()


def roc_curve(scores: dict[Edge, float], circuit: frozenset[Edge]) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """The ROC curve of ranking by |score|, for plotting: (false positive rates, true
    positive rates) as the threshold falls through each distinct |score|, from (0, 0) to
    (1, 1). Tied edges enter together, so the trapezoid area under it is `roc_auc`."""
    importance = torch.tensor([abs(score) for score in scores.values()], dtype=torch.float64)
    member = torch.tensor([edge in circuit for edge in scores])
    fpr, tpr = [0.0], [0.0]
    for level in importance.unique().flip(0):  # distinct values, largest first
        chosen = importance >= level
        tpr.append((chosen & member).sum().item() / member.sum().item())
        fpr.append((chosen & ~member).sum().item() / (~member).sum().item())
    return torch.tensor(fpr), torch.tensor(tpr)


def roc_points(
    found: list[frozenset[Edge]], circuit: frozenset[Edge], edges: list[Edge],
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """The ROC points of a method that returns a set of edges, one set per threshold (ACDC's
    sweep): (false positive rates, true positive rates) of each set among `edges`."""
    negatives = len(edges) - len(circuit)
    fpr = torch.tensor([len(kept - circuit) / negatives for kept in found])
    tpr = torch.tensor([len(kept & circuit) / len(circuit) for kept in found])
    return fpr, tpr


def relative_error(estimate: dict[Edge, float], exact: dict[Edge, float]) -> float:
    """How far an estimate of each edge's effect is from exact edge patching, over all edges:
    sum |estimate - exact| / sum |exact|."""
    return sum(abs(estimate[edge] - exact[edge]) for edge in exact) / sum(abs(value) for value in exact.values())


def pessimistic_auc(fpr: Float[Tensor, " n"], tpr: Float[Tensor, " n"]) -> float:
    """The area under ROC points, as the ACDC paper scores its threshold sweeps: the points
    sorted, with (0, 0) and (1, 1) added, joined by a staircase that rises only when a
    point is reached (no credit for interpolating between two thresholds)."""
    points = sorted(zip([0.0, *fpr.tolist(), 1.0], [0.0, *tpr.tolist(), 1.0], strict=True))
    area, best = 0.0, 0.0
    for x, y in points:
        if y > best:
            area, best = area + (1 - x) * (y - best), y
    return area
