"""Hand-built models and their circuits, and the edge-level forward pass that patches them.

Each handwritten model must run its algorithm, and its circuit must be exact: sufficient
(patching every other edge leaves the behaviour) and minimal (patching any one of its
edges breaks it), under each ablation. The edge-level forward pass must be the model's
own forward pass, rearranged.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toy_models import Transformer, TransformerConfig, load_pretrained
from toy_models.edge_patching import all_edges, forward_by_edges, run_with_edges_patched
from toy_models.handwritten import fibonacci_mod, handwritten_circuits, induction_copier, with_distractors
from toy_models.metrics import answer_logprob, induction_score_of_pattern

CIRCUITS = {circuit.name: circuit for circuit in handwritten_circuits()}
ABLATIONS = ["corrupted", "mean", "zero"]
BATCH = 64


def clean_and_corrupted(circuit, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return circuit.sample(generator, BATCH), circuit.sample(generator, BATCH)


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------


def test_all_edges_of_a_small_model_in_order():
    cfg = TransformerConfig(n_layers=2, d_model=8, n_heads=1, d_vocab=5, n_ctx=4, d_mlp=8)
    # Receivers in forward order; each receiver's senders in forward order.
    assert all_edges(cfg) == [
        ("embed", "A0.0.q"),
        ("embed", "A0.0.k"),
        ("embed", "A0.0.v"),
        ("embed", "M0"), ("A0.0", "M0"),
        ("embed", "A1.0.q"), ("A0.0", "A1.0.q"), ("M0", "A1.0.q"),
        ("embed", "A1.0.k"), ("A0.0", "A1.0.k"), ("M0", "A1.0.k"),
        ("embed", "A1.0.v"), ("A0.0", "A1.0.v"), ("M0", "A1.0.v"),
        ("embed", "M1"), ("A0.0", "M1"), ("M0", "M1"), ("A1.0", "M1"),
        ("embed", "logits"), ("A0.0", "logits"), ("M0", "logits"), ("A1.0", "logits"), ("M1", "logits"),
    ]


@given(n_layers=st.integers(1, 4), n_heads=st.integers(1, 3), mlp=st.booleans())
def test_edges_are_distinct_and_point_forward(n_layers, n_heads, mlp):
    cfg = TransformerConfig(n_layers=n_layers, d_model=6, n_heads=n_heads, d_head=2, d_vocab=5, n_ctx=4,
                            d_mlp=4 if mlp else None)
    edges = all_edges(cfg)
    assert len(set(edges)) == len(edges)
    # The nodes in forward order: embed, then each layer's heads (with their inputs) and MLP, then logits.
    order = ["embed"]
    for layer in range(n_layers):
        order += [f"A{layer}.{head}{x}" for head in range(n_heads) for x in ("", ".q", ".k", ".v")]
        order += [f"M{layer}"] if mlp else []
    order.append("logits")

    def layer_of(node):
        return -1 if node == "embed" else n_layers if node == "logits" else int(node[1:].split(".")[0])

    for sender, receiver in edges:
        assert order.index(sender) < order.index(receiver)
        if receiver[0] == "A":  # a head reads nothing from its own layer
            assert layer_of(sender) < layer_of(receiver)
    n_senders = 1 + n_layers * (n_heads + mlp)
    assert (sum(receiver == "logits" for _, receiver in edges)) == n_senders


def test_an_edge_outside_the_graph_is_refused():
    circuit = CIRCUITS["induction-copier"]
    tokens = circuit.sample(torch.Generator().manual_seed(0), 2)
    with pytest.raises(ValueError, match="not in this model's graph"):
        run_with_edges_patched(circuit.model, tokens, tokens, [("A1.0", "A0.0.q")])


# ---------------------------------------------------------------------------
# The handwritten circuits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CIRCUITS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_handwritten_model_runs_its_algorithm(name, seed):
    circuit = CIRCUITS[name]
    tokens = circuit.sample(torch.Generator().manual_seed(seed), BATCH)
    with torch.no_grad():
        assert circuit.accuracy(circuit.model(tokens), tokens) >= 0.99


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("name", CIRCUITS)
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_circuit_is_sufficient(name, ablation, seed):
    circuit = CIRCUITS[name]
    clean, corrupted = clean_and_corrupted(circuit, seed)
    outside = set(all_edges(circuit.model.cfg)) - circuit.edges
    with torch.no_grad():
        logits = run_with_edges_patched(circuit.model, clean, corrupted, outside, ablation=ablation)
        assert circuit.accuracy(logits, clean) >= 0.95
        # Stronger, by construction: no receiver reads what the other edges carry, so nothing changes.
        torch.testing.assert_close(logits, circuit.model(clean), atol=1e-6, rtol=0)


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("name", CIRCUITS)
def test_every_edge_of_the_circuit_is_necessary(name, ablation):
    circuit = CIRCUITS[name]
    clean, corrupted = clean_and_corrupted(circuit, seed=1)
    with torch.no_grad():
        baseline = circuit.accuracy(circuit.model(clean), clean)
        for edge in sorted(circuit.edges):
            logits = run_with_edges_patched(circuit.model, clean, corrupted, [edge], ablation=ablation)
            accuracy = circuit.accuracy(logits, clean)
            assert baseline - accuracy >= 0.5, f"patching {edge} only took accuracy from {baseline} to {accuracy}"


@pytest.mark.parametrize("name", CIRCUITS)
def test_with_distractors_the_circuit_still_carries_the_algorithm_and_every_edge_a_little(name):
    circuit = with_distractors(CIRCUITS[name])
    clean, corrupted = clean_and_corrupted(circuit, seed=2)
    metric = answer_logprob(clean, circuit.target_positions)
    edges = all_edges(circuit.model.cfg)
    outside = set(edges) - circuit.edges
    with torch.no_grad():
        assert circuit.accuracy(circuit.model(clean), clean) >= 0.99
        assert circuit.accuracy(run_with_edges_patched(circuit.model, clean, corrupted, outside), clean) >= 0.95
        clean_metric = metric(circuit.model(clean)).item()
        effect = {edge: abs(metric(run_with_edges_patched(circuit.model, clean, corrupted, [edge])).item()
                            - clean_metric) for edge in edges}
    smallest_inside = min(effect[edge] for edge in circuit.edges)
    assert smallest_inside > 1.0  # each of the circuit's edges still matters a lot
    assert max(effect[edge] for edge in outside) < 0.01 * smallest_inside
    # ...and the others no longer all tie at exactly zero: most carry something.
    assert sum(effect[edge] > 0 for edge in outside) > 0.5 * len(outside)
    assert CIRCUITS[name].model is not circuit.model  # the exact model is left as it was


def test_induction_copier_heads_attend_as_designed():
    """The hooks work on a handwritten model, and show the two heads the docstring describes."""
    circuit = induction_copier(block_len=8)
    tokens = circuit.sample(torch.Generator().manual_seed(0), 16)
    _, cache = circuit.model.run_with_cache(tokens)
    previous_token = cache["pattern", 0][:, 0].diagonal(offset=-1, dim1=-2, dim2=-1)
    assert previous_token.min() > 0.999
    assert induction_score_of_pattern(cache["pattern", 1], seq_len=8).item() > 0.999


def test_fibonacci_distractor_head_is_busy():
    """The distractor really attends (to BOS): leaving it out must be the discovery method's doing."""
    circuit = fibonacci_mod()
    tokens = circuit.sample(torch.Generator().manual_seed(0), 16)
    _, cache = circuit.model.run_with_cache(tokens)
    assert cache["pattern", 0][:, 1, :, 0].min() > 0.999


