"""Chapter 01's graders, notebook and release, end to end.

The wrong implementations are the solution notebook's own cells with one realistic
mistake edited in, so each reads as a small diff against the right answer.
"""


import nbformat
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases
from hypothesis import given, settings
from hypothesis import strategies as st
from nbclient import NotebookClient

from graders.chapter_01 import CHAPTER
from mi_course.runtime.paths import SOLUTIONS_DIR
from solutions.three_buckets import ablate_direction, bracket_depth, steer

NOTEBOOK = "01_three_buckets.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK


UPDATE = "current = (current + is_open[:, pos] - is_close[:, pos]).clamp(min=0)"
STORE = "depth[:, pos] = current"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # bracket_depth: the random batch separates the off-by-one; ')) x((' the unclamped and the once-clamped depth;
    # 'f(a[b{c}])' counting only parentheses.
    ("bracket_depth", [(f"{UPDATE}\n        {STORE}", f"{STORE}\n        {UPDATE}")], "off by one"),
    ("bracket_depth", [(".clamp(min=0)", "")], "clamp the running depth at 0"),
    # Separated by ')) x((': clamped once at the end it is 0 throughout, clamped at each byte it ends at 2.
    ("bracket_depth", [(".clamp(min=0)", ""), ("return depth", "return depth.clamp(min=0)")],
     "clamped the depth at 0 once, at the end"),
    ("bracket_depth", [('torch.tensor([ord("("), ord("["), ord("{")])', 'torch.tensor([ord("(")])'),
                       ('torch.tensor([ord(")"), ord("]"), ord("}")])', 'torch.tensor([ord(")")])')], "only parentheses"),
    # closing_paren_accuracy: the random logits favour ')' at half the positions, unrelated to where ')' comes next,
    # so the unshifted, the every-position and the predicted-')' averages all differ from the eval.
    ("closing_paren_accuracy", [("logits[:, :-1].argmax", "logits.argmax"), ('tokens[:, 1:] == ord(")")', 'tokens == ord(")")')],
     "the logits at p predict the token at p + 1"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))', "(predictions == tokens[:, 1:])")], "every position"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))',
                                 '(tokens[:, 1:][predictions == ord(")")] == ord(")"))')], "where the model predicts ')'"),
    # fit_probe: the planted data (offset labels) separates a flipped label and a missing bias (the bias is not 0).
    ("fit_probe", [("targets = labels.float()", "targets = 1 - labels.float()")], "points the wrong way"),
    ("fit_probe", [("torch.optim.SGD([direction, bias]", "torch.optim.SGD([direction]")], "bias of 0"),
    ("fit_probe", [("torch.optim.SGD", "torch.optim.Adam")], "full-batch gradient descent without momentum"),
    # The next three are separated only by the hidden variant, graded with steps=40, lr=0.3.
    ("fit_probe", [("range(steps)", "range(200)"), ("lr=lr", "lr=1.0")], "ignores `steps` and `lr`"),
    ("fit_probe", [("range(steps)", "range(200)")], "ignores `steps`: it took 200 steps"),
    ("fit_probe", [("lr=lr", "lr=1.0")], "ignores `lr`"),
    # Standardising rescales the direction per dimension: the planted data's dimensions have unequal spreads by chance.
    ("fit_probe", [("acts @ direction + bias, targets)", "(acts - acts.mean(0)) / acts.std(0) @ direction + bias, targets)")],
     "standardised the activations inside the probe"),
    ("fit_probe", [("acts @ direction + bias, targets)", "acts @ direction + bias, targets, reduction='sum')")],
     "differ"),
    # held_out_probe_accuracy: the noise labels in 64 dimensions, 80 examples, separate accuracy on the training
    # examples (a probe memorises them); the planted labels separate fitting on all examples.
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts[:n_train] @ direction"),
                                 ("labels[n_train:]).float()", "labels[:n_train]).float()")], "trained on"),
    ("held_out_probe_accuracy", [("fit_probe(acts[:n_train], labels[:n_train]", "fit_probe(acts, labels")],
     "trained the probe on all the examples"),
    # Separated by the hidden variant (train_fraction=0.5, steps=10), on the labels set by one direction.
    ("held_out_probe_accuracy", [("int(train_fraction * acts.shape[0])", "int(0.7 * acts.shape[0])")],
     "you ignored `train_fraction`"),
    ("held_out_probe_accuracy", [("labels[:n_train], steps=steps)", "labels[:n_train])")], "did not pass `steps` on"),
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts @ direction"), ("labels[n_train:]).float()", "labels).float()")],
     "on all the examples"),
    # ablate_direction: a direction of length about 16 separates every normalisation mistake; any input the others.
    ("ablate_direction", [("unit = direction / direction.norm()", "unit = direction")], "did not normalise"),
    ("ablate_direction", [("einops.einsum(resid, unit,", "einops.einsum(resid, direction,")], "divided by |d| once"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return along[..., None] * unit")], "returned the component"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return resid * 0")], "zeroed the whole vector"),
    # steer: the direction of length about 16 separates a missing normalisation; alpha = 3 and -2 scaling.
    ("steer", [("alpha * direction / direction.norm()", "alpha * direction")], "did not normalise"),
    ("steer", [("return resid + alpha * direction / direction.norm()", "return resid * alpha")], "does not scale"),
    # head_ablation_effect: heads 1.2 and 0.3 of a random model (nonzero biases) give each wrong head, layer or sign
    # its own number.
    ("head_ablation_effect", [("float(ablated - clean)", "float(clean - ablated)")], "sign is reversed"),
    ("head_ablation_effect", [("float(ablated - clean)", "float(ablated)")], "returned the ablated metric"),
    ("head_ablation_effect", [("z[:, :, head] = 0", "z[:, :, :] = 0")], "zeroed every head"),
    ("head_ablation_effect", [('f"blocks.{layer}.attn.hook_z"', 'f"blocks.{1 - layer}.attn.hook_z"')], "wrong layer"),
    # Separated from zeroing every head's z by the random model's nonzero b_O, which hook_attn_out includes.
    ("head_ablation_effect", [('f"blocks.{layer}.attn.hook_z"', 'f"blocks.{layer}.hook_attn_out"'),
                              ("z[:, :, head] = 0", "z[:] = 0")], "you zeroed hook_attn_out"),
]

