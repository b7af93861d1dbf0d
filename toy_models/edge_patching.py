"""The course's Transformer as a graph of edges, and a forward pass that can patch any of them.

Circuit discovery (ACDC, edge attribution patching) asks which *edges* of the model
matter: which component's output, read by which other component's input. The model's
own forward pass sums every output into one residual stream, so no single edge can be
cut there. This module evaluates the same model component by component instead, so that
each receiver's input is an explicit sum over its senders, any term of which can be
swapped for its value on a corrupted run (or for zero, or for its mean).

The graph's vocabulary, small enough for a chapter to enumerate:

    senders    "embed"        token embedding + positional embedding, as the residual
                              stream receives them. In a "shortformer" model the
                              positions never enter the residual stream: they are added
                              to the queries' and keys' inputs directly, identical in
                              every run of the same length, so they are part of each
                              head, not an edge, and "embed" is the token embedding alone.
               "A{l}.{h}"     head h of layer l: its z @ W_O (TransformerLens's hook_result)
               "M{l}"         the MLP of layer l, b_out included (TransformerLens's hook_mlp_out)
    receivers  "A{l}.{h}.q"   the query input of head h of layer l, and ".k", ".v"
               "M{l}"         the MLP's input
               "logits"       the unembedding's input

An edge (sender, receiver) is a direct path through the residual stream: the receiver
reads everything written before it, so a head of layer L reads "embed" and every head
and MLP of layers < L, the MLP of layer L also reads the heads of layer L, and "logits"
reads everything. Each attention layer's b_O belongs to no single head, so it is a
constant term of every later receiver's input that no edge carries and no patch removes
(as in ACDC). LayerNorm is applied per receiver, to that receiver's own summed input,
exactly where the model applies ln1, ln2 and ln_final.
"""

import math
from collections.abc import Iterable
from typing import Literal

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.model import Attention, Transformer, TransformerConfig, apply_causal_mask

Edge = tuple[str, str]
Ablation = Literal["corrupted", "zero", "mean"]


# ---------------------------------------------------------------------------
# The graph: nodes and edges, in a fixed topological order
# ---------------------------------------------------------------------------


def senders(cfg: TransformerConfig) -> list[str]:
    """Every node that writes to the residual stream, in the order the forward pass writes."""
    nodes = ["embed"]
    for layer in range(cfg.n_layers):
        nodes += [f"A{layer}.{head}" for head in range(cfg.n_heads)]
        if not cfg.attn_only:
            nodes.append(f"M{layer}")
    return nodes


def receivers(cfg: TransformerConfig) -> list[str]:
    """Every node that reads from the residual stream, in the order the forward pass reads."""
    nodes = []
    for layer in range(cfg.n_layers):
        nodes += [f"A{layer}.{head}.{input_}" for head in range(cfg.n_heads) for input_ in "qkv"]
        if not cfg.attn_only:
            nodes.append(f"M{layer}")
    return nodes + ["logits"]


def senders_into(cfg: TransformerConfig, receiver: str) -> list[str]:
    """The senders a receiver reads: everything written to the residual stream before it."""
    order = senders(cfg)
    if receiver == "logits":
        return order
    if receiver not in receivers(cfg):
        raise ValueError(f"{receiver!r} is not a receiver of this model; receivers: {', '.join(receivers(cfg))}.")
    if receiver.startswith("M"):
        return order[: order.index(receiver)]
    # Heads of one layer run in parallel, so a head reads none of its own layer's outputs.
    layer = receiver[1:].split(".")[0]
    return order[: order.index(f"A{layer}.0")]


def all_edges(cfg: TransformerConfig) -> list[Edge]:
    """Every edge of the model's graph: receivers in forward order, each one's senders in forward order."""
    return [(sender, receiver) for receiver in receivers(cfg) for sender in senders_into(cfg, receiver)]


def check_edges(cfg: TransformerConfig, edges: Iterable[Edge]) -> frozenset[Edge]:
    """The edges as a frozenset, after checking that each is an edge of this model's graph."""
    edges = frozenset(edges)
    unknown = edges - set(all_edges(cfg))
    if unknown:
        shown = ", ".join(map(str, sorted(unknown)[:3]))
        raise ValueError(
            f"{len(unknown)} edge(s) are not in this model's graph, e.g. {shown}. "
            "An edge is (sender, receiver) with the sender earlier in the forward pass; see all_edges(cfg)."
        )
    return edges


# ---------------------------------------------------------------------------
# The forward pass, one component at a time
# ---------------------------------------------------------------------------


def head_output(
    attn: Attention,
    head: int,
    query_input: Float[Tensor, "batch pos d_model"],
    key_input: Float[Tensor, "batch pos d_model"],
    value_input: Float[Tensor, "batch pos d_model"],
) -> Float[Tensor, "batch pos d_model"]:
    """What one head writes to the residual stream: `Attention.forward` for a single head,
    without the layer's b_O, from three inputs that may differ."""
    q = query_input @ attn.W_Q[head] + attn.b_Q[head]
    k = key_input @ attn.W_K[head] + attn.b_K[head]
    v = value_input @ attn.W_V[head] + attn.b_V[head]
    scores = einops.einsum(q, k, "batch query_pos d_head, batch key_pos d_head -> batch query_pos key_pos")
    pattern = apply_causal_mask(scores / math.sqrt(q.shape[-1])).softmax(dim=-1)
    z = einops.einsum(pattern, v, "batch query_pos key_pos, batch key_pos d_head -> batch query_pos d_head")
    return z @ attn.W_O[head]


