"""Training the shipped models, one recipe each, reproducibly on a laptop CPU.

`train("induction-2l")` (or `mi-course train induction-2l`) rebuilds a checkpoint from its
recipe: same seed, same data, same metrics. Each recipe says what the model is, what it
reads, and the one number that shows it learned what the course needs it to know.
"""

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from jaxtyping import Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from toy_models import data, sae, superposition, transcoder
from toy_models.checkpoints import SHIPPED_DIR, save_checkpoint
from toy_models.metrics import induction_scores, logit_diff
from toy_models.model import Transformer, TransformerConfig, next_token_loss
from toy_models.pretrained import load_pretrained
from toy_models.threads import one_thread

BatchSampler = Callable[[torch.Generator], Int[Tensor, "batch pos"]]


@dataclass(frozen=True)
class Recipe:
    model: TransformerConfig
    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    weight_decay: float = 0.01
    warmup_steps: int = 0
    # Cosine decay to this fraction of lr; 1.0 keeps the rate constant.
    final_lr_fraction: float = 1.0
    description: str = ""


# ---------------------------------------------------------------------------------------
# induction-2l: two attention-only layers on random tokens that repeat with a period drawn
# per sequence. Nothing but induction can predict the repeats: one fixed period would let
# a head copy "the token 23 back" by position alone. A large vocabulary keeps chance
# matches rare, so an induction head can put nearly all its attention on the true one.
INDUCTION_SEQ_LEN = 24  # the evaluation block: 24 random tokens, then the same 24 again
INDUCTION_BOS = 0

INDUCTION_2L = Recipe(
    model=TransformerConfig(
        n_layers=2, d_model=64, n_heads=2, d_vocab=512, n_ctx=2 * INDUCTION_SEQ_LEN + 1,
        d_mlp=None, normalization_type="LN",
    ),
    steps=600,
    batch_size=64,
    lr=1e-3,
    description="2-layer attention-only model on random tokens repeating with periods 4 to 24.",
)


# The live run of chapters 00 and 02, which a learner waits for: the same architecture and
# kind of data, with a vocabulary of 128 instead of 512, batches of 48 instead of 64, twice the
# learning rate and 250 steps instead of 600, about a quarter of the shipped recipe's time
# (bench/train_induction.py prints both). The plateau is shorter, the phase change comes
# around step 150 and the best layer-1 induction score ends a little lower than the
# shipped model's, but the plateau, the sudden drop and the induction heads forming are
# all there, from other initial weights too (tests/test_figure_claims.py), since chapter
# 00 trains a learner's model, whose parameters are drawn in the learner's own order.
# At 3e-3 the transition does not come within 250 steps; with 512 tokens and batches of
# 48 it comes too late.
INDUCTION_LIVE = dataclasses.replace(
    INDUCTION_2L, steps=250, batch_size=48, lr=2e-3,
    model=dataclasses.replace(INDUCTION_2L.model, d_vocab=128),
    description="induction-2l's recipe, shortened for watching the phase change live.",
)


def induction_training_batch(generator: torch.Generator, batch_size: int, d_vocab: int) -> Int[Tensor, "batch pos"]:
    return data.periodic_random_tokens(
        batch_size, 2 * INDUCTION_SEQ_LEN, d_vocab, min_period=4, max_period=INDUCTION_SEQ_LEN,
        bos_token=INDUCTION_BOS, generator=generator,
    )


def induction_batch(generator: torch.Generator, batch_size: int, d_vocab: int) -> Int[Tensor, "batch pos"]:
    """The standard test: a start token, then a random block repeated once."""
    return data.repeated_random_tokens(
        batch_size, INDUCTION_SEQ_LEN, d_vocab, n_repeats=2, bos_token=INDUCTION_BOS, generator=generator
    )


@torch.no_grad()
def evaluate_induction(model: Transformer) -> dict[str, float]:
    """Scores on fresh sequences, from a seed the training never drew from."""
    tokens = induction_batch(torch.Generator().manual_seed(12345), 128, model.cfg.d_vocab)
    scores = induction_scores(model, tokens, INDUCTION_SEQ_LEN)
    per_token_loss = next_token_loss(model(tokens), tokens, per_token=True)
    repeated_half = per_token_loss[:, INDUCTION_SEQ_LEN:]  # predictions of the second block
    return {
        "max_layer1_induction_score": scores[1].max().item(),
        "repeated_half_loss": repeated_half.mean().item(),
    }


