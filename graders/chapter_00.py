"""Graders for chapter 00, a transformer from scratch.

The references are `solutions.transformer_from_scratch`, in the learner's interface. The
learner's modules keep their parameter names and shapes, so each grader builds the
learner's module, loads the reference module's seeded random weights into it, and compares
the outputs on seeded random inputs and on edge cases: one sequence of one token, and
sequences as long as the context. Where the outputs differ, diagnostics work out what each
common mistake would have given, by editing the reference's intermediate values through
its hook points or putting its pieces together the wrong way, and name the mistake that
matches.

The course's hooked model, `toy_models.model`, holds the same pieces, and a notebook can
import it: each exercise names its equivalent there as `forbidden`, so that in
`mi-course grade` code which is, inherits from, wraps or calls it earns nothing.

Every grader takes `seed` (the random weights and inputs) and `config` (a key of
`CONFIGS`, or a `TransformerConfig`); the notebook's hidden tests use another seed and odd
model shapes.
"""

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from graders.core import Chapter, Mistake, compare_tensors, load_reference_weights, looks_like
from solutions import transformer_from_scratch as reference
from toy_models import TransformerConfig
from toy_models import model as course_model

CHAPTER = Chapter("00_transformer_from_scratch", glossary={"config": lambda config: shapes(config_of(config))})

CONFIGS = {
    "small": TransformerConfig(n_layers=2, d_model=32, n_heads=4, d_vocab=50, n_ctx=16, d_mlp=64),
    # Sizes the learner has not seen, with d_head != d_model / n_heads: code that assumes
    # the shapes of the visible tests fails here.
    "odd_shapes": TransformerConfig(n_layers=3, d_model=20, n_heads=5, d_head=6, d_vocab=37, n_ctx=11, d_mlp=28),
}
VARIANTS = ({}, {"seed": 1, "config": "odd_shapes"})

#: A key of CONFIGS, or any configuration (the tests draw them at random).
Config = str | TransformerConfig


def config_of(config: Config) -> TransformerConfig:
    return CONFIGS[config] if isinstance(config, str) else config


def shapes(cfg: TransformerConfig) -> str:
    """A configuration's sizes, as a failure message names them: "n_layers=3, d_model=20, ..."."""
    return ", ".join(f"{name}={getattr(cfg, name)}" for name in ("n_layers", "d_model", "n_heads", "d_head", "d_vocab",
                                                                  "n_ctx", "d_mlp"))

# Any score at or below this counts as masked: -inf, or a large negative number such as
# -1e5, which softmax turns into a weight of exactly 0 in float32.
MASKED = -1e4


# --------------------------------------------------------------------------- helpers

def with_random_weights(module: nn.Module, seed: int) -> nn.Module:
    """`module` in eval mode with random weights large enough to make mistakes visible
    (with GPT-2's initial weights attention is nearly uniform and LayerNorm the identity,
    so a missing scale or a swapped axis would hardly change the output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_layer_norm_weight = name.split(".")[-1] == "w"
            param.copy_(1 + 0.2 * noise if is_layer_norm_weight else 0.3 * noise)
    return module.eval()


def learner_module(learner_class: type, cfg: TransformerConfig, ref: nn.Module) -> nn.Module:
    """The learner's module for `cfg`, holding the reference module's weights."""
    learner = learner_class(cfg)
    load_reference_weights(learner, ref, what=f"{learner_class.__name__}(cfg)")
    return learner.eval()


def sizes(cfg: TransformerConfig) -> list[tuple[str, int, int]]:
    """(description, batch, pos): a random batch, then the edge cases."""
    return [
        (f"a random batch of shape (batch=2, pos={min(7, cfg.n_ctx)})", 2, min(7, cfg.n_ctx)),
        ("one sequence of one token", 1, 1),
        (f"3 sequences of the full context length n_ctx={cfg.n_ctx}", 3, cfg.n_ctx),
    ]


def random_residual(generator: torch.Generator, batch: int, pos: int, d_model: int) -> Float[Tensor, "batch pos d_model"]:
    """Residual-stream vectors with a mean and a spread far from 0 and 1, as real ones have."""
    return 1.5 + 3 * torch.randn(batch, pos, d_model, generator=generator)


@contextmanager
def edited(*edits: tuple[HookPoint, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Inside the block, each hook point's value `v` is replaced by `edit(v)`: the
    reference then computes what a learner who made one particular mistake computes."""
    for point, edit in edits:
        point.add_hook(lambda value, hook, edit=edit: edit(value))
    try:
        yield
    finally:
        for point, _ in edits:
            point.remove_hooks()


