# %% [markdown]
# # 03 · Indirect object identification
#
# *When Mary and John went to the store, John gave a drink to* ... **Mary**. Wang et
# al. (2022), *Interpretability in the wild*, found the circuit GPT-2 small uses to
# complete such sentences: 26 heads in 7 classes. This chapter follows their method
# on the course's own `ioi-3l`, a 3-layer model trained on IOI sentences, and ends by
# running the very same functions on GPT-2 small when its weights can be downloaded.
#
# The method narrows three things: the **behaviour** (one number, the logit
# difference IO − S), the **inputs** (clean prompts, and corrupted ones that differ
# only in what matters), and the **model** (patching finds the components that
# carry the difference; ablation proves they are enough).
#
# A warning you will see justified: a small model trained on a dozen templates need
# not solve the task the way GPT-2 does. Measure, then name the roles after what you
# measured.
#
# **How this notebook works.** Each exercise is a function to finish: replace the
# `raise NotImplementedError(...)` and run the cell; `check(name)` grades it.
# Conventions for every patching exercise: we **noise**, running the model on the
# clean prompts with one activation taken from the corrupted run, and `metric`
# maps the patched logits to the *normalised* logit difference: 1 = clean
# behaviour, 0 = corrupted behaviour. The whole notebook runs in a few minutes on a laptop CPU.

# %% [markdown] exercise_table=true

# %%
from collections.abc import Callable
from functools import partial

import einops
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import patching

from graders import make_check
from toy_models import load_pretrained
from toy_models.data import IOI_NAMES, IOIPrompts, ioi_tokenizer, make_ioi_prompts
from toy_models.exercises import finish_first
from toy_models.hf import ioi_prompts_for_tokenizer, load_gpt2_bridge
from toy_models.plots import integer_ticks, signed_heatmap, symmetric_limits

check = make_check("03_indirect_object_identification")
model = load_pretrained("ioi-3l").requires_grad_(False)  # we analyse it, never train it
tokenizer = ioi_tokenizer()
print(model.cfg)
prompts = make_ioi_prompts(64, split="test", seed=0)  # templates the model never trained on
abc = prompts.corrupt("abc")    # S2 replaced by a third name: nothing singles out IO
flip = prompts.corrupt("flip")  # IO and S swapped everywhere: the answer flips
for i in range(2):
    print(f"{prompts.orders[i]}: {prompts.sentences[i]} -> {tokenizer.decode_token(prompts.io_tokens[i])}")
    print(f"  ABC:  {abc.sentences[i]}")
    print(f"  flip: {flip.sentences[i]}")
print("positions of IO, S1, S2, end in the first prompt:", prompts.io_pos[0].item(), prompts.s1_pos[0].item(),
      prompts.s2_pos[0].item(), prompts.end_pos[0].item())

# %% [markdown] effort=["mean_logit_diff", "normalised_logit_diff"]
# ## 1 · The metric: logit difference
#
# **What.** `mean_logit_diff`: logit(IO) − logit(S) at each prompt's last position
# `prompts.end_pos`, averaged. Then `normalised_logit_diff`, the patching metric
# $(LD - LD_{corrupted}) / (LD_{clean} - LD_{corrupted})$.
#
# **Why.** The logit difference isolates the one decision IOI is about (which of the
# two names), and is linear in the residual stream, so it splits exactly into
# per-component contributions. Normalising makes numbers comparable across prompt
# sets, corruptions and models: 1 means a patch changed nothing, 0 that it did all
# the corruption's damage.
#
# **Hints.** `logits[torch.arange(batch), prompts.end_pos]` is `[batch, d_vocab]`.
# Use `end_pos`, not `-1`: padded batches end earlier. The corrupted logit difference
# is measured with the *clean* names (`abc` and `flip` keep them in `io_tokens` /
# `s_tokens` as the class documents; for `flip` the clean answer is `s_tokens`).

# %% exercise="mean_logit_diff" difficulty=1 minutes=5
from solutions.ioi import mean_logit_diff

