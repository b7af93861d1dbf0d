"""Graders for chapter 05, the honest limits, measured.

The references are `solutions/honest_limits.py`. Each grader runs the learner's function
and the reference on seeded inputs (random decoder matrices, small random transformers of
the course's `Transformer` class, hand-made circuits) and, for the error term and the
capstone, on the shipped `code-2l` and one of chapter 05's shipped SAEs. Where the outputs
differ, diagnostics compute what each common mistake would have given and name it.

The learner's objects are only called, with tensors, numbers, strings, callables and
`toy_models` modules; the capstone's answer (strings) is measured on the shipped model.
"""

import re
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from graders import chapter_01
from graders.core import Chapter, GraderFailure, as_tensor, compare_tensors, looks_like
from graders.models import shipped
from solutions import honest_limits as reference
from toy_models.data import ByteTokenizer, load_python_corpus, random_windows
from toy_models.model import Transformer, TransformerConfig, next_token_loss
from toy_models.sae import load_sae

CHAPTER = Chapter("05_honest_limits")
SEEDS = ({}, {"seed": 1})

#: The SAE the error-term grader uses: small, so the check is quick.
GRADING_SAE = "code-2l-sae-64-k8"


def random_model(seed: int, attn_only: bool) -> Transformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(n_layers=2, d_model=18, n_heads=3, d_vocab=11, n_ctx=8,
                            d_mlp=None if attn_only else 32, normalization_type="LN")
    return Transformer(cfg).eval()


# --------------------------------------------------------------------------- superposition is managed

@CHAPTER.exercise("match_features", points=2, reference=reference.match_features, variants=SEEDS,
                  hint="Normalise the rows of both decoders (F.normalize(W, dim=-1)), take unit_a @ unit_b.T, "
                       "and the max over b's features (dim=-1), keeping the sign.")
def grade_match_features(match_features, *, seed=0):
    generator = torch.Generator().manual_seed(seed)
    d_in, d_a, d_b = 8, 20, 30
    # Rows of very different lengths, and some of b's rows the negatives of a's.
    W_a = torch.randn(d_a, d_in, generator=generator) * torch.rand(d_a, 1, generator=generator) * 3
    W_b = torch.randn(d_b, d_in, generator=generator) * torch.rand(d_b, 1, generator=generator) * 3
    W_b[:6] = -2 * W_a[:6]
    W_b[6:10] = 0.5 * W_a[6:10] + 0.1 * torch.randn(4, d_in, generator=generator)
    unit_a, unit_b = F.normalize(W_a, dim=-1), F.normalize(W_b, dim=-1)
    compare_tensors(
        match_features(W_a.clone(), W_b.clone()), reference.match_features(W_a, W_b),
        what=f"match_features(W_dec_a of shape {tuple(W_a.shape)}, W_dec_b of shape {tuple(W_b.shape)})",
        mistakes=[
            (looks_like(lambda: (W_a @ W_b.T).max(dim=-1).values),
             "you took dot products of the raw rows: normalise each decoder row to unit length first, "
             "or long rows look similar to everything."),
            (looks_like(lambda: (unit_a @ unit_b.T).abs().max(dim=-1).values),
             "you took the absolute cosine: a feature and its negative are different features (activations "
             "are non-negative), so keep the sign."),
            (looks_like(lambda: (F.normalize(W_a, dim=0) @ F.normalize(W_b, dim=0).T).max(dim=-1).values),
             "you normalised the columns (dim 0); each feature's direction is a row of W_dec."),
            (lambda actual: actual.shape == (d_b,),
             "you took the max over a's features: return one number per feature of SAE a, the max over b's."),
        ],
    )


# --------------------------------------------------------------------------- feature completeness

@cache
def error_term_inputs(seed: int):
    tokens = random_windows(load_python_corpus("validation"), 4, 64, generator=torch.Generator().manual_seed(300 + seed))
    return load_sae(GRADING_SAE), tokens