def leaks_future(run: Callable[[Tensor], Tensor], inputs: Tensor, changed_last: Tensor) -> Callable[[Tensor], bool]:
    """Diagnostic: does changing only the last position's input change the output at
    earlier positions? A causal model must not let a position see what comes after it."""

    def leaks(actual: Tensor) -> bool:
        if inputs.shape[1] < 2 or not actual.isfinite().all():
            return False
        changed = run(changed_last)
        return changed.shape == actual.shape and not torch.allclose(changed[:, :-1], actual[:, :-1])

    return leaks


def has_nan_or_inf(actual: Tensor) -> bool:
    return not actual.isfinite().all()


# --------------------------------------------------------------------------- LayerNorm

def layer_norm_with(x: Tensor, ln: reference.LayerNorm, *, dim: int = -1, unbiased: bool = False,
                    eps_inside: bool = True, centre: bool = True, affine: bool = True) -> Tensor:
    """LayerNorm computed with one of the usual mistakes."""
    centred = x - x.mean(dim, keepdim=True) if centre else x
    n = x.shape[dim]
    variance = centred.pow(2).sum(dim, keepdim=True) / (n - 1 if unbiased else n)
    eps = ln.cfg.layer_norm_eps
    scale = (variance + eps).sqrt() if eps_inside else variance.sqrt() + eps
    normalized = centred / scale
    return normalized * ln.w + ln.b if affine else normalized


@CHAPTER.exercise(
    "LayerNorm", points=2, reference=reference.LayerNorm, forbidden=(course_model.LayerNorm,), variants=VARIANTS,
    hint="Centre each position's vector (mean over d_model), divide by sqrt(biased variance + eps), "
         "then scale by w and shift by b.",
)
@torch.no_grad()
def grade_layer_norm(LayerNorm: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.LayerNorm(cfg), seed)
    learner = learner_module(LayerNorm, cfg, ref)
    generator = torch.Generator().manual_seed(seed)
    inputs = [(description, random_residual(generator, batch, pos, cfg.d_model)) for description, batch, pos in sizes(cfg)]
    inputs += [
        ("vectors whose entries are all equal (variance 0)", torch.full((1, 2, cfg.d_model), 2.0)),
        ("vectors of tiny entries (spread 1e-3), where eps matters",
         1e-3 * torch.randn(2, 3, cfg.d_model, generator=generator)),
    ]
    for description, x in inputs:
        compare_tensors(learner(x), ref(x), what=f"LayerNorm output for {description}", mistakes=[
            (looks_like(lambda: layer_norm_with(x, ref, unbiased=True)),
             "you used the unbiased variance (dividing by d_model - 1, as torch.var does by default); "
             "LayerNorm divides by d_model: use .var(unbiased=False) or .pow(2).mean()."),
            (looks_like(lambda: layer_norm_with(x, ref, eps_inside=False)),
             "you added eps after the square root; it goes inside: sqrt(variance + eps)."),
            (looks_like(lambda: layer_norm_with(x, ref, dim=-2)),
             "you normalised over positions; normalise each position's vector, over d_model (dim=-1)."),
            (looks_like(lambda: layer_norm_with(x, ref, centre=False)),
             "you did not subtract the mean before dividing (that is RMSNorm, not LayerNorm)."),
            (looks_like(lambda: layer_norm_with(x, ref, affine=False)),
             "you normalised but did not apply the learned scale w and shift b."),
            (lambda actual: has_nan_or_inf(actual) and ref(x).isfinite().all(),
             "dividing by sqrt(variance) alone gives NaN when a vector has variance 0: add eps inside the square root."),
        ])


