# %% [markdown]
# # 01 · The three buckets: behaviour, representation, mechanism
#
# Three kinds of claim get made about what a network "knows", and they are not the same:
#
# 1. **Behavioural**: what the model *does*. "It closes the brackets it opens." You
#    measure it with an evaluation on inputs and outputs alone.
# 2. **Representational**: what is *decodable* from its activations. "Bracket depth
#    is linearly readable from layer 1." You measure it with a probe.
# 3. **Mechanistic**: which computation *does the work*. "This head carries the
#    information that makes it predict `)`." Only a causal intervention (ablate,
#    steer, patch) and its effect on the behaviour can show it.
#
# Each bucket answers a different question, and the most common mistake in
# interpretability is to answer one with the evidence of another. In this chapter you
# do all three on the same model, `code-2l` (2 layers, bytes of Python source), and
# see where they agree and where they do not.
#
# **How this notebook works.** Each exercise is a function to finish: replace
# `raise NotImplementedError(...)` with your code and run the cell. The cell after it,
# `check(name)`, grades your function in a second or two and prints `PASS`, or what
# was expected, what came back and the likely mistake.
# `mi-course check course/01_three_buckets.ipynb` grades them all at once.

# %% [markdown] exercise_table=true

# %%
from collections.abc import Callable

import einops
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from graders import make_check
from toy_models import Transformer, load_pretrained
from toy_models.data import ByteTokenizer, load_python_corpus
from toy_models.exercises import finish_first

check = make_check("01_three_buckets")
tokenizer = ByteTokenizer()
model = load_pretrained("code-2l").requires_grad_(False)  # we study it, never train it: no gradients
print(model.cfg)

# %% [markdown]
# ## The data
#
# 128 windows of 128 bytes from the *validation* files of the corpus (files the model
# never trained on), drawn with a fixed seed so every run sees the same ones.

# %% tags=["skip-when-grading"]
corpus = load_python_corpus("validation")
starts = torch.randint(0, len(corpus) - 128, (128,), generator=torch.Generator().manual_seed(0))
tokens = torch.stack([corpus[start : start + 128] for start in starts])
print(tokens.shape)
print(tokenizer.decode(tokens[0][:100]))

# %% [markdown] effort=["bracket_depth"]
# ## Labels: bracket depth
#
# Every bucket needs the same ground truth. Ours is **bracket depth**: how many of
# `(`, `[`, `{` are open at each byte. It is the label the probes try to decode, and
# it tells the behavioural eval where a `)` is possible at all.
#
# Why it matters: a label computed from the bytes is *your* description of the
# data, not the model's. Get it off by one and every accuracy that follows is
# measured against the wrong thing.
#
# *Hint:* keep one running depth per sequence, clamp at 0 (a window can start in the
# middle of a call), and store the depth after the byte at that position.

# %% exercise="bracket_depth" difficulty=2 minutes=15
from solutions.three_buckets import bracket_depth

# %% tags=["skip-when-grading"]
finish_first(bracket_depth)
depth = bracket_depth(tokens)
print("fraction of bytes inside brackets:", (depth > 0).float().mean().item())
print(list(zip(tokenizer.decode(tokens[0][:30]), depth[0][:30].tolist())))

# %% [markdown] effort=["closing_paren_accuracy"]
# ## Bucket 1, behaviour: does it close the brackets?
#
# A behavioural eval asks one sharp question of inputs and outputs only. Ours: at the
# positions where the next byte really is `)`, how often is `)` the model's top
# prediction? It says nothing about *how* the model does it: that is the point.
#
# *Hint:* the logits at position p predict the byte at p + 1.

# %% exercise="closing_paren_accuracy" difficulty=2 minutes=10
from solutions.three_buckets import closing_paren_accuracy

