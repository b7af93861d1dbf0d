"""Reference solutions of chapter 06, automated circuit discovery, graded against circuits known by construction.

Each function is an exercise: `graders/chapter_06.py` grades learners' code against it.
The graph is `toy_models/edge_patching.py`'s: an edge is (sender, receiver), senders
"embed", "A{l}.{h}", "M{l}", receivers "A{l}.{h}.q" / ".k" / ".v", "M{l}", "logits".
A metric is a callable from logits to a scalar tensor, higher meaning more of the
behaviour. They use only the names the notebook imports: torch, F (torch.nn.functional),
Float, Int, Tensor, from toy_models.edge_patching Edge, all_edges, senders, receivers,
senders_into and forward_by_edges, and from toy_models.metrics Metric and kl_from_full.
"""


import torch
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.edge_patching import Edge, all_edges, forward_by_edges, receivers, senders, senders_into
from toy_models.metrics import Metric, kl_from_full

__all__ = ["graph_edges", "edge_patching_scores", "edge_attribution_scores", "eap_ig_scores", "acdc", "roc_auc", "faithfulness"]



# --------------------------------------------------------------------------- the graph

def graph_edges(cfg) -> list[Edge]:
    """Every edge (sender, receiver) of the model's graph, each once (in any order; this one
    goes receiver by receiver, in the order of `receivers(cfg)`). A receiver
    reads every sender written to the residual stream before it: "logits" reads them all;
    a head's query, key and value read "embed" and everything of earlier layers (the heads
    of a layer run side by side, so none reads another); an MLP reads those and the heads
    of its own layer too."""

    def layer_of(node: str) -> int:
        return -1 if node == "embed" else int(node[1:].split(".")[0])

    def reads(sender: str, receiver: str) -> bool:
        if receiver == "logits" or layer_of(sender) < layer_of(receiver):
            return True
        return receiver.startswith("M") and sender.startswith("A") and layer_of(sender) == layer_of(receiver)

    return [(sender, receiver) for receiver in receivers(cfg) for sender in senders(cfg) if reads(sender, receiver)]


# --------------------------------------------------------------------------- exact patching, one edge at a time

@torch.no_grad()
def edge_patching_scores(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"], metric: Metric,
    ablation: str = "corrupted",
) -> dict[Edge, float]:
    """For every edge of `all_edges(model.cfg)`: the metric on the clean tokens with that
    one edge patched (every other edge clean), minus the clean metric. Negative: the edge
    carries the behaviour. A patched edge carries its sender's output on the corrupted
    tokens, row by row (`ablation="corrupted"`, resample ablation), or that output's mean
    over the corrupted batch at each position (`ablation="mean"`). One forward pass per
    edge, after one clean and one corrupted run."""
    _, corrupted = forward_by_edges(model, corrupted_tokens)
    if ablation == "mean":
        corrupted = {sender: output.mean(dim=0, keepdim=True) for sender, output in corrupted.items()}
    clean_metric = metric(forward_by_edges(model, clean_tokens)[0]).item()
    scores = {}
    for edge in all_edges(model.cfg):
        logits, _ = forward_by_edges(model, clean_tokens, frozenset({edge}), corrupted)
        scores[edge] = metric(logits).item() - clean_metric
    return scores


# --------------------------------------------------------------------------- attribution: the linear estimate

def edge_attribution_scores(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"], metric: Metric,
) -> dict[Edge, float]:
    """Edge attribution patching (Syed, Rager & Conmy 2023): for edge (s, r),
    (out_s(corrupted) - out_s(clean)) · d metric / d input_r, the gradient taken on the
    clean run, the product summed over batch, positions and d_model. It is the first-order
    estimate of `edge_patching_scores`, from two forward passes and one backward pass."""
    with torch.no_grad():
        _, corrupted = forward_by_edges(model, corrupted_tokens)
    inputs = {}
    logits, clean = forward_by_edges(model, clean_tokens, inputs=inputs)
    grads = dict(zip(inputs, torch.autograd.grad(metric(logits), list(inputs.values())), strict=True))
    return {(s, r): ((corrupted[s] - clean[s].detach()) * grads[r]).sum().item() for s, r in all_edges(model.cfg)}


