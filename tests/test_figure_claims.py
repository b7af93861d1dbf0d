"""Each figure a caption describes shows what the caption says: the claim is asserted on
the data the figure plots, computed by the same functions the chapter's cell calls
(the references standing in for the learner's exercises).

The prose figures (numbers quoted in the text) are in tests/test_figures_NN.py; these
are the claims about shapes: a diagonal that dominates, a plateau then a drop, a phase
that never appears in a column. The claims of chapters 03 and 05 sit beside their prose
figures (tests/test_figures_03.py, tests/test_figures_05.py), whose set-up they share;
chapter 05's are asserted on the namespace of the chapter's own cells
(tests/chapter_cells.py).
"""

import dataclasses
import math

import pytest
import torch
from transformer_lens import FactoredMatrix

from solutions.induction_heads import full_ov_circuit, top1_copying_accuracy
from solutions.superposition_saes import feature_dimensionality, importance_weighted_loss
from toy_models import load_pretrained
from toy_models import superposition as sp
from toy_models.metrics import induction_scores, positional_pattern
from toy_models.model import Transformer, next_token_loss
from toy_models.plots import symmetric_limits
from toy_models.train import (
    INDUCTION_LIVE,
    INDUCTION_SEQ_LEN,
    TRANSFORMER_JOBS,
    TrainingDiverged,
    induction_batch,
    train_transformer,
)

SEQ_LEN = INDUCTION_SEQ_LEN


@pytest.fixture(scope="module")
def induction_model():
    return load_pretrained("induction-2l").requires_grad_(False)


# --- chapter 02: the circuits of the shipped induction-2l --------------------------------

def test_the_ov_circuit_of_head_1_0_shows_its_copying_diagonal(induction_model):
    """"If the diagonal dominates, the head is a copying head": in the plotted corner
    (60 tokens), with colour limits from the data, the diagonal is the largest entry of
    nearly every row and at least half as saturated as the most extreme entry, so it
    stands out; the fixed limits of ±30 the figure once had drew it white on white."""
    plotted = full_ov_circuit(induction_model, 1, 0).AB[:60, :60]
    _, limit = symmetric_limits(plotted)
    diagonal = plotted.diag()
    assert (plotted.argmax(dim=-1) == torch.arange(60)).float().mean() >= 0.9
    assert diagonal.mean() >= 0.5 * limit, (diagonal.mean(), limit)
    off_diagonal = plotted[~torch.eye(60, dtype=torch.bool)]
    assert diagonal.mean() > 3 * off_diagonal.std(), (diagonal.mean(), off_diagonal.std())


def test_head_0_0_by_position_alone_looks_at_the_previous_position_in_the_first_block(induction_model):
    """"For query positions 1 to 24 it puts nearly all of each query's attention just
    below the diagonal ... In the repeat, position alone sends it mostly to the first two
    positions", with the LayerNorm scale of the chapter's batch."""
    tokens = induction_batch(torch.Generator().manual_seed(0), 64, induction_model.cfg.d_vocab)
    _, cache = induction_model.run_with_cache(tokens)
    pattern = positional_pattern(induction_model, cache["blocks.0.ln1.hook_scale"].mean(dim=0), 0, 0)
    first_block = torch.arange(1, SEQ_LEN + 1)
    assert (pattern[first_block].argmax(dim=-1) == first_block - 1).all()
    assert pattern[first_block, first_block - 1].min() >= 0.8
    repeat = torch.arange(SEQ_LEN + 1, 2 * SEQ_LEN + 1)
    assert (pattern[repeat].argmax(dim=-1) <= 1).float().mean() >= 0.8


def test_head_1_0_reading_head_0_0_matches_each_token_to_itself(induction_model):
    """"Each token's query should match best the key of the position after that token:
    the diagonal of that K-composition QK circuit", visible in the plotted corner."""
    model = induction_model
    attn0, attn1 = model.blocks[0].attn, model.blocks[1].attn
    W_E = model.embed.W_E
    composed = W_E @ FactoredMatrix(attn1.W_Q[0], attn1.W_K[0].T) @ (W_E @ FactoredMatrix(attn0.W_V[0], attn0.W_O[0])).T
    assert top1_copying_accuracy(composed) >= 0.9
    plotted = composed.AB[:60, :60]
    _, limit = symmetric_limits(plotted)
    assert plotted.diag().mean() >= 0.3 * limit, (plotted.diag().mean(), limit)


