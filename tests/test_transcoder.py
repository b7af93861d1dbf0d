"""The transcoders of chapter 07: the shipped ones stand in for code-2l's MLPs well enough,
their features are TopK-sparse, their recipe trains, and splicing one in changes the model
where and how it should."""

import dataclasses

import pytest
import torch

from toy_models import load_pretrained
from toy_models.checkpoints import checkpoint_dir, read_description
from toy_models.data import load_python_corpus
from toy_models.sae import collect_activations_at, splice_hooks, validation_windows
from toy_models.threads import one_thread
from toy_models.train import train
from toy_models.transcoder import (
    TRANSCODER_RECIPES,
    evaluate_transcoder,
    load_transcoder,
    load_transcoders,
    replacement_losses,
    total_variance,
    train_transcoder,
)

SHIPPED = sorted(TRANSCODER_RECIPES)


@pytest.fixture(scope="module")
def model():
    return load_pretrained("code-2l")


@pytest.fixture(scope="module")
def eval_tokens():
    """16 validation windows (2k tokens), other than the ones the recorded metrics used."""
    return validation_windows(16, 128, seed=1)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_transcoder_meets_its_recipe_thresholds_on_validation_text(name, model, eval_tokens):
    recipe = read_description(checkpoint_dir(name))["recipe"]
    transcoder = load_transcoder(name)
    with one_thread():
        metrics = evaluate_transcoder(model, transcoder, eval_tokens)
    assert metrics["fraction_variance_explained"] >= recipe["min_fraction_variance_explained"], metrics
    assert metrics["ce_loss_recovered"] >= recipe["min_ce_loss_recovered"], metrics
    assert metrics["l0"] <= transcoder.cfg.k, metrics


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_transcoder_records_its_recipe_and_metrics(name):
    description = read_description(checkpoint_dir(name))
    recipe = TRANSCODER_RECIPES[name]
    assert description["kind"] == "transcoder"
    assert description["config"] == dataclasses.asdict(recipe.transcoder)
    recorded = description["metrics"]
    assert recorded["fraction_variance_explained"] >= recipe.min_fraction_variance_explained
    assert recorded["ce_loss_recovered"] >= recipe.min_ce_loss_recovered
    assert recorded["dead_fraction"] <= recipe.max_dead_fraction
    assert recorded["n_tokens"] == recipe.n_eval_windows * 128


def test_load_transcoders_gives_one_frozen_transcoder_per_layer(model):
    transcoders = load_transcoders("code-2l")
    assert [t.cfg.layer for t in transcoders] == list(range(model.cfg.n_layers))
    assert all(not t.training and not any(p.requires_grad for p in t.parameters()) for t in transcoders)
    with pytest.raises(ValueError, match="No shipped transcoders for 'ioi-3l'"):
        load_transcoders("ioi-3l")
    with pytest.raises(ValueError, match="not a transcoder"):
        load_transcoder("code-2l-sae")


def test_both_transcoders_at_once_still_recover_most_of_the_loss(model, eval_tokens):
    with one_thread():
        losses = replacement_losses(model, load_transcoders(), eval_tokens)
    assert losses["ce_clean"] < losses["ce_transcoders"] < losses["ce_zero_ablation"]
    assert losses["ce_loss_recovered"] >= 0.8, losses


def test_encode_keeps_exactly_the_k_largest_positive_pre_activations():
    transcoder = load_transcoder(SHIPPED[0])
    mlp_in = torch.randn(200, transcoder.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pre, feature_acts = transcoder.hidden_pre(mlp_in), transcoder.encode(mlp_in)
    k = transcoder.cfg.k
    active = feature_acts != 0
    assert torch.equal(active.sum(dim=-1), (pre > 0).sum(dim=-1).clamp(max=k))
    assert torch.equal(feature_acts[active], pre[active])  # kept values are not shrunk
    kth_largest = pre.topk(k, dim=-1).values[:, -1:]
    assert (pre[active] >= kth_largest.expand_as(pre)[active]).all()


def test_the_recipe_trains_and_the_loss_falls(model):
    cfg = dataclasses.replace(TRANSCODER_RECIPES[SHIPPED[1]].transcoder, d_transcoder=128, k=8)
    mlp_in, mlp_out = collect_activations_at(
        model, load_python_corpus("train"), [cfg.hook_in, cfg.hook_out], 16, progress=False
    )
    transcoder, losses = train_transcoder(
        cfg, mlp_in, mlp_out, steps=60, batch_size=512, lr=4e-3, resample_every=20, progress=False
    )
    # The loss is the share of the MLP output's variance left unexplained.
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    with torch.no_grad():
        unexplained = (transcoder(mlp_in) - mlp_out).pow(2).sum(dim=-1).mean() / total_variance(mlp_out)
    assert unexplained.item() < 0.6
    assert torch.allclose(transcoder.W_dec.norm(dim=-1), torch.ones(cfg.d_transcoder), atol=1e-5)


def test_splicing_puts_the_transcoders_prediction_in_place_of_the_mlp_output(model, eval_tokens):
    transcoder = load_transcoder(SHIPPED[1])
    tokens = eval_tokens[:2]
    hook_in, hook_out = transcoder.cfg.hook_in, transcoder.cfg.hook_out
    seen = {}
    record = [(hook_in, lambda acts, hook: seen.update(mlp_in=acts)), (hook_out, lambda acts, hook: seen.update(mlp_out=acts))]
    with torch.no_grad():
        clean_logits, clean = model.run_with_cache(tokens, names_filter=[hook_in, hook_out])
        spliced_logits = model.run_with_hooks(tokens, fwd_hooks=splice_hooks(transcoder) + record)
    # Up to the MLP nothing changes; what the MLP writes becomes the transcoder's prediction.
    assert torch.equal(seen["mlp_in"], clean[hook_in])
    assert torch.allclose(seen["mlp_out"], transcoder(clean[hook_in]), atol=1e-6)
    assert not torch.allclose(seen["mlp_out"], clean[hook_out], atol=1e-2)
    # The logits move, but the model still predicts mostly the same next bytes.
    assert not torch.allclose(spliced_logits, clean_logits, atol=1e-2)
    agreement = (spliced_logits.argmax(-1) == clean_logits.argmax(-1)).float().mean().item()
    assert agreement >= 0.8


def test_the_training_command_knows_the_transcoders():
    with pytest.raises(ValueError, match="code-2l-transcoder-0, code-2l-transcoder-1"):
        train("no-such-model")
