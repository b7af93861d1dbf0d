"""Attribution graphs (toy_models/attribution.py): the replacement model is exact, every edge
is the direct effect an explicit forward-pass computation gives, pruning keeps what
influences the output, and the export has circuit-tracer's frontend schema.

Everything runs on random transcoders (seeded), so no test waits for the shipped ones;
the checks on the shipped transcoders skip while they do not exist."""

import dataclasses
import json
import math
import time
from dataclasses import dataclass

import pytest
import torch

from toy_models import Transformer, TransformerConfig, load_pretrained
from toy_models.attribution import (
    AttributionGraph,
    Node,
    build_attribution_graph,
    correlation_and_slope,
    feature_shift_hooks,
    freezing_hooks,
    graph_scores,
    graph_to_json,
    influence,
    intervention_experiment,
    logit_effects,
    measured_change,
    predicted_change,
    prune_graph,
    replacement_hooks,
    replacement_logits,
    run_clean,
    salient_logits,
    transcoder_hooks,
)
from toy_models.data import ByteTokenizer
from toy_models.transcoder import Transcoder, TranscoderConfig

PROMPT = "    def parse(self, text, start)"  # 32 bytes; code-2l predicts ":"
TINY_TOKENS = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])


def random_transcoders(d_model: int, n_layers: int, d_transcoder: int, k: int, seed: int) -> list[Transcoder]:
    torch.manual_seed(seed)
    transcoders = [Transcoder(TranscoderConfig(d_model, d_transcoder, layer, k)) for layer in range(n_layers)]
    with torch.no_grad():
        for transcoder in transcoders:
            transcoder.b_enc.normal_(std=0.3)
            transcoder.b_dec.normal_(std=0.3)
    return transcoders


@dataclass(frozen=True)
class ResidualTranscoderConfig(TranscoderConfig):
    """A model without LayerNorm has no ln2: its MLP reads the residual stream itself."""

    @property
    def hook_in(self) -> str:
        return f"blocks.{self.layer}.hook_resid_mid"