# %% exercise="normalised_logit_diff" difficulty=1 minutes=5
from solutions.ioi import normalised_logit_diff

# %%
logits, cache = model.run_with_cache(prompts.tokens)
batch = torch.arange(len(prompts))
final = logits[batch, prompts.end_pos]
accuracy = (final[batch, prompts.io_tokens] > final[batch, prompts.s_tokens]).float().mean().item()
names = torch.tensor([tokenizer.token_id(name) for name in IOI_NAMES])
name_accuracy = (names[final[:, names].argmax(dim=-1)] == prompts.io_tokens).float().mean().item()
finish_first(mean_logit_diff, normalised_logit_diff)
clean_ld = mean_logit_diff(logits, prompts).item()
abc_ld = mean_logit_diff(model(abc.tokens), prompts).item()
flip_ld = mean_logit_diff(model(flip.tokens), prompts).item()
print(f"clean: mean logit difference {clean_ld:.2f}, IO above S on {accuracy:.0%} of the prompts, "
      f"IO the top name of all {len(names)} on {name_accuracy:.0%}")
print(f"ABC-corrupted: {abc_ld:.2f}; name-flipped (clean IO - clean S): {flip_ld:.2f}")
metric = partial(normalised_logit_diff, prompts=prompts, clean_logit_diff=clean_ld, corrupted_logit_diff=abc_ld)
print(f"normalised metric: clean {metric(logits).item():.2f}, ABC {metric(model(abc.tokens)).item():.2f}")

# %% [markdown]
# The shipped model gets every held-out prompt right, with a mean logit difference
# around 7. ABC corruption leaves it near 0, preferring neither name, and flipping
# the names flips the sign. From here on, `metric` is the normalised
# logit difference with ABC as the corrupted baseline.

# %% [markdown] effort=["residual_logit_diff"]
# ## 2 · Direct logit attribution and the logit lens
#
# **What.** `residual_logit_diff(model, stack, scale, prompts)`: the logit difference
# that each vector of `stack` (`[component, batch, d_model]`, at the final position)
# would produce on its own through the final LayerNorm, with its scale frozen at its
# clean value, and the unembedding.
#
# **Why.** Apply it to the *accumulated* residual stream after each layer and you have
# the **logit lens**: when does the answer appear? Apply it to each head's output and
# you have **direct logit attribution**: who writes the answer?
#
# **Hints.** The direction is `W_U[:, IO] - W_U[:, S]`, one per prompt
# (`[batch, d_model]` after `.T`). LayerNorm centres each vector over `d_model`,
# divides by `scale` (`[batch, 1]`) and multiplies by `model.ln_final.w`.

# %% exercise="residual_logit_diff" difficulty=2 minutes=15
from solutions.ioi import residual_logit_diff

# %%
finish_first(mean_logit_diff, normalised_logit_diff, residual_logit_diff)
scale = cache["ln_final.hook_scale"][batch, prompts.end_pos]  # [batch, 1]
at_end = lambda act: act[batch, prompts.end_pos]  # noqa: E731
accumulated = torch.stack([at_end(cache["resid_pre", layer]) for layer in range(model.cfg.n_layers)]
                          + [at_end(cache["resid_post", model.cfg.n_layers - 1])])
per_layer = torch.stack([torch.stack([at_end(cache["attn_out", layer]), at_end(cache["mlp_out", layer])])
                         for layer in range(model.cfg.n_layers)]).flatten(0, 1)
heads = torch.cat([einops.einsum(at_end(cache["z", layer]), model.blocks[layer].attn.W_O,
                                 "batch head d_head, head d_head d_model -> head batch d_model")
                   for layer in range(model.cfg.n_layers)])  # [layer * head, batch, d_model]
lens = residual_logit_diff(model, accumulated, scale, prompts)
layer_parts = residual_logit_diff(model, per_layer, scale, prompts)
head_dla = residual_logit_diff(model, heads, scale, prompts).reshape(model.cfg.n_layers, model.cfg.n_heads)

