"""Graders for chapter 06, automated circuit discovery, graded against circuits known by construction.

The references are `solutions/circuit_discovery.py`. Each grader runs the learner's
function and the reference on seeded inputs: the handwritten models of
`toy_models/handwritten.py` (whose circuits are exact, so most edges score exactly 0)
and a small random transformer with LayerNorm and MLPs (where every edge matters a
little, so that mistakes the handwritten models hide show). Where the answers differ,
diagnostics compute what each common mistake would have given and name it.

The learner's functions are only called, with models, tensors, floats, edge sets and a
metric callable.
"""

from functools import cache

import torch
from torch import Tensor

from graders.core import Chapter, GraderFailure, as_tensor, compare_tensors, looks_like
from solutions import circuit_discovery as reference
from toy_models import edge_patching
from toy_models.edge_patching import Edge, all_edges, forward_by_edges, receivers, senders, senders_into
from toy_models.handwritten import handwritten_circuits
from toy_models.metrics import answer_logprob, kl_from_full
from toy_models.model import Transformer, TransformerConfig

CHAPTER = Chapter("06_circuit_discovery")
BATCH = 4  # small: each grader runs a method several times over


# --------------------------------------------------------------------------- the models graded on

@cache
def _handwritten() -> dict:
    return {circuit.name: circuit for circuit in handwritten_circuits()}


@cache
def random_model(seed: int) -> Transformer:
    """Two layers, two heads, MLPs and LayerNorm, with weights large enough that attention is not uniform."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(n_layers=2, d_model=12, n_heads=2, d_head=4, d_vocab=7, n_ctx=6, d_mlp=16,
                            normalization_type="LN")
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(1 + 0.2 * torch.randn_like(param) if name.endswith(".w") else 0.5 * torch.randn_like(param))
    return model


def setup(model_name: str, seed: int):
    """(model, clean tokens, corrupted tokens, target positions, true circuit or None) of a variant."""
    generator = torch.Generator().manual_seed(seed)
    if model_name == "random":
        model = random_model(seed)
        clean, corrupted = (torch.randint(0, model.cfg.d_vocab, (BATCH, model.cfg.n_ctx), generator=generator)
                            for _ in range(2))
        return model, clean, corrupted, tuple(range(model.cfg.n_ctx - 1)), None
    circuit = _handwritten()[model_name]
    clean, corrupted = circuit.sample(generator, BATCH), circuit.sample(generator, BATCH)
    return circuit.model, clean, corrupted, circuit.target_positions, circuit.edges


def scoring_setup(model_name: str, seed: int):
    """What the edge-scoring graders share: (model, clean tokens, corrupted tokens, the metric
    at the target positions, every edge in all_edges order)."""
    net, clean, corrupted, positions, _ = setup(model_name, seed)
    return net, clean, corrupted, answer_logprob(clean, positions), all_edges(net.cfg)


def describe(model_name: str) -> str:
    if model_name == "random":
        return "a random 2-layer transformer with MLPs and LayerNorm"
    return f"the handwritten {model_name} model"


CHAPTER.glossary = {"model": describe}
VARIANTS = ({"model": "induction-copier"}, {"model": "random", "seed": 1}, {"model": "fibonacci-mod", "seed": 2})


# --------------------------------------------------------------------------- reading the learner's answers

def edge_scores(actual: object, edges: list[Edge], *, what: str) -> Tensor:
    """A learner's {edge: score} as a tensor in `edges`' order, after checking its keys."""
    if not isinstance(actual, dict):
        raise GraderFailure(f"{what} should return a dict {{(sender, receiver): score}}, got {type(actual).__name__}."
                            + (" Did you forget to `return` it?" if actual is None else ""))
    keys = {tuple(key) if isinstance(key, (tuple, list)) else key for key in actual}
    if keys and all(isinstance(key, str) for key in keys):
        raise GraderFailure(f"{what}: the keys are node names ({sorted(keys)[:3]}, ...); score every edge, "
                            "keyed by (sender, receiver), as all_edges(model.cfg) lists them.")
    missing, extra = set(edges) - keys, keys - set(edges)
    if missing or extra:
        raise GraderFailure(f"{what}: expected one score for each of the {len(edges)} edges of all_edges(model.cfg); "
                            + (f"missing {sorted(missing)[:3]}" if missing else "")
                            + ("; " if missing and extra else "")
                            + (f"unexpected keys {sorted(map(str, extra))[:3]}" if extra else "") + ".")
    values = {tuple(key) if isinstance(key, list) else key: value for key, value in actual.items()}
    return torch.tensor([float(as_tensor(values[edge])) for edge in edges])


def as_scores(scores: dict[Edge, float], edges: list[Edge]) -> Tensor:
    return torch.tensor([scores[edge] for edge in edges])


# --------------------------------------------------------------------------- what common mistakes give

def _outputs(model, tokens: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        return forward_by_edges(model, tokens)[1]


def _metric_of(model, tokens: Tensor, metric, patched=frozenset(), replacements=None) -> float:
    with torch.no_grad():
        return metric(forward_by_edges(model, tokens, frozenset(patched), replacements)[0]).item()


def _patching_mistakes(model, clean, corrupted, metric) -> dict[str, dict[Edge, float]]:
    """Patching the sender's node (every edge out of it), denoising, and the sign flipped."""
    edges = all_edges(model.cfg)
    clean_out, corrupted_out = _outputs(model, clean), _outputs(model, corrupted)
    clean_metric, corrupted_metric = _metric_of(model, clean, metric), _metric_of(model, corrupted, metric)
    node = {s: _metric_of(model, clean, metric, {e for e in edges if e[0] == s}, corrupted_out) - clean_metric
            for s in {s for s, _ in edges}}
    exact = reference.edge_patching_scores(model, clean, corrupted, metric)
    return {
        "node": {(s, r): node[s] for s, r in edges},
        "denoising": {e: _metric_of(model, corrupted, metric, {e}, clean_out) - corrupted_metric for e in edges},
        "flipped": {e: -score for e, score in exact.items()},
        "from_corrupted": {e: score + clean_metric - corrupted_metric for e, score in exact.items()},
    }