def forward_by_edges(
    model: Transformer,
    tokens: Int[Tensor, "batch pos"],
    patched: frozenset[Edge] = frozenset(),
    replacements: dict[str, Float[Tensor, "batch pos d_model"]] | None = None,
    inputs: dict[str, Float[Tensor, "batch pos d_model"]] | None = None,
) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Float[Tensor, "batch pos d_model"]]]:
    """The model's logits on `tokens`, computed edge by edge, and every sender's output.

    Along each edge in `patched`, the receiver reads `replacements[sender]` instead of the
    sender's output on this run; every other edge carries this run's own value. With
    nothing patched this is `model(tokens)`, rearranged.

    If `inputs` is a dict, every receiver's summed input (before its LayerNorm) is stored
    in it, under the receiver's name, as a tensor of the autograd graph that computes the
    logits: `torch.autograd.grad(metric(logits), inputs[receiver])` is then d metric /
    d (that receiver's input), which edge attribution patching needs. (An input that
    depends on no tensor needing a gradient, such as a patched-in constant, is made a
    leaf that needs one, so that every receiver has a gradient; with gradients disabled,
    as under torch.no_grad(), there is no graph to take them from.)
    """
    cfg = model.cfg
    if patched and replacements is None:
        raise ValueError("Patched edges need `replacements`: the value each patched sender's edges carry instead.")
    tokens = model.check_tokens(tokens)
    token_embed, pos_embed = model.embed(tokens), model.pos_embed(tokens)
    shortformer = cfg.positional_embedding_type == "shortformer"
    outputs = {"embed": token_embed if shortformer else token_embed + pos_embed}
    # Shortformer positions reach the queries and keys only, after ln1, as in TransformerBlock.
    query_key_pos = pos_embed if shortformer else torch.zeros_like(pos_embed)
    biases = token_embed.new_zeros(cfg.d_model)  # the b_O of the attention layers so far

    def input_of(receiver: str) -> Float[Tensor, "batch pos d_model"]:
        """The receiver's input: the sum, over its senders, of what each edge carries."""
        total = biases
        for sender in senders_into(cfg, receiver):
            total = total + (replacements[sender] if (sender, receiver) in patched else outputs[sender])
        if inputs is not None:
            if not total.requires_grad:  # it reads no parameter that needs a gradient: a leaf, made to need one
                total.requires_grad_()
            inputs[receiver] = total
        return total

    for layer, block in enumerate(model.blocks):
        for head in range(cfg.n_heads):
            name = f"A{layer}.{head}"
            query_input = block.ln1(input_of(f"{name}.q")) + query_key_pos
            key_input = block.ln1(input_of(f"{name}.k")) + query_key_pos
            value_input = block.ln1(input_of(f"{name}.v"))
            outputs[name] = head_output(block.attn, head, query_input, key_input, value_input)
        biases = biases + block.attn.b_O
        if not cfg.attn_only:
            outputs[f"M{layer}"] = block.mlp(block.ln2(input_of(f"M{layer}")))
    logits = model.unembed(model.ln_final(input_of("logits")))
    return logits, outputs


def run_with_edges_patched(
    model: Transformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"] | None,
    edges: Iterable[Edge],
    *,
    ablation: Ablation = "corrupted",
) -> Float[Tensor, "batch pos d_vocab"]:
    """The logits on `clean_tokens` with every edge in `edges` patched.

    A patched edge carries, instead of its sender's clean output:
      "corrupted"  the sender's output on `corrupted_tokens` (resample ablation, as in ACDC),
                   row by row, so both batches must have the same shape;
      "mean"       its mean over the batch `corrupted_tokens`, at each position;
      "zero"       zero (`corrupted_tokens` may be None).
    The senders' corrupted outputs come from the unpatched corrupted run: patching an edge
    changes one receiver's input only, never what the sender computes.
    """
    edges = check_edges(model.cfg, edges)
    clean_tokens = model.check_tokens(clean_tokens)
    if ablation == "zero":
        batch, pos = clean_tokens.shape
        zeros = model.embed.W_E.new_zeros(batch, pos, model.cfg.d_model)
        replacements = {sender: zeros for sender in senders(model.cfg)}
    elif ablation in ("corrupted", "mean"):
        replacements = _corrupted_outputs(model, clean_tokens, corrupted_tokens, mean=ablation == "mean")
    else:
        raise ValueError(f"ablation must be 'corrupted', 'mean' or 'zero', got {ablation!r}.")
    logits, _ = forward_by_edges(model, clean_tokens, edges, replacements)
    return logits


def _corrupted_outputs(
    model: Transformer, clean_tokens: Tensor, corrupted_tokens: Tensor | None, mean: bool
) -> dict[str, Float[Tensor, "batch pos d_model"]]:
    if corrupted_tokens is None:
        raise ValueError("corrupted_tokens is needed unless ablation='zero'.")
    corrupted_tokens = model.check_tokens(corrupted_tokens)
    if corrupted_tokens.shape[1] != clean_tokens.shape[1]:
        raise ValueError(
            f"The clean and corrupted tokens must have the same length, got shapes "
            f"{tuple(clean_tokens.shape)} and {tuple(corrupted_tokens.shape)}."
        )
    if not mean and corrupted_tokens.shape != clean_tokens.shape:
        raise ValueError(
            f"Each clean row is patched from the same row of the corrupted batch, so the shapes must match: "
            f"got {tuple(clean_tokens.shape)} and {tuple(corrupted_tokens.shape)}."
        )
    _, outputs = forward_by_edges(model, corrupted_tokens)
    if mean:  # one value per position, broadcast over the clean batch
        return {sender: output.mean(dim=0, keepdim=True) for sender, output in outputs.items()}
    return outputs
