# %% [markdown]
# # 05 · The honest limits, measured
#
# The earlier chapters showed what the tools can do. This one measures what they
# cannot do yet. Each section takes one open problem of the field, turns it into an
# experiment on the course's small models, and ends with a number you have to
# explain. The numbers are computed when you run the notebook, from the shipped
# checkpoints, never typed in.
#
# 1. Superposition is managed, not solved: do two SAEs find the same features?
# 2. The variance-explained trap: a reconstruction that looks good and a model that works badly.
# 3. Feature completeness: what does the SAE's error term carry?
# 4. Claims fail to transfer: the same circuit, five seeds, different heads.
# 5. Correlational versus causal: a perfect probe whose direction the model does not need.
# 6. Scaling is hard: what a full patching sweep costs as models grow.
# 7. Doing the work: a capstone on `code-2l`, graded by a check and by a person.
#
# **How this notebook works.** Each exercise is a function to finish: replace the
# `raise NotImplementedError(...)` with your code and run the cell; the `check(...)`
# cell after it grades it. `mi-course check course/05_honest_limits.ipynb` grades
# every code exercise; the capstone's write-up is graded by hand, with the rubric
# given there. The notebook runs in under a minute on a laptop CPU.
#
# The toy models are tiny, so every effect here is small-scale. Where the toy
# differs from what has been reported on large models, the text says so.

# %% [markdown] exercise_table=true

# %%
import itertools
import json
import time
from collections.abc import Callable

import einops
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from graders import make_check
from toy_models import load_pretrained
from toy_models.checkpoints import checkpoint_dir, read_description
from toy_models.code_concepts import byte_concepts
from toy_models.data import ByteTokenizer, load_python_corpus, make_ioi_prompts, repeated_random_tokens
from toy_models.exercises import finish_first
from toy_models.metrics import induction_scores
from toy_models.model import next_token_loss
from toy_models.plots import integer_ticks, signed_heatmap
from toy_models.sae import SHIPPED_SAE, SWEEP_SAES, evaluate_sae, hook_activations, load_sae

check = make_check("05_honest_limits")
torch.set_num_threads(1)  # small models run faster on one thread (see toy_models.threads)
tokenizer = ByteTokenizer()
code_model = load_pretrained("code-2l").requires_grad_(False)
N_WINDOWS, N_CTX = 32, code_model.cfg.n_ctx
# Contiguous validation text: no SAE or model here was trained on it.
val_tokens = load_python_corpus("validation")[: N_WINDOWS * N_CTX].reshape(N_WINDOWS, N_CTX)

# %% [markdown] effort=["match_features"]
# ## 1 · Superposition is managed, not solved: do two SAEs agree?
#
# If an SAE recovered *the* features a model uses, two SAEs trained on the same
# activations would find the same dictionary. `code-2l-sae-256-k8` and
# `code-2l-sae-256-k8-seed1` differ only in their seed (initial weights and the
# sample of training tokens); both have 256 TopK features (k = 8) on `code-2l`'s
# layer-0 MLP.
#
# **What.** `match_features(W_dec_a, W_dec_b)`: for each feature of SAE a, the
# largest cosine similarity between its decoder row and any decoder row of SAE b.
# Keep the sign: feature activations are non-negative, so a direction and its
# negative are different features.
#
# **Why.** A feature with a close twin (cosine > 0.9, say) is one the method finds
# reliably; one without is, at least partly, a choice the training made.

# %% exercise="match_features" difficulty=2 minutes=10
from solutions.honest_limits import match_features

# %%
sae_a, sae_b = load_sae("code-2l-sae-256-k8"), load_sae("code-2l-sae-256-k8-seed1")
shipped_sae = load_sae(SHIPPED_SAE)
TWIN = 0.9
finish_first(match_features)
with torch.no_grad():
    a_in_b = match_features(sae_a.W_dec, sae_b.W_dec)
    b_in_a = match_features(sae_b.W_dec, sae_a.W_dec)
    a_in_shipped = match_features(sae_a.W_dec, shipped_sae.W_dec)
    # Acts on these tokens, to tell the features that fire often from the rare ones.
    acts = hook_activations(code_model, val_tokens, sae_a.cfg.hook_name).flatten(0, 1)
    frequency = (sae_a.encode(acts) > 0).float().mean(0)
