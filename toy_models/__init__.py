"""From-scratch toy transformers, their data and training, and the shipped checkpoints."""

from toy_models.hf import from_hf_gpt2
from toy_models.model import Transformer, TransformerConfig
from toy_models.pretrained import load_pretrained
from toy_models.train import train

__all__ = ["Transformer", "TransformerConfig", "from_hf_gpt2", "load_pretrained", "train"]