fig, (ax_lens, ax_parts, ax_heads) = plt.subplots(1, 3, figsize=(17, 4), layout="constrained")
ax_lens.plot(lens.numpy(), marker="o")
ax_lens.set(title="logit lens: accumulated stream", xticks=range(len(lens)),
            xticklabels=[f"before {layer}" for layer in range(model.cfg.n_layers)] + ["final"], ylabel="logit difference")
labels = [f"{kind}{layer}" for layer in range(model.cfg.n_layers) for kind in ("attn", "mlp")]
ax_parts.bar(labels, layer_parts.numpy())
ax_parts.set(title="each layer's attention and MLP", ylabel="direct logit difference")
signed_heatmap(ax_heads, head_dla, label="direct logit difference")
ax_heads.set(title="direct logit attribution per head", xlabel="head", ylabel="layer")
integer_ticks(ax_heads)
plt.show()
print("logit lens:", [round(x, 2) for x in lens.tolist()], "(the last equals the model's logit difference,",
      f"{clean_ld:.2f}, up to the biases)")
print("per layer (attn, mlp):", [round(x, 2) for x in layer_parts.tolist()])
print("per head:\n", head_dla.round(decimals=2))

# %% [markdown]
# Nothing before layer 1 separates the names. Two heads, **1.0** and **1.3**, write
# a logit difference of about 1.4-1.6 each; the **MLPs of layers 1 and 2** write most
# of the rest. No layer-0 head writes anything directly. Direct effects are only
# half the story: patching finds the indirect ones.

# %% [markdown] effort=["patch_residual_by_position", "patch_head_outputs"]
# ## 3 · Activation patching
#
# **What.** `patch_residual_by_position`: for every layer and position, run the clean
# prompts with the activation `blocks.{layer}.hook_{activation}` (the residual
# stream `resid_pre`, or a layer's `attn_out`) at that one position replaced by its
# value on the corrupted prompts; return the metric, `[n_layers, pos]`. Then
# `patch_head_outputs`: the same for one head at a time, at all positions, for the
# head's output `z` or its attention `pattern`; `[n_layers, n_heads]`.
#
# **Why.** Patching is the causal version of looking: where, in layer and position,
# does the information that distinguishes clean from corrupted live, and which
# heads carry it? A value near 1 means the patch changed nothing; near 0, that this
# one activation carries the whole difference.
#
# **Hints.** `model.run_with_cache(corrupted_tokens, names_filter=...)` once, then
# `model.run_with_hooks(clean_tokens, fwd_hooks=[(name, hook)])`, with a hook
# `hook(act, hook)` that edits `act` and returns it. `act[:, position]`, not
# `act[position]` (the batch comes first). `hook_z` is `[batch, pos, head, d_head]`;
# `hook_pattern` is `[batch, head, query_pos, key_pos]`. Store
# `float(metric(logits))`.

# %% exercise="patch_residual_by_position" difficulty=2 minutes=15
from solutions.ioi import patch_residual_by_position

# %% exercise="patch_head_outputs" difficulty=2 minutes=10
from solutions.ioi import patch_head_outputs

# %%
finish_first(mean_logit_diff, normalised_logit_diff, patch_residual_by_position, patch_head_outputs)
resid = patch_residual_by_position(model, prompts.tokens, abc.tokens, metric, "resid_pre")
attn = patch_residual_by_position(model, prompts.tokens, abc.tokens, metric, "attn_out")
head_out = patch_head_outputs(model, prompts.tokens, abc.tokens, metric, "z")
head_pattern = patch_head_outputs(model, prompts.tokens, abc.tokens, metric, "pattern")

# An independent oracle: TransformerLens's patching, with the roles swapped since we noise
# (it patches the given cache into the run of the given tokens).
_, abc_cache = model.run_with_cache(abc.tokens)
oracle = patching.get_act_patch_resid_pre(model, prompts.tokens, abc_cache, metric)
print("agrees with transformer_lens.patching:", torch.allclose(resid, oracle, atol=1e-4))