twin_fraction = (a_in_b > TWIN).float().mean().item()
print(f"features of seed 0 with a twin (cos > {TWIN}) in seed 1: {twin_fraction:.0%}; "
      f"seed 1 in seed 0: {(b_in_a > TWIN).float().mean():.0%}")
print(f"features of the 256-feature SAE with a twin among the shipped 1024: {(a_in_shipped > TWIN).float().mean():.0%}")
print(f"median best cosine: seed 0 in seed 1 {a_in_b.median():.2f}, in the shipped SAE {a_in_shipped.median():.2f}")
common = frequency > frequency.median()
print(f"twins among the more frequent half of the features: {(a_in_b[common] > TWIN).float().mean():.0%}, "
      f"the rarer half: {(a_in_b[~common] > TWIN).float().mean():.0%}")
plt.figure(figsize=(7, 3))
plt.hist([a_in_b.numpy(), a_in_shipped.numpy()], bins=40, label=["seed 1 (256 features)", "shipped (1024 features)"])
plt.axvline(TWIN, color="k", ls="--")
plt.xlabel("best cosine with the other SAE")
plt.ylabel("features of seed 0")
plt.legend()
plt.show()

# %% [markdown]
# **Explain the number.** Only a small part of the dictionary comes back with a new
# seed, and the frequent features come back more often than the rare ones. The
# toy exaggerates this: these SAEs trained for only 300 steps on 32k tokens, so
# their features are still moving, and seed 1 also saw a different sample of
# tokens. But the direction of the result matches what has been reported for large
# SAEs (Paulo & Belrose 2025, for example): many features have no close counterpart
# in an SAE trained from another seed. The 256-feature SAE and the shipped 1024-feature
# one, trained longer on more data, share even fewer near-identical directions:
# a dictionary of another size carves the same activations differently (feature
# splitting), so the dictionary size is a choice, not a property of the model.
# Before you build on a feature, check that it survives a second seed.

# %% [markdown]
# ## 2 · The variance-explained trap
#
# Chapter 04 measured an SAE two ways: the fraction of variance explained (FVE),
# and the next-token loss when its reconstruction replaces the activation. The
# sweep below has two sizes (64, 256 features) and three sparsities (k = 2, 8, 32)
# plus the shipped SAE. The loss is reported as the **increase** over the clean
# loss, and as chapter 04's "CE loss recovered" (against zero ablation).

# %%
eval_tokens = val_tokens[:16]
rows = []
for name in [*SWEEP_SAES, SHIPPED_SAE]:
    if name.endswith("seed1"):
        continue
    sae = load_sae(name)
    metrics = evaluate_sae(code_model, sae, eval_tokens)
    rows.append({"name": name, "d_sae": sae.cfg.d_sae, "k": sae.cfg.k, **metrics,
                 "loss_increase": metrics["ce_sae"] - metrics["ce_clean"]})
unigram = read_description(checkpoint_dir("code-2l"))["metrics"]["unigram_validation_loss"]
print(f"clean loss {rows[0]['ce_clean']:.3f} nats; a unigram model (bytes by frequency alone): {unigram:.3f}")
for row in rows:
    print(f"{row['name']:26s} L0 {row['l0']:5.1f}  FVE {row['fraction_variance_explained']:.3f}  "
          f"CE recovered {row['ce_loss_recovered']:.3f}  loss +{row['loss_increase']:.3f} nats")
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
for row in rows:
    for axis, y in zip(ax, ("ce_loss_recovered", "loss_increase")):
        axis.scatter(row["fraction_variance_explained"], row[y], s=20 + row["d_sae"] / 8)
        axis.annotate(f"{row['d_sae']}/k{row['k']}", (row["fraction_variance_explained"], row[y]), fontsize=8)
ax[0].set_ylabel("CE loss recovered")
ax[1].set_ylabel("loss increase (nats)")
for axis in ax:
    axis.set_xlabel("fraction of variance explained")
plt.tight_layout()
plt.show()

