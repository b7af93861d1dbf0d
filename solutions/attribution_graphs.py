"""Reference solutions of chapter 07, transcoders and attribution graphs in miniature.

Each function is an exercise: `solutions/07_attribution_graphs.py` turns its source into
the notebook's solution cell, and `graders/chapter_07.py` grades learners' code against
it. They work on one prompt at a time (`tokens` has no batch dimension) of a model with
MLPs and LayerNorm, with one `toy_models.transcoder.Transcoder` per layer, in order. They
use only the names the notebook imports: torch, Float, Int, Bool, Tensor, and the model's
hooks (`run_with_cache`, `run_with_hooks`, hook names, `cfg`).

The course's own implementation of the whole pipeline, which `mi-course graph` runs, is
`toy_models.attribution`; these are the pieces a learner writes to understand it.
"""

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = [
    "transcoder_loss", "error_nodes", "replacement_logits", "logit_attributions", "node_influence", "prune_nodes",
    "ablation_effect",
]


# --------------------------------------------------------------------------- 1. transcoders

def transcoder_loss(transcoder, mlp_in: Float[Tensor, "batch d_model"], mlp_out: Float[Tensor, "batch d_model"]
                    ) -> Float[Tensor, ""]:
    """What a transcoder is trained to minimise: the squared error of its prediction of the
    MLP's *output* from the MLP's *input*, summed over d_model and averaged over the batch."""
    return (transcoder(mlp_in) - mlp_out).pow(2).sum(dim=-1).mean()


# --------------------------------------------------------------------------- 2. the local replacement model

@torch.no_grad()
def error_nodes(model, transcoders, tokens: Int[Tensor, " pos"]) -> Float[Tensor, "layer pos d_model"]:
    """On the model's own (clean) run of `tokens`: at every layer and position, the MLP's
    true output minus its transcoder's prediction from the MLP's true input, the part of
    the MLP that the transcoder misses."""
    hooks = [name for transcoder in transcoders for name in (transcoder.cfg.hook_in, transcoder.cfg.hook_out)]
    _, cache = model.run_with_cache(tokens[None], names_filter=hooks)
    return torch.stack([cache[tc.cfg.hook_out][0] - tc(cache[tc.cfg.hook_in][0]) for tc in transcoders])


@torch.no_grad()
def replacement_logits(model, transcoders, clean_tokens: Int[Tensor, " pos"], tokens: Int[Tensor, " pos"]
                       ) -> Float[Tensor, "pos d_vocab"]:
    """The local replacement model built on `clean_tokens`, run on `tokens` (of the same
    length): every attention pattern (`hook_pattern`) and LayerNorm scale (`hook_scale`)
    held at its value on the clean run, and each MLP's output replaced by its transcoder's
    prediction from the MLP's input on *this* run plus the clean run's error node. On
    `clean_tokens` itself its logits are the model's."""
    is_frozen = lambda name: name.endswith(("hook_pattern", "hook_scale"))  # noqa: E731
    _, cache = model.run_with_cache(clean_tokens[None], names_filter=is_frozen)
    errors = error_nodes(model, transcoders, clean_tokens)
    mlp_inputs = {}

    def hold(value: Tensor):
        return lambda activation, hook: value

    def read_input(mlp_in: Tensor, hook) -> None:
        mlp_inputs[hook.name] = mlp_in

    def write_output(layer: int):
        transcoder = transcoders[layer]
        return lambda mlp_out, hook: transcoder(mlp_inputs[transcoder.cfg.hook_in]) + errors[layer]

    hooks = [(name, hold(value)) for name, value in cache.items()]
    for layer, transcoder in enumerate(transcoders):
        hooks += [(transcoder.cfg.hook_in, read_input), (transcoder.cfg.hook_out, write_output(layer))]
    return model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0]


# --------------------------------------------------------------------------- 3. the attribution graph

