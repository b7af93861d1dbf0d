"""Graders for chapter 03, indirect object identification.

The references are `solutions/ioi.py`. The patching graders check the learner's results
twice: against the reference, and against `transformer_lens.patching`, an implementation
nobody here wrote (called with the clean and corrupted roles swapped, since the course
patches *corrupted* activations into the *clean* run). Where the outputs differ,
diagnostics recompute what each common mistake gives (patching in the wrong direction, at
the wrong position or on the wrong axis, a metric that is not normalised, ...) and name
the mistake that matches.

The last exercise, `ioi_circuit`, is checked against the circuit measured here from the
shipped `ioi-3l`, not against a hard-coded answer.
"""

import dataclasses
from collections.abc import Callable
from functools import cache, partial

import torch
from torch import Tensor
from transformer_lens import patching

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
from solutions import ioi as reference
from toy_models.data import IOIPrompts, make_ioi_prompts
from toy_models.model import Transformer, TransformerConfig

CHAPTER = Chapter("03_indirect_object_identification")

# A small random model with other shapes than the shipped one's (3 heads, d_head != d_model /
# n_heads), on the IOI vocabulary, where every head matters a little.
RANDOM_CONFIG = TransformerConfig(n_layers=3, d_model=24, n_heads=3, d_head=5, d_vocab=78, n_ctx=16, d_mlp=32)

#: Role thresholds of the reference circuit (see `reference_circuit`).
ATTENTION_THRESHOLD = 0.5  # attention from the last position to the role's names
ABLATION_THRESHOLD = 0.8  # mean-ablating the head alone keeps less than this fraction of the logit difference


# --------------------------------------------------------------------------- helpers

def net_named(model: str, seed: int) -> Transformer:
    return shipped("ioi-3l") if model == "ioi-3l" else randomized(RANDOM_CONFIG, seed)


def setup(model: str, seed: int, corruption: str, n_prompts: int = 16):
    """The model, clean and corrupted prompts, and the normalised metric (a cheap callable)."""
    net = net_named(model, seed)
    clean = make_ioi_prompts(n_prompts, seed=seed + 10)
    corrupted = clean.corrupt(corruption, seed=seed)
    with torch.no_grad():
        clean_ld = reference.mean_logit_diff(net(clean.tokens), clean).item()
        corrupted_ld = reference.mean_logit_diff(net(corrupted.tokens), clean).item()
    metric = partial(reference.normalised_logit_diff, prompts=clean, clean_logit_diff=clean_ld,
                     corrupted_logit_diff=corrupted_ld)
    return net, clean, corrupted, metric


def cache_of(model: Transformer, tokens: Tensor, suffix: str):
    _, activations = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(suffix))
    return activations


WRONG_DIRECTION = ("you patched in the wrong direction: clean activations into the corrupted run. This chapter "
                   "*noises*: run the model on the clean tokens and replace the activation by its value on the "
                   "corrupted tokens, so that 1 means 'nothing broke' and a drop shows what the behaviour needs.")


# --------------------------------------------------------------------------- metrics

def prompts_ending_early(seed: int) -> tuple[IOIPrompts, int]:
    """Prompts whose answer is due before the last position (as with padded batches)."""
    prompts = make_ioi_prompts(6, seed=seed)
    return dataclasses.replace(prompts, end_pos=prompts.end_pos - torch.arange(6) % 3), prompts.tokens.shape[1]


def logit_cases(seed: int) -> list[tuple[str, Tensor, IOIPrompts]]:
    generator = torch.Generator().manual_seed(seed)
    prompts = make_ioi_prompts(6, seed=seed)
    early, pos = prompts_ending_early(seed + 1)
    return [
        ("random logits of shape (6, 15, 78) for 6 IOI prompts", 3 * torch.randn(6, 15, 78, generator=generator), prompts),
        ("random logits for prompts whose end_pos is not always the last position (padded batch)",
         3 * torch.randn(6, pos + 2, 78, generator=generator), early),
    ]


def ld_with(logits: Tensor, prompts: IOIPrompts, *, position: Tensor | int | None = None, sign: int = 1,
            reduce: bool = True, softmax: bool = False) -> Tensor:
    batch = torch.arange(len(prompts))
    final = logits[batch, prompts.end_pos if position is None else position]
    if softmax:
        final = final.softmax(dim=-1)
    diff = sign * (final[batch, prompts.io_tokens] - final[batch, prompts.s_tokens])
    return diff.mean() if reduce else diff