def tiny_model(normalization_type: str | None = "LN", seed: int = 0) -> tuple[Transformer, list[Transcoder]]:
    """A small random model in float64, every weight and bias (LayerNorm's too) random, so
    that LayerNorm, attention and the biases all matter."""
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        n_layers=2, d_model=16, n_heads=2, d_vocab=13, n_ctx=8, d_mlp=32, normalization_type=normalization_type
    )
    model = Transformer(cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    transcoders = random_transcoders(16, 2, d_transcoder=24, k=4, seed=seed)
    if normalization_type is None:
        for transcoder in transcoders:
            transcoder.cfg = ResidualTranscoderConfig(**dataclasses.asdict(transcoder.cfg))
    return model.double(), [transcoder.double() for transcoder in transcoders]


@pytest.fixture(scope="module")
def code_2l():
    return load_pretrained("code-2l")


@pytest.fixture(scope="module")
def code_graph(code_2l):
    """The graph of PROMPT on code-2l with random transcoders, and the seconds it took."""
    transcoders = random_transcoders(128, 2, d_transcoder=1024, k=16, seed=0)
    start = time.perf_counter()
    graph = build_attribution_graph(code_2l, transcoders, ByteTokenizer().encode(PROMPT))
    return graph, time.perf_counter() - start


def shipped_transcoders():
    try:
        from toy_models.transcoder import load_transcoders

        transcoders = load_transcoders("code-2l")
    except (ImportError, ValueError, FileNotFoundError) as absent:
        pytest.skip(f"the shipped transcoders are not there yet: {absent}")
    return list(transcoders.values()) if isinstance(transcoders, dict) else list(transcoders)


# ----------------------------------------------------------------------------------------
# The replacement model


def test_replacement_logits_equal_the_models_with_random_transcoders(code_2l):
    tokens = ByteTokenizer().encode(PROMPT)
    transcoders = random_transcoders(128, 2, d_transcoder=1024, k=16, seed=0)
    with torch.no_grad():
        exact = code_2l(tokens[None])[0]
        replaced = replacement_logits(code_2l, transcoders, tokens)
        # Without its error nodes the replacement is far off: the errors are doing real work.
        run = run_clean(code_2l, transcoders, tokens)
        hooks = freezing_hooks(run)
        for transcoder, error in zip(transcoders, run.errors):
            hooks += transcoder_hooks(transcoder, torch.zeros_like(error))
        without_errors = code_2l.run_with_hooks(tokens[None], fwd_hooks=hooks)[0]
    assert (replaced - exact).abs().max() < 1e-4
    assert (without_errors - exact).abs().max() > 0.1


def test_replacement_logits_equal_the_models_with_shipped_transcoders(code_2l):
    tokens = ByteTokenizer().encode(PROMPT)
    with torch.no_grad():
        error = (replacement_logits(code_2l, shipped_transcoders(), tokens) - code_2l(tokens[None])[0]).abs().max()
    assert error < 1e-4


# ----------------------------------------------------------------------------------------
# Edges are direct effects, computed explicitly by forward passes


def explicit_targets(model, transcoders, graph, removals, freeze_layernorm=True):
    """Every target of the graph (features' pre-activations, then logits minus their mean)
    in the frozen model, by plain forward passes with no gradients, one batch row per set of
    removed source nodes: attention patterns and (if freeze_layernorm) LayerNorm scales held
    at their clean values, every MLP output held at its clean value minus what the removed
    sources write there. Returns [len(removals), n_targets]."""
    _, clean = model.run_with_cache(graph.tokens[None])
    batch = len(removals)
    names = ["blocks.0.hook_resid_pre"] + [tc.cfg.hook_out for tc in transcoders]
    writes = {name: clean[name].repeat(batch, 1, 1) for name in names}
    for row, removed in enumerate(removals):
        for node in (graph.nodes[index] for index in removed):
            if node.kind == "token":
                writes[names[0]][row, node.pos] -= clean[names[0]][0, node.pos]
                continue
            tc = transcoders[node.layer]
            mlp_in, mlp_out = clean[tc.cfg.hook_in][0, node.pos], clean[tc.cfg.hook_out][0, node.pos]
            written = node.activation * tc.W_dec[node.index] if node.kind == "feature" else mlp_out - tc(mlp_in)
            writes[tc.cfg.hook_out][row, node.pos] -= written
    frozen = [name for name in clean if name.endswith("hook_pattern") or (freeze_layernorm and name.endswith("hook_scale"))]
    hooks = [(name, lambda x, hook, value=clean[name]: value.expand_as(x)) for name in frozen]
    hooks += [(name, lambda x, hook, value=value: value) for name, value in writes.items()]
    with model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(graph.tokens.expand(batch, -1))
    values = []
    for node in graph.nodes:
        if node.kind == "feature":
            mlp_in = cache[transcoders[node.layer].cfg.hook_in][:, node.pos]
            values.append(transcoders[node.layer].hidden_pre(mlp_in)[:, node.index])
        elif node.kind == "logit":
            values.append(logits[:, -1, node.index] - logits[:, -1].mean(dim=-1))
    return torch.stack(values, dim=1)


def explicit_adjacency(model, transcoders, graph, freeze_layernorm=True):
    """A[:, s] = every target with s minus every target without it: in a linear model, s's effect."""
    sources = [i for i, node in enumerate(graph.nodes) if node.kind in ("feature", "error", "token")]
    values = explicit_targets(model, transcoders, graph, [[]] + [[s] for s in sources], freeze_layernorm)
    return (values[:1] - values[1:]).T, sources


@pytest.fixture(scope="module")
def tiny():
    model, transcoders = tiny_model()
    return model, transcoders, build_attribution_graph(model, transcoders, TINY_TOKENS, max_logits=3, batch_size=7)


def target_rows(graph):
    return [i for i, node in enumerate(graph.nodes) if node.kind in ("feature", "logit")]


def test_edges_equal_the_direct_effects_computed_by_forward_passes(tiny):
    model, transcoders, graph = tiny
    with torch.no_grad():
        explicit, sources = explicit_adjacency(model, transcoders, graph)
    computed = graph.adjacency[target_rows(graph)][:, sources]
    assert explicit.abs().max() > 0.1  # the comparison is not between zeros
    torch.testing.assert_close(computed, explicit, atol=1e-10, rtol=1e-8)
    # Nothing explains an error or a token, and a logit explains nothing.
    others = [i for i in range(len(graph.nodes)) if i not in target_rows(graph)]
    assert not graph.adjacency[others].any() and not graph.adjacency[:, graph.mask("logit")].any()


def test_the_frozen_model_is_linear_in_its_nodes(tiny):
    """Each target is its row of the adjacency plus a constant (the biases): remove every
    source at once and what is left is that constant."""
    model, transcoders, graph = tiny
    sources = [i for i, node in enumerate(graph.nodes) if node.kind in ("feature", "error", "token")]
    with torch.no_grad():
        value, constant = explicit_targets(model, transcoders, graph, [[], sources])
    torch.testing.assert_close(graph.adjacency[target_rows(graph)].sum(dim=1), value - constant, atol=1e-10, rtol=1e-8)


def test_the_explicit_check_would_catch_unfrozen_layernorm_and_unfrozen_gradients(tiny):
    """The comparison above has teeth: LayerNorm left live, or a plain gradient of the real
    model (nothing frozen, gradients through the MLPs), gives other edges."""
    model, transcoders, graph = tiny
    with torch.no_grad():
        unfrozen, sources = explicit_adjacency(model, transcoders, graph, freeze_layernorm=False)
    assert (unfrozen - graph.adjacency[target_rows(graph)][:, sources]).abs().max() > 1e-3

    embeddings = model.run_with_cache(graph.tokens[None])[1]["blocks.0.hook_resid_pre"].clone().requires_grad_()
    logits = model.run_with_hooks(graph.tokens[None], fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: embeddings)])
    token = int(graph.logit_tokens[0])
    (gradient,) = torch.autograd.grad(logits[0, -1, token] - logits[0, -1].mean(), embeddings)
    plain = (gradient[0] * embeddings[0]).sum(dim=-1).detach()
    first_logit = graph.mask("logit").nonzero()[0, 0]
    assert (plain - graph.adjacency[first_logit, graph.mask("token")]).abs().max() > 1e-3


