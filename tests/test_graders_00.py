"""Chapter 00's graders and the grading platform, end to end.

The wrong implementations are the solution notebook's own cells with one realistic
mistake edited in, so each reads as a small diff against the right answer. If the
solution's text changes so that an edit no longer applies, the test says so.
"""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from chapter_tests import *  # noqa: F403 - the tests every chapter passes, run on this module's cases
from hypothesis import given, settings
from hypothesis import strategies as st
from nbclient import NotebookClient
from solution_edits import edited_solution

from graders import compare_tensors, load_submission, make_check
from graders.chapter_00 import CHAPTER
from graders.core import ExerciseNotPassed, GraderFailure
from graders.reporting import summary
from mi_course.grading import course_references
from mi_course.notebook_builder import code, graded_test, notebook, write
from mi_course.runtime.paths import SOLUTIONS_DIR
from mi_course.runtime.verdicts import Verdict
from toy_models import TransformerConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "00_transformer_from_scratch.ipynb"
SOLUTION = SOLUTIONS_DIR / NOTEBOOK


# (exercise, the learner's mistake as edits of the solution, words the verdict's message must contain)
WRONG = [
    # LayerNorm: the random batch (mean 1.5, spread 3) separates the unbiased variance, the wrong axis and RMSNorm;
    # only the tiny entries (spread 1e-3) separate eps after the square root; the all-equal vectors a missing eps (NaN).
    ("LayerNorm", [("centred.pow(2).mean(dim=-1, keepdim=True)", "x.var(dim=-1, keepdim=True)")], "unbiased variance"),
    ("LayerNorm", [("(variance + self.cfg.layer_norm_eps).sqrt()", "(variance.sqrt() + self.cfg.layer_norm_eps)")],
     "eps after the square root"),
    ("LayerNorm", [("(variance + self.cfg.layer_norm_eps).sqrt()", "variance.sqrt()")], "gives NaN when a vector has variance 0"),
    ("LayerNorm", [("dim=-1", "dim=1")], "normalised over positions"),
    ("LayerNorm", [("centred = x - x.mean(dim=-1, keepdim=True)", "centred = x")], "RMSNorm"),
    ("LayerNorm", [("x.mean(dim=-1", "x.maen(dim=-1")], "centred = x - x.maen(dim=-1, keepdim=True)"),
    # Embed: the random tokens separate an off-by-one row (the last id, d_vocab - 1, is among them); the other two
    # mistakes stop before any input (a parameter named otherwise, integer one-hot rows).
    ("Embed", [("self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model) * cfg.init_range)",
                "self.embedding = nn.Embedding(cfg.d_vocab, cfg.d_model)"),
               ("self.W_E[tokens]", "self.embedding(tokens)")], "your `embedding.weight` has its shape: rename it `W_E`?"),
    ("Embed", [("self.W_E[tokens]", "F.one_hot(tokens, self.cfg.d_vocab) @ self.W_E")],
     "`Embed.forward`, line 15: return F.one_hot(tokens, self.cfg.d_vocab) @ self.W_E"),
    ("Embed", [("self.W_E[tokens]", "self.W_E[tokens - 1]")], "off by one"),
    # PosEmbed: the batch of 2 separates a missing batch dimension; any case an off-by-one row; token ids below
    # n_ctx that differ from their positions separate indexing by token.
    ("PosEmbed", [('einops.repeat(self.W_pos[:seq_len], "pos d_model -> batch pos d_model", batch=batch)',
                   "self.W_pos[:seq_len]")], "no batch dimension"),
    ("PosEmbed", [("self.W_pos[:seq_len]", "self.W_pos[1 : seq_len + 1]")], "off by one"),
    ("PosEmbed", [('einops.repeat(self.W_pos[:seq_len], "pos d_model -> batch pos d_model", batch=batch)',
                   "self.W_pos[tokens]")], "indexed W_pos by token id"),
    # apply_causal_mask: any case with pos >= 2 separates these four (the one-token case only the masked diagonal).
    ("apply_causal_mask", [(".triu(diagonal=1)", ".triu(diagonal=0)")], "masked the diagonal"),
    ("apply_causal_mask", [(".triu(diagonal=1)", ".tril(diagonal=-1)")], "masked the past"),
    # Separated by any case with pos >= 2: the key just after each query is left unmasked.
    ("apply_causal_mask", [(".triu(diagonal=1)", ".triu(diagonal=2)")], "triu(diagonal=2) starts one diagonal too high"),
    # Separated by the scores of spread 1000 (the first case): some are below -1000, so the message can show why.
    ("apply_causal_mask", [('float("-inf")', "-1e3")], "some scores here are below"),
    ("apply_causal_mask", [('float("-inf")', "0.0")], "exp(0) = 1"),
    ("apply_causal_mask", [('return attn_scores.masked_fill(future, float("-inf"))',
                            'attn_scores.masked_fill(future, float("-inf"))\n    return attn_scores')], "nothing was masked"),
    # Attention: the small config (d_head = 8, d_model = 32) separates the scalings; pos >= 2 the softmax axis and
    # the missing mask; the random, nonzero b_O a missing b_O; a mask applied to the pattern gives NaN.
    ("Attention", [("attn_scores / math.sqrt(self.cfg.d_head)", "attn_scores")], "did not divide the scores by sqrt(d_head)"),
    ("Attention", [("math.sqrt(self.cfg.d_head)", "math.sqrt(self.cfg.d_model)")], "divided the scores by sqrt(d_model)"),
    # Separated only by the odd_shapes variant (d_head = 6, d_model / n_heads = 4): the message names the configuration.
    ("Attention", [("math.sqrt(self.cfg.d_head)", "math.sqrt(self.cfg.d_model // self.cfg.n_heads)")],
     "in this configuration d_head = 6, unlike d_model / n_heads"),
    # A mask that hides the diagonal too: NaN at the first position only (its one key is masked), named as the mask's.
    ("Attention", [("apply_causal_mask(attn_scores / math.sqrt(self.cfg.d_head))",
                    "(attn_scores / math.sqrt(self.cfg.d_head)).masked_fill("
                    "torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(), float('-inf'))")],
     "a mask that also hides the diagonal"),
    ("Attention", [("softmax(dim=-1)", "softmax(dim=-2)")], "softmax over the query axis"),
    ("Attention", [("return out + self.b_O", "return out")], "forgot to add the output bias b_O"),
    ("Attention", [("apply_causal_mask(attn_scores / math.sqrt(self.cfg.d_head))", "attn_scores / math.sqrt(self.cfg.d_head)")],
     "attention reads the future"),
    ("Attention", [("apply_causal_mask(attn_scores / math.sqrt(self.cfg.d_head))", "attn_scores / math.sqrt(self.cfg.d_head)"),
                   ("self.hook_pattern(attn_scores.softmax(dim=-1))",
                    "self.hook_pattern(apply_causal_mask(attn_scores.softmax(dim=-1)))")],
     "contains NaN or inf"),
    # MLP: the activations of spread 3 separate ReLU, the tanh and the sigmoid approximations, and no activation.
    ("MLP", [("F.gelu(pre)", "F.relu(pre)")], "you used ReLU"),
    ("MLP", [("F.gelu(pre)", 'F.gelu(pre, approximate="tanh")')], "tanh approximation"),
    # The activations of spread 3 (random_residual) reach where the approximations differ from GELU by > 1e-2.
    ("MLP", [("F.gelu(pre)", "pre * torch.sigmoid(1.702 * pre)")], "sigmoid approximation"),
    ("MLP", [("F.gelu(pre)", "pre")], "no activation"),
    # TransformerBlock: the block whose attention and MLP write zeros separates a missing residual and post-LN; the
    # random LayerNorm weights separate ln1 from ln2; the attention-only config (d_mlp=None) a block that needs an MLP.
    ("TransformerBlock", [("resid_mid = resid + self.attn", "resid_mid = self.attn"), ("return resid_mid + self.mlp", "return self.mlp")],
     "returns only what attention and the MLP write"),
    ("TransformerBlock", [("resid + self.attn(self.ln1(resid))", "self.ln1(resid + self.attn(resid))"),
                          ("resid_mid + self.mlp(self.ln2(resid_mid))", "self.ln2(resid_mid + self.mlp(resid_mid))")], "post-LN"),
    ("TransformerBlock", [("self.mlp(self.ln2(resid_mid))", "self.mlp(self.ln2(resid))")], "your MLP reads the block's input"),
    ("TransformerBlock", [("self.ln2(resid_mid)", "self.ln1(resid_mid)")], "its own LayerNorm, ln2"),
    ("TransformerBlock", [("        if self.cfg.attn_only:\n            return resid_mid\n", "")],
     "AttributeError: 'TransformerBlock' object has no attribute 'mlp'"),
    # Unembed: the random, nonzero b_U separates a missing bias; any case log-probabilities; W_U's shape a transpose.
    ("Unembed", [(" + self.b_U", "")], "forgot to add the bias b_U"),
    ("Unembed", [("return einops.einsum(", "return torch.log_softmax(einops.einsum("), ("+ self.b_U", "+ self.b_U, dim=-1)")],
     "returned log-probabilities"),
    ("Unembed", [("torch.randn(cfg.d_model, cfg.d_vocab)", "torch.randn(cfg.d_vocab, cfg.d_model)")], "(transposed?)"),
    # DemoTransformer: the random weights separate each wiring mistake; n_layers = 2 separates blocks that each read
    # the embeddings from skipping blocks.
    ("DemoTransformer", [("self.unembed(self.ln_final(resid))", "self.unembed(resid)")], "forgot ln_final"),
    ("DemoTransformer", [("self.embed(tokens) + self.pos_embed(tokens)", "self.embed(tokens)")], "positional embedding"),
    ("DemoTransformer", [("resid = block(resid)", "block(resid)")], "skip the blocks"),
    ("DemoTransformer", [("resid = self.embed(tokens) + self.pos_embed(tokens)",
                          "embedded = self.embed(tokens) + self.pos_embed(tokens)\n        resid = embedded"),
                         ("resid = block(resid)", "resid = block(embedded)")], "each of your blocks reads the embeddings"),
    ("DemoTransformer", [("        self.ln_final = LayerNorm(cfg)\n", "")], "missing parameter `ln_final.w`"),
]

