"""Graders for chapter 07, transcoders and attribution graphs in miniature.

The references are `solutions/attribution_graphs.py`. Each grader runs the learner's
function and the reference on small random transformers with LayerNorm and MLPs (whose
LayerNorm scales are far from 1 and whose attention is far from uniform, so that code
which forgets to freeze either shows it) with random transcoders of the course's
`Transcoder` class, and on attribution graphs that `toy_models.attribution` builds on them.
Where the answers differ, diagnostics compute what each common mistake would have given
and name the one that matches.

The learner's functions are only called, with models, transcoders, tensors and numbers.
"""

from functools import cache

import torch
from torch import Tensor

from graders.core import Chapter, as_tensor, compare_tensors, looks_like
from graders.models import randomized
from solutions import attribution_graphs as reference
from toy_models import attribution
from toy_models.model import Transformer, TransformerConfig
from toy_models.transcoder import Transcoder, TranscoderConfig

CHAPTER = Chapter("07_attribution_graphs")
SHAPES = {
    "2 layers": TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_vocab=11, n_ctx=8, d_mlp=32,
                                  normalization_type="LN"),
    "3 layers": TransformerConfig(n_layers=3, d_model=12, n_heads=3, d_head=4, d_vocab=9, n_ctx=7, d_mlp=24,
                                  normalization_type="LN"),
}
VARIANTS = ({"shape": "2 layers"}, {"shape": "2 layers", "seed": 1}, {"shape": "3 layers", "seed": 2})


# --------------------------------------------------------------------------- the models graded on

@cache
def setup(shape: str, seed: int) -> tuple[Transformer, list[Transcoder], Tensor, Tensor]:
    """(model, one transcoder per layer, a prompt, another prompt of the same length)."""
    cfg = SHAPES[shape]
    model = randomized(cfg, seed)
    generator = torch.Generator().manual_seed(seed)
    transcoders = []
    for layer in range(cfg.n_layers):
        transcoder = Transcoder(TranscoderConfig(cfg.d_model, 3 * cfg.d_model, layer, k=5, model_name="random"))
        with torch.no_grad():
            for param in transcoder.parameters():
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
        transcoders.append(transcoder.requires_grad_(False).eval())
    prompt, other = (torch.randint(0, cfg.d_vocab, (cfg.n_ctx,), generator=generator) for _ in range(2))
    return model, transcoders, prompt, other


def describe(shape: str) -> str:
    return f"a random {shape} transformer with LayerNorm, MLPs and random transcoders"


CHAPTER.glossary = {"shape": describe}


def top_token(model: Transformer, tokens: Tensor) -> int:
    return int(model(tokens[None])[0, -1].argmax())


def is_frozen(name: str) -> bool:
    return name.endswith(("hook_pattern", "hook_scale"))


def _clean_cache(model: Transformer, tokens: Tensor):
    with torch.no_grad():
        return model.run_with_cache(tokens[None])[1]


# --------------------------------------------------------------------------- 1. transcoder_loss

@CHAPTER.exercise("transcoder_loss", points=1, reference=reference.transcoder_loss, variants=VARIANTS,
                  hint="(transcoder(mlp_in) - mlp_out).pow(2).sum(dim=-1).mean(): the prediction is of the MLP's "
                       "output, from its input.")
def grade_transcoder_loss(transcoder_loss, *, seed=0, shape="2 layers"):
    _, transcoders, _, _ = setup(shape, seed)
    transcoder = transcoders[0]
    generator = torch.Generator().manual_seed(seed)
    mlp_in, mlp_out = (torch.randn(10, transcoder.cfg.d_model, generator=generator) for _ in range(2))
    error = transcoder(mlp_in) - mlp_out
    compare_tensors(
        as_tensor(transcoder_loss(transcoder, mlp_in.clone(), mlp_out.clone())),
        reference.transcoder_loss(transcoder, mlp_in, mlp_out),
        what=f"transcoder_loss on a batch of 10 ({describe(shape)})",
        mistakes=[
            (looks_like(lambda: (transcoder(mlp_in) - mlp_in).pow(2).sum(dim=-1).mean()),
             "you compared the prediction with the MLP's input: a transcoder predicts the MLP's *output* (an SAE "
             "reconstructs its input)."),
            (looks_like(lambda: error.pow(2).mean()),
             "you averaged over d_model as well: sum the squared error over d_model, then average over the batch."),
            (looks_like(lambda: error.pow(2).sum()),
             "you summed over the batch too: average the per-token errors over the batch."),
            (looks_like(lambda: error.norm(dim=-1).mean()),
             "you averaged the error's norm: the loss is its *squared* norm."),
        ],
    )