words = ["<bos>", *["IO/S1" if i in (prompts.io_pos[0], prompts.s1_pos[0]) else "S2" if i == prompts.s2_pos[0]
                    else "" for i in range(1, prompts.tokens.shape[1] - 1)], "END"]
tables = [("resid_pre by layer, position", resid), ("attn_out by layer, position", attn),
          ("head outputs z", head_out), ("head patterns", head_pattern)]
vmin, vmax = symmetric_limits(torch.cat([table.flatten() for _, table in tables]), centre=1.0)  # white: no effect
fig, axes = plt.subplots(1, 4, figsize=(20, 3.8), gridspec_kw={"width_ratios": [3, 3, 1.3, 1.3]}, layout="constrained")
for ax, (title, table) in zip(axes, tables):
    image = ax.imshow(table.numpy(), cmap="RdBu", vmin=vmin, vmax=vmax)
    ax.set(title=title, ylabel="layer")
    integer_ticks(ax)
    if table.shape[1] > model.cfg.n_heads:
        ax.set(xticks=range(len(words)), xlabel="position (roles of the first prompt)")
        ax.set_xticklabels(words, rotation=90)
    else:
        ax.set(xlabel="head")
fig.colorbar(image, ax=axes, label="normalised logit difference when noised (1: clean, 0: corrupted)")
plt.show()
s2 = prompts.s2_pos[0].item()
print(f"resid_pre at S2 ({s2}), layers 0-2: {resid[:, s2].round(decimals=2).tolist()}; at END: "
      f"{resid[:, -1].round(decimals=2).tolist()}")
print("head outputs:\n", head_out.round(decimals=2))
print("head patterns:\n", head_pattern.round(decimals=2))

# %% [markdown]
# Read the residual-stream map from left to right: the corruption lives at **S2**
# in layers 0 and 1 (patching it there does most of ABC's damage), and at **END** from
# layer 2 on: between the two, a layer-1 attention layer moves it from S2 to END.
# The prompts come from four templates, so S2 is not at the same position in every
# prompt: the map shows S2 at positions 9 and 10 and smeared a little.
#
# Per head: noising **1.0** or **1.3** costs most of the logit difference, any
# other head almost nothing. Their *patterns* hardly matter: in ABC prompts they
# still attend to the position of S2; what changes is the name they read there, so
# the damage comes through their values, not where they look.

# %% [markdown] effort=["path_patch_head_to_logits", "path_patch_head_to_heads"]
# ## 4 · Path patching
#
# **What.** Activation patching measures a component's *total* effect. Path patching
# measures one *path*. `path_patch_head_to_logits`: the effect of each head's
# corrupted output on the logits *directly*, everything downstream seeing the clean
# output. `path_patch_head_to_heads`: the effect of each *sender* head on given
# *receiver* heads' queries, keys or values, and only through them.
#
# **Why.** Wang et al. found the S-inhibition heads by path patching into the name
# movers' queries: a head can matter only because another head reads it. Here:
# do 1.0 and 1.3 act directly, and what do they read?
#
# **Hints.** Direct path: the clean final stream plus `(z_corrupted - z_clean) @ W_O`
# for one head, added by a hook on the last block's `hook_resid_post` (the final
# LayerNorm then recomputes). Head to heads, per sender, two runs on the clean
# tokens: (1) every `attn.hook_z` frozen at its clean value except the sender's, from
# the corrupted run, and the receivers' `hook_q` (or `k`, `v`) recorded (use
# `hook.layer()`); (2) only the receivers' heads of that activation patched in.

# %% exercise="path_patch_head_to_logits" difficulty=3 minutes=15
from solutions.ioi import path_patch_head_to_logits

# %% exercise="path_patch_head_to_heads" difficulty=4 minutes=25
from solutions.ioi import path_patch_head_to_heads