# --- chapters 00 and 02: the live phase change -----------------------------------------

def watch(recipe, every: int = 25) -> dict[int, tuple[float, torch.Tensor]]:
    """{step: (held-out loss on the repeat, induction scores [layer, head])}, as the
    chapters' live cells measure them."""
    held_out = induction_batch(torch.Generator().manual_seed(12345), 64, recipe.model.d_vocab)
    log = {}

    def on_step(step, model, loss):
        if step % every == 0 or step == recipe.steps - 1:
            with torch.no_grad():
                per_token = next_token_loss(model(held_out), held_out, per_token=True)
            log[step] = (per_token[:, -(SEQ_LEN - 1):].mean().item(), induction_scores(model, held_out, SEQ_LEN))

    train_transformer(recipe, TRANSFORMER_JOBS["induction-2l"].batches(recipe), on_step=on_step, progress=False)
    return log


def test_the_live_run_shows_a_plateau_then_the_induction_heads_forming():
    """Chapters 00 and 02: "For the first hundred-odd steps, nothing ... Then ... the loss
    on the repeat collapses ... both layer-1 heads' induction scores shoot up past 0.8,
    together", while layer 0's stay near 0."""
    log = watch(INDUCTION_LIVE)
    guessing = math.log(INDUCTION_LIVE.model.d_vocab - 1)
    plateau_loss, plateau_scores = log[100]
    assert plateau_loss > 0.9 * guessing and plateau_scores.max() < 0.1, (plateau_loss, plateau_scores)
    final_loss, final_scores = log[INDUCTION_LIVE.steps - 1]
    assert final_loss < 0.25 * guessing, final_loss
    assert final_scores[1].min() > 0.8 and final_scores[0].max() < 0.1, final_scores


@pytest.mark.parametrize("seed", [1, 2])
def test_the_phase_change_comes_from_other_initial_weights_too(seed):
    """Chapter 00 trains the learner's own `DemoTransformer`, whose parameters are drawn in
    the learner's order, so its initial weights are not the recipe's: the plateau, the
    collapse of the loss on the repeat and a layer-1 induction head must not depend on them."""
    recipe = dataclasses.replace(INDUCTION_LIVE, seed=seed)
    log = watch(recipe, every=50)
    guessing = math.log(recipe.model.d_vocab - 1)
    plateau_loss, plateau_scores = log[100]
    assert plateau_loss > 0.9 * guessing and plateau_scores.max() < 0.1, (plateau_loss, plateau_scores)
    final_loss, final_scores = log[recipe.steps - 1]
    assert final_loss < 0.5 * guessing and final_scores[1].max() > 0.5 and final_scores[0].max() < 0.1, (
        final_loss, final_scores)


def test_the_one_layer_control_never_forms_an_induction_head():
    """Chapter 02: the control's "induction scores stay low and its loss on the repeat
    stays high"."""
    one_layer = dataclasses.replace(INDUCTION_LIVE, model=dataclasses.replace(INDUCTION_LIVE.model, n_layers=1))
    log = watch(one_layer)
    guessing = math.log(one_layer.model.d_vocab - 1)
    assert max(scores.max().item() for _, scores in log.values()) < 0.3
    assert log[one_layer.steps - 1][0] > 0.5 * guessing


# --- the training loop protects the learner ---------------------------------------------

class BrokenMask(Transformer):
    """A learner's model whose causal mask also hides the diagonal (`triu(diagonal=0)`):
    position 0 then has no key at all, and its softmax is NaN from the first step."""

    def __init__(self, cfg):
        super().__init__(cfg)
        for block in self.blocks:
            block.attn.hook_attn_scores.register_forward_hook(self.hide_the_diagonal)

    @staticmethod
    def hide_the_diagonal(module, inputs, scores):
        query_len, key_len = scores.shape[-2:]
        return scores.masked_fill(torch.ones(query_len, key_len, dtype=torch.bool).triu(0), float("-inf"))