# %%
# The trap: of the SAEs that explain about 80% of the variance or more, the one that costs the model most.
good_looking = [row for row in rows if row["fraction_variance_explained"] >= 0.75]
trap = max(good_looking, key=lambda row: row["loss_increase"])
learned = unigram - trap["ce_clean"]  # what code-2l knows beyond byte frequencies
print(f"{trap['name']}: FVE {trap['fraction_variance_explained']:.1%}, CE recovered {trap['ce_loss_recovered']:.1%}, "
      f"but the loss rises by {trap['loss_increase']:.3f} nats, "
      f"{trap['loss_increase'] / learned:.0%} of everything code-2l learned beyond a unigram model")

# %% [markdown]
# **Explain the number.** Variance explained counts every direction of the
# activation equally; the model does not. A reconstruction error of 10–20% of the
# variance can sit in the directions later layers read most, so a high FVE says
# little about the loss. "CE loss recovered" flatters for a different reason: its
# baseline, zeroing the whole layer, is catastrophic, so nearly any reconstruction
# recovers most of it. Measured against what the model learned beyond a trivial
# baseline, the same SAE looks much worse. Large-model reports say the same:
# splicing in SAEs with good reconstruction metrics leaves a model whose loss
# matches a model trained with far less compute (Gao et al. 2024). Report the loss
# increase in nats, next to a meaningful baseline, not only the fraction.

# %% [markdown] effort=["error_term_loss_effect"]
# ## 3 · Feature completeness: what do the features miss?
#
# Write the activation as `acts = sae(acts) + error`. Interpreting the features
# explains `sae(acts)`; whatever the model does with `error` is left unexplained
# ("dark matter").
#
# **What.** `error_term_loss_effect(model, sae, tokens)`: the per-token loss with
# the activation replaced by the reconstruction alone, minus the per-token loss with
# the reconstruction plus the error (which is the clean run), shape `[batch, pos-1]`.
# Use `next_token_loss(logits, tokens, per_token=True)`.
#
# **Why.** It is the price of ignoring the error term, token by token, so you can
# look at *where* the features fall short.

# %% exercise="error_term_loss_effect" difficulty=3 minutes=15
from solutions.honest_limits import error_term_loss_effect

# %%
finish_first(error_term_loss_effect)
with torch.no_grad():
    effect = error_term_loss_effect(code_model, shipped_sae, eval_tokens)  # [batch, pos-1]

    # Control: replace the error by random noise of the same size at every token.
    # If the true error hurts far more than noise of the same norm, it is not noise.
    generator = torch.Generator().manual_seed(0)

    def random_error(acts, hook):
        recon = shipped_sae(acts)
        error_norm = (acts - recon).norm(dim=-1, keepdim=True)
        noise = torch.randn(acts.shape, generator=generator)
        return recon + error_norm * noise / noise.norm(dim=-1, keepdim=True)

    clean_loss = next_token_loss(code_model(eval_tokens), eval_tokens, per_token=True)
    noisy = code_model.run_with_hooks(eval_tokens, fwd_hooks=[(shipped_sae.cfg.hook_name, random_error)])
    noise_effect = next_token_loss(noisy, eval_tokens, per_token=True) - clean_loss
print(f"dropping the error term of {SHIPPED_SAE}: loss +{effect.mean():.4f} nats per token; "
      f"an error of the same size in a random direction: +{noise_effect.mean():.4f}")
share = effect.clamp_min(0).flatten().sort(descending=True).values
top = int(0.05 * len(share))
print(f"the worst 5% of tokens carry {share[:top].sum() / share.sum():.0%} of the damage")


# %%
finish_first(error_term_loss_effect)


def show_worst(effect, k=8, before=30):
    """The predictions most hurt by dropping the error term; the byte predicted is in [brackets]."""
    flat = effect.flatten().topk(k).indices
    for index in flat.tolist():
        b, p = divmod(index, effect.shape[1])
        row = eval_tokens[b].tolist()
        context = bytes(row[max(0, p + 1 - before): p + 1]).decode(errors="replace")
        target = bytes(row[p + 1: p + 2]).decode(errors="replace")
        print(f"  +{effect[b, p]:5.2f}  " + repr(context + "[" + target + "]")[1:-1])


show_worst(effect)

