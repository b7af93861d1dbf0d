"""What each feature of an attribution graph fires on: its top snippets of validation code.

A node of the graph is one feature of one transcoder at one position of the prompt; what
the feature *means* is read off elsewhere, from the text on which it fires most. The
feature explorer (chapter 04) already finds that text for an SAE's features; here the same
functions read a transcoder's, from the activation the transcoder reads (``cfg.hook_in``).
"""

from collections.abc import Iterable

from jaxtyping import Int
from torch import Tensor, nn

from mi_course.explorer import encoder_at_hook, max_activation, sparse_activations, top_activations, top_snippets

#: circuit-tracer's ``feature_type`` of a transcoder feature's node.
FEATURE_NODE = "cross layer transcoder"


def feature_key(layer: int, feature: int) -> str:
    """How the page names one feature of one layer's transcoder (circuit-tracer's
    ``node_id`` of a feature is ``{layer}_{feature}_{position}``; this is its first two parts)."""
    return f"{layer}_{feature}"


def graph_features(graph_json: dict) -> dict[int, list[int]]:
    """The features that appear as nodes of the graph, by layer, each listed once."""
    by_layer: dict[int, set[int]] = {}
    for node in graph_json["nodes"]:
        if node["feature_type"] == FEATURE_NODE:
            layer, feature, _position = node["node_id"].split("_")
            by_layer.setdefault(int(layer), set()).add(int(feature))
    return {layer: sorted(features) for layer, features in sorted(by_layer.items())}


def graph_feature_snippets(
    model: nn.Module,
    transcoders: Iterable[nn.Module],
    graph_json: dict,
    tokens: Int[Tensor, "window pos"],
    *,
    top_k: int = 5,
    before: int = 28,
    after: int = 12,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, dict]:
    """For every feature node of ``graph_json``: its largest activation on ``tokens`` and the
    snippets around its ``top_k`` most active windows (``before`` bytes before each peak and
    ``after`` after: shorter than the explorer's, to fit the page's side panel), keyed by
    ``feature_key``."""
    wanted = graph_features(graph_json)
    records = {}
    for transcoder in transcoders:
        layer = transcoder.cfg.layer
        if layer not in wanted:
            continue
        encoder = encoder_at_hook(model, transcoder.cfg.hook_in, transcoder.encode)
        acts = sparse_activations(encoder, tokens, batch_size=batch_size, progress=progress)
        maxima = max_activation(acts)
        top = top_activations(acts, top_k)
        snippets = top_snippets(tokens, acts, top, wanted[layer], before=before, after=after)
        for feature, feature_snippets in zip(wanted[layer], snippets):
            records[feature_key(layer, feature)] = {
                "layer": layer,
                "feature": feature,
                "max": round(float(maxima[feature]), 4),
                "snippets": feature_snippets,
            }
    return records
