"""Attribution graphs in miniature: circuit-tracer's method on one prompt of a small model.

Ameisen et al. (2025, "Circuit Tracing") explain one prediction of a model in four steps,
which this module follows (their code: safety-research/circuit-tracer):

1. The **local replacement model.** Run the prompt once (the clean run). Then freeze every
   attention pattern and every LayerNorm scale at their clean values, swap each MLP for
   its transcoder, and add an *error node* per layer and position, the part of the true
   MLP output the transcoder misses, held constant. On this prompt the replacement model's
   logits equal the model's, and with the feature activations held fixed its residual
   stream is a *linear* function of the token embeddings, the features' decoder vectors
   (each scaled by its activation) and the errors.
2. The **attribution graph.** Nodes: the active features, the error nodes, one token node
   per position and the most likely next tokens (logit nodes). The edge A[target, source]
   is the source's *direct* effect on the target through that linear model: on a feature's
   pre-activation, or on a logit minus the mean logit. Because the model is linear, the
   effect is (gradient of the target with respect to where the source writes) . (what it
   writes), so a single backward pass gives a whole row of A; each MLP output is a leaf of
   the autograd graph, so no gradient flows through a feature into earlier ones and only
   direct paths count.
3. **Pruning by influence.** Normalise |A| row by row; the influence of a node on the
   output is the sum over all paths to the logits, the Neumann series sum_k A^k weighted
   by the logits' probabilities. Keep the nodes with most of the influence, then the edges.
4. **Checking it.** Ablate features in the *real* model, where attention and LayerNorm
   respond, and compare the change in the logit with what the graph predicts.

Node order, as circuit-tracer's: [features (by layer, position, id), errors (by layer,
then position), tokens (by position), logits (most probable first)]. Rows of the adjacency
are targets, columns sources; rows of errors and tokens are zero (nothing explains them).
Biases (b_enc, b_dec, attention's b_V and b_O, LayerNorm's b, b_U) are constants of the
linear model, not nodes: a target equals the sum of its row plus a constant.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from toy_models.model import Transformer
from toy_models.transcoder import Transcoder

NodeKind = Literal["feature", "error", "token", "logit"]
Hook = tuple[str, Callable]


@dataclass(frozen=True)
class Node:
    """One node of a graph: what it is, and where."""

    kind: NodeKind
    pos: int  # the position it sits at (a logit node: the last position)
    layer: int | None = None  # the block, for feature and error nodes
    index: int | None = None  # the feature id (feature), the token id (token, logit)
    activation: float | None = None  # a feature's activation on the prompt


@dataclass
class AttributionGraph:
    """The nodes of one prompt's prediction and the direct effects between them, nodes in
    circuit-tracer's order: features, errors, tokens, logits."""

    tokens: Int[Tensor, " pos"]
    nodes: list[Node]
    adjacency: Float[Tensor, "target source"]  # direct effects, in the node order above
    logit_tokens: Int[Tensor, " n_logits"]  # the logit nodes' tokens, most probable first
    logit_probabilities: Float[Tensor, " n_logits"]
    d_transcoder: int
    scan: str  # which transcoders: the name of the model they were trained on

    def mask(self, kind: NodeKind) -> Bool[Tensor, " node"]:
        return torch.tensor([node.kind == kind for node in self.nodes])

    def logit_weights(self) -> Float[Tensor, " node"]:
        """Each node's weight in the output: a logit's probability, zero for the rest."""
        weights = torch.zeros(len(self.nodes), dtype=torch.float64)
        weights[self.mask("logit")] = self.logit_probabilities.double()
        return weights


# ----------------------------------------------------------------------------------------
# 1. The local replacement model


@dataclass
class CleanRun:
    """What the clean run of one prompt fixes for the replacement model (no batch dim,
    except in `frozen`, whose values keep the model's batch of one)."""

    tokens: Int[Tensor, " pos"]
    frozen: dict[str, Tensor]  # every attention pattern and LayerNorm scale, by hook name
    token_vectors: Float[Tensor, "pos d_model"]  # what the embeddings add to the stream
    mlp_outs: list[Float[Tensor, "pos d_model"]]  # per layer
    feature_acts: list[Float[Tensor, "pos d_transcoder"]]  # per layer
    errors: list[Float[Tensor, "pos d_model"]]  # mlp_out - transcoder output, per layer
    logits: Float[Tensor, "pos d_vocab"]