# ---------------------------------------------------------------------------------------
# code-2l: a small model with MLPs, reading Python source byte by byte. The subject of
# probes, lenses and sparse autoencoders, so it must have learned real structure.
CODE_2L = Recipe(
    model=TransformerConfig(
        n_layers=2, d_model=128, n_heads=4, d_vocab=256, n_ctx=128, d_mlp=512, act_fn="gelu",
    ),
    steps=3000,
    batch_size=32,
    lr=3e-3,
    warmup_steps=100,
    final_lr_fraction=0.1,
    description="2-layer model with MLPs on bytes of the Python standard library's source.",
)


def code_batch_sampler(n_ctx: int, batch_size: int) -> BatchSampler:
    corpus = data.load_python_corpus("train")
    return lambda generator: data.random_windows(corpus, batch_size, n_ctx, generator=generator)


@torch.no_grad()
def evaluate_code(model: Transformer) -> dict[str, float]:
    validation = data.load_python_corpus("validation")
    windows = data.random_windows(validation, 256, model.cfg.n_ctx, generator=torch.Generator().manual_seed(0))
    losses = [model(chunk, return_type="loss").item() for chunk in windows.split(32)]
    unigram = data.unigram_cross_entropy(data.load_python_corpus("train"), validation)
    return {"validation_loss": sum(losses) / len(losses), "unigram_validation_loss": unigram}


# ---------------------------------------------------------------------------------------
# ioi-3l: three layers on templated indirect-object sentences. Judged on templates it never
# saw, so that it must have learned the task and not the sentences.
IOI_MAX_SHIFT = 8

IOI_3L = Recipe(
    model=TransformerConfig(
        n_layers=3, d_model=64, n_heads=4, d_vocab=data.ioi_tokenizer().d_vocab,
        n_ctx=data.make_ioi_prompts(1).with_answers().shape[1] + IOI_MAX_SHIFT, d_mlp=256,
    ),
    steps=2000,
    batch_size=64,
    lr=1e-3,
    description="3-layer model on indirect-object templates (ABBA and BABA), each shifted "
    "right by a random run of start tokens.",
)


def shift_right_randomly(
    tokens: Int[Tensor, "batch pos"], max_shift: int, pad_token: int, generator: torch.Generator
) -> Int[Tensor, "batch pos_plus_shift"]:
    """Move each sequence right by 0..max_shift places, padding with `pad_token`.

    With a dozen templates, a model can learn "the subject is the 9th word after 'When'"
    instead of the task. Moving every sentence by a random amount breaks such positional
    shortcuts: it must find the names by comparing them. Unshifted prompts stay in the
    training distribution, so the evaluation prompts need no shift.
    """
    batch, length = tokens.shape
    shifts = torch.randint(0, max_shift + 1, (batch, 1), generator=generator)
    positions = torch.arange(length + max_shift)[None, :]
    source = positions - shifts
    inside = (source >= 0) & (source < length)
    shifted = tokens.gather(1, source.clamp(0, length - 1))
    return torch.where(inside, shifted, torch.full_like(shifted, pad_token))


def ioi_batch(generator: torch.Generator, batch_size: int) -> Int[Tensor, "batch pos"]:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    sentences = data.make_ioi_prompts(batch_size, split="train", seed=seed).with_answers()
    bos = data.ioi_tokenizer().bos_token_id
    return shift_right_randomly(sentences, IOI_MAX_SHIFT, bos, generator)


@torch.no_grad()
def evaluate_ioi(model: Transformer) -> dict[str, float]:
    prompts = data.make_ioi_prompts(500, split="test", seed=2024)
    final_logits = model(prompts.tokens)[:, -1]
    diffs = logit_diff(final_logits, prompts.io_tokens, prompts.s_tokens)
    return {
        "heldout_io_over_s_accuracy": (diffs > 0).float().mean().item(),
        "heldout_mean_logit_diff": diffs.mean().item(),
    }


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformerJob:
    recipe: Recipe
    batches: Callable[[Recipe], BatchSampler]
    evaluate: Callable[[Transformer], dict[str, float]]