# %% [markdown]
# **Explain the number.** Dropping the error term costs a tenth of a nat per token,
# and the damage is concentrated: a few percent of the tokens carry a large share of
# it. Look at the snippets: they are rare contexts (licence boilerplate, English
# prose, capitalised words) that 1024 features did not make room for. That is what
# the features miss, and a circuit written only in SAE features explains the model
# *minus* this.
#
# Here the toy differs from reports on GPT-2 (Gurnee 2024): there, replacing the
# error by a random vector of the same norm hurt *less* than the real error, a sign
# that the error is pathological. Here the random vector hurts more. One reason to
# distrust this control: the layer-0 MLP's activations are GELU outputs, and a
# random direction pushes them where they never are, so the comparison is not
# like with like. A fairer control would draw the random vector from the
# activations' own distribution: try it, and decide what the number means.

# %% [markdown] effort=["circuit_transfer_rate"]
# ## 4 · Claims fail to transfer: five seeds of the induction model
#
# `induction-2l` and `induction-2l-seed1` ... `-seed4` were trained with the same
# recipe, data stream and code; only the seed of the initial weights differs. Each
# one learned induction (their `config.json` records it). Where does the circuit
# live in each?
#
# **What.** `circuit_transfer_rate(circuits)`: given one circuit per model,
# `{role: [(layer, head), ...]}`, the fraction of pairs of different models whose
# circuits name exactly the same heads in every role.
#
# **Why.** That is how often "the induction head is L1H1", found in one model, would
# hold in another trained the same way: transfer by position alone.

# %% exercise="circuit_transfer_rate" difficulty=2 minutes=10
from solutions.honest_limits import circuit_transfer_rate

# %%
finish_first(circuit_transfer_rate)
SEQ_LEN = 24
SEEDS = ["induction-2l", *[f"induction-2l-seed{seed}" for seed in range(1, 5)]]
repeated = repeated_random_tokens(64, SEQ_LEN, 512, n_repeats=2, bos_token=0,
                                  generator=torch.Generator().manual_seed(5))
PREV_THRESHOLD, INDUCTION_THRESHOLD = 0.4, 0.2


def induction_circuit_of(model):
    """Heads by their attention scores: previous-token heads in layer 0, induction heads in layer 1."""
    _, cache = model.run_with_cache(repeated, names_filter=lambda name: name.endswith("hook_pattern"))
    prev = cache["pattern", 0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, -1))
    induction = induction_scores(model, repeated, SEQ_LEN)[1]
    circuit = {"previous_token": [(0, h) for h in range(len(prev)) if prev[h] > PREV_THRESHOLD],
               "induction": [(1, h) for h in range(len(induction)) if induction[h] > INDUCTION_THRESHOLD]}
    return circuit, prev, induction


def repeat_loss(model, heads=()):
    """Loss on the repeat, with `heads` zero-ablated: does the circuit do the work?"""
    def ablate(z, hook):
        for layer, head in heads:
            if layer == hook.layer():
                z[:, :, head] = 0.0
        return z
    logits = model.run_with_hooks(repeated, fwd_hooks=[(lambda name: name.endswith("hook_z"), ablate)])
    return next_token_loss(logits, repeated, per_token=True)[:, -(SEQ_LEN - 1):].mean().item()


circuits = []
with torch.no_grad():
    for name in SEEDS:
        model = load_pretrained(name)
        circuit, prev, induction = induction_circuit_of(model)
        circuits.append(circuit)
        heads = [head for role in circuit.values() for head in role]
        print(f"{name:18s} prev-token scores {prev.numpy().round(2)}, induction scores {induction.numpy().round(2)} "
              f"-> {circuit}; repeat loss {repeat_loss(model):.2f}, circuit ablated {repeat_loss(model, heads):.2f}")
print(f"induction circuits that transfer by position: {circuit_transfer_rate(circuits):.0%} of pairs")

# %% [markdown]
# Now the IOI model, where the circuit is found by patching rather than by attention
# scores. `ioi-3l-seed1` is `ioi-3l`'s recipe with seed 1 (only one extra seed: each
# takes minutes to train). The next exercise writes the patching sweep used here,
# in Section 6 and in the capstone.