# ---------------------------------------------------------------------------
# The edge-level forward pass is the model's forward pass
# ---------------------------------------------------------------------------


def random_model(cfg: TransformerConfig, seed: int, dtype=torch.float32) -> Transformer:
    """Random weights and biases, LayerNorms included, large enough that attention is not uniform."""
    torch.manual_seed(seed)
    model = Transformer(cfg).eval().to(dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".w"):  # LayerNorm gains near 1
                param.copy_(1 + 0.2 * torch.randn_like(param))
            else:
                param.normal_(std=0.2 if cfg.normalization_type is None else 0.4)
    return model


configs = st.builds(
    TransformerConfig,
    n_layers=st.integers(1, 3),
    d_model=st.sampled_from([8, 12]),
    n_heads=st.integers(1, 3),
    d_head=st.integers(2, 5),
    d_vocab=st.integers(3, 20),
    n_ctx=st.integers(1, 7),
    d_mlp=st.one_of(st.none(), st.integers(1, 16)),
    act_fn=st.sampled_from(["gelu", "gelu_new", "relu"]),
    normalization_type=st.sampled_from(["LN", None]),
    positional_embedding_type=st.sampled_from(["standard", "shortformer"]),
    tied_embeddings=st.booleans(),
)


@settings(max_examples=40, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**16), batch=st.integers(1, 3))
def test_unpatched_edge_forward_is_the_model(cfg, seed, batch):
    tokens = torch.randint(0, cfg.d_vocab, (batch, cfg.n_ctx), generator=torch.Generator().manual_seed(seed))
    corrupted = torch.randint(0, cfg.d_vocab, (batch, cfg.n_ctx), generator=torch.Generator().manual_seed(seed + 1))
    for dtype, tolerance in [(torch.float32, 1e-5), (torch.float64, 1e-10)]:
        model = random_model(cfg, seed, dtype)
        with torch.no_grad():
            expected = model(tokens)
            for ablation in ABLATIONS:
                actual = run_with_edges_patched(model, tokens, corrupted, [], ablation=ablation)
                torch.testing.assert_close(actual, expected, atol=tolerance, rtol=tolerance)
            # Every edge carrying its corrupted value is the corrupted run.
            everything = run_with_edges_patched(model, tokens, corrupted, all_edges(cfg))
            torch.testing.assert_close(everything, model(corrupted), atol=tolerance, rtol=tolerance)


