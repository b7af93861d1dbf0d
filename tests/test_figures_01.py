"""Chapter 01's prose quotes figures of the shipped code-2l, in words: each is computed here."""

import pytest
import torch
from chapter_cells import run_cells
from prose_figures import Prose

from solutions.three_buckets import bracket_depth, closing_paren_accuracy
from toy_models import load_pretrained
from toy_models.data import load_python_corpus

PROSE = Prose("01_three_buckets")
CLOSES = PROSE.quote("The model closes about {} of the parentheses")
OUTSIDE = PROSE.quote("most bytes are outside brackets (about {} in 6, printed above)")

NOT_MEASURED: dict[str, str] = {}  # the prose quotes no other number


def in_words(fraction: float) -> str:
    """The simple fraction nearest to ``fraction``, as the prose writes it."""
    words = {1 / 4: "a quarter", 1 / 3: "a third", 1 / 2: "half", 2 / 3: "two thirds", 3 / 4: "three quarters"}
    return words[min(words, key=lambda simple: abs(simple - fraction))]


@pytest.fixture(scope="module")
def tokens():
    """The notebook's 128 validation windows of 128 bytes."""
    corpus = load_python_corpus("validation")
    starts = torch.randint(0, len(corpus) - 128, (128,), generator=torch.Generator().manual_seed(0))
    return torch.stack([corpus[start : start + 128] for start in starts])


def test_the_model_closes_about_half_of_the_parentheses(tokens):
    model = load_pretrained("code-2l").requires_grad_(False)
    CLOSES.holds(in_words(closing_paren_accuracy(model(tokens), tokens).item()))


def test_most_bytes_are_outside_brackets(tokens):
    OUTSIDE.holds(round(6 * (bracket_depth(tokens) == 0).float().mean().item()))


# --- the figures' captions, asserted on what the chapter's own cells compute ------------

@pytest.fixture(scope="module")
def chapter():
    """The namespace of the chapter's code cells, run through the 'is a space' probe."""
    return run_cells("01_three_buckets", through="space_labels = (tokens")


def test_the_probe_plot_shows_what_its_text_says(chapter):
    """"The embeddings know only the current byte, so a probe there barely beats the
    majority baseline, on either model, and the untrained model's later layers add
    nothing. After each trained layer, decodability rises above the baseline."
    """
    trained, untrained, majority = chapter["trained_accuracy"], chapter["random_accuracy"], chapter["majority"]
    assert abs(trained[0] - majority) < 0.02 and abs(untrained[0] - majority) < 0.02, (trained, untrained, majority)
    assert max(untrained[1:]) <= untrained[0] + 0.005, untrained
    assert majority < trained[0] < trained[1] < trained[2], (trained, majority)


def test_steering_along_the_probe_moves_the_behaviour_both_ways_and_a_random_direction_only_degrades_it(chapter):
    """"When steered along (the plot above), [it] drives the behaviour from almost never to
    almost always closing (a random direction steered as hard only degrades it)."
    """
    clean, alphas = chapter["clean_accuracy"], chapter["alphas"]
    along, random = dict(zip(alphas, chapter["steered"])), dict(zip(alphas, chapter["steered_random"]))
    assert along[min(alphas)] < 0.05 and along[max(alphas)] > 0.95, along
    assert max(random.values()) < clean + 0.05 and max(random[min(alphas)], random[max(alphas)]) < clean - 0.2, random


def test_the_perfect_probe_barely_matters_and_the_weak_one_matters_more(chapter):
    """"A near-perfect probe whose direction barely matters to this behaviour; a probe that
    beats its baseline by only a few points, whose direction matters more when ablated
    [...] ablating the depth direction removes only part of the behaviour."
    """
    ablated = {name: chapter["accuracy_with"](chapter["site"], lambda r, d=chapter[f"{name}_direction"]:
                                              chapter["ablate_direction"](r, d)) for name in ("space", "depth")}
    clean = chapter["clean_accuracy"]
    assert chapter["space_accuracy"] > 0.99 and abs(ablated["space"] - clean) < 0.05, (chapter["space_accuracy"], ablated)
    assert 0 < chapter["trained_accuracy"][1] - chapter["majority"] < 0.06
    assert clean - ablated["depth"] > 2 * abs(clean - ablated["space"]) and ablated["depth"] > 0.25 * clean, ablated


def test_every_number_in_the_prose_is_computed_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
