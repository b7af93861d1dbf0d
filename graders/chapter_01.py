"""Graders for chapter 01, the three buckets: behaviour, representation, mechanism.

The references are `solutions.three_buckets`. Each grader runs the learner's function on
seeded random inputs and on edge cases, compares with the reference, and where they differ
works out what each common mistake would have given and names the one that matches.

Every grader takes `seed`; the notebook's hidden tests use another.
"""

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from graders.core import Chapter, GraderFailure, as_tensor, compare_tensors, looks_like
from solutions import three_buckets as reference
from toy_models.model import Transformer, TransformerConfig, next_token_loss

CHAPTER = Chapter("01_three_buckets")
CLOSE_PAREN = ord(")")
VARIANTS = ({}, {"seed": 1})

BRACKETS = [ord(c) for c in "()[]{}"]
LETTERS = [ord(c) for c in "ab \"'"]


def random_code_tokens(generator: torch.Generator, batch: int, pos: int) -> Tensor:
    """Byte sequences that are half brackets, so that depths go up and down."""
    alphabet = torch.tensor(BRACKETS + LETTERS)
    return alphabet[torch.randint(0, len(alphabet), (batch, pos), generator=generator)]


def encode(*texts: str) -> Tensor:
    return torch.tensor([list(text.encode()) for text in texts])


def as_float(value, what: str) -> float:
    """A number the learner returned, of any Python, numpy or torch type (`as_tensor`), as a float."""
    value = as_tensor(value)
    if isinstance(value, Tensor) and value.ndim == 0:
        return float(value)
    raise GraderFailure(f"{what}: expected a number (a float or a one-element tensor), got {type(value).__name__}."
                        + (" Did you forget to `return` it?" if value is None else ""))


# --------------------------------------------------------------------------- labels

def depth_with(tokens: Tensor, *, clamp: bool = True, before: bool = False, kinds: str = "([{") -> Tensor:
    """The depth as a learner who made one mistake computes it."""
    openers = torch.tensor([ord(c) for c in kinds])
    closers = torch.tensor([ord({"(": ")", "[": "]", "{": "}"}[c]) for c in kinds])
    step = torch.isin(tokens, openers).long() - torch.isin(tokens, closers).long()
    depth = torch.zeros_like(step)
    current = torch.zeros(tokens.shape[0], dtype=torch.long)
    for pos in range(tokens.shape[1]):
        current = current + step[:, pos]
        current = current.clamp(min=0) if clamp else current
        depth[:, pos] = current
    if before:
        depth = torch.cat([torch.zeros_like(depth[:, :1]), depth[:, :-1]], dim=-1)
    return depth


