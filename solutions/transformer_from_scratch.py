"""Reference solutions of chapter 00, a transformer from scratch.

The pieces of a GPT-style transformer, as the learner writes them: the chapter's notebook
shows each one's signatures and docstrings and hides its methods' bodies (the chapter's
source, `solutions/00_transformer_from_scratch.py`, takes its exercise cells from this
module), and `graders.chapter_00` compares learners' code with them. Each `__init__`'s
docstring names the parameters the learner creates, since the grader loads weights by name.

Parameter names and shapes are TransformerLens's, the same as those of the course's hooked
model `toy_models.model.Transformer`, so weights move between the two with
`load_state_dict`:

    W_E [d_vocab, d_model]          W_pos [n_ctx, d_model]
    W_Q, W_K, W_V [n_heads, d_model, d_head]     W_O [n_heads, d_head, d_model]
    W_in [d_model, d_mlp]           W_out [d_mlp, d_model]
    W_U [d_model, d_vocab]

The few `HookPoint`s are the identity. They name an intermediate value (the attention
scores and pattern, the MLP's neurons) so that it can be edited from outside: the grader
edits them to compute what a learner who made one particular mistake would get. They hold
no parameters, so they leave the state dict unchanged, and a learner's code needs none.
"""

import math

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from toy_models import TransformerConfig


class LayerNorm(nn.Module):
    """Centre each position's residual vector, divide it by its standard deviation, then
    scale it by the learned `w` and shift it by the learned `b`."""

    def __init__(self, cfg: TransformerConfig):
        """Parameters: `w` [d_model], starting at ones, and `b` [d_model], at zeros, so
        that a new LayerNorm only normalises. The epsilon is `cfg.layer_norm_eps`."""
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        centred = x - x.mean(dim=-1, keepdim=True)
        # The biased variance, dividing by d_model (torch.var divides by d_model - 1).
        variance = centred.pow(2).mean(dim=-1, keepdim=True)
        # eps inside the square root keeps a vector whose entries are all equal finite.
        return centred / (variance + self.cfg.layer_norm_eps).sqrt() * self.w + self.b


