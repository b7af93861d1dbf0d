# %% [markdown]
# # 00 · A transformer from scratch
#
# You will build a GPT-style transformer one piece at a time: LayerNorm, the
# embeddings, causal self-attention, the MLP, a block, the unembedding and the full
# forward pass. Then you will train it, on your CPU, on sequences of random tokens
# that repeat, and watch it discover *induction*, the algorithm that lets it predict
# the repeat, in a sudden drop of the loss.
#
# Every later chapter takes models like this one apart. Writing one yourself is the
# fastest way to know where each number you will study lives.
#
# **How this notebook works.** Each exercise is a cell with a class or function to
# finish: replace `raise NotImplementedError(...)` with your code and run the cell.
# The cell after it, `check(Name)`, grades your code in about a second: it loads the
# course's reference weights into your module, compares your outputs with the
# reference on random inputs and edge cases, and prints `PASS`, or what came back,
# what was expected and the most likely mistake. From a terminal,
# `mi-course check course/00_transformer_from_scratch.ipynb` grades every exercise at
# once.
#
# **Conventions.** Shapes are written with jaxtyping, `Float[Tensor, "batch pos d_model"]`,
# and `einops` does the tensor algebra with named axes, which is much harder to get
# wrong than remembering which axis is which. Parameter names and shapes are
# TransformerLens's: keep the ones given, because the grader loads weights by name.

# %% [markdown] exercise_table=true
#

# %%
import math

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from graders import make_check
from toy_models import TransformerConfig
from toy_models.exercises import finish_first

check = make_check("00_transformer_from_scratch")

# %% [markdown]
# ## The config
#
# Everything that decides the shape of a model sits in one `TransformerConfig` (the
# field names are TransformerLens's):
#
# * `d_vocab`: how many different tokens there are; `n_ctx`: the longest sequence;
# * `d_model`: the width of the *residual stream*, the vector at each position that
#   every layer reads from and adds its output to;
# * `n_heads` attention heads per layer, each working in `d_head` dimensions
#   (`d_model // n_heads` unless you say otherwise);
# * `d_mlp`: the MLP's hidden width, or `None` for an attention-only model, like the
#   one you will train at the end;
# * `layer_norm_eps` and `init_range` (the standard deviation of the initial weights).

# %%
cfg = TransformerConfig(n_layers=2, d_model=64, n_heads=4, d_vocab=64, n_ctx=49, d_mlp=256)
print(cfg)
print("d_head =", cfg.d_head, "| attention only:", cfg.attn_only)

# %% [markdown] effort=["LayerNorm"]
# ## LayerNorm
#
# **What.** For each position, take the `d_model` numbers of its residual vector,
# subtract their mean, divide by their standard deviation, then scale by a learned
# vector `w` and shift by a learned vector `b`:
#
# $$\mathrm{LN}(x) = \frac{x - \operatorname{mean}(x)}{\sqrt{\operatorname{var}(x) + \varepsilon}} \odot w + b$$
#
# **Why.** Every layer adds its output to the residual stream, so its size drifts as
# the model gets deeper. LayerNorm gives each layer an input of a fixed size, which
# makes training stable. (In interpretability it is also the one non-linear step
# between the residual stream and each layer: later chapters freeze its scale to make
# the model linear.)
#
# **Hints.** The mean and variance are over `d_model` only (`dim=-1`, `keepdim=True`).
# The variance is the *biased* one, dividing by `d_model`: `torch.var` divides by
# `d_model - 1` unless you pass `unbiased=False`. `eps` goes inside the square root.

# %% exercise="LayerNorm" difficulty=2 minutes=15
from solutions.transformer_from_scratch import LayerNorm

# %% [markdown] effort=["Embed", "PosEmbed"]
# ## Token and positional embeddings
#
# **What.** The model reads token ids, integers in `[0, d_vocab)`. The embedding turns
# each id into a vector: token `t` is row `t` of the matrix `W_E [d_vocab, d_model]`.
# Attention by itself does not know where a token is, so a second matrix
# `W_pos [n_ctx, d_model]` gives position `p` the vector `W_pos[p]`; the residual
# stream starts as the sum of the two.
#
# **Why.** These two matrices are where the model's knowledge of each token and each
# position starts. Interpretability reads them directly: for instance, you will see
# that a previous-token head finds its target through `W_pos`.
#
# **Hints.** Indexing a matrix with a tensor of ids picks rows: `W_E[tokens]` has shape
# `[batch, pos, d_model]`. The positional embedding depends on positions only, not on
# the tokens: take `W_pos[:seq_len]` and repeat it over the batch with
# `einops.repeat(..., "pos d_model -> batch pos d_model", batch=batch)`.