# %% [markdown] effort=["patch_components"]
# ### Patching every component
#
# **What.** `patch_components(model, clean_tokens, corrupted_tokens, metric)`:
# noising, as in chapter 03: run the clean prompts with one component's output
# replaced, at every position, by its value on the corrupted prompts, and return
# the metric of each run, shape `[n_layers, n_heads (+1)]`. Columns are the heads
# (`blocks.{l}.attn.hook_z`, head axis 2), then, if the model has MLPs, the MLP
# (`blocks.{l}.hook_mlp_out`).
#
# **Why.** One map of the whole model, heads and MLPs, for any behaviour with a
# minimal pair of prompts.

# %% exercise="patch_components" difficulty=3 minutes=20
from solutions.honest_limits import patch_components

# %%
ioi_prompts = make_ioi_prompts(64, split="test", seed=7)
abc = ioi_prompts.corrupt("abc")
batch = torch.arange(len(ioi_prompts))
finish_first(patch_components, circuit_transfer_rate)


def ioi_logit_diff(logits):
    final = logits[batch, ioi_prompts.end_pos]
    return (final[batch, ioi_prompts.io_tokens] - final[batch, ioi_prompts.s_tokens]).mean()


ioi_circuits = []
fig, axes = plt.subplots(1, 2, figsize=(10, 3), layout="constrained")
for axis, name in zip(axes, ["ioi-3l", "ioi-3l-seed1"]):
    model = load_pretrained(name)
    with torch.no_grad():
        clean_ld, abc_ld = ioi_logit_diff(model(ioi_prompts.tokens)).item(), ioi_logit_diff(model(abc.tokens)).item()
    scores = patch_components(model, ioi_prompts.tokens, abc.tokens,
                              lambda logits: (ioi_logit_diff(logits) - abc_ld) / (clean_ld - abc_ld))
    heads = scores[:, : model.cfg.n_heads]
    # The heads whose noising removes at least 20% of the logit difference.
    ioi_circuits.append({"important": [(layer, h) for layer, h in (heads < 0.8).nonzero().tolist()]})
    signed_heatmap(axis, scores, centre=1.0, label="logit difference kept when noised")
    axis.set_title(f"{name}: logit diff {clean_ld:.1f}")
    axis.set_xlabel("head (last column: MLP)")
    axis.set_ylabel("layer")
    integer_ticks(axis)
    print(f"{name}: heads whose noising costs >= 20%: {ioi_circuits[-1]['important']}")
plt.show()
print(f"IOI circuits that transfer by position: {circuit_transfer_rate(ioi_circuits):.0%} of pairs")

# %% [markdown]
# **Explain the numbers.** With only two heads per layer the induction models have
# few places to put the circuit, and still the previous-token head changes from
# seed to seed: L0H0 in some, L0H1 in another, split over both heads in others. The
# induction job is split over both layer-1 heads in every seed. The *algorithm*, a
# previous-token head feeding induction heads, is the same in every seed: ablating
# the circuit destroys the repeat's loss in each. So a claim of
# the form "head L1H1 does X" is about one trained model; the claim "this model
# class learns X by composing a previous-token head with an induction head" is the
# one that can transfer, and it has to be tested per model. On large models the same
# circuit is also found at different heads across seeds and sizes, and sometimes a
# different mechanism does the same job. Two seeds of IOI are too few for a rate,
# but look at the maps: the heads that matter most are not even in the same layer.
# The thresholds (scores above 0.4 and 0.2, a 20% patching effect) are choices
# too: move them and see how the rates change.

# %% [markdown] effort=["ablate_direction"]
# ## 5 · Correlational versus causal: a perfect probe the model does not need
#
# A linear probe on `code-2l`'s residual stream after layer 0 learns to tell bytes
# in a line's leading indentation from the rest. High accuracy shows the
# information is *there*, linearly readable. Is the probe's direction what the
# model *uses*?
#
# **What.** `ablate_direction(acts, direction)`: remove from every activation its
# component along `direction` (normalise it first), keeping everything orthogonal.
#
# **Why.** If the model relied on that direction, removing it would hurt.

# %% exercise="ablate_direction" difficulty=2 minutes=10
from solutions.honest_limits import ablate_direction

# %%
finish_first(ablate_direction)
PROBE_HOOK, CONCEPT = "blocks.0.hook_resid_post", "in leading indentation"
with torch.no_grad():
    resid = hook_activations(code_model, val_tokens, PROBE_HOOK)  # [batch, pos, d_model]
