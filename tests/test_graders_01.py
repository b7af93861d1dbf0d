"""Chapter 01's graders, notebook and release, end to end.

The wrong implementations are the solution notebook's own cells with one realistic
mistake edited in, so each reads as a small diff against the right answer.
"""


import nbformat
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases
from nbclient import NotebookClient

from graders.chapter_01 import CHAPTER
from mi_course.runtime.paths import SOLUTIONS_DIR

NOTEBOOK = "01_three_buckets.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK


UPDATE = "current = (current + is_open[:, pos] - is_close[:, pos]).clamp(min=0)"
STORE = "depth[:, pos] = current"

# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    ("bracket_depth", [(f"{UPDATE}\n        {STORE}", f"{STORE}\n        {UPDATE}")], "off by one"),
    ("bracket_depth", [(".clamp(min=0)", "")], "clamp the running depth at 0"),
    ("bracket_depth", [('torch.tensor([ord("("), ord("["), ord("{")])', 'torch.tensor([ord("(")])'),
                       ('torch.tensor([ord(")"), ord("]"), ord("}")])', 'torch.tensor([ord(")")])')], "only parentheses"),
    ("closing_paren_accuracy", [("logits[:, :-1].argmax", "logits.argmax"), ('tokens[:, 1:] == ord(")")', 'tokens == ord(")")')],
     "the logits at p predict the token at p + 1"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))', "(predictions == tokens[:, 1:])")], "every position"),
    ("closing_paren_accuracy", [('(predictions[closes_next] == ord(")"))',
                                 '(tokens[:, 1:][predictions == ord(")")] == ord(")"))')], "where the model predicts ')'"),
    ("fit_probe", [("targets = labels.float()", "targets = 1 - labels.float()")], "points the wrong way"),
    ("fit_probe", [("torch.optim.SGD([direction, bias]", "torch.optim.SGD([direction]")], "bias of 0"),
    ("fit_probe", [("torch.optim.SGD", "torch.optim.Adam")], "plain gradient descent"),
    ("fit_probe", [("acts @ direction + bias, targets)", "acts @ direction + bias, targets, reduction='sum')")],
     "differ"),
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts[:n_train] @ direction"),
                                 ("labels[n_train:]).float()", "labels[:n_train]).float()")], "trained on"),
    ("held_out_probe_accuracy", [("fit_probe(acts[:n_train], labels[:n_train]", "fit_probe(acts, labels")],
     "trained the probe on all the examples"),
    ("held_out_probe_accuracy", [("acts[n_train:] @ direction", "acts @ direction"), ("labels[n_train:]).float()", "labels).float()")],
     "on all the examples"),
    ("ablate_direction", [("unit = direction / direction.norm()", "unit = direction")], "did not normalise"),
    ("ablate_direction", [("einops.einsum(resid, unit,", "einops.einsum(resid, direction,")], "divided by |d| once"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return along[..., None] * unit")], "returned the component"),
    ("ablate_direction", [("return resid - along[..., None] * unit", "return resid * 0")], "zeroed the whole vector"),
    ("steer", [("alpha * direction / direction.norm()", "alpha * direction")], "did not normalise"),
    ("steer", [("return resid + alpha * direction / direction.norm()", "return resid * alpha")], "does not scale"),
    ("head_ablation_effect", [("float(ablated - clean)", "float(clean - ablated)")], "sign is reversed"),
    ("head_ablation_effect", [("float(ablated - clean)", "float(ablated)")], "returned the ablated metric"),
    ("head_ablation_effect", [("z[:, :, head] = 0", "z[:, :, :] = 0")], "zeroed every head"),
    ("head_ablation_effect", [('f"blocks.{layer}.attn.hook_z"', 'f"blocks.{1 - layer}.attn.hook_z"')], "wrong layer"),
]

ALSO_RIGHT = [
    ("ablate_direction", [("return resid - along[..., None] * unit",
                           "return resid - (resid @ direction / direction.norm() ** 2)[..., None] * direction")]),
    ("closing_paren_accuracy", [(".float().mean()", ".double().mean().item()")]),
]


def test_the_solution_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))
    assert printed.count("PASS: ") == sum(len(exercise.variants) for exercise in CHAPTER.exercises.values())
    for words in ("majority baseline", "ablate the depth-probe direction", "alone takes the accuracy", "'is a space' probe"):
        assert words in printed
    assert all(output.get("output_type") != "error" for cell in nb.cells for output in cell.get("outputs", []))