# Right answers written differently: the graders must accept them.
ALSO_RIGHT = [
    ("LayerNorm", [("centred.pow(2).mean(dim=-1, keepdim=True)", "x.var(dim=-1, keepdim=True, unbiased=False)")]),
    ("LayerNorm", [("centred / (variance + self.cfg.layer_norm_eps).sqrt() * self.w + self.b",
                    "F.layer_norm(x, (self.cfg.d_model,), self.w, self.b, self.cfg.layer_norm_eps)")]),
    ("apply_causal_mask", [('float("-inf")', "-1e5")]),  # a large negative number, as ARENA does
    ("apply_causal_mask", [('attn_scores.masked_fill(future, float("-inf"))', 'torch.where(future, float("-inf"), attn_scores)')]),
    ("Embed", [("self.W_E[tokens]", "F.one_hot(tokens, self.cfg.d_vocab).float() @ self.W_E")]),
    ("PosEmbed", [('einops.repeat(self.W_pos[:seq_len], "pos d_model -> batch pos d_model", batch=batch)',
                   "self.W_pos[:seq_len].expand(batch, -1, -1)")]),
    # Loops over heads instead of einsum, for the queries, keys, values and the output.
    ("Attention", [(f"{qkv} = einops.einsum(x, self.W_{qkv.upper()}, per_head)",
                    f"{qkv} = torch.stack([x @ self.W_{qkv.upper()}[h] for h in range(self.cfg.n_heads)], dim=2)")
                   for qkv in "qkv"] + [
                   ('out = einops.einsum(\n            z, self.W_O, "batch query_pos n_heads d_head, n_heads d_head d_model -> '
                    'batch query_pos d_model"\n        )',
                    "out = sum(z[:, :, h] @ self.W_O[h] for h in range(self.cfg.n_heads))")]),
    ("MLP", [("F.gelu(pre)", "pre * 0.5 * (1 + torch.erf(pre / math.sqrt(2)))")]),  # the exact GELU, by erf
    ("Unembed", [('einops.einsum(x, self.W_U, "batch pos d_model, d_model d_vocab -> batch pos d_vocab")', "x @ self.W_U")]),
    ("Attention", [("apply_causal_mask(attn_scores / math.sqrt(self.cfg.d_head))",
                    "apply_causal_mask(attn_scores) / math.sqrt(self.cfg.d_head)")]),
    ("MLP", [("F.gelu(pre)", "nn.GELU()(pre)")]),
]


