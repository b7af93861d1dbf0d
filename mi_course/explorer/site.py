"""Write the feature explorer: a static folder that opens straight from disk.

The folder holds five files: ``index.html``, ``explorer.css``, ``explorer.js`` and
``page.js`` (the helpers the attribution-graph page shares; all copied from ``static/``
next to this module) and ``data.js``, which assigns the features' data to
``window.EXPLORER_DATA``. Loading the data through a ``<script>`` tag, rather than
``fetch``ing a JSON file, is what lets the page work from a ``file://`` address: browsers
refuse ``fetch`` there. Nothing refers to any other address, so the page works offline.

The page renders all text with ``textContent``, never ``innerHTML``, so code snippets
such as ``x < y and "</script>"`` are shown as written, never parsed as HTML.
"""

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from mi_course.explorer.features import (
    FeatureSummary,
    SparseActivations,
    TopActivations,
    promoted_tokens,
    summarize_features,
    validation_windows,
    window_activations,
)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = ("index.html", "explorer.css", "explorer.js", "page.js")

BYTE_VOCAB = range(256)

# Visible stand-ins for bytes that have no glyph, shown in code snippets.
_SNIPPET_GLYPHS = {ord("\n"): "⏎", ord("\t"): "→", ord("\r"): "␍"}


def byte_text(value: int) -> str:
    """How a byte is shown inside a snippet: itself if printable ASCII (space included, so
    code keeps its shape), a glyph for newline (⏎), tab (→) and carriage return (␍), and
    its hex code (``\\xe2``) otherwise: control bytes and pieces of multi-byte characters."""
    if value in _SNIPPET_GLYPHS:
        return _SNIPPET_GLYPHS[value]
    if 32 <= value < 127:
        return chr(value)
    return f"\\x{value:02x}"


def byte_label(value: int) -> str:
    """How a byte is shown on its own (a promoted token): as in a snippet, but a space is
    "␣", since a lone blank would be invisible."""
    return "␣" if value == ord(" ") else byte_text(value)


def snippet(
    tokens: Int[Tensor, " pos"], activations: Float[Tensor, " pos"], max_pos: int, *, before: int, after: int
) -> dict:
    """The context around ``max_pos``: up to ``before`` tokens before it and ``after`` after."""
    start, end = max(0, max_pos - before), min(tokens.shape[0], max_pos + after + 1)
    return {
        "tokens": tokens[start:end].tolist(),
        "acts": [round(a, 3) for a in activations[start:end].tolist()],
        "max": max_pos - start,  # index of the max token within the snippet
    }


def top_snippets(
    tokens: Int[Tensor, "window pos"],
    acts: SparseActivations,
    top: TopActivations,
    features: list[int],
    *,
    before: int = 40,
    after: int = 16,
) -> list[list[dict]]:
    """Per feature in ``features``, the snippets around its top activations: best first, one
    per window, only windows where it fired, each byte with the feature's activation on it."""
    if not features:
        return []
    feature_ids = torch.tensor(features, dtype=torch.long)
    top_windows = top.window[feature_ids]  # [n_features, k]
    # Dense per-token activations for every (feature, top window) pair, in one go.
    pair_features = feature_ids[:, None].expand_as(top_windows).flatten()
    dense = window_activations(acts, pair_features, top_windows.flatten()).view(*top_windows.shape, -1)
    return [
        [
            snippet(tokens[window], dense[row, slot], int(pos), before=before, after=after)
            for slot, (window, pos, value) in enumerate(
                zip(top_windows[row].tolist(), top.pos[feature].tolist(), top.value[feature].tolist())
            )
            if value > 0
        ]
        for row, feature in enumerate(features)
    ]


def feature_records(
    summary: FeatureSummary,
    features: list[int],
    *,
    labels: Mapping[int, str] | None = None,
    n_tokens_shown: int = 10,
    before: int = 40,
    after: int = 16,
) -> list[dict]:
    """One JSON-ready record per feature in ``features``: its statistics, top snippets
    (best first, one per window, only windows where it fired), and promoted and
    suppressed tokens."""
    labels = labels or {}
    feature_ids = torch.tensor(features, dtype=torch.long)
    all_snippets = top_snippets(summary.tokens, summary.acts, summary.top, features, before=before, after=after)
    (up_ids, up_values), (down_ids, down_values) = promoted_tokens(summary.logit_effects[feature_ids], n_tokens_shown)

    records = []
    for row, (feature, snippets) in enumerate(zip(features, all_snippets)):
        records.append(
            {
                "id": feature,
                "label": labels.get(feature),
                "dead": bool(summary.frequency[feature] == 0),
                "frequency": float(summary.frequency[feature]),
                "max": round(float(summary.max_activation[feature]), 4),
                "histogram": summary.histogram[feature].tolist(),
                "snippets": snippets,
                "promoted": [[t, round(v, 3)] for t, v in zip(up_ids[row].tolist(), up_values[row].tolist())],
                "suppressed": [[t, round(v, 3)] for t, v in zip(down_ids[row].tolist(), down_values[row].tolist())],
            }
        )
    return records


def load_labels(path: Path, d_sae: int) -> dict[int, str]:
    """A labels file: a JSON object from feature id to a short description,
    e.g. ``{"12": "indentation after a colon"}``."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{feature id: label}}, got {type(raw).__name__}.")
    labels = {}
    for key, label in raw.items():
        if not (str(key).isdigit() and int(key) < d_sae):
            raise ValueError(f"{path}: {key!r} is not a feature id in [0, {d_sae}).")
        labels[int(key)] = str(label)
    return labels


def write_site(records: list[dict], meta: dict, out_dir: Path) -> Path:
    """Write the explorer into ``out_dir`` (created if needed); return its index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(STATIC_DIR / name, out_dir / name)
    payload = json.dumps({"meta": meta, "features": records}, ensure_ascii=True, separators=(",", ":"))
    (out_dir / "data.js").write_text(f"window.EXPLORER_DATA = {payload};\n", encoding="utf-8")
    return out_dir / "index.html"


def build_explorer(
    model: nn.Module,
    sae: nn.Module,
    out_dir: Path,
    *,
    n_windows: int = 1024,
    n_features: int | None = None,
    labels: Mapping[int, str] | None = None,
    title: str | None = None,
    top_k: int = 8,
    n_bins: int = 20,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Summarise the first ``n_features`` features of ``sae`` (default: all) on
    ``n_windows`` validation windows of the model's context length, and write the site."""
    if model.cfg.d_vocab != len(BYTE_VOCAB):
        raise ValueError(f"The explorer shows tokens as bytes; this model has d_vocab={model.cfg.d_vocab}, not 256.")
    d_sae = sae.cfg.d_sae
    features = list(range(d_sae if n_features is None else min(n_features, d_sae)))
    tokens = validation_windows(n_windows, model.cfg.n_ctx, seed=seed)
    summary = summarize_features(model, sae, tokens, top_k=top_k, n_bins=n_bins, progress=progress)
    records = feature_records(summary, features, labels=labels)
    meta = {
        "title": title or f"Features of the SAE at {sae.cfg.hook_name}",
        "hook_name": sae.cfg.hook_name,
        "d_sae": d_sae,
        "n_windows": n_windows,
        "n_tokens": summary.acts.n_tokens,
        "n_bins": n_bins,
        "n_dead": sum(record["dead"] for record in records),
        "byte_text": [byte_text(b) for b in BYTE_VOCAB],
        "byte_label": [byte_label(b) for b in BYTE_VOCAB],
    }
    return write_site(records, meta, out_dir)
