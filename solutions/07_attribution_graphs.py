# %% [markdown]
# # 07 · Transcoders and attribution graphs, in miniature
#
# Chapter 06 asked which *edges between components* carry a behaviour. Attribution
# graphs (Ameisen et al. 2025, *Circuit Tracing*; the open-source `circuit-tracer`)
# ask a finer question of a single prediction: which *features*, at which positions,
# pushed the model towards the token it predicts, and through which others. They get
# there in three moves, which you build here on the byte-level Python model `code-2l`:
#
# 1. **Transcoders**: replace each MLP, which mixes everything, by a sparse dictionary
#    that reads the MLP's input and predicts its output.
# 2. **The local replacement model**: on one prompt, freeze everything else that is
#    nonlinear (attention patterns, LayerNorm scales) and keep what the transcoders
#    miss as *error nodes*, so that the model becomes exactly linear in its features.
# 3. **The attribution graph**: every feature's direct effect on every later feature and
#    on the logits, pruned to the nodes that matter, and then **checked by
#    intervention** on the real model, where nothing is frozen.
#
# The course's rule holds here too: a graph is a hypothesis, and it counts only where
# ablating the features it names changes the model the way it says.
#
# **How this notebook works.** Each exercise is a function to finish: replace the
# `raise NotImplementedError(...)` with your code and run the cell; the `check(...)` cell
# after it grades it. `mi-course check course/07_attribution_graphs.ipynb` grades every
# exercise (skipping the analyses, which the graders do not need). The notebook runs in a
# few minutes on a laptop CPU.

# %% [markdown] exercise_table=true

# %%
import matplotlib.pyplot as plt
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from graders import make_check
from toy_models import load_pretrained
from toy_models.attribution import (
    build_attribution_graph,
    correlation_and_slope,
    graph_scores,
    intervention_experiment,
    prune_graph,
)
from toy_models.checkpoints import checkpoint_dir, read_description
from toy_models.data import ByteTokenizer, load_python_corpus, random_windows
from toy_models.exercises import finish_first
from toy_models.transcoder import load_transcoders

check = make_check("07_attribution_graphs")
torch.set_num_threads(1)  # small models run faster on one thread (see toy_models.threads)
tokenizer = ByteTokenizer()
model = load_pretrained("code-2l").requires_grad_(False)
transcoders = load_transcoders("code-2l")

# %% [markdown] effort=["transcoder_loss"]
# ## 1 · Transcoders
#
# An SAE (chapter 04) rewrites an activation as a sparse sum of features and reads it
# back out at the same place. A **transcoder** (Dunefsky et al. 2024) reads the MLP's
# *input* (`blocks.L.ln2.hook_normalized`) and predicts the MLP's *output*
# (`blocks.L.hook_mlp_out`) through a sparse layer: `f = TopK(ReLU(x W_enc + b_enc))`,
# `mlp_out ≈ f W_dec + b_dec`. Swapping an MLP for its transcoder swaps an opaque
# nonlinear map for a sum of features, each with one direction it writes.
#
# **What.** `transcoder_loss(transcoder, mlp_in, mlp_out)`: the squared error of the
# transcoder's prediction `transcoder(mlp_in)` of `mlp_out`, summed over `d_model` and
# averaged over the batch.
#
# **Why.** It is what the shipped transcoders were trained on (`mi-course train
# code-2l-transcoder-0` rebuilds one). A TopK transcoder needs no sparsity penalty: `k`
# fixes how many features fire per token.
#
# **Hints.** The target is the MLP's output, not its input: that is the one difference
# from an SAE's loss.

# %% exercise="transcoder_loss" difficulty=1 minutes=5
from solutions.attribution_graphs import transcoder_loss

# %% [markdown]
# The course ships one transcoder per layer of `code-2l`, trained on the MLP's inputs
# and outputs over the standard library's source. Their figures, measured on validation
# code when they were trained, are stored with them; the shipped SAE of chapter 04
# (which reads layer 0's neurons, not its output) is beside them for comparison.

