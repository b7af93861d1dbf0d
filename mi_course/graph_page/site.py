"""Write the attribution-graph page: a static folder that opens straight from disk.

The folder holds ``index.html``, ``graph.css`` and ``graph.js`` (copied from ``static/``
next to this module), ``page.js`` (the helpers it shares with the feature explorer, copied
from the explorer's ``static/``), ``data.js``, which assigns the graph and its features'
snippets to ``window.GRAPH_DATA``, and ``graph.json``, the graph alone in circuit-tracer's JSON schema
(so circuit-tracer's own frontend can open it too). As in the feature explorer, the data
arrives through a ``<script>`` tag because browsers refuse ``fetch`` from ``file://``,
nothing refers to any other address, and all text is set with ``textContent``.
"""

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from mi_course.explorer import byte_label, byte_text, validation_windows
from mi_course.explorer.site import STATIC_DIR as EXPLORER_STATIC_DIR
from mi_course.graph_page.snippets import graph_feature_snippets
from toy_models.attribution import build_attribution_graph, graph_to_json

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = ("index.html", "graph.css", "graph.js")


def write_graph_page(graph_json: dict, feature_snippets: dict, out: Path) -> Path:
    """Write the page for ``graph_json`` (circuit-tracer's schema) into ``out`` (created if
    needed), with ``feature_snippets`` from ``graph_feature_snippets``; return its index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(STATIC_DIR / name, out / name)
    shutil.copyfile(EXPLORER_STATIC_DIR / "page.js", out / "page.js")
    (out / "graph.json").write_text(json.dumps(graph_json, indent=1), encoding="utf-8")
    payload = {"graph": graph_json, "snippets": feature_snippets, "byte_text": [byte_text(b) for b in range(256)]}
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    (out / "data.js").write_text(f"window.GRAPH_DATA = {text};\n", encoding="utf-8")
    return out / "index.html"


def slug_of(prompt: str) -> str:
    """A short name for a graph, as circuit-tracer names its graph files: "def-parse-self-text"."""
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48].rstrip("-") or "graph"


def build_graph_page(
    model: nn.Module,
    transcoders: Sequence[nn.Module],
    prompt: str,
    out: Path,
    *,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
    n_windows: int = 256,
    top_k: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, dict]:
    """The attribution graph of the model's next byte after ``prompt``, pruned, with its
    features' top snippets on ``n_windows`` validation windows, written as the page.
    Returns the page's index.html and the graph's JSON."""
    tokens = torch.tensor(list(prompt.encode("utf-8")))
    if model.cfg.d_vocab != 256 or not 0 < len(tokens) <= model.cfg.n_ctx:
        raise ValueError(f"Need a byte-level model and a prompt of 1 to {model.cfg.n_ctx} bytes; got {len(tokens)}.")
    graph = build_attribution_graph(model, transcoders, tokens)
    graph_json = graph_to_json(
        graph, prompt=prompt, token_labels=[byte_label(b) for b in range(256)], slug=slug_of(prompt),
        node_threshold=node_threshold, edge_threshold=edge_threshold,
    )
    windows = validation_windows(n_windows, model.cfg.n_ctx, seed=seed)
    snippets = graph_feature_snippets(model, transcoders, graph_json, windows, top_k=top_k, progress=progress)
    return write_graph_page(graph_json, snippets, out), graph_json
