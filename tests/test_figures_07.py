"""Chapter 07's prose and figures, held to what its own cells compute on code-2l and its
shipped transcoders (tests/chapter_cells.py runs them, the references standing in for
the exercises)."""

import pytest
from chapter_cells import run_cells
from prose_figures import Prose

from toy_models.attribution import correlation_and_slope

PROSE = Prose("07_attribution_graphs")
NOT_MEASURED: dict[str, str] = {}  # the prose quotes no figure but those below
DIRECT = PROSE.quote("the direct edges predict the measured changes with r = {:.2f}, but with a slope of only {:.2f}")
HELD_LAST_LAYER = PROSE.quote("layer 1's features move the logit exactly as their edges say (r = {:.2f}, slope {:.2f})")
HELD_FIRST_LAYER = PROSE.quote("Layer 0's features still stray (r = {:.2f}, slope {:.2f})")


@pytest.fixture(scope="module")
def chapter():
    """Every cell of the chapter, the interventions included."""
    return run_cells("07_attribution_graphs", through="held = intervention_experiment(")


def by_layer(results, layer: int) -> tuple[float, float]:
    here = results.layer == layer
    return correlation_and_slope(results.direct[here], results.measured[here])


def test_the_replacement_model_is_exact_on_its_prompt_and_wrong_on_another(chapter):
    """"The replacement model is exact on its own prompt, to float precision, and wrong as
    soon as the prompt changes." """
    assert max(chapter["exactness"]) < 1e-4  # on every one of the chapter's prompts
    assert sorted(chapter["drift"])[len(chapter["drift"]) // 2] > 0.05


def test_the_learners_attributions_are_the_graphs_logit_row(chapter):
    assert chapter["agree"] < 1e-4


def test_pruning_lowers_both_scores(chapter):
    """"After pruning, the features it drops count as errors too, so both fall." """
    full, after = chapter["full"], chapter["after"]
    assert after.replacement < full.replacement and after.completeness < full.completeness


def test_the_strongest_features_ablation_moves_the_logit_the_way_its_edge_says(chapter):
    """Section 5's first ablation: the sign its direct edge predicts, in the real model."""
    index = chapter["index"]
    assert chapter["measured"] * chapter["logit_row"][index].item() < 0


def test_the_direct_edges_predict_the_interventions(chapter):
    results = chapter["results"]
    assert len(results.measured) >= 50  # the bar: at least 50 interventions
    r, slope = correlation_and_slope(results.direct, results.measured)
    assert r >= 0.8
    DIRECT.holds(r, slope)


def test_holding_the_final_layernorm_makes_layer_1s_edges_exact(chapter):
    held = chapter["held"]
    HELD_LAST_LAYER.holds(*by_layer(held, 1))
    HELD_FIRST_LAYER.holds(*by_layer(held, 0))


def test_every_number_in_the_prose_is_measured_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
