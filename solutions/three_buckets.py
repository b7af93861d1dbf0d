"""Reference solutions of chapter 01, the three buckets: behaviour, representation, mechanism.

Plain, pure functions: the chapter's notebook shows each one's signature and docstring and
hides its body (`solutions/01_three_buckets.py` builds it), and `graders.chapter_01`
compares learners' code with them.
"""

from collections.abc import Callable

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


def bracket_depth(tokens: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """How many brackets ( [ { are open after each byte, counting that byte itself.

    An opener adds 1 and a closer ) ] } takes 1 away, and the running depth is clamped at
    0 after each byte: a closer met at depth 0 is ignored (a window cut out of a file can
    start inside brackets, so it can meet closers first), so ")(" ends at depth 1, not 0.
    Each sequence of the batch is counted on its own, from depth 0.
    """
    is_open = torch.isin(tokens, torch.tensor([ord("("), ord("["), ord("{")])).long()
    is_close = torch.isin(tokens, torch.tensor([ord(")"), ord("]"), ord("}")])).long()
    depth = torch.zeros_like(tokens)
    current = torch.zeros(tokens.shape[0], dtype=tokens.dtype)
    for pos in range(tokens.shape[1]):
        current = (current + is_open[:, pos] - is_close[:, pos]).clamp(min=0)
        depth[:, pos] = current
    return depth


def closing_paren_accuracy(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, ""]:
    """The behavioural eval: of the positions where the next byte is `)`, the fraction where
    the model's top prediction (its argmax) is `)`.

    The logits at position p predict the token at p + 1. Returns a float scalar tensor.
    """
    predictions = logits[:, :-1].argmax(dim=-1)
    closes_next = tokens[:, 1:] == ord(")")
    return (predictions[closes_next] == ord(")")).float().mean()


def fit_probe(
    acts: Float[Tensor, "n d_model"], labels: Bool[Tensor, " n"], steps: int = 200, lr: float = 1.0
) -> tuple[Float[Tensor, " d_model"], Float[Tensor, ""]]:
    """A linear probe: logistic regression predicting `labels` from `acts`, trained by
    `steps` steps of full-batch gradient descent from zero weights, with learning rate
    `lr`, on the mean binary cross-entropy. Returns (direction, bias): the probe says True
    where `acts @ direction + bias > 0`. Deterministic: no random initialisation. (Train
    inside `with torch.enable_grad():`, so that it works where gradients are turned off.)
    """
    direction = torch.zeros(acts.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([direction, bias], lr=lr)
    targets = labels.float()
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(acts @ direction + bias, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return direction.detach(), bias.detach()


def held_out_probe_accuracy(
    acts: Float[Tensor, "n d_model"], labels: Bool[Tensor, " n"], train_fraction: float = 0.7, steps: int = 200
) -> Float[Tensor, ""]:
    """Fit a probe with your `fit_probe` (so check that first) on the first
    `train_fraction` of the examples and return its accuracy on the rest, the examples it
    never saw. Returns a float scalar tensor.
    """
    n_train = int(train_fraction * acts.shape[0])
    direction, bias = fit_probe(acts[:n_train], labels[:n_train], steps=steps)
    # A probe fitted in another dtype (float64, say) is read in the activations' own.
    predictions = acts[n_train:] @ direction.to(acts.dtype) + bias > 0
    return (predictions == labels[n_train:]).float().mean()


def ablate_direction(resid: Float[Tensor, "... d_model"], direction: Float[Tensor, " d_model"]) -> Float[Tensor, "... d_model"]:
    """Remove the component of each vector along `direction` (which need not have unit
    length): resid - (resid . d / |d|^2) d. What is left is orthogonal to d; everything
    orthogonal to d is untouched.
    """
    unit = direction / direction.norm()
    along = einops.einsum(resid, unit, "... d_model, d_model -> ...")
    return resid - along[..., None] * unit


def steer(resid: Float[Tensor, "... d_model"], direction: Float[Tensor, " d_model"], alpha: float) -> Float[Tensor, "... d_model"]:
    """Add `alpha` times the *unit* vector along `direction` to every vector."""
    return resid + alpha * direction / direction.norm()


def head_ablation_effect(
    model,
    tokens: Int[Tensor, "batch pos"],
    layer: int,
    head: int,
    metric: Callable[[Tensor, Tensor], Tensor],
) -> float:
    """Zero-ablate one attention head (set its output `z`, at hook `blocks.{layer}.attn.hook_z`,
    to 0 for that head only, at every position) and return how much `metric(logits, tokens)`
    changes: metric with the head ablated minus metric on the clean run, as a float.
    """

    def zero_head(z: Float[Tensor, "batch pos n_heads d_head"], hook) -> Tensor:
        z = z.clone()
        z[:, :, head] = 0
        return z

    with torch.no_grad():
        clean = metric(model(tokens), tokens)
        ablated = metric(model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)]), tokens)
    return float(ablated - clean)
