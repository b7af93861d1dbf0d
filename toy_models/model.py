"""A GPT-style transformer, written from scratch to be read and taken apart.

Read it top to bottom: the config, then each piece of a block (LayerNorm, the
embeddings, attention, the MLP), the block, and the whole model. Every intermediate
value passes through a TransformerLens `HookPoint` with TransformerLens's name for it,
so `run_with_cache`, `run_with_hooks`, `ActivationCache` and `transformer_lens.patching`
work on this model exactly as they do on the models the field studies.

Weights follow TransformerLens's shapes, which keep the head dimension separate so that
each head's circuits can be read off directly:

    W_E [d_vocab, d_model]          W_pos [n_ctx, d_model]
    W_Q, W_K, W_V [n_heads, d_model, d_head]     W_O [n_heads, d_head, d_model]
    W_in [d_model, d_mlp]           W_out [d_mlp, d_model]
    W_U [d_model, d_vocab]
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

ActivationName = Literal["gelu", "gelu_new", "relu"]


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that decides the shape of a model. Field names are TransformerLens's."""

    n_layers: int
    d_model: int
    n_heads: int
    d_vocab: int
    n_ctx: int
    d_head: int | None = None  # defaults to d_model // n_heads
    d_mlp: int | None = None  # None builds an attention-only model
    act_fn: ActivationName = "gelu"  # "gelu_new" is GPT-2's tanh approximation
    normalization_type: Literal["LN"] | None = "LN"
    # "shortformer" adds positions to the queries and keys only, never to the residual
    # stream, which makes previous-token heads easy to learn and easy to read.
    positional_embedding_type: Literal["standard", "shortformer"] = "standard"
    tied_embeddings: bool = False
    layer_norm_eps: float = 1e-5
    init_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_vocab", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.d_head is None:
            if self.d_model % self.n_heads != 0:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: "
                    f"each head gets d_model / n_heads dimensions. Choose n_heads dividing "
                    f"{self.d_model}, or set d_head explicitly."
                )
            object.__setattr__(self, "d_head", self.d_model // self.n_heads)
        if self.d_mlp is not None and self.d_mlp < 1:
            raise ValueError(f"d_mlp must be positive, or None for attention-only; got {self.d_mlp}.")
        if self.act_fn not in ("gelu", "gelu_new", "relu"):
            raise ValueError(f"act_fn must be 'gelu', 'gelu_new' or 'relu', got {self.act_fn!r}.")
        if self.normalization_type not in ("LN", None):
            raise ValueError(f"normalization_type must be 'LN' or None, got {self.normalization_type!r}.")
        if self.positional_embedding_type not in ("standard", "shortformer"):
            raise ValueError(
                "positional_embedding_type must be 'standard' or 'shortformer', "
                f"got {self.positional_embedding_type!r}."
            )

    # TransformerLens's analysis code (ActivationCache, patching) reads these names.
    @property
    def attn_only(self) -> bool:
        return self.d_mlp is None

    @property
    def n_key_value_heads(self) -> None:
        return None  # every head has its own keys and values

    @property
    def device(self) -> None:
        return None  # new tensors go to torch's default device, like the model's

    @classmethod
    def from_dict(cls, fields: dict) -> "TransformerConfig":
        return cls(**fields)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class LayerNorm(nn.Module):
    """Centre and rescale each position's vector, so that no direction's size runs away."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.eps = cfg.layer_norm_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_scale = HookPoint()  # the divisor: freezing it makes LayerNorm linear
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        x = x - x.mean(dim=-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(dim=-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


class Embed(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        batch, seq_len = tokens.shape
        return einops.repeat(self.W_pos[:seq_len], "pos d_model -> batch pos d_model", batch=batch)


def apply_causal_mask(
    attn_scores: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
    """Hide later positions from earlier ones: a language model must not read its answer."""
    query_len, key_len = attn_scores.shape[-2:]
    future = torch.ones(query_len, key_len, dtype=torch.bool, device=attn_scores.device).triu(1)
    return attn_scores.masked_fill(future, float("-inf"))


class Attention(nn.Module):
    """Each head moves information between positions: where to look is decided by the
    queries and keys (the QK circuit), what gets moved by the values and output (OV)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(
        self,
        query_input: Float[Tensor, "batch pos d_model"],
        key_input: Float[Tensor, "batch pos d_model"],
        value_input: Float[Tensor, "batch pos d_model"],
    ) -> Float[Tensor, "batch pos d_model"]:
        per_head = "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head"
        q = self.hook_q(einops.einsum(query_input, self.W_Q, per_head) + self.b_Q)
        k = self.hook_k(einops.einsum(key_input, self.W_K, per_head) + self.b_K)
        v = self.hook_v(einops.einsum(value_input, self.W_V, per_head) + self.b_V)

        # Dividing by sqrt(d_head) keeps the scores' spread independent of the head size,
        # so the softmax starts out soft instead of saturated.
        attn_scores = einops.einsum(
            q, k, "batch query_pos n_heads d_head, batch key_pos n_heads d_head -> batch n_heads query_pos key_pos"
        ) / math.sqrt(q.shape[-1])
        attn_scores = self.hook_attn_scores(apply_causal_mask(attn_scores))
        pattern = self.hook_pattern(attn_scores.softmax(dim=-1))  # over key positions

        z = self.hook_z(
            einops.einsum(
                pattern, v, "batch n_heads query_pos key_pos, batch key_pos n_heads d_head -> batch query_pos n_heads d_head"
            )
        )
        # Summing over heads last keeps each head's contribution a separate, readable term.
        return einops.einsum(z, self.W_O, "batch pos n_heads d_head, n_heads d_head d_model -> batch pos d_model") + self.b_O


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class MLP(nn.Module):
    """Acts on each position alone: the attention layers move information, the MLPs process it."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()  # the neurons: what SAEs and neuron studies read

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(self.act_fn(pre))
        return post @ self.W_out + self.b_out


def make_norm(cfg: TransformerConfig) -> nn.Module:
    return LayerNorm(cfg) if cfg.normalization_type == "LN" else nn.Identity()


class TransformerBlock(nn.Module):
    """Attention then MLP, each reading from the residual stream and adding its output back."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_only = cfg.attn_only
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()
        if not cfg.attn_only:
            self.ln2 = make_norm(cfg)
            self.mlp = MLP(cfg)
            self.hook_resid_mid = HookPoint()
            self.hook_mlp_out = HookPoint()

    def forward(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        shortformer_pos_embed: Float[Tensor, "batch pos d_model"] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_in = self.ln1(resid_pre)
        query_and_key_input = attn_in if shortformer_pos_embed is None else attn_in + shortformer_pos_embed
        attn_out = self.hook_attn_out(self.attn(query_and_key_input, query_and_key_input, attn_in))
        if self.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(resid_mid)))
        return self.hook_resid_post(resid_mid + mlp_out)