# %%
finish_first(mean_logit_diff, normalised_logit_diff, path_patch_head_to_logits, path_patch_head_to_heads)
direct = path_patch_head_to_logits(model, prompts.tokens, abc.tokens, metric)
print("head -> logits (1 = no effect):\n", direct.round(decimals=2))
S_HEADS = [(1, 0), (1, 3)]
for receiver_input in ("q", "k", "v"):
    into = path_patch_head_to_heads(model, prompts.tokens, abc.tokens, metric, S_HEADS, receiver_input)
    print(f"layer-0 heads -> {receiver_input} of 1.0 and 1.3: {into[0].round(decimals=3).tolist()}")
flip_metric = partial(normalised_logit_diff, prompts=prompts, clean_logit_diff=clean_ld, corrupted_logit_diff=flip_ld)
into_v = path_patch_head_to_heads(model, prompts.tokens, flip.tokens, flip_metric, [(2, 0), (2, 3)], "v")
print("flip, layer-0 and layer-1 heads -> v of 2.0 and 2.3:\n", into_v[:2].round(decimals=3))

# %% [markdown]
# Directly, 1.0 and 1.3 account for part of their effect (the metric drops to
# about 0.7 and 0.8); the rest of their total effect (to about 0.33 and 0.40) goes
# through the layer-1 MLP, which reads their output at END and amplifies it: that is
# the MLP's large direct contribution you saw. And no layer-0 head feeds their
# queries, keys or values: under ABC they read S2's name straight from the
# embedding. The path patching result is as informative as a positive one: the
# model has no duplicate-token or induction heads feeding an S-inhibition step.

# %% [markdown] effort=["attribution_patch_heads"]
# ## 5 · Attribution patching
#
# **What.** `attribution_patch_heads`: the linear approximation of
# `patch_head_outputs(..., "z")` from a single backward pass: metric(clean) +
# Σ (z_corrupted − z_clean) · ∂metric/∂z, the gradient taken on the clean run, summed
# over batch, positions and `d_head`.
#
# **Why.** Activation patching costs one forward pass per component: fine for 12
# heads, not for every neuron of a large model. Attribution patching (Nanda, 2023)
# costs two forward passes and one backward pass for all of them. It is a Taylor
# expansion, so it is good where the metric is close to linear in the activation,
# and wrong where it is not: saturated softmaxes, LayerNorm, large changes.
#
# **Hints.** In a hook on every `attn.hook_z`: if `z` does not require a gradient (the
# first layer's, with frozen weights), replace it by `z.detach().requires_grad_(True)`;
# then `z.retain_grad()`, keep a reference and return it. After
# `metric(logits).backward()`, `z.grad` is ∂metric/∂z through *every* later component.
# (Detaching every layer's `z` would cut the paths through later heads.) Work under
# `torch.enable_grad()`.

# %% exercise="attribution_patch_heads" difficulty=3 minutes=20
from solutions.ioi import attribution_patch_heads

# %%
finish_first(mean_logit_diff, normalised_logit_diff, patch_head_outputs, path_patch_head_to_logits, path_patch_head_to_heads,
             attribution_patch_heads)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, (name, corrupted, m) in zip(axes, [("ABC", abc, metric), ("flip", flip, flip_metric)]):
    actual = patch_head_outputs(model, prompts.tokens, corrupted.tokens, m, "z")
    estimate = attribution_patch_heads(model, prompts.tokens, corrupted.tokens, m)
    ax.scatter(actual.flatten().numpy(), estimate.flatten().numpy())
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            ax.annotate(f"{layer}.{head}", (actual[layer, head].item(), estimate[layer, head].item()))
    ax.plot([-1, 1.2], [-1, 1.2], color="grey", linestyle="--")
    ax.set(title=f"{name}: attribution vs activation patching", xlabel="activation patching", ylabel="attribution patching")
    worst = (estimate - actual).abs().argmax().item()
    print(f"{name}: largest error {(estimate - actual).abs().max():.2f} at head "
          f"{worst // model.cfg.n_heads}.{worst % model.cfg.n_heads}; "
          f"1.0: actual {actual[1, 0]:.2f}, estimate {estimate[1, 0]:.2f}; "
          f"1.3: actual {actual[1, 3]:.2f}, estimate {estimate[1, 3]:.2f}")
