"""Chapter 02's graders, notebook and release, end to end.

The wrong implementations are the solution notebook's own cells (generated from
`solutions/induction_heads.py`) with one realistic mistake edited in, so each reads as a
small diff against the right answer. If the solution's text changes so that an edit no
longer applies, the test says so.
"""

import re

import nbformat
import pytest
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases
from hypothesis import given, settings
from hypothesis import strategies as st
from nbclient import NotebookClient
from solution_edits import edited_solution

from graders.chapter_02 import CHAPTER, reference_circuit
from mi_course.runtime.paths import SOLUTIONS_DIR
from mi_course.runtime.verdicts import Verdict
from solutions.induction_heads import (
    current_token_scores,
    first_token_scores,
    prefix_matching_scores,
    previous_token_scores,
)

NOTEBOOK = "02_induction_heads.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK


CIRCUIT = '{"previous_token": [(0, 0)], "induction": [(1, 0), (1, 1)]}'

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # Detectors: random causal patterns peaked enough that each diagonal carries a different weight separate the
    # diagonals and the axes; pos = 2, 9 and 17 separate a sum from a mean.
    ("previous_token_scores", [("offset=-1", "offset=1")], "off-by-one diagonal"),
    ("previous_token_scores", [("offset=-1", "offset=0")], "off-by-one diagonal"),
    ("previous_token_scores", [(".mean(dim=(0, -1))", ".mean(dim=(0, 1))")], "averaged over the wrong axes"),
    ("previous_token_scores", [(".mean(dim=(0, -1))", ".sum(dim=-1).mean(dim=0)")], "summed over positions"),
    ("current_token_scores", [("offset=0", "offset=-1")], "off-by-one diagonal"),
    ("current_token_scores", [(".mean(dim=(0, -1))", ".mean(dim=(0, 1))")], "averaged over the wrong axes"),
    ("first_token_scores", [("pattern[..., 0]", "pattern[..., 0, :]")], "first *query's* row"),
    ("first_token_scores", [("pattern[..., 0]", "pattern[..., 1:, 0]")], "left out query 0"),
    # prefix_matching_scores: the block repeated 3 times separates the shifts and counting only the last copy; the
    # 4-token vocabulary has queries with no key to match, separating the mean over every query.
    ("prefix_matching_scores", [("tokens[:, None, :-1]", "tokens[:, None, :]"), ("(1, 0)", "(0, 0)")], "duplicate-token head"),
    ("prefix_matching_scores", [("(attended * has_target[:, None]).sum(dim=(0, 2)) / has_target.sum()",
                                 "attended.mean(dim=(0, 2))")], "averaged over every query"),
    ("prefix_matching_scores", [("tokens[:, None, :-1]", "tokens[:, None, :-2]"), ("(1, 0)", "(2, 0)")], "off by one"),
    # Without the shift: earlier copies of the query's token (k < q), separated by any repeated block.
    ("prefix_matching_scores", [("tokens[:, None, :-1] == tokens[:, :, None]", "tokens[:, None, :] == tokens[:, :, None]"),
                                ("torch.nn.functional.pad(previous, (1, 0), value=False)", "previous"),
                                ("torch.ones_like(targets).tril()", "torch.ones_like(targets).tril(diagonal=-1)")],
     "without the shift"),
    ("prefix_matching_scores", [("(1, 0)", "(0, 1)")], "padded the comparison on the right"),
    # Per sequence first: separated by the sequences with 6 and 1 queries that can match (and, with seed 0, by the
    # repeated blocks, whose 3 sequences have 10, 10 and 11 by chance).
    ("prefix_matching_scores", [("(attended * has_target[:, None]).sum(dim=(0, 2)) / has_target.sum()",
                                 "((attended * has_target[:, None]).sum(dim=2) / has_target.sum(dim=1)[:, None]).mean(dim=0)")],
     "averaged each sequence's queries first"),
    # in_context_learning_score: a random loss at early = 2, late = 30 (and 0, 47) separates ranges from indices.
    ("in_context_learning_score", [("per_token_loss[:, late].mean() - per_token_loss[:, early].mean()",
                                    "per_token_loss[:, early].mean() - per_token_loss[:, late].mean()")], "wrong sign"),
    ("in_context_learning_score", [("per_token_loss[:, late].mean() - per_token_loss[:, early].mean()",
                                    "per_token_loss[:, late:].mean() - per_token_loss[:, :early].mean()")], "ranges of tokens"),
    ("in_context_learning_score", [("per_token_loss[:, late].mean() - per_token_loss[:, early].mean()",
                                    "per_token_loss[:, late - 1].mean() - per_token_loss[:, early - 1].mean()")], "off by one"),
    # head_ablation_losses: the shipped model (attention to the start token differs from later positions) separates
    # the mean's axes; the random model's variants separate the kinds and the positions kept.
    ("head_ablation_losses", [('cache["z", layer][:, :, head].mean(dim=0)', 'cache["z", layer][:, :, head].mean(dim=(0, 1))')],
     "over the batch *and the positions*"),
    ("head_ablation_losses", [("per_token[:, -(seq_len - 1):]", "per_token[:, seq_len:]")], "first token of the repeat"),
    ("head_ablation_losses", [("per_token[:, -(seq_len - 1):].mean()", "per_token.mean()")], "over the whole sequence"),
    ("head_ablation_losses", [('0.0 if kind == "zero" else mean_z', "0.0")], "you ran zero ablation when kind='mean'"),
    # Separated by any model with more than one head per layer: the heads of a layer get one loss.
    ("head_ablation_losses", [('f"blocks.{layer}.attn.hook_z"', 'f"blocks.{layer}.hook_attn_out"'),
                              ('z[:, :, head] = 0.0 if kind == "zero" else mean_z', "z[:] = 0.0")], "you zeroed hook_attn_out"),
    # direct_logit_attribution: the shipped model's nonzero-mean head outputs separate centring; its ln_final.w and
    # scale separate the other LayerNorm mistakes; any tokens the off-by-one targets.
    ("direct_logit_attribution", [("        out = out - out.mean(dim=-1, keepdim=True)  # the final LayerNorm centres every component\n", "")],
     "did not centre"),
    ("direct_logit_attribution", [("model.W_U.T[tokens[:, 1:]]", "model.W_U.T[tokens[:, :-1]]")], "the token at p itself"),
    ("direct_logit_attribution", [("out / scale[:, :, None]", "out")], "did not divide by the final LayerNorm's scale"),
    ("direct_logit_attribution", [(" * model.ln_final.w", "")], "ln_final.w"),
    # full_ov_circuit: a random model with 3 heads and d_head = 5 separates the heads and the order of the matrices.
    ("full_ov_circuit", [("return W_E @ W_OV @ model.W_U", "return (W_E @ W_OV @ model.W_U).T")], "transposed"),
    ("full_ov_circuit", [("FactoredMatrix(model.blocks[layer].attn.W_V[head], model.blocks[layer].attn.W_O[head])",
                          "FactoredMatrix(model.blocks[layer].attn.W_Q[head], model.blocks[layer].attn.W_K[head].T)"),
                         ("W_E @ W_OV @ model.W_U", "W_E @ W_OV @ W_E.T")], "QK circuit"),
    ("full_ov_circuit", [("W_V[head]", "W_V[0]"), ("W_O[head]", "W_O[0]")], "another head's W_V or W_O"),
    # top1_copying_accuracy: column 0 is large, so the argmax over the wrong axis gives another answer.
    ("top1_copying_accuracy", [("argmax(dim=-1)", "argmax(dim=0)")], "wrong axis"),
    ("top1_copying_accuracy", [(".float().mean().item()", ".sum().item()")], "how many tokens copy"),
    # k_composition_score: random rank-4 matrices separate the order and Q-composition; W_OV scaled by 10 normalisation.
    ("k_composition_score", [("composed = W_OV @ W_QK.T", "composed = W_OV @ W_QK")], "Q-composition"),
    ("k_composition_score", [("(composed.norm() / (W_OV.norm() * W_QK.norm())).item()", "composed.norm().item()")],
     "did not normalise"),
    ("k_composition_score", [("composed = W_OV @ W_QK.T", "composed = W_QK.T @ W_OV")], "wrong order"),
    ("induction_circuit", [(CIRCUIT, '{"previous_token": [(0, 1)], "induction": [(1, 0), (1, 1)]}')], "Head 0.1 spreads"),
    ("induction_circuit", [(CIRCUIT, '{"previous_token": [(0, 0)], "induction": [(1, 0)]}')],
     "Both layer-1 heads are induction heads"),
    ("induction_circuit", [(CIRCUIT, '{"previous_token": [(0, 0), (0, 1)], "induction": [(1, 0), (1, 1), (0, 0)]}')],
     "A layer-0 head cannot be an induction head"),
    ("induction_circuit", [(CIRCUIT, '{"copying": [(1, 0)]}')], "unknown role 'copying'"),
    ("induction_circuit", [(CIRCUIT, "[(0, 0), (1, 0), (1, 1)]")], "should return a dict"),
]

