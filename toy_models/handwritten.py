"""Transformers whose weights are written by hand, with circuits known by construction.

A circuit-discovery method (ACDC, edge attribution patching) needs a model whose true
circuit is known to be scored against. Trained models never come with one, so these are
built instead, in the spirit of tracr's compiled RASP programs: every weight is set by
hand, on the course's own `Transformer`, so every TransformerLens-style hook works on them.

The recipe is the same for each. The residual stream is cut into orthogonal subspaces,
one coordinate per value: "the current token is t", "the position is i", "the previous
token was t", "predict t". Each weight matrix reads from exactly the subspaces its
algorithm needs and writes to exactly one, so a component whose input lacks what it
reads is unaffected by that input: the edges outside the circuit carry nothing any
receiver reads, and patching them changes nothing at all. Attention logits are large
(`HARD`), so attention is hard to within float precision. There is no LayerNorm (it would
mix the subspaces), and positions are "shortformer": added to the queries and keys only,
never to the residual stream, so no edge carries them and the circuit is the same
whether it is probed by resampling, by means or by zeros (see toy_models/edge_patching.py).

Each model comes as a `HandwrittenCircuit`, so that a chapter can write
`for circuit in handwritten_circuits(): ...`.
"""

import copy
import dataclasses
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from toy_models.edge_patching import Edge, check_edges
from toy_models.model import Attention, Transformer, TransformerConfig

# An attention score this large (after the 1/sqrt(d_head) scaling) leaves less than
# n_ctx * exp(-HARD) ~ 1e-11 of attention on the keys that do not match.
HARD = 30.0
# The scale of the logits: large enough that the softmax is confident, so the loss is small too.
LOGIT_SCALE = 10.0


