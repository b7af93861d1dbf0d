"""Chapter 05's graders, notebook and shipped artefacts, end to end.

The wrong implementations are the solution notebook's own cells (generated from
`solutions/honest_limits.py`) with one realistic mistake edited in. The chapter's key
numbers are recomputed from the shipped weights (never rebuilt here: `mi-course train
NAME` does that).
"""


import nbformat
import pytest
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases

from graders.chapter_05 import CHAPTER as CHAPTER  # the chapter the shared tests grade
from graders.chapter_05 import measure_capstone
from mi_course.release import TEXT_STUB
from mi_course.runtime.paths import COURSE_DIR, SOLUTIONS_DIR
from solutions.honest_limits import capstone_behaviour, circuit_transfer_rate, match_features
from toy_models import load_pretrained
from toy_models.checkpoints import SHIPPED_DIR, checkpoint_dir, read_description
from toy_models.metrics import induction_scores
from toy_models.sae import SWEEP_SAES, evaluate_sae, load_sae, one_thread, validation_windows
from toy_models.train import INDUCTION_SEQ_LEN, TRANSFORMER_JOBS, induction_batch

NOTEBOOK = "05_honest_limits.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK
STUDENT = COURSE_DIR / NOTEBOOK
INDUCTION_SEEDS = ["induction-2l", *[f"induction-2l-seed{seed}" for seed in range(1, 5)]]


MATCH = "cosines = unit_a @ unit_b.T"
ERROR = "return next_token_loss(without_error, tokens, per_token=True) - next_token_loss(with_error, tokens, per_token=True)"
SAME = "set(map(tuple, a.get(role, []))) == set(map(tuple, b.get(role, [])))"
ABLATE = "return resid - along[..., None] * unit"  # chapter 01's reference, met again
PATCH_RUN = "logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(f\"blocks.{layer}.attn.hook_z\", patch_head)])"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # match_features: input: rows of very different lengths, six of b's the negatives of a's, d_sae_a != d_sae_b
    ("match_features", [(MATCH, "cosines = W_dec_a @ W_dec_b.T")], "raw rows"),
    ("match_features", [(MATCH, "cosines = (unit_a @ unit_b.T).abs()")], "absolute cosine"),
    ("match_features", [("F.normalize(W_dec_a, dim=-1)", "F.normalize(W_dec_a, dim=0)"),
                        ("F.normalize(W_dec_b, dim=-1)", "F.normalize(W_dec_b, dim=0)")], "normalised the columns"),
    ("match_features", [("return cosines.max(dim=-1).values", "return cosines.max(dim=0).values")], "max over a's"),
    # error_term_loss_effect: input: the shipped code-2l and a small sweep SAE, whose error term matters at some tokens
    ("error_term_loss_effect", [(ERROR, "return next_token_loss(with_error, tokens, per_token=True) - "
                                        "next_token_loss(without_error, tokens, per_token=True)")], "sign is flipped"),
    ("error_term_loss_effect", [("return sae(acts)\n", "return torch.zeros_like(acts)\n")], "replaced the activation by zeros"),
    ("error_term_loss_effect", [(ERROR, "return (next_token_loss(without_error, tokens, per_token=True) - "
                                        "next_token_loss(with_error, tokens, per_token=True)).mean()")], "not its mean"),
    # circuit_transfer_rate: inputs: TRANSFER_CASES, each separating self-pairs, shared heads, per-role and one-sided roles
    ("circuit_transfer_rate", [("itertools.combinations(circuits, 2)", "itertools.product(circuits, repeat=2)")],
     "with itself"),
    ("circuit_transfer_rate", [(SAME, "set(map(tuple, a.get(role, []))) & set(map(tuple, b.get(role, [])))")],
     "merely share a head"),
    # separated by "four circuits, one without an 'ind' role": the first circuit names no 'ind', the second does
    ("circuit_transfer_rate", [("for role in {*a, *b}", "for role in a")], "only the roles of the first circuit"),
    # ablate_direction: chapter 01's grader
    ("ablate_direction", [("unit = direction / direction.norm()", "unit = direction")], "did not normalise the direction"),
    ("ablate_direction", [(ABLATE, "return along[..., None] * unit")], "returned the component along d"),
    # patch_components: inputs: a model with MLPs and an attention-only one, prompts differing in the middle positions
    ("patch_components", [(PATCH_RUN, PATCH_RUN.replace("clean_tokens", "corrupted_tokens")),
                          ("corrupted_tokens, names_filter", "clean_tokens, names_filter"),
                          ("logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(name,",
                           "logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name,")], "denoising"),
    ("patch_components", [("z[:, :, head] = corrupted[hook.name][:, :, head]",
                           "z[:, -1, head] = corrupted[hook.name][:, -1, head]"),
                          ("lambda out, hook: corrupted[hook.name]",
                           "lambda out, hook: torch.cat([out[:, :-1], corrupted[hook.name][:, -1:]], dim=1)")],
     "only the final position"),
    ("patch_components", [("has_mlp = not model.cfg.attn_only", "has_mlp = False")], "MLPs are missing"),
    # patching_cost: inputs: COST_CASES, with n_prompts 1, 10, 50 and 100, n_layers != n_heads in two
    ("patching_cost", [('"activation": n_prompts * (2 + n_layers * n_heads * n_pos)',
                        '"activation": n_prompts * n_layers * n_heads * n_pos')], "caching runs"),
    ("patching_cost", [('"activation": n_prompts * (2 + n_layers * n_heads * n_pos)',
                        '"activation": n_prompts * (2 + n_layers * n_heads)')], "one run per head"),
    ("patching_cost", [('"attribution": n_prompts * 3', '"attribution": n_prompts * 2')], "backward pass"),
    # capstone_behaviour: measured on the shipped code-2l (measure_capstone)
    ("capstone_behaviour", [('"component": "L1H3"', '"component": "L0H2"')], "removes only"),
    ("capstone_behaviour", [('"corrupted": "        x = self.run[a"', '"corrupted": "        x = self.run[ab"')],
     "same length"),
    ("capstone_behaviour", [('"answer": ")"', '"answer": "]"'), ('"wrong": "]"', '"wrong": ")"')],
     "pick a behaviour the model has"),
    ("capstone_behaviour", [('"corrupted": "        x = self.run[a"', '"corrupted": "        y = self.run(a"')],
     "removes the behaviour"),
]

