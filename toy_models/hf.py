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


# --------------------------------------------------------------------------- GPT-2 small, for chapter 03
# The real model is studied through TransformerLens's `TransformerBridge` (transformer-lens 4
# has no HookedTransformer) in compatibility mode: TransformerLens's hook names and weight
# shapes (W_U, W_O, hook_z, ...), LayerNorm folded into the next weights as HookedTransformer did.

def _hub_reachable(name: str, timeout: float = 3.0) -> bool:
    """True when `name`'s files are in the local Hugging Face cache or the Hub answers."""
    import socket

    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return True
    except Exception:  # noqa: BLE001 - no cache, or an old huggingface_hub: ask the network
        pass
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except Exception:  # noqa: BLE001 - no DNS, no route, or a sandbox that forbids sockets
        return False


def load_gpt2_bridge(name: str = "gpt2", *, hf_model=None, tokenizer=None):
    """GPT-2 (small by default) as a TransformerBridge in compatibility mode, in eval mode.

    Pass `hf_model` (a `GPT2LMHeadModel`) and `tokenizer` to wrap a model you already have:
    nothing is downloaded then. When the weights cannot be downloaded, print one line and
    return None, so that a notebook can skip its GPT-2 section offline.
    """
    from transformer_lens.model_bridge import TransformerBridge

    if hf_model is None and not _hub_reachable(name):
        print(f"Skipping GPT-2: {name!r} is not cached and huggingface.co cannot be reached (offline).")
        return None
    try:
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer)
    except OSError as error:  # a failed download; anything else is a bug worth a traceback
        print(f"Skipping GPT-2: could not load {name!r} ({str(error).splitlines()[0]}).")
        return None
    bridge.enable_compatibility_mode()
    return bridge.eval()


def ioi_prompts_for_tokenizer(tokenizer, n_prompts: int, *, seed: int = 0, template_id: int = 0):
    """IOI prompts of one template (`toy_models.data.IOI_TEMPLATES[template_id]`) written as
    plain English and tokenized by a Hugging Face `tokenizer` (GPT-2's), with a start token.

    Prompts whose names, place or object are not single tokens, or whose length differs from
    the commonest, are dropped, so that every prompt stacks and its positions line up; at
    most `n_prompts` are returned, in the course's `IOIPrompts`.
    """
    from collections import Counter

    from toy_models.data import IOI_TEMPLATES, IOIPrompts, make_ioi_prompts

    def one_token(word: str) -> int | None:
        ids = tokenizer.encode(" " + word, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    candidates = make_ioi_prompts(20 * n_prompts, seed=seed)
    bos = tokenizer.bos_token_id
    rows = []
    for i, sentence in enumerate(candidates.sentences):
        if candidates.template_ids[i] != template_id:
            continue
        words = sentence.split()
        io_word, s_word = words[candidates.io_pos[i] - 1], words[candidates.s1_pos[i] - 1]
        io, s = one_token(io_word), one_token(s_word)
        if io is None or s is None:
            continue
        text = sentence.replace(" ,", ",").replace(" .", ".")
        ids = [bos, *tokenizer.encode(text, add_special_tokens=False)]
        if ids.count(io) != 1 or ids.count(s) != 2:
            continue
        s_positions = [p for p, t in enumerate(ids) if t == s]
        rows.append((ids, io, s, ids.index(io), *s_positions, text, candidates.orders[i]))
    if not rows:
        raise ValueError(f"no prompt of template {IOI_TEMPLATES[template_id]!r} tokenizes with single-token names")
    length = Counter(len(row[0]) for row in rows).most_common(1)[0][0]
    rows = [row for row in rows if len(row[0]) == length][:n_prompts]
    column = lambda k: torch.tensor([row[k] for row in rows])  # noqa: E731
    return IOIPrompts(
        tokens=column(0), io_tokens=column(1), s_tokens=column(2), io_pos=column(3), s1_pos=column(4),
        s2_pos=column(5), end_pos=torch.full((len(rows),), length - 1), orders=tuple(row[7] for row in rows),
        template_ids=torch.full((len(rows),), template_id), sentences=tuple(row[6] for row in rows),
    )
