# %% [markdown]
# # 04 · Superposition and sparse autoencoders
#
# A model has more things to represent than it has neurons or dimensions. This
# chapter shows how it copes, *superposition*, first in a toy model small enough to
# draw (Elhage et al. 2022, *Toy Models of Superposition*), then undoes it in a real
# model: you build the pieces of a **sparse autoencoder** (SAE), measure one
# honestly, and use the course's shipped SAE on the byte-level Python model
# `code-2l` to find features, steer the model with one, and test your own labels.
#
# **How this notebook works.** Each exercise is a function to finish: replace the
# `raise NotImplementedError(...)` with your code and run the cell. The cell after
# it, `check(name)`, grades your function and prints `PASS`, or what was expected,
# what came back and the most likely mistake.
# `mi-course check course/04_superposition_and_saes.ipynb` grades everything at once.
# The notebook runs in a few minutes on a laptop CPU.

# %% [markdown] exercise_table=true

# %%
import math

import einops
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from graders import make_check
from toy_models import load_pretrained
from toy_models import superposition as sp
from toy_models.code_concepts import CONCEPTS, byte_concepts
from toy_models.data import ByteTokenizer, load_python_corpus
from toy_models.exercises import finish_first
from toy_models.sae import (
    FEATURE_LABELS, SHIPPED_SAE, STEERING_FEATURE, SAEConfig, SparseAutoencoder, collect_activations, hook_activations,
    load_sae, resample_dead_features, validation_windows,
)

check = make_check("04_superposition_and_saes")
torch.set_num_threads(1)  # small models train faster on one thread (see toy_models.threads)
tokenizer = ByteTokenizer()

# %% [markdown]
# ## Part 1 · Toy models of superposition
#
# The toy model squeezes `n_features` sparse inputs (each is 0 with probability
# `1 - p`, else uniform in [0, 1]) through `n_hidden` dimensions and back:
# `h = W x`, `x' = ReLU(Wᵀ h + b)`. Column `i` of `W` is the direction feature `i` gets.
# Features differ in **importance** `I_i` (here `0.9^i`), and the loss weighs each
# feature's squared error by it. `toy_models.superposition` has the model, a batched
# trainer (one independent model per sparsity level, the `instances` axis) and two
# shipped sweeps.

# %% [markdown] effort=["importance_weighted_loss"]
# ### The importance-weighted loss
#
# **What.** `L = mean over the batch of Σ_i I_i (x_i - x'_i)²`, one number per instance.
#
# **Why.** Importance is what makes the model choose: with too few dimensions, it
# keeps the features whose loss matters most.

# %% exercise="importance_weighted_loss" difficulty=1 minutes=5
from solutions.superposition_saes import importance_weighted_loss

# %% [markdown]
# ### The geometry: 5 features in 2 dimensions
#
# `superposition-5-2` is ten models, from dense (every feature present with
# probability 1) to sparse (0.05). Each arrow is a column `W_i`, coloured by
# importance (dark = important).

# %%
toy = load_pretrained("superposition-5-2")
W = toy.W.detach()  # [instances, hidden=2, features=5]
x = sp.sparse_features(4096, toy.config, torch.Generator().manual_seed(0))
finish_first(importance_weighted_loss)
print("loss per instance, yours vs the model's:",
      importance_weighted_loss(x, toy(x), toy.importance).detach().numpy().round(4),
      toy.loss_per_instance(x, toy(x)).detach().numpy().round(4))

fig, axes = plt.subplots(1, toy.config.n_instances, figsize=(20, 2.6))
colours = plt.cm.viridis(torch.linspace(0, 0.9, toy.config.n_features).numpy())
for n, ax in enumerate(axes):
    for i in range(toy.config.n_features):
        ax.plot([0, W[n, 0, i]], [0, W[n, 1, i]], color=colours[i], lw=2)
        ax.scatter(W[n, 0, i], W[n, 1, i], color=colours[i], s=15)
    ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xticks=[], yticks=[],
           title=f"p = {toy.config.feature_probability[n]:.2f}")
plt.show()
for n, p in enumerate(toy.config.feature_probability):
    print(f"p={p:.3f}: {int(sp.n_represented(W)[n])} features represented, "
          f"antipodal pairs {sp.antipodal_pairs(W[n])}, pentagon: {sp.is_pentagon(W[n])}")