def test_unpatched_edge_forward_is_the_shipped_induction_model():
    model = load_pretrained("induction-2l")
    tokens = torch.randint(0, model.cfg.d_vocab, (8, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(run_with_edges_patched(model, tokens, None, [], ablation="zero"), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_one_patched_edge_changes_one_receiver_only():
    """Patching (A0.1, logits) swaps that head's term in the final residual stream, read off the
    model's own hooks, and leaves every later head, which reads A0.1 along other edges, as it was."""
    cfg = TransformerConfig(n_layers=2, d_model=12, n_heads=2, d_vocab=10, n_ctx=6, d_mlp=16)
    model = random_model(cfg, seed=0)
    generator = torch.Generator().manual_seed(0)
    clean, corrupted = (torch.randint(0, 10, (3, 6), generator=generator) for _ in range(2))
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
        clean_result, corrupted_result = (
            cache["blocks.0.attn.hook_z"][:, :, 1] @ model.blocks[0].attn.W_O[1] for cache in (clean_cache, corrupted_cache)
        )
        final_resid = clean_cache["blocks.1.hook_resid_post"] - clean_result + corrupted_result
        expected = model.unembed(model.ln_final(final_resid))
        actual = run_with_edges_patched(model, clean, corrupted, [("A0.1", "logits")])
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
        # The senders' own outputs are untouched by the patch.
        _, outputs = forward_by_edges(model, clean)
        torch.testing.assert_close(outputs["M1"], clean_cache["blocks.1.hook_mlp_out"], atol=1e-5, rtol=1e-5)