@dataclasses.dataclass(frozen=True)
class HandwrittenCircuit:
    """A hand-built model, the algorithm it runs, and its exact circuit.

    The model predicts the next token at `target_positions` (query positions: the answer
    at position i is `tokens[:, i + 1]`); `sample(generator, batch)` draws inputs on which
    it does so exactly; `edges` is its circuit, every edge of which is necessary and which
    together are sufficient.
    """

    name: str
    model: Transformer
    description: str
    edges: frozenset[Edge]
    sample: Callable[[torch.Generator, int], Int[Tensor, "batch pos"]]
    target_positions: tuple[int, ...]

    def accuracy(self, logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"]) -> float:
        """Top-1 accuracy of the next-token predictions at the target positions."""
        positions = torch.tensor(self.target_positions)
        predictions = logits[:, positions].argmax(dim=-1)
        return (predictions == tokens[:, positions + 1]).float().mean().item()


# ---------------------------------------------------------------------------
# Building blocks: subspaces of the residual stream, and a blank model
# ---------------------------------------------------------------------------


class Subspaces:
    """Names for consecutive blocks of residual-stream coordinates, laid out in order.

    `Subspaces(token=5, position=9)["position"]` is the slice of the 9 coordinates after
    the first 5; `.size` is the d_model they need.
    """

    def __init__(self, **sizes: int):
        self.slices: dict[str, slice] = {}
        start = 0
        for name, size in sizes.items():
            self.slices[name] = slice(start, start + size)
            start += size
        self.size = start

    def __getitem__(self, name: str) -> slice:
        return self.slices[name]


def blank_transformer(cfg: TransformerConfig) -> Transformer:
    """A model with every weight and bias zero, ready to be written into by hand."""
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    return model


def query_scale(attn: Attention) -> float:
    """The query weight that gives a match an attention score of HARD, undoing
    Attention's division by sqrt(d_head)."""
    return HARD * attn.W_Q.shape[-1] ** 0.5


def write_one_hot_embeddings(model: Transformer, space: Subspaces) -> None:
    """Token t writes coordinate t of "token"; position i (to queries and keys only) coordinate i of "position"."""
    model.embed.W_E[:, space["token"]] = torch.eye(model.cfg.d_vocab)
    model.pos_embed.W_pos[:, space["position"]] = torch.eye(model.cfg.n_ctx)


def write_previous_token_qk(attn: Attention, head: int, space: Subspaces) -> None:
    """QK of a previous-token head: query position i matches key position i - 1 only.
    (Position 0 has no previous position; its one key is itself.)"""
    n_ctx = space["position"].stop - space["position"].start
    attn.W_Q[head, space["position"], :n_ctx] = query_scale(attn) * torch.eye(n_ctx)
    attn.W_K[head, space["position"], 1:n_ctx] = torch.eye(n_ctx)[:, : n_ctx - 1]


def write_copying_ov(attn: Attention, head: int, reads: slice, writes: slice) -> None:
    """OV that copies a one-hot value: coordinate t of `reads` at the attended position
    becomes coordinate t of `writes` at the query's."""
    n = reads.stop - reads.start
    attn.W_V[head, reads, :n] = torch.eye(n)
    attn.W_O[head, :n, writes] = torch.eye(n)


# ---------------------------------------------------------------------------
# 1. The induction copier: a previous-token head, K-composed with an induction head
# ---------------------------------------------------------------------------


def induction_copier(block_len: int = 12, d_vocab: int = 16) -> HandwrittenCircuit:
    """Predict the repeat of a repeated block: "after A came B last time, so predict B".

    Rows are BOS (token 0), a block of `block_len` distinct random tokens, then the same
    block again. Layer 0's only head is a previous-token head: by position alone, each
    query attends to the position before it, and its OV circuit writes the token found
    there into a "previous token" subspace. Layer 1's only head is an induction head: its
    query reads the current token t, its key reads the previous-token subspace (K-composition
    with layer 0), so it attends to the position just after the earlier occurrence of t,
    and its OV circuit copies the token there into the subspace the unembedding reads.
    Tokens within a block are distinct so that every query of the second copy has exactly
    one earlier occurrence to follow. The targets are the second copy's positions whose
    next token is in the row.
    """
    n_ctx = 1 + 2 * block_len
    if not 1 <= block_len <= d_vocab - 1:
        raise ValueError(f"block_len={block_len} must lie in [1, d_vocab - 1 = {d_vocab - 1}]: its tokens are distinct.")
    space = Subspaces(token=d_vocab, position=n_ctx, previous_token=d_vocab, output=d_vocab)
    d_head = max(n_ctx, d_vocab)
    cfg = TransformerConfig(
        n_layers=2, d_model=space.size, n_heads=1, d_head=d_head, d_vocab=d_vocab, n_ctx=n_ctx,
        d_mlp=None, normalization_type=None, positional_embedding_type="shortformer",
    )
    model = blank_transformer(cfg)
    with torch.no_grad():
        write_one_hot_embeddings(model, space)

        previous_token = model.blocks[0].attn
        write_previous_token_qk(previous_token, 0, space)
        write_copying_ov(previous_token, 0, reads=space["token"], writes=space["previous_token"])

        induction = model.blocks[1].attn
        # QK: the current token t matches the keys whose previous token was t.
        induction.W_Q[0, space["token"], :d_vocab] = query_scale(induction) * torch.eye(d_vocab)
        induction.W_K[0, space["previous_token"], :d_vocab] = torch.eye(d_vocab)
        # OV: copy the attended token to the output subspace, which alone the unembedding reads.
        write_copying_ov(induction, 0, reads=space["token"], writes=space["output"])

        model.unembed.W_U[space["output"], :] = LOGIT_SCALE * torch.eye(d_vocab)

    def sample(generator: torch.Generator, batch: int) -> Int[Tensor, "batch pos"]:
        # Distinct tokens: the first block_len of a random permutation of the non-BOS tokens.
        blocks = torch.rand(batch, d_vocab - 1, generator=generator).argsort(dim=-1)[:, :block_len] + 1
        bos = torch.zeros(batch, 1, dtype=torch.long)
        return torch.cat([bos, blocks, blocks], dim=1)

    edges = {
        ("embed", "A0.0.v"),  # the token that layer 0 moves one position on
        ("embed", "A1.0.q"),  # the current token, to look up
        ("A0.0", "A1.0.k"),  # the previous token, to match it against: K-composition
        ("embed", "A1.0.v"),  # the token after the match, to copy
        ("A1.0", "logits"),  # the copy, predicted
    }
    return HandwrittenCircuit(
        name="induction-copier",
        model=model,
        description=_docstring(induction_copier),
        edges=check_edges(cfg, edges),
        sample=sample,
        # The second copy starts at 1 + block_len; its last position has no next token in the row.
        target_positions=tuple(range(1 + block_len, 2 * block_len)),
    )


# ---------------------------------------------------------------------------
# 2. Fibonacci mod p: a previous-token head feeding an MLP lookup table
# ---------------------------------------------------------------------------


def fibonacci_mod(p: int = 7, n_ctx: int = 16) -> HandwrittenCircuit:
    """Continue a Fibonacci sequence modulo p: the next token is (previous + current) mod p.

    Rows are BOS (token p), then two random tokens in [0, p), then each token the sum mod p
    of the two before it. Layer 0's first head is a previous-token head (by position; its
    OV writes "the previous token was a"). The MLP of layer 0 is a lookup table with one
    ReLU neuron per pair (a, b): it reads the current token b straight from the embedding
    and the previous token a from the head, fires only when both are present, and writes
    "predict (a + b) mod p" for the unembedding. Layer 0's second head is a distractor: it
    attends to BOS and writes "the first token was BOS" into a subspace nothing reads, so a
    circuit-discovery method must leave out a head that is busy but irrelevant. The
    targets are every position from the second random token on whose next token is in the row.
    """
    if p < 2 or n_ctx < 4:
        raise ValueError(f"Need p >= 2 and n_ctx >= 4 (BOS, two seeds and one sum), got p={p}, n_ctx={n_ctx}.")
    d_vocab, bos = p + 1, p
    space = Subspaces(token=d_vocab, position=n_ctx, previous_token=d_vocab, first_token=d_vocab, output=p)
    d_head = max(n_ctx, d_vocab)
    cfg = TransformerConfig(
        n_layers=1, d_model=space.size, n_heads=2, d_head=d_head, d_vocab=d_vocab, n_ctx=n_ctx,
        d_mlp=p * p, act_fn="relu", normalization_type=None, positional_embedding_type="shortformer",
    )
    model = blank_transformer(cfg)
    with torch.no_grad():
        write_one_hot_embeddings(model, space)

        attn = model.blocks[0].attn
        write_previous_token_qk(attn, 0, space)
        write_copying_ov(attn, 0, reads=space["token"], writes=space["previous_token"])
        # Head 1, the distractor: every query matches position 0 (a constant query, a key on position 0).
        attn.b_Q[1, 0] = query_scale(attn)
        attn.W_K[1, space["position"].start, 0] = 1.0
        write_copying_ov(attn, 1, reads=space["token"], writes=space["first_token"])

        mlp = model.blocks[0].mlp
        for a in range(p):
            for b in range(p):
                neuron = a * p + b
                # Pre-activation 0.5 when both are present, at most -0.5 otherwise: ReLU keeps only the pair.
                mlp.W_in[space["previous_token"].start + a, neuron] = 1.0
                mlp.W_in[space["token"].start + b, neuron] = 1.0
                mlp.b_in[neuron] = -1.5
                mlp.W_out[neuron, space["output"].start + (a + b) % p] = 2.0

        model.unembed.W_U[space["output"], :p] = LOGIT_SCALE * torch.eye(p)

    def sample(generator: torch.Generator, batch: int) -> Int[Tensor, "batch pos"]:
        tokens = torch.full((batch, n_ctx), bos, dtype=torch.long)
        tokens[:, 1:3] = torch.randint(0, p, (batch, 2), generator=generator)
        for position in range(3, n_ctx):
            tokens[:, position] = (tokens[:, position - 2] + tokens[:, position - 1]) % p
        return tokens

    edges = {
        ("embed", "A0.0.v"),  # the token that head 0 moves one position on
        ("A0.0", "M0"),  # the previous token a
        ("embed", "M0"),  # the current token b
        ("M0", "logits"),  # the looked-up sum, predicted
    }
    return HandwrittenCircuit(
        name="fibonacci-mod",
        model=model,
        description=_docstring(fibonacci_mod),
        edges=check_edges(cfg, edges),
        sample=sample,
        target_positions=tuple(range(2, n_ctx - 1)),
    )


# ---------------------------------------------------------------------------
# 3. Period three: two previous-token heads in series (V-composition)
# ---------------------------------------------------------------------------


def period_three(d_vocab: int = 9, n_ctx: int = 19) -> HandwrittenCircuit:
    """Continue a pattern of period three, "a b c a b c ...": the next token is the one two back.

    Rows are BOS (token 0), then three random tokens (repeats allowed) tiled out to the end.
    Both heads are previous-token heads, by position. Layer 0's writes "the previous token
    was t" into a subspace; layer 1's value reads that subspace instead of the token itself
    (V-composition), so at position i it fetches, from position i - 1, the token at i - 2,
    and writes it for the unembedding. The two heads attend alike; only the path through
    the values, embed -> A0.0 -> A1.0 -> logits, makes the prediction. The targets are every
    position from the third random token on whose next token is in the row.
    """
    if d_vocab < 2 or n_ctx < 5:
        raise ValueError(f"Need d_vocab >= 2 and n_ctx >= 5 (BOS, a period, one repeat), got {d_vocab}, {n_ctx}.")
    space = Subspaces(token=d_vocab, position=n_ctx, previous_token=d_vocab, output=d_vocab)
    cfg = TransformerConfig(
        n_layers=2, d_model=space.size, n_heads=1, d_head=max(n_ctx, d_vocab), d_vocab=d_vocab, n_ctx=n_ctx,
        d_mlp=None, normalization_type=None, positional_embedding_type="shortformer",
    )
    model = blank_transformer(cfg)
    with torch.no_grad():
        write_one_hot_embeddings(model, space)
        first, second = model.blocks[0].attn, model.blocks[1].attn
        write_previous_token_qk(first, 0, space)
        write_copying_ov(first, 0, reads=space["token"], writes=space["previous_token"])
        write_previous_token_qk(second, 0, space)
        write_copying_ov(second, 0, reads=space["previous_token"], writes=space["output"])
        model.unembed.W_U[space["output"], :] = LOGIT_SCALE * torch.eye(d_vocab)

    def sample(generator: torch.Generator, batch: int) -> Int[Tensor, "batch pos"]:
        period = torch.randint(1, d_vocab, (batch, 3), generator=generator)  # never BOS
        bos = torch.zeros(batch, 1, dtype=torch.long)
        return torch.cat([bos, period.repeat(1, n_ctx // 3 + 1)[:, : n_ctx - 1]], dim=1)

    edges = {
        ("embed", "A0.0.v"),  # the token that layer 0 moves one position on
        ("A0.0", "A1.0.v"),  # the previous token, moved one position further: V-composition
        ("A1.0", "logits"),  # the token two back, predicted
    }
    return HandwrittenCircuit(
        name="period-three",
        model=model,
        description=_docstring(period_three),
        edges=check_edges(cfg, edges),
        sample=sample,
        # Position 3 holds the third random token, the first whose token two back (at 1) is not BOS.
        target_positions=tuple(range(3, n_ctx - 1)),
    )


def handwritten_circuits() -> list[HandwrittenCircuit]:
    """Every hand-built model with its circuit, freshly built (each model is small)."""
    return [induction_copier(), fibonacci_mod(), period_three()]


# ---------------------------------------------------------------------------
# Distractors: the same circuits, with every other edge carrying a little
# ---------------------------------------------------------------------------

#: Noise this size leaves every model's accuracy at 1.00 while every edge outside the
#: circuit moves the answer's log-probability a little (chapter 06 measures how much).
DISTRACTOR_SCALE = 0.05


def with_distractors(circuit: HandwrittenCircuit, scale: float = DISTRACTOR_SCALE, seed: int = 0) -> HandwrittenCircuit:
    """The circuit's model with Gaussian noise of standard deviation `scale` added to every
    weight matrix. On the exact models every edge outside the circuit scores exactly 0, so
    all of them tie and a method's ranking of them is never tested; here each carries a
    small effect, as in a trained model, while the circuit's edges still carry the
    algorithm (a test checks both). Named "<name>+noise"."""
    noisy = copy.deepcopy(circuit.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in noisy.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                param.add_(scale * torch.randn(param.shape, generator=generator))
    description = (f"{circuit.description} Every weight matrix then has noise of standard deviation {scale} "
                   "added, so that every other edge carries a little.")
    return dataclasses.replace(circuit, name=f"{circuit.name}+noise", model=noisy, description=description)


def _docstring(function: Callable) -> str:
    """The function's docstring as one paragraph of plain text."""
    return " ".join(function.__doc__.split())