# --------------------------------------------------------------------------- embeddings

@CHAPTER.exercise(
    "Embed", points=1, reference=reference.Embed, forbidden=(course_model.Embed,), variants=VARIANTS,
    hint="Each token id picks a row of W_E: index W_E with the tokens tensor.",
)
@torch.no_grad()
def grade_embed(Embed: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.Embed(cfg), seed)
    learner = learner_module(Embed, cfg, ref)
    generator = torch.Generator().manual_seed(seed)
    for description, batch, pos in sizes(cfg):
        tokens = torch.randint(0, cfg.d_vocab, (batch, pos), generator=generator)
        tokens[0, -1] = cfg.d_vocab - 1  # the last id must work as well as the first
        compare_tensors(learner(tokens), ref(tokens), what=f"Embed output for {description}", mistakes=[
            (looks_like(lambda: ref.W_E[(tokens + 1) % cfg.d_vocab]), "off by one: token t should read row t of W_E, not row t + 1."),
            (looks_like(lambda: ref.W_E[tokens - 1]), "off by one: token t should read row t of W_E, not row t - 1."),
        ])


@CHAPTER.exercise(
    "PosEmbed", points=1, reference=reference.PosEmbed, forbidden=(course_model.PosEmbed,), variants=VARIANTS,
    hint="Position p reads row p of W_pos, whatever the token there: take W_pos[:seq_len] and repeat "
         "it over the batch (einops.repeat).",
)
@torch.no_grad()
def grade_pos_embed(PosEmbed: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.PosEmbed(cfg), seed)
    learner = learner_module(PosEmbed, cfg, ref)
    generator = torch.Generator().manual_seed(seed)
    for description, batch, pos in sizes(cfg):
        # Ids below n_ctx, so that indexing W_pos by token id runs and can be recognised.
        tokens = torch.randint(0, min(cfg.d_vocab, cfg.n_ctx), (batch, pos), generator=generator)
        other_tokens = (tokens + 1) % min(cfg.d_vocab, cfg.n_ctx)
        compare_tensors(learner(tokens), ref(tokens), what=f"PosEmbed output for {description}", mistakes=[
            (lambda actual: actual.shape == (pos, cfg.d_model),
             "your output has no batch dimension: repeat W_pos[:seq_len] over the batch, to shape (batch, pos, d_model)."),
            (looks_like(lambda: ref.W_pos[tokens]),
             "you indexed W_pos by token id; position p reads row p, whatever the token at p."),
            (lambda actual: not torch.allclose(learner(other_tokens), actual),
             "your output changes when the tokens change but their positions do not; it should depend on positions only."),
            (looks_like(lambda: ref.W_pos[1 : pos + 1].expand(batch, pos, cfg.d_model)),
             "off by one: positions count from 0, so the first position reads W_pos[0]."),
        ])


# --------------------------------------------------------------------------- causal mask