@CHAPTER.exercise(
    "mean_logit_diff", points=1, reference=reference.mean_logit_diff, variants=({}, {"seed": 1}),
    hint="final = logits[torch.arange(batch), prompts.end_pos] is [batch, d_vocab]; take final[arange, io_tokens] - "
         "final[arange, s_tokens] and average over the prompts.",
)
def grade_mean_logit_diff(mean_logit_diff: Callable, *, seed: int = 0) -> None:
    for description, logits, prompts in logit_cases(seed):
        compare_tensors(as_tensor(mean_logit_diff(logits.clone(), prompts)), reference.mean_logit_diff(logits, prompts),
                        what=f"mean_logit_diff on {description}", mistakes=[
            (looks_like(lambda: ld_with(logits, prompts, position=-1)),
             "wrong position: you read the logits at the last position; the answer is due at prompts.end_pos, "
             "which is earlier when a batch is padded."),
            (looks_like(lambda: ld_with(logits, prompts, sign=-1)),
             "wrong sign: the logit difference is logit(IO) - logit(S), positive when the model is right."),
            (lambda actual: actual.ndim == 1, "you returned one value per prompt: average over the prompts."),
            (looks_like(lambda: ld_with(logits, prompts, softmax=True)),
             "you compared probabilities; the metric compares logits (or log-probabilities, which differ by the same "
             "constant for both names)."),
        ])


@CHAPTER.exercise(
    "normalised_logit_diff", points=1, reference=reference.normalised_logit_diff, variants=({}, {"seed": 1}),
    uses=("mean_logit_diff",),
    hint="(mean_logit_diff(logits, prompts) - corrupted_logit_diff) / (clean_logit_diff - corrupted_logit_diff): "
         "1 on the clean run, 0 on the corrupted one.",
)
def grade_normalised_logit_diff(normalised_logit_diff: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed + 5)
    for description, logits, prompts in logit_cases(seed):
        raw = reference.mean_logit_diff(logits, prompts)
        # The last pair has the logit difference *below* the corrupted one: the metric is then negative.
        for clean, corrupted in ((raw.item() + 2.5, raw.item() - 1.0), (4.0, -3.5 + torch.rand((), generator=generator).item()),
                                 (raw.item() + 3.0, raw.item() + 0.5)):
            expected = reference.normalised_logit_diff(logits, prompts, clean, corrupted)
            compare_tensors(as_tensor(normalised_logit_diff(logits.clone(), prompts, clean, corrupted)), expected,
                            what=f"normalised_logit_diff on {description}, clean_logit_diff={clean:.3g}, "
                                 f"corrupted_logit_diff={corrupted:.3g}", mistakes=[
                (looks_like(lambda: raw), "the metric is not normalised: you returned the raw logit difference. "
                                          "Subtract corrupted_logit_diff and divide by clean - corrupted, so that "
                                          "results from different prompt sets and models compare."),
                (looks_like(lambda: raw / clean), "you divided by clean_logit_diff only: subtract the corrupted baseline "
                                                  "first, and divide by clean - corrupted."),
                (looks_like(lambda: 1 - expected), "reversed: the metric is 1 on the clean run and 0 on the corrupted "
                                                   "one, (LD - corrupted) / (clean - corrupted)."),
                (looks_like(lambda: (raw - clean) / (corrupted - clean)),
                 "reversed: the metric is 1 on the clean run and 0 on the corrupted one."),
                (looks_like(lambda: expected.abs()),
                 "you took an absolute value: when the patched run's logit difference is below the corrupted one, "
                 "the metric is negative, and that sign is information (the patch made things worse than the "
                 "corruption)."),
            ])


# --------------------------------------------------------------------------- direct logit attribution

def residual_with(model, stack, scale, prompts, *, centre=True, divide=True, weight=True, sign=1, reduce=True) -> Tensor:
    directions = sign * (model.W_U[:, prompts.io_tokens] - model.W_U[:, prompts.s_tokens]).T
    x = stack - stack.mean(dim=-1, keepdim=True) if centre else stack
    x = x / scale if divide else x
    x = x * model.ln_final.w if weight else x
    per_prompt = torch.einsum("cbm,bm->cb", x, directions)
    return per_prompt.mean(dim=-1) if reduce else per_prompt


