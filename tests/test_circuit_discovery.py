"""Chapter 06's references recover the circuits the handwritten models are built with.

Each method is scored against `HandwrittenCircuit.edges`, the circuit known by
construction; the metric is the mean log-probability of the right next token at the
circuit's target positions (`answer_logprob`). `python bench/circuit_discovery.py`
prints the numbers (AUCs, agreement with exact patching, passes and milliseconds).
"""

import pytest
import torch

from solutions.circuit_discovery import (
    acdc,
    eap_ig_scores,
    edge_attribution_scores,
    edge_patching_scores,
    faithfulness,
    roc_auc,
)
from toy_models.edge_patching import all_edges, forward_by_edges
from toy_models.handwritten import handwritten_circuits
from toy_models.metrics import answer_logprob, pessimistic_auc, relative_error, roc_curve, roc_points

CIRCUITS = {circuit.name: circuit for circuit in handwritten_circuits()}
BATCH = 32
THRESHOLDS = [0.0, 1e-4, 1e-2, 0.1, 1.0, 10.0, 100.0]


def inputs(circuit, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted = circuit.sample(generator, BATCH), circuit.sample(generator, BATCH)
    return clean, corrupted, answer_logprob(clean, circuit.target_positions)


def test_receivers_inputs_are_recorded_in_the_graph():
    circuit = CIRCUITS["fibonacci-mod"]
    clean, _, metric = inputs(circuit)
    recorded = {}
    logits, _ = forward_by_edges(circuit.model, clean, inputs=recorded)
    assert list(recorded) == sorted({r for _, r in all_edges(circuit.model.cfg)}, key=list(recorded).index)
    grads = torch.autograd.grad(metric(logits), list(recorded.values()))
    assert all(g.shape == clean.shape + (circuit.model.cfg.d_model,) for g in grads)
    # The unembedding reads only the "output" subspace, so that is all the logits' input gradient touches.
    assert grads[-1].abs().sum() > 0


@pytest.mark.parametrize("name", CIRCUITS)
def test_every_method_recovers_the_circuit(name):
    circuit = CIRCUITS[name]
    model, clean, corrupted, metric = circuit.model, *inputs(circuit)
    exact = edge_patching_scores(model, clean, corrupted, metric)
    assert roc_auc(exact, circuit.edges) >= 0.95
    assert roc_auc(eap_ig_scores(model, clean, corrupted, metric), circuit.edges) >= 0.95
    sweep = [acdc(model, clean, corrupted, threshold, circuit.target_positions) for threshold in THRESHOLDS]
    fpr, tpr = roc_points(sweep, circuit.edges, all_edges(model.cfg))
    assert pessimistic_auc(fpr, tpr) >= 0.95
    found = acdc(model, clean, corrupted, 0.1, circuit.target_positions)
    assert found == circuit.edges
    assert faithfulness(model, clean, corrupted, found, metric) >= 0.9
    # Every edge of the circuit matters, every other edge does nothing at all (by construction).
    assert all(exact[e] < -1 for e in circuit.edges)
    assert all(exact[e] == 0 for e in set(exact) - circuit.edges)


@pytest.mark.parametrize("name", CIRCUITS)
def test_eap_ig_agrees_with_exact_patching_better_than_eap(name):
    """The handwritten models saturate (hard attention, confident logits), where EAP's
    linear estimate is poor; integrating the gradient along the way recovers most of it."""
    circuit = CIRCUITS[name]
    model, clean, corrupted, metric = circuit.model, *inputs(circuit)
    exact = edge_patching_scores(model, clean, corrupted, metric)
    eap = relative_error(edge_attribution_scores(model, clean, corrupted, metric), exact)
    ig = relative_error(eap_ig_scores(model, clean, corrupted, metric), exact)
    assert eap > 0.9 and ig < 0.8 * eap


def test_eap_ig_with_one_step_is_eap():
    circuit = CIRCUITS["induction-copier"]
    model, clean, corrupted, metric = circuit.model, *inputs(circuit)
    eap = edge_attribution_scores(model, clean, corrupted, metric)
    ig = eap_ig_scores(model, clean, corrupted, metric, steps=1)
    assert ig == pytest.approx(eap, rel=1e-5, abs=1e-12)


def test_roc_auc_counts_ties_as_half_and_matches_the_curve():
    circuit = frozenset({("a", "x"), ("b", "x")})
    scores = {("a", "x"): -3.0, ("b", "x"): 1.0, ("c", "x"): 1.0, ("d", "x"): 0.5, ("e", "x"): 0.0}
    # a beats all three negatives; b beats two and ties one: (3 + 2.5) / 6.
    assert roc_auc(scores, circuit) == pytest.approx(5.5 / 6)
    fpr, tpr = roc_curve(scores, circuit)
    assert torch.trapezoid(tpr, fpr).item() == pytest.approx(5.5 / 6)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)


def test_pessimistic_auc_of_a_staircase():
    assert pessimistic_auc(torch.tensor([0.0]), torch.tensor([1.0])) == 1.0
    assert pessimistic_auc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.25
    assert pessimistic_auc(torch.tensor([0.25, 0.5]), torch.tensor([0.5, 1.0])) == pytest.approx(0.375 + 0.25)


def test_faithfulness_of_nothing_and_of_everything():
    circuit = CIRCUITS["period-three"]
    model, clean, corrupted, metric = circuit.model, *inputs(circuit)
    assert faithfulness(model, clean, corrupted, frozenset(), metric) == pytest.approx(0.0, abs=1e-6)
    assert faithfulness(model, clean, corrupted, frozenset(all_edges(model.cfg)), metric) == pytest.approx(1.0)
    half = frozenset(sorted(circuit.edges)[:1])
    assert faithfulness(model, clean, corrupted, half, metric) < 0.5


def test_roc_points_of_found_sets():
    edges = [("a", "x"), ("b", "x"), ("c", "x"), ("d", "x"), ("e", "x")]
    circuit = frozenset(edges[:2])
    # one of the two circuit edges found and one of the three others; nothing; everything
    fpr, tpr = roc_points([frozenset({edges[0], edges[2]}), frozenset(), frozenset(edges)], circuit, edges)
    assert fpr.tolist() == pytest.approx([1 / 3, 0, 1]) and tpr.tolist() == pytest.approx([1 / 2, 0, 1])