def is_frozen(hook_name: str) -> bool:
    """The nonlinear bits of a block that the replacement model holds at their clean values."""
    return hook_name.endswith(("hook_pattern", "hook_scale"))


def check_transcoders(model: Transformer, transcoders: Sequence[Transcoder]) -> None:
    layers = [transcoder.cfg.layer for transcoder in transcoders]
    if layers != list(range(model.cfg.n_layers)):
        raise ValueError(f"Need one transcoder per layer, in order 0..{model.cfg.n_layers - 1}; got layers {layers}.")


@torch.no_grad()
def run_clean(model: Transformer, transcoders: Sequence[Transcoder], tokens: Int[Tensor, " pos"]) -> CleanRun:
    check_transcoders(model, transcoders)
    read = {"blocks.0.hook_resid_pre"} | {name for tc in transcoders for name in (tc.cfg.hook_in, tc.cfg.hook_out)}
    logits, cache = model.run_with_cache(tokens[None], names_filter=lambda name: is_frozen(name) or name in read)
    feature_acts = [tc.encode(cache[tc.cfg.hook_in][0]) for tc in transcoders]
    mlp_outs = [cache[tc.cfg.hook_out][0] for tc in transcoders]
    return CleanRun(
        tokens=tokens,
        frozen={name: value for name, value in cache.items() if is_frozen(name)},
        token_vectors=cache["blocks.0.hook_resid_pre"][0],
        mlp_outs=mlp_outs,
        feature_acts=feature_acts,
        errors=[out - tc.decode(acts) for out, tc, acts in zip(mlp_outs, transcoders, feature_acts)],
        logits=logits[0],
    )


def freezing_hooks(run: CleanRun) -> list[Hook]:
    """Forward hooks that put back each pattern and LayerNorm scale of the clean run."""
    return [(name, lambda live, hook, clean=clean: clean.expand_as(live)) for name, clean in run.frozen.items()]


def transcoder_hooks(transcoder: Transcoder, error: Float[Tensor, "pos d_model"]) -> list[Hook]:
    """Forward hooks that swap one MLP's output for its transcoder's, plus the error node."""
    seen = {}

    def read_input(mlp_in: Tensor, hook) -> None:
        seen["mlp_in"] = mlp_in

    def write_output(mlp_out: Tensor, hook) -> Tensor:
        return transcoder(seen.pop("mlp_in")) + error

    return [(transcoder.cfg.hook_in, read_input), (transcoder.cfg.hook_out, write_output)]


def replacement_hooks(run: CleanRun, transcoders: Sequence[Transcoder]) -> list[Hook]:
    """Forward hooks that turn the model into the local replacement model of `run`'s prompt."""
    hooks = freezing_hooks(run)
    for transcoder, error in zip(transcoders, run.errors):
        hooks += transcoder_hooks(transcoder, error)
    return hooks


@torch.no_grad()
def replacement_logits(
    model: Transformer, transcoders: Sequence[Transcoder], tokens: Int[Tensor, " pos"]
) -> Float[Tensor, "pos d_vocab"]:
    """The local replacement model's logits on the prompt it was built from: equal to the
    model's, which is what makes its attribution graph an account of the model."""
    hooks = replacement_hooks(run_clean(model, transcoders, tokens), transcoders)
    return model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0]


# ----------------------------------------------------------------------------------------
# 2. The attribution graph


def salient_logits(
    logits: Float[Tensor, " d_vocab"], max_logits: int, logit_probability: float
) -> tuple[Int[Tensor, " n_logits"], Float[Tensor, " n_logits"]]:
    """The most likely tokens, up to max_logits, stopping once their total probability
    reaches logit_probability."""
    top_probs, top_tokens = logits.softmax(dim=-1).topk(max_logits)
    n_kept = int(torch.searchsorted(top_probs.cumsum(dim=0), logit_probability)) + 1
    return top_tokens[:n_kept], top_probs[:n_kept]