# %% tags=["skip-when-grading"]
for name in ("code-2l-transcoder-0", "code-2l-transcoder-1", "code-2l-sae"):
    metrics = read_description(checkpoint_dir(name))["metrics"]
    print(f"{name:22s} " + ", ".join(f"{key} {value:.3f}" for key, value in metrics.items()))

# %% [markdown] effort=["error_nodes", "replacement_logits"]
# ## 2 · The local replacement model
#
# A transcoder is not perfect: at each layer and position it misses part of the MLP's
# output. An attribution graph keeps that part as an **error node**, a constant that is
# added back, so that nothing is explained away. With attention patterns and LayerNorm
# scales also held at their values on the prompt, every remaining operation is linear:
# the residual stream is a sum of token embeddings, features' decoder rows (each times
# its activation) and error nodes, carried forward by fixed linear maps.
#
# **What.** `error_nodes(model, transcoders, tokens)`: on the model's own run of `tokens`
# (one prompt, no batch dimension), the MLP's true output minus its transcoder's
# prediction, at every layer and position, as a `[layer, pos, d_model]` tensor. Then
# `replacement_logits(model, transcoders, clean_tokens, tokens)`: the replacement model
# *built on* `clean_tokens` (its attention patterns, LayerNorm scales and error nodes),
# *run on* `tokens` of the same length, each MLP replaced by its transcoder reading the
# MLP's input on this run, plus the clean error node.
#
# **Why.** On its own prompt the replacement model must give exactly the model's logits:
# that is what makes its graph an account of the model rather than of the transcoders.
# Run on another prompt it shows how *local* the account is.
#
# **Hints.** `transcoder.cfg.hook_in` and `.hook_out` name the hooks. Freeze with forward
# hooks that return the clean run's value for every `hook_pattern` and `hook_scale`. To
# replace an MLP's output you need its input from the same run: a hook on `hook_in` can
# keep it for the hook on `hook_out`.

# %% exercise="error_nodes" difficulty=2 minutes=10
from solutions.attribution_graphs import error_nodes

# %% exercise="replacement_logits" difficulty=3 minutes=20
from solutions.attribution_graphs import replacement_logits

# %% tags=["skip-when-grading"]
finish_first(error_nodes, replacement_logits)
validation = load_python_corpus("validation")
prompts = random_windows(validation, 20, 48, generator=torch.Generator().manual_seed(0))
exactness, drift, error_share = [], [], []
for tokens in prompts:
    logits = model(tokens[None])[0]
    exactness.append((replacement_logits(model, transcoders, tokens, tokens) - logits).abs().max().item())
    edited = tokens.clone()
    edited[10] = ord(" ") if edited[10] != ord(" ") else ord("x")  # one byte changed, early in the window
    drift.append((replacement_logits(model, transcoders, tokens, edited)[-1] - model(edited[None])[0, -1]).abs().max().item())
    errors = error_nodes(model, transcoders, tokens)
    _, cache = model.run_with_cache(tokens[None], names_filter=lambda name: name.endswith("hook_mlp_out"))
    outputs = torch.stack([cache[f"blocks.{layer}.hook_mlp_out"][0] for layer in range(model.cfg.n_layers)])
    error_share.append((errors.norm(dim=-1) / outputs.norm(dim=-1)).mean(dim=-1))
error_share = torch.stack(error_share).mean(dim=0)
print(f"on its own prompt, the largest logit difference over {len(prompts)} prompts: {max(exactness):.1e}")
print(f"one byte changed: the replacement's last-position logits are off by up to {max(drift):.2f} (median "
      f"{torch.tensor(drift).median():.2f})")
print("the error node's size relative to the MLP output, by layer: "
      + ", ".join(f"layer {layer} {share:.2f}" for layer, share in enumerate(error_share.tolist())))

# %% [markdown]
# The replacement model is exact on its own prompt, to float precision, and wrong as soon
# as the prompt changes: its error nodes and frozen patterns belong to one input. That is
# the bargain: an attribution graph explains one prediction exactly, and says nothing
# directly about any other.