# --------------------------------------------------------------------------- 2. error nodes

def _swap_mlps(transcoders, errors=None) -> list:
    """Hooks that replace each given layer's MLP output by its transcoder's prediction from
    the MLP's input on this run (plus `errors[layer]`, if given)."""
    seen = {}

    def remember(mlp_in: Tensor, hook) -> None:
        seen[hook.name] = mlp_in

    def predict(layer: int, tc: Transcoder):
        error = 0.0 if errors is None else errors[layer]
        return lambda mlp_out, hook: tc(seen[tc.cfg.hook_in]) + error

    return [hook for layer, tc in enumerate(transcoders)
            for hook in ((tc.cfg.hook_in, remember), (tc.cfg.hook_out, predict(layer, tc)))]


def _errors_from(model, transcoders, tokens, hook_in=None, chained=False, flipped=False) -> Tensor:
    """Error nodes with a common mistake: another input to the transcoder, errors of a model
    whose earlier MLPs are already replaced, or the sign flipped."""
    rows = []
    for layer, transcoder in enumerate(transcoders):
        hooks = _swap_mlps(transcoders[:layer]) if chained else []
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            _, cache = model.run_with_cache(tokens[None])
        mlp_in = cache[hook_in.format(layer=layer) if hook_in else transcoder.cfg.hook_in][0]
        error = cache[transcoder.cfg.hook_out][0] - transcoder(mlp_in)
        rows.append(-error if flipped else error)
    return torch.stack(rows)


@CHAPTER.exercise("error_nodes", points=2, reference=reference.error_nodes, variants=VARIANTS,
                  forbidden=(attribution.run_clean,),
                  hint="One run_with_cache of the clean tokens; at each layer, cache[hook_out][0] - "
                       "transcoder(cache[hook_in][0]) (hook_in: the MLP's input, after ln2), stacked over layers.")
def grade_error_nodes(error_nodes, *, seed=0, shape="2 layers"):
    model, transcoders, prompt, _ = setup(shape, seed)
    compare_tensors(
        error_nodes(model, transcoders, prompt.clone()), reference.error_nodes(model, transcoders, prompt),
        what=f"error_nodes on {describe(shape)} ([layer, pos, d_model])",
        mistakes=[
            (looks_like(lambda: _errors_from(model, transcoders, prompt, flipped=True)),
             "the sign is flipped: an error node is the MLP's true output minus the transcoder's prediction, what "
             "must be *added* to the transcoder to get the model back."),
            (looks_like(lambda: _errors_from(model, transcoders, prompt, hook_in="blocks.{layer}.hook_resid_mid")),
             "you fed the transcoder the residual stream before ln2: it reads what the MLP reads, "
             "blocks.L.ln2.hook_normalized (transcoder.cfg.hook_in)."),
            (looks_like(lambda: _errors_from(model, transcoders, prompt, chained=True)),
             "you measured each layer's error in a model whose earlier MLPs were already replaced: every error "
             "node comes from the model's own clean run."),
        ],
    )


# --------------------------------------------------------------------------- 3. the replacement model

def _replacement(model, transcoders, clean, tokens, *, freeze=("hook_pattern", "hook_scale"), errors=True) -> Tensor:
    """The replacement model with some of its parts left out."""
    cache = _clean_cache(model, clean)
    hooks = [(name, lambda act, hook, value=value: value) for name, value in cache.items()
             if name.endswith(tuple(freeze))]
    hooks += _swap_mlps(transcoders, reference.error_nodes(model, transcoders, clean) if errors else None)
    with torch.no_grad():
        return model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0]


@CHAPTER.exercise("replacement_logits", points=3, reference=reference.replacement_logits, variants=VARIANTS,
                  forbidden=(attribution.replacement_logits, attribution.freezing_hooks, attribution.transcoder_hooks),
                  uses=("error_nodes",),
                  hint="Cache every hook_pattern and hook_scale of the clean run and hook them back in, unchanged; "
                       "at each layer, a hook on hook_in keeps the MLP's input and a hook on hook_out returns "
                       "transcoder(that input) + the clean run's error node. Run `tokens` with all of them.")