# %% [markdown]
# Dense (left): only the **two most important** features, at right angles; the rest
# are dropped. As features get sparser the model first stores **antipodal pairs**
# (feature `i` at `+v`, feature `j` at `-v`: when only one is on, the ReLU removes
# the other's negative interference), then, sparsest, all **five in a pentagon**.

# %% [markdown] effort=["feature_dimensionality"]
# ### Feature dimensionality
#
# **What.** How much of a dimension feature `i` gets:
# `D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)²`, with `Ŵ_i = W_i / ||W_i||` and the sum over
# every feature `j`, `j = i` included. Return `[instances, features]`.
#
# **Why.** It is 1 for a feature with a dimension to itself, 1/2 for half of an
# antipodal pair, 2/5 for a corner of a pentagon, 0 for a dropped feature. Elhage et
# al. found features "stick" at these fractions as sparsity varies.
#
# **Hint.** `torch.einsum("nhi,nhj->nij", unit, W)` gives every `Ŵ_i · W_j`.

# %% exercise="feature_dimensionality" difficulty=3 minutes=15
from solutions.superposition_saes import feature_dimensionality

# %%
big = load_pretrained("superposition-100-20")  # 100 equally important features in 20 dims
W_big = big.W.detach()
finish_first(feature_dimensionality)
dims = feature_dimensionality(W_big)
density = torch.tensor(big.config.feature_probability)
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
for n in range(big.config.n_instances):
    keep = W_big[n].norm(dim=0) > 0.5
    ax.scatter(torch.full((int(keep.sum()),), 1 / density[n].item()), dims[n][keep], s=8, alpha=0.3, color="C0")
ax.plot(1 / density, sp.dimensions_per_feature(W_big), color="k", label="n_hidden / ||W||_F² (dimensions per feature)")
for level, name in [(1, "1"), (1 / 2, "1/2"), (2 / 5, "2/5"), (1 / 3, "1/3")]:
    ax.axhline(level, ls=":", color="grey")
    ax.text(1 / density[-1].item() * 1.05, level, name, va="center")
ax.set(xscale="log", xlabel="1 / feature density", ylabel="dimensionality D_i", ylim=(0, 1.1))
ax.legend()
plt.show()
near_half = ((dims - 0.5).abs() < 0.05) & (W_big.norm(dim=1) > 0.5)
print("share of represented features with D within 0.05 of 1/2, per instance:",
      (near_half.sum(-1) / (W_big.norm(dim=1) > 0.5).sum(-1).clamp_min(1)).numpy().round(2))

# %% [markdown]
# The black curve starts at 1 at the dense end: there the model spends its 20
# dimensions in full (`||W||_F²` is 20). It does not spend them as Elhage et al.'s
# model does, on 20 features with a dimension each: this checkpoint spreads them
# thinly over more features, none with a column norm near 1, so the dots at the left
# (one per feature whose norm is above one half) all lie below 1/2. As the features
# get sparser, the curve falls and **sticks at 1/2** over a range of sparsities: there,
# every represented feature is half of an antipodal pair, and its dot sits on 1/2.
# Sparser still, the model packs in ever more features and the curve falls on.
#
# ### A phase diagram
#
# Elhage et al.'s simplest phase diagram: **2 features in 1 dimension**, feature 0
# of importance 1, feature 1 of importance `r`, both with density `p`. Depending on
# `(p, r)` the model drops feature 1, gives the dimension to feature 1 alone, or
# stores both, antipodally, in superposition. `toy_models.superposition.train_phase_diagram`
# trains the 8 × 8 grid as 64 instances at once, with your `importance_weighted_loss`
# (`mi-course check` skips it).

# %% tags=["skip-when-grading"]
finish_first(importance_weighted_loss)
w = sp.train_phase_diagram(importance_weighted_loss)  # [density, ratio, 2]: each feature's 1-d direction
phase = sp.phases(w)
colours = ["#ddd", "#4c72b0", "#dd8452", "#8c564b"]
fig, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
ax.imshow(phase.T, origin="lower", cmap=plt.matplotlib.colors.ListedColormap(colours),
          vmin=0, vmax=len(colours) - 1, extent=(0, 8, 0, 8))