# %% [markdown] effort=["logit_attributions"]
# ## 3 · The attribution graph
#
# In the linear replacement model each source's effect on each target is a number: the
# direct effect through the residual stream and the frozen attention, not through any
# other feature. The graph's nodes are the active features at every position, the error
# nodes, one node per input token and the most likely next tokens; its edge `A[t, s]` is
# source `s`'s direct effect on target `t`'s input, a feature's pre-activation or a
# logit minus the mean logit (so that what raises every logit alike counts for nothing).
#
# Because the model is linear, a whole row of `A` comes from one backward pass: the
# gradient of the target with respect to where each source writes, dotted with what it
# writes. You write the row of one logit.
#
# **What.** `logit_attributions(model, transcoders, tokens, token)`: for every feature
# `(layer, pos, f)`, its direct effect on `logits[-1, token] - logits[-1].mean()` in the
# replacement model frozen on `tokens`, as a `[layer, pos, d_transcoder]` tensor: its
# activation times its decoder row dotted with the gradient of the target with respect to
# that layer's MLP output at that position. Zero for inactive features.
#
# **Why.** This is how circuit-tracer computes every edge: one backward pass per batch of
# targets, never one forward pass per edge. Holding each MLP output as a constant leaf of
# the autograd graph is what makes the effects *direct*: no gradient passes from a
# feature through a later one.
#
# **Hints.** Freeze `hook_pattern` and `hook_scale` as before. Replace each `hook_out` by
# a leaf: the clean output, `.clone().requires_grad_()`, returned from the hook; then
# `torch.autograd.grad(target, leaves)`. The activations are `transcoder.encode(mlp_in)`.

# %% exercise="logit_attributions" difficulty=3 minutes=20
from solutions.attribution_graphs import logit_attributions

# %% tags=["skip-when-grading"]
finish_first(logit_attributions)
PROMPT = "def parse(self, text)"
tokens = tokenizer.encode(PROMPT)
graph = build_attribution_graph(model, transcoders, tokens)
print(f"prompt {PROMPT!r}: the model predicts " + ", ".join(
    f"{tokenizer.decode([token])!r} (p={prob:.2f})"
    for token, prob in zip(graph.logit_tokens.tolist(), graph.logit_probabilities.tolist())))
kinds = [node.kind for node in graph.nodes]
print("nodes: " + ", ".join(f"{kinds.count(kind)} {kind}" for kind in ("feature", "error", "token", "logit")))

top = int(graph.logit_tokens[0])
mine = logit_attributions(model, transcoders, tokens, top)
logit_row = graph.adjacency[graph.mask("logit").nonzero()[0, 0]]
features = [(index, node) for index, node in enumerate(graph.nodes) if node.kind == "feature"]
agree = max(abs(mine[node.layer, node.pos, node.index].item() - logit_row[index].item()) for index, node in features)
print(f"your logit_attributions and the course's graph agree on the {tokenizer.decode([top])!r} logit's row to {agree:.1e}")

strongest = sorted(features, key=lambda pair: -abs(logit_row[pair[0]].item()))[:8]
print(f"the features with the largest direct effects on {tokenizer.decode([top])!r}:")
for index, node in strongest:
    print(f"  layer {node.layer} feature {node.index:4d} at {PROMPT[node.pos]!r} (position {node.pos}): "
          f"activation {node.activation:.2f}, direct effect {logit_row[index].item():+.2f}")

# %% [markdown] effort=["node_influence", "prune_nodes"]
# ## 4 · Pruning by influence
#
# The full graph has a node for every active feature at every position, far too many to
# read, and most of its edges are tiny. circuit-tracer keeps what matters for the output:
# a node's **influence** is the share of the logits' inputs that reach it over paths of
# any length. With `W` the adjacency's absolute values, each row scaled to sum to 1, the
# shares one step back from the logits are `logit_weights @ W`, two steps back
# `logit_weights @ W @ W`, and the influence is the sum over all steps (the logits
# weighted by their probabilities).
#
# **What.** `node_influence(adjacency, logit_weights)`: `logit_weights @ (W + W² + W³ + …)`.
# Then `prune_nodes(adjacency, logit_weights, threshold, always)`: the nodes, ranked by
# influence, as few as needed for their cumulative share of the total influence to reach
# `threshold`, together with the nodes of `always` (the tokens and logits). A boolean
# mask over nodes.
#
# **Why.** Ranking by influence rather than by raw edge weight is the point: a feature
# with large edges into nodes that barely matter is not part of the explanation, and a
# feature with modest edges into the node that decides the logit is.
#
# **Hints.** Edges go from earlier nodes to later ones, so the powers of `W` reach zero
# and the sum ends; a loop that stops when the term is zero works, and so does one
# linear solve with `I - W`. For pruning, sort the influences in descending order and
# take their cumulative sum over the total.

