"""Chapter 06's circuit-discovery methods on the handwritten models: how well, at what cost.

For each handwritten model (`toy_models.handwritten`, whose circuits are known by
construction), exact and with distractors (`with_distractors`: every other edge carries
a little), and each method of `solutions/circuit_discovery.py` (the references), on
one seeded batch of clean and corrupted inputs: the ROC AUC of its edge scores against the
true circuit, their error relative to exact edge patching (sum |estimate - exact| / sum
|exact|), the forward and backward passes it costs and the milliseconds one run took on
one thread; and for ACDC at threshold 0.1, whether it finds the circuit exactly, the
pessimistic AUC of its threshold sweep (scored by KL, and by the task metric) and the faithfulness of the circuit it keeps.
The times are single runs, for comparing methods; run it on an otherwise idle machine:

    python bench/circuit_discovery.py
    python bench/circuit_discovery.py --batch 64
"""

import argparse
import time

import torch

from solutions.circuit_discovery import (
    acdc,
    eap_ig_scores,
    edge_attribution_scores,
    edge_patching_scores,
    faithfulness,
    roc_auc,
)
from toy_models.edge_patching import all_edges
from toy_models.handwritten import handwritten_circuits, with_distractors
from toy_models.metrics import answer_logprob, pessimistic_auc, relative_error, roc_points

THRESHOLDS = [0.0, 1e-4, 1e-2, 0.1, 1.0, 10.0, 100.0]


def timed(run):
    """run()'s result and the milliseconds it took."""
    start = time.perf_counter()
    result = run()
    return result, (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    exact_models = handwritten_circuits()
    for circuit in [*exact_models, *map(with_distractors, exact_models)]:
        model, positions = circuit.model, circuit.target_positions
        generator = torch.Generator().manual_seed(args.seed)
        clean, corrupted = circuit.sample(generator, args.batch), circuit.sample(generator, args.batch)
        metric = answer_logprob(clean, positions)
        edges = all_edges(model.cfg)
        exact = edge_patching_scores(model, clean, corrupted, metric)
        print(f"{circuit.name}: {len(edges)} edges, {len(circuit.edges)} in the circuit, batch {args.batch}")
        methods = {
            "edge patching": (lambda: edge_patching_scores(model, clean, corrupted, metric), f"{len(edges) + 2} fwd"),
            "EAP": (lambda: edge_attribution_scores(model, clean, corrupted, metric), "2 fwd + 1 bwd"),
            "EAP-IG (5)": (lambda: eap_ig_scores(model, clean, corrupted, metric), "7 fwd + 5 bwd"),
            "EAP-IG (20)": (lambda: eap_ig_scores(model, clean, corrupted, metric, steps=20), "22 fwd + 20 bwd"),
        }
        for method, (run, passes) in methods.items():
            scores, ms = timed(run)
            print(f"  {method:14s} AUC {roc_auc(scores, circuit.edges):.3f}  rel. error vs exact "
                  f"{relative_error(scores, exact):.3f}  {passes:16s} {ms:6.1f} ms")
        found, ms = timed(lambda: acdc(model, clean, corrupted, 0.1, positions))
        sweep_auc = {}
        for kind, score_by in (("KL", None), ("metric", metric)):
            sweep = [acdc(model, clean, corrupted, threshold, positions, metric=score_by) for threshold in THRESHOLDS]
            sweep_auc[kind] = pessimistic_auc(*roc_points(sweep, circuit.edges, edges))
        print(f"  {'ACDC (0.1)':14s} exact: {found == circuit.edges}  sweep AUC KL {sweep_auc['KL']:.3f}, "
              f"metric {sweep_auc['metric']:.3f}  faithfulness {faithfulness(model, clean, corrupted, found, metric):.3f}"
              f"  {len(edges) + 2} fwd {ms:6.1f} ms")


if __name__ == "__main__":
    main()
