"""Reference solutions of chapter 03, indirect object identification.

Each function is an exercise: `solutions/03_indirect_object_identification.py` turns its
source into the notebook's solution cell, and `graders/chapter_03.py` grades learners'
code against it. They use only the names the notebook imports: torch, einops, Float, Int,
Tensor, Callable, IOIPrompts.

Conventions, shared by every patching function here:

* *noising*: the model runs on the **clean** prompts and one activation is replaced by its
  value on the **corrupted** prompts; a component matters if that breaks the behaviour;
* `metric` maps the patched run's logits to a number; the notebook passes the normalised
  logit difference, 1 on the clean run and 0 on the corrupted one.

They only use `run_with_cache`, `run_with_hooks`, hook names and `cfg`, so they run
unchanged on the course's `Transformer` and on TransformerLens's `TransformerBridge`.
"""

from collections.abc import Callable

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.data import IOIPrompts

__all__ = [
    "mean_logit_diff", "normalised_logit_diff", "residual_logit_diff", "patch_residual_by_position",
    "patch_head_outputs", "path_patch_head_to_logits", "path_patch_head_to_heads", "attribution_patch_heads",
    "ablated_logit_diff", "ioi_circuit",
]


def mean_logit_diff(logits: Float[Tensor, "batch pos d_vocab"], prompts: IOIPrompts) -> Float[Tensor, ""]:
    """logit(IO) - logit(S) at each prompt's last position (`prompts.end_pos`), averaged
    over the prompts."""
    batch = torch.arange(len(prompts))
    final = logits[batch, prompts.end_pos]  # [batch, d_vocab]
    return (final[batch, prompts.io_tokens] - final[batch, prompts.s_tokens]).mean()


def normalised_logit_diff(
    logits: Float[Tensor, "batch pos d_vocab"], prompts: IOIPrompts, clean_logit_diff: float, corrupted_logit_diff: float
) -> Float[Tensor, ""]:
    """The patching metric: the mean logit difference (computed with your `mean_logit_diff`,
    so check that first) rescaled so that the clean run scores 1 and the corrupted run 0,
    (LD - LD_corrupted) / (LD_clean - LD_corrupted). It is signed:
    below 0 when a patched run's LD falls below the corrupted one's, above 1 past the clean one's."""
    return (mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff)


def residual_logit_diff(
    model, stack: Float[Tensor, "component batch d_model"], scale: Float[Tensor, "batch 1"], prompts: IOIPrompts
) -> Float[Tensor, " component"]:
    """Each component's direct contribution to the logit difference, averaged over the prompts.

    `stack` holds vectors in the residual stream at the final position (a layer's
    accumulated stream, or one head's output); `scale` is the final LayerNorm's divisor on
    the clean run, frozen so that the map to the logits is linear. LayerNorm centres, divides
    by the scale and multiplies by `ln_final.w`; the logit difference then reads the
    direction W_U[:, IO] - W_U[:, S]. The LayerNorm and unembedding biases are left out:
    they add the same amount whatever the component.
    """
    directions = (model.W_U[:, prompts.io_tokens] - model.W_U[:, prompts.s_tokens]).T  # [batch, d_model]
    centred = stack - stack.mean(dim=-1, keepdim=True)
    normalised = centred / scale * model.ln_final.w
    per_prompt = einops.einsum(normalised, directions, "component batch d_model, batch d_model -> component batch")
    return per_prompt.mean(dim=-1)


@torch.no_grad()
def patch_residual_by_position(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor], activation: str = "resid_pre",
) -> Float[Tensor, "n_layers pos"]:
    """Noising, one layer and one position at a time: run the clean prompts with the
    activation `blocks.{layer}.hook_{activation}` ("resid_pre", "attn_out" or "mlp_out")
    at position `pos` replaced by its value on the corrupted prompts; return the metric of
    each patched run."""
    _, corrupted = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name.endswith(f"hook_{activation}"))
    results = torch.zeros(model.cfg.n_layers, clean_tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.hook_{activation}"
        for position in range(clean_tokens.shape[1]):
            def patch(act: Tensor, hook, position: int = position) -> Tensor:
                act[:, position] = corrupted[hook.name][:, position]
                return act

            results[layer, position] = float(metric(model.run_with_hooks(clean_tokens, fwd_hooks=[(name, patch)])))
    return results


@torch.no_grad()
def patch_head_outputs(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor], activation: str = "z",
) -> Float[Tensor, "n_layers n_heads"]:
    """Noising, one head at a time, at every position at once: run the clean prompts with one
    head's `activation` replaced by its value on the corrupted prompts. `activation` is
    "z" (the head's output, [batch, pos, head, d_head]; also "q", "k", "v") or "pattern"
    ([batch, head, query_pos, key_pos]: the head axis comes second)."""
    _, corrupted = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name.endswith(f"hook_{activation}"))
    results = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            def patch(act: Tensor, hook, head: int = head) -> Tensor:
                if activation == "pattern":
                    act[:, head] = corrupted[hook.name][:, head]
                else:
                    act[:, :, head] = corrupted[hook.name][:, :, head]
                return act

            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_{activation}", patch)])
            results[layer, head] = float(metric(logits))
    return results