@CHAPTER.exercise(
    "residual_logit_diff", points=2, reference=reference.residual_logit_diff,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="directions = (model.W_U[:, prompts.io_tokens] - model.W_U[:, prompts.s_tokens]).T is [batch, d_model]. "
         "Centre the stack over d_model, divide by scale, multiply by model.ln_final.w, then einsum with the "
         "directions ('component batch d_model, batch d_model -> component batch') and average over the batch.",
)
@torch.no_grad()
def grade_residual_logit_diff(residual_logit_diff: Callable, *, seed: int = 0, model: str = "ioi-3l") -> None:
    net = net_named(model, seed)
    prompts = make_ioi_prompts(8, seed=seed + 20)
    _, activations = net.run_with_cache(prompts.tokens)
    accumulated, _ = activations.accumulated_resid(pos_slice=-1, return_labels=True)
    scale = activations["ln_final.hook_scale"][:, -1]
    generator = torch.Generator().manual_seed(seed)
    random_stack = 2 * torch.randn(5, 8, net.cfg.d_model, generator=generator) + 0.7
    for description, stack in (("the accumulated residual stream at the last position", accumulated),
                               ("5 random components (not centred)", random_stack)):
        expected = reference.residual_logit_diff(net, stack, scale, prompts)
        compare_tensors(residual_logit_diff(net, stack.clone(), scale.clone(), prompts), expected,
                        what=f"residual_logit_diff on {model}, for {description}", mistakes=[
            (lambda actual: actual.shape != expected.shape,
             f"return one number per component, shape {tuple(expected.shape)}: average over the prompts."),
            (looks_like(lambda: residual_with(net, stack, scale, prompts, centre=False)),
             "you did not centre the components: the final LayerNorm subtracts each vector's mean over d_model."),
            (looks_like(lambda: residual_with(net, stack, scale, prompts, divide=False)),
             "you did not divide by the final LayerNorm's scale (the cached ln_final.hook_scale)."),
            (looks_like(lambda: residual_with(net, stack, scale, prompts, weight=False)),
             "you left out the final LayerNorm's weight model.ln_final.w."),
            (looks_like(lambda: residual_with(net, stack, scale, prompts, sign=-1)),
             "wrong sign: the direction is W_U[:, IO] - W_U[:, S]."),
        ])


# --------------------------------------------------------------------------- activation patching

def noise_layer_pos(model, clean_tokens, corrupted_tokens, metric, activation, index: Callable[[int], tuple]) -> Tensor:
    """Patching by layer and position with a given (possibly wrong) index into the activation."""
    corrupted = cache_of(model, corrupted_tokens, f"hook_{activation}")
    out = torch.zeros(model.cfg.n_layers, clean_tokens.shape[1])
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            for position in range(clean_tokens.shape[1]):
                def patch(act, hook, position=position):
                    act[index(position)] = corrupted[hook.name][index(position)]
                    return act
                logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.hook_{activation}", patch)])
                out[layer, position] = float(metric(logits))
    return out


ORACLES_LAYER_POS = {"resid_pre": patching.get_act_patch_resid_pre, "attn_out": patching.get_act_patch_attn_out,
                     "mlp_out": patching.get_act_patch_mlp_out}


@CHAPTER.exercise(
    "patch_residual_by_position", points=3, reference=reference.patch_residual_by_position,
    # 16 prompts, more than the 15 positions, tell act[position] (the batch axis) from act[:, position];
    # the other variants take 8, which keeps the check under a second (one forward pass per
    # layer and position, for the learner and the reference).
    variants=({}, {"seed": 1, "corruption": "flip", "activation": "attn_out", "n_prompts": 8},
              {"seed": 2, "model": "random", "activation": "mlp_out", "n_prompts": 8}),
    hint="Cache the corrupted run; for each layer and position, run model.run_with_hooks(clean_tokens, fwd_hooks="
         "[(f'blocks.{layer}.hook_{activation}', hook)]) with a hook that sets act[:, position] to the corrupted "
         "activation at that position and returns act; store float(metric(logits)).",
)
def grade_patch_residual_by_position(patch_residual_by_position: Callable, *, seed: int = 0, model: str = "ioi-3l",
                                     corruption: str = "abc", activation: str = "resid_pre", n_prompts: int = 16) -> None:
    net, clean, corrupted, metric = setup(model, seed, corruption, n_prompts)
    actual = patch_residual_by_position(net, clean.tokens.clone(), corrupted.tokens.clone(), metric, activation)
    what = f"patch_residual_by_position({activation!r}) on {model} with {corruption!r} corruption"
    mistakes = [
        (looks_like(lambda: ORACLES_LAYER_POS[activation](net, corrupted.tokens, cache_of(net, clean.tokens, ""), metric)),
         WRONG_DIRECTION),
        (looks_like(lambda: noise_layer_pos(net, clean.tokens, corrupted.tokens, metric, activation, lambda p: (p,))),
         "wrong position: act[position] indexes the *batch* axis (one prompt, every position). Activations are "
         "[batch, pos, d_model]: patch act[:, position]."),
        (looks_like(lambda: noise_layer_pos(net, clean.tokens, corrupted.tokens, metric, activation,
                                            lambda p: (slice(None), slice(p, None)))),
         "wrong position: you patched position `pos` and every position after it; patch one position at a time."),
        (looks_like(lambda: noise_layer_pos(net, clean.tokens, corrupted.tokens, metric, activation,
                                            lambda p: (slice(None), slice(None)))),
         "you patched every position at once in each run; patch only act[:, position]."),
    ]
    # The reference agrees with transformer_lens.patching (tests/test_graders_03.py), so one
    # comparison is enough, and the check stays under a second.
    compare_tensors(actual, reference.patch_residual_by_position(net, clean.tokens, corrupted.tokens, metric, activation),
                    what=what, mistakes=mistakes)