# %% exercise="Embed" difficulty=1 minutes=5
from solutions.transformer_from_scratch import Embed

# %% exercise="PosEmbed" difficulty=1 minutes=5
from solutions.transformer_from_scratch import PosEmbed

# %% [markdown] effort=["apply_causal_mask"]
# ## The causal mask
#
# **What.** Attention compares every query position with every key position, giving
# scores of shape `[batch, n_heads, query_pos, key_pos]`. A language model predicts
# each next token from the ones before it, so position `q` may look at keys
# `k <= q` only. Masking sets every score with `k > q` (above the diagonal) to
# `-inf`; after the softmax those keys get weight exactly 0.
#
# **Why.** Without the mask the model could read the token it is asked to predict:
# training would be trivial and the model useless. It is also why information in a
# transformer only ever flows forwards, which the circuits of later chapters rely on.
#
# **Hints.** `torch.ones(q, k, dtype=torch.bool).triu(diagonal=1)` is `True` exactly
# above the diagonal. `masked_fill(mask, float("-inf"))` returns a new tensor: return
# it. Keep the diagonal: a position may attend to itself.

# %% exercise="apply_causal_mask" difficulty=2 minutes=10
from solutions.transformer_from_scratch import apply_causal_mask

# %% [markdown] effort=["Attention"]
# ## Attention
#
# **What.** Each head moves information between positions in five steps:
#
# 1. queries, keys and values: `q = x @ W_Q + b_Q`, and the same for `k` and `v`,
#    each `[batch, pos, n_heads, d_head]`;
# 2. scores: the dot product of each query with each key, divided by `sqrt(d_head)`,
#    `[batch, n_heads, query_pos, key_pos]`;
# 3. `apply_causal_mask`, then a softmax over the **key** axis: the *pattern*, where
#    each query's weights sum to 1;
# 4. `z`: for each query, the pattern-weighted sum of the values,
#    `[batch, query_pos, n_heads, d_head]`;
# 5. output: each head's `z @ W_O [n_heads, d_head, d_model]`, summed over heads,
#    plus `b_O`.
#
# **Why.** Attention is the only place where positions exchange information, so every
# circuit in this course runs through it: *where* a head looks is decided by queries
# and keys (the QK circuit), *what* it moves by values and output (the OV circuit).
# The `1/sqrt(d_head)` keeps the scores' spread independent of the head size, so that
# the softmax does not start out saturated.
#
# **Hints.** Write each step as one `einops.einsum` with named axes, for example
# `einops.einsum(x, self.W_Q, "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head")`.
# Use `self.cfg.d_head`, not `d_model // n_heads`: the hidden tests use a model where
# they differ.

# %% exercise="Attention" difficulty=4 minutes=40
from solutions.transformer_from_scratch import Attention

# %% [markdown] effort=["MLP"]
# ## The MLP
#
# **What.** A two-layer network applied to each position on its own:
# `gelu(x @ W_in + b_in) @ W_out + b_out`, with `W_in [d_model, d_mlp]` and
# `W_out [d_mlp, d_model]`. Use the exact GELU, `F.gelu`.
#
# **Why.** Attention moves information between positions; the MLPs process it where it
# is. The `d_mlp` hidden units ("neurons") are what neuron studies and sparse
# autoencoders read, in chapter 04.

# %% exercise="MLP" difficulty=1 minutes=10
from solutions.transformer_from_scratch import MLP

# %% [markdown] effort=["TransformerBlock"]
# ## A transformer block
#
# **What.** Attention, then the MLP, each reading a LayerNorm of the residual stream
# and *adding* its output back to it:
#
# ```text
# resid_mid  = resid_pre + attn(ln1(resid_pre))
# resid_post = resid_mid + mlp(ln2(resid_mid))
# ```
#
# An attention-only model (`cfg.attn_only`, when `d_mlp` is `None`) has no `ln2` and
# no MLP, and returns `resid_mid`.
#
# **Why.** Because every layer adds to the same stream, the final stream is a sum of
# every layer's output: that sum is what lets interpretability attribute a prediction
# to individual heads and neurons. The model you train at the end is attention-only,
# so your block must handle both cases.