def test_nodes_are_the_active_features_errors_tokens_and_top_logits(tiny):
    model, transcoders, graph = tiny
    kinds = [node.kind for node in graph.nodes]
    assert kinds == sorted(kinds, key=["feature", "error", "token", "logit"].index)
    n_pos = len(TINY_TOKENS)
    assert kinds.count("error") == 2 * n_pos and kinds.count("token") == n_pos
    with torch.no_grad():
        _, cache = model.run_with_cache(TINY_TOKENS[None])
        probs = model(TINY_TOKENS[None])[0, -1].softmax(dim=-1)
    for layer, tc in enumerate(transcoders):
        acts = tc.encode(cache[tc.cfg.hook_in][0])
        here = [(node.pos, node.index, node.activation) for node in graph.nodes if node.kind == "feature" and node.layer == layer]
        assert [[p, f] for p, f, _ in here] == acts.nonzero().tolist()
        assert [a for _, _, a in here] == pytest.approx(acts[acts != 0].tolist())
    assert graph.logit_tokens.tolist() == probs.topk(len(graph.logit_tokens)).indices.tolist()
    torch.testing.assert_close(graph.logit_probabilities, probs[graph.logit_tokens])


def test_salient_logits_stop_at_the_cumulative_probability():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert salient_logits(logits, 4, 0.9)[0].tolist() == [0, 1, 2]
    assert salient_logits(logits, 2, 0.9)[0].tolist() == [0, 1]
    assert salient_logits(logits, 4, 0.4)[0].tolist() == [0]


