"""Graders for chapter 02, induction heads.

The references are `solutions/induction_heads.py`. Each grader runs the learner's function
and the reference on seeded random inputs (attention patterns, token sequences with
repeats, losses, small random models) and on the shipped `induction-2l`, then on edge
cases. Where the outputs differ, diagnostics compute what each common mistake would have
given (an off-by-one diagonal, the wrong axis averaged, the circuit's matrices in the wrong
order, ...) and name the mistake that matches.

The last exercise, `induction_circuit`, is checked against the circuit measured here from
the shipped model, not against a hard-coded answer.
"""

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from transformer_lens import FactoredMatrix

from graders.core import (
    Chapter,
    GraderFailure,
    as_tensor,
    circuit_where,
    compare_circuits,
    compare_tensors,
    looks_like,
    read_circuit,
    role_words,
)
from graders.models import randomized, shipped
from solutions import induction_heads as reference
from toy_models.data import repeated_random_tokens
from toy_models.model import Transformer, TransformerConfig, next_token_loss
from toy_models.train import INDUCTION_SEQ_LEN, induction_batch

CHAPTER = Chapter("02_induction_heads")

# A small random model whose shapes differ from the shipped one's (d_head != d_model /
# n_heads, 3 layers, 3 heads), for code that assumes the shipped model's shapes.
RANDOM_CONFIG = TransformerConfig(n_layers=3, d_model=24, n_heads=3, d_head=5, d_vocab=40, n_ctx=20)

#: A head plays a role in the shipped model's circuit when its score for the role is above this.
ROLE_THRESHOLD = 0.5


# --------------------------------------------------------------------------- helpers