def test_hidden_tests_catch_code_that_assumes_d_head_is_d_model_over_n_heads(solution):
    assumes = edited_solution(solution, "Attention", [("self.cfg.d_head", "(self.cfg.d_model // self.cfg.n_heads)")])
    exercise = CHAPTER.exercises["Attention"]
    assert exercise.run(assumes, exercise.variants[:1]).verdict is Verdict.PASS  # the visible test
    assert exercise.run(assumes).verdict is Verdict.FAIL  # with the hidden ones


def test_a_mistake_in_the_models_own_attention_is_named_there_and_not_blamed_on_the_mask(solution):
    """A softmax over the queries also lets later positions change earlier ones: the
    model's grader names the Attention's softmax, not a missing causal mask."""
    model = edited_solution(solution, "Attention", [("softmax(dim=-1)", "softmax(dim=-2)")],
                            used_by=("TransformerBlock", "DemoTransformer"))
    result = CHAPTER.exercises["DemoTransformer"].run(model)
    assert result.verdict is Verdict.FAIL
    assert "in your Attention (blocks[0].attn): you took the softmax over the query axis" in result.message, summary(result)


# Random configurations, d_head free of d_model / n_heads; every piece's grader is run on each.
configurations = st.builds(
    TransformerConfig, n_layers=st.integers(1, 2), d_model=st.integers(2, 12), n_heads=st.integers(1, 4),
    d_head=st.integers(1, 7), d_vocab=st.integers(2, 30), n_ctx=st.integers(2, 9), d_mlp=st.integers(1, 16),
)
FEW_EXAMPLES = settings(max_examples=8, derandomize=True, deadline=None)