def test_a_nan_loss_stops_training_and_names_the_likely_pieces():
    recipe = dataclasses.replace(INDUCTION_LIVE, steps=3)
    with pytest.raises(TrainingDiverged, match=r"step 0: the loss is nan.*`apply_causal_mask`.*LayerNorm"):
        train_transformer(recipe, TRANSFORMER_JOBS["induction-2l"].batches(recipe), build=BrokenMask, progress=False)


def test_training_runs_on_one_thread_and_restores_the_caller_s_setting():
    recipe = dataclasses.replace(INDUCTION_LIVE, steps=2)
    threads_seen = []
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_transformer(recipe, TRANSFORMER_JOBS["induction-2l"].batches(recipe), progress=False,
                          on_step=lambda step, model, loss: threads_seen.append(torch.get_num_threads()))
        assert threads_seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


# --- chapter 04: superposition ----------------------------------------------------------

@pytest.fixture(scope="module")
def sweep():
    return load_pretrained("superposition-100-20").W.detach()


def test_the_dense_end_spends_every_dimension_but_on_no_feature_alone(sweep):
    """"At the dense end ... ||W||_F² is 20 ... none with a column norm near 1, so the dots
    at the left (one per feature whose norm is above one half) all lie below 1/2"."""
    dense = sweep[:1]
    assert sp.dimensions_per_feature(dense).item() == pytest.approx(1.0, abs=0.01)
    norms = dense.norm(dim=1)
    assert norms.max() < 0.8 and (norms > 0.5).sum() > dense.shape[1]  # more dots than dimensions
    assert feature_dimensionality(dense)[norms > 0.5].max() < 0.5


def test_the_dimensionality_sticks_at_one_half_with_every_feature_in_an_antipodal_pair(sweep):
    """"The curve falls and sticks at 1/2 over a range of sparsities: there, every
    represented feature is half of an antipodal pair, and its dot sits on 1/2"; then it
    "falls on"."""
    per_feature = sp.dimensions_per_feature(sweep)
    sticky = ((per_feature - 0.5).abs() < 0.05).nonzero().flatten().tolist()
    assert len(sticky) >= 3 and sticky == list(range(sticky[0], sticky[-1] + 1)), per_feature
    assert per_feature[sticky[-1] + 1:].max() < 0.45
    for instance in sticky:
        represented = sweep[instance].norm(dim=0) > 0.5
        dims = feature_dimensionality(sweep[instance:instance + 1])[0][represented]
        assert ((dims - 0.5).abs() < 0.05).all(), (instance, dims)
        paired = {i for pair in sp.antipodal_pairs(sweep[instance]) for i in pair}
        assert paired == set(represented.nonzero().flatten().tolist()), instance


@pytest.fixture(scope="module")
def phase():
    return sp.phases(sp.train_phase_diagram(importance_weighted_loss))  # [density, ratio]


def test_dense_features_are_never_antipodal_and_the_more_important_one_is_kept(phase):
    dropped, feature_1_only, antipodal, mixed = range(len(sp.PHASE_NAMES))
    dense = phase[0]
    assert not (dense == antipodal).any(), dense
    clearly_less, clearly_more = sp.PHASE_RATIOS < 0.5, sp.PHASE_RATIOS > 2
    assert (dense[clearly_less] == dropped).all() and (dense[clearly_more] == feature_1_only).all(), dense
    assert ((sp.PHASE_RATIOS[dense == mixed] - 1).abs() < 0.5).all(), dense  # mixed only where nearly equal


def test_sparser_features_share_the_dimension_antipodally(phase):
    """"One step sparser, the two share the dimension antipodally in a band around equal
    importance; in the sparser half of the grid most cells store both, antipodally, even
    where feature 1 is ten times less important than feature 0"."""
    antipodal = sp.PHASE_NAMES.index("both, antipodal")
    next_column = phase[1] == antipodal
    assert next_column.any() and (sp.PHASE_RATIOS[next_column].log10().abs() < 0.5).all(), phase[1]
    sparse_half = phase[len(sp.PHASE_DENSITIES) // 2:]
    assert (sparse_half == antipodal).float().mean() > 0.5, sparse_half
    assert (sparse_half[:, 0] == antipodal).all() and sp.PHASE_RATIOS[0] == pytest.approx(0.1), sparse_half