class Unembed(nn.Module):
    """Reads next-token logits off the final residual stream."""

    def __init__(self, cfg: TransformerConfig, embed: Embed):
        super().__init__()
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))
        if cfg.tied_embeddings:
            # Held in a tuple so that nn.Module does not register the embedding a second
            # time: W_E is then stored, trained and saved once.
            self._tied_embed = (embed,)
        else:
            self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))

    def unembedding(self) -> Float[Tensor, "d_model d_vocab"]:
        return self._tied_embed[0].W_E.T if hasattr(self, "_tied_embed") else self.W_U

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        return x @ self.unembedding() + self.b_U


class Transformer(HookedRootModule):
    """The whole model: tokens -> embeddings -> blocks -> final LayerNorm -> logits."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = make_norm(cfg)
        self.unembed = Unembed(cfg, self.embed)
        self.init_weights()
        self.setup()  # HookedRootModule: index every HookPoint by its dotted name

    def init_weights(self) -> None:
        """GPT-2's scheme: small normal weights, zero biases, LayerNorm as the identity."""
        for name, param in self.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                nn.init.normal_(param, std=self.cfg.init_range)

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        return_type: Literal["logits", "loss"] = "logits",
    ) -> Float[Tensor, "batch pos d_vocab"] | Float[Tensor, ""]:
        tokens = self.check_tokens(tokens)
        embed = self.hook_embed(self.embed(tokens))
        pos_embed = self.hook_pos_embed(self.pos_embed(tokens))
        if self.cfg.positional_embedding_type == "shortformer":
            resid, shortformer_pos_embed = embed, pos_embed
        else:
            resid, shortformer_pos_embed = embed + pos_embed, None
        for block in self.blocks:
            resid = block(resid, shortformer_pos_embed)
        logits = self.unembed(self.ln_final(resid))
        if return_type == "loss":
            return next_token_loss(logits, tokens)
        return logits

    def check_tokens(self, tokens: Tensor) -> Int[Tensor, "batch pos"]:
        """Turn a learner's mistake into a message that names the value and the limit."""
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}.")
        if tokens.ndim == 1:
            tokens = tokens.unsqueeze(0)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [batch, pos] or [pos], got {tuple(tokens.shape)}.")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"Sequence length {tokens.shape[1]} is longer than the model's context n_ctx={self.cfg.n_ctx}."
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.d_vocab):
            bad = tokens[(tokens < 0) | (tokens >= self.cfg.d_vocab)][0].item()
            raise ValueError(
                f"Token id {bad} is outside the vocabulary: ids must lie in [0, {self.cfg.d_vocab})."
            )
        return tokens

    def run_with_cache(self, *model_args, remove_batch_dim: bool = False, **kwargs):
        """Like TransformerLens's models: return the output and an `ActivationCache`."""
        output, cache_dict = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        return output, ActivationCache(cache_dict, self, has_batch_dim=not remove_batch_dim)

    # Shorthands in TransformerLens's names, used by the chapters' circuit analysis.
    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.unembedding()

    def tokens_to_residual_directions(self, tokens: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        """The residual direction whose dot product with the final stream is each token's logit."""
        return self.W_U[:, torch.as_tensor(tokens)].movedim(0, -1)


def next_token_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    per_token: bool = False,
) -> Float[Tensor, ""] | Float[Tensor, "batch pos-1"]:
    """Cross-entropy of predicting each token from the ones before it."""
    log_probs = logits[:, :-1].log_softmax(dim=-1)
    correct = log_probs.gather(dim=-1, index=tokens[:, 1:, None]).squeeze(-1)
    return -correct if per_token else -correct.mean()