# Right answers written differently: the graders must accept them.
ALSO_RIGHT = [
    ("previous_token_scores", [("return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))",
                                "pos = pattern.shape[-1]\n    return pattern[:, :, torch.arange(1, pos), torch.arange(pos - 1)].mean(dim=(0, 2))")]),
    # The shift by concatenation: a token that is never an id (-1) before the first position.
    ("prefix_matching_scores", [("tokens[:, None, :-1] == tokens[:, :, None]", "torch.cat([torch.full_like(tokens[:, :1], -1), "
                                 "tokens[:, :-1]], dim=1)[:, None, :] == tokens[:, :, None]"),
                                ("torch.nn.functional.pad(previous, (1, 0), value=False)", "previous")]),
    ("first_token_scores", [("return pattern[..., 0].mean(dim=(0, -1))",
                             'return einops.reduce(pattern[..., 0], "batch head query -> head", "mean")')]),
    ("in_context_learning_score", [("per_token_loss[:, late].mean() - per_token_loss[:, early].mean()",
                                    "(per_token_loss[:, late] - per_token_loss[:, early]).mean().item()")]),
    ("top1_copying_accuracy", [(".float().mean().item()", ".float().mean()")]),
    ("k_composition_score", [("composed.norm()", "torch.linalg.matrix_norm(composed)")]),
    ("induction_circuit", [(CIRCUIT, '{"Previous-token heads": ["L0H0"], "induction_heads": [[1, 0], "1.1"]}')]),
    ("induction_circuit", [(CIRCUIT, '{"previous_token": (0, 0), "induction": {(1, 1), (1, 0)}}')]),
    # Heads read off a table of scores: numpy integers from np.argwhere, tensors from .nonzero().
    ("induction_circuit", [(CIRCUIT, '{"previous_token": [tuple(h) for h in __import__("numpy").argwhere([[1, 0], [0, 0]])], '
                                     '"induction": list(torch.tensor([[0.1, 0.2], [0.95, 0.97]]).gt(0.9).nonzero())}')]),
]