@FEW_EXAMPLES
@given(cfg=configurations)
def test_the_solution_passes_every_grader_in_any_configuration(solution, cfg):
    for name, exercise in CHAPTER.exercises.items():
        result = exercise.run(solution.namespace[name], [{"config": cfg}])
        assert result.verdict is Verdict.PASS, (cfg, summary(result))


@FEW_EXAMPLES
@given(cfg=configurations.filter(lambda cfg: cfg.n_heads > 1 and cfg.d_head != cfg.d_model // cfg.n_heads >= 2))
def test_attention_scaled_by_d_model_over_n_heads_fails_wherever_d_head_differs(solution, cfg):
    """(With one head, sqrt(d_model // n_heads) is sqrt(d_model), and with d_model // n_heads = 1 no scaling at all:
    mistakes of their own.)"""
    assumes = edited_solution(solution, "Attention", [("math.sqrt(self.cfg.d_head)", "math.sqrt(self.cfg.d_model // self.cfg.n_heads)")])
    result = CHAPTER.exercises["Attention"].run(assumes, [{"config": cfg}])
    assert result.verdict is Verdict.FAIL
    assert f"d_head = {cfg.d_head}, unlike d_model / n_heads" in result.message, (cfg, summary(result))


def test_each_exercise_forbids_its_equivalent_in_the_course_model():
    """`toy_models.model` holds the same pieces, and a notebook can import it: `mi-course
    grade` refuses graded code that is, inherits from, wraps or calls one of them."""
    references = course_references(CHAPTER)
    for name in CHAPTER.exercises:
        equivalent = "Transformer" if name == "DemoTransformer" else name
        assert f"toy_models.model:{equivalent}" in references[name], name
    # ...and those of the pieces it is built from, which it may not borrow from the course either
    assert {f"toy_models.model:{name}" for name in ("LayerNorm", "Attention", "MLP", "apply_causal_mask")} <= set(
        references["TransformerBlock"])
    assert "toy_models.model:Attention" not in references["LayerNorm"]


def test_failure_messages_show_shapes_and_the_first_difference():
    with pytest.raises(GraderFailure, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        compare_tensors(torch.zeros(3, 2), torch.zeros(2, 3), what="x")
    actual = torch.zeros(2, 3)
    actual[1, 2] = 0.5
    with pytest.raises(GraderFailure, match=r"1 of 6 entries differ; the first, at \[1, 2\], should be 0 and is 0\.5"):
        compare_tensors(actual, torch.zeros(2, 3), what="x", mistakes=[(lambda a: False, "never")])
    with pytest.raises(GraderFailure, match=r"Likely mistake: doubled"):
        compare_tensors(2 * torch.ones(2), torch.ones(2), what="x", mistakes=[(lambda a: (a == 2).all(), "doubled")])
    with pytest.raises(GraderFailure, match="forget to `return`"):
        compare_tensors(None, torch.zeros(2), what="x")


def test_check_prints_a_verdict_and_raises_only_under_nbgrader(solution, capsys, monkeypatch):
    check = make_check("00_transformer_from_scratch")
    stub = edited_solution(solution, "MLP", [("post = self.hook_post(F.gelu(pre))", "raise NotImplementedError()")])

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert check(solution.namespace["MLP"]) is None
    assert check(stub) is None
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "PASS: MLP (1/1 points)"
    assert printed[1] == "NOT ATTEMPTED: MLP (0/1 points)"
    assert "Hint:" in printed[-1]

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    check(solution.namespace["MLP"], seed=1, config="odd_shapes")
    with pytest.raises(ExerciseNotPassed, match="NOT ATTEMPTED: MLP"):
        check(stub)


def test_loading_a_notebook_runs_around_errors_magics_and_skipped_cells(tmp_path):
    path = tmp_path / "00_transformer_from_scratch.ipynb"
    skipped = code("raise SystemExit('a skipped cell ran')")
    skipped.metadata["tags"] = ["skip-when-grading"]
    write(notebook([
        code("%matplotlib inline\nimport math\n!echo hello"),
        code("1 / 0"),
        skipped,
        graded_test("raise RuntimeError('a graded test cell ran')", grade_id="test", points=1),
        code("%%time\nroot = math.sqrt(4)"),
    ]), path)
    submission = load_submission(path)
    assert submission.chapter == "00_transformer_from_scratch"
    assert submission.namespace["root"] == 2
    assert [(error.cell, error.error) for error in submission.cell_errors] == [(1, "ZeroDivisionError: division by zero")]


def test_pytest_graders_passes_the_solution_notebook():
    run = subprocess.run([sys.executable, "-m", "pytest", "graders", "-q", "-p", "no:cacheprovider",
                          "--submission", str(SOLUTION)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(CHAPTER.exercises)} passed" in run.stdout


def test_the_solution_notebook_runs_top_to_bottom(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    # The training cell is the notebook's one long cell: a few steps prove that it runs.
    (parameters,) = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    nb.cells.insert(parameters + 1, nbformat.v4.new_code_cell("TRAIN_STEPS = 12\nEVAL_EVERY = 5"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))
    assert printed.count("PASS: ") == sum(len(exercise.variants) for exercise in CHAPTER.exercises.values())
    assert "Your DemoTransformer reproduces the shipped model's logits." in printed
