# %% [markdown]
# # 02 · Induction heads
#
# In chapter 00 you watched a two-layer attention-only model suddenly learn to
# predict repeated tokens. This chapter takes that model apart and reproduces, in
# miniature and on your CPU, Olsson et al.'s *In-context learning and induction
# heads* (2022): which heads do the work, what each one does, how we can tell, and
# how to *prove* it by intervention.
#
# The algorithm to find: on `... A B ... A`, predict `B`. It takes two heads in two
# layers. A **previous-token head** in layer 0 writes into each position "the token
# before me was A". An **induction head** in layer 1, sitting on the second `A`,
# looks for the earlier position whose *previous* token is `A` (that is the `B`)
# and copies `B` to the output. The induction head's keys read what the
# previous-token head wrote: that is *K-composition*, and you will measure it.
#
# **How this notebook works.** Each exercise is a function to finish: replace the
# `raise NotImplementedError(...)` with your code and run the cell. The cell after it,
# `check(name)`, grades your function on random inputs and on the shipped model, and
# prints `PASS`, or what was expected, what came back and the most likely mistake.
# `mi-course check course/02_induction_heads.ipynb` grades everything at once. The
# whole notebook runs in a few minutes on a laptop CPU.

# %% [markdown] exercise_table=true

# %%
import dataclasses
import math
import time

import einops
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix

from graders import make_check
from toy_models import Transformer, load_pretrained
from toy_models.exercises import finish_first
from toy_models.metrics import induction_scores, positional_pattern
from toy_models.model import next_token_loss
from toy_models.plots import integer_ticks, signed_heatmap
from toy_models.train import INDUCTION_LIVE, INDUCTION_SEQ_LEN, TRANSFORMER_JOBS, induction_batch, train_transformer

check = make_check("02_induction_heads")
model = load_pretrained("induction-2l").requires_grad_(False)  # we analyse it, never train it
print(model.cfg)
SEQ_LEN = INDUCTION_SEQ_LEN  # 24
tokens = induction_batch(torch.Generator().manual_seed(0), 64, model.cfg.d_vocab)
print("tokens:", tuple(tokens.shape), "= a start token, a random block of", SEQ_LEN, "tokens, the same block again")
logits, cache = model.run_with_cache(tokens)

# %% [markdown]
# ## Look first: attention patterns
#
# `cache["pattern", layer]` holds every head's attention pattern,
# `[batch, n_heads, query_pos, key_pos]`: row `q` is where position `q` looks. Before
# measuring anything, look. A previous-token head draws the diagonal just below
# the main one; an induction head draws a stripe `SEQ_LEN - 1` below it, in the
# second half only.