plt.show()

# %% [markdown]
# With ABC, the estimate is within about 0.03 of the real patching result for every
# head: the corruption changes one name, and the metric is nearly linear in each
# head's output over that change. With the names flipped, the corruption is bigger
# (three names change) and the approximation degrades where the effect is large: it
# misses heads 1.0 and 1.3 by more than 0.1, under-estimating the damage, because the
# layer-1 MLP that amplifies them is not linear over so large a change. Use
# attribution patching to rank candidates cheaply, then confirm the top ones with
# real patching.

# %% [markdown] effort=["ablated_logit_diff", "ioi_circuit"]
# ## 6 · The circuit, and trying to break it
#
# **What.** `ablated_logit_diff(model, prompts, mean_tokens, heads)`: the mean logit
# difference with the listed heads *mean-ablated*, their `z` replaced at each
# position by its mean over `mean_tokens` (ABC prompts). Then `ioi_circuit`: the heads
# of the circuit and their roles, as you measured them.
#
# **Why.** A circuit is a claim: *these heads are enough*. Mean-ablate everything
# outside it (**faithfulness**: the fraction of the logit difference kept), remove it
# from the full model (it should collapse), and then try to break the story:
# **completeness** (knocking a class out of the circuit and out of the full model
# should do the same damage) and **minimality** (each head should matter).
#
# **Hints.** One mean per position: `.mean(dim=0)`. For the circuit, combine what you
# measured: where the last position looks (the patterns below), direct logit
# attribution, patching and ablation. This model has its own roles: name them
# `"name_mover"` (heads that bring the first clause's names to END) and
# `"s_suppression"` (heads that find S2 and push its name down).

# %% exercise="ablated_logit_diff" difficulty=2 minutes=15
from solutions.ioi import ablated_logit_diff

# %%
b = torch.arange(len(prompts))
for layer in range(model.cfg.n_layers):
    pattern = cache["pattern", layer][b, :, prompts.end_pos]  # [batch, head, key]
    print(f"layer {layer}: END -> IO {pattern[b, :, prompts.io_pos].mean(0).round(decimals=2).tolist()}, "
          f"-> S1 {pattern[b, :, prompts.s1_pos].mean(0).round(decimals=2).tolist()}, "
          f"-> S2 {pattern[b, :, prompts.s2_pos].mean(0).round(decimals=2).tolist()}")
W_E, W_U = model.embed.W_E[names], model.W_U[:, names]
for layer, head in [(0, 0), (0, 1), (0, 3), (1, 0), (1, 3)]:
    attn = model.blocks[layer].attn
    ov = W_E @ attn.W_V[head] @ attn.W_O[head] @ W_U  # [name, name]: attending to a name -> each name's logit
    print(f"head {layer}.{head}: OV on names, diagonal {ov.diagonal().mean():+.3f} vs off-diagonal "
          f"{(ov.sum() - ov.diagonal().sum()) / (len(names) ** 2 - len(names)):+.3f}")

# %% [markdown]
# Layer 0's heads 0.0, 0.1 and 0.3 look from END at the two names of the first
# clause, IO and S1, about equally, and their OV circuits copy names (positive
# diagonal): they bring *both* candidate names to END. Heads 1.0 and 1.3 look at S2
# (0.98) with a *negative* copying OV circuit: they push S2's name down. IO wins
# because it is the candidate that is not suppressed. That is a different
# algorithm from GPT-2's: no duplicate-token, induction or S-inhibition heads,
# because in these templates the repeated name always stands right before the verb,
# so finding it needs no comparison. (Try it: 1.0 and 1.3 attend to the third name
# in ABC prompts just as much.)

# %% exercise="ioi_circuit" difficulty=2 minutes=10
from solutions.ioi import ioi_circuit