def grade_replacement_logits(replacement_logits, *, seed=0, shape="2 layers"):
    model, transcoders, prompt, other = setup(shape, seed)
    what = f"replacement_logits on {describe(shape)}"
    with torch.no_grad():
        own = model(prompt[None])[0]
    compare_tensors(
        replacement_logits(model, transcoders, prompt.clone(), prompt.clone()), own,
        what=f"{what}, run on the prompt it was built from (it must give the model's own logits)",
        mistakes=[
            (looks_like(lambda: _replacement(model, transcoders, prompt, prompt, errors=False)),
             "you left out the error nodes: add each layer's error (true MLP output minus the transcoder's) so "
             "that the replacement is exact on its prompt."),
        ],
    )
    compare_tensors(
        replacement_logits(model, transcoders, prompt.clone(), other.clone()),
        reference.replacement_logits(model, transcoders, prompt, other),
        what=f"{what}, built on one prompt and run on another",
        mistakes=[
            (looks_like(lambda: model(other[None])[0]),
             "this is the model itself on the new prompt: nothing was frozen. Hold the clean run's attention "
             "patterns and LayerNorm scales, and its error nodes, fixed."),
            (looks_like(lambda: _replacement(model, transcoders, prompt, other, freeze=("hook_pattern",))),
             "the LayerNorm scales were not frozen (hook_scale, in every ln1, ln2 and ln_final): without them the "
             "replacement model is not linear."),
            (looks_like(lambda: _replacement(model, transcoders, prompt, other, freeze=("hook_scale",))),
             "the attention patterns were not frozen (hook_pattern): hold them at the clean run's values."),
            (looks_like(lambda: _replacement(model, transcoders, prompt, other, errors=False)),
             "you left out the error nodes."),
            (looks_like(lambda: _replacement(model, transcoders, other, other)),
             "you froze the patterns and scales of the run on `tokens`: they come from `clean_tokens`."),
        ],
    )


# --------------------------------------------------------------------------- 4. logit attributions

def _attributions(model, transcoders, tokens, token, *, freeze=("hook_pattern", "hook_scale"), centred=True,
                  leaves=True, times_activation=True) -> Tensor:
    """logit_attributions with one of the common mistakes."""
    cache = _clean_cache(model, tokens)
    outputs = [cache[tc.cfg.hook_out][0].clone().requires_grad_() for tc in transcoders]
    hooks = [(name, lambda act, hook, value=value: value) for name, value in cache.items()
             if name.endswith(tuple(freeze))]
    if leaves:
        hooks += [(tc.cfg.hook_out, lambda out, hook, leaf=leaf: leaf[None]) for tc, leaf in zip(transcoders, outputs)]
    else:  # each MLP output is the leaf plus what flows into it from earlier layers: gradients pass through MLPs
        hooks += [(tc.cfg.hook_out, lambda out, hook, leaf=leaf: out - out.detach() + leaf[None])
                  for tc, leaf in zip(transcoders, outputs)]
    logits = model.run_with_hooks(tokens[None], fwd_hooks=hooks)[0, -1]
    target = logits[token] - logits.mean() if centred else logits[token]
    grads = torch.autograd.grad(target, outputs)
    rows = []
    for tc, grad in zip(transcoders, grads):
        acts = tc.encode(cache[tc.cfg.hook_in][0])
        rows.append((grad @ tc.W_dec.T) * (acts if times_activation else (acts > 0)))
    return torch.stack(rows).detach()


@CHAPTER.exercise("logit_attributions", points=3, reference=reference.logit_attributions, variants=VARIANTS,
                  forbidden=(attribution.build_attribution_graph, attribution.frozen_forward,
                             attribution.source_effects, attribution.target_values),
                  hint="Freeze the clean run's hook_pattern and hook_scale values; replace each hook_out by a leaf "
                       "holding its clean value (clone().requires_grad_()); take torch.autograd.grad of logits[-1, "
                       "token] - logits[-1].mean() with respect to the leaves; then activation * (grad @ W_dec.T).")
def grade_logit_attributions(logit_attributions, *, seed=0, shape="2 layers"):
    model, transcoders, prompt, _ = setup(shape, seed)
    token = top_token(model, prompt)
    compare_tensors(
        logit_attributions(model, transcoders, prompt.clone(), token),
        reference.logit_attributions(model, transcoders, prompt, token),
        what=f"logit_attributions on {describe(shape)}, for its most likely next token ([layer, pos, d_transcoder])",
        mistakes=[
            (looks_like(lambda: _attributions(model, transcoders, prompt, token, centred=False)),
             "you attributed the raw logit: the target is the logit minus the mean logit, so that what raises "
             "every logit alike counts for nothing."),
            (looks_like(lambda: _attributions(model, transcoders, prompt, token, freeze=("hook_pattern",))),
             "the gradient went through the LayerNorm scales: freeze every hook_scale (and the patterns) at the "
             "clean run's values, so the model is linear."),
            (looks_like(lambda: _attributions(model, transcoders, prompt, token, freeze=("hook_scale",))),
             "the gradient went through the attention patterns: freeze every hook_pattern at its clean value."),
            (looks_like(lambda: _attributions(model, transcoders, prompt, token, leaves=False)),
             "the gradient passed through later MLPs: that is a total effect. Hold every MLP output as a constant "
             "leaf, so that only direct paths count."),
            (looks_like(lambda: _attributions(model, transcoders, prompt, token, times_activation=False)),
             "you left out the activation: the effect of a feature is activation * (its decoder row . gradient)."),
        ],
    )