def logit_attributions(model, transcoders, tokens: Int[Tensor, " pos"], token: int
                       ) -> Float[Tensor, "layer pos d_transcoder"]:
    """Every feature's direct effect on one logit node: the logit of `token` at the last
    position minus the mean logit there, in the replacement model frozen on `tokens`.

    A feature f of layer l at position p writes a * W_dec[f] into the residual stream (a
    its activation on the clean run); its direct effect is that vector dotted with the
    gradient of the target with respect to layer l's MLP output at p, taken with attention
    patterns and LayerNorm scales frozen and every MLP output held as a constant (so that
    no gradient passes through another feature). Zero for inactive features."""
    is_frozen = lambda name: name.endswith(("hook_pattern", "hook_scale"))  # noqa: E731
    mlp_hooks = {name for tc in transcoders for name in (tc.cfg.hook_in, tc.cfg.hook_out)}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None], names_filter=lambda name: is_frozen(name) or name in mlp_hooks)
    outputs = [cache[tc.cfg.hook_out][0].clone().requires_grad_() for tc in transcoders]
    hooks = [(name, lambda activation, hook, value=value: value) for name, value in cache.items() if is_frozen(name)]
    hooks += [(tc.cfg.hook_out, lambda mlp_out, hook, leaf=leaf: leaf[None]) for tc, leaf in zip(transcoders, outputs)]
    logits = model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0, -1]
    grads = torch.autograd.grad(logits[token] - logits.mean(), outputs)
    with torch.no_grad():
        return torch.stack([tc.encode(cache[tc.cfg.hook_in][0]) * (grad @ tc.W_dec.T)
                            for tc, grad in zip(transcoders, grads)])


# --------------------------------------------------------------------------- 4. pruning by influence

def node_influence(adjacency: Float[Tensor, "target source"], logit_weights: Float[Tensor, " node"]
                   ) -> Float[Tensor, " node"]:
    """Each node's influence on the output, over paths of every length: with W the
    adjacency's absolute values, each row scaled to sum to 1 (a row of zeros stays zero),
    logit_weights @ (W + W^2 + W^3 + ...). The edges point from earlier nodes to later
    ones, so the powers of W reach zero and the sum ends."""
    weights = adjacency.abs()
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)
    total = torch.zeros_like(logit_weights)
    term = logit_weights
    for _ in range(len(logit_weights)):
        term = term @ weights
        if not term.any():
            break
        total = total + term
    return total


def prune_nodes(adjacency: Float[Tensor, "target source"], logit_weights: Float[Tensor, " node"], threshold: float,
                always: Bool[Tensor, " node"]) -> Bool[Tensor, " node"]:
    """The nodes an attribution graph keeps: the most influential ones (`node_influence`),
    as few as needed for their influence to reach `threshold` of the total, and the nodes
    in `always` (the tokens and logits)."""
    scores = node_influence(adjacency, logit_weights)
    order = scores.argsort(descending=True)
    cumulative = scores[order].cumsum(dim=0) / scores.sum()
    n_kept = int((cumulative < threshold).sum()) + 1
    keep = torch.zeros_like(always)
    keep[order[:n_kept]] = True
    return keep | always


# --------------------------------------------------------------------------- 5. proving it by intervention

@torch.no_grad()
def ablation_effect(model, transcoders, tokens: Int[Tensor, " pos"], layer: int, pos: int, feature: int,
                    token: int) -> float:
    """Ablate one feature in the *real* model (attention and LayerNorm free to respond):
    subtract its activation times its decoder row from layer `layer`'s MLP output at
    position `pos`. Return the change in the logit of `token` at the last position minus
    the mean logit there (ablated minus clean)."""
    transcoder = transcoders[layer]
    _, cache = model.run_with_cache(tokens[None], names_filter=transcoder.cfg.hook_in)
    activation = transcoder.encode(cache[transcoder.cfg.hook_in][0, pos])[feature]

    def ablate(mlp_out: Tensor, hook) -> Tensor:
        mlp_out = mlp_out.clone()
        mlp_out[0, pos] -= activation * transcoder.W_dec[feature]
        return mlp_out

    def target(logits: Float[Tensor, "1 pos d_vocab"]) -> float:
        return (logits[0, -1, token] - logits[0, -1].mean()).item()

    return target(model.run_with_hooks(tokens[None], fwd_hooks=[(transcoder.cfg.hook_out, ablate)])) - target(
        model(tokens[None]))