@CHAPTER.exercise(
    "bracket_depth", points=2, reference=reference.bracket_depth, variants=VARIANTS,
    hint="Walk along the positions keeping one running depth per sequence: +1 for ( [ {, -1 for ) ] }, "
         "clamp at 0 (.clamp(min=0)), and store the depth *after* the byte at that position.",
)
def grade_bracket_depth(bracket_depth: Callable[[Tensor], Tensor], *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    cases = [
        ("a random batch of shape (batch=3, pos=20)", random_code_tokens(generator, 3, 20)),
        ("f(a[b{c}]) nested brackets of all three kinds", encode("f(a[b{c}])")),
        ("')) x((' a window that starts inside brackets", encode(")) x((")),
        ("one sequence of one byte '('", encode("(")),
        ("two sequences counted separately", encode("((((", "))a(")),
    ]
    for description, tokens in cases:
        expected = reference.bracket_depth(tokens)
        actual = bracket_depth(tokens.clone())
        if isinstance(actual, Tensor):
            actual = actual.float()
        compare_tensors(actual, expected.float(), what=f"bracket_depth for {description}", mistakes=[
            (looks_like(lambda: depth_with(tokens, before=True).float()),
             "off by one: the depth at a position should count the byte at that position (the depth after it)."),
            (looks_like(lambda: depth_with(tokens, clamp=False).float()),
             "your depth goes negative: a window can start inside brackets, so clamp the running depth at 0 after each byte."),
            (looks_like(lambda: depth_with(tokens, clamp=False).clamp(min=0).float()),
             "you clamped the depth at 0 once, at the end; clamp the running depth after each byte, so that closers "
             "met before any opener are forgotten: after ')) x((' the depth is 2, not max(0, -2 + 2) = 0."),
            (looks_like(lambda: depth_with(tokens, kinds="(").float()),
             "you counted only parentheses; [ ] and { } count too."),
            (looks_like(lambda: depth_with(tokens.flatten()[None], clamp=True).reshape(tokens.shape).float()),
             "your running depth carries over from one sequence to the next: each sequence starts at depth 0."),
        ])


# --------------------------------------------------------------------------- behaviour

def random_logits(generator: torch.Generator, tokens: Tensor) -> Tensor:
    logits = torch.randn(*tokens.shape, 256, generator=generator)
    # Predict ")" at about half the positions, so that the accuracy is far from 0 and 1.
    favour = torch.rand(tokens.shape, generator=generator) < 0.5
    logits[..., CLOSE_PAREN] += 10 * favour
    return logits


@CHAPTER.exercise(
    "closing_paren_accuracy", points=2, reference=reference.closing_paren_accuracy, variants=VARIANTS,
    hint="Line the predictions up with what they predict: logits[:, :-1] with tokens[:, 1:]. Keep the positions "
         "where the next token is ord(')'), and average (prediction == ord(')')) there, as floats.",
)
def grade_closing_paren_accuracy(closing_paren_accuracy: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for description, batch, pos in [("a random batch (batch=4, pos=30)", 4, 30), ("a batch of 2 sequences of 6 bytes", 2, 6)]:
        tokens = random_code_tokens(generator, batch, pos)
        tokens[:, 1] = CLOSE_PAREN  # at least one ")" to predict
        logits = random_logits(generator, tokens)
        expected = float(reference.closing_paren_accuracy(logits, tokens))
        actual = as_float(closing_paren_accuracy(logits.clone(), tokens.clone()), f"closing_paren_accuracy for {description}")
        if abs(actual - expected) <= 1e-5:
            continue
        predictions = logits.argmax(-1)
        unshifted = float((predictions[tokens == CLOSE_PAREN] == CLOSE_PAREN).float().mean())
        everywhere = float((predictions[:, :-1] == tokens[:, 1:]).float().mean())
        predicted = predictions[:, :-1] == CLOSE_PAREN
        precision = float((tokens[:, 1:][predicted] == CLOSE_PAREN).float().mean())
        message = f"closing_paren_accuracy for {description}: expected {expected:.4f}, got {actual:.4f}."
        for value, mistake in [
            (unshifted, "you compared the prediction at p with the token at p; the logits at p predict the token at p + 1 "
                        "(logits[:, :-1] with tokens[:, 1:])."),
            (everywhere, "you averaged over every position; keep only those where the next token is ')'."),
            (precision, "you averaged over the positions where the model predicts ')'; the eval is over the positions "
                        "where the next token *is* ')'."),
        ]:
            if abs(actual - value) <= 1e-5:
                message += f"\nLikely mistake: {mistake}"
                break
        raise GraderFailure(message)


# --------------------------------------------------------------------------- probes

def planted_data(generator: torch.Generator, n: int, d: int) -> tuple[Tensor, Tensor, Tensor]:
    """Activations whose label is the sign of their component along a planted direction,
    with an offset, so that a probe needs its bias."""
    planted = torch.randn(d, generator=generator)
    planted /= planted.norm()
    acts = torch.randn(n, d, generator=generator) + 0.5
    labels = acts @ planted > 0.5 * planted.sum()
    return acts, labels, planted


@CHAPTER.exercise(
    "fit_probe", points=2, reference=reference.fit_probe, variants=({}, {"seed": 1, "steps": 40, "lr": 0.3}),
    hint="direction = torch.zeros(d, requires_grad=True), bias likewise; each step: loss = "
         "F.binary_cross_entropy_with_logits(acts @ direction + bias, labels.float()), backward, SGD step "
         "(torch.optim.SGD with lr), `steps` times. Return the detached (direction, bias).",
)
def grade_fit_probe(fit_probe: Callable, *, seed: int = 0, steps: int = 200, lr: float = 1.0) -> None:
    generator = torch.Generator().manual_seed(seed)
    acts, labels, planted = planted_data(generator, 400, 16)
    result = fit_probe(acts.clone(), labels.clone(), steps=steps, lr=lr)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise GraderFailure(f"fit_probe should return a tuple (direction, bias), got {type(result).__name__}.")
    direction, bias = result[0], as_tensor(result[1])  # a Python, numpy or torch number
    expected_direction, expected_bias = reference.fit_probe(acts, labels, steps=steps, lr=lr)
    if isinstance(direction, Tensor) and not direction.detach().any():
        raise GraderFailure("fit_probe returned a direction of zeros: did the weights ever get a gradient step? "
                            "Call loss.backward() and optimizer.step() inside the loop, and return the trained tensors.")
    if isinstance(bias, Tensor) and bias.numel() == 1 and float(bias) == 0.0:
        raise GraderFailure(f"fit_probe returned a bias of 0 (expected {float(expected_bias):.4f}): train the bias "
                            "with the direction (give both to the optimizer); the labels are not centred on 0.")

    def fitted(acts: Tensor = acts, labels: Tensor = labels, steps: int = steps, lr: float = lr) -> Callable[[], Tensor]:
        return lambda: reference.fit_probe(acts, labels, steps=steps, lr=lr)[0]

    centred = acts - acts.mean(0)
    compare_tensors(direction, expected_direction, what=f"fit_probe's direction (steps={steps}, lr={lr}, on 400 examples "
                    "whose label is set by one direction)", mistakes=[
        (looks_like(fitted(labels=~labels)),
         "your direction points the wrong way: the probe should say True where acts @ direction + bias > 0."),
        # (With the defaults these give the expected answer, which a wrong one cannot match.)
        (looks_like(fitted(steps=200, lr=1.0)),
         f"your fit_probe ignores `steps` and `lr`: it trained as with the defaults (200 steps at lr=1.0) when "
         f"called with steps={steps}, lr={lr}. Use the arguments."),
        (looks_like(fitted(steps=200)),
         f"your fit_probe ignores `steps`: it took 200 steps when called with steps={steps}."),
        (looks_like(fitted(lr=1.0)),
         f"your fit_probe ignores `lr`: it trained at lr=1.0 when called with lr={lr}."),
        (looks_like(fitted(acts=centred)), "you centred the activations; fit the probe on acts as given."),
        (lambda actual: any(looks_like(fitted(acts=centred / centred.std(0, correction=c)))(actual) for c in (0, 1)),
         "you standardised the activations inside the probe ((acts - mean) / std): the direction you return then "
         "applies to standardised activations, not to acts. Fit the probe on acts as given, so that "
         "acts @ direction + bias is its prediction."),
        (lambda actual: torch.nn.functional.cosine_similarity(actual.float(), planted, dim=0) > 0.9,
         "your probe finds the right direction but not the same weights. This exercise's probe is exactly: zero "
         "initial weights, full-batch gradient descent without momentum (torch.optim.SGD), the *mean* binary "
         "cross-entropy, `steps` steps at learning rate `lr`, on acts as given: which of these does yours change?"),
    ])
    if not (isinstance(bias, Tensor) and bias.numel() == 1):
        raise GraderFailure(f"fit_probe's bias should be a number or a one-element tensor, got {type(bias).__name__}.")
    compare_tensors(bias.detach().reshape(()).float(), expected_bias, what="fit_probe's bias")


@CHAPTER.exercise(
    "held_out_probe_accuracy", points=2, reference=reference.held_out_probe_accuracy,
    variants=({}, {"seed": 1, "train_fraction": 0.5, "steps": 10}),
    uses=("fit_probe",),
    hint="n_train = int(train_fraction * len(acts)); fit_probe on acts[:n_train], then the accuracy of "
         "(acts[n_train:] @ direction + bias > 0) against labels[n_train:].",
)
def grade_held_out_probe_accuracy(held_out_probe_accuracy: Callable, *, seed: int = 0, train_fraction: float = 0.7,
                                  steps: int = 200) -> None:
    generator = torch.Generator().manual_seed(seed)
    # Labels that are pure noise, in more dimensions than training examples: a probe can fit
    # its training set perfectly, and must score about chance on examples it did not see.
    noise_acts = torch.randn(80, 64, generator=generator)
    noise_labels = torch.rand(80, generator=generator) < 0.5
    acts, labels, _ = planted_data(generator, 300, 8)
    for description, x, y in [("labels that are random noise (80 examples, 64 dimensions)", noise_acts, noise_labels),
                              ("labels set by one direction (300 examples, 8 dimensions)", acts, labels)]:
        expected = float(reference.held_out_probe_accuracy(x, y, train_fraction, steps))
        actual = as_float(held_out_probe_accuracy(x.clone(), y.clone(), train_fraction=train_fraction, steps=steps),
                          f"held_out_probe_accuracy on {description}, train_fraction={train_fraction}, steps={steps}")
        if abs(actual - expected) <= 0.02:
            continue
        n_train = int(train_fraction * len(x))
        direction, bias = reference.fit_probe(x[:n_train], y[:n_train], steps=steps)
        on_train = float(((x[:n_train] @ direction + bias > 0) == y[:n_train]).float().mean())
        on_all = float(((x @ direction + bias > 0) == y).float().mean())
        d_all, b_all = reference.fit_probe(x, y, steps=steps)
        fit_all = float(((x[n_train:] @ d_all + b_all > 0) == y[n_train:]).float().mean())
        message = (f"held_out_probe_accuracy on {description}, train_fraction={train_fraction}, steps={steps}: "
                   f"expected about {expected:.3f}, got {actual:.3f}.")
        for value, mistake in [
            # (With the default arguments these two give the expected answer, which a wrong one cannot match.)
            (float(reference.held_out_probe_accuracy(x, y, 0.7, steps)),
             f"you ignored `train_fraction`: you split at 0.7 when called with train_fraction={train_fraction}."),
            (float(reference.held_out_probe_accuracy(x, y, train_fraction, 200)),
             f"you did not pass `steps` on to fit_probe: it trained for 200 steps when called with steps={steps}."),
            (on_train, "you measured the accuracy on the examples the probe was trained on. With more dimensions than "
                       "examples a probe memorises any labels, even noise: only held-out accuracy means anything."),
            (on_all, "you measured the accuracy on all the examples, training ones included; use only acts[n_train:]."),
            (fit_all, "you trained the probe on all the examples, test ones included; train on acts[:n_train] only."),
        ]:
            if abs(actual - value) <= 1e-4:  # with noise labels, two mistakes can give the same number: name each
                message += f"\nLikely mistake: {mistake}"
        raise GraderFailure(message)


# --------------------------------------------------------------------------- interventions

@CHAPTER.exercise(
    "ablate_direction", points=2, reference=reference.ablate_direction, variants=VARIANTS,
    hint="unit = direction / direction.norm(); subtract (resid @ unit)[..., None] * unit.",
)
def grade_ablate_direction(ablate_direction: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    cases = [("a batch of residuals (batch=2, pos=5, d_model=16)", (2, 5, 16), False), ("one vector", (16,), False),
             ("vectors orthogonal to the direction, which must come back unchanged", (3, 16), True)]
    for description, shape, orthogonal in cases:
        resid = 1.5 + 3 * torch.randn(shape, generator=generator)
        direction = 4 * torch.randn(16, generator=generator)  # not a unit vector
        if orthogonal:
            resid = reference.ablate_direction(resid, direction)
        expected = reference.ablate_direction(resid, direction)
        compare_tensors(ablate_direction(resid.clone(), direction.clone()), expected,
                        what=f"ablate_direction on {description}, along a direction of length {direction.norm():.2f}", mistakes=[
            (looks_like(lambda: resid - (resid @ direction)[..., None] * direction),
             "you did not normalise the direction: the projection is (resid . d / |d|^2) d, or use d / |d|."),
            (looks_like(lambda: resid - (resid @ direction)[..., None] * direction / direction.norm()),
             "you divided by |d| once; the projection needs |d|^2 (or normalise d first, then use it twice)."),
            (looks_like(lambda: torch.zeros_like(resid)), "you zeroed the whole vector; remove only its component along d."),
            (looks_like(lambda: (resid @ direction / direction.norm() ** 2)[..., None] * direction),
             "you returned the component along d; return what is left when it is removed."),
        ])


@CHAPTER.exercise(
    "steer", points=1, reference=reference.steer, variants=VARIANTS,
    hint="resid + alpha * direction / direction.norm().",
)
def grade_steer(steer: Callable, *, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    resid = 1.5 + 3 * torch.randn(2, 5, 16, generator=generator)
    direction = 4 * torch.randn(16, generator=generator)
    for alpha in (3.0, -2.0):
        compare_tensors(steer(resid.clone(), direction.clone(), alpha), reference.steer(resid, direction, alpha),
                        what=f"steer with alpha={alpha}", mistakes=[
            (looks_like(lambda: resid + alpha * direction), "you did not normalise the direction: add alpha * d / |d|."),
            (looks_like(lambda: alpha * direction / direction.norm() + 0 * resid),
             "you replaced the residual stream; add to it."),
            (looks_like(lambda: resid * alpha), "steering adds a vector; it does not scale the residual stream."),
        ])


GRADING_CONFIG = TransformerConfig(n_layers=2, d_model=32, n_heads=4, d_vocab=256, n_ctx=16, d_mlp=64)


def mean_logit_of_paren(logits: Tensor, tokens: Tensor) -> Tensor:
    return logits[..., CLOSE_PAREN].mean()


#: The metrics a head's effect is graded on, by the name a failure message gives them.
METRICS = {"mean logit of ')'": mean_logit_of_paren, "next-token loss": next_token_loss}


@CHAPTER.exercise(
    "head_ablation_effect", points=2, reference=reference.head_ablation_effect,
    variants=({}, {"seed": 1, "metric": "next-token loss"}),
    hint="A hook on f'blocks.{layer}.attn.hook_z' that returns z with z[:, :, head] = 0; "
         "return float(metric(ablated_logits, tokens) - metric(clean_logits, tokens)).",
)
def grade_head_ablation_effect(head_ablation_effect: Callable, *, seed: int = 0, metric: str = "mean logit of ')'") -> None:
    torch.manual_seed(seed)
    model = Transformer(dataclasses.replace(GRADING_CONFIG)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))
    tokens = random_code_tokens(generator, 3, 12)

    def ablated(fwd_hooks) -> float:
        with torch.no_grad():
            return float(METRICS[metric](model.run_with_hooks(tokens, fwd_hooks=fwd_hooks), tokens))

    clean = ablated([])

    def zero(layer: int, heads) -> tuple[str, Callable]:
        def hook(z, hook):
            z = z.clone()
            z[:, :, heads] = 0
            return z
        return (f"blocks.{layer}.attn.hook_z", hook)

    for layer, head in [(1, 2), (0, 3)]:
        expected = reference.head_ablation_effect(model, tokens, layer, head, METRICS[metric])
        actual = as_float(head_ablation_effect(model, tokens.clone(), layer, head, METRICS[metric]),
                          f"head_ablation_effect of head {layer}.{head}")
        if abs(actual - expected) <= 1e-4 + 1e-3 * abs(expected):
            continue
        message = f"head_ablation_effect of head {layer}.{head} (metric: {metric}): expected {expected:.5f}, got {actual:.5f}."
        for value, mistake in [
            (-expected, "your sign is reversed: return metric(ablated) - metric(clean)."),
            (ablated([zero(layer, head)]), "you returned the ablated metric; return its change from the clean run."),
            (ablated([zero(layer, slice(None))]) - clean, "you zeroed every head of the layer; zero only z[:, :, head]."),
            (ablated([(f"blocks.{layer}.hook_attn_out", lambda out, hook: torch.zeros_like(out))]) - clean,
             "you zeroed hook_attn_out, the output of the whole attention layer: every head, and the bias b_O. "
             "Ablate the one head: set its z to 0 at blocks.{layer}.attn.hook_z (z[:, :, head] = 0)."),
            (ablated([zero(1 - layer, head)]) - clean, "you ablated the head in the wrong layer: the hook is blocks.{layer}.attn.hook_z."),
            (ablated([zero(layer, [h for h in range(4) if h != head])]) - clean,
             "you kept the head and ablated all the others."),
        ]:
            if abs(actual - value) <= 1e-4:
                message += f"\nLikely mistake: {mistake}"
                break
        raise GraderFailure(message)