def random_pattern(generator: torch.Generator, batch: int, n_heads: int, pos: int) -> Float[Tensor, "batch n_heads pos pos"]:
    """Causal attention patterns, peaked enough that each diagonal carries a different weight."""
    scores = 3 * torch.randn(batch, n_heads, pos, pos, generator=generator)
    future = torch.ones(pos, pos, dtype=torch.bool).triu(diagonal=1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def pattern_cases(seed: int) -> list[tuple[str, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        ("random causal patterns of shape (batch=3, n_heads=4, pos=9, pos=9)", random_pattern(generator, 3, 4, 9)),
        ("random causal patterns of shape (batch=1, n_heads=2, pos=2, pos=2)", random_pattern(generator, 1, 2, 2)),
        ("random causal patterns of shape (batch=2, n_heads=5, pos=17, pos=17)", random_pattern(generator, 2, 5, 17)),
    ]


def as_matrix(actual: object, what: str) -> Tensor:
    if isinstance(actual, FactoredMatrix):
        return actual.AB
    if isinstance(actual, Tensor):
        return actual
    raise GraderFailure(f"{what}: expected a FactoredMatrix (or a tensor), got {type(actual).__name__}."
                        + (" Did you forget to `return` it?" if actual is None else ""))


# --------------------------------------------------------------------------- detectors

def detector_mistakes(pattern: Tensor, offset: int) -> list:
    """Mistakes common to the diagonal detectors: the neighbouring diagonals, the wrong
    axes averaged, a sum instead of a mean."""
    pos = pattern.shape[-1]
    diag = lambda o: pattern.diagonal(offset=o, dim1=-2, dim2=-1)  # noqa: E731
    mistakes = []
    for other, name in ((0, "the diagonal itself (current token)"), (-1, "the diagonal just below (previous token)"),
                        (1, "the diagonal just above (the next token, which the causal mask hides)"),
                        (-2, "two diagonals below (two tokens back)")):
        if other != offset:
            mistakes.append((looks_like(lambda other=other: diag(other).mean(dim=(0, -1))),
                             f"off-by-one diagonal: you measured attention to {name}. Query q's previous token is "
                             f"key q - 1: pattern.diagonal(offset=-1, dim1=-2, dim2=-1); offset 0 is the token itself."))
    mistakes += [
        (lambda actual: actual.shape == (pattern.shape[0],) or actual.shape == diag(offset).shape[-1:],
         "you averaged over the wrong axes: the scores are per head, so average over the batch and the "
         "query positions (dims 0 and -1 of the diagonal) and keep n_heads."),
        (looks_like(lambda: diag(offset).sum(dim=-1).mean(dim=0)),
         "you summed over positions instead of averaging: divide by the number of queries."),
        (looks_like(lambda: diag(offset).sum(dim=-1).mean(dim=0) / pos),
         "you divided by pos, but only pos - 1 queries have a previous token: take the mean of the diagonal."),
    ]
    return mistakes


def grade_detector(function: Callable, ref: Callable, name: str, offset: int | None, seed: int) -> None:
    for description, pattern in pattern_cases(seed):
        compare_tensors(function(pattern.clone()), ref(pattern), what=f"{name} for {description}",
                        mistakes=detector_mistakes(pattern, offset) if offset is not None else [
                            (looks_like(lambda: pattern[..., 0, :].mean(dim=(0, -1))),
                             "you averaged the first *query's* row, pattern[..., 0, :]; the first *key* is "
                             "pattern[..., 0]: the attention every query pays to position 0."),
                            (looks_like(lambda: pattern[..., 1:, 0].mean(dim=(0, -1))),
                             "you left out query 0, which attends to position 0 with weight 1: average over all queries."),
                            (lambda actual: actual.shape != (pattern.shape[1],),
                             "the scores are per head: average over the batch and the query positions, keep n_heads."),
                            (looks_like(lambda: pattern[..., 0].sum(dim=-1).mean(dim=0)),
                             "you summed over queries instead of averaging."),
                        ])


DETECTOR_VARIANTS = ({}, {"seed": 1})


@CHAPTER.exercise(
    "previous_token_scores", points=1, reference=reference.previous_token_scores, variants=DETECTOR_VARIANTS,
    hint="The attention from query q to key q - 1 lies on the diagonal just below the main one: "
         "pattern.diagonal(offset=-1, dim1=-2, dim2=-1) has shape [batch, n_heads, pos - 1]; average it over "
         "the batch and the positions.",
)
def grade_previous_token_scores(previous_token_scores: Callable, *, seed: int = 0) -> None:
    grade_detector(previous_token_scores, reference.previous_token_scores, "previous_token_scores", -1, seed)


@CHAPTER.exercise(
    "current_token_scores", points=1, reference=reference.current_token_scores, variants=DETECTOR_VARIANTS,
    hint="The attention from each token to itself is the main diagonal: pattern.diagonal(dim1=-2, dim2=-1); "
         "average it over the batch and the positions.",
)
def grade_current_token_scores(current_token_scores: Callable, *, seed: int = 0) -> None:
    grade_detector(current_token_scores, reference.current_token_scores, "current_token_scores", 0, seed)


@CHAPTER.exercise(
    "first_token_scores", points=1, reference=reference.first_token_scores, variants=DETECTOR_VARIANTS,
    hint="pattern[..., 0] is every query's attention to key 0, shape [batch, n_heads, query_pos]; average it "
         "over the batch and the queries.",
)
def grade_first_token_scores(first_token_scores: Callable, *, seed: int = 0) -> None:
    grade_detector(first_token_scores, reference.first_token_scores, "first_token_scores", None, seed)


# --------------------------------------------------------------------------- prefix matching

def prefix_with(tokens: Tensor, pattern: Tensor, *, shift: int = 1, earlier_only: bool = False, pad_right: bool = False,
                all_queries: bool = False, last_only: bool = False, per_sequence: bool = False) -> Tensor:
    """Prefix-matching scores computed with one of the usual mistakes."""
    pos = tokens.shape[1]
    same = tokens[:, None, :] == tokens[:, :, None]  # [batch, query, key]: tokens[k] == tokens[q]
    if shift:
        # key k: tokens[k - shift] == tokens[q]; padded on the wrong side, key k compares tokens[k] again
        padding = (0, shift) if pad_right else (shift, 0)
        same = F.pad(same[:, :, :-shift], padding, value=False)
    targets = same & torch.ones(pos, pos, dtype=torch.bool).tril(diagonal=-1 if earlier_only else 0)
    if last_only:
        keep = torch.zeros_like(targets)
        last = (targets * torch.arange(1, pos + 1)).argmax(dim=-1)  # the latest target key
        keep.scatter_(-1, last[..., None], True)
        targets = targets & keep
    attended = torch.einsum("bhqk,bqk->bhq", pattern, targets.to(pattern.dtype))
    has = targets.any(dim=-1)
    if all_queries:
        return attended.mean(dim=(0, 2))
    if per_sequence:
        return ((attended * has[:, None]).sum(dim=2) / has.sum(dim=1)[:, None]).mean(dim=0)
    return (attended * has[:, None]).sum(dim=(0, 2)) / has.sum()


def prefix_cases(seed: int) -> list[tuple[str, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    repeated = repeated_random_tokens(3, 5, 30, n_repeats=3, bos_token=0, generator=generator)
    return [
        ("a start token then a random block of 5 tokens repeated 3 times (batch=3)", repeated),
        ("random tokens from a vocabulary of 4 (many chance repeats, some in a row)",
         torch.randint(0, 4, (2, 12), generator=generator)),
        # Unequal numbers of queries that can match (6 and 1): a mean per sequence first differs from the pooled one.
        ("a block of 6 distinct tokens repeated twice, beside 12 distinct tokens whose last repeats the first",
         torch.stack([torch.randperm(30, generator=generator)[:6].repeat(2), unique_then_first(generator, 12)])),
    ]


def unique_then_first(generator: torch.Generator, length: int) -> Tensor:
    """`length - 1` distinct tokens, then the first again: exactly one query can prefix-match."""
    tokens = torch.randperm(30, generator=generator)[:length]
    tokens[-1] = tokens[0]
    return tokens


@CHAPTER.exercise(
    "prefix_matching_scores", points=2, reference=reference.prefix_matching_scores, variants=DETECTOR_VARIANTS,
    hint="Build a boolean [batch, query, key] mask of the keys k <= q with tokens[k - 1] == tokens[q] "
         "(compare tokens[:, None, :-1] with tokens[:, :, None], then pad one False column on the left); sum "
         "the pattern over those keys per query, then average over all the (sequence, query) pairs that have at "
         "least one, pooled: sum over batch and queries, divide by the number of such pairs.",
)
def grade_prefix_matching_scores(prefix_matching_scores: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed + 100)
    for description, tokens in prefix_cases(seed):
        batch, pos = tokens.shape
        pattern = random_pattern(generator, batch, 3, pos)
        compare_tensors(prefix_matching_scores(tokens.clone(), pattern.clone()), reference.prefix_matching_scores(tokens, pattern),
                        what=f"prefix_matching_scores for {description}", mistakes=[
            (looks_like(lambda: prefix_with(tokens, pattern, shift=0)),
             "you measured attention to earlier copies of the current token itself (a duplicate-token head); "
             "prefix matching attends to the token *after* each earlier copy: key k with tokens[k - 1] == tokens[q]."),
            (looks_like(lambda: prefix_with(tokens, pattern, shift=0, earlier_only=True)),
             "you measured attention to the earlier copies of the current token (a duplicate-token head): without the "
             "shift. Prefix matching attends to the token *after* each earlier copy: key k with tokens[k - 1] == tokens[q]."),
            (looks_like(lambda: prefix_with(tokens, pattern, pad_right=True)),
             "you padded the comparison on the right, so key k still compares tokens[k] and the shift is undone: pad "
             "the False column on the left (F.pad(..., (1, 0))), so that key k compares tokens[k - 1]."),
            (looks_like(lambda: prefix_with(tokens, pattern, per_sequence=True)),
             "you averaged each sequence's queries first, then the sequences; the score pools every (sequence, query) "
             "pair that has a key to match: sum over the batch and the queries, divide by the number of such pairs."),
            (looks_like(lambda: prefix_with(tokens, pattern, shift=2)),
             "off by one: you matched tokens[k - 2]; the key to attend to is the one right after the earlier copy, "
             "k with tokens[k - 1] == tokens[q]."),
            (looks_like(lambda: prefix_with(tokens, pattern, all_queries=True)),
             "you averaged over every query, including those whose token never appeared before: average only "
             "over the queries that have at least one key to prefix-match."),
            (looks_like(lambda: prefix_with(tokens, pattern, last_only=True)),
             "you counted only the most recent earlier occurrence; sum the attention to the keys after *every* "
             "earlier occurrence (the block repeats several times)."),
        ])


# --------------------------------------------------------------------------- in-context learning

@CHAPTER.exercise(
    "in_context_learning_score", points=1, reference=reference.in_context_learning_score,
    variants=({"seed": 0, "early": 2, "late": 30}, {"seed": 1, "early": 0, "late": 47}),
    hint="per_token_loss[:, late].mean() - per_token_loss[:, early].mean(): late minus early, at single token "
         "indices, averaged over the batch.",
)
def grade_in_context_learning_score(in_context_learning_score: Callable, *, seed: int = 0, early: int = 2, late: int = 30) -> None:
    generator = torch.Generator().manual_seed(seed)
    loss = 6 * torch.rand(8, 48, generator=generator)
    expected = reference.in_context_learning_score(loss, early, late)
    compare_tensors(as_tensor(in_context_learning_score(loss.clone(), early, late)), expected,
                    what=f"in_context_learning_score(loss, early={early}, late={late}) on a random loss of shape (8, 48)",
                    mistakes=[
        (looks_like(lambda: -expected), "wrong sign: the score is the loss late minus the loss early "
                                        "(negative when the model learns in context)."),
        (looks_like(lambda: loss[:, late:].mean() - loss[:, :early].mean()),
         "you averaged ranges of tokens (late: and :early); the score compares the single token indices late and early."),
        (looks_like(lambda: loss[:, late:].mean() - loss[:, early:late].mean()),
         "you averaged ranges of tokens; the score compares the single token indices late and early."),
        (looks_like(lambda: loss[:, late - 1].mean() - loss[:, early - 1].mean()),
         "off by one: index the loss at late and early themselves."),
        (lambda actual: actual.ndim > 0, "the score is one number: average over the batch as well."),
    ])


# --------------------------------------------------------------------------- ablation

def ablation_with(model: Transformer, tokens: Tensor, seq_len: int, kind: str, *, mean_dims: tuple[int, ...] = (0,),
                  losses: str = "induction", every_layer: bool = False) -> Tensor:
    """Each head's ablated loss, computed with one of the usual mistakes."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_z"))
    result = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            hooks = []
            for other in (range(model.cfg.n_layers) if every_layer else [layer]):
                z_head = cache["z", other][:, :, head]
                mean_z = z_head.mean(dim=mean_dims, keepdim=True).expand_as(z_head)

                def ablate(z, hook, head=head, mean_z=mean_z):
                    z[:, :, head] = 0.0 if kind == "zero" else mean_z
                    return z
                hooks.append((f"blocks.{other}.attn.hook_z", ablate))
            per_token = next_token_loss(model.run_with_hooks(tokens, fwd_hooks=hooks), tokens, per_token=True)
            chosen = {"induction": per_token[:, -(seq_len - 1):], "half": per_token[:, seq_len:], "all": per_token}[losses]
            result[layer, head] = chosen.mean()
    return result


def layer_ablation_losses(model: Transformer, tokens: Tensor, seq_len: int) -> Tensor:
    """The mistake of zeroing a whole layer's attention output, `hook_attn_out`, for each of its heads."""
    result = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", lambda out, hook: 0 * out)])
        result[layer] = next_token_loss(logits, tokens, per_token=True)[:, -(seq_len - 1):].mean()
    return result


@CHAPTER.exercise(
    "head_ablation_losses", points=3, reference=reference.head_ablation_losses,
    variants=({"kind": "zero"}, {"kind": "mean"}, {"kind": "mean", "seed": 1, "model": "random"},
              {"kind": "zero", "seed": 2, "model": "random"}),
    hint="Cache hook_z once. For each (layer, head), run_with_hooks with a hook on f'blocks.{layer}.attn.hook_z' "
         "that sets z[:, :, head] to 0 (zero) or to cache['z', layer][:, :, head].mean(dim=0) (mean: over the "
         "batch, one mean per position), then take next_token_loss(..., per_token=True)[:, -(seq_len - 1):].mean().",
)
@torch.no_grad()
def grade_head_ablation_losses(head_ablation_losses: Callable, *, kind: str = "zero", seed: int = 0, model: str = "induction-2l") -> None:
    if model == "induction-2l":
        net, seq_len = shipped("induction-2l"), INDUCTION_SEQ_LEN
        tokens = induction_batch(torch.Generator().manual_seed(seed + 7), 16, net.cfg.d_vocab)
    else:
        net, seq_len = randomized(RANDOM_CONFIG, seed), 6
        tokens = repeated_random_tokens(5, seq_len, RANDOM_CONFIG.d_vocab, n_repeats=2, bos_token=0,
                                        generator=torch.Generator().manual_seed(seed))
    expected = reference.head_ablation_losses(net, tokens, seq_len, kind)
    actual = head_ablation_losses(net, tokens.clone(), seq_len, kind)
    args = lambda **kw: lambda: ablation_with(net, tokens, seq_len, kind, **kw)  # noqa: E731
    other_kind = "mean" if kind == "zero" else "zero"
    compare_tensors(actual, expected, what=f"head_ablation_losses(kind={kind!r}) on {model} "
                    f"(tokens of shape {tuple(tokens.shape)}, seq_len={seq_len})", mistakes=[
        (looks_like(lambda: ablation_with(net, tokens, seq_len, other_kind)),
         f"you ran {other_kind} ablation when kind={kind!r}: look at `kind`."),
        (looks_like(args(mean_dims=(0, 1))),
         "your mean ablation averages z over the batch *and the positions*; average over the batch only, keeping "
         "one mean per position (attention to the start token differs a lot from attention later on)."),
        (looks_like(args(mean_dims=(1,))),
         "your mean ablation averages z over the positions of each sequence; average over the batch (dim 0), "
         "one mean per position."),
        (looks_like(args(losses="half")),
         "you included the first token of the repeat, which nothing can predict; take the last seq_len - 1 "
         "predictions: per_token[:, -(seq_len - 1):]."),
        (looks_like(args(losses="all")),
         "you averaged the loss over the whole sequence; take only the predictions of the repeat, "
         "per_token[:, -(seq_len - 1):]."),
        (looks_like(lambda: layer_ablation_losses(net, tokens, seq_len)),
         "you zeroed hook_attn_out, the output of the whole attention layer: every head of the layer (and b_O) at "
         "once, so all the heads of a layer get the same loss. Ablate one head per run: its z[:, :, head] at "
         "f'blocks.{layer}.attn.hook_z'."),
        (looks_like(args(every_layer=True)),
         "you ablated head `head` in every layer at once; ablate one (layer, head) per run, hooking "
         "f'blocks.{layer}.attn.hook_z' only."),
        (lambda actual: actual.shape != expected.shape,
         f"return one loss per head, shape (n_layers, n_heads) = {tuple(expected.shape)}."),
    ])


# --------------------------------------------------------------------------- direct logit attribution

def dla_with(model: Transformer, cache_: object, tokens: Tensor, *, centre: bool = True, scale: bool = True,
             weight: bool = True, target_shift: int = 1, source_shift: int = 0) -> Tensor:
    """Direct logit attribution computed with one of the usual mistakes."""
    pos = tokens.shape[1]
    targets = tokens[:, target_shift: target_shift + pos - 1]
    direction = model.W_U.T[targets] * (model.ln_final.w if weight else 1)
    divisor = cache_["ln_final.hook_scale"][:, source_shift: source_shift + pos - 1] if scale else 1.0
    result = []
    for layer in range(model.cfg.n_layers):
        out = torch.einsum("bphd,hdm->bphm", cache_["z", layer][:, source_shift: source_shift + pos - 1],
                           model.blocks[layer].attn.W_O)
        if centre:
            out = out - out.mean(dim=-1, keepdim=True)
        if scale:
            out = out / divisor[:, :, None]
        result.append(torch.einsum("bphm,bpm->hbp", out, direction))
    return torch.stack(result)


@CHAPTER.exercise(
    "direct_logit_attribution", points=2, reference=reference.direct_logit_attribution,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="For each layer: out = einsum(cache['z', layer][:, :-1], W_O, 'batch pos head d_head, head d_head d_model -> "
         "batch pos head d_model'); centre it over d_model; divide by cache['ln_final.hook_scale'][:, :-1] (add a head "
         "axis); dot with model.W_U.T[tokens[:, 1:]] * model.ln_final.w. Stack the layers: [n_layers, n_heads, batch, pos - 1].",
)
@torch.no_grad()
def grade_direct_logit_attribution(direct_logit_attribution: Callable, *, seed: int = 0, model: str = "induction-2l") -> None:
    if model == "induction-2l":
        net = shipped("induction-2l")
        tokens = induction_batch(torch.Generator().manual_seed(seed + 3), 4, net.cfg.d_vocab)
    else:
        net = randomized(RANDOM_CONFIG, seed)
        tokens = torch.randint(0, RANDOM_CONFIG.d_vocab, (3, 11), generator=torch.Generator().manual_seed(seed))
    _, cache_ = net.run_with_cache(tokens)
    expected = reference.direct_logit_attribution(net, cache_, tokens)
    actual = direct_logit_attribution(net, cache_, tokens.clone())
    compare_tensors(actual, expected, what=f"direct_logit_attribution on {model} (tokens of shape {tuple(tokens.shape)})", mistakes=[
        (lambda actual: actual.shape != expected.shape,
         f"return shape (n_layers, n_heads, batch, pos - 1) = {tuple(expected.shape)}: the last position has no next "
         "token to score."),
        (looks_like(lambda: dla_with(net, cache_, tokens, centre=False)),
         "you did not centre the heads' outputs: the final LayerNorm subtracts each vector's mean, so subtract "
         "out.mean(dim=-1, keepdim=True) from each head's output."),
        (looks_like(lambda: dla_with(net, cache_, tokens, scale=False)),
         "you did not divide by the final LayerNorm's scale, cache['ln_final.hook_scale']."),
        (looks_like(lambda: dla_with(net, cache_, tokens, weight=False)),
         "you left out the final LayerNorm's weight ln_final.w, which multiplies the normalised stream before W_U."),
        (looks_like(lambda: dla_with(net, cache_, tokens, target_shift=0)),
         "off by one: position p predicts the *next* token, tokens[:, p + 1]; you scored the token at p itself."),
        (looks_like(lambda: dla_with(net, cache_, tokens, source_shift=1)),
         "off by one: the prediction of tokens[:, p + 1] is made at position p: use z[:, :-1] and the scale at "
         "positions :-1, not 1:."),
    ])


# --------------------------------------------------------------------------- OV circuit

def ov_models(seed: int, model: str) -> Transformer:
    return shipped("induction-2l") if model == "induction-2l" else randomized(RANDOM_CONFIG, seed)


@CHAPTER.exercise(
    "full_ov_circuit", points=2, reference=reference.full_ov_circuit,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="Rows are source tokens, columns are output logits: W_E [d_vocab, d_model] @ W_V[head] "
         "[d_model, d_head] @ W_O[head] [d_head, d_model] @ W_U [d_model, d_vocab]. Wrap the middle in "
         "FactoredMatrix(W_V[head], W_O[head]) so that nothing d_vocab x d_vocab is built until you ask for .AB.",
)
@torch.no_grad()
def grade_full_ov_circuit(full_ov_circuit: Callable, *, seed: int = 0, model: str = "induction-2l") -> None:
    net = ov_models(seed, model)
    for layer in range(net.cfg.n_layers):
        for head in range(net.cfg.n_heads):
            expected = reference.full_ov_circuit(net, layer, head).AB
            actual = as_matrix(full_ov_circuit(net, layer, head), "full_ov_circuit")
            attn = net.blocks[layer].attn
            W_E, W_U = net.embed.W_E, net.W_U
            other = (head + 1) % net.cfg.n_heads
            compare_tensors(actual, expected, what=f"full_ov_circuit(model, layer={layer}, head={head}).AB on {model}", mistakes=[
                (looks_like(lambda: expected.T),
                 "your matrix is transposed: rows are the *source* token (W_E first), columns the logits (W_U last)."),
                (looks_like(lambda: W_E @ attn.W_Q[head] @ attn.W_K[head].T @ W_E.T),
                 "you built the QK circuit (W_Q W_K^T): the OV circuit is W_V then W_O."),
                (looks_like(lambda: W_E @ attn.W_V[other] @ attn.W_O[other] @ W_U) if other != head else (lambda a: False),
                 "you used another head's W_V or W_O: index both with `head`."),
                (looks_like(lambda: W_E @ attn.W_O[head].T @ attn.W_V[head].T @ W_U),
                 "W_V and W_O in the wrong order: a token's value is read with W_V, then written with W_O."),
            ])


@CHAPTER.exercise(
    "top1_copying_accuracy", points=1, reference=reference.top1_copying_accuracy, variants=DETECTOR_VARIANTS,
    hint="Take matrix.argmax(dim=-1) (the logit each source row raises most) and compare it with "
         "torch.arange(d_vocab); return the fraction that match as a float.",
)
def grade_top1_copying_accuracy(top1_copying_accuracy: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    n = 30
    noise = torch.randn(n, n, generator=generator)
    copying = noise + 3 * torch.diag((torch.rand(n, generator=generator) < 0.6).float())
    copying[:, 0] += 2.5  # column 0 is large: argmax over the wrong axis gives another answer
    low_rank = FactoredMatrix(torch.randn(n, 6, generator=generator), torch.randn(6, n, generator=generator))
    cases = [
        ("a 30 x 30 tensor with some strong diagonal entries", copying),
        ("the same matrix as a FactoredMatrix", FactoredMatrix(copying, torch.eye(n))),
        ("a random FactoredMatrix of rank 6", low_rank),
        ("the identity (every token copies itself)", torch.eye(n) + 0.01 * noise),
    ]
    for description, matrix in cases:
        dense = matrix.AB if isinstance(matrix, FactoredMatrix) else matrix
        expected = torch.tensor(reference.top1_copying_accuracy(matrix))
        compare_tensors(as_tensor(top1_copying_accuracy(matrix)), expected,
                        what=f"top1_copying_accuracy of {description}", mistakes=[
            (looks_like(lambda: (dense.argmax(dim=0) == torch.arange(n)).float().mean()),
             "you took the argmax over the wrong axis (dim 0, over source tokens); each *row* is a source token: "
             "argmax(dim=-1) gives the logit it raises most."),
            (looks_like(lambda: (dense.argmax(dim=-1) == torch.arange(n)).float().sum()),
             "you returned how many tokens copy; return the fraction (divide by d_vocab)."),
            (looks_like(lambda: (dense.diagonal() > 0).float().mean()),
             "you counted positive diagonal entries; a token is copied when its own logit is the *largest* in its row."),
        ])


# --------------------------------------------------------------------------- composition

@CHAPTER.exercise(
    "k_composition_score", points=2, reference=reference.k_composition_score, variants=DETECTOR_VARIANTS,
    hint="Turn FactoredMatrix inputs into tensors with .AB; the score is (W_OV @ W_QK.T).norm() / "
         "(W_OV.norm() * W_QK.norm()), with Frobenius norms. W_QK is transposed because the earlier head's "
         "output enters the *key* side of x_q W_QK x_k^T.",
)
def grade_k_composition_score(k_composition_score: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    d_model, d_head = 16, 4

    def low_rank() -> Tensor:
        return torch.randn(d_model, d_head, generator=generator) @ torch.randn(d_head, d_model, generator=generator)

    W_OV, W_QK = low_rank(), low_rank()
    aligned_QK = torch.randn(d_model, d_model, generator=generator) @ W_OV  # reads the key side from what W_OV writes
    cases = [
        ("random rank-4 tensors W_OV, W_QK (16 x 16)", W_OV, W_QK),
        ("the same as FactoredMatrix objects", FactoredMatrix(W_OV, torch.eye(d_model)),
         FactoredMatrix(torch.eye(d_model), W_QK)),
        ("W_OV scaled by 10 (the score is scale-free)", 10 * W_OV, W_QK),
        ("a W_QK whose keys read W_OV's output", W_OV, aligned_QK.T),
    ]
    for description, ov, qk in cases:
        ov_t = ov.AB if isinstance(ov, FactoredMatrix) else ov
        qk_t = qk.AB if isinstance(qk, FactoredMatrix) else qk
        expected = torch.tensor(reference.k_composition_score(ov, qk))
        compare_tensors(as_tensor(k_composition_score(ov, qk)), expected, what=f"k_composition_score for {description}", mistakes=[
            (looks_like(lambda: (ov_t @ qk_t).norm() / (ov_t.norm() * qk_t.norm())),
             "you computed W_OV @ W_QK, which is Q-composition (the earlier head feeding the *query*); K-composition "
             "feeds the key side: W_OV @ W_QK.T."),
            (looks_like(lambda: (ov_t @ qk_t.T).norm()),
             "you did not normalise: divide by W_OV.norm() * W_QK.norm(), so that the score does not grow with "
             "the weights' size."),
            (looks_like(lambda: (ov_t @ qk_t.T).norm() ** 2 / (ov_t.norm() ** 2 * qk_t.norm() ** 2)),
             "you used squared norms; the score is a ratio of Frobenius norms, not of their squares."),
            (looks_like(lambda: (qk_t.T @ ov_t).norm() / (ov_t.norm() * qk_t.norm())),
             "you multiplied in the wrong order: the earlier head's OV comes first, W_OV @ W_QK.T."),
        ])


# --------------------------------------------------------------------------- the circuit

ROLES = ("previous_token", "induction")
ROLE_ALIASES = {"previous_token": "previous_token", "prev_token": "previous_token", "prev": "previous_token",
                "previous": "previous_token", "induction": "induction"}


def role_of(key: object) -> str | None:
    """The role a learner's key names: "previous_token", "previous-token heads", "Induction head", ..."""
    return ROLE_ALIASES.get(role_words(key))


@cache
def reference_circuit() -> dict[str, frozenset[tuple[int, int]]]:
    """The shipped model's circuit, measured: heads whose previous-token score (on the start
    token and the first block) or induction score (on the repeat) is above ROLE_THRESHOLD."""
    model = shipped("induction-2l")
    tokens = induction_batch(torch.Generator().manual_seed(2024), 64, model.cfg.d_vocab)
    _, cache_ = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    first_block = INDUCTION_SEQ_LEN + 1
    patterns = [cache_["pattern", layer] for layer in range(model.cfg.n_layers)]
    previous = torch.stack([reference.previous_token_scores(p[:, :, :first_block, :first_block]) for p in patterns])
    induction = torch.stack([reference.prefix_matching_scores(tokens, p) for p in patterns])
    return circuit_where({"previous_token": previous > ROLE_THRESHOLD, "induction": induction > ROLE_THRESHOLD})


@CHAPTER.exercise(
    "induction_circuit", points=2, reference=reference.induction_circuit,
    hint="Use your detectors on the shipped model: which layer-0 head attends to the previous token (on the "
         "first block), which layer-1 heads attend to the token after the earlier copy (on the repeat)? Then "
         "confirm with your ablation table. Return {'previous_token': [(layer, head), ...], 'induction': [...]}.",
)
def grade_induction_circuit(induction_circuit: Callable) -> None:
    given = read_circuit(induction_circuit(), what="induction_circuit()", role_of=role_of, roles=ROLES)
    compare_circuits(reference_circuit(), given, model="induction-2l", explain=explain_induction_roles)


def explain_induction_roles(role: str, ours: set[tuple[int, int]], theirs: set[tuple[int, int]]) -> str:
    extra = sorted(theirs - ours)
    line = f" {extra} {'does' if len(extra) == 1 else 'do'} not play this role in the shipped model." if extra else ""
    if role == "previous_token" and any(layer != 0 for layer, _ in theirs):
        line += " A previous-token head must be in layer 0: an induction head reads what it writes."
    if role == "induction" and any(layer == 0 for layer, _ in theirs):
        line += " A layer-0 head cannot be an induction head: it has no earlier head to compose with."
    if role == "previous_token" and (0, 1) in theirs:
        line += (" Head 0.1 spreads its attention over several recent tokens; its previous-token score is "
                 "well below head 0.0's, and ablating it barely changes the loss on the repeat.")
    if role == "induction" and 0 < len(theirs & ours) < len(ours):
        line += " Both layer-1 heads are induction heads (each has an induction score above 0.9): the model " \
                "splits the job between them, which is why ablating one alone hurts much less than ablating both."
    return line