ALSO_RIGHT = [
    ("ablate_direction", [("return resid - along[..., None] * unit",
                           "return resid - (resid @ direction / direction.norm() ** 2)[..., None] * direction")]),
    ("closing_paren_accuracy", [(".float().mean()", ".double().mean().item()")]),
    # The running depth clamped at each step, without a loop: the sum so far minus the lowest it has been below 0.
    ("bracket_depth", [("    depth = torch.zeros_like(tokens)\n    current = torch.zeros(tokens.shape[0], dtype=tokens.dtype)\n"
                        "    for pos in range(tokens.shape[1]):\n"
                        "        current = (current + is_open[:, pos] - is_close[:, pos]).clamp(min=0)\n"
                        "        depth[:, pos] = current\n    return depth",
                        "    running = (is_open - is_close).cumsum(dim=-1)\n"
                        "    return running - running.cummin(dim=-1).values.clamp(max=0)")]),
    # Gradient descent by hand, without an optimizer.
    ("fit_probe", [("optimizer.zero_grad()", "direction.grad = bias.grad = None"),
                   ("optimizer.step()", "with torch.no_grad():\n                direction -= lr * direction.grad\n"
                                        "                bias -= lr * bias.grad")]),
    ("ablate_direction", [("unit = direction / direction.norm()", "unit = F.normalize(direction, dim=0)")]),
    ("steer", [("alpha * direction / direction.norm()", "alpha * F.normalize(direction, dim=-1)")]),
]


def test_the_solution_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))
    assert printed.count("PASS: ") == sum(len(exercise.variants) for exercise in CHAPTER.exercises.values())
    for words in ("majority baseline", "ablate the depth-probe direction", "alone takes the accuracy", "'is a space' probe"):
        assert words in printed
    assert all(output.get("output_type") != "error" for cell in nb.cells for output in cell.get("outputs", []))


# --------------------------------------------------------------------------- the references, on any input

BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
texts = st.lists(st.text(alphabet="([{}]) ab", min_size=1, max_size=20), min_size=1, max_size=4)


def padded(rows: list[str]) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([[ord(byte) for byte in row.ljust(width)] for row in rows])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(rows=texts)
def test_bracket_depth_counts_like_a_reader_of_the_text(rows):
    """Byte by byte, each row from depth 0, a closer at depth 0 ignored: as its docstring says."""
    expected = []
    for row in padded(rows).tolist():
        depth, depths = 0, []
        for byte in row:
            depth = max(0, depth + BRACKETS.get(chr(byte), 0))
            depths.append(depth)
        expected.append(depths)
    assert bracket_depth(padded(rows)).tolist() == expected


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=2), d_model=st.integers(1, 8),
       scale=st.floats(1e-2, 1e2), alpha=st.floats(-5, 5), seed=st.integers(0, 2**16))
def test_ablating_and_steering_move_only_along_the_direction(shape, d_model, scale, alpha, seed):
    """Whatever the direction's length: ablation leaves nothing along it and is idempotent;
    steering adds exactly alpha along its unit vector; neither touches what is orthogonal."""
    generator = torch.Generator().manual_seed(seed)
    resid = torch.randn(*shape, d_model, generator=generator, dtype=torch.float64)
    direction = scale * torch.randn(d_model, generator=generator, dtype=torch.float64)
    unit = direction / direction.norm()
    ablated, steered = ablate_direction(resid, direction), steer(resid, direction, alpha)
    assert torch.allclose(ablated @ unit, torch.zeros(shape, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(ablate_direction(ablated, direction), ablated, atol=1e-9)
    assert torch.allclose(steered @ unit - resid @ unit, torch.full(shape, alpha, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(ablate_direction(steered, direction), ablated, atol=1e-9)