@CHAPTER.exercise("error_term_loss_effect", points=2, reference=reference.error_term_loss_effect, variants=SEEDS,
                  hint="Two runs with a hook at sae.cfg.hook_name: one returning sae(acts), one returning "
                       "sae(acts) + (acts - sae(acts)); per-token losses next_token_loss(logits, tokens, "
                       "per_token=True); the first minus the second.")
def grade_error_term_loss_effect(error_term_loss_effect, *, seed=0):
    model = shipped("code-2l")
    sae, tokens = error_term_inputs(seed)
    hook = sae.cfg.hook_name
    with torch.no_grad():
        clean = next_token_loss(model(tokens), tokens, per_token=True)
        spliced = next_token_loss(model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: sae(a))]),
                                  tokens, per_token=True)
        zero = next_token_loss(model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: torch.zeros_like(a))]),
                               tokens, per_token=True)
        error_only = next_token_loss(model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda a, hook: a - sae(a))]),
                                     tokens, per_token=True)
        actual = error_term_loss_effect(model, sae, tokens.clone())
        compare_tensors(
            actual.detach() if isinstance(actual, Tensor) else actual, reference.error_term_loss_effect(model, sae, tokens),
            what=f"error_term_loss_effect of {GRADING_SAE} on 4 validation windows of 64 bytes",
            mistakes=[
                (looks_like(lambda: clean - spliced),
                 "the sign is flipped: return the loss without the error term minus the loss with it, so that a "
                 "positive number means the error term carried something the model needs."),
                (looks_like(lambda: zero - clean),
                 "you replaced the activation by zeros: keep the reconstruction and drop only the error term."),
                (looks_like(lambda: error_only - clean),
                 "you kept the error term and dropped the reconstruction: drop the error, keep sae(acts)."),
                (lambda actual: actual.shape == (), "return the effect at every prediction, shape [batch, pos - 1], "
                                                    "not its mean: the notebook looks at where it is large."),
            ],
        )


# --------------------------------------------------------------------------- claims fail to transfer

TRANSFER_CASES = [
    ("three identical circuits", [{"prev": [(0, 0)], "ind": [(1, 1)]}] * 3),
    ("two of four alike", [{"prev": [(0, 0)], "ind": [(1, 1)]}, {"prev": [(0, 0)], "ind": [(1, 1)]},
                           {"prev": [(0, 1)], "ind": [(1, 1)]}, {"prev": [(0, 0)], "ind": [(1, 0), (1, 1)]}]),
    ("five circuits, heads listed in different orders", [
        {"prev": [(0, 1)], "ind": [(1, 0), (1, 1)]}, {"ind": [(1, 1), (1, 0)], "prev": [(0, 1)]},
        {"prev": [(0, 0)], "ind": [(1, 0)]}, {"prev": [(0, 0)], "ind": [(1, 0)]}, {"prev": [(0, 1)], "ind": [(1, 0)]}]),
    # A role missing from a circuit has no heads: the first matches the third, not the second.
    ("four circuits, one without an 'ind' role", [
        {"prev": [(0, 0)]}, {"prev": [(0, 0)], "ind": [(1, 1)]}, {"prev": [(0, 0)], "ind": []},
        {"prev": [(0, 1)], "ind": [(1, 1)]}]),
]


def _transfer_variants(circuits):
    """What common mistakes give: self-pairs counted, any shared head counted, per-role average,
    only the first circuit's roles compared."""
    import itertools

    def heads(c, role):
        return set(map(tuple, c.get(role, [])))

    roles = {role for c in circuits for role in c}
    every = [(a, b) for a in circuits for b in circuits]
    pairs = list(itertools.combinations(circuits, 2))
    same = lambda a, b: all(heads(a, r) == heads(b, r) for r in roles)  # noqa: E731
    overlap = lambda a, b: all(heads(a, r) & heads(b, r) for r in roles)  # noqa: E731
    return {
        "self": sum(same(a, b) for a, b in every) / len(every),
        "overlap": sum(overlap(a, b) for a, b in pairs) / len(pairs),
        "per_role": sum(heads(a, r) == heads(b, r) for a, b in pairs for r in roles) / (len(pairs) * len(roles)),
        "first_roles": sum(all(heads(a, r) == heads(b, r) for r in a) for a, b in pairs) / len(pairs),
    }


