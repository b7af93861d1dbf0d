"""Chapter 06's graders and notebook, end to end.

The wrong implementations are the solution notebook's own cells (generated from
`solutions/circuit_discovery.py`) with one realistic mistake edited in. The graded inputs
(graders/chapter_06.py) are the handwritten induction-copier model (whose circuit is
exact, so every edge outside it scores exactly 0), a random 2-layer transformer with MLPs
and LayerNorm (every edge matters a little) and the handwritten fibonacci-mod model; the
comment above each exercise's cases says which of them separates each mistake, the first
variant graded that fails it and whose message must name it.
"""

from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases

from graders.chapter_06 import CHAPTER as CHAPTER  # the chapter the shared tests grade
from mi_course.grading import course_references

NOTEBOOK = "06_circuit_discovery.ipynb"


def test_graph_edges_may_not_borrow_the_courses_enumeration_which_the_other_exercises_use():
    references = course_references(CHAPTER)
    forbidden = {"toy_models.edge_patching:all_edges", "toy_models.edge_patching:senders_into"}
    assert forbidden <= set(references["graph_edges"])
    assert not forbidden & set(references["edge_patching_scores"]) and not forbidden & set(references["acdc"])


GRAPH_HEAD_RULE = ('return receiver.startswith("M") and sender.startswith("A") and layer_of(sender) == '
                   'layer_of(receiver)')
GRAPH_LATER = "if receiver == \"logits\" or layer_of(sender) < layer_of(receiver):"
GRAPH_RETURN = "return [(sender, receiver) for receiver in receivers(cfg) for sender in senders(cfg) if reads(sender, receiver)]"
PATCH_RUN = "logits, _ = forward_by_edges(model, clean_tokens, frozenset({edge}), corrupted)"
CLEAN_METRIC = "clean_metric = metric(forward_by_edges(model, clean_tokens)[0]).item()"
CORRUPTED_RUN = "_, corrupted = forward_by_edges(model, corrupted_tokens)"
EAP_CLEAN_RUN = "logits, clean = forward_by_edges(model, clean_tokens, inputs=inputs)"
EAP_GRADS = "grads = dict(zip(inputs, torch.autograd.grad(metric(logits), list(inputs.values())), strict=True))"
EAP_PRODUCT = "((corrupted[s] - clean[s].detach()) * grads[r]).sum()"
EAP_RETURN = f"return {{(s, r): {EAP_PRODUCT}.item() for s, r in all_edges(model.cfg)}}"
IG_LOOP = "for k in range(1, steps + 1):"
IG_EMBED = 'embed = corrupted["embed"] + (k / steps) * (clean["embed"] - corrupted["embed"])'
IG_MEAN = "grads[receiver] = grads[receiver] + grad / steps"
ACDC_TEST = "if current - trial_score < threshold:"
ACDC_SCORE = "return -kl_from_full(full_logprobs, logits, positions) if metric is None else metric(logits).item()"
MEAN = "corrupted = {sender: output.mean(dim=0, keepdim=True) for sender, output in corrupted.items()}"
AUC_ABS = "abs(score)"
AUC_TIES = " + 0.5 * (inside[:, None] == outside[None, :]).float()"
AUC_BODY = """inside = torch.tensor([abs(score) for edge, score in scores.items() if edge in circuit])
    outside = torch.tensor([abs(score) for edge, score in scores.items() if edge not in circuit])
    wins = (inside[:, None] > outside[None, :]).float() + 0.5 * (inside[:, None] == outside[None, :]).float()
    return wins.mean().item()"""
AUC_SORTED = """order = sorted(scores, key=lambda edge: -abs(scores[edge]))
    member = torch.tensor([edge in circuit for edge in order], dtype=torch.float64)
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), member.cumsum(0) / member.sum()])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), (1 - member).cumsum(0) / (1 - member).sum()])
    return torch.trapezoid(tpr, fpr).item()"""
AUC_LOOP = """wins = pairs = 0
    for a, score_a in scores.items():
        for b, score_b in scores.items():
            if a in circuit and b not in circuit:
                pairs += 1
                wins += 1.0 if abs(score_a) > abs(score_b) else 0.5 if abs(score_a) == abs(score_b) else 0.0
    return wins / pairs"""