ax.set_xticks(torch.arange(8) + 0.5, [f"{p:.2f}" for p in sp.PHASE_DENSITIES], rotation=45)
ax.set_yticks(torch.arange(8) + 0.5, [f"{r:.1f}" for r in sp.PHASE_RATIOS])
ax.set(xlabel="feature density p", ylabel="relative importance r of feature 1", title="2 features in 1 dimension")
ax.legend(handles=[plt.matplotlib.patches.Patch(color=c, label=n) for c, n in zip(colours, sp.PHASE_NAMES)],
          loc="upper left", bbox_to_anchor=(1.02, 1))
plt.show()
for index, name in enumerate(sp.PHASE_NAMES):
    print(f"{name}: {int((phase == index).sum())} cells")

# %% [markdown]
# Dense features (the left column, density 1) are never stored antipodally: the model
# keeps feature 0 while it is the more important, feature 1 once it is, and where the
# two are nearly equal it may mix them in one direction (which only works because dense
# features are always on together). One step sparser, the two share the dimension
# antipodally in a band around equal importance; in the sparser half of the grid most
# cells store both, antipodally, even where feature 1 is ten times less important than
# feature 0. The boundaries are ragged: at the sparsest density each feature is on in
# only about five of a batch's 512 examples, so those cells learn from few examples.
#
# ## Part 2 · A sparse autoencoder from scratch
#
# The toy model *puts* features into superposition; an SAE tries to *take them out*.
# It reads one activation `x` of a real model (here the 512 MLP neurons of layer 0
# of `code-2l`, `blocks.0.mlp.hook_post`) and rewrites it as a sparse, non-negative
# combination of `d_sae` > 512 learned directions:
#
# ```
# f     = ReLU((x - b_dec) @ W_enc + b_enc)      # [d_sae], mostly zeros
# x_hat = f @ W_dec + b_dec                      # back to [d_in]
# ```
#
# The course's `SparseAutoencoder` (in `toy_models/sae.py`, SAELens's parameter
# names) has `encode`, `decode` and `forward`; you write the pieces that make it
# *sparse* and *honest*.

# %% [markdown] effort=["sae_training_loss", "normalize_decoder", "topk_activation"]
# ### Two ways to be sparse: an L1 penalty, or TopK
#
# **What.** (1) `sae_training_loss`: squared reconstruction error (summed over
# `d_in`, averaged over the batch) plus `l1_coefficient` times the L1 norm of the
# feature activations `f = sae.encode(acts)`. (2) `normalize_decoder`: rescale each
# feature's direction, a **row** of `W_dec [d_sae, d_in]`, to unit norm (the trainer
# does it after every step). (3) `topk_activation`, the newer variant (Gao et al.
# 2024): ReLU, then keep only the `k` largest values per token.
#
# **Why.** The L1 penalty pushes most features to exactly zero; without unit decoder
# rows it could be dodged by shrinking `f` and growing `W_dec`. TopK fixes L0 at `k`
# and does not shrink the features it keeps.

# %% exercise="sae_training_loss" difficulty=2 minutes=10
from solutions.superposition_saes import sae_training_loss

# %% exercise="normalize_decoder" difficulty=1 minutes=5
from solutions.superposition_saes import normalize_decoder

# %% exercise="topk_activation" difficulty=2 minutes=10
from solutions.superposition_saes import topk_activation

# %% [markdown]
# ### Train one yourself
#
# Collect layer-0 MLP activations on 20k tokens of the training split, then train a
# small ReLU SAE with your loss and your normalisation, and a TopK one with your
# activation. Every 50 steps, features that never fired are
# *resampled*: pointed at inputs the SAE reconstructs badly
# (`toy_models.sae.resample_dead_features`). `mi-course check` skips these cells.

# %% tags=["skip-when-grading"]
finish_first(sae_training_loss, normalize_decoder, topk_activation)
model = load_pretrained("code-2l").requires_grad_(False)
HOOK = "blocks.0.mlp.hook_post"
train_acts = collect_activations(model, load_python_corpus("train"), HOOK, n_windows=160)
print("training activations:", tuple(train_acts.shape))