class Embed(nn.Module):
    """Token `t` becomes row `t` of `W_E`."""

    def __init__(self, cfg: TransformerConfig):
        """Parameter: `W_E` [d_vocab, d_model], drawn from a normal distribution with standard
        deviation `cfg.init_range`, as every weight matrix `W_...` of this model is."""
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model) * cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Position `p` becomes row `p` of `W_pos`, whatever the token there."""

    def __init__(self, cfg: TransformerConfig):
        """Parameter: `W_pos` [n_ctx, d_model], normal with standard deviation `cfg.init_range`."""
        super().__init__()
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model) * cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        batch, seq_len = tokens.shape
        return einops.repeat(self.W_pos[:seq_len], "pos d_model -> batch pos d_model", batch=batch)


def apply_causal_mask(
    attn_scores: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, "batch n_heads query_pos key_pos"]:
    """The scores with every key after its query (key_pos > query_pos) set to -inf, so
    that the softmax gives it weight 0: a language model must not read its answer."""
    query_len, key_len = attn_scores.shape[-2:]
    future = torch.ones(query_len, key_len, dtype=torch.bool, device=attn_scores.device).triu(diagonal=1)
    return attn_scores.masked_fill(future, float("-inf"))


class Attention(nn.Module):
    """Causal self-attention: each head moves information from earlier positions to later
    ones. Where it looks is decided by the queries and keys (the QK circuit), what it moves
    by the values and the output (the OV circuit)."""

    def __init__(self, cfg: TransformerConfig):
        """Parameters: `W_Q`, `W_K`, `W_V` [n_heads, d_model, d_head] and `W_O`
        [n_heads, d_head, d_model], normal with standard deviation `cfg.init_range`; the
        biases `b_Q`, `b_K`, `b_V` [n_heads, d_head] and `b_O` [d_model], zeros. Use
        `cfg.d_head`: it need not be `d_model // n_heads`."""
        super().__init__()
        self.cfg = cfg
        n_heads, d_model, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.randn(n_heads, d_model, d_head) * cfg.init_range)
        self.W_K = nn.Parameter(torch.randn(n_heads, d_model, d_head) * cfg.init_range)
        self.W_V = nn.Parameter(torch.randn(n_heads, d_model, d_head) * cfg.init_range)
        self.W_O = nn.Parameter(torch.randn(n_heads, d_head, d_model) * cfg.init_range)
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        # Hook points return their input unchanged: they name a value so that it can be
        # edited from outside (the grader does; chapter 02 reads models through them).
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        per_head = "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head"
        q = einops.einsum(x, self.W_Q, per_head) + self.b_Q
        k = einops.einsum(x, self.W_K, per_head) + self.b_K
        v = einops.einsum(x, self.W_V, per_head) + self.b_V
        attn_scores = einops.einsum(
            q, k, "batch query_pos n_heads d_head, batch key_pos n_heads d_head -> batch n_heads query_pos key_pos"
        )
        # Dividing by sqrt(d_head) keeps the scores' spread independent of the head size,
        # so that the softmax does not start out saturated.
        attn_scores = self.hook_attn_scores(apply_causal_mask(attn_scores / math.sqrt(self.cfg.d_head)))
        pattern = self.hook_pattern(attn_scores.softmax(dim=-1))  # over keys: each query's weights sum to 1
        z = einops.einsum(
            pattern, v, "batch n_heads query_pos key_pos, batch key_pos n_heads d_head -> batch query_pos n_heads d_head"
        )
        # Summing over heads last keeps each head's contribution a separate, readable term.
        out = einops.einsum(
            z, self.W_O, "batch query_pos n_heads d_head, n_heads d_head d_model -> batch query_pos d_model"
        )
        return out + self.b_O


class MLP(nn.Module):
    """A two-layer network on each position alone: attention moves information between
    positions, the MLP processes it where it is."""

    def __init__(self, cfg: TransformerConfig):
        """Parameters: `W_in` [d_model, d_mlp] and `W_out` [d_mlp, d_model], normal with
        standard deviation `cfg.init_range`; the biases `b_in` [d_mlp] and `b_out` [d_model], zeros."""
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.randn(cfg.d_model, cfg.d_mlp) * cfg.init_range)
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.randn(cfg.d_mlp, cfg.d_model) * cfg.init_range)
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        # Hook points return their input unchanged (see Attention): before and after the activation.
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        pre = self.hook_pre(einops.einsum(x, self.W_in, "batch pos d_model, d_model d_mlp -> batch pos d_mlp") + self.b_in)
        post = self.hook_post(F.gelu(pre))  # the exact GELU, not GPT-2's tanh approximation
        return einops.einsum(post, self.W_out, "batch pos d_mlp, d_mlp d_model -> batch pos d_model") + self.b_out


class TransformerBlock(nn.Module):
    """Attention, then (unless the model is attention-only) the MLP, each reading a
    LayerNorm of the residual stream and adding its output back to the stream."""

    def __init__(self, cfg: TransformerConfig):
        """Submodules: `ln1` (a LayerNorm) and `attn` (an Attention); unless `cfg.attn_only`,
        also `ln2` (a LayerNorm) and `mlp` (an MLP)."""
        super().__init__()
        self.cfg = cfg
        self.ln1 = LayerNorm(cfg)
        self.attn = Attention(cfg)
        if not cfg.attn_only:
            self.ln2 = LayerNorm(cfg)
            self.mlp = MLP(cfg)

    def forward(self, resid: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_model"]:
        # Each layer adds to the stream it read (pre-LN): the final stream is the sum of
        # every layer's output, which is what lets a prediction be attributed to them.
        resid_mid = resid + self.attn(self.ln1(resid))
        if self.cfg.attn_only:
            return resid_mid
        return resid_mid + self.mlp(self.ln2(resid_mid))


class Unembed(nn.Module):
    """Reads one score per vocabulary token, the logits, off the final residual stream."""

    def __init__(self, cfg: TransformerConfig):
        """Parameters: `W_U` [d_model, d_vocab], normal with standard deviation
        `cfg.init_range`, and `b_U` [d_vocab], zeros."""
        super().__init__()
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.d_vocab) * cfg.init_range)
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))

    def forward(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        # No softmax: the loss function takes logits.
        return einops.einsum(x, self.W_U, "batch pos d_model, d_model d_vocab -> batch pos d_vocab") + self.b_U


class DemoTransformer(nn.Module):
    """The whole model: tokens -> embeddings -> blocks -> final LayerNorm -> logits."""

    def __init__(self, cfg: TransformerConfig):
        """Submodules, named as in the course's checkpoints: `embed` (an Embed), `pos_embed`
        (a PosEmbed), `blocks` (an `nn.ModuleList` of `cfg.n_layers` TransformerBlocks),
        `ln_final` (a LayerNorm) and `unembed` (an Unembed)."""
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg)
        self.unembed = Unembed(cfg)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_vocab"]:
        resid = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))
