"""Chapter 07's graders and notebook, end to end.

The wrong implementations are the solution notebook's own cells (generated from
`solutions/attribution_graphs.py`) with one realistic mistake edited in. The graded inputs
(graders/chapter_07.py) are random 2- and 3-layer transformers with LayerNorm and MLPs and
random transcoders, and the attribution graphs `toy_models.attribution` builds on them;
every mistake below is separated by the first of them, whose message must name it.
"""

import pytest
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases

from graders.chapter_07 import CHAPTER as CHAPTER  # the chapter the shared tests grade
from graders.chapter_07 import graph, setup, top_token
from mi_course.grading import course_references
from solutions import attribution_graphs as reference
from toy_models import attribution

NOTEBOOK = "07_attribution_graphs.ipynb"

LOSS = "return (transcoder(mlp_in) - mlp_out).pow(2).sum(dim=-1).mean()"
ERRORS = "return torch.stack([cache[tc.cfg.hook_out][0] - tc(cache[tc.cfg.hook_in][0]) for tc in transcoders])"
FROZEN = 'is_frozen = lambda name: name.endswith(("hook_pattern", "hook_scale"))  # noqa: E731'
REPLACED = "return lambda mlp_out, hook: transcoder(mlp_inputs[transcoder.cfg.hook_in]) + errors[layer]"
TARGET = "grads = torch.autograd.grad(logits[token] - logits.mean(), outputs)"
PRODUCT = "torch.stack([tc.encode(cache[tc.cfg.hook_in][0]) * (grad @ tc.W_dec.T)"
LEAF = "hooks += [(tc.cfg.hook_out, lambda mlp_out, hook, leaf=leaf: leaf[None]) for tc, leaf in zip(transcoders, outputs)]"
NORMALISE = "weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)"
STEP = "term = term @ weights"
KEPT = "n_kept = int((cumulative < threshold).sum()) + 1"
ABLATE = "mlp_out[0, pos] -= activation * transcoder.W_dec[feature]"
LOGIT = "return (logits[0, -1, token] - logits[0, -1].mean()).item()"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    ("transcoder_loss", [(LOSS, LOSS.replace("- mlp_out", "- mlp_in"))], "compared the prediction with the MLP's input"),
    ("transcoder_loss", [(LOSS, LOSS.replace(".sum(dim=-1).mean()", ".mean()"))], "averaged over d_model"),
    ("error_nodes", [(ERRORS, ERRORS.replace("cache[tc.cfg.hook_out][0] - tc(cache[tc.cfg.hook_in][0])",
                                             "tc(cache[tc.cfg.hook_in][0]) - cache[tc.cfg.hook_out][0]"))],
     "sign is flipped"),
    # the residual stream before ln2, read through its hook name
    ("error_nodes", [("hooks = [name for transcoder in transcoders for name in (transcoder.cfg.hook_in, "
                      "transcoder.cfg.hook_out)]",
                      "hooks = [name for transcoder in transcoders for name in (transcoder.cfg.hook_in.replace("
                      "'ln2.hook_normalized', 'hook_resid_mid'), transcoder.cfg.hook_out)]"),
                     (ERRORS, ERRORS.replace("tc(cache[tc.cfg.hook_in][0])",
                                             "tc(cache[tc.cfg.hook_in.replace('ln2.hook_normalized', "
                                             "'hook_resid_mid')][0])"))],
     "before ln2"),
    # nothing frozen but the MLPs: patterns and scales follow the new prompt
    ("replacement_logits", [(FROZEN, 'is_frozen = lambda name: name.endswith("hook_pattern")  # noqa: E731')],
     "LayerNorm scales were not frozen"),
    ("replacement_logits", [(FROZEN, 'is_frozen = lambda name: name.endswith("hook_scale")  # noqa: E731')],
     "attention patterns were not frozen"),
    ("replacement_logits", [(REPLACED, REPLACED.replace(" + errors[layer]", ""))], "left out the error nodes"),
    ("logit_attributions", [(TARGET, TARGET.replace("logits[token] - logits.mean()", "logits[token]"))],
     "attributed the raw logit"),
    ("logit_attributions", [(FROZEN, 'is_frozen = lambda name: name.endswith("hook_pattern")  # noqa: E731')],
     "through the LayerNorm scales"),
    # MLP outputs that still depend on the run: the gradient flows back through every later MLP
    ("logit_attributions", [(LEAF, LEAF.replace("leaf[None]", "mlp_out - mlp_out.detach() + leaf[None]"))],
     "passed through later MLPs"),
    ("logit_attributions", [(PRODUCT, PRODUCT.replace("tc.encode(cache[tc.cfg.hook_in][0]) * ",
                                                      "(tc.encode(cache[tc.cfg.hook_in][0]) > 0) * "))],
     "left out the activation"),
    ("node_influence", [(NORMALISE, "pass")], "did not normalise"),
    ("node_influence", [("weights = adjacency.abs()", "weights = adjacency")], "kept the signs"),
    ("node_influence", [("for _ in range(len(logit_weights)):", "for _ in range(1):")], "only the direct edges"),
    ("node_influence", [("total = torch.zeros_like(logit_weights)", "total = logit_weights.clone()")],
     "included the logit weights themselves"),
    ("prune_nodes", [("scores = node_influence(adjacency, logit_weights)", "scores = adjacency.abs().sum(dim=0)")],
     "raw edge weights"),
    ("prune_nodes", [(KEPT, KEPT.replace(" + 1", ""))], "stopped one node short"),
    ("prune_nodes", [("return keep | always", "return keep")], "left out the `always` nodes"),
    ("ablation_effect", [(ABLATE, "mlp_out[0, pos] = 0.0")], "zeroed the whole MLP output"),
    ("ablation_effect", [(LOGIT, "return logits[0, -1, token].item()")], "measured the raw logit"),
    ("ablation_effect", [("return target(model.run_with_hooks(tokens[None], fwd_hooks=[(transcoder.cfg.hook_out, "
                          "ablate)])) - target(\n        model(tokens[None]))",
                          "return target(model(tokens[None])) - target(model.run_with_hooks(tokens[None], "
                          "fwd_hooks=[(transcoder.cfg.hook_out, ablate)]))")], "sign is flipped"),
]

