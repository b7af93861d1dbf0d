"""Loading a learner's notebook must not change the grader's own torch settings."""

import nbformat
import torch

from graders.submission import load_submission


def test_a_notebook_cannot_switch_off_gradients_for_the_graders(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import torch\ntorch.set_grad_enabled(False)\ntorch.set_default_dtype(torch.float64)\n"
        "torch.set_num_threads(1)\nx = 1"
    )])
    path = tmp_path / "00_transformer_from_scratch.ipynb"
    nbformat.write(notebook, path)
    threads = torch.get_num_threads()
    submission = load_submission(path)
    assert submission.namespace["x"] == 1
    assert torch.is_grad_enabled()
    assert torch.get_default_dtype() == torch.float32
    assert torch.get_num_threads() == threads