TRANSFORMER_JOBS: Mapping[str, TransformerJob] = MappingProxyType({
    "induction-2l": TransformerJob(
        INDUCTION_2L,
        lambda r: lambda g: induction_training_batch(g, r.batch_size, r.model.d_vocab),
        evaluate_induction,
    ),
    "code-2l": TransformerJob(CODE_2L, lambda r: code_batch_sampler(r.model.n_ctx, r.batch_size), evaluate_code),
    "ioi-3l": TransformerJob(IOI_3L, lambda r: lambda g: ioi_batch(g, r.batch_size), evaluate_ioi),
    # Chapter 05 (do circuits transfer?): the same recipes, other seeds only.
    **{f"induction-2l-seed{seed}": TransformerJob(
        dataclasses.replace(INDUCTION_2L, seed=seed),
        lambda r: lambda g: induction_training_batch(g, r.batch_size, r.model.d_vocab),
        evaluate_induction,
    ) for seed in (1, 2, 3, 4)},
    "ioi-3l-seed1": TransformerJob(
        dataclasses.replace(IOI_3L, seed=1), lambda r: lambda g: ioi_batch(g, r.batch_size), evaluate_ioi,
    ),
})


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up (Adam's early steps are noisy), then cosine decay."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return recipe.lr * (recipe.final_lr_fraction + (1 - recipe.final_lr_fraction) * cosine)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training cannot recover, so it stops."""


DIVERGED_ADVICE = (
    "A loss that is NaN or inf almost always comes from the model's forward pass, not from "
    "training: a causal mask that fills a whole row of scores with -inf (check "
    "`apply_causal_mask`: it must keep the diagonal), a softmax written by hand whose exp "
    "overflows (use `softmax`), or a LayerNorm that can divide by zero (eps belongs inside "
    "the square root). Run those pieces' checks first; if they pass, lower the learning rate."
)


def train_transformer(
    recipe: Recipe,
    sample_batch: BatchSampler,
    *,
    progress: bool = True,
    on_step: Callable[[int, nn.Module, float], None] | None = None,
    steps: int | None = None,
    build: Callable[[TransformerConfig], nn.Module] = Transformer,
) -> tuple[nn.Module, list[float]]:
    """Train a fresh model from the recipe; return it (in eval mode) and its loss per step.

    `on_step(step, model, loss)` lets a notebook record anything along the way (for
    example induction scores, to watch the phase change); `steps` cuts training short;
    `build` makes the model from the recipe's config (chapter 00 trains the learner's own
    `DemoTransformer`). Training runs on one thread (see `toy_models.threads`) and stops
    with `TrainingDiverged` at the first step whose loss is NaN or infinite.
    """
    torch.manual_seed(recipe.seed)  # the initial weights
    generator = torch.Generator().manual_seed(recipe.seed + 1)  # the data stream
    model = build(recipe.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    losses = []
    n_steps = recipe.steps if steps is None else steps
    with one_thread():
        for step in tqdm(range(n_steps), desc="training", disable=not progress):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, step)
            tokens = sample_batch(generator)
            loss = next_token_loss(model(tokens), tokens)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"Training stopped at step {step}: the loss is {loss.item()}. {DIVERGED_ADVICE}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, model, losses[-1])
    return model.eval(), losses


def train(name: str, out_dir: Path | None = None, *, progress: bool = True) -> dict[str, float]:
    """Rebuild the named checkpoint from its recipe into `out_dir` (default: the shipped
    folder) and return its headline metrics."""
    directory = Path(out_dir) if out_dir is not None else SHIPPED_DIR / name
    if name in superposition.SUPERPOSITION_RECIPES:
        return superposition.train_and_save(name, directory, progress=progress)
    if name in sae.SAE_RECIPES:  # trained on a shipped transformer's activations
        model = load_pretrained(sae.SAE_RECIPES[name].sae.model_name)
        return sae.train_and_save(name, directory, model, progress=progress)
    if name in transcoder.TRANSCODER_RECIPES:  # also on a shipped transformer's activations
        model = load_pretrained(transcoder.TRANSCODER_RECIPES[name].transcoder.model_name)
        return transcoder.train_and_save(name, directory, model, progress=progress)
    if name not in TRANSFORMER_JOBS:
        known = sorted([
            *TRANSFORMER_JOBS, *superposition.SUPERPOSITION_RECIPES, *sae.SAE_RECIPES, *transcoder.TRANSCODER_RECIPES,
        ])
        raise ValueError(f"No recipe named {name!r}. Recipes: {', '.join(known)}.")
    job = TRANSFORMER_JOBS[name]
    start = time.perf_counter()
    model, losses = train_transformer(job.recipe, job.batches(job.recipe), progress=progress)
    seconds = time.perf_counter() - start
    metrics = job.evaluate(model)
    recipe_record = {key: value for key, value in asdict(job.recipe).items() if key != "model"}
    recipe_record["train_seconds"] = round(seconds, 1)
    save_checkpoint(
        directory, model, job.recipe.model, kind="transformer",
        recipe=recipe_record, metrics=metrics, loss_curve=losses,
    )
    return metrics