# %% exercise="TransformerBlock" difficulty=2 minutes=10
from solutions.transformer_from_scratch import TransformerBlock

# %% [markdown] effort=["Unembed"]
# ## Unembedding
#
# **What.** The final residual stream becomes one score per vocabulary token, the
# *logits*: `x @ W_U + b_U`, with `W_U [d_model, d_vocab]`. No softmax: the loss
# function takes logits.
#
# **Why.** `W_U` is the lens through which everything in the residual stream becomes a
# prediction; the *logit lens* of chapter 03 applies it to earlier layers.

# %% exercise="Unembed" difficulty=1 minutes=5
from solutions.transformer_from_scratch import Unembed

# %% [markdown] effort=["DemoTransformer"]
# ## The whole transformer
#
# **What.** Put the pieces together: embed the tokens and add the positional
# embedding, run the blocks in order, apply the final LayerNorm `ln_final`, unembed.
#
# **Why.** This is the model every later chapter dissects. Its parameter names are
# TransformerLens's (`blocks.0.attn.W_Q`, ...), so the course's trained checkpoints
# load straight into it: you will do that next.
#
# **Hint.** The grader builds your `DemoTransformer`, which builds your pieces: if it
# fails, run the checks of the pieces first.

# %% exercise="DemoTransformer" difficulty=2 minutes=15
from solutions.transformer_from_scratch import DemoTransformer

# %% [markdown]
# ### Your model, with trained weights
#
# The course ships `induction-2l`, a two-layer attention-only model trained on random
# tokens that repeat. Its weights load into your `DemoTransformer` unchanged. On a
# start token, then a random block of 24 tokens, then the same block again, it cannot
# predict the first block: its loss there, printed below, is about that of guessing,
# `log(d_vocab - 1)`. But it predicts the repeat almost perfectly.

# %% tags=["skip-when-grading"]
from toy_models import load_pretrained
from toy_models.model import next_token_loss
from toy_models.train import INDUCTION_SEQ_LEN, induction_batch

finish_first(LayerNorm, Embed, PosEmbed, apply_causal_mask, Attention, MLP, TransformerBlock, Unembed, DemoTransformer)
shipped = load_pretrained("induction-2l")
mine = DemoTransformer(shipped.cfg)
mine.load_state_dict(shipped.state_dict())
tokens = induction_batch(torch.Generator().manual_seed(0), 8, shipped.cfg.d_vocab)
with torch.no_grad():
    torch.testing.assert_close(mine(tokens), shipped(tokens), rtol=1e-4, atol=1e-4)
    loss = next_token_loss(mine(tokens), tokens, per_token=True)
print("Your DemoTransformer reproduces the shipped model's logits.")
print(f"loss on the first block: {loss[:, :INDUCTION_SEQ_LEN].mean():.2f} "
      f"(guessing: {math.log(shipped.cfg.d_vocab - 1):.2f}), on the repeat: {loss[:, INDUCTION_SEQ_LEN:].mean():.2f}")

# %% [markdown]
# ## Train it, and watch induction appear
#
# Now train your own `DemoTransformer` on the shipped model's kind of data, two
# attention-only layers on random tokens that repeat, with a recipe shortened so that
# you can watch: 128 tokens instead of 512, batches of 48 instead of 64, twice the
# learning rate, 250 steps instead of 600. Nothing about a random token
# can be learned, except that it may have appeared before: predicting a repeat takes
# an algorithm spread over two layers. A *previous-token head* in layer 0 writes "the
# token before me was A" into each position; an *induction head* in layer 1 then
# looks for the earlier position whose previous token is the current token, and
# copies what it finds there.
#
# For a while the model learns nothing useful and the loss stays on a plateau near
# `log(d_vocab - 1)`, the loss of guessing. Then the two heads form together and the
# loss on repeated tokens collapses: a *phase change*. Along the way we measure, on
# held-out sequences (a random block of 24 tokens, then the same block again), the
# loss on each half and each layer's best *induction score*: a head's average
# attention from each token of the repeat to the token just after that token's first
# occurrence, the one an induction head copies. Your model has no hooks, so to read
# its attention patterns we copy its weights into the course's hooked `Transformer`,
# which has the same parameter names.
#
# The progress bar shows how long it takes on your CPU (torch trains on one thread,
# which for a model this small is faster than several, above all on a busy laptop).
# `TRAIN_STEPS` is yours to change. If the loss becomes NaN, training stops and says
# which piece to check first.

