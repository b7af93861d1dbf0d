"""Chapter 02's prose quotes figures of the shipped induction-2l: each is computed here."""

import math

import pytest
import torch
from prose_figures import Prose
from transformer_lens import FactoredMatrix

from solutions.induction_heads import (
    direct_logit_attribution,
    head_ablation_losses,
    k_composition_score,
    previous_token_scores,
)
from toy_models import load_pretrained
from toy_models.model import next_token_loss
from toy_models.train import INDUCTION_SEQ_LEN, induction_batch

PROSE = Prose("02_induction_heads")
PREVIOUS_TOKEN = PROSE.quote("(about {:.2f} at positions 1 to 24)")
ABLATION = PROSE.quote("the loss on the repeat goes from about {:.1f} to {:.1f} (zero ablation) or {:.1f} "
                       "(mean ablation); guessing is {:.1f}")
DIRECT_LOGITS = PROSE.quote("The two induction heads each add about {}-{} to the correct token's logit")
COMPOSITION = PROSE.quote("about {} as much as random matrices do (about {:.2f} against a baseline of {:.3f})")
COMPOSITION_OF_0_1 = PROSE.quote("Note that head 0.1 is well above the baseline too (about {:.2f})")

NOT_MEASURED = {
    "Head 0.0": "a head's name (layer.head)",
    "head 0.0": "a head's name",
    "head 0.1": "a head's name",
    "heads 1.0 and 1.1": "heads' names",
    "W_OV^{0.0}": "a head's name",
    "shoot up past 0.8": "a threshold the live run (INDUCTION_LIVE) crosses: tests/test_figure_claims.py trains it",
    "ends above 0.9": "the threshold of an induction head; the shipped checkpoint is held to it by "
                      "tests/test_checkpoints.py",
}


@pytest.fixture(scope="module")
def model():
    return load_pretrained("induction-2l").requires_grad_(False)


@pytest.fixture(scope="module")
def tokens(model):
    return induction_batch(torch.Generator().manual_seed(0), 64, model.cfg.d_vocab)  # the notebook's batch


@pytest.fixture(scope="module")
def cache(model, tokens):
    return model.run_with_cache(tokens)


def test_head_0_0_attends_to_the_previous_token_in_the_first_block(cache):
    first_block = INDUCTION_SEQ_LEN + 1
    PREVIOUS_TOKEN.holds(previous_token_scores(cache[1]["pattern", 0][:, :, :first_block, :first_block])[0])


def test_ablating_head_0_0_destroys_in_context_copying(model, tokens, cache):
    logits, _ = cache
    repeat = slice(-(INDUCTION_SEQ_LEN - 1), None)
    clean = next_token_loss(logits, tokens, per_token=True)[:, repeat].mean()
    zero = head_ablation_losses(model, tokens, INDUCTION_SEQ_LEN, "zero")[0, 0]
    mean = head_ablation_losses(model, tokens, INDUCTION_SEQ_LEN, "mean")[0, 0]
    ABLATION.holds(clean, zero, mean, math.log(model.cfg.d_vocab))


def test_the_induction_heads_write_the_answer(model, tokens, cache):
    dla = direct_logit_attribution(model, cache[1], tokens)[..., -(INDUCTION_SEQ_LEN - 1):].mean(dim=(-2, -1))
    DIRECT_LOGITS.holds(math.floor(dla[1].min()), math.ceil(dla[1].max()))


def test_k_composition_against_its_random_baseline(model):
    def qk(layer, head):
        attn = model.blocks[layer].attn
        return FactoredMatrix(attn.W_Q[head], attn.W_K[head].T)

    def ov(layer, head):
        attn = model.blocks[layer].attn
        return FactoredMatrix(attn.W_V[head], attn.W_O[head])

    generator = torch.Generator().manual_seed(0)  # the notebook's baseline, pair for pair

    def random_low_rank():
        return (torch.randn(model.cfg.d_model, model.cfg.d_head, generator=generator)
                @ torch.randn(model.cfg.d_head, model.cfg.d_model, generator=generator))

    baseline = torch.tensor([k_composition_score(random_low_rank(), random_low_rank()) for _ in range(200)]).mean()
    # the prose quotes each layer-0 head's score with both layer-1 heads, on average
    of_0_0, of_0_1 = (sum(k_composition_score(ov(0, h0), qk(1, h1)) for h1 in range(2)) / 2 for h0 in range(2))
    COMPOSITION.holds({2: "twice"}.get(round(float(of_0_0 / baseline)), f"{of_0_0 / baseline:.0f} times"),
                      of_0_0, baseline)
    COMPOSITION_OF_0_1.holds(of_0_1)


def test_an_edited_figure_fails_and_names_its_sentence():
    """What `mi-course train induction-2l` would do to the prose, if the head got weaker."""
    prose = Prose("02_induction_heads")
    prose.text = prose.text.replace("(about 0.97 at positions", "(about 0.95 at positions")
    with pytest.raises(AssertionError, match=r"gives '\(about 0.97 at positions 1 to 24\)', but the prose says:\n.*"
                                             r"first block \(about 0.95 at positions 1 to 24\)"):
        prose.quote(PREVIOUS_TOKEN.template).holds(0.97)
    prose.text += " A new figure, 0.42, typed in."
    with pytest.raises(AssertionError, match=r"'0.42' in .*A new figure, 0.42, typed in"):
        prose.assert_every_number_explained(NOT_MEASURED)


def test_every_number_in_the_prose_is_computed_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
