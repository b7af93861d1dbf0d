"""The models the graders run learners' code on: the shipped checkpoints, and random ones.

A grader checks a learner's function on the shipped model (does it find what the chapter
found?) and on a random model of other shapes (does it assume the shipped model's?).
"""

from __future__ import annotations

from functools import cache

import torch

from toy_models import load_pretrained
from toy_models.model import Transformer, TransformerConfig

__all__ = ["shipped", "randomized"]


@cache
def shipped(name: str) -> Transformer:
    """The shipped checkpoint `name`, loaded once and shared by every grader: frozen, so that
    no learner's code can train it for the next."""
    return load_pretrained(name).requires_grad_(False).eval()


def randomized(cfg: TransformerConfig, seed: int) -> Transformer:
    """A model of `cfg` with weights large enough that heads differ from each other, and
    LayerNorm scales far from 1, so that code which forgets them shows it."""
    torch.manual_seed(seed)
    model = Transformer(cfg)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            kind = name.split(".")[-1]
            if kind.startswith("W_"):
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
            elif kind == "w":
                param.copy_(1 + 0.3 * torch.randn(param.shape, generator=generator))
    return model.requires_grad_(False).eval()