# --------------------------------------------------------------------------- 5. influence and pruning

@cache
def graph(shape: str, seed: int) -> attribution.AttributionGraph:
    model, transcoders, prompt, _ = setup(shape, seed)
    return attribution.build_attribution_graph(model, transcoders, prompt, max_logits=3, logit_probability=0.99)


def _normalised(adjacency: Tensor, signed: bool = False) -> Tensor:
    """|A| with rows scaled to sum to 1; or, the mistake, A scaled by its signed row sums."""
    weights = adjacency if signed else adjacency.abs()
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _series(weights: Tensor, start: Tensor, *, terms: int | None = None, include_start: bool = False) -> Tensor:
    total, term = (start.clone() if include_start else torch.zeros_like(start)), start
    for _ in range(terms or len(start)):
        term = term @ weights
        total = total + term
    return total


@CHAPTER.exercise("node_influence", points=2, reference=reference.node_influence, variants=VARIANTS,
                  forbidden=(attribution.influence, attribution.normalized_weights),
                  hint="W = |A| / its row sums; then add up logit_weights @ W, @ W @ W, ... until the term is zero "
                       "(or solve with (I - W)).")
def grade_node_influence(node_influence, *, seed=0, shape="2 layers"):
    g = graph(shape, seed)
    adjacency, weights = g.adjacency.double(), g.logit_weights()
    compare_tensors(
        node_influence(adjacency.clone(), weights.clone()), reference.node_influence(adjacency, weights),
        what=f"node_influence on the attribution graph of {describe(shape)} ({len(g.nodes)} nodes)",
        mistakes=[
            (looks_like(lambda: _series(adjacency.abs(), weights)),
             "you did not normalise: scale each row of |A| to sum to 1, so that a node's influence is a share."),
            (looks_like(lambda: _series(_normalised(adjacency, signed=True), weights)),
             "you kept the signs: influence uses |A|, since an edge that lowers a logit is as much part of the "
             "explanation as one that raises it."),
            (looks_like(lambda: _series(_normalised(adjacency), weights, terms=1)),
             "you kept only the direct edges (W once): influence sums paths of every length, W + W^2 + ..."),
            (looks_like(lambda: _series(_normalised(adjacency), weights, include_start=True)),
             "you included the logit weights themselves (I + W + W^2 + ...): start the sum at W."),
            (looks_like(lambda: _series(_normalised(adjacency).T, weights)),
             "you multiplied on the wrong side: rows are targets, so influence flows as logit_weights @ W."),
        ],
    )


def _pruned(scores: Tensor, threshold: float, always: Tensor, *, one_fewer=False) -> Tensor:
    order = scores.argsort(descending=True)
    cumulative = scores[order].cumsum(dim=0) / scores.sum()
    n_kept = int((cumulative < threshold).sum()) + (0 if one_fewer else 1)
    keep = torch.zeros_like(always)
    keep[order[:n_kept]] = True
    return keep | always


@CHAPTER.exercise("prune_nodes", points=2, reference=reference.prune_nodes, variants=(
                      {"shape": "2 layers", "threshold": 0.8}, {"shape": "2 layers", "seed": 1, "threshold": 0.5},
                      {"shape": "3 layers", "seed": 2, "threshold": 0.9}),
                  forbidden=(attribution.prune_graph, attribution.find_threshold), uses=("node_influence",),
                  hint="Sort the nodes by node_influence, largest first; keep as many as it takes for their "
                       "cumulative share of the total to reach the threshold; then add the `always` nodes.")