def graph_nodes(run: CleanRun, logit_tokens: Int[Tensor, " n_logits"]) -> list[Node]:
    n_pos = len(run.tokens)
    features = [
        Node("feature", pos, layer, feature, acts[pos, feature].item())
        for layer, acts in enumerate(run.feature_acts)
        for pos, feature in acts.nonzero().tolist()
    ]
    errors = [Node("error", pos, layer) for layer in range(len(run.errors)) for pos in range(n_pos)]
    tokens = [Node("token", pos, index=token) for pos, token in enumerate(run.tokens.tolist())]
    logits = [Node("logit", n_pos - 1, index=token) for token in logit_tokens.tolist()]
    return features + errors + tokens + logits


def frozen_forward(
    model: Transformer, run: CleanRun, transcoders: Sequence[Transcoder], batch: int
) -> tuple[Float[Tensor, "batch pos d_vocab"], list[Tensor], list[Tensor]]:
    """`batch` copies of the prompt through the frozen model, the embeddings and every MLP
    output replaced by fresh leaves holding their clean values. Returns the logits, the
    leaves [embeddings, MLP 0, MLP 1, ...] and each layer's transcoder input.

    A gradient stops at a leaf, so a gradient with respect to an MLP output never passes
    through the MLP into earlier layers: it measures direct effects only."""
    leaves, mlp_inputs = [], []

    def leaf(clean: Tensor) -> Callable:
        def hook(live: Tensor, hook) -> Tensor:
            leaves.append(clean.expand(batch, *clean.shape).clone().requires_grad_())
            return leaves[-1]

        return hook

    hooks = freezing_hooks(run) + [("blocks.0.hook_resid_pre", leaf(run.token_vectors))]
    for transcoder, mlp_out in zip(transcoders, run.mlp_outs):
        hooks += [(transcoder.cfg.hook_in, lambda mlp_in, hook: mlp_inputs.append(mlp_in))]  # reads, changes nothing
        hooks += [(transcoder.cfg.hook_out, leaf(mlp_out))]
    with torch.enable_grad():
        logits = model.run_with_hooks(run.tokens.expand(batch, -1), fwd_hooks=hooks)
    return logits, leaves, mlp_inputs


def target_values(
    targets: list[Node],
    logits: Float[Tensor, "batch pos d_vocab"],
    mlp_inputs: list[Float[Tensor, "batch pos d_model"]],
    transcoders: Sequence[Transcoder],
) -> Float[Tensor, " n_targets"]:
    """Target b's value read off batch row b: a feature's pre-activation, or a logit minus
    the mean logit (so that what raises every logit alike counts for nothing).

    Gathered a group at a time: indexing row by row would make the backward pass write a
    batch-sized gradient for every single target."""

    def rows_of(kind: NodeKind, layer: int | None = None) -> Int[Tensor, " n"]:
        return torch.tensor([b for b, node in enumerate(targets) if (node.kind, node.layer) == (kind, layer)], dtype=torch.long)

    pos = torch.tensor([node.pos for node in targets])
    index = torch.tensor([node.index for node in targets])
    values = logits.new_zeros(len(targets))
    rows = rows_of("logit")
    last = logits[rows, -1]
    values = values.index_put((rows,), last.gather(-1, index[rows, None])[:, 0] - last.mean(dim=-1))
    for layer, transcoder in enumerate(transcoders):
        rows = rows_of("feature", layer)
        ids = index[rows]
        mlp_in = mlp_inputs[layer][rows, pos[rows]]
        pre = einops.einsum(mlp_in, transcoder.W_enc[:, ids], "n d_model, d_model n -> n") + transcoder.b_enc[ids]
        values = values.index_put((rows,), pre)
    return values


@dataclass
class LayerSources:
    """What one layer's source nodes write into its MLP output."""

    feature_pos: Int[Tensor, " n"]  # each active feature's position
    feature_vectors: Float[Tensor, "n d_model"]  # its activation times its decoder row
    errors: Float[Tensor, "pos d_model"]  # the error node of each position