def noise_heads(model, clean_tokens, corrupted_tokens, metric, activation, index: Callable[[int], tuple]) -> Tensor:
    corrupted = cache_of(model, corrupted_tokens, f"hook_{activation}")
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                def patch(act, hook, head=head):
                    act[index(head)] = corrupted[hook.name][index(head)]
                    return act
                logits = model.run_with_hooks(clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_{activation}", patch)])
                out[layer, head] = float(metric(logits))
    return out


ORACLES_HEADS = {"z": patching.get_act_patch_attn_head_out_all_pos,
                 "pattern": patching.get_act_patch_attn_head_pattern_all_pos,
                 "v": patching.get_act_patch_attn_head_v_all_pos}


@CHAPTER.exercise(
    "patch_head_outputs", points=3, reference=reference.patch_head_outputs,
    variants=({}, {"seed": 1, "corruption": "flip", "activation": "pattern"},
              {"seed": 2, "model": "random", "activation": "v"}),
    hint="For each head, a hook on f'blocks.{layer}.attn.hook_{activation}' that copies the corrupted activation "
         "of that head only: z is [batch, pos, head, d_head] (act[:, :, head]); a pattern is "
         "[batch, head, query_pos, key_pos] (act[:, head]). Patch every position; run the clean tokens.",
)
def grade_patch_head_outputs(patch_head_outputs: Callable, *, seed: int = 0, model: str = "ioi-3l",
                             corruption: str = "abc", activation: str = "z") -> None:
    net, clean, corrupted, metric = setup(model, seed, corruption)
    actual = patch_head_outputs(net, clean.tokens.clone(), corrupted.tokens.clone(), metric, activation)
    what = f"patch_head_outputs({activation!r}) on {model} with {corruption!r} corruption"
    last_only = (lambda h: (slice(None), h, slice(-1, None))) if activation == "pattern" else \
        (lambda h: (slice(None), slice(-1, None), h))
    other_axis = (lambda h: (slice(None), slice(None), h)) if activation == "pattern" else (lambda h: (slice(None), h))
    mistakes = [
        (looks_like(lambda: ORACLES_HEADS[activation](net, corrupted.tokens, cache_of(net, clean.tokens, ""), metric)),
         WRONG_DIRECTION),
        (looks_like(lambda: noise_heads(net, clean.tokens, corrupted.tokens, metric, activation, last_only)),
         "wrong position: you patched the head at the last position only; patch it at every position."),
        (looks_like(lambda: noise_heads(net, clean.tokens, corrupted.tokens, metric, activation, other_axis)),
         "you indexed the wrong axis for the head: hook_z is [batch, pos, head, d_head] (act[:, :, head]), while "
         "hook_pattern is [batch, head, query_pos, key_pos] (act[:, head])."),
    ]
    compare_tensors(actual, reference.patch_head_outputs(net, clean.tokens, corrupted.tokens, metric, activation),
                    what=what, mistakes=mistakes)


# --------------------------------------------------------------------------- path patching

def direct_path_with(model, clean_tokens, corrupted_tokens, metric, *, sign: int = 1, swap: bool = False) -> Tensor:
    """head -> logits, with the change subtracted (sign=-1) or the runs swapped (swap)."""
    if swap:
        clean_tokens, corrupted_tokens = corrupted_tokens, clean_tokens
    clean, corrupted = cache_of(model, clean_tokens, "hook_z"), cache_of(model, corrupted_tokens, "hook_z")
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                change = sign * (corrupted["z", layer][:, :, head] - clean["z", layer][:, :, head]) @ model.blocks[layer].attn.W_O[head]
                hook = (f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", lambda resid, hook, change=change: resid + change)
                out[layer, head] = float(metric(model.run_with_hooks(clean_tokens, fwd_hooks=[hook])))
    return out


@CHAPTER.exercise(
    "path_patch_head_to_logits", points=2, reference=reference.path_patch_head_to_logits,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="Cache z on both runs. For each head, change = (z_corrupted - z_clean)[:, :, head] @ W_O[head] is "
         "[batch, pos, d_model]; run the clean tokens with a hook on the last block's hook_resid_post that returns "
         "resid + change (the final LayerNorm then recomputes), and store float(metric(logits)).",
)
def grade_path_patch_head_to_logits(path_patch_head_to_logits: Callable, *, seed: int = 0, model: str = "ioi-3l") -> None:
    net, clean, corrupted, metric = setup(model, seed, "abc")
    expected = reference.path_patch_head_to_logits(net, clean.tokens, corrupted.tokens, metric)
    compare_tensors(path_patch_head_to_logits(net, clean.tokens.clone(), corrupted.tokens.clone(), metric), expected,
                    what=f"path_patch_head_to_logits on {model}", mistakes=[
        (looks_like(lambda: reference.patch_head_outputs(net, clean.tokens, corrupted.tokens, metric, "z")),
         "you patched the head's output into the model (activation patching), so the later layers saw it too: "
         "its total effect. The direct path adds the change to the *final* residual stream only."),
        (looks_like(lambda: direct_path_with(net, clean.tokens, corrupted.tokens, metric, sign=-1)),
         "wrong sign: add z_corrupted - z_clean (what the corruption changes), not z_clean - z_corrupted."),
        (looks_like(lambda: direct_path_with(net, clean.tokens, corrupted.tokens, metric, swap=True)),
         WRONG_DIRECTION),
    ])


def head_to_heads_with(model, clean_tokens, corrupted_tokens, metric, receivers, receiver_input, *, freeze=True,
                       all_heads=False) -> Tensor:
    clean, corrupted = cache_of(model, clean_tokens, "hook_z"), cache_of(model, corrupted_tokens, "hook_z")
    first = min(layer for layer, _ in receivers)
    names = sorted({f"blocks.{layer}.attn.hook_{receiver_input}" for layer, _ in receivers})
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    with torch.no_grad():
        for s_layer in range(first):
            for s_head in range(model.cfg.n_heads):
                def sender(z, hook, s_layer=s_layer, s_head=s_head):
                    z = clean[hook.name].clone() if freeze else z
                    if hook.layer() == s_layer:
                        z[:, :, s_head] = corrupted[hook.name][:, :, s_head]
                    return z
                recorded = {}

                def record(act, hook):
                    recorded[hook.name] = act.clone()
                    return act
                model.run_with_hooks(clean_tokens, fwd_hooks=[(lambda n: n.endswith("attn.hook_z"), sender),
                                                              *[(n, record) for n in names]])

                def patch(act, hook):
                    for layer, head in receivers:
                        if layer == hook.layer():
                            if all_heads:
                                act[:] = recorded[hook.name]
                            else:
                                act[:, :, head] = recorded[hook.name][:, :, head]
                    return act
                out[s_layer, s_head] = float(metric(model.run_with_hooks(clean_tokens, fwd_hooks=[(n, patch) for n in names])))
    return out


@CHAPTER.exercise(
    "path_patch_head_to_heads", points=3, reference=reference.path_patch_head_to_heads,
    variants=({}, {"seed": 1, "model": "ioi-3l", "receiver_input": "k"}, {"seed": 2, "receiver_input": "v"}),
    hint="Step 1, per sender: run the clean tokens with a hook on every attn.hook_z that returns the *clean* z "
         "(frozen) except the sender's head, taken from the corrupted run, and record the receivers' "
         "hook_{receiver_input}. Step 2: run the clean tokens with only the receivers' heads of that activation "
         "replaced by the recorded values; store float(metric(logits)). Senders in layers >= the first receiver's stay 0.",
)
def grade_path_patch_head_to_heads(path_patch_head_to_heads: Callable, *, seed: int = 0, model: str = "random",
                                   receiver_input: str = "q") -> None:
    net, clean, corrupted, metric = setup(model, seed, "flip")
    # ioi-3l's S-suppression heads; on the random model, receivers in two layers, the higher listed first.
    receivers = [(1, 0), (1, 3)] if model == "ioi-3l" else [(2, 1), (1, 0)]
    args = (net, clean.tokens, corrupted.tokens, metric, receivers, receiver_input)
    layers = sorted({layer for layer, _ in receivers})
    first = layers[0]
    before_first = (torch.arange(net.cfg.n_layers) < first)[:, None]

    def only_in(layer: int) -> Tensor:
        """What patching only the receivers in `layer` gives."""
        return reference.path_patch_head_to_heads(net, clean.tokens, corrupted.tokens, metric,
                                                  [r for r in receivers if r[0] == layer], receiver_input) * before_first

    expected = reference.path_patch_head_to_heads(*args)
    actual = path_patch_head_to_heads(net, clean.tokens.clone(), corrupted.tokens.clone(), metric, list(receivers), receiver_input)
    compare_tensors(actual, expected, what=f"path_patch_head_to_heads on {model}, receivers {receivers}, "
                                           f"receiver_input={receiver_input!r}", mistakes=[
        (looks_like(lambda: head_to_heads_with(*args, freeze=False)),
         "in step 1 you did not freeze the other heads at their clean values: the sender's change then also "
         "reaches the receivers through intermediate heads, which is not the path sender -> receiver."),
        (looks_like(lambda: head_to_heads_with(net, corrupted.tokens, clean.tokens, metric, receivers, receiver_input)),
         WRONG_DIRECTION),
        (looks_like(lambda: head_to_heads_with(*args, all_heads=True)),
         "in step 2 you patched every head of the receivers' layers; patch only the receiver heads."),
        (looks_like(lambda: reference.patch_head_outputs(net, clean.tokens, corrupted.tokens, metric, "z") * before_first),
         "you patched the sender's output into the whole model (activation patching): path patching lets the "
         "change reach the receivers' inputs only."),
        *[(looks_like(lambda layer=layer: only_in(layer)),
           f"you patched only the receivers in layer {layer}: receivers can sit in several layers, so record and "
           f"patch hook_{receiver_input} in each of their layers.") for layer in layers if len(layers) > 1],
        (lambda actual: actual.shape == expected.shape and actual[first:].abs().sum() > 0,
         f"senders in layer {first} or later should stay 0: the senders are the heads before the *lowest* "
         f"receiver layer (here {first}, whatever order the receivers come in)."),
    ])


# --------------------------------------------------------------------------- attribution patching

def attribution_with(model, clean_tokens, corrupted_tokens, metric, *, sign=1, gradient_on="clean", end_only=False,
                     add_value=True) -> Tensor:
    clean, corrupted = cache_of(model, clean_tokens, "hook_z"), cache_of(model, corrupted_tokens, "hook_z")
    tokens = clean_tokens if gradient_on == "clean" else corrupted_tokens
    leaves = {}

    def track(z, hook):
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        z.retain_grad()
        leaves[hook.name] = z
        return z
    with torch.enable_grad():
        value = metric(model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith("attn.hook_z"), track)]))
        value.backward()
    rows = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        change = sign * (corrupted[name] - clean[name]) * leaves[name].grad
        rows.append((change[:, -1:] if end_only else change).sum(dim=(0, 1, 3)))
    with torch.no_grad():
        base = metric(model(clean_tokens))
    return (base if add_value else 0) + torch.stack(rows)