# %% tags=["skip-when-grading"]
logits, cache = model.run_with_cache(tokens)
torch.manual_seed(0)
random_model = Transformer(model.cfg).eval().requires_grad_(False)  # the same architecture, never trained
_, random_cache = random_model.run_with_cache(tokens)
finish_first(bracket_depth, closing_paren_accuracy)
clean_accuracy = closing_paren_accuracy(logits, tokens).item()
n_closes = (tokens[:, 1:] == ord(")")).sum().item()
print(f"code-2l predicts ')' correctly at {clean_accuracy:.1%} of the {n_closes} positions before a ')'")
print(f"the untrained model: {closing_paren_accuracy(random_model(tokens), tokens).item():.1%}")
inside = depth[:, :-1] > 0
p_close = logits[:, :-1].softmax(-1)[..., ord(")")]
print(f"mean p(')') inside brackets: {p_close[inside].mean():.4f}, outside: {p_close[~inside].mean():.4f}")

# %% [markdown]
# The model closes about half of the parentheses, far better than the untrained one,
# and it puts much more probability on `)` inside brackets than outside: its
# behaviour *depends on* bracket depth. Does it *represent* the depth? That is the
# next bucket's question.

# %% [markdown] effort=["fit_probe", "held_out_probe_accuracy"]
# ## Bucket 2, representation: a linear probe
#
# A probe is a small classifier trained to read a label from activations. A linear
# probe is logistic regression: a direction `w` and a bias `b`, predicting True where
# `acts @ w + b > 0`. If a linear probe reads the label well, the information is
# *linearly decodable* there.
#
# Write the probe (plain gradient descent from zero weights, so that it is
# deterministic), then the accuracy that means something: on examples the probe was
# not trained on. With 128 dimensions, a probe can fit a few hundred examples of
# anything, noise included; the grader checks exactly that.
#
# *Hint:* `F.binary_cross_entropy_with_logits` and `torch.optim.SGD`. Split before you
# fit: the first part trains, the rest tests.

# %% exercise="fit_probe" difficulty=2 minutes=15
from solutions.three_buckets import fit_probe

# %% exercise="held_out_probe_accuracy" difficulty=2 minutes=10
from solutions.three_buckets import held_out_probe_accuracy

# %% [markdown]
# ### Accuracy per layer, and the controls that make probes honest
#
# We probe the residual stream at three points: the embeddings
# (`blocks.0.hook_resid_pre`), after layer 0 and after layer 1. Each activation is
# standardised with the training split's mean and spread. Two controls:
#
# * the **majority baseline**: most bytes are outside brackets (about 5 in 6, printed
#   above), so a probe that always says "outside" scores that much. Accuracy means
#   little without it;
# * the **same probe on an untrained model** with the same architecture: anything it
#   decodes there comes from the architecture and the input, not from learning.

# %% tags=["skip-when-grading"]
finish_first(bracket_depth, fit_probe, held_out_probe_accuracy)
SITES = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
labels = (depth > 0).flatten()
n_train = int(0.7 * len(labels))  # the first 70% of the sequences train, the rest test
majority = max(labels[n_train:].float().mean().item(), 1 - labels[n_train:].float().mean().item())


def standardised(acts: Tensor) -> Tensor:
    mean, spread = acts[:n_train].mean(0), acts[:n_train].std(0)
    return (acts - mean) / spread


def probe_accuracies(activation_cache, labels):
    return [held_out_probe_accuracy(standardised(activation_cache[site].reshape(-1, model.cfg.d_model)), labels).item()
            for site in SITES]