def _gradients(model, tokens, metric, embed=None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """d metric / d every receiver's input and every sender's output, on `tokens` (with the
    embeddings replaced by `embed`, if given)."""
    from_embed = frozenset(e for e in all_edges(model.cfg) if e[0] == "embed")
    inputs = {}
    logits, outputs = forward_by_edges(model, tokens, from_embed if embed is not None else frozenset(),
                                       {"embed": embed} if embed is not None else None, inputs=inputs)
    senders = [s for s in outputs if outputs[s].requires_grad]
    grads = torch.autograd.grad(metric(logits), [*inputs.values(), *(outputs[s] for s in senders)], allow_unused=True)
    by_receiver = dict(zip(inputs, grads[: len(inputs)], strict=True))
    by_sender = {s: torch.zeros_like(outputs[s]) if g is None else g for s, g in zip(senders, grads[len(inputs):],
                                                                                      strict=True)}
    return by_receiver, by_sender


def _attribution_mistakes(model, clean, corrupted, metric) -> dict[str, dict[Edge, float]]:
    edges = all_edges(model.cfg)
    delta = {s: corrupted_s - clean_s for (s, corrupted_s), clean_s in
             zip(_outputs(model, corrupted).items(), _outputs(model, clean).values(), strict=True)}
    at_clean, of_sender = _gradients(model, clean, metric)
    at_corrupted, _ = _gradients(model, corrupted, metric)
    return {
        "at_corrupted": {(s, r): (delta[s] * at_corrupted[r]).sum().item() for s, r in edges},
        "gradient_only": {(s, r): at_clean[r].sum().item() for s, r in edges},
        "flipped": {(s, r): -(delta[s] * at_clean[r]).sum().item() for s, r in edges},
        "node": {(s, r): (delta[s] * of_sender.get(s, torch.zeros_like(delta[s]))).sum().item() for s, r in edges},
    }


def _ig(model, clean, corrupted, metric, alphas: list[float]) -> dict[Edge, float]:
    """EAP-IG's product with the gradient averaged over the embeddings corrupted + alpha * (clean - corrupted)."""
    clean_out, corrupted_out = _outputs(model, clean), _outputs(model, corrupted)
    total = {r: 0.0 for r in receivers(model.cfg)}
    for alpha in alphas:
        embed = corrupted_out["embed"] + alpha * (clean_out["embed"] - corrupted_out["embed"])
        grads, _ = _gradients(model, clean, metric, embed)
        total = {r: total[r] + grads[r] / len(alphas) for r in total}
    return {(s, r): ((corrupted_out[s] - clean_out[s]) * total[r]).sum().item() for s, r in all_edges(model.cfg)}


def _acdc_variant(model, clean, corrupted, threshold, positions, metric=None, *, forwards=False, alone=False,
                  against_full=False, absolute=False) -> frozenset[Edge]:
    """ACDC with one of the common mistakes."""
    corrupted_out = _outputs(model, corrupted)
    with torch.no_grad():
        full_logits = forward_by_edges(model, clean)[0]

    def score(logits: Tensor) -> float:
        return -kl_from_full(full_logits.log_softmax(dim=-1), logits, positions) if metric is None else \
            metric(logits).item()

    order = receivers(model.cfg) if forwards else list(reversed(receivers(model.cfg)))
    removed, full = frozenset(), score(full_logits)
    current = full
    for receiver in order:
        senders = senders_into(model.cfg, receiver)
        for sender in senders if forwards else reversed(senders):
            trial = frozenset({(sender, receiver)}) if alone else removed | {(sender, receiver)}
            with torch.no_grad():
                trial_score = score(forward_by_edges(model, clean, trial, corrupted_out)[0])
            fall = (full if against_full or alone else current) - trial_score
            if (abs(fall) if absolute else fall) < threshold:
                removed, current = removed | {(sender, receiver)}, trial_score
    return frozenset(all_edges(model.cfg)) - removed


# --------------------------------------------------------------------------- the graph

#: The shapes graph_edges is graded on: attention-only, with MLPs, and the smallest.
GRAPH_SHAPES = {
    "2 layers x 2 heads, attention only": TransformerConfig(n_layers=2, d_model=8, n_heads=2, d_head=4, d_vocab=5,
                                                            n_ctx=4),
    "3 layers x 2 heads with MLPs": TransformerConfig(n_layers=3, d_model=8, n_heads=2, d_head=4, d_vocab=5, n_ctx=4,
                                                      d_mlp=8),
    "1 layer x 1 head with an MLP": TransformerConfig(n_layers=1, d_model=4, n_heads=1, d_head=4, d_vocab=5, n_ctx=4,
                                                      d_mlp=4),
}


def _graph_mistakes(cfg: TransformerConfig) -> dict[str, frozenset[Edge]]:
    """The edge sets of the common mistakes: heads reading their own layer, MLPs not, heads
    as one receiver, no logits, and only the previous layer read."""
    right = frozenset(reference.graph_edges(cfg))
    layer = {node: -1 if node == "embed" else int(node[1:].split(".")[0]) for node in senders(cfg)}
    same_layer_heads = {(s, r) for r in receivers(cfg) if r.startswith("A") for s in senders(cfg)
                        if s.startswith("A") and layer[s] == int(r[1:].split(".")[0])}
    own_heads_into_mlp = {(s, r) for s, r in right if r.startswith("M") and layer[s] == int(r[1:])}
    return {
        "own_layer": right | same_layer_heads,
        "mlp_misses_own_layer": right - own_heads_into_mlp,
        "whole_heads": frozenset((s, r.rsplit(".", 1)[0] if r.startswith("A") else r) for s, r in right),
        "no_logits": frozenset(edge for edge in right if edge[1] != "logits"),
        "previous_layer_only": frozenset(
            (s, r) for s, r in right
            if r == "logits" or s == "embed" or layer[s] >= (int(r[1:].split(".")[0]) - 1)),
    }


@CHAPTER.exercise("graph_edges", points=1, reference=reference.graph_edges, variants=tuple(
                      {"shape": shape} for shape in GRAPH_SHAPES),
                  forbidden=(edge_patching.all_edges, edge_patching.senders_into),
                  hint="Loop over receivers(cfg) and, inside, over senders(cfg); keep (sender, receiver) when the "
                       "sender's layer is earlier (\"embed\" is before layer 0), when the receiver is \"logits\", "
                       "or when the receiver is an MLP and the sender a head of the same layer.")
def grade_graph_edges(graph_edges, *, shape="2 layers x 2 heads, attention only"):
    cfg = GRAPH_SHAPES[shape]
    what = f"graph_edges on a model of {shape}"
    given = graph_edges(cfg)
    if not isinstance(given, (list, tuple)):
        raise GraderFailure(f"{what} should return a list of edges (sender, receiver), got {type(given).__name__}."
                            + (" Did you forget to `return` it?" if given is None else ""))
    edges = [tuple(edge) for edge in given]
    if len(set(edges)) != len(edges):
        repeated = next(edge for edge in edges if edges.count(edge) > 1)
        raise GraderFailure(f"{what} lists {repeated} more than once: each edge belongs in the list once.")
    wrong = _graph_mistakes(cfg)
    compare_edge_sets(edges, frozenset(reference.graph_edges(cfg)), what=what, mistakes=[
        (lambda found: found == wrong["own_layer"],
         "a head reads the heads of its own layer: they run side by side, so a head's query, key and value read "
         "only \"embed\" and the layers before it."),
        (lambda found: found == wrong["mlp_misses_own_layer"],
         "an MLP misses the heads of its own layer: the MLP runs after them and reads their outputs."),
        (lambda found: found == wrong["whole_heads"],
         "your receivers are whole heads: each head has three receivers, \"A{l}.{h}.q\", \".k\" and \".v\" "
         "(use receivers(cfg))."),
        (lambda found: found == wrong["no_logits"],
         "there are no edges into \"logits\": the unembedding reads every sender."),
        (lambda found: found == wrong["previous_layer_only"],
         "a receiver reads only the layer just before it: the residual stream holds the sum of *every* earlier "
         "output, so it reads all of them."),
    ])


# --------------------------------------------------------------------------- exact edge patching

#: The scoring variants, and one patching to the corrupted batch's means.
PATCH_VARIANTS = (*VARIANTS, {"model": "random", "seed": 3, "ablation": "mean"})


def _mean_mistakes(model, clean, corrupted, metric) -> dict[str, dict[Edge, float]]:
    """Mean ablation with the mean taken over positions as well, or over the clean batch."""
    edges = all_edges(model.cfg)
    clean_metric = _metric_of(model, clean, metric)

    def patched_to(replacements: dict[str, Tensor]) -> dict[Edge, float]:
        return {e: _metric_of(model, clean, metric, {e}, replacements) - clean_metric for e in edges}

    return {
        "over_positions": patched_to({s: out.mean(dim=(0, 1), keepdim=True)
                                      for s, out in _outputs(model, corrupted).items()}),
        "clean_mean": patched_to({s: out.mean(dim=0, keepdim=True) for s, out in _outputs(model, clean).items()}),
    }


@CHAPTER.exercise("edge_patching_scores", points=2, reference=reference.edge_patching_scores,
                  variants=PATCH_VARIANTS,
                  hint="Cache the senders' outputs on the corrupted run (forward_by_edges(model, corrupted_tokens)), "
                       "averaged over the batch (dim 0, keepdim) for ablation='mean'; then, for each edge, "
                       "forward_by_edges(model, clean_tokens, frozenset({edge}), those outputs), and the metric of "
                       "those logits minus the clean metric.")
def grade_edge_patching_scores(edge_patching_scores, *, seed=0, model="induction-copier", ablation="corrupted"):
    net, clean, corrupted, metric, edges = scoring_setup(model, seed)
    what = f"edge_patching_scores(..., ablation={ablation!r}) on {describe(model)}"
    actual = edge_scores(edge_patching_scores(net, clean.clone(), corrupted.clone(), metric, ablation=ablation),
                         edges, what=what)
    mistakes = cache(lambda: {k: as_scores(v, edges) for k, v in _patching_mistakes(net, clean, corrupted, metric).items()})
    means = cache(lambda: {k: as_scores(v, edges) for k, v in _mean_mistakes(net, clean, corrupted, metric).items()})
    compare_tensors(
        actual, as_scores(reference.edge_patching_scores(net, clean, corrupted, metric, ablation=ablation), edges),
        what=f"{what} (scores in all_edges order)",
        mistakes=[
            (looks_like(lambda: mistakes()["node"]),
             "you patched a node: every edge out of the sender at once. Patch one edge, so that only that "
             "receiver reads the corrupted value and the sender's other receivers still read the clean one."),
            (looks_like(lambda: mistakes()["denoising"]),
             "you patched the clean value into the corrupted run (the wrong direction, denoising): run the clean "
             "tokens with the edge carrying its corrupted value."),
            (looks_like(lambda: mistakes()["flipped"]),
             "the sign is flipped: return the patched metric minus the clean metric, negative where the edge "
             "carries the behaviour."),
            (looks_like(lambda: mistakes()["from_corrupted"]),
             "you subtracted the corrupted run's metric: subtract the clean metric."),
            (looks_like(lambda: as_scores(reference.edge_patching_scores(net, clean, corrupted, metric), edges)),
             "these are the resample-ablation scores: with ablation='mean' an edge carries its sender's corrupted "
             "output averaged over the batch."),
            (looks_like(lambda: means()["over_positions"]),
             "you averaged over the positions as well as the batch: mean ablation keeps one mean per position "
             "(mean over dim 0 only, keepdim=True)."),
            (looks_like(lambda: means()["clean_mean"]),
             "you averaged the clean run's outputs: the mean is over the corrupted (reference) batch."),
        ],
    )


# --------------------------------------------------------------------------- edge attribution patching

@CHAPTER.exercise("edge_attribution_scores", points=2, reference=reference.edge_attribution_scores,
                  variants=VARIANTS,
                  hint="Two forward passes: the corrupted run's outputs, and the clean run with "
                       "forward_by_edges(..., inputs=inputs) recording every receiver's input; one "
                       "torch.autograd.grad of the clean metric with respect to those inputs. Edge (s, r) scores "
                       "((corrupted[s] - clean[s]) * grad[r]).sum().")
def grade_edge_attribution_scores(edge_attribution_scores, *, seed=0, model="induction-copier"):
    net, clean, corrupted, metric, edges = scoring_setup(model, seed)
    what = f"edge_attribution_scores on {describe(model)}"
    actual = edge_scores(edge_attribution_scores(net, clean.clone(), corrupted.clone(), metric), edges, what=what)
    mistakes = cache(lambda: {k: as_scores(v, edges) for k, v in _attribution_mistakes(net, clean, corrupted,
                                                                                       metric).items()})
    exact = cache(lambda: as_scores(reference.edge_patching_scores(net, clean, corrupted, metric), edges))
    compare_tensors(
        actual, as_scores(reference.edge_attribution_scores(net, clean, corrupted, metric), edges),
        what=f"{what} (scores in all_edges order)",
        mistakes=[
            (looks_like(lambda: mistakes()["at_corrupted"]),
             "you took the gradient at the corrupted run: EAP's gradient is taken on the clean run, where the "
             "patch starts from."),
            (looks_like(lambda: mistakes()["gradient_only"]),
             "you summed the gradient alone: multiply it by the activation difference out_s(corrupted) - "
             "out_s(clean) before summing."),
            (looks_like(lambda: mistakes()["flipped"]),
             "the sign is flipped: the activation difference is corrupted minus clean, so that the estimate "
             "has the sign of edge_patching_scores."),
            (looks_like(lambda: mistakes()["node"]),
             "you took the gradient with respect to the sender's output: that is the node's attribution, summed "
             "over all its receivers. Take it with respect to the receiver's input."),
            (looks_like(exact),
             "these are the exact patching scores; this exercise asks for their linear estimate."),
        ],
    )


# --------------------------------------------------------------------------- EAP with integrated gradients

IG_STEPS = 3


@CHAPTER.exercise("eap_ig_scores", points=2, reference=reference.eap_ig_scores, variants=VARIANTS,
                  hint="For k = 1 .. steps, run the clean tokens with every edge out of 'embed' carrying corrupted "
                       "+ (k / steps) * (clean - corrupted) embeddings; average the gradients of the metric with "
                       "respect to the receivers' inputs; then score as EAP does.")
def grade_eap_ig_scores(eap_ig_scores, *, seed=0, model="induction-copier"):
    net, clean, corrupted, metric, edges = scoring_setup(model, seed)
    what = f"eap_ig_scores(..., steps={IG_STEPS}) on {describe(model)}"
    actual = edge_scores(eap_ig_scores(net, clean.clone(), corrupted.clone(), metric, steps=IG_STEPS), edges,
                         what=what)

    def ig(alphas: list[float]) -> Tensor:
        return as_scores(_ig(net, clean, corrupted, metric, alphas), edges)

    right = [k / IG_STEPS for k in range(1, IG_STEPS + 1)]
    compare_tensors(
        actual, as_scores(reference.eap_ig_scores(net, clean, corrupted, metric, steps=IG_STEPS), edges),
        what=f"{what} (scores in all_edges order)",
        mistakes=[
            (looks_like(lambda: ig([k / IG_STEPS for k in range(IG_STEPS)])),
             "your interpolation runs the wrong way, or is off by one: the points are alpha = k / steps for "
             "k = 1 .. steps, of corrupted + alpha * (clean - corrupted), so the last is the clean run and the "
             "fully corrupted one is left out."),
            (looks_like(lambda: ig([k / IG_STEPS for k in range(IG_STEPS + 1)])),
             "you averaged over steps + 1 points, both ends included: use k = 1 .. steps."),
            (looks_like(lambda: ig([1.0])),
             "you took the gradient at the clean run only (plain EAP): average it over the interpolated runs."),
            (looks_like(lambda: IG_STEPS * ig(right)),
             "you summed the gradients over the steps: average them (divide by steps)."),
            (looks_like(lambda: -ig(right)),
             "the sign is flipped: the activation difference is corrupted minus clean."),
        ],
    )


# --------------------------------------------------------------------------- ACDC

#: Per variant: a threshold at which ACDC keeps some edges and drops others.
ACDC_VARIANTS = (
    {"model": "induction-copier", "threshold": 0.1},
    {"model": "random", "seed": 1, "threshold": 0.01},
    {"model": "random", "seed": 3, "threshold": 0.003},
    {"model": "random", "seed": 1, "threshold": 0.01, "task_metric": True},
)


def compare_edge_sets(actual: object, expected: frozenset[Edge], *, what: str, mistakes) -> None:
    if not isinstance(actual, (set, frozenset, list, tuple)):
        raise GraderFailure(f"{what} should return a set of edges (sender, receiver), got {type(actual).__name__}."
                            + (" Did you forget to `return` it?" if actual is None else ""))
    given = frozenset(tuple(edge) for edge in actual)
    if given == expected:
        return
    lines = [f"{what} is wrong: it keeps {len(given)} edges, the reference {len(expected)}. "
             f"Missing: {sorted(expected - given)[:4]}; not in the reference's: {sorted(given - expected)[:4]}."]
    for recognises, explanation in mistakes:
        try:
            found = recognises(given)
        except Exception:  # noqa: BLE001 - a diagnostic that cannot run has not recognised the mistake
            found = False
        if found:
            lines.append(f"Likely mistake: {explanation}")
            break
    raise GraderFailure("\n".join(lines))


@CHAPTER.exercise("acdc", points=3, reference=reference.acdc, variants=ACDC_VARIANTS,
                  hint="Loop over reversed(receivers(cfg)) and, inside, reversed(senders_into(cfg, receiver)); keep "
                       "one growing set of removed edges and the circuit's score without them (minus the KL, or the "
                       "task metric if one is given); remove an edge for good when the score falls by less than the "
                       "threshold from that score.")
def grade_acdc(acdc, *, seed=0, model="induction-copier", threshold=0.1, task_metric=False):
    net, clean, corrupted, positions, _ = setup(model, seed)
    metric = answer_logprob(clean, positions) if task_metric else None
    what = (f"acdc(threshold={threshold}, positions={positions}{', metric=answer_logprob' if task_metric else ''}) "
            f"on {describe(model)}")
    expected = reference.acdc(net, clean, corrupted, threshold, positions=positions, metric=metric)
    by = "the metric falls" if task_metric else "the KL rises"

    def is_variant(**mistake):
        return lambda given: given == _acdc_variant(net, clean, corrupted, threshold, positions, **mistake)

    given = (acdc(net, clean.clone(), corrupted.clone(), threshold, positions=positions, metric=metric) if task_metric
             else acdc(net, clean.clone(), corrupted.clone(), threshold, positions=positions))
    compare_edge_sets(
        given, expected, what=what,
        mistakes=[
            (is_variant(metric=metric, forwards=True),
             "you visited the receivers forwards: ACDC starts at 'logits' and works backwards through "
             "reversed(receivers(cfg)), each receiver's senders in reverse too."),
            (is_variant(metric=metric, alone=True),
             "you tried each edge alone, restoring the edges removed before it: the removed edges stay removed, "
             "and each trial removes one more."),
            (is_variant(metric=metric, against_full=True),
             f"you compared the full model's score with the circuit's: compare how much {by} over its value "
             "before this removal."),
            (lambda given: given == frozenset(all_edges(net.cfg)) - expected,
             f"you kept exactly the edges the reference removes: keep an edge removed when {by} by *less* "
             "than the threshold."),
            (lambda given: task_metric and given == _acdc_variant(net, clean, corrupted, threshold, positions),
             "you ignored the metric given: with `metric`, the score is metric(logits), not the KL."),
            (is_variant(metric=metric, absolute=True),
             "you compared the absolute change with the threshold: a removal that *raises* the score is kept "
             "removed (only a fall of at least the threshold restores the edge)."),
        ],
    )


# --------------------------------------------------------------------------- scoring against the true circuit

def _edge(i: int) -> Edge:
    return (f"A0.{i}", "logits")


# (what, scores, circuit): negative scores in the circuit, ties across and within the classes.
AUC_CASES = [
    ("five edges, one tie across the circuit's boundary",
     {_edge(0): -3.0, _edge(1): 1.0, _edge(2): 1.0, _edge(3): 0.5, _edge(4): 0.0}, {_edge(0), _edge(1)}),
    ("eight edges, the circuit's scores negative, ties at zero",
     {_edge(i): s for i, s in enumerate([-2.0, -0.5, 0.0, 0.0, 0.3, 0.0, -1.0, 0.25])}, {_edge(0), _edge(1), _edge(2)}),
    ("six edges, all tied but one",
     {_edge(i): s for i, s in enumerate([0.0, 0.0, 0.0, 0.0, 0.0, -4.0])}, {_edge(0), _edge(5)}),
]


def _auc_mistakes(scores: dict, circuit: set) -> dict[str, float]:
    def mann_whitney(key, tie):
        inside = [key(s) for e, s in scores.items() if e in circuit]
        outside = [key(s) for e, s in scores.items() if e not in circuit]
        return sum((a > b) + tie * (a == b) for a in inside for b in outside) / (len(inside) * len(outside))

    right = mann_whitney(abs, 0.5)
    return {"signed": mann_whitney(lambda s: s, 0.5), "no_ties": mann_whitney(abs, 0.0), "ties_win": mann_whitney(abs, 1.0),
            "swapped": 1 - right}


@CHAPTER.exercise("roc_auc", points=1, reference=reference.roc_auc, variants=({},),
                  hint="Compare |score| of every edge of the circuit with |score| of every edge outside it: count a "
                       "win as 1 and a tie as 1/2, and divide by the number of pairs.")
def grade_roc_auc(roc_auc):
    for description, scores, circuit in AUC_CASES:
        wrong = _auc_mistakes(scores, circuit)
        compare_tensors(
            as_tensor(roc_auc(dict(scores), frozenset(circuit))),
            torch.tensor(reference.roc_auc(scores, frozenset(circuit))),
            what=f"roc_auc with {description}",
            mistakes=[
                (looks_like(lambda: torch.tensor(wrong["signed"])),
                 "you ranked by the signed score: an edge whose patching lowers the metric a lot is important "
                 "too, so rank by |score|."),
                (looks_like(lambda: torch.tensor(wrong["swapped"])),
                 "you swapped the false and true positive rates (the area came out 1 - AUC)."),
                (lambda a: wrong["no_ties"] - 1e-6 <= a.item() <= wrong["ties_win"] + 1e-6,
                 "ties were not counted one half: a tie between an edge of the circuit and one outside counts 1/2, "
                 "not 0 or 1, and tied edges enter the ranking together (a sort that puts one before the other "
                 "breaks the tie arbitrarily)."),
            ],
        )


# --------------------------------------------------------------------------- faithfulness

FAITHFULNESS_VARIANTS = ({"model": "induction-copier"}, {"model": "random", "seed": 1}, {"model": "random", "seed": 2})


def faithfulness_circuit(model_name: str, net, seed: int) -> frozenset[Edge]:
    """A circuit that is neither empty nor complete: the true one with one edge missing and
    two others added, or, on a random model, a random third of the edges."""
    edges = all_edges(net.cfg)
    generator = torch.Generator().manual_seed(seed)
    if model_name == "random":
        return frozenset(edges[i] for i in torch.randperm(len(edges), generator=generator)[: len(edges) // 3].tolist())
    true = sorted(_handwritten()[model_name].edges)
    others = [e for e in edges if e not in true]
    return frozenset(true[1:] + others[:2])


@CHAPTER.exercise("faithfulness", points=1, reference=reference.faithfulness, variants=FAITHFULNESS_VARIANTS,
                  hint="Three runs of the clean tokens: nothing patched, every edge patched, and every edge outside "
                       "the circuit patched (to the corrupted outputs); (circuit - all patched) / (clean - all patched).")
def grade_faithfulness(faithfulness, *, seed=0, model="induction-copier"):
    net, clean, corrupted, positions, _ = setup(model, seed)
    metric = answer_logprob(clean, positions)
    circuit = faithfulness_circuit(model, net, seed)
    everything = frozenset(all_edges(net.cfg))
    corrupted_out = _outputs(net, corrupted)
    zeros = {s: torch.zeros_like(v) for s, v in corrupted_out.items()}
    clean_m = _metric_of(net, clean, metric)
    kept = _metric_of(net, clean, metric, everything - circuit, corrupted_out)
    ablated = _metric_of(net, clean, metric, everything, corrupted_out)
    zeroed = _metric_of(net, clean, metric, everything, zeros)
    inside = _metric_of(net, clean, metric, circuit, corrupted_out)
    compare_tensors(
        as_tensor(faithfulness(net, clean.clone(), corrupted.clone(), circuit, metric)),
        torch.tensor(reference.faithfulness(net, clean, corrupted, circuit, metric)),
        what=f"faithfulness of a {len(circuit)}-edge circuit of {describe(model)}",
        mistakes=[
            (looks_like(lambda: torch.tensor(kept / clean_m)),
             "you divided by the clean metric: normalise by (clean metric - metric with every edge patched), "
             "after subtracting that baseline from the circuit's metric too."),
            (looks_like(lambda: torch.tensor(kept - ablated)),
             "you did not normalise: divide by (clean metric - metric with every edge patched)."),
            (looks_like(lambda: torch.tensor((kept - clean_m) / (clean_m - ablated))),
             "you subtracted the clean metric from the circuit's: the baseline to subtract is the metric with "
             "every edge patched."),
            (looks_like(lambda: torch.tensor((inside - ablated) / (clean_m - ablated))),
             "you patched the circuit's own edges: patch every edge *outside* the circuit, so that only the "
             "circuit carries the clean run."),
            (looks_like(lambda: torch.tensor((kept - zeroed) / (clean_m - zeroed))),
             "your baseline zero-ablates every edge: the baseline is every edge patched to its corrupted value."),
        ],
    )