def test_the_graph_of_a_32_byte_prompt_builds_in_seconds(code_graph):
    graph, seconds = code_graph
    assert len(graph.tokens) == 32 and graph.mask("feature").sum() > 500
    assert seconds < 30, f"building the graph took {seconds:.1f} s"


# ----------------------------------------------------------------------------------------
# Pruning and scores


def hand_made_graph(n_features_by_layer, edges, n_pos=1):
    """A graph whose adjacency is given: `edges` maps (target, source) node indices to weights."""
    nodes = [Node("feature", 0, layer, i, 1.0) for layer, n in enumerate(n_features_by_layer) for i in range(n)]
    nodes += [Node("error", pos, layer) for layer in range(len(n_features_by_layer)) for pos in range(n_pos)]
    nodes += [Node("token", pos, index=pos) for pos in range(n_pos)] + [Node("logit", n_pos - 1, index=0)]
    adjacency = torch.zeros(len(nodes), len(nodes))
    for (target, source), weight in edges.items():
        adjacency[target, source] = weight
    return AttributionGraph(torch.arange(n_pos), nodes, adjacency, torch.tensor([0]), torch.tensor([1.0]), 10, "test")


def test_pruning_ranks_nodes_by_influence_not_by_raw_weight():
    # Nodes: features f2 f3 (layer 0), f1 f4 (layer 1), errors e0 e1, token t, logit L.
    f2, f3, f1, f4, e0, e1, t, logit = range(8)
    edges = {(logit, f1): 1.0, (logit, e1): 1.0, (logit, f4): 0.001, (f1, f2): 0.1, (f4, f3): 100.0,
             (f2, t): 1.0, (f3, t): 1.0}  # fmt: skip
    graph = hand_made_graph([2, 2], edges)
    assert graph.adjacency[:, f3].abs().max() == graph.adjacency.abs().max()  # f3's edge is the largest
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    # f3 feeds a feature that barely reaches the logit; f2 is the whole input of one that matters.
    assert pruned.node_mask.nonzero().flatten().tolist() == [f2, f1, e1, t, logit]
    assert pruned.edge_mask.nonzero().tolist() == [[f2, t], [f1, f2], [logit, f1], [logit, e1]]


def test_influence_is_the_sum_over_all_path_lengths():
    torch.manual_seed(0)
    weights = torch.rand(6, 6, dtype=torch.float64).tril(-1)  # edges to later nodes only: a DAG
    logit_weights = torch.rand(6, dtype=torch.float64)
    paths = sum(logit_weights @ torch.linalg.matrix_power(weights, k) for k in range(1, 7))
    torch.testing.assert_close(influence(weights, logit_weights), paths)


def test_pruning_keeps_tokens_and_logits_and_respects_the_thresholds(code_graph):
    graph, _ = code_graph
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    always = graph.mask("token") | graph.mask("logit")
    assert pruned.node_mask[always].all()
    assert 0 < pruned.node_mask[graph.mask("feature")].sum() < graph.mask("feature").sum() / 2
    # A kept node was ranked within the node threshold: the nodes more influential than it
    # hold less than node_threshold of the influence.
    share = pruned.cumulative_influence
    order = share.argsort()
    share_before = torch.zeros_like(share)
    share_before[order[1:]] = share[order[:-1]]
    assert (share_before[pruned.node_mask & ~always] < 0.8).all()
    # Kept edges join kept nodes and are real edges; pruning harder keeps fewer of them.
    edges = pruned.edge_mask.nonzero(as_tuple=True)
    assert pruned.node_mask[edges[0]].all() and pruned.node_mask[edges[1]].all()
    assert graph.adjacency[edges].ne(0).all()
    assert prune_graph(graph, 0.8, 0.5).edge_mask.sum() < pruned.edge_mask.sum()