@CHAPTER.exercise("circuit_transfer_rate", points=1, reference=reference.circuit_transfer_rate, variants=({},),
                  hint="itertools.combinations(circuits, 2) gives each pair of different models once; a pair "
                       "counts when every role has the same set of heads in both.")
def grade_circuit_transfer_rate(circuit_transfer_rate):
    for description, circuits in TRANSFER_CASES:
        wrong = _transfer_variants(circuits)
        given = [{role: list(heads) for role, heads in c.items()} for c in circuits]
        compare_tensors(
            as_tensor(circuit_transfer_rate(given)), torch.tensor(reference.circuit_transfer_rate(circuits)),
            what=f"circuit_transfer_rate for {description}",
            mistakes=[
                (looks_like(lambda: torch.tensor(wrong["self"])),
                 "you compared each circuit with itself too: only pairs of *different* models count."),
                (looks_like(lambda: torch.tensor(wrong["overlap"])),
                 "you counted a pair when the circuits merely share a head: transfer by position means the "
                 "same set of heads in every role."),
                (looks_like(lambda: torch.tensor(wrong["per_role"])),
                 "you averaged over roles: a pair of circuits transfers only when every role matches."),
                (looks_like(lambda: torch.tensor(wrong["first_roles"])),
                 "you compared only the roles of the first circuit of each pair: a role that only the other names "
                 "(with heads) makes them differ. Compare every role either circuit has, a missing one as no heads."),
            ],
        )


# --------------------------------------------------------------------------- correlational versus causal

# Chapter 01's exercise, met again: its grader and its reference, worth 1 point here.
CHAPTER.include(chapter_01.CHAPTER.exercises["ablate_direction"], points=1)


# --------------------------------------------------------------------------- scaling is hard

def _patch_alternatives(model, clean, corrupted, metric):
    """Denoising instead of noising, and patching only the final position."""
    def run(base, source, final_only):
        _, cache_ = model.run_with_cache(source, names_filter=lambda n: n.endswith("hook_z") or n.endswith("hook_mlp_out"))
        has_mlp = not model.cfg.attn_only
        out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads + has_mlp)
        where = slice(-1, None) if final_only else slice(None)
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads + has_mlp):
                mlp = head == model.cfg.n_heads
                name = f"blocks.{layer}.hook_mlp_out" if mlp else f"blocks.{layer}.attn.hook_z"

                def patch(act, hook, head=head, mlp=mlp):
                    if mlp:
                        act[:, where] = cache_[hook.name][:, where]
                    else:
                        act[:, where, head] = cache_[hook.name][:, where, head]
                    return act

                out[layer, head] = float(metric(model.run_with_hooks(base, fwd_hooks=[(name, patch)])))
        return out

    with torch.no_grad():
        return {"denoising": run(corrupted, clean, False), "final": run(clean, corrupted, True)}


@CHAPTER.exercise("patch_components", points=2, reference=reference.patch_components,
                  variants=({"attn_only": False}, {"attn_only": True, "seed": 1}),
                  hint="Cache hook_z and hook_mlp_out on the corrupted tokens; for each layer and head, run the "
                       "clean tokens with z[:, :, head] replaced by the corrupted one; then each MLP's hook_mlp_out.")