@CHAPTER.exercise(
    "apply_causal_mask", points=1, reference=reference.apply_causal_mask,
    forbidden=(course_model.apply_causal_mask,), variants=VARIANTS,
    hint="Set every score of a key after its query (key_pos > query_pos, above the diagonal: "
         "torch.triu(..., diagonal=1)) to float('-inf'), and return the result.",
)
@torch.no_grad()
def grade_causal_mask(apply_causal_mask: Callable[[Tensor], Tensor], *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    generator = torch.Generator().manual_seed(seed)
    # First, scores of spread 1000: a key "masked" with -1000 would outscore the keys it is
    # hidden among, so only -inf (or a far more negative number) masks them whatever their size.
    cases = [("a random batch of shape (batch=2, pos=7), as large as a few thousand", 1000.0, 2, 7)]
    cases += [(description, 3.0, batch, pos) for description, batch, pos in sizes(cfg)]
    for description, spread, batch, pos in cases:
        scores = spread * torch.randn(batch, cfg.n_heads, pos, pos, generator=generator)
        actual = apply_causal_mask(scores.clone())
        if isinstance(actual, Tensor) and actual.is_floating_point():
            actual = actual.masked_fill(actual <= MASKED, float("-inf"))  # any very negative value will do

        def masking(mask: Tensor) -> Callable[[], Tensor]:
            return lambda: scores.masked_fill(mask, float("-inf"))

        square = torch.ones(pos, pos, dtype=torch.bool)
        future = square.triu(diagonal=1)
        constant = masked_constant(actual, future)
        compare_tensors(actual, reference.apply_causal_mask(scores), what=f"apply_causal_mask output for scores of {description}", mistakes=[
            (looks_like(lambda: scores),
             "nothing was masked. masked_fill returns a new tensor: return it (or use masked_fill_)."),
            (looks_like(masking(square.triu(diagonal=0))),
             "you also masked the diagonal: a position must be able to attend to itself (use diagonal=1)."),
            (looks_like(masking(square.triu(diagonal=2))),
             "off by one: you left the key just after each query (key_pos = query_pos + 1) unmasked, so every "
             "position can read the next token, its answer. triu(diagonal=2) starts one diagonal too high: use diagonal=1."),
            (looks_like(masking(square.tril(diagonal=-1))),
             "you masked the past and kept the future: the scores to hide are those with key_pos > query_pos (triu)."),
            (lambda actual: constant == 0,
             "you set the masked scores to 0, but exp(0) = 1: they would still get weight after the softmax. "
             "Use float('-inf')."),
            (lambda actual: constant is not None, finite_mask_message(constant, scores)),
        ])


def finite_mask_message(constant: float | None, scores: Tensor) -> str:
    """Why a finite mask value such as -1000 is not a mask, shown on the scores at hand."""
    constant, lowest = constant or 0.0, scores.min().item()
    shown = (f"some scores here are below {lowest:.0f}, so the masked keys, the future, outscore keys a query may "
             "read and take their weight after the softmax" if constant > lowest else
             f"a query whose real scores are all below {constant:g} would give the masked keys, the future, all its weight")
    return (f"you set the masked scores to {constant:g}, a finite number. A masked key must get weight 0 whatever the "
            f"real scores are, and they have no lower bound: {shown}. Use float('-inf'), which softmax turns into a "
            "weight of exactly 0.")


def masked_constant(actual: object, future: Tensor) -> float | None:
    """The one finite number a learner wrote into every masked score (0, -1000, ...), if
    there is one; None otherwise."""
    if not (isinstance(actual, Tensor) and actual.shape[-2:] == future.shape and future.any()):
        return None
    masked = actual[..., future]
    first = masked.flatten()[0]
    return first.item() if bool(first.isfinite() and (masked == first).all()) else None


# --------------------------------------------------------------------------- attention

@CHAPTER.exercise(
    "Attention", points=3, reference=reference.Attention, forbidden=(course_model.Attention,), variants=VARIANTS,
    uses=("apply_causal_mask",),
    hint="q, k, v = x @ W + b per head; scores = q.k / sqrt(d_head); apply_causal_mask; softmax over "
         "the key axis (dim=-1); z = pattern-weighted sum of v; output = sum over heads of z @ W_O, plus b_O.",
)
@torch.no_grad()
def grade_attention(Attention: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.Attention(cfg), seed)
    learner = learner_module(Attention, cfg, ref)
    generator = torch.Generator().manual_seed(seed)
    for description, batch, pos in sizes(cfg):
        x = torch.randn(batch, pos, cfg.d_model, generator=generator)
        compare_tensors(learner(x), ref(x), what=f"Attention output for {description}",
                        mistakes=attention_mistakes(ref, x, learner, generator))


def attention_mistakes(ref: reference.Attention, x: Tensor, learner: Callable[[Tensor], Tensor],
                       generator: torch.Generator) -> list[Mistake]:
    """What each common mistake in Attention gives on `x`: the reference with one
    intermediate value edited through its hook points."""
    cfg, d_head = ref.cfg, ref.cfg.d_head
    changed_last = x.clone()
    changed_last[:, -1] = torch.randn(x.shape[0], cfg.d_model, generator=generator)
    expected = ref(x)

    def reference_with(*edits: tuple[HookPoint, Callable[[Tensor], Tensor]]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with edited(*edits):
                return ref(x)
        return run

    def rescaled(divisor: float) -> Callable[[], Tensor]:
        return reference_with((ref.hook_attn_scores, lambda s: s * math.sqrt(d_head) / divisor))

    scores = {}

    def keep_scores(value: Tensor) -> Tensor:
        scores["masked"] = value
        return value

    assumed = cfg.d_model // cfg.n_heads
    return [
        (lambda actual: not actual[:, 0].isfinite().all() and actual[:, 1:].isfinite().all(),
         "your output is NaN at the first position only. The first query can see one key, itself: a mask that "
         "also hides the diagonal leaves its row of scores all -inf, and a softmax over nothing but -inf is "
         "0 / 0 = NaN. Mask only the keys after each query, key_pos > query_pos (triu(diagonal=1))."),
        (has_nan_or_inf,
         "your output contains NaN or inf. Is the mask applied to the scores before the softmax? "
         "Masking the pattern afterwards multiplies the values by -inf."),
        (looks_like(rescaled(1.0)), "you did not divide the scores by sqrt(d_head)."),
        (looks_like(rescaled(math.sqrt(cfg.d_model))),
         "you divided the scores by sqrt(d_model); divide by sqrt(d_head), the length of q and k."),
        (looks_like(rescaled(math.sqrt(assumed))),  # when d_head is d_model // n_heads, the right answer: never matched
         f"you divided the scores by sqrt(d_model // n_heads) = sqrt({assumed}); in this configuration d_head = "
         f"{d_head}, unlike d_model / n_heads: divide by sqrt(cfg.d_head)."),
        (looks_like(rescaled(d_head)), "you divided the scores by d_head; divide by its square root."),
        (looks_like(reference_with((ref.hook_attn_scores, keep_scores),
                                   (ref.hook_pattern, lambda p: scores["masked"].softmax(dim=-2)))),
         "you took the softmax over the query axis; each query's weights over the keys must sum to 1: "
         "softmax over key_pos (dim=-1)."),
        (looks_like(lambda: expected - ref.b_O), "you forgot to add the output bias b_O."),
        (leaks_future(learner, x, changed_last),
         "changing only the last position's input changed your output at earlier positions: attention "
         "reads the future. Apply apply_causal_mask to the scores before the softmax."),
    ]


# --------------------------------------------------------------------------- MLP

@CHAPTER.exercise(
    "MLP", points=1, reference=reference.MLP, forbidden=(course_model.MLP,), variants=VARIANTS,
    hint="x @ W_in + b_in, then GELU (F.gelu, the exact one), then @ W_out + b_out.",
)
@torch.no_grad()
def grade_mlp(MLP: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.MLP(cfg), seed)
    learner = learner_module(MLP, cfg, ref)
    generator = torch.Generator().manual_seed(seed)

    def reference_with_activation(activation: Callable[[Tensor], Tensor]) -> Callable[[], Tensor]:
        def run() -> Tensor:
            pre = {}

            def record(value: Tensor) -> Tensor:
                pre["value"] = value
                return value

            with edited((ref.hook_pre, record), (ref.hook_post, lambda _: activation(pre["value"]))):
                return ref(x)
        return run

    for description, batch, pos in sizes(cfg):
        x = random_residual(generator, batch, pos, cfg.d_model)
        expected = ref(x)
        compare_tensors(learner(x), expected, what=f"MLP output for {description}", mistakes=[
            (looks_like(reference_with_activation(F.relu)), "you used ReLU; this model's activation is GELU (F.gelu)."),
            (looks_like(reference_with_activation(lambda pre: F.gelu(pre, approximate="tanh"))),
             "you used GELU's tanh approximation (GPT-2's 'gelu_new'); use the exact F.gelu."),
            (looks_like(reference_with_activation(lambda pre: pre * torch.sigmoid(1.702 * pre))),
             "you used GELU's sigmoid approximation, x * sigmoid(1.702 x); use the exact GELU, x * Phi(x) with Phi "
             "the standard normal's CDF: F.gelu."),
            (looks_like(reference_with_activation(lambda pre: pre)), "you applied no activation: without it the MLP is linear."),
            (looks_like(lambda: expected - ref.b_out), "you forgot to add the output bias b_out."),
        ])


# --------------------------------------------------------------------------- block

@CHAPTER.exercise(
    "TransformerBlock", points=2, reference=reference.TransformerBlock,
    forbidden=(course_model.TransformerBlock,), variants=VARIANTS, uses=("LayerNorm", "Attention", "MLP"),
    hint="resid_mid = resid + attn(ln1(resid)); then (unless cfg.attn_only) resid_mid + mlp(ln2(resid_mid)).",
)
@torch.no_grad()
def grade_block(TransformerBlock: type, *, seed: int = 0, config: Config = "small") -> None:
    for cfg in (config_of(config), dataclasses.replace(config_of(config), d_mlp=None)):
        kind = "attention-only block (cfg.d_mlp=None)" if cfg.attn_only else "block"
        ref = with_random_weights(reference.TransformerBlock(cfg), seed)
        learner = learner_module(TransformerBlock, cfg, ref)
        generator = torch.Generator().manual_seed(seed)

        # With attention and MLP writing nothing, a block must pass its input through.
        silent_ref = copy.deepcopy(ref)
        for name, param in silent_ref.named_parameters():
            if name.rsplit(".", 1)[-1] in ("W_O", "b_O", "W_out", "b_out"):
                param.zero_()
        silent = learner_module(TransformerBlock, cfg, silent_ref)
        x = random_residual(generator, 2, 5, cfg.d_model)
        post_ln = (lambda: ref.ln1(x)) if cfg.attn_only else (lambda: ref.ln2(ref.ln1(x)))
        compare_tensors(silent(x), x, what=f"Output of the {kind} when its attention and MLP write zeros", mistakes=[
            (lambda actual: bool((actual == 0).all()),
             "your block returns only what attention and the MLP write; add that to the residual stream it read."),
            (looks_like(post_ln),
             "you applied LayerNorm after adding to the residual stream (post-LN); here each layer reads "
             "ln(resid) and adds its output to resid unnormalised (pre-LN)."),
        ])

        for description, batch, pos in sizes(cfg):
            x = random_residual(generator, batch, pos, cfg.d_model)
            normalized = ref.ln1(x)
            mid = x + ref.attn(normalized)
            mistakes = [] if cfg.attn_only else [
                (looks_like(lambda: mid + ref.mlp(ref.ln2(x))),
                 "your MLP reads the block's input; it should read resid_mid, the stream after attention has written to it."),
                (looks_like(lambda: mid + ref.mlp(ref.ln1(mid))), "you used ln1 before the MLP; it has its own LayerNorm, ln2."),
            ]
            compare_tensors(learner(x), ref(x), what=f"Output of the {kind} for {description}", mistakes=mistakes)


# --------------------------------------------------------------------------- unembed

@CHAPTER.exercise(
    "Unembed", points=1, reference=reference.Unembed, forbidden=(course_model.Unembed,), variants=VARIANTS,
    hint="logits = x @ W_U + b_U; no softmax: the loss function takes logits.",
)
@torch.no_grad()
def grade_unembed(Unembed: type, *, seed: int = 0, config: Config = "small") -> None:
    cfg = config_of(config)
    ref = with_random_weights(reference.Unembed(cfg), seed)
    learner = learner_module(Unembed, cfg, ref)
    generator = torch.Generator().manual_seed(seed)
    for description, batch, pos in sizes(cfg):
        x = random_residual(generator, batch, pos, cfg.d_model)
        expected = ref(x)
        compare_tensors(learner(x), expected, what=f"Unembed output for {description}", mistakes=[
            (looks_like(lambda: expected - ref.b_U), "you forgot to add the bias b_U."),
            (looks_like(lambda: expected.log_softmax(dim=-1)), "you returned log-probabilities; return the logits."),
            (looks_like(lambda: expected.softmax(dim=-1)), "you returned probabilities; return the logits."),
        ])


# --------------------------------------------------------------------------- the whole model

@CHAPTER.exercise(
    "DemoTransformer", points=2, reference=reference.DemoTransformer,
    forbidden=(course_model.Transformer,), variants=VARIANTS,
    uses=("Embed", "PosEmbed", "TransformerBlock", "LayerNorm", "Unembed"),
    hint="resid = embed(tokens) + pos_embed(tokens); resid = block(resid) for each block; "
         "logits = unembed(ln_final(resid)). check() each piece first: this grader uses yours.",
)
@torch.no_grad()
def grade_transformer(DemoTransformer: type, *, seed: int = 0, config: Config = "small") -> None:
    for cfg in (config_of(config), dataclasses.replace(config_of(config), d_mlp=None)):
        kind = "attention-only model (cfg.d_mlp=None)" if cfg.attn_only else "model"
        ref = with_random_weights(reference.DemoTransformer(cfg), seed)
        learner = learner_module(DemoTransformer, cfg, ref)
        generator = torch.Generator().manual_seed(seed)

        def unembedded(resid: Tensor, *, ln_final: bool = True) -> Tensor:
            return ref.unembed(ref.ln_final(resid) if ln_final else resid)

        def through_blocks(resid: Tensor) -> Tensor:
            for block in ref.blocks:
                resid = block(resid)
            return resid

        # The mistakes are the reference's own pieces, put together the wrong way.
        for description, batch, pos in sizes(cfg):
            tokens = torch.randint(0, cfg.d_vocab, (batch, pos), generator=generator)
            changed_last = tokens.clone()
            changed_last[:, -1] = (tokens[:, -1] + 1) % cfg.d_vocab
            embedded = ref.embed(tokens) + ref.pos_embed(tokens)
            expected = ref(tokens)
            compare_tensors(learner(tokens), expected, what=f"Logits of the {kind} for {description}", mistakes=[
                *mistakes_of_own_attention(learner, ref, generator),
                (leaks_future(learner, tokens, changed_last),
                 "changing only the last token changed your logits at earlier positions: information flows "
                 "from the future. Does your Attention apply the causal mask to the scores, and take the softmax "
                 "over the keys (dim=-1)? A softmax over the queries lets later positions change earlier ones too."),
                (looks_like(lambda: unembedded(through_blocks(embedded), ln_final=False)),
                 "you forgot ln_final, the LayerNorm between the last block and the unembedding."),
                (looks_like(lambda: unembedded(through_blocks(ref.embed(tokens)))),
                 "you did not add the positional embedding to the token embedding."),
                (looks_like(lambda: unembedded(embedded)),
                 "your logits skip the blocks: is each block's output assigned back to resid?"),
                (looks_like(lambda: unembedded(ref.blocks[-1](embedded))),
                 "each of your blocks reads the embeddings; each should read the previous block's output."),
                (looks_like(lambda: expected.log_softmax(dim=-1)), "you returned log-probabilities; return the logits."),
            ])


def mistakes_of_own_attention(learner: nn.Module, ref: reference.DemoTransformer,
                              generator: torch.Generator) -> list[Mistake]:
    """When the Attention inside the learner's model is wrong, its mistake is the model's:
    the Attention diagnostics, run on the learner's first block's attention, each naming
    the piece that made it."""
    ref_attn = ref.blocks[0].attn
    x = torch.randn(2, min(7, ref.cfg.n_ctx), ref.cfg.d_model, generator=generator)
    try:
        own = learner.get_submodule("blocks.0.attn")
        output = own(x)
    except Exception:  # noqa: BLE001 - an attention that cannot run has nothing to diagnose here
        return []
    if isinstance(output, Tensor) and output.shape == ref_attn(x).shape and torch.allclose(output, ref_attn(x)):
        return []
    return [(lambda actual, recognises=recognises: recognises(output), f"in your Attention (blocks[0].attn): {explanation}")
            for recognises, explanation in attention_mistakes(ref_attn, x, own, generator)]