@CHAPTER.exercise(
    "attribution_patch_heads", points=2, reference=reference.attribution_patch_heads,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="Run the clean tokens with a hook on every attn.hook_z that calls z.retain_grad() (after "
         "z = z.detach().requires_grad_(True) if z does not require grad) and keeps z; call metric(logits).backward(); then per layer einsum((z_corrupted - z_clean), z_clean.grad, "
         "'batch pos head d_head, batch pos head d_head -> head') and add the clean metric value.",
)
def grade_attribution_patch_heads(attribution_patch_heads: Callable, *, seed: int = 0, model: str = "ioi-3l") -> None:
    net, clean, corrupted, metric = setup(model, seed, "abc")
    expected = reference.attribution_patch_heads(net, clean.tokens, corrupted.tokens, metric)
    args = (net, clean.tokens, corrupted.tokens, metric)
    compare_tensors(as_tensor(attribution_patch_heads(net, clean.tokens.clone(), corrupted.tokens.clone(), metric)),
                    expected, what=f"attribution_patch_heads on {model}", mistakes=[
        (looks_like(lambda: attribution_with(*args, sign=-1)),
         "wrong direction: the change is z_corrupted - z_clean (noising the clean run), not z_clean - z_corrupted."),
        (looks_like(lambda: attribution_with(*args, gradient_on="corrupted")),
         "you took the gradient on the corrupted run: the linear approximation is around the clean run, which "
         "is the run being patched."),
        (looks_like(lambda: attribution_with(*args, end_only=True)),
         "wrong position: you summed the last position only; a head's output changes at every position, and "
         "later positions read the earlier ones. Sum over all positions."),
        (looks_like(lambda: attribution_with(*args, add_value=False)),
         "you returned the estimated *change* of the metric; add the clean run's metric value, so that the "
         "estimate compares with patch_head_outputs."),
    ])