# %% tags=["parameters"]
TRAIN_STEPS = 250  # as many as the live recipe, INDUCTION_LIVE
EVAL_EVERY = 10

# %% tags=["skip-when-grading"]
from toy_models import Transformer
from toy_models.metrics import induction_scores
from toy_models.model import next_token_loss
from toy_models.train import INDUCTION_LIVE, INDUCTION_SEQ_LEN, TRANSFORMER_JOBS, induction_batch, train_transformer

finish_first(LayerNorm, Embed, PosEmbed, apply_causal_mask, Attention, MLP, TransformerBlock, Unembed, DemoTransformer)
recipe = INDUCTION_LIVE
sample_batch = TRANSFORMER_JOBS["induction-2l"].batches(recipe)  # a fresh batch of repeated random tokens per call
held_out = induction_batch(torch.Generator().manual_seed(12345), 64, recipe.model.d_vocab)
hooked = Transformer(recipe.model).eval()  # reads your model's attention patterns

eval_steps, first_block_losses, repeat_losses, scores = [], [], [], []


def evaluate(step, model, loss):
    """Every EVAL_EVERY steps: the held-out loss on each half, and every head's induction score."""
    if step % EVAL_EVERY and step != TRAIN_STEPS - 1:
        return
    with torch.no_grad():
        per_token = next_token_loss(model(held_out), held_out, per_token=True)
    hooked.load_state_dict(model.state_dict())
    eval_steps.append(step)
    first_block_losses.append(per_token[:, :INDUCTION_SEQ_LEN].mean().item())
    repeat_losses.append(per_token[:, INDUCTION_SEQ_LEN:].mean().item())
    scores.append(induction_scores(hooked, held_out, INDUCTION_SEQ_LEN))


# Your DemoTransformer, built and trained with the recipe's seed, optimiser and learning rate
model, train_losses = train_transformer(recipe, sample_batch, build=DemoTransformer, on_step=evaluate,
                                        steps=TRAIN_STEPS)
print(f"After {TRAIN_STEPS} steps, held-out loss: {first_block_losses[-1]:.2f} on the first block, "
      f"{repeat_losses[-1]:.2f} on the repeat; best induction score: {scores[-1][0].max():.2f} in layer 0, "
      f"{scores[-1][1].max():.2f} in layer 1")

# %% tags=["skip-when-grading"]
import matplotlib.pyplot as plt

finish_first(LayerNorm, Embed, PosEmbed, apply_causal_mask, Attention, MLP, TransformerBlock, Unembed, DemoTransformer)
scores_over_time = torch.stack(scores)  # [evaluation, layer, head]
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
left.plot(train_losses, color="lightgrey", label="training batches")
left.plot(eval_steps, first_block_losses, label="held out: first block")
left.plot(eval_steps, repeat_losses, label="held out: the repeat")
left.axhline(math.log(recipe.model.d_vocab - 1), color="black", linestyle=":", label="guessing")
left.set(xlabel="step", ylabel="loss per token", title="Loss")
left.legend()
for layer in range(recipe.model.n_layers):
    right.plot(eval_steps, scores_over_time[:, layer].max(dim=-1).values, label=f"best head of layer {layer}")
right.set(xlabel="step", ylabel="induction score", title="Induction score", ylim=(0, 1))
right.legend()
plt.show()

# %% [markdown]
# **What you should see.** On the left, the loss on the first block never falls: no
# model can predict random tokens (it even rises a little above guessing, because the
# trained model expects repeats where there are none). The loss on the repeat stays
# on the plateau for a while, then collapses, and the training loss with it. On the
# right, the best layer-1 head's induction score shoots up at the same moment, to the
# score printed after training (the shipped model, trained with 512 tokens for 600
# steps, reaches 0.92 on held-out sequences like these), while layer 0's stays near 0: layer 1
# holds the induction heads, and they could only form once the previous-token heads of
# layer 0 they read from had formed. That dependence is why the change is sudden;
# chapter 02 takes it apart.