def grade_patch_components(patch_components, *, seed=0, attn_only=False):
    model = random_model(seed, attn_only)
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 11, (5, 8), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 2:5] = torch.randint(0, 11, (5, 3), generator=generator)

    def metric(logits):
        return (logits[:, -1, 3] - logits[:, -1, 5]).mean()

    expected = reference.patch_components(model, clean, corrupted, metric)
    alternatives = _patch_alternatives(model, clean, corrupted, metric)
    kind = "an attention-only model" if attn_only else "a model with MLPs"
    compare_tensors(
        patch_components(model, clean.clone(), corrupted.clone(), metric), expected,
        what=f"patch_components on {kind} (2 layers, 3 heads; prompts differing at positions 2 to 4)",
        mistakes=[
            (looks_like(lambda: alternatives["denoising"]),
             "you ran the corrupted prompts and patched in clean activations (denoising); this exercise "
             "noises: run the clean prompts, patch in the corrupted activation."),
            (looks_like(lambda: alternatives["final"]),
             "you patched only the final position; patch the component's output at every position."),
            (lambda actual: actual.shape == (2, 3) and not attn_only,
             "the MLPs are missing: with MLPs, a last column holds each layer's MLP (hook_mlp_out)."),
            (lambda actual: actual.shape == (2, 4) and attn_only,
             "this model has no MLPs: return only the heads' columns."),
        ],
    )


COST_CASES = [(2, 2, 49, 1), (3, 4, 16, 50), (12, 12, 1024, 100), (80, 64, 4096, 10)]


@CHAPTER.exercise("patching_cost", points=1, reference=reference.patching_cost, variants=({},),
                  hint="Activation: n_prompts * (2 + n_layers * n_heads * n_pos). Attribution: 3 passes per "
                       "prompt pair, however many components.")
def grade_patching_cost(patching_cost):
    for n_layers, n_heads, n_pos, n_prompts in COST_CASES:
        actual = patching_cost(n_layers, n_heads, n_pos, n_prompts)
        if not isinstance(actual, dict) or not {"activation", "attribution"} <= set(actual):
            raise GraderFailure(f"patching_cost should return a dict with keys 'activation' and 'attribution', "
                                f"got {actual!r}.")
        got = torch.tensor([float(actual["activation"]), float(actual["attribution"])])
        ref = reference.patching_cost(n_layers, n_heads, n_pos, n_prompts)
        components = n_layers * n_heads * n_pos
        compare_tensors(
            got, torch.tensor([float(ref["activation"]), float(ref["attribution"])]),
            what=f"[activation, attribution] passes of patching_cost(n_layers={n_layers}, n_heads={n_heads}, "
                 f"n_pos={n_pos}, n_prompts={n_prompts})",
            mistakes=[
                (lambda a: a[0] == n_prompts * components,
                 "you left out the clean and corrupted caching runs (2 per prompt pair)."),
                (lambda a: a[0] == n_prompts * (2 + n_layers * n_heads),
                 "you counted one run per head: this sweep patches each head at each position separately."),
                (lambda a: n_prompts > 1 and a[0] == 2 + components,
                 "you counted the sweep once: every prompt pair needs its own runs."),
                (lambda a: a[1] == 2 * n_prompts,
                 "attribution patching also needs a backward pass per prompt pair (3 passes, not 2)."),
                (lambda a: a[1] > 3 * n_prompts,
                 "attribution patching's cost does not grow with the number of components: one backward pass "
                 "gives the gradient for all of them."),
            ],
        )


# --------------------------------------------------------------------------- the capstone

_COMPONENT = re.compile(r"^\s*(?:L(\d+)\s*H(\d+)|MLP\s*(\d+))\s*$", re.IGNORECASE)


def component_index(component: str, n_layers: int, n_heads: int) -> tuple[int, int]:
    """(layer, column of patch_components) of "L1H3" or "MLP0"."""
    match = _COMPONENT.match(str(component))
    if match is None:
        raise GraderFailure(f"cannot read component {component!r}: name a head 'L1H3' or an MLP 'MLP0'.")
    if match.group(3) is not None:
        layer, column = int(match.group(3)), n_heads
    else:
        layer, column = int(match.group(1)), int(match.group(2))
        if column >= n_heads:
            raise GraderFailure(f"{component!r}: code-2l has heads 0 to {n_heads - 1} in each layer.")
    if layer >= n_layers:
        raise GraderFailure(f"{component!r}: code-2l has layers 0 to {n_layers - 1}.")
    return layer, column