# --------------------------------------------------------------------------- mean ablation

def ablation_with(model, prompts, mean_tokens, heads, *, kind="mean", mean_dims=(0,)) -> Tensor:
    reference_z = cache_of(model, mean_tokens, "hook_z")

    def ablate(z, hook):
        for layer, head in heads:
            if layer == hook.layer():
                z[:, :, head] = 0.0 if kind == "zero" else reference_z[hook.name][:, :, head].mean(dim=mean_dims)
        return z
    with torch.no_grad():
        logits = model.run_with_hooks(prompts.tokens, fwd_hooks=[(lambda n: n.endswith("attn.hook_z"), ablate)])
    return reference.mean_logit_diff(logits, prompts)


@CHAPTER.exercise(
    "ablated_logit_diff", points=2, reference=reference.ablated_logit_diff,
    variants=({}, {"seed": 1, "model": "random"}),
    hint="Cache hook_z on mean_tokens; with a hook on every attn.hook_z, set z[:, :, head] to "
         "mean_z[:, :, head].mean(dim=0) (over the batch only: one mean per position) for each (layer, head) of "
         "that layer; run prompts.tokens and return the mean logit difference at prompts.end_pos.",
)
def grade_ablated_logit_diff(ablated_logit_diff: Callable, *, seed: int = 0, model: str = "ioi-3l") -> None:
    net = net_named(model, seed)
    prompts = make_ioi_prompts(24, seed=seed + 30)
    mean_tokens = make_ioi_prompts(24, seed=seed + 31).corrupt("abc").tokens
    for heads in ([(1, 0), (1, 3)] if model == "ioi-3l" else [(1, 1), (2, 0)],
                  [(layer, head) for layer in range(net.cfg.n_layers) for head in range(net.cfg.n_heads) if (layer + head) % 2],
                  []):  # no head ablated: the plain logit difference
        expected = reference.ablated_logit_diff(net, prompts, mean_tokens, heads)
        compare_tensors(as_tensor(ablated_logit_diff(net, prompts, mean_tokens.clone(), list(heads))), expected,
                        what=f"ablated_logit_diff on {model}, ablating {heads}", mistakes=[
            (looks_like(lambda: ablation_with(net, prompts, mean_tokens, heads, kind="zero")),
             "you zero-ablated: replace each head's z by its mean over mean_tokens, not by 0 (zero is far off the "
             "distribution the later layers expect)."),
            (looks_like(lambda: ablation_with(net, prompts, mean_tokens, heads, mean_dims=(0, 1))),
             "you averaged over the batch *and the positions*; keep one mean per position: .mean(dim=0)."),
            (looks_like(lambda: ablation_with(net, prompts, prompts.tokens, heads)),
             "you took the means over the prompts themselves; take them over mean_tokens (ABC prompts, whose names "
             "carry no information about the answer)."),
        ])


