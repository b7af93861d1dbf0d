"""Chapter 01's prose quotes figures of the shipped code-2l, in words: each is computed here."""

import pytest
import torch
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


def test_every_number_in_the_prose_is_computed_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