# %%
finish_first(mean_logit_diff, normalised_logit_diff, ablated_logit_diff, ioi_circuit)
ALL_HEADS = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
circuit = sorted(head for heads in ioi_circuit().values() for head in heads)
roles = ioi_circuit()
mean_tokens = make_ioi_prompts(256, split="test", seed=1).corrupt("abc").tokens
outside = [head for head in ALL_HEADS if head not in circuit]
full = ablated_logit_diff(model, prompts, mean_tokens, []).item()
kept = ablated_logit_diff(model, prompts, mean_tokens, outside).item()
removed = ablated_logit_diff(model, prompts, mean_tokens, circuit).item()
print(f"full model {full:.2f}; circuit only {kept:.2f} (faithfulness {kept / full:.0%}); "
      f"circuit removed {removed:.2f} ({removed / full:.0%})")
for role, heads in roles.items():
    in_model = ablated_logit_diff(model, prompts, mean_tokens, heads).item()
    in_circuit = ablated_logit_diff(model, prompts, mean_tokens, outside + heads).item()
    print(f"completeness, {role} knocked out: full model {in_model / full:.0%}, circuit {in_circuit / full:.0%}")


def io_top_name(ablate):
    """How often IO is the top name of all 24 at END, with `ablate` mean-ablated."""
    reference = model.run_with_cache(mean_tokens, names_filter=lambda name: name.endswith("hook_z"))[1]

    def hook(z, hook):
        for layer, head in ablate:
            if layer == hook.layer():
                z[:, :, head] = reference[hook.name][:, :, head].mean(dim=0)
        return z
    final = model.run_with_hooks(prompts.tokens, fwd_hooks=[(lambda n: n.endswith("attn.hook_z"), hook)])[b, prompts.end_pos]
    return (names[final[:, names].argmax(dim=-1)] == prompts.io_tokens).float().mean().item()


print(f"IO the top name: full model {io_top_name([]):.0%}, circuit only {io_top_name(outside):.0%}")
for head in circuit:
    without = ablated_logit_diff(model, prompts, mean_tokens, outside + [head]).item()
    print(f"minimality, circuit without {head}: logit difference {without / full:.0%} of the model's, "
          f"IO the top name {io_top_name(outside + [head]):.0%}")
name_movers_out = outside + roles["name_mover"]
print(f"circuit without the name movers: logit difference {ablated_logit_diff(model, prompts, mean_tokens, name_movers_out) / full:.0%}, "
      f"IO the top name {io_top_name(name_movers_out):.0%}")

# %% [markdown]
# On these held-out prompts the five heads keep about 88% of the model's logit
# difference with the other seven mean-ablated, and removing them leaves about 13%.
# Completeness holds: knocking out the S-suppression heads destroys the logit
# difference in the full model and in the circuit alike, and knocking out the name
# movers does not hurt it in either.
#
# Minimality is where the story breaks, and teaches something. On the logit
# difference, the name movers are *not* needed (without them it even rises):
# IO − S only asks the model to rank two names, and suppressing S is enough for
# that. But without the name movers IO is the model's top name on only about 9% of
# the prompts: they are what makes the model say a name *from the context* at all.
# The metric narrowed the behaviour to the comparison the S-suppression heads
# perform; the full behaviour needs both classes.

# %% [markdown]
# ## 7 · Scaling up: GPT-2 small
#
# The same functions, unchanged, on GPT-2 small through TransformerLens's
# `TransformerBridge` (in compatibility mode: TransformerLens's hook names and weight
# shapes). This needs to download GPT-2's weights (500 MB) once; offline, the cell
# prints one line and skips. The prompts are one template in plain English,
# tokenized by GPT-2's tokenizer (`ioi_prompts_for_tokenizer`).
#
# Wang et al. report a mean logit difference of about 3.5, name movers **9.9, 9.6,
# 10.0** (the heads with the largest direct logit attribution) and S-inhibition heads
# **7.3, 7.9, 8.6, 8.10** (the senders whose path into the name movers' queries
# matters most). The cell prints what your functions find.