# %%
fig, axes = plt.subplots(1, 4, figsize=(18, 4.5), layout="constrained")
for ax, (layer, head) in zip(axes, [(0, 0), (0, 1), (1, 0), (1, 1)]):
    image = ax.imshow(cache["pattern", layer][0, head].numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set(title=f"head {layer}.{head}", xlabel="key position", ylabel="query position")
fig.colorbar(image, ax=axes, label="attention")
plt.show()

# %% [markdown] effort=["previous_token_scores", "current_token_scores", "first_token_scores"]
# ## Detectors: previous-token, current-token and first-token heads
#
# **What.** Turn what you just saw into numbers: for each head, its mean attention
# to the previous token (`previous_token_scores`), to the token itself
# (`current_token_scores`) and to the first position (`first_token_scores`),
# averaged over the batch and over the query positions.
#
# **Why.** Real models have thousands of heads: nobody looks at every pattern. A
# detector is a cheap first pass that says where to look, and these three classes
# (previous-token heads, heads that stay put, heads that "rest" on the first token
# when they have nothing to do) are the commonest. A detector is only a
# hypothesis, though: ablation, later on, is the test.
#
# **Hints.** `pattern.diagonal(offset=o, dim1=-2, dim2=-1)` returns the diagonal `o`
# above the main one, as a last axis of length `pos - |o|`: `o = 0` is the token
# itself, `o = -1` the previous token. The first key is `pattern[..., 0]` (a column,
# not the row `pattern[..., 0, :]`). Return one score per head: `[n_heads]`.

# %% exercise="previous_token_scores" difficulty=1 minutes=5
from solutions.induction_heads import previous_token_scores

# %% exercise="current_token_scores" difficulty=1 minutes=3
from solutions.induction_heads import current_token_scores

# %% exercise="first_token_scores" difficulty=1 minutes=3
from solutions.induction_heads import first_token_scores

# %%
first_block = SEQ_LEN + 1  # the start token and the first block
finish_first(previous_token_scores, current_token_scores, first_token_scores)
for layer in range(model.cfg.n_layers):
    pattern = cache["pattern", layer]
    print(f"layer {layer}: previous token (first block) {previous_token_scores(pattern[:, :, :first_block, :first_block])}, "
          f"previous token (whole sequence) {previous_token_scores(pattern)}, "
          f"current token {current_token_scores(pattern)}, first token {first_token_scores(pattern)}")

# %% [markdown]
# Head 0.0 attends to the previous token almost always in the first block (about
# 0.97 at positions 1 to 24), less later on, where the model was trained on fewer
# positions; head 0.1 smears its attention over the recent tokens. In layer 1 no
# detector fires much: those heads do something else.

# %% [markdown] effort=["prefix_matching_scores"]
# ## Prefix matching: the induction head's signature
#
# **What.** For each query token, find every earlier occurrence of the same token,
# and the key just *after* each of them (key `k <= q` with
# `tokens[k - 1] == tokens[q]`). A head's prefix-matching score is its attention to
# those keys, summed per query, averaged over all the (sequence, query) pairs that have
# any, pooled over the batch (not a mean per sequence first). On a block
# repeated several times, an induction head may spread its attention over several
# earlier copies: the score counts them all.
#
# **Why.** This is Olsson et al.'s definition of an induction head's attention:
# it attends to the token that came after the current token last time. The
# course's `induction_scores` measures the same thing on one repeat only (one
# stripe of the pattern); your version works on any tokens.
#
# **Hints.** `tokens[:, None, :-1] == tokens[:, :, None]` is `[batch, query, key - 1]`,
# true where the token before key `k` equals the query token; pad one `False` column
# on the left (`torch.nn.functional.pad(..., (1, 0), value=False)`) so that key 0
# (which follows nothing) is never a target, and keep only `k <= q`
# (`.tril()`). Then `einops.einsum(pattern, mask, "b h q k, b q k -> b h q")`.

# %% exercise="prefix_matching_scores" difficulty=3 minutes=20
from solutions.induction_heads import prefix_matching_scores

# %%
from toy_models.data import repeated_random_tokens

finish_first(prefix_matching_scores)
three_times = repeated_random_tokens(32, 16, model.cfg.d_vocab, n_repeats=3, bos_token=0,
                                     generator=torch.Generator().manual_seed(1))
_, cache_3 = model.run_with_cache(three_times, names_filter=lambda name: name.endswith("hook_pattern"))
for layer in range(model.cfg.n_layers):
    print(f"layer {layer}: prefix matching on a block repeated twice {prefix_matching_scores(tokens, cache['pattern', layer])}, "
          f"three times {prefix_matching_scores(three_times, cache_3['pattern', layer])}")
print("induction_scores (one stripe, one repeat):", induction_scores(model, tokens, SEQ_LEN))

# %% [markdown] effort=["in_context_learning_score"]
# ## The in-context learning score
#
# **What.** Olsson et al. measure in-context learning without any task: the loss on
# a late token of the context minus the loss on an early one. A model that uses its
# context predicts late tokens better, so the score is negative.
#
# **Why.** It is the behavioural side of induction: you will track it during
# training and see it drop at the same moment the induction heads form.
#
# **Hint.** `per_token_loss[:, late].mean() - per_token_loss[:, early].mean()`: two
# single token indices, late minus early.

# %% exercise="in_context_learning_score" difficulty=1 minutes=5
from solutions.induction_heads import in_context_learning_score

# %%
per_token_loss = next_token_loss(logits, tokens, per_token=True)  # [batch, 2 * SEQ_LEN]
EARLY, LATE = 10, SEQ_LEN + 10  # a token of the first block, and the same token in the repeat
finish_first(in_context_learning_score)
print(f"shipped model: ICL score {in_context_learning_score(per_token_loss, EARLY, LATE):.2f} "
      f"(loss {per_token_loss[:, EARLY].mean():.2f} early, {per_token_loss[:, LATE].mean():.2f} late)")

# %% [markdown]
# ## Watch it form: the phase change, live
#
# Now train the model yourself, on the shipped model's kind of data (seed 0, random
# sequences that repeat with periods 4 to 24) with its recipe shortened to watch live
# (`INDUCTION_LIVE`: 128 tokens instead of 512, batches of 48 instead of 64, twice the
# learning rate, 250 steps instead of 600), and every 10 steps measure, on
# held-out sequences: the loss on the repeat, the in-context learning score, and
# every head's induction score. Then train the **control**: the same recipe with
# one layer. A single layer cannot build an induction head, since no earlier head
# exists to tell it which token came before each key; watch its induction score
# stay low.
#
# This cell trains two small models, on one thread (for models this small, faster than
# several). It computes nothing the graders need, so `mi-course check` skips it.

# %% tags=["parameters"]
TRAIN_STEPS = 250  # as many as INDUCTION_LIVE
EVAL_EVERY = 10

# %% tags=["skip-when-grading"]
finish_first(in_context_learning_score)
job = TRANSFORMER_JOBS["induction-2l"]
held_out = induction_batch(torch.Generator().manual_seed(12345), 64, INDUCTION_LIVE.model.d_vocab)


def train_and_watch(recipe):
    """Train a model from `recipe`, logging held-out metrics every EVAL_EVERY steps."""
    log = {"step": [], "repeat_loss": [], "icl": [], "scores": []}

    def on_step(step, model, loss):
        if step % EVAL_EVERY and step != TRAIN_STEPS - 1:
            return
        with torch.no_grad():
            per_token = next_token_loss(model(held_out), held_out, per_token=True)
        log["step"].append(step)
        log["repeat_loss"].append(per_token[:, -(SEQ_LEN - 1):].mean().item())
        log["icl"].append(in_context_learning_score(per_token, EARLY, LATE).item())
        log["scores"].append(induction_scores(model, held_out, SEQ_LEN))

    trained, losses = train_transformer(recipe, job.batches(recipe), on_step=on_step,
                                        steps=TRAIN_STEPS, progress=False)
    log["train_loss"] = losses
    log["scores"] = torch.stack(log["scores"])  # [evaluation, layer, head]
    return trained, log


start = time.time()
live_model, live = train_and_watch(INDUCTION_LIVE)
one_layer = dataclasses.replace(INDUCTION_LIVE, model=dataclasses.replace(INDUCTION_LIVE.model, n_layers=1))
control_model, control = train_and_watch(one_layer)
print(f"trained both in {time.time() - start:.0f} s")
print(f"LIVE 2-layer: final best induction score {live['scores'][-1].max():.3f}, "
      f"repeat loss {live['repeat_loss'][-1]:.2f}, ICL score {live['icl'][-1]:.2f}")
print(f"CONTROL 1-layer: best induction score at any step {control['scores'].max():.3f}, "
      f"repeat loss {control['repeat_loss'][-1]:.2f}, ICL score {control['icl'][-1]:.2f}")

# %% tags=["skip-when-grading"]
finish_first(in_context_learning_score)
fig, (ax_loss, ax_icl, ax_scores) = plt.subplots(1, 3, figsize=(18, 4.5))
ax_loss.plot(live["train_loss"], color="lightgrey", label="2 layers: training batches")
ax_loss.plot(live["step"], live["repeat_loss"], label="2 layers: held-out repeat")
ax_loss.plot(control["step"], control["repeat_loss"], label="1 layer (control): held-out repeat")
ax_loss.axhline(math.log(INDUCTION_LIVE.model.d_vocab - 1), color="black", linestyle=":", label="guessing")
ax_loss.set(xlabel="training step", ylabel="loss per token", title="Loss")
ax_icl.plot(live["step"], live["icl"], label="2 layers")
ax_icl.plot(control["step"], control["icl"], label="1 layer (control)")
ax_icl.set(xlabel="training step", ylabel=f"loss at token {LATE} - loss at token {EARLY}",
           title="In-context learning score")
for layer in range(2):
    for head in range(2):
        ax_scores.plot(live["step"], live["scores"][:, layer, head].numpy(), label=f"2 layers: head {layer}.{head}")
for head in range(2):
    ax_scores.plot(control["step"], control["scores"][:, 0, head].numpy(), linestyle="--", label=f"1 layer: head 0.{head}")
ax_scores.set(xlabel="training step", ylabel="induction score", title="Induction score per head", ylim=(0, 1))
for ax in (ax_loss, ax_icl, ax_scores):
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **What you should see.** For the first hundred-odd steps, nothing: the loss on the
# repeat sits near guessing, the ICL score near 0, every induction score near 0.
# Then, within about a hundred steps, the loss on the repeat collapses, the ICL score
# plunges and both layer-1 heads' induction scores shoot up past 0.8, together: a
# phase change. (The shipped model, with four times the vocabulary, trained for 600
# steps at half the learning rate, goes through the same change later and ends above
# 0.9.) The one-layer control learns a little (it can raise the logits of tokens seen
# anywhere in the context), but its induction scores stay low and its loss on the
# repeat stays high.

# %% [markdown] effort=["head_ablation_losses"]
# ## Ablation: if you didn't ablate, you didn't prove anything
#
# **What.** Knock out one head at a time and measure the loss on the repeat (the
# last `seq_len - 1` predictions, those that induction can make). *Zero ablation*
# replaces the head's output `hook_z` with 0; *mean ablation* replaces it with its
# mean over the batch, at each position, which keeps what the head always does
# (such as resting on the start token) and removes only what depends on the input.
# Return a `[n_layers, n_heads]` table of losses.
#
# **Why.** Detectors show what a head attends to, not whether the model *uses* it.
# If the circuit is right, removing the previous-token head or the induction heads
# must break in-context copying, and removing the other heads must not.
#
# **Hints.** Cache `hook_z` once (`model.run_with_cache(tokens, names_filter=...)`).
# For each `(layer, head)`, `model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])`
# with a hook that edits `z[:, :, head]` (`z` is `[batch, pos, n_heads, d_head]`) and
# returns `z`. The mean is `cache["z", layer][:, :, head].mean(dim=0)`: over the
# batch only.

# %% exercise="head_ablation_losses" difficulty=3 minutes=25
from solutions.induction_heads import head_ablation_losses

# %%
finish_first(head_ablation_losses)
clean_loss = next_token_loss(logits, tokens, per_token=True)[:, -(SEQ_LEN - 1):].mean()
zero, mean = head_ablation_losses(model, tokens, SEQ_LEN, "zero"), head_ablation_losses(model, tokens, SEQ_LEN, "mean")


def both_induction_heads_ablated(kind):
    mean_z = cache["z", 1].mean(dim=0)

    def ablate(z, hook):
        z[:] = 0.0 if kind == "zero" else mean_z
        return z
    ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", ablate)])
    return next_token_loss(ablated, tokens, per_token=True)[:, -(SEQ_LEN - 1):].mean()


print(f"loss on the repeat, nothing ablated: {clean_loss:.3f}")
for layer in range(2):
    for head in range(2):
        print(f"head {layer}.{head} ablated: zero {zero[layer, head]:.3f}, mean {mean[layer, head]:.3f}")
print(f"both layer-1 heads ablated: zero {both_induction_heads_ablated('zero'):.3f}, "
      f"mean {both_induction_heads_ablated('mean'):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
for ax, (kind, table) in zip(axes, [("zero", zero), ("mean", mean)]):
    image = ax.imshow((table - clean_loss).numpy(), cmap="Reds", vmin=0)
    ax.set(title=f"{kind} ablation", xlabel="head", ylabel="layer", xticks=[0, 1], yticks=[0, 1])
    fig.colorbar(image, ax=ax, label="increase in loss on the repeat")
plt.show()

# %% [markdown]
# Removing head 0.0, the previous-token head, destroys in-context copying: the loss
# on the repeat goes from about 0.1 to 4.8 (zero ablation) or 3.8 (mean ablation);
# guessing is 6.2. Removing head
# 0.1 changes almost nothing. Each layer-1 head alone raises the loss a little,
# because the other one still does the job; removing both breaks copying
# completely. The model has two redundant induction heads.

# %% [markdown] effort=["direct_logit_attribution"]
# ## Direct logit attribution: who writes the answer?
#
# **What.** The logits are a linear function of the residual stream, once the final
# LayerNorm's scale is frozen at its value on this input. The stream is a sum of
# components (the embeddings, each head's output `z @ W_O`, the biases), so each
# component's *direct* contribution to the correct token's logit can be read off
# separately: centre it (LayerNorm subtracts the mean), divide by the frozen scale
# `cache["ln_final.hook_scale"]`, multiply by `ln_final.w`, dot with the correct
# token's column of `W_U`. Return `[n_layers, n_heads, batch, pos - 1]`.
#
# **Why.** Ablation says what the model needs; direct logit attribution says which
# heads write the answer themselves, rather than helping other heads do it. The
# previous-token head is needed but should write almost nothing to the logits; the
# induction heads should write the answer.
#
# **Hints.** Position `p` predicts `tokens[:, p + 1]`: use `cache["z", layer][:, :-1]`
# and `model.W_U.T[tokens[:, 1:]]`. The scale is `[batch, pos, 1]`: index
# `[:, :-1]` and add a head axis (`[:, :, None]`) to divide
# `[batch, pos, n_heads, d_model]` by it.

# %% exercise="direct_logit_attribution" difficulty=3 minutes=20
from solutions.induction_heads import direct_logit_attribution

# %%
finish_first(direct_logit_attribution)
dla = direct_logit_attribution(model, cache, tokens)  # [layer, head, batch, pos - 1]
on_repeat = dla[..., -(SEQ_LEN - 1):].mean(dim=(-2, -1))
for layer in range(2):
    for head in range(2):
        print(f"head {layer}.{head}: direct logit attribution to the correct token on the repeat {on_repeat[layer, head]:.2f}")
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.bar([f"{layer}.{head}" for layer in range(2) for head in range(2)], on_repeat.flatten().numpy())
ax.set(xlabel="head", ylabel="mean direct logit attribution", title="Who writes the answer (on the repeat)")
plt.show()

# %% [markdown]
# The two induction heads each add about 5-6 to the correct token's logit; the
# layer-0 heads add nothing directly. Head 0.0 matters (ablation showed it) only
# through the layer-1 heads that read it: an *indirect* effect, which direct logit
# attribution cannot see.

# %% [markdown] effort=["full_ov_circuit", "top1_copying_accuracy"]
# ## The OV circuit: what the induction head copies
#
# **What.** A head's *full OV circuit* `W_E W_V W_O W_U` is a `[d_vocab, d_vocab]`
# matrix: row `s`, column `t` is how much attending to token `s` raises the logit
# of token `t` (ignoring LayerNorm). Build it as a `FactoredMatrix`, which keeps the
# product factored (cheap) until you ask for `.AB`. Then measure how often each
# token's own logit is the largest in its row: the *top-1 copying accuracy*.
#
# **Why.** Attention decides *where* to look; OV decides *what* is moved. An
# induction head must *copy*: attending to `B` must raise the logit of `B`. If the
# diagonal dominates, the head is a copying head, proved from the weights alone,
# without running the model.
#
# **Hints.** `model.embed.W_E` is `[d_vocab, d_model]`, `model.blocks[layer].attn.W_V[head]`
# `[d_model, d_head]`, `W_O[head]` `[d_head, d_model]`, `model.W_U` `[d_model, d_vocab]`.
# `FactoredMatrix(A, B) @ C` and `C @ FactoredMatrix(A, B)` are FactoredMatrices too.
# For the accuracy: `argmax(dim=-1)` per row, compared with `torch.arange(d_vocab)`.

# %% exercise="full_ov_circuit" difficulty=2 minutes=15
from solutions.induction_heads import full_ov_circuit

# %% exercise="top1_copying_accuracy" difficulty=1 minutes=5
from solutions.induction_heads import top1_copying_accuracy

# %%
finish_first(full_ov_circuit, top1_copying_accuracy)
for layer in range(2):
    for head in range(2):
        print(f"head {layer}.{head}: top-1 copying accuracy of the full OV circuit "
              f"{top1_copying_accuracy(full_ov_circuit(model, layer, head)):.3f}")
print(f"chance: {1 / model.cfg.d_vocab:.4f}")
fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
signed_heatmap(ax, full_ov_circuit(model, 1, 0).AB[:60, :60], label="effect on the output token's logit")
ax.set(title="full OV circuit of head 1.0 (first 60 tokens)", xlabel="output logit token", ylabel="source token")
plt.show()


# %% [markdown]
# ## The QK circuits: where each head looks
#
# The QK side is the other half. For the previous-token head, what matters is
# *position*: its positional QK circuit `W_pos W_Q W_K^T W_pos^T` (query position by
# key position). The left figure shows the attention it gives by position alone
# (`toy_models.metrics.positional_pattern`): the positional embeddings scaled as layer
# 0's LayerNorm scales the real residual stream, without which the scores are too small
# for the softmax to pick anything out. For query positions 1 to 24 it puts nearly all
# of each query's attention just below the diagonal, on the previous position. In the
# repeat, position alone sends it mostly to the first two positions: there head 0.0 is
# no previous-token head, as its pattern at the top of the notebook shows. For the induction head, what
# matters is *content*, read through the previous-token head: its query reads the
# current token (`W_E`), its key reads what head 0.0 wrote there, the previous
# token's embedding moved by head 0.0's OV circuit (`W_E W_OV^{0.0}`). If it is an
# induction head, each token's query should match best the key of "the position
# after that token": the diagonal of that K-composition QK circuit.

# %%
def qk(layer, head):
    attn = model.blocks[layer].attn
    return FactoredMatrix(attn.W_Q[head], attn.W_K[head].T)  # scores = x_q W_Q W_K^T x_k^T


def ov(layer, head):
    attn = model.blocks[layer].attn
    return FactoredMatrix(attn.W_V[head], attn.W_O[head])


W_E = model.embed.W_E
ln_scale = cache["blocks.0.ln1.hook_scale"].mean(dim=0)  # [pos, 1]: layer 0's LayerNorm scale on real input
composed = {head: W_E @ qk(1, head) @ (W_E @ ov(0, 0)).T for head in range(2)}  # [query token, key's previous token]

fig, (ax_pos, ax_k) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
image = ax_pos.imshow(positional_pattern(model, ln_scale, 0, 0).numpy(), cmap="Blues", vmin=0, vmax=1)
ax_pos.set(title="head 0.0 by position alone", xlabel="key position", ylabel="query position")
integer_ticks(ax_pos)
fig.colorbar(image, ax=ax_pos, label="attention")
signed_heatmap(ax_k, composed[0].AB[:60, :60], label="QK score")
ax_k.set(title="head 1.0 reading head 0.0 (first 60 tokens)", xlabel="previous token at the key", ylabel="query token")
plt.show()
finish_first(top1_copying_accuracy)
for head in range(2):
    print(f"head 1.{head}: top-1 accuracy of the K-composition QK circuit (query token -> key's previous token): "
          f"{top1_copying_accuracy(composed[head]):.3f}")

# %% [markdown] effort=["k_composition_score"]
# ## K-composition: does layer 1 read layer 0?
#
# **What.** The composition score of Elhage et al. measures how much one head's
# input reads another's output, from the weights alone. For K-composition, between
# an earlier head's OV circuit `W_OV` and a later head's QK circuit `W_QK` (both
# `[d_model, d_model]`, in the row-vector convention `x @ W` and with
# `scores = x_q W_QK x_k^T`):
#
# $$\frac{\lVert W_{OV} W_{QK}^T \rVert_F}{\lVert W_{OV} \rVert_F \, \lVert W_{QK} \rVert_F}$$
#
# **Why.** The induction head's *keys* must read what the previous-token head wrote.
# The score is between 0 and 1, but random matrices of this shape already score
# well above 0: a score means something only against a random baseline, which you
# will compute next.
#
# **Hints.** Accept tensors or FactoredMatrices: `.AB` turns a FactoredMatrix into
# a tensor. `.norm()` of a matrix is the Frobenius norm. Transpose `W_QK`, not
# `W_OV`: the earlier head's output enters on the key side.

# %% exercise="k_composition_score" difficulty=2 minutes=15
from solutions.induction_heads import k_composition_score

# %%
finish_first(k_composition_score)
scores = torch.tensor([[k_composition_score(ov(0, h0), qk(1, h1)) for h1 in range(2)] for h0 in range(2)])
# the baseline: random matrices of the same shapes (rank d_head), with a fixed seed
generator = torch.Generator().manual_seed(0)
d_model, d_head = model.cfg.d_model, model.cfg.d_head


def random_low_rank():
    return torch.randn(d_model, d_head, generator=generator) @ torch.randn(d_head, d_model, generator=generator)


baseline = torch.tensor([k_composition_score(random_low_rank(), random_low_rank()) for _ in range(200)])
for h0 in range(2):
    for h1 in range(2):
        print(f"K-composition, head 0.{h0} -> head 1.{h1}: {scores[h0, h1]:.3f}")
print(f"random baseline: {baseline.mean():.3f} ± {baseline.std():.3f} (200 pairs of random rank-{d_head} matrices)")
fig, ax = plt.subplots(figsize=(5, 4))
ax.hist(baseline.numpy(), bins=30, color="lightgrey", label="random baseline")
for h0 in range(2):
    for h1 in range(2):
        ax.axvline(scores[h0, h1].item(), color=f"C{2 * h0 + h1}", label=f"0.{h0} -> 1.{h1}")
ax.set(xlabel="K-composition score", ylabel="count", title="K-composition vs random baseline")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Head 0.0 composes with both layer-1 heads about twice as much as random matrices
# do (about 0.26 against a baseline of 0.125). Note that head 0.1 is well above the
# baseline too (about 0.21): the weights say it *could* feed layer 1's keys. The
# composition score is a screening tool, not a proof; ablation showed that only
# head 0.0 is needed.

# %% [markdown] effort=["induction_circuit"]
# ## Write the circuit down
#
# **What.** Return the circuit of the shipped `induction-2l` as you measured it:
# `{"previous_token": [(layer, head), ...], "induction": [(layer, head), ...]}`. The
# grader measures the circuit from the shipped model itself (its detectors on the
# same kind of sequences) and compares.
#
# **Why.** The point of all the measurements is a claim that can be checked: these
# heads, these roles. Use the evidence you gathered: detectors, ablations, OV and
# QK circuits, composition.
#
# **Hint.** Which layer-0 head attends to the previous token, and which heads does
# ablation say the model needs? Which layer-1 heads prefix-match?

# %% exercise="induction_circuit" difficulty=2 minutes=10
from solutions.induction_heads import induction_circuit

# %% [markdown]
# ## What you found
#
# * The live-trained model goes through a phase change: loss on the repeat, the
#   in-context learning score and the induction scores all move together, in a few
#   dozen steps. The one-layer control never gets there.
# * Head 0.0 is a previous-token head; heads 1.0 and 1.1 are redundant induction
#   heads, each with a nearly perfect copying OV circuit.
# * Ablation proves it: removing head 0.0, or both induction heads, breaks
#   in-context copying; removing head 0.1 does not. Direct logit attribution shows
#   the induction heads write the answer, while head 0.0 acts only through them.
# * The weights agree: layer 1's keys compose with layer 0's outputs well above a
#   random baseline, and the induction heads' QK circuit, read through head 0.0,
#   matches each token with the position after it.
#
# Chapter 03 scales the same tools up to a circuit in a language task.