trained_accuracy = probe_accuracies(cache, labels)
random_accuracy = probe_accuracies(random_cache, labels)
print(f"majority baseline: {majority:.3f}")
for site, ours, untrained in zip(SITES, trained_accuracy, random_accuracy):
    print(f"{site:26s} code-2l {ours:.3f}   untrained {untrained:.3f}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(range(3), trained_accuracy, marker="o", label="code-2l")
ax.plot(range(3), random_accuracy, marker="o", label="untrained model (control)")
ax.axhline(majority, color="black", linestyle=":", label="majority baseline")
ax.set(xticks=range(3), xticklabels=["embeddings", "after layer 0", "after layer 1"],
       xlabel="residual stream position", ylabel="held-out probe accuracy", title="Is 'inside brackets' decodable?")
ax.legend()
plt.show()

# %% [markdown]
# **Read the plot against its baselines.** The embeddings know only the current byte,
# so a probe there barely beats the majority baseline, on either model, and the
# untrained model's later layers add nothing. After each *trained* layer,
# decodability rises above the baseline: attention has gathered the brackets that
# came before. That is a
# *representational* finding. It does not yet say the model *uses* that direction.

# %% [markdown] effort=["ablate_direction", "steer", "head_ablation_effect"]
# ## Bucket 3, mechanism: intervene
#
# Two interventions on a residual-stream direction `d`:
#
# * **ablation** removes each vector's component along `d` (projection):
#   `resid - (resid · d / |d|²) d`;
# * **steering** adds `alpha` times the unit vector along `d`.
#
# And one on a component: **zero-ablating an attention head**, then measuring the
# change in a metric. Each is run as a hook during the forward pass
# (`model.run_with_hooks`), and judged by the change in the *behaviour* of bucket 1.
#
# *Hint:* normalise `d` first; a hook returns the edited tensor.

# %% exercise="ablate_direction" difficulty=2 minutes=10
from solutions.three_buckets import ablate_direction

# %% exercise="steer" difficulty=1 minutes=5
from solutions.three_buckets import steer

# %% exercise="head_ablation_effect" difficulty=3 minutes=15
from solutions.three_buckets import head_ablation_effect


# %% [markdown]
# ### Ablating and steering along the probe direction
#
# We fit the depth probe after layer 0 on the training split, map its direction back
# from standardised units to the raw residual stream (divide by the spread), ablate
# it during the forward pass, and compare with ablating a random direction.

# %% tags=["skip-when-grading"]
finish_first(bracket_depth, closing_paren_accuracy, fit_probe, held_out_probe_accuracy, ablate_direction)


def probe_direction(activation_cache, site, labels):
    acts = activation_cache[site].reshape(-1, model.cfg.d_model)
    spread = acts[:n_train].std(0)
    direction, _ = fit_probe(standardised(acts)[:n_train], labels[:n_train])
    return direction / spread  # a direction in the raw residual stream


def accuracy_with(hook_name, edit):
    return closing_paren_accuracy(model.run_with_hooks(tokens, fwd_hooks=[(hook_name, lambda resid, hook: edit(resid))]), tokens).item()


site = "blocks.0.hook_resid_post"
depth_direction = probe_direction(cache, site, labels)
random_direction = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
print(f"clean:                                  {clean_accuracy:.3f}")
print(f"ablate the depth-probe direction:       {accuracy_with(site, lambda r: ablate_direction(r, depth_direction)):.3f}")
print(f"ablate a random direction (control):    {accuracy_with(site, lambda r: ablate_direction(r, random_direction)):.3f}")

finish_first(steer)  # the rest of the cell steers
alphas = [-8, -4, -2, 0, 2, 4, 8]
steered = [accuracy_with(site, lambda r, a=a: steer(r, depth_direction, a)) for a in alphas]
steered_random = [accuracy_with(site, lambda r, a=a: steer(r, random_direction, a)) for a in alphas]
print("steering alpha:       ", "  ".join(f"{a:+5d}" for a in alphas))
print("along the depth probe:", "  ".join(f"{v:5.3f}" for v in steered))
print("along a random one:   ", "  ".join(f"{v:5.3f}" for v in steered_random))
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(alphas, steered, marker="o", label="along the depth probe")
ax.plot(alphas, steered_random, marker="o", label="along a random direction")
ax.set(xlabel="steering strength alpha (residual-stream units)", ylabel="closing-paren accuracy",
       title="Steering after layer 0", ylim=(0, 1))
ax.legend()
plt.show()

# %% [markdown]
# ### Which heads does the behaviour need?
#
# Zero-ablate each of the 8 heads in turn and measure the change in closing-paren
# accuracy.

# %% tags=["skip-when-grading"]
finish_first(bracket_depth, closing_paren_accuracy, head_ablation_effect)
effects = torch.tensor([[head_ablation_effect(model, tokens, layer, head, closing_paren_accuracy)
                         for head in range(model.cfg.n_heads)] for layer in range(model.cfg.n_layers)])
for layer in range(model.cfg.n_layers):
    print(f"layer {layer}:", " ".join(f"{effect:+.3f}" for effect in effects[layer].tolist()))
worst_layer, worst_head = divmod(effects.argmin().item(), model.cfg.n_heads)
print(f"ablating head {worst_layer}.{worst_head} alone takes the accuracy from {clean_accuracy:.3f} "
      f"to {clean_accuracy + effects.min().item():.3f}")

fig, ax = plt.subplots(figsize=(7, 4))
ax.bar([f"{layer}.{h}" for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)], effects.flatten())
ax.set(xlabel="head (layer.head)", ylabel="change in closing-paren accuracy", title="Zero-ablating one head")
plt.show()