@torch.no_grad()
def path_patch_head_to_logits(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor],
) -> Float[Tensor, "n_layers n_heads"]:
    """Path patching along the direct path, head -> logits: for each head, the metric of the
    clean run in which the head's corrupted output reaches the final residual stream
    directly, while every later component still sees its clean output.

    That is the clean final stream plus the change of the head's output, (z_corrupted -
    z_clean) @ W_O, at every position; the final LayerNorm is recomputed."""
    _, clean = model.run_with_cache(clean_tokens, names_filter=lambda name: name.endswith("hook_z"))
    _, corrupted = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name.endswith("hook_z"))
    final = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    results = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            z_change = corrupted["z", layer][:, :, head] - clean["z", layer][:, :, head]  # [batch, pos, d_head]
            change = z_change @ model.blocks[layer].attn.W_O[head]  # [batch, pos, d_model]

            def add_change(resid: Tensor, hook, change: Tensor = change) -> Tensor:
                return resid + change

            results[layer, head] = float(metric(model.run_with_hooks(clean_tokens, fwd_hooks=[(final, add_change)])))
    return results


@torch.no_grad()
def path_patch_head_to_heads(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor], receivers: list[tuple[int, int]], receiver_input: str = "q",
) -> Float[Tensor, "n_layers n_heads"]:
    """Path patching, sender head -> receiver heads' `receiver_input` ("q", "k" or "v").

    Receivers may sit in several layers, listed in any order. For each sender in a layer
    below the lowest receiver's: (1) run the clean prompts with the sender's output `z` from
    the corrupted run and every other head's `z` frozen at its clean value (MLPs recompute),
    and record the receivers' `hook_{receiver_input}`; (2) run the clean prompts again with
    only those receiver inputs patched in, and return the metric.
    Senders in the lowest receiver's layer or later are left at 0."""
    _, clean = model.run_with_cache(clean_tokens, names_filter=lambda name: name.endswith("hook_z"))
    _, corrupted = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name.endswith("hook_z"))
    first_receiver_layer = min(layer for layer, _ in receivers)
    results = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for sender_layer in range(first_receiver_layer):
        for sender_head in range(model.cfg.n_heads):
            def freeze(z: Tensor, hook, sender_layer: int = sender_layer, sender_head: int = sender_head) -> Tensor:
                z = clean[hook.name].clone()
                if hook.layer() == sender_layer:
                    z[:, :, sender_head] = corrupted[hook.name][:, :, sender_head]
                return z

            recorded = {}

            def record(act: Tensor, hook) -> Tensor:
                recorded[hook.name] = act.clone()
                return act

            receiver_names = sorted({f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers})
            model.run_with_hooks(clean_tokens, fwd_hooks=[(lambda name: name.endswith("attn.hook_z"), freeze),
                                                          *[(name, record) for name in receiver_names]])

            def patch_receivers(act: Tensor, hook) -> Tensor:
                for layer, head in receivers:
                    if layer == hook.layer():
                        act[:, :, head] = recorded[hook.name][:, :, head]
                return act

            logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(name, patch_receivers) for name in receiver_names])
            results[sender_layer, sender_head] = float(metric(logits))
    return results


def attribution_patch_heads(
    model, clean_tokens: Int[Tensor, "batch pos"], corrupted_tokens: Int[Tensor, "batch pos"],
    metric: Callable[[Tensor], Tensor],
) -> Float[Tensor, "n_layers n_heads"]:
    """Attribution patching: the first-order (linear) estimate of `patch_head_outputs(...,
    "z")`, from one clean forward and backward pass and one corrupted forward pass:
    metric(clean) + sum over batch, positions and d_head of (z_corrupted - z_clean) * d metric / d z,
    with the gradient taken on the clean run."""
    _, corrupted = model.run_with_cache(corrupted_tokens, names_filter=lambda name: name.endswith("hook_z"))
    clean_z = {}

    def track(z: Tensor, hook) -> Tensor:
        if not z.requires_grad:  # the first head's output, when the weights are frozen: make it a leaf
            z = z.detach().requires_grad_(True)
        z.retain_grad()  # keep d metric / d z, through every later component, in z.grad
        clean_z[hook.name] = z
        return z

    with torch.enable_grad():
        value = metric(model.run_with_hooks(clean_tokens, fwd_hooks=[(lambda name: name.endswith("attn.hook_z"), track)]))
        value.backward()
    estimates = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        change = corrupted[name] - clean_z[name].detach()
        estimates.append(einops.einsum(change, clean_z[name].grad, "batch pos head d_head, batch pos head d_head -> head"))
    return value.detach() + torch.stack(estimates)


@torch.no_grad()
def ablated_logit_diff(
    model, prompts: IOIPrompts, mean_tokens: Int[Tensor, "mean_batch pos"], heads: list[tuple[int, int]]
) -> Float[Tensor, ""]:
    """The mean logit difference on `prompts` with each head in `heads` mean-ablated: its
    output `z` replaced, at each position, by its mean over the batch `mean_tokens` (prompts
    of the same shape in which the names carry no information, such as ABC prompts)."""
    _, reference = model.run_with_cache(mean_tokens, names_filter=lambda name: name.endswith("hook_z"))

    def ablate(z: Tensor, hook) -> Tensor:
        for layer, head in heads:
            if layer == hook.layer():
                z[:, :, head] = reference[hook.name][:, :, head].mean(dim=0)
        return z

    logits = model.run_with_hooks(prompts.tokens, fwd_hooks=[(lambda name: name.endswith("attn.hook_z"), ablate)])
    batch = torch.arange(len(prompts))
    final = logits[batch, prompts.end_pos]
    return (final[batch, prompts.io_tokens] - final[batch, prompts.s_tokens]).mean()


def ioi_circuit() -> dict[str, list[tuple[int, int]]]:
    """The IOI circuit of the shipped ioi-3l, as you measured it: for each role
    ("name_mover", "s_suppression"), the (layer, head) of every head that plays it."""
    return {"name_mover": [(0, 0), (0, 1), (0, 3)], "s_suppression": [(1, 0), (1, 3)]}