@torch.no_grad()
def measure_capstone(answer: dict) -> dict:
    """The logit differences of the pair and every component's share of the behaviour that
    noising it removes (1 - the normalised metric)."""
    model, tokenizer = shipped("code-2l"), ByteTokenizer()
    keys = ("clean", "corrupted", "answer", "wrong", "component")
    if not isinstance(answer, dict) or not set(keys) <= set(answer):
        raise GraderFailure(f"capstone_behaviour should return a dict with keys {keys}, got {answer!r}.")
    if not all(isinstance(answer[key], str) for key in keys):
        raise GraderFailure("every value of capstone_behaviour's dict should be a string.")
    clean, corrupted = tokenizer.encode(answer["clean"])[None], tokenizer.encode(answer["corrupted"])[None]
    if clean.shape != corrupted.shape:
        raise GraderFailure(f"the clean and corrupted prompts must have the same length in bytes (to patch position "
                            f"by position); they have {clean.shape[1]} and {corrupted.shape[1]}.")
    if not 2 <= clean.shape[1] <= model.cfg.n_ctx:
        raise GraderFailure(f"the prompts should be 2 to {model.cfg.n_ctx} bytes long.")
    if torch.equal(clean, corrupted):
        raise GraderFailure("the clean and corrupted prompts are the same.")
    answers = [tokenizer.encode(answer[key]) for key in ("answer", "wrong")]
    if any(len(a) != 1 for a in answers) or answers[0][0] == answers[1][0]:
        raise GraderFailure("'answer' and 'wrong' should be two different single bytes (one character each).")
    right, wrong = int(answers[0][0]), int(answers[1][0])

    def logit_diff(logits):
        return logits[:, -1, right] - logits[:, -1, wrong]

    clean_diff, corrupted_diff = logit_diff(model(clean)).item(), logit_diff(model(corrupted)).item()
    result = {"clean_diff": clean_diff, "corrupted_diff": corrupted_diff}
    if clean_diff < 1.0:
        raise GraderFailure(f"on the clean prompt code-2l prefers {answer['answer']!r} to {answer['wrong']!r} by only "
                            f"{clean_diff:.2f} logits: pick a behaviour the model has (at least 1 logit).")
    if clean_diff - corrupted_diff < 1.0:
        raise GraderFailure(f"the corruption changes the logit difference only from {clean_diff:.2f} to "
                            f"{corrupted_diff:.2f}: pick a corruption that removes the behaviour (by at least 1 logit), "
                            "or there is nothing to localise.")
    normalised = reference.patch_components(
        model, clean, corrupted, lambda logits: (logit_diff(logits) - corrupted_diff) / (clean_diff - corrupted_diff))
    result["effects"] = 1 - normalised
    result["component"] = component_index(answer["component"], model.cfg.n_layers, model.cfg.n_heads)
    return result


def component_name(layer: int, column: int, n_heads: int) -> str:
    return f"MLP{layer}" if column == n_heads else f"L{layer}H{column}"


@CHAPTER.exercise("capstone_behaviour", points=2, reference=reference.capstone_behaviour, variants=({},),
                  hint="Find a pair of same-length prompts where code-2l's preference between two next bytes "
                       "flips, run patch_components with the normalised logit difference, and name the component "
                       "whose noising removes the most.")
def grade_capstone_behaviour(capstone_behaviour):
    measured = measure_capstone(capstone_behaviour())
    effects, (layer, column) = measured["effects"], measured["component"]
    n_heads = shipped("code-2l").cfg.n_heads
    best = effects.max().item()
    best_at = divmod(int(effects.argmax()), effects.shape[1])
    effect = effects[layer, column].item()
    if effect < max(0.25, 0.5 * best):
        raise GraderFailure(
            f"noising {component_name(layer, column, n_heads)} removes only {effect:.0%} of the behaviour "
            f"(logit difference {measured['clean_diff']:.2f} clean, {measured['corrupted_diff']:.2f} corrupted); "
            f"the largest effect is {component_name(*best_at, n_heads)}'s, {best:.0%}. Name a component whose effect "
            "is at least 25% and at least half the largest.")