# %% [markdown]
# ## Two cases where the buckets disagree
#
# **Decodable, but not what this behaviour uses.** Probe a property the model
# certainly represents, *is the current byte a space*, and ablate its direction at
# the same place. Its probe is far more accurate than the depth probe; compare the
# effects on closing brackets.

# %% tags=["skip-when-grading"]
finish_first(bracket_depth, closing_paren_accuracy, fit_probe, held_out_probe_accuracy, ablate_direction)
space_labels = (tokens == ord(" ")).flatten()
space_majority = 1 - space_labels[n_train:].float().mean().item()
space_accuracy = held_out_probe_accuracy(standardised(cache[site].reshape(-1, model.cfg.d_model)), space_labels).item()
space_direction = probe_direction(cache, site, space_labels)
print(f"'is a space' probe after layer 0: accuracy {space_accuracy:.3f} (majority baseline {space_majority:.3f})")
print(f"'inside brackets' probe there:    accuracy {trained_accuracy[1]:.3f} (majority baseline {majority:.3f})")
print(f"closing-paren accuracy: clean {clean_accuracy:.3f}, "
      f"space direction ablated {accuracy_with(site, lambda r: ablate_direction(r, space_direction)):.3f}, "
      f"depth direction ablated {accuracy_with(site, lambda r: ablate_direction(r, depth_direction)):.3f}")

# %% [markdown]
# A near-perfect probe whose direction barely matters to this behaviour; a probe that
# beats its baseline by only a few points, whose direction matters more when ablated
# and, when steered along (the plot above), drives the behaviour from almost never to
# almost always closing (a random direction steered as hard only degrades it: what
# singles out the probe direction is that it moves the behaviour *both ways*). Probe accuracy measures what is *there*, not what is *used*,
# and it does not rank directions by importance. Only the intervention does. (Notice
# too that ablating the depth direction removes only part of the behaviour: it does
# not rest on this one direction alone.)
#
# **A small intervention that breaks the behaviour.** One head out of eight, zeroed,
# is a tiny edit to the computation; the head-ablation table above shows which one
# costs the behaviour most. That is a claim of the third bucket: a specific component
# is necessary for the behaviour, on this data. (Zero-ablation is a blunt tool, it
# also moves the head's output off its usual range; chapter 03 replaces it with mean
# ablation and patching.)
#
# ## The introspection gap
#
# Why not just ask a model why it did something? A language model's explanation of
# its own behaviour is *more behaviour*: text produced by the same forward pass,
# trained to be plausible, with no access to its own weights or activations. It is
# evidence of the first bucket, never of the third. When an explanation and an
# intervention disagree, the intervention wins, because only it changed the
# computation and watched what followed. Our 2-layer model cannot talk, but the rule
# it illustrates is the same one this whole course follows: *if you didn't ablate,
# you didn't prove anything.*
