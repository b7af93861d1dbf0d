"""What chapter 00's prose says about the shipped `induction-2l`, computed as the notebook
computes it (the same batches, seeds and metrics).

What the learner's own training run gives (its losses, its induction scores, how long it
takes) depends on their code and their CPU: the notebook prints it, and the prose only
refers to what is printed.
"""

import math

import jupytext
import pytest
import torch
from prose_figures import SOLUTIONS_DIR, Prose

from toy_models import load_pretrained
from toy_models.metrics import induction_scores
from toy_models.model import next_token_loss
from toy_models.train import INDUCTION_LIVE, INDUCTION_SEQ_LEN, induction_batch

CHAPTER = "00_transformer_from_scratch"
PROSE = Prose(CHAPTER)
BLOCK_LENGTH = PROSE.quote("then a random block of {} tokens, then the same block again")
GUESSES_THE_FIRST_BLOCK = PROSE.quote("its loss there, printed below, is about that of guessing, `log(d_vocab - 1)`")
PREDICTS_THE_REPEAT = PROSE.quote("But it predicts the repeat almost perfectly")
SHIPPED_INDUCTION_SCORE = PROSE.quote("the shipped model, trained with 512 tokens for 600 steps, reaches {:.2f} "
                                      "on held-out sequences like these")

# Every decimal number of the prose is a quote above: nothing to explain.
NOT_MEASURED: dict[str, str] = {}


@pytest.fixture(scope="module")
def shipped():
    return load_pretrained("induction-2l")


def test_the_blocks_are_as_long_as_the_data_makes_them():
    BLOCK_LENGTH.holds(INDUCTION_SEQ_LEN)


def test_the_shipped_model_guesses_the_first_block_and_predicts_the_repeat(shipped):
    """On the notebook's batch (8 sequences, seed 0): "about that of guessing" is within
    10% of log(d_vocab - 1), and "almost perfectly" is a loss below 5% of it."""
    tokens = induction_batch(torch.Generator().manual_seed(0), 8, shipped.cfg.d_vocab)
    with torch.no_grad():
        loss = next_token_loss(shipped(tokens), tokens, per_token=True)
    guessing = math.log(shipped.cfg.d_vocab - 1)
    first_block, repeat = loss[:, :INDUCTION_SEQ_LEN].mean().item(), loss[:, INDUCTION_SEQ_LEN:].mean().item()
    GUESSES_THE_FIRST_BLOCK.holds()
    assert abs(first_block - guessing) < 0.1 * guessing, (first_block, guessing)
    PREDICTS_THE_REPEAT.holds()
    assert repeat < 0.05 * guessing, (repeat, guessing)


def test_the_shipped_model_s_best_layer_1_induction_score(shipped):
    """On sequences drawn as the notebook's held-out ones are (64, seed 12345), in the
    shipped model's vocabulary."""
    held_out = induction_batch(torch.Generator().manual_seed(12345), 64, shipped.cfg.d_vocab)
    SHIPPED_INDUCTION_SCORE.holds(induction_scores(shipped, held_out, INDUCTION_SEQ_LEN)[1].max().item())


def test_the_notebook_trains_as_many_steps_as_the_live_recipe():
    """Its parameters cell says so ("as many as the live recipe, INDUCTION_LIVE")."""
    cells = jupytext.read(SOLUTIONS_DIR / f"{CHAPTER}.py", fmt="py:percent").cells
    (parameters,) = [cell.source for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    namespace: dict = {}
    exec(parameters, namespace)  # noqa: S102 - the chapter's own two assignments
    assert namespace["TRAIN_STEPS"] == INDUCTION_LIVE.steps


def test_every_number_in_the_prose_is_computed_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
