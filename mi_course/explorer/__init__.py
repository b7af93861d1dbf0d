"""The feature explorer: a static web page that browses the features of a sparse autoencoder.

    mi-course explore                      # the shipped SAE, into explorer/index.html

`features` computes what the page shows (pure functions of a model, an SAE and tokens);
`site` writes it as a folder that opens from disk with no server and no network.
"""

from mi_course.explorer.features import (
    FeatureActivations,
    FeatureSummary,
    SparseActivations,
    TopActivations,
    activation_histogram,
    decoder_residual_directions,
    encoder_at_hook,
    feature_logit_effects,
    firing_frequency,
    max_activation,
    promoted_tokens,
    sparse_activations,
    sparse_feature_activations,
    summarize_features,
    top_activations,
    validation_windows,
    window_activations,
)
from mi_course.explorer.site import (
    build_explorer,
    byte_label,
    byte_text,
    feature_records,
    load_labels,
    top_snippets,
    write_site,
)

__all__ = [
    "FeatureActivations",
    "FeatureSummary",
    "SparseActivations",
    "TopActivations",
    "activation_histogram",
    "build_explorer",
    "byte_label",
    "byte_text",
    "decoder_residual_directions",
    "encoder_at_hook",
    "feature_logit_effects",
    "feature_records",
    "firing_frequency",
    "load_labels",
    "max_activation",
    "promoted_tokens",
    "sparse_activations",
    "sparse_feature_activations",
    "summarize_features",
    "top_activations",
    "top_snippets",
    "validation_windows",
    "window_activations",
    "write_site",
]