FAITH = "return (kept - ablated) / (clean - ablated)"
ABLATED = "ablated = metric(forward_by_edges(model, clean_tokens, everything, corrupted)[0]).item()"
KEPT = "kept = metric(forward_by_edges(model, clean_tokens, everything - circuit, corrupted)[0]).item()"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # graph_edges: inputs: 2 layers x 2 heads attention-only, then 3 layers x 2 heads with MLPs, then 1 x 1 with an MLP.
    # Heads reading their own layer (themselves included): separated by the first
    ("graph_edges", [(GRAPH_HEAD_RULE, 'return sender.startswith("A") and layer_of(sender) == layer_of(receiver)')],
     "a head reads the heads of its own layer"),
    # an MLP missing its own layer's heads: separated by the second, the first model having no MLP
    ("graph_edges", [(GRAPH_HEAD_RULE, "return False")], "an MLP misses the heads of its own layer"),
    # only the layer before: separated by the second, the first having too few layers to tell
    ("graph_edges", [(GRAPH_LATER, GRAPH_LATER.replace(
        "layer_of(sender) < layer_of(receiver)", 'sender == "embed" or layer_of(sender) == layer_of(receiver) - 1'))],
     "reads only the layer just before it"),
    # every edge twice
    ("graph_edges", [(GRAPH_RETURN, f"return 2 * {GRAPH_RETURN[len('return '):]}")], "more than once"),
    # edge_patching_scores: each separated by the first input, induction-copier (then by the random model and
    # fibonacci-mod too). Patching node: "embed" feeds receivers outside the circuit as well as its own
    ("edge_patching_scores", [(PATCH_RUN, PATCH_RUN.replace(
        "frozenset({edge})", "frozenset(e for e in all_edges(model.cfg) if e[0] == edge[0])"))], "you patched a node"),
    # mean ablation: separated by the last input, the random model seed 3 with ablation="mean". Resample instead:
    ("edge_patching_scores", [(MEAN, "pass")], "these are the resample-ablation scores"),
    # one mean for all positions
    ("edge_patching_scores", [(MEAN, MEAN.replace("dim=0", "dim=(0, 1)"))], "averaged over the positions"),
    # denoising: restoring one clean edge into the corrupted run is not corrupting it in the clean one
    ("edge_patching_scores", [(CORRUPTED_RUN, "_, corrupted = forward_by_edges(model, clean_tokens)"),
                              (CLEAN_METRIC, CLEAN_METRIC.replace("clean_tokens", "corrupted_tokens")),
                              (PATCH_RUN, PATCH_RUN.replace("clean_tokens", "corrupted_tokens"))], "wrong direction"),
    # the sign flipped: the circuit's edges score well below 0 there
    ("edge_patching_scores", [("metric(logits).item() - clean_metric", "clean_metric - metric(logits).item()")],
     "sign is flipped"),
    # the corrupted run's metric subtracted: the clean and corrupted metrics differ by a lot there
    ("edge_patching_scores", [(CLEAN_METRIC, CLEAN_METRIC.replace("clean_tokens", "corrupted_tokens"))],
     "subtracted the corrupted run's metric"),
    # edge_attribution_scores: each separated by the first input, induction-copier (and by the random model and
    # fibonacci-mod). The gradient at the corrupted run, where the model's attention and answers differ
    ("edge_attribution_scores", [(CORRUPTED_RUN, "_, clean = forward_by_edges(model, clean_tokens)"),
                                 (EAP_CLEAN_RUN, "logits, corrupted = forward_by_edges(model, corrupted_tokens, "
                                                 "inputs=inputs)")], "gradient at the corrupted run"),
    # the gradient alone, not multiplied by the activation difference
    ("edge_attribution_scores", [(EAP_PRODUCT, "grads[r].sum()")], "gradient alone"),
    # the sign flipped: the circuit's edges have estimates far from 0
    ("edge_attribution_scores", [(EAP_PRODUCT, "((clean[s].detach() - corrupted[s]) * grads[r]).sum()")],
     "sign is flipped"),
    # the exact scores called: the model saturates, so EAP's linear estimate is far from them
    ("edge_attribution_scores", [(EAP_RETURN, "return edge_patching_scores(model, clean_tokens, corrupted_tokens, "
                                              "metric)")], "exact patching scores"),
    # eap_ig_scores (steps=3): each separated by the first input, induction-copier, whose gradients change along the
    # path (and by the random model and fibonacci-mod). The wrong way: alpha 0, 1/3, 2/3, missing the clean run
    ("eap_ig_scores", [(IG_EMBED, 'embed = clean["embed"] + (k / steps) * (corrupted["embed"] - clean["embed"])')],
     "wrong way"),
    # both ends: the k = 0 (fully corrupted) point has its own gradient
    ("eap_ig_scores", [(IG_LOOP, "for k in range(steps + 1):"), (IG_MEAN, IG_MEAN.replace("/ steps", "/ (steps + 1)"))],
     "both ends included"),
    # no interpolation: every run is the clean one, so this is plain EAP
    ("eap_ig_scores", [(IG_EMBED, 'embed = clean["embed"]')], "plain EAP"),
    # summed: the circuit's scores are 3 times too large
    ("eap_ig_scores", [(IG_MEAN, "grads[receiver] = grads[receiver] + grad")], "summed the gradients"),
    # the sign flipped: the circuit's edges have scores far from 0
    ("eap_ig_scores", [("((corrupted[s] - clean[s]) * grads[r])", "((clean[s] - corrupted[s]) * grads[r])")],
     "sign is flipped"),
    # acdc: inputs: induction-copier at threshold 0.1, then random models (seeds 1, 3) at thresholds 0.01, 0.003.
    # The first three pass induction-copier (its edges matter a lot or not at all, so any order, restoring or not,
    # finds its circuit): separated by the random model, seed 1, whose edges all matter a little. Forwards:
    ("acdc", [("for receiver in reversed(receivers(model.cfg)):", "for receiver in receivers(model.cfg):"),
              ("for sender in reversed(senders_into(model.cfg, receiver)):",
               "for sender in senders_into(model.cfg, receiver):")], "visited the receivers forwards"),
    # restoring: each edge is tried alone, so small effects that add up above the threshold are all removed
    ("acdc", [("trial = removed | {(sender, receiver)}", "trial = frozenset({(sender, receiver)})"),
              ("removed, current = trial, trial_score", "removed = removed | trial")],
     "restoring the edges removed before it"),
    # the full model's score: once the removed edges add up to the threshold, no more can be removed
    ("acdc", [(ACDC_TEST, "if score(full_logits) - trial_score < threshold:")], "compared the full model's score"),
    # the task metric (the last input, random seed 1 with metric=answer_logprob) ignored, or its change taken absolute
    ("acdc", [(ACDC_SCORE, "return -kl_from_full(full_logprobs, logits, positions)")], "ignored the metric"),
    ("acdc", [(ACDC_TEST, "if abs(current - trial_score) < threshold:")], "absolute change"),
    # the removed edges returned: separated by the first input, induction-copier
    ("acdc", [("return frozenset(all_edges(model.cfg)) - removed", "return removed")],
     "kept exactly the edges the reference removes"),
    # roc_auc: inputs: AUC_CASES, scored edges with negative scores in the circuit and ties across its boundary; each
    # separated by the first, "five edges, one tie across the circuit's boundary". Signed: the circuit's -3.0 ranks last
    ("roc_auc", [(AUC_ABS, "score")], "signed score"),
    # ties as 0: the circuit's 1.0 ties an outside 1.0
    ("roc_auc", [(AUC_TIES, "")], "ties were not counted one half"),
    # ranks from a sort: it puts one of the tied edges first, so the curve steps through the tie
    ("roc_auc", [(AUC_BODY, AUC_SORTED)], "ties were not counted one half"),
    # trapezoid(fpr, tpr): the area to the left of the curve, 1 - AUC there
    ("roc_auc", [(AUC_BODY, "fpr, tpr = roc_curve(scores, circuit)\n    return torch.trapezoid(fpr, tpr).item()")],
     "swapped the false and true positive rates"),
    # faithfulness: inputs: induction-copier with the true circuit less an edge plus two others, then random models
    # with a random third of the edges; each separated by the first, induction-copier (and by the random models).
    # By the clean metric, or not normalised, or the clean metric subtracted: the all-patched metric is far from 0
    ("faithfulness", [(FAITH, "return kept / clean")], "divided by the clean metric"),
    ("faithfulness", [(FAITH, "return kept - ablated")], "did not normalise"),
    ("faithfulness", [(FAITH, "return (kept - clean) / (clean - ablated)")], "subtracted the clean metric"),
    # the circuit's own edges patched: the circuit lacks an edge of the true one and has two idle ones
    ("faithfulness", [(KEPT, KEPT.replace("everything - circuit", "circuit"))], "patched the circuit's own edges"),
    # zero ablation as the baseline: zeroing every sender's output is not corrupting it
    ("faithfulness", [(ABLATED, ABLATED.replace(
        "corrupted)", "{sender: torch.zeros_like(out) for sender, out in corrupted.items()})"))], "zero-ablates"),
]