def grade_prune_nodes(prune_nodes, *, seed=0, shape="2 layers", threshold=0.8):
    g = graph(shape, seed)
    adjacency, weights = g.adjacency.double(), g.logit_weights()
    always = g.mask("token") | g.mask("logit")
    scores = reference.node_influence(adjacency, weights)
    raw = adjacency.abs().sum(dim=0)  # each node's total outgoing |weight|
    kept = prune_nodes(adjacency.clone(), weights.clone(), threshold, always.clone())
    expected = reference.prune_nodes(adjacency, weights, threshold, always)
    if isinstance(kept, Tensor) and kept.dtype == torch.bool:
        kept = kept.float()
    compare_tensors(
        kept, expected.float(),
        what=f"prune_nodes(threshold={threshold}) on the attribution graph of {describe(shape)} (1: kept)",
        mistakes=[
            (looks_like(lambda: _pruned(raw, threshold, always).float()),
             "you ranked the nodes by their raw edge weights: rank them by influence, which follows every path "
             "to the logits, so a node with large edges into nodes that matter little ranks low."),
            (looks_like(lambda: _pruned(scores, threshold, always, one_fewer=True).float()),
             "you stopped one node short: keep nodes until their cumulative share *reaches* the threshold."),
            (looks_like(lambda: _pruned(scores, threshold, torch.zeros_like(always)).float()),
             "you left out the `always` nodes (the tokens and the logits): keep them whatever their influence."),
        ],
    )


# --------------------------------------------------------------------------- 6. ablation in the real model

def _ablated(model, transcoders, tokens, layer, pos, feature, token, *, frozen=False, whole=False, centred=True,
             flipped=False) -> Tensor:
    transcoder = transcoders[layer]
    cache = _clean_cache(model, tokens)
    activation = transcoder.encode(cache[transcoder.cfg.hook_in][0, pos])[feature]

    def ablate(out, hook):
        out = out.clone()
        out[0, pos] = 0.0 if whole else out[0, pos] - activation * transcoder.W_dec[feature]
        return out

    hooks = [(transcoder.cfg.hook_out, ablate)]
    if frozen:
        hooks += [(name, lambda act, hook, value=value: value) for name, value in cache.items() if is_frozen(name)]

    def target(logits):
        return logits[0, -1, token] - logits[0, -1].mean() if centred else logits[0, -1, token]

    with torch.no_grad():
        change = target(model.run_with_hooks(tokens[None], fwd_hooks=hooks)) - target(model(tokens[None]))
    return -change if flipped else change


@cache
def strongest_feature(shape: str, seed: int) -> tuple[int, int, int]:
    """(layer, position, feature) of the feature with the largest direct effect on the top logit."""
    model, transcoders, prompt, _ = setup(shape, seed)
    effects = reference.logit_attributions(model, transcoders, prompt, top_token(model, prompt))
    return tuple(int(i) for i in torch.unravel_index(effects.abs().argmax(), effects.shape))


@CHAPTER.exercise("ablation_effect", points=2, reference=reference.ablation_effect, variants=VARIANTS,
                  forbidden=(attribution.measured_change, attribution.feature_shift_hooks),
                  hint="Read the feature's activation from the clean run (transcoder.encode of hook_in at that "
                       "position); a hook on hook_out subtracts activation * W_dec[feature] at that position; the "
                       "change of logits[-1, token] - logits[-1].mean(), ablated minus clean.")
def grade_ablation_effect(ablation_effect, *, seed=0, shape="2 layers"):
    model, transcoders, prompt, _ = setup(shape, seed)
    layer, pos, feature = strongest_feature(shape, seed)
    token = top_token(model, prompt)
    where = dict(layer=layer, pos=pos, feature=feature, token=token)
    compare_tensors(
        as_tensor(ablation_effect(model, transcoders, prompt.clone(), layer, pos, feature, token)),
        torch.tensor(reference.ablation_effect(model, transcoders, prompt, layer, pos, feature, token)),
        what=f"ablation_effect(layer={layer}, pos={pos}, feature={feature}, token={token}) on {describe(shape)}",
        mistakes=[
            (looks_like(lambda: _ablated(model, transcoders, prompt, **where, frozen=True)),
             "you ablated in the frozen replacement model: the test of a graph is the *real* model, where attention "
             "and LayerNorm respond to the change."),
            (looks_like(lambda: _ablated(model, transcoders, prompt, **where, whole=True)),
             "you zeroed the whole MLP output at that position: subtract only this feature's activation * W_dec."),
            (looks_like(lambda: _ablated(model, transcoders, prompt, **where, centred=False)),
             "you measured the raw logit: measure the logit minus the mean logit, the graph's target."),
            (looks_like(lambda: _ablated(model, transcoders, prompt, **where, flipped=True)),
             "the sign is flipped: return the ablated run's value minus the clean run's."),
        ],
    )