# %% exercise="node_influence" difficulty=2 minutes=15
from solutions.attribution_graphs import node_influence

# %% exercise="prune_nodes" difficulty=2 minutes=10
from solutions.attribution_graphs import prune_nodes

# %% tags=["skip-when-grading"]
finish_first(node_influence, prune_nodes)
always = graph.mask("token") | graph.mask("logit")
kept_mine = prune_nodes(graph.adjacency.double(), graph.logit_weights(), 0.8, always)
pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
full, after = graph_scores(graph), graph_scores(graph, pruned)
print(f"{len(graph.nodes)} nodes; your prune_nodes keeps {int(kept_mine.sum())} at threshold 0.8; the course's "
      f"pruning, which also drops the edges below 0.98 of the edge influence and the nodes they leave stranded, "
      f"keeps {int(pruned.node_mask.sum())} nodes and {int(pruned.edge_mask.sum())} edges")
print(f"replacement score {full.replacement:.2f} before pruning, {after.replacement:.2f} after; "
      f"completeness {full.completeness:.2f} before, {after.completeness:.2f} after")

# %% [markdown]
# The **replacement score** is the share of the influence of the graph's unexplained
# sources (tokens and error nodes) that is the tokens': 1 would mean every path to the
# logits starts at the prompt, through features only. The **completeness score** is the
# influence-weighted share of every node's inputs that does not come from error nodes.
# After pruning, the features it drops count as errors too, so both fall: the price of a
# graph small enough to read.
#
# To look at the pruned graph, run, from a terminal:
#
# ```bash
# mi-course graph "def parse(self, text)" --out graph/
# ```
#
# It writes `graph/index.html`, a page that opens from disk with nothing fetched: the
# prompt's bytes along the bottom, the layers upward, each edge as wide as its weight,
# and, for a feature, its top-activating snippets of validation code one click away. It
# also writes `graph/graph.json` in circuit-tracer's format, which its own viewer opens.

# %% [markdown] effort=["ablation_effect"]
# ## 5 · Proving it by intervention
#
# The graph is a claim about the replacement model. The model we care about is the real
# one, where attention re-routes and LayerNorm rescales when a feature disappears. So
# ablate a feature in the real model and compare the change in the logit with the
# graph's prediction: through the feature's direct edge alone (an edge is the effect of
# the source at its full activation, so ablating it should move the logit by minus the
# edge), and through every path of the graph (its edges into later features too).
#
# **What.** `ablation_effect(model, transcoders, tokens, layer, pos, feature, token)`: in
# the *real* model, subtract the feature's activation times its decoder row from layer
# `layer`'s MLP output at position `pos`; return the change of
# `logits[-1, token] - logits[-1].mean()`, ablated minus clean.
#
# **Why.** This is the test that turns a picture into evidence. A graph whose predicted
# effects the real model does not reproduce has explained the replacement model only.
#
# **Hints.** Read the activation from the clean run (`transcoder.encode` of `hook_in` at
# that position); one hook on `hook_out` does the ablation. Do not freeze anything.

# %% exercise="ablation_effect" difficulty=2 minutes=10
from solutions.attribution_graphs import ablation_effect

# %% tags=["skip-when-grading"]
finish_first(ablation_effect)
index, node = strongest[0]
measured = ablation_effect(model, transcoders, tokens, node.layer, node.pos, node.index, top)
print(f"ablating layer {node.layer} feature {node.index} at position {node.pos}: the {tokenizer.decode([top])!r} "
      f"logit moves by {measured:+.2f}; its direct edge predicted {-logit_row[index].item():+.2f}")