def train_small_sae(cfg, steps=150, lr=4e-3, batch_size=1024, l1_coefficient=0.0, encode=None):
    torch.manual_seed(0)
    sae = SparseAutoencoder(cfg)
    if encode is not None:  # swap in your own activation
        sae.encode = lambda acts: encode(sae.hidden_pre(acts))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    fired = torch.zeros(cfg.d_sae, dtype=torch.bool)
    for step in range(steps):
        batch = train_acts[torch.randint(0, len(train_acts), (batch_size,), generator=generator)]
        loss = sae_training_loss(sae, batch, l1_coefficient)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            sae.W_dec.copy_(normalize_decoder(sae.W_dec))
            fired |= (sae.encode(batch) > 0).any(dim=0)
        if (step + 1) % 50 == 0 and step + 1 < steps:
            if resample_dead_features(sae, ~fired, batch, generator):
                optimizer.state.clear()
            fired.zero_()
    return sae.eval()


relu_sae = train_small_sae(SAEConfig(512, 1024, HOOK, "relu"), l1_coefficient=0.3)
topk_sae = train_small_sae(SAEConfig(512, 1024, HOOK, "topk", k=24),
                           encode=lambda pre: topk_activation(pre, 24))
with torch.no_grad():
    for name, sae in [("ReLU + L1", relu_sae), ("TopK", topk_sae)]:
        f = sae.encode(train_acts[:4096])
        print(f"{name}: active features per token {(f > 0).float().sum(-1).mean():.1f}")

# %% [markdown] effort=["l0_norm", "fraction_variance_explained", "dead_and_dense_fractions", "ce_loss_recovered"]
# ## Part 3 · Is it any good? Four honest metrics
#
# **What.**
# * `l0_norm`: active features per **token**, averaged over tokens (any leading shape).
# * `fraction_variance_explained`: `1 - Σ‖x - x̂‖² / Σ‖x - x̄‖²`, pooled over all
#   tokens, with `x̄` the mean activation over tokens.
# * `dead_and_dense_fractions`: the shares of features that never fire on the given
#   tokens, and that fire on more than `dense_threshold` of them.
# * `ce_loss_recovered`: splice `sae(acts)` back into the model at
#   `sae.cfg.hook_name` and measure the next-token loss; compare with the clean loss
#   and with zeros spliced in: `(CE_zero - CE_sae) / (CE_zero - CE_clean)`.
#
# **Why.** Sparsity alone is easy (output zeros), reconstruction alone is easy (use
# all features). The pair, and above all whether the *model* still works on the
# reconstruction, tell a useful SAE from a pretty one. A feature that never fires
# is wasted; one that fires everywhere is rarely interpretable.
#
# **Hint.** For the CE loss: `model.run_with_hooks(tokens, return_type="loss",
# fwd_hooks=[(name, fn)])`, where `fn(acts, hook)` returns the replacement.

# %% exercise="l0_norm" difficulty=1 minutes=5
from solutions.superposition_saes import l0_norm

# %% exercise="fraction_variance_explained" difficulty=2 minutes=10
from solutions.superposition_saes import fraction_variance_explained

# %% exercise="dead_and_dense_fractions" difficulty=1 minutes=5
from solutions.superposition_saes import dead_and_dense_fractions

# %% exercise="ce_loss_recovered" difficulty=3 minutes=15
from solutions.superposition_saes import ce_loss_recovered

# %% [markdown]
# Now measure the shipped SAE (`code-2l-sae`: TopK, k = 24, 1024 features, trained
# on 262k tokens of the training split by `mi-course train code-2l-sae`) on
# validation text it never saw, with your metrics, and compare with the numbers its
# `config.json` records.

# %%
model = load_pretrained("code-2l").requires_grad_(False)
sae = load_sae(SHIPPED_SAE)
print(sae.cfg)
# Contiguous validation text, so every snippet has its full context.
N_WINDOWS, N_CTX = 96, model.cfg.n_ctx
val_tokens = load_python_corpus("validation")[: N_WINDOWS * N_CTX].reshape(N_WINDOWS, N_CTX)
with torch.no_grad():
    acts = hook_activations(model, val_tokens, sae.cfg.hook_name)  # [batch, pos, 512]
    feature_acts = sae.encode(acts)  # [batch, pos, d_sae]
    reconstruction = sae.decode(feature_acts)