def test_the_reference_circuit_is_measured_from_the_shipped_model():
    assert reference_circuit() == {"previous_token": {(0, 0)}, "induction": {(1, 0), (1, 1)}}


def test_the_visible_check_of_ablation_misses_what_the_hidden_tests_catch(solution):
    always_zero = edited_solution(solution, "head_ablation_losses", [('0.0 if kind == "zero" else mean_z', "0.0")])
    exercise = CHAPTER.exercises["head_ablation_losses"]
    assert exercise.run(always_zero, exercise.variants[:1]).verdict is Verdict.PASS
    assert exercise.run(always_zero).verdict is Verdict.FAIL


def test_the_solution_notebook_runs_top_to_bottom_and_training_forms_induction_heads(tmp_path):
    """The whole notebook, live training included: the model trained live reaches an induction
    score past 0.8 (as the prose says), the one-layer control does not come close."""
    nb = nbformat.read(SOLUTION, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))
    assert printed.count("PASS: ") == sum(len(exercise.variants) for exercise in CHAPTER.exercises.values())
    live = float(re.search(r"LIVE 2-layer: final best induction score ([\d.]+)", printed).group(1))
    control = float(re.search(r"CONTROL 1-layer: best induction score at any step ([\d.]+)", printed).group(1))
    assert live > 0.8, printed
    assert control < 0.3, printed


# --------------------------------------------------------------------------- the detectors, on any shape

@st.composite
def patterns_and_tokens(draw):
    """Causal attention patterns [batch, head, query, key] and tokens from a small vocabulary,
    so that repeats, and queries with and without a prefix match, all occur."""
    batch, heads, pos = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 9))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scores = torch.randn(batch, heads, pos, pos, generator=generator, dtype=torch.float64)
    pattern = scores.masked_fill(torch.ones(pos, pos, dtype=torch.bool).triu(1), float("-inf")).softmax(dim=-1)
    tokens = torch.randint(0, draw(st.integers(1, 4)), (batch, pos), generator=generator)
    return pattern, tokens


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=patterns_and_tokens())
def test_the_detectors_average_what_their_docstrings_say(case):
    """Each score against a plain loop over the pairs its docstring names."""
    pattern, tokens = case
    batch, heads, pos, _ = pattern.shape
    for head in range(heads):
        previous = [pattern[b, head, q, q - 1] for b in range(batch) for q in range(1, pos)]
        current = [pattern[b, head, q, q] for b in range(batch) for q in range(pos)]
        first = [pattern[b, head, q, 0] for b in range(batch) for q in range(pos)]
        matches = [sum(pattern[b, head, q, k] for k in range(1, q + 1) if tokens[b, k - 1] == tokens[b, q])
                   for b in range(batch) for q in range(pos)
                   if any(tokens[b, k - 1] == tokens[b, q] for k in range(1, q + 1))]
        for detector, pairs in [(previous_token_scores(pattern), previous), (current_token_scores(pattern), current),
                                (first_token_scores(pattern), first)]:
            assert detector[head].item() == pytest.approx(sum(pairs).item() / len(pairs))
        prefix = prefix_matching_scores(tokens, pattern)[head].item()
        if matches:
            assert prefix == pytest.approx(sum(matches).item() / len(matches))
