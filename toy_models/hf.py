"""Convert a Hugging Face GPT-2 into this course's `Transformer`.

Two reasons to have it: a test checks our from-scratch model against code nobody here
wrote (a randomly initialised `GPT2LMHeadModel` must give the same logits), and chapters
can study real GPT-2 weights with the same tools when they can be downloaded.
"""

from typing import TYPE_CHECKING

import einops
import torch

from toy_models.model import Transformer, TransformerConfig

if TYPE_CHECKING:  # importing transformers' GPT-2 costs seconds; only the caller needs it
    from transformers import GPT2LMHeadModel


def config_from_hf_gpt2(hf_config) -> TransformerConfig:
    unsupported = {
        "scale_attn_by_inverse_layer_idx": True,
        "reorder_and_upcast_attn": True,
        "scale_attn_weights": False,
    }
    for option, value in unsupported.items():
        if getattr(hf_config, option, not value) == value:
            raise ValueError(f"GPT-2 configs with {option}={value} are not supported.")
    return TransformerConfig(
        n_layers=hf_config.n_layer,
        d_model=hf_config.n_embd,
        n_heads=hf_config.n_head,
        d_vocab=hf_config.vocab_size,
        n_ctx=hf_config.n_positions,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd,
        act_fn={"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu"}[hf_config.activation_function],
        layer_norm_eps=hf_config.layer_norm_epsilon,
        # GPT-2 ties W_U to W_E; we keep a separate copy so that a learner can edit either alone.
        tied_embeddings=False,
    )


def from_hf_gpt2(hf_model: "GPT2LMHeadModel") -> Transformer:
    """A `Transformer` computing the same function as `hf_model` (in eval mode)."""
    cfg = config_from_hf_gpt2(hf_model.config)
    hf = {name: tensor.detach() for name, tensor in hf_model.state_dict().items()}
    n_heads = cfg.n_heads
    ours: dict[str, torch.Tensor] = {
        "embed.W_E": hf["transformer.wte.weight"],
        "pos_embed.W_pos": hf["transformer.wpe.weight"],
        "ln_final.w": hf["transformer.ln_f.weight"],
        "ln_final.b": hf["transformer.ln_f.bias"],
        "unembed.W_U": hf["lm_head.weight"].T,
        "unembed.b_U": torch.zeros(cfg.d_vocab),
    }
    for layer in range(cfg.n_layers):
        hf_prefix, prefix = f"transformer.h.{layer}.", f"blocks.{layer}."
        # HF's Conv1D stores weights as [in, out]; c_attn packs Q, K and V side by side.
        W_Q, W_K, W_V = hf[hf_prefix + "attn.c_attn.weight"].chunk(3, dim=1)
        b_Q, b_K, b_V = hf[hf_prefix + "attn.c_attn.bias"].chunk(3, dim=0)
        for name, weight, bias in (("Q", W_Q, b_Q), ("K", W_K, b_K), ("V", W_V, b_V)):
            ours[f"{prefix}attn.W_{name}"] = einops.rearrange(
                weight, "d_model (n_heads d_head) -> n_heads d_model d_head", n_heads=n_heads
            )
            ours[f"{prefix}attn.b_{name}"] = einops.rearrange(
                bias, "(n_heads d_head) -> n_heads d_head", n_heads=n_heads
            )
        ours[prefix + "attn.W_O"] = einops.rearrange(
            hf[hf_prefix + "attn.c_proj.weight"], "(n_heads d_head) d_model -> n_heads d_head d_model", n_heads=n_heads
        )
        ours[prefix + "attn.b_O"] = hf[hf_prefix + "attn.c_proj.bias"]
        for ln, hf_ln in (("ln1", "ln_1"), ("ln2", "ln_2")):
            ours[f"{prefix}{ln}.w"] = hf[f"{hf_prefix}{hf_ln}.weight"]
            ours[f"{prefix}{ln}.b"] = hf[f"{hf_prefix}{hf_ln}.bias"]
        ours[prefix + "mlp.W_in"] = hf[hf_prefix + "mlp.c_fc.weight"]
        ours[prefix + "mlp.b_in"] = hf[hf_prefix + "mlp.c_fc.bias"]
        ours[prefix + "mlp.W_out"] = hf[hf_prefix + "mlp.c_proj.weight"]
        ours[prefix + "mlp.b_out"] = hf[hf_prefix + "mlp.c_proj.bias"]

    model = Transformer(cfg)
    model.load_state_dict({name: tensor.clone() for name, tensor in ours.items()}, strict=True)
    return model.eval()