def layer_sources(run: CleanRun, nodes: list[Node], transcoders: Sequence[Transcoder]) -> list[LayerSources]:
    sources = []
    for layer, transcoder in enumerate(transcoders):
        features = [node for node in nodes if node.kind == "feature" and node.layer == layer]
        ids = torch.tensor([node.index for node in features], dtype=torch.long)
        acts = torch.tensor([node.activation for node in features], dtype=transcoder.W_dec.dtype)
        pos = torch.tensor([node.pos for node in features], dtype=torch.long)
        sources.append(LayerSources(pos, acts[:, None] * transcoder.W_dec[ids].detach(), run.errors[layer]))
    return sources


def source_effects(
    token_grad: Float[Tensor, "batch pos d_model"],
    mlp_grads: list[Float[Tensor, "batch pos d_model"]],
    token_vectors: Float[Tensor, "pos d_model"],
    sources: list[LayerSources],
    n_logits: int,
) -> Float[Tensor, "batch node"]:
    """Rows of the adjacency, in node order: each source's vector dotted with the gradient
    of the batch row's target where that source writes."""
    features = [
        einops.einsum(grad[:, layer.feature_pos], layer.feature_vectors, "batch n d_model, n d_model -> batch n")
        for grad, layer in zip(mlp_grads, sources)
    ]
    errors = [
        einops.einsum(grad, layer.errors, "batch pos d_model, pos d_model -> batch pos")
        for grad, layer in zip(mlp_grads, sources)
    ]
    tokens = einops.einsum(token_grad, token_vectors, "batch pos d_model, pos d_model -> batch pos")
    logits = token_grad.new_zeros(token_grad.shape[0], n_logits)  # a logit is nobody's source
    return torch.cat([*features, *errors, tokens, logits], dim=-1)


def build_attribution_graph(
    model: Transformer,
    transcoders: Sequence[Transcoder],
    tokens: Int[Tensor, " pos"],
    *,
    max_logits: int = 5,
    logit_probability: float = 0.95,
    batch_size: int = 128,
) -> AttributionGraph:
    """The attribution graph of the model's next-token prediction at the last position.

    One forward pass of `batch_size` copies of the prompt; then each chunk of targets (one
    per batch row) costs one backward pass, which fills that many rows of the adjacency."""
    run = run_clean(model, transcoders, tokens)
    logit_tokens, logit_probs = salient_logits(run.logits[-1], max_logits, logit_probability)
    nodes = graph_nodes(run, logit_tokens)
    sources = layer_sources(run, nodes, transcoders)
    target_rows = [i for i, node in enumerate(nodes) if node.kind in ("feature", "logit")]
    batch = min(batch_size, len(target_rows))
    logits, leaves, mlp_inputs = frozen_forward(model, run, transcoders, batch)

    adjacency = torch.zeros(len(nodes), len(nodes), dtype=run.logits.dtype)
    chunks = [target_rows[start : start + batch] for start in range(0, len(target_rows), batch)]
    for i, rows in enumerate(chunks):
        values = target_values([nodes[row] for row in rows], logits, mlp_inputs, transcoders)
        # A leaf no target of the chunk reads (layer 0's features read no MLP) gets zeros.
        token_grad, *mlp_grads = torch.autograd.grad(
            values.sum(), leaves, retain_graph=i < len(chunks) - 1, materialize_grads=True
        )
        with torch.no_grad():
            effects = source_effects(token_grad, mlp_grads, run.token_vectors, sources, len(logit_tokens))
            adjacency[rows] = effects[: len(rows)]
    return AttributionGraph(
        tokens=tokens,
        nodes=nodes,
        adjacency=adjacency,
        logit_tokens=logit_tokens,
        logit_probabilities=logit_probs,
        d_transcoder=transcoders[0].cfg.d_transcoder,
        scan=transcoders[0].cfg.model_name,
    )


# ----------------------------------------------------------------------------------------
# 3. Pruning by influence, and how much of the output the graph explains


def normalized_weights(adjacency: Float[Tensor, "target source"]) -> Float[Tensor, "target source"]:
    """|A| with each row scaled to sum to 1: the share of a target's inputs each source has."""
    weights = adjacency.double().abs()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(
    weights: Float[Tensor, "target source"], logit_weights: Float[Tensor, " node"]
) -> Float[Tensor, " node"]:
    """logit_weights @ (W + W^2 + W^3 + ...): each node's share of the output, over all paths.

    Every edge points to a later layer or to a logit, so W is nilpotent and the series is
    a finite sum, equal to logit_weights @ ((I - W)^-1 - I): one linear solve."""
    eye = torch.eye(len(weights), dtype=weights.dtype)
    return torch.linalg.solve((eye - weights).T, logit_weights) - logit_weights