# Right answers written differently: the graders must accept them.
ALSO_RIGHT = [
    ("match_features", [(MATCH, "cosines = torch.nn.functional.cosine_similarity(W_dec_a[:, None], W_dec_b[None], dim=-1)")]),
    ("ablate_direction", [(ABLATE, "return resid - torch.outer(along.flatten(), unit).reshape(resid.shape)")]),
    ("capstone_behaviour", [('"component": "L1H3"', '"component": "MLP0"')]),
    # the MLP's neurons patched instead of its output: its output then is the corrupted one
    ("patch_components", [('name = f"blocks.{layer}.hook_mlp_out"', 'name = f"blocks.{layer}.mlp.hook_post"'),
                          ("corrupted_tokens, names_filter=lambda name: name.endswith(\"hook_z\") or name.endswith(\"hook_mlp_out\"))",
                           "corrupted_tokens, names_filter=lambda name: name.endswith(\"hook_z\") or name.endswith(\"hook_post\"))")]),
    ("patching_cost", [('"attribution": n_prompts * 3', '"attribution": torch.tensor(3 * n_prompts)')]),
]


def test_the_write_up_is_a_manually_graded_answer_cell():
    def writeup(path):
        cells = nbformat.read(path, as_version=4).cells
        (cell,) = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == "capstone_writeup"]
        return cell

    source, student = writeup(SOLUTION), writeup(STUDENT)
    assert source.cell_type == "markdown"
    meta = source.metadata["nbgrader"]
    assert meta["grade"] and meta["solution"] and not meta["locked"] and meta["points"] > 0
    assert student.source.strip() == TEXT_STUB


# --------------------------------------------------------------------------- the shipped artefacts

def test_chapter_05_artefacts_are_small():
    names = [*INDUCTION_SEEDS[1:], "ioi-3l-seed1", *SWEEP_SAES]
    total = sum(f.stat().st_size for name in names for f in (SHIPPED_DIR / name).iterdir())
    assert total < 8 * 1024 * 1024, f"{total / 1e6:.1f} MB"
    for name in names:
        assert (SHIPPED_DIR / name / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by the sandbox


def test_every_induction_seed_learned_induction_but_the_heads_differ():
    circuits = []
    tokens = induction_batch(torch.Generator().manual_seed(5), 64, 512)
    with one_thread(), torch.no_grad():
        for name in INDUCTION_SEEDS:
            model = load_pretrained(name)
            scores = induction_scores(model, tokens, INDUCTION_SEQ_LEN)
            assert scores[1].max() > 0.9, name
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
            prev = cache["pattern", 0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))
            circuits.append({"previous_token": [(0, h) for h in range(2) if prev[h] > 0.4],
                             "induction": [(1, h) for h in range(2) if scores[1, h] > 0.2]})
    assert 0 < circuit_transfer_rate(circuits) < 0.5


def test_ioi_seed1_solves_held_out_templates():
    metrics = TRANSFORMER_JOBS["ioi-3l-seed1"].evaluate(load_pretrained("ioi-3l-seed1"))
    assert metrics["heldout_io_over_s_accuracy"] >= 0.95
    assert metrics == pytest.approx(read_description(checkpoint_dir("ioi-3l-seed1"))["metrics"], rel=1e-4, abs=1e-5)


def test_sweep_sae_metrics_are_what_the_weights_give():
    name = "code-2l-sae-256-k8"
    sae, recipe = load_sae(name), SWEEP_SAES[name]
    stored = read_description(checkpoint_dir(name))["metrics"]
    with one_thread():
        measured = evaluate_sae(load_pretrained("code-2l"), sae, validation_windows(recipe.n_eval_windows, 128))
    assert measured == pytest.approx(stored, rel=1e-3, abs=1e-4)


def test_two_seeds_of_the_same_sae_share_only_a_minority_of_features():
    a, b = load_sae("code-2l-sae-256-k8"), load_sae("code-2l-sae-256-k8-seed1")
    with torch.no_grad():
        twins = (match_features(a.W_dec, b.W_dec) > 0.9).float().mean().item()
    assert 0 < twins < 0.5


def test_the_example_capstone_localises_a_real_effect():
    with one_thread():
        measured = measure_capstone(capstone_behaviour())
    layer, column = measured["component"]
    assert measured["clean_diff"] > 5 and measured["corrupted_diff"] < 0
    assert measured["effects"][layer, column] > 0.5