labels = torch.tensor(byte_concepts(bytes(val_tokens.flatten().tolist()))[CONCEPT]).float()
X, train, test = resid.flatten(0, 1), slice(0, 20 * N_CTX), slice(20 * N_CTX, None)  # whole windows apart
mean, std = X[train].mean(0), X[train].std(0)


def fit_probe(X, steps=200):
    """Logistic regression on standardised activations; returns its direction (in raw units) and test accuracy."""
    torch.manual_seed(0)
    w, b = torch.zeros(X.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=0.05)
    Xs = (X - mean) / std
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(Xs[train] @ w + b, labels[train])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (((Xs[test] @ w + b) > 0).float() == labels[test]).float().mean().item()
    return (w / std).detach(), accuracy


direction, accuracy = fit_probe(X)
majority = max(labels[test].mean().item(), 1 - labels[test].mean().item())
with torch.no_grad():
    clean = code_model(val_tokens, return_type="loss").item()
    ablated = code_model.run_with_hooks(val_tokens, return_type="loss",
                                        fwd_hooks=[(PROBE_HOOK, lambda a, hook: ablate_direction(a, direction))]).item()
    random_direction = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(1))
    random_ablated = code_model.run_with_hooks(
        val_tokens, return_type="loss", fwd_hooks=[(PROBE_HOOK, lambda a, hook: ablate_direction(a, random_direction))]).item()
_, accuracy_after = fit_probe(ablate_direction(X, direction))
print(f"probe accuracy {accuracy:.1%} (always guessing the majority: {majority:.1%})")
print(f"loss: clean {clean:.4f}, probe direction ablated {ablated:.4f} (+{ablated - clean:.4f}), "
      f"a random direction ablated {random_ablated:.4f} (+{random_ablated - clean:.4f})")
print(f"a new probe trained after the ablation: {accuracy_after:.1%}")

# %% [markdown]
# **Explain the numbers.** The probe is nearly perfect, well above the majority
# guess, and removing its direction changes the loss by the tiny amount printed above,
# less than removing a random direction does; a fresh probe still finds the
# concept after the ablation. The
# information is spread over many directions, and the probe picked one that
# *correlates* with it. Accuracy measures what can be read out, not what the model
# reads. Only an intervention (ablate, patch, steer) tests use, and even a null
# result from ablating one direction can come from redundancy, not irrelevance.

# %% [markdown] effort=["patching_cost"]
# ## 6 · Scaling is hard: what a full sweep costs
#
# **What.** `patching_cost(n_layers, n_heads, n_pos, n_prompts)`: the passes through
# the model (forward or backward, one each) to score every head at every position
# on `n_prompts` prompt pairs, one pair at a time, with activation patching (two
# caching runs, then one patched run per layer, head and position) and with
# attribution patching (a clean forward and backward pass and a corrupted forward
# pass, whatever the number of components).
#
# **Why.** Activation patching is exact but its cost is the number of components
# times the cost of a forward pass, which grows with the model too.

# %% exercise="patching_cost" difficulty=1 minutes=10
from solutions.honest_limits import patching_cost


# %%
def seconds_per_pass(model, n_pos, repeats=20):
    tokens = torch.randint(0, model.cfg.d_vocab, (1, n_pos))
    with torch.no_grad():
        model(tokens)  # warm up
        start = time.perf_counter()
        for _ in range(repeats):
            model(tokens)
    return (time.perf_counter() - start) / repeats


def n_params(model):
    return sum(p.numel() for p in model.parameters())


toys = {name: load_pretrained(name) for name in ["induction-2l", "ioi-3l", "code-2l"]}
finish_first(patching_cost)
measured = {}
for name, model in toys.items():
    cfg = model.cfg
    seconds = seconds_per_pass(model, cfg.n_ctx)
    flops = 2 * n_params(model) * cfg.n_ctx  # about 2 FLOPs per parameter per token
    measured[name] = flops / seconds
    cost = patching_cost(cfg.n_layers, cfg.n_heads, cfg.n_ctx, 1)
    print(f"{name:13s} {n_params(model) / 1e6:.2f}M params, {cfg.n_ctx} positions: {seconds * 1e3:.2f} ms a pass, "
          f"{cost['activation']} passes ({cost['activation'] * seconds:.1f} s) per prompt for activation patching, "
          f"{cost['attribution']} for attribution")