experiment_prompts = random_windows(validation, 12, 32, generator=torch.Generator().manual_seed(1))
results = intervention_experiment(model, transcoders, experiment_prompts, features_per_prompt=8)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
for ax, (kind, predicted) in zip(axes, (("direct edge", results.direct), ("all paths", results.total))):
    for layer in range(model.cfg.n_layers):
        here = results.layer == layer
        ax.scatter(predicted[here], results.measured[here], s=12, label=f"layer {layer} features")
    r, slope = correlation_and_slope(predicted, results.measured)
    low, high = min(predicted.min(), results.measured.min()).item(), max(predicted.max(), results.measured.max()).item()
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="measured = predicted")
    ax.set(title=f"predicted by the {kind}: r = {r:.2f}, slope {slope:.2f}", xlabel="predicted change of the logit",
           ylabel="measured change (real model)")
    ax.legend(fontsize=8)
plt.show()
for layer in range(model.cfg.n_layers):
    here = results.layer == layer
    r, slope = correlation_and_slope(results.direct[here], results.measured[here])
    print(f"layer {layer} features ({int(here.sum())} ablations): r = {r:.2f}, slope {slope:.2f} (direct edge)")
print(f"{len(results.measured)} single-feature ablations over {len(experiment_prompts)} prompts")

# %% [markdown]
# Each point is one feature of one prompt, ablated alone in the real model: its measured
# change against the graph's prediction. Where the points lie on the diagonal the linear
# story holds; where they leave it, the part of the model the replacement froze is doing
# the work: attention patterns that move when a feature is gone, LayerNorm scales that
# shrink or grow, and the MLPs themselves, which the real model still runs in full.
#
# Over these ablations the direct edges predict the measured changes with r = 0.85, but
# with a slope of only 0.55: the graph gets the effects' signs and order mostly right and
# their sizes wrong, the real model moving about half as far as the graph says. Which of the frozen parts is responsible?
# An experiment answers it: hold a single one of them, the final LayerNorm's scale, at its
# clean value in the real model, and ablate the same features again.

# %% tags=["skip-when-grading"]
finish_first(ablation_effect)  # the experiment above comes first
held = intervention_experiment(model, transcoders, experiment_prompts, features_per_prompt=8,
                               hold=["ln_final.hook_scale"])
for layer in range(model.cfg.n_layers):
    here = held.layer == layer
    r, slope = correlation_and_slope(held.direct[here], held.measured[here])
    print(f"final LayerNorm held, layer {layer} features: r = {r:.2f}, slope {slope:.2f} (direct edge)")

# %% [markdown]
# With only the final LayerNorm held, layer 1's features move the logit exactly as their
# edges say (r = 1.00, slope 1.00). Their one road to the logits runs through that
# LayerNorm, and when a feature's vector leaves the residual stream the LayerNorm rescales
# what is left, giving back part of the logit the ablation took. Layer 0's features still
# stray (r = 0.93, slope 1.36): their effects also pass through layer 1's attention and
# MLP, which the real model runs in full and the graph holds still. On this model the
# linear story breaks first at the final LayerNorm, then at the later layers' responses;
# the graph's edges, which rank the features well, are a first-order account of a model
# that is not first-order.

# %% [markdown]
# ## Summary
#
# * A transcoder swaps an MLP for a sparse dictionary from its input to its output; its
#   error nodes keep what it misses, so nothing is explained away.
# * Freezing attention patterns and LayerNorm scales on one prompt makes the model
#   linear in its features and exact on that prompt, and on that prompt only.
# * Each edge is a direct effect, and a whole row of them costs one backward pass.
#   Influence, not raw weight, decides which nodes a readable graph keeps, and the
#   replacement and completeness scores say how much the pruned graph leaves unexplained.
# * A graph is a hypothesis about the replacement model. Ablating its features in the real
#   model, and comparing, is what says how far it describes the model itself.