flat_acts, flat_features = acts.flatten(0, 1), feature_acts.flatten(0, 1)
finish_first(l0_norm, fraction_variance_explained, dead_and_dense_fractions, ce_loss_recovered)
dead, dense = dead_and_dense_fractions(flat_features)
print(f"L0 {l0_norm(feature_acts):.1f}, variance explained "
      f"{fraction_variance_explained(flat_acts, reconstruction.flatten(0, 1)):.3f}, "
      f"dead {dead:.3f}, dense {dense:.3f}, "
      f"CE loss recovered {ce_loss_recovered(model, sae, val_tokens[:32]):.3f}")

# %%
import json
from toy_models.checkpoints import checkpoint_dir

recorded = json.loads((checkpoint_dir(SHIPPED_SAE) / "config.json").read_text())["metrics"]
print({key: round(value, 3) for key, value in recorded.items()})
frequency = (flat_features > 0).float().mean(0)
plt.figure(figsize=(7, 3))
plt.hist(torch.log10(frequency[frequency > 0]).numpy(), bins=50)
plt.xlabel("log10 firing frequency")
plt.ylabel("features")
plt.title("how often each feature fires")
plt.show()

# %% [markdown] effort=["top_activations"]
# ## Part 4 · What do the features mean?
#
# **What.** `top_activations(feature_acts, k)`: for one feature's activations
# `[batch, pos]`, the `(batch, pos)` pairs of its `k` largest values, largest first,
# as a `[k, 2]` tensor.
#
# **Why.** The first look at any feature is its top-activating snippets. (Only the
# first look: see Part 6.)

# %% exercise="top_activations" difficulty=2 minutes=10
from solutions.superposition_saes import top_activations


# %%
finish_first(top_activations)


def show_snippets(feature, k=8, before=30, after=4):
    """The top-k snippets of a feature; the firing byte is in [brackets]."""
    print(f"feature {feature}:")
    for b, p in top_activations(feature_acts[..., feature], k).tolist():
        row = val_tokens[b].tolist()
        left = bytes(row[max(0, p - before): p]).decode(errors="replace")
        mid = bytes(row[p: p + 1]).decode(errors="replace")
        right = bytes(row[p + 1: p + 1 + after]).decode(errors="replace")
        print(f"  {feature_acts[b, p, feature]:5.2f}  " + repr(left + "[" + mid + "]" + right)[1:-1])


for feature in list(FEATURE_LABELS)[:4]:
    show_snippets(feature)

# %% [markdown]
# Features of the shipped SAE, labelled from their top snippets. Each label is also
# a rule in `toy_models.code_concepts.CONCEPTS`, so it can be *checked*: the next
# cell measures, for each feature, the share of its top 20 snippets where the rule
# holds (the course's tests recompute it).

# %% [markdown]
# | feature | rule (checked on its top 20 snippets) | what the top snippets show |
# |---|---|---|
# | 736 | in a comment | the space after a `#` that starts a top-level comment line |
# | 10 | in a comment | the `#` that starts an indented comment |
# | 765 | a digit | digits inside dates and version numbers (in comments) |
# | 956 | an uppercase letter | letters inside ALL-CAPS words (license text, constants) |
# | 1008 | in leading indentation | the first space of the indentation after a statement's newline |
# | 452 | in an identifier | the first letter of a statement, right after its indentation |
# | 382 | in 'self' | the `f` of `self` |
# | 784 | in the attribute after 'self.' | the attribute name right after `self.` |
# | 993 | a colon | the colon that ends a `def`/`class` header, right after `)` |
# | 897 | a newline | the newline ending a statement that closes with `)` |
# | 791 | an opening bracket | the `[` of a subscript or slice |
# | 785 | an equals sign | the `=` of an assignment, with spaces around it |
# | 1002 | a comma | the comma between a call's arguments |

# %%
# Concepts of every byte of the validation text, read from its start.
text = bytes(val_tokens.flatten().tolist())
concepts = {name: torch.tensor(mask).reshape(N_WINDOWS, N_CTX) for name, mask in byte_concepts(text).items()}
finish_first(top_activations)
for feature, label in FEATURE_LABELS.items():
    top = top_activations(feature_acts[..., feature], 20)
    holds = concepts[label][top[:, 0], top[:, 1]].float().mean()
    base_rate = concepts[label].float().mean()
    print(f"feature {feature:4d} '{label}': holds on {holds:.0%} of its top 20 (base rate {base_rate:.0%})")