# Extrapolate with the fastest rate measured here (a CPU; a GPU is roughly 100-1000x faster).
rate = max(measured.values())
for name, (layers, heads, d_model, n_pos) in {"GPT-2 small": (12, 12, 768, 1024),
                                              "a 7B model": (32, 32, 4096, 4096),
                                              "a 70B model": (80, 64, 8192, 4096)}.items():
    params = 12 * layers * d_model**2  # attention and MLP weights per layer
    seconds = 2 * params * n_pos / rate
    cost = patching_cost(layers, heads, n_pos, 100)
    print(f"{name:12s}: {cost['activation']:.2e} passes for 100 prompts = {cost['activation'] * seconds / 86400 / 365:.1e} "
          f"CPU-years; attribution {cost['attribution']} passes = {cost['attribution'] * seconds / 3600:.1f} CPU-hours")

# %%
# Measured, not counted: a full head x position sweep on ioi-3l for one prompt pair, and
# its attribution estimate from one forward and backward pass.
model, prompt = toys["ioi-3l"], ioi_prompts.tokens[:1]
corrupted = abc.tokens[:1]
start = time.perf_counter()
with torch.no_grad():
    _, corrupted_cache = model.run_with_cache(corrupted, names_filter=lambda name: name.endswith("hook_z"))
    model(prompt)
    for layer, head, position in itertools.product(range(model.cfg.n_layers), range(model.cfg.n_heads),
                                                   range(prompt.shape[1])):
        def patch(z, hook, head=head, position=position):
            z[:, position, head] = corrupted_cache[hook.name][:, position, head]
            return z
        model.run_with_hooks(prompt, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)])
activation_seconds = time.perf_counter() - start
start = time.perf_counter()
with torch.no_grad():
    model(corrupted)
model.requires_grad_(True)
model(prompt)[0, -1].logsumexp(-1).backward()  # a forward and a backward pass
model.zero_grad(set_to_none=True)
model.requires_grad_(False)
attribution_seconds = time.perf_counter() - start
print(f"ioi-3l, one prompt of {prompt.shape[1]} tokens: activation patching {activation_seconds:.2f} s, "
      f"attribution patching {attribution_seconds * 1e3:.1f} ms ({activation_seconds / attribution_seconds:.0f}x)")

# %% [markdown]
# **Explain the numbers.** The count grows as layers × heads × positions × prompts,
# and each pass grows with the model: the product is out of reach for a large
# model even on a cluster, which is why the field uses attribution patching (a
# linear approximation, chapter 03), patches coarser components first, or samples.
# The approximation is what you give up: chapter 03 showed where attribution
# patching disagrees with the real patch (large, nonlinear effects, such as
# attention patterns that saturate). The extrapolation is rough: real costs depend on
# hardware, batching and memory, not on parameter counts alone; the order of
# magnitude is the point.

# %% [markdown] effort=["capstone_behaviour"]
# ## 7 · Doing the work: a capstone
#
# Pick a narrow behaviour of `code-2l`, localise it with patching, propose a circuit,
# and try to break it. The auto-graded part checks your localisation against a
# measurement; the write-up is graded by hand with the rubric below.
#
# **What.** `capstone_behaviour()`: return your behaviour as a minimal pair of
# prompts of the same byte length, the two next bytes it decides between, and the
# component your patching says carries it most (`"L1H3"` or `"MLP0"`). The check
# requires that the model prefers `answer` on the clean prompt by at least 1 logit,
# that the corruption lowers that by at least 1 logit, and that noising your
# component removes at least 25% of the behaviour and at least half as much as the
# strongest component. The reference answer is an example (bracket matching):
# replace it with your own behaviour.
#
# **Ideas.** Closing the right bracket or quote; `self` after `def f(`; the
# indentation after a `:` line; repeating an identifier defined earlier (induction on
# bytes); the attribute after `self.` when it appeared earlier in the function.

# %% exercise="capstone_behaviour" difficulty=4 minutes=60
from solutions.honest_limits import capstone_behaviour