def test_scores_by_hand():
    f, e0, t, logit = range(4)  # one feature, one error node, one token, one logit
    graph = hand_made_graph([1], {(logit, f): 1.0, (logit, e0): 1.0, (f, t): 1.0})
    scores = graph_scores(graph)
    # Influences: f 1/2, e0 1/2, t 1/2. Replacement: t's / (t's + e0's). Completeness: the
    # logit's inputs are half error; weights f, e0, t 1/2 each and the logit 1: (1.5 + 0.5) / 2.5.
    assert scores.replacement == pytest.approx(0.5) and scores.completeness == pytest.approx(0.8)
    clean = graph_scores(hand_made_graph([1], {(logit, f): 1.0, (f, t): 1.0}))
    assert clean.replacement == pytest.approx(1.0) and clean.completeness == pytest.approx(1.0)
    # Pruning f away makes it an error: nothing of the token reaches the logit any more.
    pruned = prune_graph(graph)._replace(node_mask=torch.tensor([False, True, True, True]))
    assert graph_scores(graph, pruned).replacement == pytest.approx(0.0)


def test_scores_of_the_pruned_graph_are_lower(code_graph):
    graph, _ = code_graph
    full, pruned = graph_scores(graph), graph_scores(graph, prune_graph(graph))
    assert 0 < pruned.replacement <= full.replacement <= 1
    assert 0 < pruned.completeness <= full.completeness <= 1


# ----------------------------------------------------------------------------------------
# Interventions


def test_total_effects_are_exact_for_small_shifts_in_the_replacement_model(tiny):
    """In the replacement model (live transcoders, frozen attention and LayerNorm) a small
    shift of a layer-0 feature moves the logit exactly as the graph's paths predict."""
    model, transcoders, graph = tiny
    effects = logit_effects(graph)
    run = run_clean(model, transcoders, graph.tokens)
    token = int(graph.logit_tokens[0])
    layer_0 = [i for i, node in enumerate(graph.nodes) if node.kind == "feature" and node.layer == 0]
    with torch.no_grad():
        hooks = replacement_hooks(run, transcoders)
        before = model.run_with_hooks(graph.tokens[None], fwd_hooks=hooks)[0, -1]
        mismatches = 0
        for index in layer_0:
            shifted = model.run_with_hooks(
                graph.tokens[None], fwd_hooks=hooks + feature_shift_hooks(graph, [index], transcoders, 1 - 1e-6)
            )[0, -1]
            change = (shifted[token] - shifted.mean()) - (before[token] - before.mean())
            direct, total = predicted_change(graph, effects, [index], 1 - 1e-6)
            mismatches += not math.isclose(change.item(), total, rel_tol=1e-4, abs_tol=1e-12)
    assert mismatches == 0
    assert (effects.total - effects.direct)[layer_0].abs().max() > 1e-3  # paths through layer 1 count


def test_without_layernorm_a_last_layer_features_measured_effect_is_its_direct_edge():
    """No LayerNorm and no later layer: the real model is linear in a last-layer feature."""
    model, transcoders = tiny_model(normalization_type=None)
    graph = build_attribution_graph(model, transcoders, TINY_TOKENS, max_logits=1)
    effects = logit_effects(graph)
    last_layer = [i for i, node in enumerate(graph.nodes) if node.kind == "feature" and node.layer == 1]
    for index in last_layer[:5]:
        measured = measured_change(model, transcoders, graph, [index], scale=0.0)
        assert measured == pytest.approx(predicted_change(graph, effects, [index], 0.0)[0], rel=1e-8, abs=1e-10)
    assert measured_change(model, transcoders, graph, last_layer, scale=1.0) == 0.0


