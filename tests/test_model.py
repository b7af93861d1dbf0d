"""The from-scratch transformer: checked against Hugging Face's GPT-2 and TransformerLens."""

import pytest
import torch
from transformer_lens import ActivationCache, patching
from transformers import GPT2Config, GPT2LMHeadModel

from toy_models import Transformer, TransformerConfig, from_hf_gpt2, load_pretrained

SMALL = dict(n_layers=2, d_model=32, n_heads=4, d_vocab=50, n_ctx=16, d_mlp=64)


def random_gpt2(seed: int, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = dict(n_layer=2, n_embd=48, n_head=4, vocab_size=97, n_positions=20, bos_token_id=0, eos_token_id=0)
    config.update(overrides)
    model = GPT2LMHeadModel(GPT2Config(**config)).eval()
    # HF initialises biases and LayerNorms to 0 and 1; randomise them so a swapped or
    # dropped bias cannot hide.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "ln" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


@pytest.mark.parametrize("seed, overrides", [(0, {}), (1, {"n_layer": 3, "activation_function": "relu"})])
def test_logits_match_hugging_face_gpt2(seed, overrides):
    hf_model = random_gpt2(seed, **overrides)
    model = from_hf_gpt2(hf_model)
    tokens = torch.randint(0, hf_model.config.vocab_size, (4, hf_model.config.n_positions))
    with torch.no_grad():
        expected = hf_model(tokens).logits
        actual = model(tokens)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_unsupported_gpt2_option_is_refused():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        from_hf_gpt2(random_gpt2(0, scale_attn_by_inverse_layer_idx=True))


def make_model(**overrides) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so attention is far from uniform
        for param in model.parameters():
            param.normal_(std=0.3)
    return model


def test_attention_patterns_are_causal_probability_distributions():
    model = make_model()
    _, cache = model.run_with_cache(torch.randint(0, 50, (3, 16)))
    for layer in range(2):
        pattern = cache["pattern", layer]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 4, 16))
        assert (pattern.triu(diagonal=1) == 0).all(), "attention reached a future position"


def test_future_tokens_do_not_change_earlier_logits():
    model = make_model()
    tokens = torch.randint(0, 50, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :10], model(changed)[:, :10])
        assert not torch.allclose(model(tokens)[:, 10:], model(changed)[:, 10:])


def test_hook_names_follow_transformer_lens():
    model = make_model()
    _, cache = model.run_with_cache(torch.randint(0, 50, (1, 8)))
    assert isinstance(cache, ActivationCache)
    expected = {"hook_embed", "hook_pos_embed", "ln_final.hook_normalized"}
    for layer in range(2):
        expected |= {f"blocks.{layer}.{name}" for name in (
            "hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post",
            "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_pattern",
            "attn.hook_attn_scores", "mlp.hook_pre", "mlp.hook_post", "ln1.hook_normalized",
        )}
    assert expected <= set(cache.keys())
    # The residual stream is the sum of what writes to it.
    torch.testing.assert_close(
        cache["resid_post", 1], cache.decompose_resid(layer=2).sum(0), atol=1e-5, rtol=1e-5
    )


def test_zero_ablating_a_head_through_a_hook_changes_the_output():
    model = make_model()
    tokens = torch.randint(0, 50, (2, 16))

    def zero_head_1(z, hook):
        z[:, :, 1] = 0.0
        return z

    clean = model(tokens)
    ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_head_1)])
    assert (clean - ablated).abs().max() > 1e-3
    # ...and the hook is gone afterwards.
    torch.testing.assert_close(model(tokens), clean)


def test_transformer_lens_patching_agrees_with_a_hand_written_patch():
    model = make_model()
    clean_tokens = torch.randint(0, 50, (2, 12))
    corrupted_tokens = torch.randint(0, 50, (2, 12))
    _, clean_cache = model.run_with_cache(clean_tokens)

    def metric(logits):
        return logits[:, -1, 7].mean()

    results = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)
    assert results.shape == (2, 12)

    def patch_position_5(resid, hook):
        resid[:, 5] = clean_cache["resid_pre", 1][:, 5]
        return resid

    by_hand = model.run_with_hooks(corrupted_tokens, fwd_hooks=[("blocks.1.hook_resid_pre", patch_position_5)])
    torch.testing.assert_close(results[1, 5], metric(by_hand))
    head_results = patching.get_act_patch_attn_head_out_all_pos(model, corrupted_tokens, clean_cache, metric)
    assert head_results.shape == (2, 4)


@pytest.mark.parametrize(
    "overrides",
    [
        {"d_mlp": None},
        {"normalization_type": None},
        {"act_fn": "relu"},
        {"positional_embedding_type": "shortformer"},
        {"tied_embeddings": True},
        {"d_head": 5},
    ],
)
def test_every_configuration_runs_and_trains(overrides):
    model = make_model(**overrides).train()
    tokens = torch.randint(0, 50, (2, 16))
    loss = model(tokens, return_type="loss")
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_tied_embeddings_store_the_embedding_once():
    model = make_model(tied_embeddings=True)
    assert "unembed.W_U" not in model.state_dict()
    torch.testing.assert_close(model.W_U, model.embed.W_E.T)


def test_shortformer_keeps_positions_out_of_the_residual_stream():
    model = make_model(positional_embedding_type="shortformer")
    _, cache = model.run_with_cache(torch.randint(0, 50, (1, 8)))
    torch.testing.assert_close(cache["resid_pre", 0], cache["hook_embed"])


def test_attention_only_model_has_no_mlp_hooks():
    model = make_model(d_mlp=None)
    assert not any("mlp" in name for name in model.hook_dict)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"d_model": 30, "n_heads": 4}, "d_model=30 is not divisible by n_heads=4"),
        ({"n_layers": 0}, "n_layers must be a positive integer"),
        ({"act_fn": "swish"}, "act_fn must be"),
    ],
)
def test_bad_config_names_the_value_and_the_limit(fields, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{**SMALL, **fields})


def test_bad_tokens_are_explained():
    model = make_model()
    with pytest.raises(ValueError, match=r"Token id 50 is outside the vocabulary: ids must lie in \[0, 50\)"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match="Sequence length 17 is longer than the model's context n_ctx=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 4))


def test_unknown_checkpoint_lists_the_real_ones():
    with pytest.raises(ValueError, match="Unknown checkpoint 'gpt-5'. Shipped checkpoints: .*induction-2l"):
        load_pretrained("gpt-5")