# --------------------------------------------------------------------------- the circuit

ROLES = ("name_mover", "s_suppression")
ROLE_ALIASES = {"name_mover": "name_mover", "name_movers": "name_mover", "name_gatherer": "name_mover",
                "s_suppression": "s_suppression", "subject_suppression": "s_suppression", "s_suppressor": "s_suppression"}
GPT2_ROLES = {"s_inhibition", "duplicate_token", "induction", "previous_token", "backup_name_mover",
              "negative_name_mover"}


def role_of(key: object) -> str:
    words = role_words(key)
    if words in ROLE_ALIASES:
        return ROLE_ALIASES[words]
    if words in GPT2_ROLES:
        raise GraderFailure(f"role {key!r} is GPT-2's taxonomy, and ioi-3l has no such heads: no head needs to detect "
                            "the duplicate, since the repeated name always sits right before the verb. The roles here "
                            f"are {', '.join(map(repr, ROLES))}.")
    raise GraderFailure(f"unknown role {key!r}: the roles are {', '.join(map(repr, ROLES))}.")


def circuit_measurements(n_prompts: int = 200, seed: int = 2024) -> dict[str, Tensor]:
    """The shipped model's heads, measured: attention from the last position to IO + S1 and to
    S2, the OV circuit's copying on names, and the logit difference kept when each head alone
    is mean-ablated (means over ABC prompts)."""
    model = shipped("ioi-3l")
    prompts = make_ioi_prompts(n_prompts, seed=seed)
    mean_tokens = prompts.corrupt("abc", seed=seed).tokens
    _, activations = model.run_with_cache(prompts.tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    batch = torch.arange(n_prompts)
    end = prompts.end_pos
    to_names = torch.stack([activations["pattern", layer][batch, :, end, prompts.io_pos]
                            + activations["pattern", layer][batch, :, end, prompts.s1_pos] for layer in range(3)]).mean(1)
    to_s2 = torch.stack([activations["pattern", layer][batch, :, end, prompts.s2_pos] for layer in range(3)]).mean(1)
    with torch.no_grad():
        clean = reference.ablated_logit_diff(model, prompts, mean_tokens, [])
        kept = torch.tensor([[reference.ablated_logit_diff(model, prompts, mean_tokens, [(layer, head)]) / clean
                              for head in range(model.cfg.n_heads)] for layer in range(model.cfg.n_layers)])
        names = prompts.io_tokens.unique()
        copying = torch.tensor([[
            (model.embed.W_E[names] @ model.blocks[layer].attn.W_V[head] @ model.blocks[layer].attn.W_O[head]
             @ model.W_U[:, names]).diagonal().mean() for head in range(model.cfg.n_heads)] for layer in range(3)])
    return {"attention_to_names": to_names, "attention_to_s2": to_s2, "kept_when_ablated": kept, "copying": copying}


@cache
def reference_circuit() -> dict[str, frozenset[tuple[int, int]]]:
    """The shipped model's circuit, measured (`circuit_measurements`):

    * name movers: the last position attends to the two names of the first clause (IO + S1,
      above ATTENTION_THRESHOLD) and the OV circuit copies names (positive diagonal);
    * S-suppression: the last position attends to S2 (above ATTENTION_THRESHOLD) and
      mean-ablating the head alone keeps less than ABLATION_THRESHOLD of the logit difference.
    """
    m = circuit_measurements()
    return circuit_where({
        "name_mover": (m["attention_to_names"] > ATTENTION_THRESHOLD) & (m["copying"] > 0),
        "s_suppression": (m["attention_to_s2"] > ATTENTION_THRESHOLD) & (m["kept_when_ablated"] < ABLATION_THRESHOLD),
    })


@CHAPTER.exercise(
    "ioi_circuit", points=2, reference=reference.ioi_circuit,
    hint="Which heads does the last position use to look at the two names of the first clause (layer 0), and which "
         "look at S2 and, ablated, destroy the logit difference? Return {'name_mover': [(layer, head), ...], "
         "'s_suppression': [...]}.",
)
def grade_ioi_circuit(ioi_circuit: Callable) -> None:
    given = read_circuit(ioi_circuit(), what="ioi_circuit()", role_of=role_of, roles=ROLES)
    compare_circuits(reference_circuit(), given, model="ioi-3l", explain=explain_ioi_roles)


def explain_ioi_roles(role: str, ours: set[tuple[int, int]], theirs: set[tuple[int, int]]) -> str:
    """What the measurements say about each head given a role it does not play."""
    m = circuit_measurements()
    line = ""
    for layer, head in sorted(theirs - ours):
        line += (f" Head {layer}.{head}: attention from the last position to IO + S1 "
                 f"{m['attention_to_names'][layer, head]:.2f}, to S2 {m['attention_to_s2'][layer, head]:.2f}; "
                 f"mean-ablating it alone keeps {m['kept_when_ablated'][layer, head]:.0%} of the logit difference.")
        if role == "s_suppression" and (layer, head) == (2, 3):
            line += " It attends to S2, but the model barely needs it: attention is not use."
    return line
