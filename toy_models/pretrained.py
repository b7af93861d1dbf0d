"""`load_pretrained(name)`: the shipped models, loaded from the repository with no network."""

from torch import nn

from toy_models.checkpoints import checkpoint_dir, load_weights, read_description
from toy_models.model import Transformer, TransformerConfig
from toy_models.sae import load_sae
from toy_models.superposition import load_superposition


def load_pretrained(name: str) -> nn.Module:
    """A shipped model in eval mode: `induction-2l`, `code-2l`, `ioi-3l`, `superposition-*`."""
    directory = checkpoint_dir(name)
    description = read_description(directory)
    if description["kind"] == "superposition":
        return load_superposition(directory)
    if description["kind"] == "sae":  # a sparse autoencoder, e.g. code-2l-sae
        return load_sae(name)
    return load_weights(directory, Transformer(TransformerConfig.from_dict(description["config"])))