def test_holding_the_final_layernorm_makes_a_last_layer_features_effect_its_direct_edge():
    """With LayerNorm, a last-layer feature reaches the logits through ln_final alone: hold
    its scale and the real model is linear in the feature; let it respond and it is not."""
    model, transcoders = tiny_model()
    graph = build_attribution_graph(model, transcoders, TINY_TOKENS, max_logits=1)
    effects = logit_effects(graph)
    last = len(TINY_TOKENS) - 1  # where the logits are read: elsewhere a last-layer feature has no effect
    last_layer = [i for i, node in enumerate(graph.nodes) if node.kind == "feature" and (node.layer, node.pos) == (1, last)]
    assert last_layer
    held = [measured_change(model, transcoders, graph, [i], hold=["ln_final.hook_scale"]) for i in last_layer]
    live = [measured_change(model, transcoders, graph, [i]) for i in last_layer]
    direct = [predicted_change(graph, effects, [i], 0.0)[0] for i in last_layer]
    assert held == pytest.approx(direct, rel=1e-8, abs=1e-10)
    assert max(abs(a - b) for a, b in zip(live, direct)) > 1e-3


def test_intervention_experiment_returns_one_row_per_intervention():
    model, transcoders = tiny_model()
    prompts = [TINY_TOKENS, TINY_TOKENS.flip(0), TINY_TOKENS[:6]]
    results = intervention_experiment(model, transcoders, prompts, features_per_prompt=4)
    assert len(results.measured) == len(results.direct) == len(results.total) == len(results.layer) == 12
    assert torch.isfinite(torch.stack([results.measured, results.direct, results.total])).all()
    r, slope = correlation_and_slope(results.direct, 2 * results.direct + 1)
    assert r == pytest.approx(1.0) and slope == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------
# Export


NODE_KEYS = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit", "run_idx",
             "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation"}  # fmt: skip


def numbers(value):
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_json_has_the_frontend_schema_and_only_finite_numbers(code_graph):
    graph, _ = code_graph
    tokenizer = ByteTokenizer()
    labels = [tokenizer.decode_token(t) for t in range(256)]
    data = graph_to_json(graph, prompt=PROMPT, token_labels=labels, slug="def-parse")
    json.dumps(data, allow_nan=False)
    assert data.keys() == {"metadata", "qParams", "nodes", "links"}
    assert data["metadata"].keys() == {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold"}
    assert data["metadata"]["prompt_tokens"] == [labels[t] for t in graph.tokens]
    assert data["qParams"].keys() == {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"}
    assert all(node.keys() == NODE_KEYS for node in data["nodes"])
    assert all(link.keys() == {"source", "target", "weight"} for link in data["links"])
    assert all(math.isfinite(n) for n in numbers(data))

    ids = [node["node_id"] for node in data["nodes"]]
    assert len(set(ids)) == len(ids)
    assert {link["source"] for link in data["links"]} | {link["target"] for link in data["links"]} <= set(ids)
    types = [node["feature_type"] for node in data["nodes"]]
    assert set(types) <= {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
    assert types.count("embedding") == 32 and types.count("logit") == len(graph.logit_tokens)
    assert sum(node["is_target_logit"] for node in data["nodes"]) == 1
    assert all((node["activation"] is None) == (node["feature_type"] != "cross layer transcoder") for node in data["nodes"])
    logit = next(node for node in data["nodes"] if node["is_target_logit"])
    assert logit["clerp"] == f'Output "{labels[int(graph.logit_tokens[0])]}" (p={logit["token_prob"]:.3f})'

    with pytest.raises(ValueError, match="every token id"):
        graph_to_json(graph, prompt=PROMPT, token_labels=list(PROMPT), slug="def-parse")


# ----------------------------------------------------------------------------------------
# On the shipped transcoders, when they exist


def test_shipped_transcoders_give_a_graph_that_explains_more_than_random_ones(code_2l, code_graph):
    graph = build_attribution_graph(code_2l, shipped_transcoders(), ByteTokenizer().encode(PROMPT))
    assert graph_scores(graph).replacement > graph_scores(code_graph[0]).replacement
