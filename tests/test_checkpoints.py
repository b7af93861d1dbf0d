"""The shipped checkpoints: they load offline, they are small, they show what the course
needs them to show, and their recipes rebuild them."""

import pytest

from mi_course.cli import main
from toy_models import load_pretrained
from toy_models.checkpoints import SHIPPED_DIR, checkpoint_dir, read_description, read_loss_curve
from toy_models.train import TRANSFORMER_JOBS, train, train_transformer
from toy_models.transcoder import load_transcoder

MAX_CHECKPOINT_BYTES = 5 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()))
def test_checkpoint_is_small_and_loads(name):
    size = sum(f.stat().st_size for f in (SHIPPED_DIR / name).iterdir())
    assert size < MAX_CHECKPOINT_BYTES, f"{name} is {size / 1e6:.1f} MB"
    # A transcoder is one per layer of a model, loaded with its kind's own loader.
    transcoder = read_description(SHIPPED_DIR / name)["kind"] == "transcoder"
    model = load_transcoder(name) if transcoder else load_pretrained(name)
    assert not model.training


@pytest.mark.parametrize("name", sorted(TRANSFORMER_JOBS))
def test_stored_metrics_are_what_the_weights_give(name):
    """The numbers in config.json are measured from these weights, not written by hand."""
    stored = read_description(checkpoint_dir(name))["metrics"]
    measured = TRANSFORMER_JOBS[name].evaluate(load_pretrained(name))
    assert measured == pytest.approx(stored, rel=1e-4, abs=1e-5)


def test_induction_2l_has_an_induction_head():
    metrics = TRANSFORMER_JOBS["induction-2l"].evaluate(load_pretrained("induction-2l"))
    assert metrics["max_layer1_induction_score"] >= 0.9


def test_code_2l_beats_the_unigram_baseline_by_far():
    metrics = TRANSFORMER_JOBS["code-2l"].evaluate(load_pretrained("code-2l"))
    assert metrics["validation_loss"] < 0.6 * metrics["unigram_validation_loss"]


def test_ioi_3l_solves_held_out_templates():
    metrics = TRANSFORMER_JOBS["ioi-3l"].evaluate(load_pretrained("ioi-3l"))
    assert metrics["heldout_io_over_s_accuracy"] >= 0.95
    assert metrics["heldout_mean_logit_diff"] > 0


def test_induction_2l_is_rebuilt_by_its_training_command(tmp_path, capsys):
    assert main(["train", "induction-2l", "--out", str(tmp_path)]) == 0
    assert "max_layer1_induction_score" in capsys.readouterr().out
    rebuilt = read_description(tmp_path)["metrics"]
    shipped = read_description(checkpoint_dir("induction-2l"))["metrics"]
    # Same seed and data; only floating-point summation order (thread count, CPU) may differ.
    assert rebuilt == pytest.approx(shipped, abs=0.02)


@pytest.mark.parametrize("name", ["code-2l", "ioi-3l"])
def test_longer_recipes_reproduce_the_start_of_their_loss_curve(name):
    """Rebuilding these takes minutes (`mi-course train NAME`), too long for every test run;
    the first steps show that the recipe, seed and data stream are the shipped ones."""
    job = TRANSFORMER_JOBS[name]
    _, losses = train_transformer(job.recipe, job.batches(job.recipe), progress=False, steps=20)
    shipped = read_loss_curve(checkpoint_dir(name))[:20]
    assert losses == pytest.approx(shipped, abs=1e-3)


def test_unknown_recipe_lists_the_real_ones():
    with pytest.raises(ValueError, match="No recipe named 'gpt-2'. Recipes: .*code-2l.*superposition-5-2"):
        train("gpt-2")