# Right answers written differently: the graders must accept them.
ALSO_RIGHT = [
    # the squared norm by torch.linalg.vector_norm
    ("transcoder_loss", [(LOSS, "return torch.linalg.vector_norm(transcoder.decode(transcoder.encode(mlp_in)) - mlp_out, "
                                "dim=-1).pow(2).mean()")]),
    # the errors layer by layer, each from its own cache lookup
    ("error_nodes", [(ERRORS, "rows = []\n    for tc in transcoders:\n        mlp_in = cache[tc.cfg.hook_in][0]\n"
                              "        rows.append(cache[tc.cfg.hook_out][0] - tc.decode(tc.encode(mlp_in)))\n"
                              "    return torch.stack(rows)")]),
    # influence by one linear solve
    ("node_influence", [("total = torch.zeros_like(logit_weights)\n    term = logit_weights\n"
                         "    for _ in range(len(logit_weights)):\n        term = term @ weights\n"
                         "        if not term.any():\n            break\n        total = total + term\n    return total",
                         "eye = torch.eye(len(weights), dtype=weights.dtype)\n"
                         "    return torch.linalg.solve((eye - weights).T, logit_weights) - logit_weights")]),
    # the number kept from searchsorted, and the mask built by scatter
    ("prune_nodes", [(KEPT, "n_kept = int(torch.searchsorted(cumulative, torch.tensor(threshold, "
                            "dtype=cumulative.dtype))) + 1")]),
]


def test_each_exercise_forbids_the_courses_own_version_of_it():
    """`toy_models.attribution` does each step for `mi-course graph`: borrowing it earns nothing."""
    references = course_references(CHAPTER)
    assert "toy_models.attribution:run_clean" in references["error_nodes"]
    assert "toy_models.attribution:influence" in references["node_influence"]
    assert "toy_models.attribution:influence" in references["prune_nodes"]  # prune_nodes uses node_influence
    assert "toy_models.attribution:measured_change" in references["ablation_effect"]


@pytest.mark.parametrize("shape,seed", [("2 layers", 0), ("3 layers", 2)])
def test_references_agree_with_the_courses_pipeline(shape, seed):
    """The references and `toy_models.attribution` are two implementations of one method:
    each checks the other."""
    model, transcoders, prompt, other = setup(shape, seed)
    g = graph(shape, seed)
    token = int(g.logit_tokens[0])
    assert token == top_token(model, prompt)
    torch.testing.assert_close(reference.replacement_logits(model, transcoders, prompt, prompt),
                               model(prompt[None])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(reference.replacement_logits(model, transcoders, prompt, other),
                               attribution_replacement_on(model, transcoders, prompt, other), atol=1e-5, rtol=0)
    row = g.adjacency[g.mask("logit").nonzero()[0, 0]]
    mine = reference.logit_attributions(model, transcoders, prompt, token)
    for index, node in enumerate(g.nodes):
        if node.kind == "feature":
            assert abs(mine[node.layer, node.pos, node.index].item() - row[index].item()) < 1e-5
    weights = g.logit_weights()
    torch.testing.assert_close(reference.node_influence(g.adjacency.double(), weights),
                               attribution.influence(attribution.normalized_weights(g.adjacency), weights))
    strongest = max((i for i, n in enumerate(g.nodes) if n.kind == "feature"), key=lambda i: abs(row[i].item()))
    node = g.nodes[strongest]
    assert reference.ablation_effect(model, transcoders, prompt, node.layer, node.pos, node.index, token) == \
        pytest.approx(attribution.measured_change(model, transcoders, g, [strongest]), abs=1e-5)


def attribution_replacement_on(model, transcoders, clean, tokens):
    """toy_models.attribution's replacement model, built on `clean`, run on `tokens`."""
    run = attribution.run_clean(model, transcoders, clean)
    hooks = attribution.freezing_hooks(run)
    for transcoder, error in zip(transcoders, run.errors):
        hooks += attribution.transcoder_hooks(transcoder, error)
    with torch.no_grad():
        return model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0]