# %% [markdown] effort=["clamp_feature"]
# ## Part 5 · Steering: clamp a feature, watch the output bend
#
# **What.** `clamp_feature(acts, sae, feature, value)`: return `acts` with feature
# `feature` set to `value` and *everything else kept*: add
# `(value - current activation) * W_dec[feature]`. Keeping the SAE's reconstruction
# error means the edit changes only what the feature writes.
#
# **Why.** If a feature really means "inside a string", forcing it on should make
# the model write as if it were inside one. That is a causal test of a label.

# %% exercise="clamp_feature" difficulty=3 minutes=15
from solutions.superposition_saes import clamp_feature


# %%
finish_first(clamp_feature)


def generate(prompt, n_new=60, steer=None):
    """Greedy continuation; `steer=(feature, value)` clamps a feature at every position."""
    tokens = tokenizer.encode(prompt)[None]
    hooks = []
    if steer is not None:
        feature, value = steer
        hooks = [(sae.cfg.hook_name, lambda acts, hook: clamp_feature(acts, sae, feature, value))]
    with torch.no_grad():
        for _ in range(n_new):
            logits = model.run_with_hooks(tokens[:, -model.cfg.n_ctx:], fwd_hooks=hooks)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokenizer.decode(tokens[0, len(tokenizer.encode(prompt)):])


STEER_FEATURE = STEERING_FEATURE  # try your own pick from the table above
max_act = feature_acts[..., STEER_FEATURE].max().item()
prompt = "def parse(self, line):\n    if not line:\n        return"
print(f"feature {STEER_FEATURE} ('{FEATURE_LABELS[STEER_FEATURE]}'), max activation {max_act:.1f}")
print("normal:   ", repr(generate(prompt)))
for scale in (1, 2):
    print(f"clamped {scale}x:", repr(generate(prompt, steer=(STEER_FEATURE, scale * max_act))))


# %% [markdown]
# ## Part 6 · Honest labels
#
# A label read off the top snippets describes the feature at its *strongest*. Most
# of its firing is weaker. Take a labelled feature, look at **every** token where it
# fires, and find where it fires but the label does not fit. Those snippets either
# sharpen the label or show the feature is doing something else as well.

# %%
def label_precision(feature, label, min_activation=0.0):
    fires = feature_acts[..., feature] > min_activation
    holds = concepts[label]
    return (holds & fires).sum().item() / max(1, fires.sum().item()), fires.sum().item()


for feature, label in list(FEATURE_LABELS.items()):
    top_value = feature_acts[..., feature].max().item()
    strong, n_strong = label_precision(feature, label, 0.5 * top_value)
    weak, n_weak = label_precision(feature, label)
    print(f"feature {feature:4d} '{label}': label fits {strong:.0%} of {n_strong} strong firings, "
          f"{weak:.0%} of all {n_weak}")


# %%
finish_first(top_activations)


def counterexamples(feature, label, k=6, before=30, after=4):
    """The strongest firings of `feature` where `label` does not hold."""
    misfit = torch.where(concepts[label], 0.0, feature_acts[..., feature])
    print(f"feature {feature}, labelled '{label}': strongest firings where the label does not fit")
    for b, p in top_activations(misfit, k).tolist():
        if misfit[b, p] == 0:
            break
        row = val_tokens[b].tolist()
        snippet = bytes(row[max(0, p - before): p]).decode(errors="replace") + "[" + \
            bytes(row[p: p + 1]).decode(errors="replace") + "]" + bytes(row[p + 1: p + 1 + after]).decode(errors="replace")
        print(f"  {misfit[b, p]:5.2f}  " + repr(snippet)[1:-1])


for feature, label in list(FEATURE_LABELS.items())[:3]:
    counterexamples(feature, label)

# %% [markdown]
# **Your turn.** Pick two features that are *not* in the table (try
# `show_snippets(f)` for a few `f` with a moderate firing frequency), write a label
# for each, express it as a rule (a function of the bytes, like the ones in
# `toy_models/code_concepts.py`), and use `counterexamples` to find where it breaks.
# A label is honest when you can say what fraction of the feature's firings it
# explains, not just that the top ten look right.