# %%
finish_first(capstone_behaviour, patch_components)
choice = capstone_behaviour()
clean_t, corrupted_t = tokenizer.encode(choice["clean"])[None], tokenizer.encode(choice["corrupted"])[None]
right, wrong = tokenizer.encode(choice["answer"])[0], tokenizer.encode(choice["wrong"])[0]


def capstone_logit_diff(logits):
    return logits[:, -1, right] - logits[:, -1, wrong]


with torch.no_grad():
    clean_ld, corrupted_ld = capstone_logit_diff(code_model(clean_t)).item(), capstone_logit_diff(code_model(corrupted_t)).item()
effects = 1 - patch_components(code_model, clean_t, corrupted_t,
                               lambda logits: (capstone_logit_diff(logits) - corrupted_ld) / (clean_ld - corrupted_ld))
print(f"logit difference {choice['answer']!r} - {choice['wrong']!r}: clean {clean_ld:.2f}, corrupted {corrupted_ld:.2f}")
fig, ax = plt.subplots(figsize=(5, 2.5), layout="constrained")
image = ax.imshow(effects, cmap="Reds", vmin=0, vmax=1)
fig.colorbar(image, ax=ax, label="share of the behaviour removed")
ax.set(xlabel="head (last column: MLP)", ylabel="layer", title="noising each component")
integer_ticks(ax)
plt.show()
print(effects.numpy().round(2))

# %% [markdown]
#         **Your write-up.** In the cell below (a markdown cell: double-click it), write up
#         your capstone: about 300–600 words, with the numbers from your own runs. Add code
#         cells above it for your experiments: patch single positions, path-patch between
#         components, ablate everything *except* your circuit, try other prompts of the same
#         kind. It is graded by hand with this rubric (12 points):
#
# | criterion | points |
# |---|---|
# | **Behaviour.** The pair of prompts isolates one narrow behaviour; you say what the model must know to do it, and why the corruption removes exactly that. | 2 |
# | **Localisation.** You show the patching map and say which components matter, with their numbers, and what the map cannot tell you (noising at every position at once mixes "where" with "what"). | 2 |
# | **Proposed circuit.** A mechanism, not a list of heads: what each component reads, from which position, and what it writes; at least one prediction that follows from it. | 3 |
# | **Trying to break it.** At least two tests that could have failed (other prompts, other corruptions, patching one position, ablating the rest of the model), with their numbers, and what you concluded when one did. | 3 |
# | **Honesty.** What your evidence does not show: how much of the behaviour is left unexplained, which seeds or prompts you did not try, and which claim you are least sure of. | 2 |

# %% [markdown] written_answer="capstone_writeup" points=12
# **Behaviour.** Bracket matching: after `        x = self.run(a` code-2l predicts
# `)` over `]` by about 6 logits; with `[` instead of `(` it prefers `]`. The model
# must remember which bracket is open, several bytes back.
#
# **Localisation.** Noising each component at every position: MLP0 removes most of
# the behaviour and L1H3 about 60%; the layer-0 heads matter little. Because the
# corruption is the bracket byte itself, MLP0's effect is partly that it processes
# that byte (its output at the bracket's position encodes "( seen"); the map cannot
# separate "stores the bracket" from "moves it".
#
# **Proposed circuit.** MLP0 at the bracket position writes a bracket-type
# direction; L1H3, at the final position, attends back to the open bracket and
# copies that direction forward, where it raises `)` over `]`. Prediction: patching
# L1H3's output only at the final position should carry most of its effect, and
# its attention from the last byte should peak on the bracket.
#
# **Trying to break it.** (Run these: single-position patching of L1H3, its
# attention pattern, longer arguments between the bracket and the end, nested
# brackets.) Report which predictions held and which failed, with numbers.
#
# **Honesty.** One prompt pair; the remaining 40% of L1H3-independent behaviour is
# unexplained; other seeds of code-2l may use other heads (Section 4).

# %% [markdown]
# ## What to take away
#
# Every method in this course works on these toy models, and every one has a
# measured limit: SAE dictionaries are one of many, a good-looking reconstruction
# can break the model, the error term carries real computation, circuits are facts
# about one trained model, probes find information the model may not use, and exact
# patching does not scale. None of these is a reason to stop; each is a number to
# report next to the claim it qualifies.