def eap_ig_scores(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"], metric: Metric,
    steps: int = 5,
) -> dict[Edge, float]:
    """EAP with integrated gradients (Hanna, Pezzelle & Belinkov 2024): for edge (s, r),
    (out_s(corrupted) - out_s(clean)) · the mean of d metric / d input_r over `steps` runs.
    Run k (k = 1, ..., steps) is the clean run with the embeddings, the "embed" sender's
    output, replaced by corrupted + (k / steps) * (clean - corrupted), read along every edge
    out of "embed"; the rest of the network computes on from there. Run `steps` is the clean
    run itself, so steps=1 is plain EAP; the fully corrupted point (k = 0) is left out."""
    with torch.no_grad():
        _, corrupted = forward_by_edges(model, corrupted_tokens)
        _, clean = forward_by_edges(model, clean_tokens)
    from_embed = frozenset(edge for edge in all_edges(model.cfg) if edge[0] == "embed")
    grads = {receiver: 0.0 for receiver in receivers(model.cfg)}
    for k in range(1, steps + 1):
        embed = corrupted["embed"] + (k / steps) * (clean["embed"] - corrupted["embed"])
        inputs = {}
        logits, _ = forward_by_edges(model, clean_tokens, from_embed, {"embed": embed}, inputs=inputs)
        for receiver, grad in zip(inputs, torch.autograd.grad(metric(logits), list(inputs.values())), strict=True):
            grads[receiver] = grads[receiver] + grad / steps
    return {(s, r): ((corrupted[s] - clean[s]) * grads[r]).sum().item() for s, r in all_edges(model.cfg)}


# --------------------------------------------------------------------------- ACDC

@torch.no_grad()
def acdc(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"], threshold: float,
    positions: tuple[int, ...] | None = None, metric: Metric | None = None,
) -> frozenset[Edge]:
    """ACDC (Conmy et al. 2023), the edges it keeps. The circuit starts as the whole model.
    Visit the receivers from "logits" backwards (the reverse of `receivers(cfg)`), and each
    receiver's senders in reverse order; tentatively remove the edge (patch it to its
    corrupted value, the edges removed so far staying removed). If the circuit's score
    falls by less than `threshold` from its value before this removal, the edge stays
    removed; otherwise it is restored. The score is minus the KL divergence of the full
    model's next-token distribution (on the clean tokens, at `positions`, or at every
    position if None) from the circuit's, or, given a task `metric`, that metric."""
    _, corrupted = forward_by_edges(model, corrupted_tokens)
    full_logits = forward_by_edges(model, clean_tokens)[0]
    full_logprobs = full_logits.log_softmax(dim=-1)

    def score(logits: Float[Tensor, "batch pos d_vocab"]) -> float:
        return -kl_from_full(full_logprobs, logits, positions) if metric is None else metric(logits).item()

    removed: frozenset[Edge] = frozenset()
    current = score(full_logits)
    for receiver in reversed(receivers(model.cfg)):
        for sender in reversed(senders_into(model.cfg, receiver)):
            trial = removed | {(sender, receiver)}
            trial_score = score(forward_by_edges(model, clean_tokens, trial, corrupted)[0])
            if current - trial_score < threshold:
                removed, current = trial, trial_score
    return frozenset(all_edges(model.cfg)) - removed


# --------------------------------------------------------------------------- scoring a method against the true circuit

def roc_auc(scores: dict[Edge, float], circuit: frozenset[Edge]) -> float:
    """The area under the ROC curve of ranking the scored edges by |score| (importance,
    whatever its sign) as predictions of membership in `circuit`: the probability that an
    edge of the circuit outranks one outside it, a tie counting one half (Mann-Whitney)."""
    inside = torch.tensor([abs(score) for edge, score in scores.items() if edge in circuit])
    outside = torch.tensor([abs(score) for edge, score in scores.items() if edge not in circuit])
    wins = (inside[:, None] > outside[None, :]).float() + 0.5 * (inside[:, None] == outside[None, :]).float()
    return wins.mean().item()


def faithfulness(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    circuit: frozenset[Edge], metric: Metric,
) -> float:
    """How much of the behaviour the circuit alone recovers: (the metric with every edge
    outside `circuit` patched to its corrupted value - the metric with every edge patched)
    / (the clean metric - the metric with every edge patched). 1: all of it; 0: none."""
    with torch.no_grad():
        _, corrupted = forward_by_edges(model, corrupted_tokens)
        everything = frozenset(all_edges(model.cfg))
        clean = metric(forward_by_edges(model, clean_tokens)[0]).item()
        ablated = metric(forward_by_edges(model, clean_tokens, everything, corrupted)[0]).item()
        kept = metric(forward_by_edges(model, clean_tokens, everything - circuit, corrupted)[0]).item()
    return (kept - ablated) / (clean - ablated)