# %% tags=["skip-when-grading"]
finish_first(mean_logit_diff, normalised_logit_diff, residual_logit_diff, path_patch_head_to_heads)
gpt2 = load_gpt2_bridge("gpt2")
if gpt2 is not None:
    g_prompts = ioi_prompts_for_tokenizer(gpt2.tokenizer, 48, seed=0)
    # ABC: S2 becomes another prompt's name, different from both of this prompt's
    pool = torch.unique(torch.cat([g_prompts.io_tokens, g_prompts.s_tokens]))
    third = torch.stack([pool[(pool != io) & (pool != s)][i % 3]
                         for i, (io, s) in enumerate(zip(g_prompts.io_tokens, g_prompts.s_tokens))])
    g_abc_tokens = g_prompts.tokens.clone()
    g_abc_tokens[torch.arange(len(g_prompts)), g_prompts.s2_pos] = third
    with torch.no_grad():
        g_logits, g_cache = gpt2.run_with_cache(g_prompts.tokens)
        g_clean = mean_logit_diff(g_logits, g_prompts).item()
        g_abc = mean_logit_diff(gpt2(g_abc_tokens), g_prompts).item()
    print(f"GPT-2 small on {len(g_prompts)} prompts such as {g_prompts.sentences[0]!r}: mean logit difference "
          f"{g_clean:.2f} (paper: about 3.5); ABC {g_abc:.2f}")
    g_metric = partial(normalised_logit_diff, prompts=g_prompts, clean_logit_diff=g_clean, corrupted_logit_diff=g_abc)
    gb = torch.arange(len(g_prompts))
    g_scale = g_cache["ln_final.hook_scale"][gb, g_prompts.end_pos]
    g_heads = torch.cat([einops.einsum(g_cache["z", layer][gb, g_prompts.end_pos], gpt2.blocks[layer].attn.W_O,
                                       "batch head d_head, head d_head d_model -> head batch d_model")
                         for layer in range(gpt2.cfg.n_layers)])
    g_dla = residual_logit_diff(gpt2, g_heads, g_scale, g_prompts).reshape(gpt2.cfg.n_layers, gpt2.cfg.n_heads)
    top = g_dla.flatten().topk(3).indices.tolist()
    movers = [(i // gpt2.cfg.n_heads, i % gpt2.cfg.n_heads) for i in top]
    print("largest direct logit attribution (name movers; paper 9.9, 9.6, 10.0):",
          ", ".join(f"{layer}.{h} ({g_dla[layer, h]:.2f})" for layer, h in movers))
    into_q = path_patch_head_to_heads(gpt2, g_prompts.tokens, g_abc_tokens, g_metric, [(9, 9), (9, 6), (10, 0)], "q")
    drop = (1 - into_q[:9]).flatten().topk(4).indices.tolist()
    print("largest path patching effect into the name movers' queries (S-inhibition; paper 7.3, 7.9, 8.6, 8.10):",
          ", ".join(f"{i // gpt2.cfg.n_heads}.{i % gpt2.cfg.n_heads} ({into_q[:9].flatten()[i]:.2f})" for i in drop))

# %% [markdown]
# ## What you found
#
# * The shipped `ioi-3l` gets every held-out prompt right, with a mean logit
#   difference around 7; ABC corruption takes it to about 0.
# * Its algorithm is simpler than GPT-2's: layer-0 **name movers** (0.0, 0.1, 0.3)
#   bring both names of the first clause to END; **S-suppression** heads (1.0, 1.3)
#   find the name right before the verb, which in every template is S2, and push it
#   down, with the layer-1 MLP amplifying them. IO is what is left.
# * Patching located it (S2 until layer 1, END afterwards); path patching showed
#   1.0 and 1.3 act partly directly and partly through the MLP, and read S2 straight
#   from the embeddings; attribution patching approximated the head effects from one
#   backward pass.
# * The circuit passes the logit-difference test, and mean ablation exposed what the
#   metric cannot see: the name movers do not change IO − S at all, but without them
#   IO is no longer the top name. A metric is a narrowing of the behaviour; check the
#   behaviour too.
#
# Chapter 04 turns from circuits to features: superposition and sparse autoencoders.