def find_threshold(scores: Float[Tensor, " n"], fraction: float) -> Float[Tensor, ""]:
    """The score above which the highest scores add up to `fraction` of the total."""
    sorted_scores = scores.sort(descending=True).values
    cumulative = sorted_scores.cumsum(dim=0) / sorted_scores.sum()
    index = min(int(torch.searchsorted(cumulative, fraction)), len(sorted_scores) - 1)
    return sorted_scores[index]


class PruneResult(NamedTuple):
    node_mask: Bool[Tensor, " node"]  # the nodes kept
    edge_mask: Bool[Tensor, "target source"]  # the edges kept
    cumulative_influence: Float[Tensor, " node"]  # share of influence of the nodes ranked up to this one


def prune_graph(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PruneResult:
    """circuit-tracer's pruning: keep the most influential nodes up to node_threshold of the
    total influence (tokens and logits always), then, among them, the edges carrying
    edge_threshold of the edge influence; then drop features and errors left with no
    outgoing edge, and features left with no incoming edge, until nothing changes."""
    if not (0 <= node_threshold <= 1 and 0 <= edge_threshold <= 1):
        raise ValueError(f"Thresholds must lie in [0, 1], got {node_threshold} and {edge_threshold}.")
    logit_weights = graph.logit_weights()
    node_influence = influence(normalized_weights(graph.adjacency), logit_weights)
    always = graph.mask("token") | graph.mask("logit")
    node_mask = (node_influence >= find_threshold(node_influence, node_threshold)) | always

    pruned = graph.adjacency.double() * node_mask[:, None] * node_mask[None, :]
    pruned_weights = normalized_weights(pruned)
    # An edge's score: its share of its target's inputs times the target's own influence.
    edge_scores = pruned_weights * (influence(pruned_weights, logit_weights) + logit_weights)[:, None]
    edge_mask = (edge_scores >= find_threshold(edge_scores.flatten(), edge_threshold)) & (edge_scores > 0)

    is_feature, is_error = graph.mask("feature"), graph.mask("error")
    while True:
        edge_mask &= node_mask[:, None] & node_mask[None, :]
        keep = node_mask.clone()
        keep[is_feature | is_error] &= edge_mask.any(dim=0)[is_feature | is_error]  # something reads it
        keep[is_feature] &= edge_mask.any(dim=1)[is_feature]  # something explains it
        if torch.equal(keep, node_mask):
            break
        node_mask = keep

    order = node_influence.argsort(descending=True)
    cumulative = torch.zeros_like(node_influence)
    cumulative[order] = node_influence[order].cumsum(dim=0) / node_influence.sum()
    return PruneResult(node_mask, edge_mask, cumulative)


@dataclass(frozen=True)
class GraphScores:
    replacement: float  # share of the tokens' and errors' influence that is the tokens'
    completeness: float  # influence-weighted share of nodes' inputs that are not errors


def graph_scores(graph: AttributionGraph, pruned: PruneResult | None = None) -> GraphScores:
    """circuit-tracer's replacement and completeness scores: how much of the prediction the
    graph explains from the tokens up, rather than leaving to its error nodes.

    Given a pruning, the pruned-away features count as error nodes (their inputs cut, so
    that each becomes a source the graph does not explain): the scores of the pruned graph.
    """
    is_error = graph.mask("error")
    adjacency = graph.adjacency
    if pruned is not None:
        is_error = is_error | (graph.mask("feature") & ~pruned.node_mask)
        adjacency = adjacency * ~is_error[:, None]
    weights = normalized_weights(adjacency)
    logit_weights = graph.logit_weights()
    node_influence = influence(weights, logit_weights)
    token_influence = node_influence[graph.mask("token")].sum()
    error_influence = node_influence[is_error].sum()
    non_error_share = 1 - weights[:, is_error].sum(dim=1)
    output_influence = node_influence + logit_weights
    return GraphScores(
        replacement=(token_influence / (token_influence + error_influence)).item(),
        completeness=((non_error_share * output_influence).sum() / output_influence.sum()).item(),
    )


# ----------------------------------------------------------------------------------------
# 4. Checking the graph by intervening on the real model


def target_logit(logits: Float[Tensor, "pos d_vocab"], token: int) -> Float[Tensor, ""]:
    """What a logit node measures: the logit at the last position minus the mean logit."""
    return logits[-1, token] - logits[-1].mean()


def feature_shift_hooks(
    graph: AttributionGraph, features: Sequence[int], transcoders: Sequence[Transcoder], scale: float
) -> list[Hook]:
    """Forward hooks that rescale features in the real model: add (scale - 1) * a * W_dec[f]
    to the MLP output at the feature's layer and position (scale 0 ablates it)."""
    shifts = {}
    for index in features:
        node = graph.nodes[index]
        if node.kind != "feature":
            raise ValueError(f"Node {index} is a {node.kind} node; only features can be rescaled.")
        d_model = transcoders[node.layer].cfg.d_model
        shift = shifts.setdefault(node.layer, torch.zeros(len(graph.tokens), d_model, dtype=transcoders[0].W_dec.dtype))
        shift[node.pos] += (scale - 1) * node.activation * transcoders[node.layer].W_dec[node.index]

    def add(shift: Tensor) -> Callable:
        return lambda mlp_out, hook: mlp_out + shift

    return [(transcoders[layer].cfg.hook_out, add(shift.detach())) for layer, shift in shifts.items()]


class LogitEffects(NamedTuple):
    """Each node's effect on one logit node per unit of its activation (zero for non-features)."""

    direct: Float[Tensor, " node"]  # through its direct edge alone
    total: Float[Tensor, " node"]  # through every path of the graph


def logit_effects(graph: AttributionGraph, logit: int = 0) -> LogitEffects:
    """What the linear replacement model says rescaling each feature does to logit node `logit`.

    An edge A[t, s] is the effect of s at its full activation a_s, so s moved by d moves t's
    pre-activation by A[t, s] * d / a_s, and an active feature's activation moves with its
    pre-activation (ReLU's slope is 1). With J = A[features, features] / a the features'
    shifts d solve d = d0 + J d for imposed shifts d0, and the logit moves by
    e @ (I - J)^-1 @ d0, where e is the logit's row of A / a: the total effects are
    e @ (I - J)^-1. Edges only go to later layers and the features are sorted by layer, so
    I - J is unit lower-triangular: one triangular solve."""
    is_feature = graph.mask("feature")
    acts = torch.tensor([node.activation for node in graph.nodes if node.kind == "feature"], dtype=torch.float64)
    per_unit = graph.adjacency.double()[:, is_feature] / acts
    jacobian = per_unit[is_feature]
    direct = per_unit[graph.mask("logit").nonzero().flatten()[logit]]
    eye = torch.eye(len(acts), dtype=torch.float64)
    total = torch.linalg.solve_triangular((eye - jacobian).T, direct[:, None], upper=True)[:, 0]
    zeros = torch.zeros(len(graph.nodes), dtype=torch.float64)
    return LogitEffects(zeros.index_put((is_feature,), direct), zeros.index_put((is_feature,), total))


@torch.no_grad()
def measured_change(
    model: Transformer,
    transcoders: Sequence[Transcoder],
    graph: AttributionGraph,
    features: Sequence[int],
    *,
    scale: float = 0.0,
    logit: int = 0,
    hold: Sequence[str] = (),
) -> float:
    """Rescale `features` (node indices) in the real model, where attention, LayerNorm and
    the MLPs all respond, and return the change of logit node `logit`'s target. The hooks
    named in `hold` (say "ln_final.hook_scale") are held at their clean values: a way to
    find which of the model's responses the graph's linear story leaves out."""
    token = int(graph.logit_tokens[logit])
    clean_logits, cache = model.run_with_cache(graph.tokens[None], names_filter=list(hold))
    held = [(name, lambda live, hook, clean=cache[name]: clean) for name in hold]
    hooks = feature_shift_hooks(graph, features, transcoders, scale) + held
    changed = model.run_with_hooks(graph.tokens[None], fwd_hooks=hooks)[0]
    return (target_logit(changed, token) - target_logit(clean_logits[0], token)).item()


def predicted_change(
    graph: AttributionGraph, effects: LogitEffects, features: Sequence[int], scale: float
) -> tuple[float, float]:
    """The graph's prediction of the change of a logit (`effects`'s) when `features` (node
    indices) are rescaled by `scale`: through their direct edges, and through every path."""
    shifts = torch.zeros(len(graph.nodes), dtype=torch.float64)
    for index in features:
        shifts[index] = (scale - 1) * graph.nodes[index].activation
    return (effects.direct @ shifts).item(), (effects.total @ shifts).item()


@dataclass
class InterventionResults:
    layer: Int[Tensor, " n"]  # each rescaled feature's layer
    measured: Float[Tensor, " n"]
    direct: Float[Tensor, " n"]
    total: Float[Tensor, " n"]


def intervention_experiment(
    model: Transformer,
    transcoders: Sequence[Transcoder],
    prompts: Sequence[Int[Tensor, " pos"]],
    *,
    features_per_prompt: int = 8,
    scale: float = 0.0,
    hold: Sequence[str] = (),
) -> InterventionResults:
    """On each prompt, rescale (one at a time) the features with the largest direct edges to
    the top logit, and set the measured change of that logit (`hold` as in
    `measured_change`) beside the predicted ones."""
    rows = []
    for tokens in tqdm(prompts, desc="interventions"):
        graph = build_attribution_graph(model, transcoders, tokens, max_logits=1)
        effects = logit_effects(graph)
        strongest = effects.direct.abs().argsort(descending=True)[:features_per_prompt].tolist()
        for index in strongest:
            measured = measured_change(model, transcoders, graph, [index], scale=scale, hold=hold)
            rows.append((graph.nodes[index].layer, measured, *predicted_change(graph, effects, [index], scale)))
    layer, measured, direct, total = zip(*rows)
    return InterventionResults(
        layer=torch.tensor(layer),
        measured=torch.tensor(measured),
        direct=torch.tensor(direct),
        total=torch.tensor(total),
    )


def correlation_and_slope(predicted: Float[Tensor, " n"], measured: Float[Tensor, " n"]) -> tuple[float, float]:
    """Pearson's r, and the least-squares slope of measured on predicted (1 if the graph's
    predictions are right on average, below 1 if they overshoot)."""
    x, y = predicted.double() - predicted.double().mean(), measured.double() - measured.double().mean()
    return ((x @ y) / (x.norm() * y.norm())).item(), ((x @ y) / (x @ x)).item()


# ----------------------------------------------------------------------------------------
# 5. Export for the graph page (circuit-tracer's frontend JSON)


def feature_json_id(node: Node, d_transcoder: int) -> int:
    """circuit-tracer's "feature" number of a feature: unique across layers."""
    return node.index + 10 ** math.ceil(math.log10(d_transcoder)) * node.layer


def node_json(graph: AttributionGraph, index: int, influence: float, token_labels: Sequence[str]) -> dict:
    node = graph.nodes[index]
    n_layers = 1 + max(n.layer for n in graph.nodes if n.layer is not None)
    common = {"ctx_idx": node.pos, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": "", "influence": influence,
              "activation": None, "token_prob": 0.0, "is_target_logit": False}  # fmt: skip
    if node.kind == "feature":
        node_id = f"{node.layer}_{node.index}_{node.pos}"
        fields = {"feature": feature_json_id(node, graph.d_transcoder), "layer": str(node.layer),
                  "feature_type": "cross layer transcoder", "jsNodeId": f"{node.layer}_{node.index}-0",
                  "activation": node.activation}  # fmt: skip
    elif node.kind == "error":
        node_id = f"err_{node.layer}_{node.pos}"  # circuit-tracer's "0_{layer}_{pos}" can equal a feature's id
        fields = {"feature": -1, "layer": str(node.layer), "feature_type": "mlp reconstruction error",
                  "jsNodeId": f"{node.layer}_{node.pos}-0"}  # fmt: skip
    elif node.kind == "token":
        node_id = f"E_{node.index}_{node.pos}"
        fields = {"feature": node.pos, "layer": "E", "feature_type": "embedding", "jsNodeId": f"E_{node.index}-{node.pos}"}
    else:
        layer, rank = str(n_layers + 1), index - int(graph.mask("logit").nonzero()[0, 0])
        probability = graph.logit_probabilities[rank].item()
        node_id = f"{layer}_{node.index}_{node.pos}"
        fields = {"feature": node.index, "layer": layer, "feature_type": "logit", "jsNodeId": f"L_{node.index}-{node.pos}",
                  "token_prob": probability, "is_target_logit": rank == 0,
                  "clerp": f'Output "{token_labels[node.index]}" (p={probability:.3f})'}  # fmt: skip
    return {"node_id": node_id, **common, **fields}


def graph_to_json(
    graph: AttributionGraph,
    *,
    prompt: str,
    token_labels: Sequence[str],
    slug: str,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
) -> dict:
    """The pruned graph as circuit-tracer's frontend reads it (its `create_graph_files`).

    `token_labels[t]` is the label of token id t, for every id of the vocabulary (so that
    both the prompt's tokens and the logits' can be named). The dict, ready for json.dump:

        metadata  {slug, scan, transcoder_list: [], prompt_tokens: [label per position],
                   prompt, node_threshold}
        qParams   {pinnedIds: [], supernodes: [], linkType: "both", clickedId: "", sg_pos: ""}
        nodes     one per kept node, each with
                  node_id    "{layer}_{feature}_{pos}" feature, "err_{layer}_{pos}" error,
                             "E_{token}_{pos}" token, "{n_layers+1}_{token}_{pos}" logit
                  feature    layer * 10^ceil(log10 d_transcoder) + feature id; -1 for an
                             error; the position for a token; the token id for a logit
                  layer      "0".."n_layers-1", "E" for tokens, str(n_layers + 1) for logits
                  ctx_idx    the position; feature_type "cross layer transcoder",
                             "mlp reconstruction error", "embedding" or "logit"
                  jsNodeId   "{layer}_{feature}-0", "{layer}_{pos}-0", "E_{token}-{pos}",
                             "L_{token}-{pos}"
                  influence  cumulative share of influence up to this node (lower: more
                             influential; the page's pruning slider compares against it)
                  activation the feature's activation (null for other nodes)
                  token_prob, is_target_logit (logits: probability, the most probable one);
                  clerp      'Output "{token}" (p=0.123)' for logits, else ""
                  run_idx 0, reverse_ctx_idx 0
        links     {source: node_id, target: node_id, weight: A[target, source]} per kept
                  edge; nodes with no kept link are dropped, except tokens and logits.

    Where this differs from circuit-tracer: error node ids ("0_{layer}_{pos}" there, which
    equals a layer-0 feature's id when the feature number equals the layer), and every
    node, logits too, carries a number as influence (circuit-tracer leaves logits null)."""
    if len(token_labels) <= int(graph.tokens.max()) or len(token_labels) <= int(graph.logit_tokens.max()):
        raise ValueError(f"token_labels needs a label for every token id (the vocabulary); got {len(token_labels)}.")
    node_mask, edge_mask, cumulative = prune_graph(graph, node_threshold, edge_threshold)
    kept = node_mask.nonzero().flatten().tolist()
    nodes = {i: node_json(graph, i, cumulative[i].item(), token_labels) for i in kept}
    targets, sources = edge_mask.nonzero(as_tuple=True)
    links = [
        {"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": graph.adjacency[t, s].item()}
        for t, s in zip(targets.tolist(), sources.tolist())
    ]
    linked = {link["source"] for link in links} | {link["target"] for link in links}
    always = ("embedding", "logit")
    return {
        "metadata": {
            "slug": slug,
            "scan": graph.scan,
            "transcoder_list": [],
            "prompt_tokens": [token_labels[token] for token in graph.tokens.tolist()],
            "prompt": prompt,
            "node_threshold": node_threshold,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": [node for node in nodes.values() if node["node_id"] in linked or node["feature_type"] in always],
        "links": links,
    }