# Right answers written differently: the graders must accept them.
ALSO_RIGHT = [
    # the edges sorted, as tuples of a set
    ("graph_edges", [(GRAPH_RETURN, "return sorted({(sender, receiver) for receiver in receivers(cfg) "
                                    "for sender in senders(cfg) if reads(sender, receiver)})")]),
    # the model's own forward pass for the clean metric, and the course's run_with_edges_patched for each edge
    # (which takes the means itself)
    ("edge_patching_scores", [(CLEAN_METRIC, "clean_metric = metric(model(clean_tokens)).item()"),
                              (PATCH_RUN, "logits = run_with_edges_patched(model, clean_tokens, corrupted_tokens, "
                                          "[edge], ablation=ablation)")]),
    # .retain_grad() and .backward() for the gradients, einsum for the product
    ("edge_attribution_scores", [(EAP_GRADS, "for tensor in inputs.values():\n        tensor.retain_grad()\n"
                                             "    metric(logits).backward()\n"
                                             "    grads = {r: tensor.grad for r, tensor in inputs.items()}"),
                                 (f"{EAP_PRODUCT}.item()",
                                  'torch.einsum("bpd,bpd->", corrupted[s] - clean[s].detach(), grads[r]).item()')]),
    # the alphas from torch.linspace, the interpolation by torch.lerp
    ("eap_ig_scores", [(IG_LOOP, "for alpha in torch.linspace(0, 1, steps + 1)[1:]:"),
                       (IG_EMBED, 'embed = torch.lerp(corrupted["embed"], clean["embed"], alpha)')]),
    # KL written out as sum p (log p - log q), the positions selected first; a list of the kept edges
    ("acdc", [(ACDC_SCORE, "if metric is not None:\n            return metric(logits).item()\n"
                           "        where = list(positions) if positions is not None else list(range(logits.shape[1]))\n"
                           "        p = F.softmax(full_logits[:, where], dim=-1)\n"
                           "        log_q = F.log_softmax(logits[:, where], dim=-1)\n"
                           "        return -(p * (p.log() - log_q)).sum(-1).mean().item()"),
              ("return frozenset(all_edges(model.cfg)) - removed",
               "return [edge for edge in all_edges(model.cfg) if edge not in removed]")]),
    # a double loop over the pairs
    ("roc_auc", [(AUC_BODY, AUC_LOOP)]),
    # the trapezoid under the ROC curve (tied edges enter together), returned as a tensor
    ("roc_auc", [(AUC_BODY, "fpr, tpr = roc_curve(scores, circuit)\n    return torch.trapezoid(tpr, fpr)")]),
    # the clean and fully patched runs as the model's own runs on the clean and corrupted tokens, as tensors
    ("faithfulness", [("clean = metric(forward_by_edges(model, clean_tokens)[0]).item()",
                       "clean = metric(model(clean_tokens))"),
                      (ABLATED, "ablated = metric(model(corrupted_tokens))"),
                      (KEPT, "kept = metric(run_with_edges_patched(model, clean_tokens, corrupted_tokens, "
                             "set(everything) - circuit))")]),
]
