"""The grading platform: exercises, verdicts, and comparisons that explain themselves.

A chapter's grader module makes one `Chapter` and registers each exercise on it:

    CHAPTER = Chapter("00_transformer_from_scratch")

    @CHAPTER.exercise("LayerNorm", points=2, reference=LayerNorm, hint="...")
    def grade_layer_norm(LearnerLayerNorm, *, seed=0, config="small"):
        ...  # raise GraderFailure (compare_tensors does) when the learner's code is wrong

An exercise is named after the object the learner writes, so `check(LayerNorm)` finds
its grader by `LayerNorm.__name__`. Grading an object gives one of four verdicts:

* PASS;
* FAIL: the grader raised `GraderFailure`, whose message says what was expected, what came
  back, and the most likely mistake;
* NOT ATTEMPTED: the learner's code raised `NotImplementedError`, which is what the stubs
  of a freshly released notebook do;
* ERROR: the learner's code raised anything else; reported as the exception and the
  learner's line that raised it, without a traceback through torch and the grader.

The verdicts (`mi_course.runtime.verdicts`) are shared with the sandboxed learner's
process; the `Result` that holds one is in `graders.results`, and `graders.reporting`
turns results into text.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import numbers
import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graders.reporting import summary
from graders.results import Result
from mi_course.runtime.learner_code import describe_error, stub_name
from mi_course.runtime.verdicts import LearnerCodeFailed, Verdict, not_attempted_message

__all__ = [
    "Chapter", "Exercise", "GraderFailure", "ExerciseNotPassed",
    "as_tensor", "compare_tensors", "looks_like", "load_reference_weights", "load_chapter", "parse_head",
    "role_words", "read_circuit", "circuit_where", "compare_circuits",
    "make_check", "check_call", "CHAPTERS",
]

#: Chapter name (the notebook's file name without .ipynb) -> the module that grades it.
CHAPTERS: Mapping[str, str] = {
    "00_transformer_from_scratch": "graders.chapter_00",
    "01_three_buckets": "graders.chapter_01",
    "02_induction_heads": "graders.chapter_02",
    "03_indirect_object_identification": "graders.chapter_03",
    "04_superposition_and_saes": "graders.chapter_04",
    "05_honest_limits": "graders.chapter_05",
    "06_circuit_discovery": "graders.chapter_06",
    "07_attribution_graphs": "graders.chapter_07",
}

# Outputs agree when |actual - expected| <= ATOL + RTOL * |expected|: loose enough for a
# different but correct order of float32 operations (einsum or @, mean then divide or
# sum / n), tight enough to tell GELU from its tanh approximation.
RTOL = 1e-4
ATOL = 1e-5


class GraderFailure(Exception):
    """The learner's code ran but gave a wrong answer; the message teaches why."""


class ExerciseNotPassed(AssertionError):
    """Raised by `check` under nbgrader, so that the graded cell scores zero."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: `grade(obj, **variant)` raises `GraderFailure` unless `obj` is right.

    `variants` are the keyword arguments to grade with: the first is the visible test of
    the notebook's graded cell, the others its hidden tests (other seeds, other model
    shapes); grading runs them all, and so does the learner's `check(obj)`, with a seed
    drawn afresh besides. `reference` is the course's own solution, in the learner's
    interface: the graders are tested by grading it. `forbidden` are its equivalents that a
    notebook can import (in `toy_models`): graded code that is, inherits from, wraps or
    calls one earns nothing in `mi-course grade`. `uses` names the learner's other pieces
    (earlier exercises of the chapter) that the learner's `obj` calls: when `obj` fails,
    the first of them that fails its own check is blamed (`Chapter.blame`).
    """

    name: str
    points: float
    grade: Callable[..., None]
    hint: str
    reference: Any
    variants: tuple[Mapping[str, Any], ...] = ({},)
    forbidden: tuple[Any, ...] = ()
    uses: tuple[str, ...] = ()
    #: What each setting of a variant stands for, in words (`Chapter.glossary`).
    glossary: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)

    @property
    def grade_ids(self) -> tuple[str, str]:
        """The nbgrader ids of its cells in the chapter's notebook: the learner's solution, then
        the graded test that checks it."""
        return self.name, f"check_{self.name}"

    @property
    def settings(self) -> dict[str, Any]:
        """The grader's keyword arguments and their defaults: what the variants vary."""
        return {name: parameter.default for name, parameter in inspect.signature(self.grade).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY}

    def fresh_variants(self) -> tuple[Mapping[str, Any], ...]:
        """The variants `check(obj)` runs: every graded one, then, where the grader takes a
        seed, the last of them with a seed drawn for this call, so that code fitted to the
        graded seeds does not pass the check."""
        if "seed" not in self.settings:
            return self.variants
        return (*self.variants, self.drawn_variant(_FRESH_SEEDS.randrange(*FRESH_SEEDS)))

    def drawn_variant(self, seed: int) -> Mapping[str, Any]:
        """The variant `check(obj)` adds for a drawn `seed`: the last graded one, with that seed."""
        return {**self.variants[-1], "seed": seed}

    def describe(self, variant: Mapping[str, Any]) -> str:
        """The variant in words, each setting spelled out: "seed 1 and config odd_shapes
        (n_layers=3, d_model=20, ...)"; empty for a grader that takes no settings."""
        words = [f"{key} {value}" + (f" ({self.glossary[key](value)})" if key in self.glossary else "")
                 for key, value in {**self.settings, **variant}.items()]
        return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)

    def run(self, obj: Any, variants: Sequence[Mapping[str, Any]] | None = None) -> Result:
        """Grade `obj` under each variant (all the graded ones by default); the first
        verdict that is not PASS is the result, its message naming the variant, and marked
        `hidden_variant` unless it is the first variant run (the notebook's visible test)."""
        with _grading_conditions():
            for index, variant in enumerate(self.variants if variants is None else variants):
                verdict, message = _verdict(self.grade, obj, variant)
                if verdict is not Verdict.PASS:
                    if verdict is not Verdict.NOT_ATTEMPTED and self.describe(variant):
                        message += (f"\n(This was with {self.describe(variant)}; "
                                    f"{check_call(self.name, {**self.settings, **variant})} runs this case alone.)")
                    return Result(self.name, verdict, 0, self.points, message, self.hint, hidden_variant=index > 0)
        return Result(self.name, Verdict.PASS, self.points, self.points)


#: The seeds `check(obj)` draws from, afresh for each call (the graded variants use small seeds).
FRESH_SEEDS = (100, 10_000)
_FRESH_SEEDS = random.Random()  # a generator of its own: the learner's random state is theirs


def check_call(name: str, variant: Mapping[str, Any]) -> str:
    """The notebook's call that checks one variant: check(Attention, seed=1, config='odd_shapes')."""
    return f"check({name}" + "".join(f", {key}={value!r}" for key, value in variant.items()) + ")"


@dataclass
class Chapter:
    """A chapter's exercises, in the notebook's order. `glossary` says in words what a
    variant's setting stands for ({"config": lambda name: "n_layers=3, ..."}), for the
    failure messages that name the variant."""

    name: str
    exercises: dict[str, Exercise] = field(default_factory=dict)
    glossary: Mapping[str, Callable[[Any], str]] = field(default_factory=dict)

    def exercise(
        self,
        name: str,
        *,
        points: float,
        hint: str,
        reference: Any,
        variants: tuple[Mapping[str, Any], ...] = ({},),
        forbidden: tuple[Any, ...] = (),
        uses: tuple[str, ...] = (),
    ) -> Callable[[Callable[..., None]], Callable[..., None]]:
        """Decorator: register the decorated function as the grader of exercise `name`."""

        def register(grade: Callable[..., None]) -> Callable[..., None]:
            self._add(Exercise(name, points, grade, hint, reference, variants, forbidden, uses, self.glossary))
            return grade

        return register

    def include(self, exercise: Exercise, *, points: float) -> None:
        """Grade an exercise of an earlier chapter here too, worth `points`: the learner
        writes it again, and one grader (and one reference) serves both chapters."""
        self._add(dataclasses.replace(exercise, points=points))

    def _add(self, exercise: Exercise) -> None:
        if exercise.name in self.exercises:
            raise ValueError(f"exercise {exercise.name!r} is registered twice in chapter {self.name}")
        unknown = [name for name in exercise.uses if name not in self.exercises]
        if unknown:
            raise ValueError(f"exercise {exercise.name!r} uses {unknown}, which are not earlier exercises of {self.name}")
        self.exercises[exercise.name] = exercise

    @property
    def max_points(self) -> float:
        return sum(exercise.points for exercise in self.exercises.values())

    def grade(self, name: str, namespace: Mapping[str, Any]) -> Result:
        """Grade exercise `name` against the object of that name a learner's notebook defined;
        a failure is blamed on the first failing piece it uses, as the notebook defines them."""
        return self.blame(self._graded_alone(name, namespace), self.results_in(namespace))

    def results_in(self, namespace: Mapping[str, Any]) -> Callable[[str], Result]:
        """Each exercise's result on the object of its name in `namespace`, graded when first
        asked for, and blamed on nothing: what `blame` reads."""
        return functools.cache(lambda name: self._graded_alone(name, namespace))

    def _graded_alone(self, name: str, namespace: Mapping[str, Any]) -> Result:
        if name not in namespace:
            return self.missing(name)
        return self.exercises[name].run(namespace[name])

    def missing(self, name: str) -> Result:
        """The result of exercise `name` when the notebook defines no object of that name."""
        exercise = self.exercises[name]
        message = (f"The notebook defines no `{name}`. Did the cell that defines it run "
                   f"without an error, and is it still called `{name}`?")
        return Result(name, Verdict.ERROR, 0, exercise.points, message, exercise.hint)

    def blame(self, result: Result, result_of: Callable[[str], Result]) -> Result:
        """`result`, unless it failed while a piece its exercise uses fails its own check
        (`result_of(name)` is that piece's result): then the failure is the deepest such
        piece's, and says so first. A piece that passes its own check is not blamed."""
        if result.verdict in (Verdict.PASS, Verdict.NOT_ATTEMPTED):
            return result
        root = self._failing_root(result.exercise, result_of)
        if root is None:
            return result
        why = ("is not written yet: write it first" if result_of(root).verdict is Verdict.NOT_ATTEMPTED
               else "fails its own check: fix it first")
        message = (f"Your `{result.exercise}` uses your `{root}`, which {why} (check({root}) says why). "
                   f"What `{result.exercise}` gave meanwhile:\n{result.message}")
        return dataclasses.replace(result, message=message)

    def _failing_root(self, name: str, result_of: Callable[[str], Result]) -> str | None:
        """The first piece exercise `name` uses that fails its own check, followed down to
        the first failing piece that the failing piece uses, and so on; None if all pass."""
        for used in self.exercises[name].uses:
            if result_of(used).verdict is not Verdict.PASS:
                return self._failing_root(used, result_of) or used
        return None

    def grade_each(self, grade: Callable[[str], Result]) -> list[Result]:
        """Each exercise's result, in order, as `grade(name)` gives it, with the blame for a
        failure moved to the first piece it uses that fails (`blame`)."""
        results: dict[str, Result] = {}
        for name in self.exercises:
            results[name] = self.blame(grade(name), results.__getitem__)
        return list(results.values())

    def grade_namespace(self, namespace: Mapping[str, Any]) -> list[Result]:
        """Grade every exercise against the objects a learner's notebook defined."""
        return self.grade_each(lambda name: self._graded_alone(name, namespace))


def load_chapter(name: str) -> Chapter:
    if name not in CHAPTERS:
        raise ValueError(f"No graders for chapter {name!r}. Chapters: {', '.join(CHAPTERS)}.")
    return importlib.import_module(CHAPTERS[name]).CHAPTER


# --------------------------------------------------------------------------- verdicts

@contextmanager
def _grading_conditions() -> Iterator[None]:
    """Grade on one thread, and leave the learner's random state as it was.

    Graders work on tiny tensors, where a second thread brings no speed, only the wait to
    wake it: on a busy two-core laptop that wait made a one-second check take five. And
    the learner's modules draw their initial weights from torch's global generator, which
    must not depend on whether the learner ran a check.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)


def _verdict(grade: Callable[..., None], obj: Any, variant: Mapping[str, Any]) -> tuple[Verdict, str]:
    try:
        grade(obj, **variant)
    except GraderFailure as failure:
        return Verdict.FAIL, str(failure)
    except LearnerCodeFailed as failed:  # in a sandbox: already described there, or a containment event
        return failed.verdict, failed.message
    except NotImplementedError as error:
        stub = stub_name(error)
        if stub is None:  # raised inside torch, not by a stub: an error like any other
            return Verdict.ERROR, describe_error(error)
        return Verdict.NOT_ATTEMPTED, not_attempted_message(stub)
    except Exception as error:  # noqa: BLE001 - any exception from learner code is reported, not raised
        return Verdict.ERROR, describe_error(error)
    return Verdict.PASS, ""


# --------------------------------------------------------------------------- comparisons

Mistake = tuple[Callable[[Tensor], bool], str]


def looks_like(alternative: Callable[[], Tensor]) -> Callable[[Tensor], bool]:
    """A diagnostic: does the learner's output equal `alternative()`, the output of a
    specific wrong computation? (Computed only when the learner's output is wrong.)"""

    def matches(actual: Tensor) -> bool:
        other = alternative()
        return actual.shape == other.shape and torch.allclose(actual, other.to(actual.dtype), RTOL, ATOL)

    return matches


def compare_tensors(
    actual: Any,
    expected: Tensor,
    *,
    what: str,
    mistakes: Sequence[Mistake] = (),
) -> None:
    """Raise `GraderFailure` unless `actual` matches `expected` (up to float32 rounding).

    The message says what was expected and what came back: the shapes, how many entries
    differ and the first of them. Then each `(diagnostic, message)` in `mistakes` is tried
    on `actual`; the message of the first diagnostic that recognises it is given as the
    likely mistake.
    """
    if not isinstance(actual, Tensor):
        hint = " Did you forget to `return` it?" if actual is None else ""
        raise GraderFailure(f"{what}: expected a tensor of shape {_shape(expected)}, got {type(actual).__name__}.{hint}")
    if not actual.dtype.is_floating_point and expected.dtype.is_floating_point:
        raise GraderFailure(f"{what}: expected floating-point values, got a tensor of dtype {actual.dtype}.")
    actual = actual.detach().to(expected.dtype)
    if actual.shape != expected.shape:
        problem = f"expected shape {_shape(expected)}, got {_shape(actual)}."
    else:
        close = torch.isclose(actual, expected, RTOL, ATOL)
        if close.all():
            return
        problem = _describe_differences(actual, expected, close)
    lines = [f"{what} is wrong: {problem}"]
    for recognises, explanation in mistakes:
        if _safely(recognises, actual):
            lines.append(f"Likely mistake: {explanation}")
            break
    raise GraderFailure("\n".join(lines))


def as_tensor(actual: object) -> object:
    """A learner's answer, ready for `compare_tensors`: a scalar given as a Python, numpy or
    torch number of any integer or float dtype (a one-element array or tensor included)
    as a 0-d float tensor, a numpy array as a tensor; anything else as it is."""
    actual = _from_numpy(actual)
    if isinstance(actual, numbers.Real) and not isinstance(actual, (bool, np.bool_)):
        return torch.tensor(float(actual))
    if isinstance(actual, Tensor) and actual.numel() == 1 and actual.dtype is not torch.bool:
        return actual.detach().reshape(()).float()
    return actual


def _safely(recognises: Callable[[Tensor], bool], actual: Tensor) -> bool:
    """A diagnostic that cannot be evaluated (it may call the learner's code again, or
    compare shapes that do not fit) has not recognised the mistake."""
    try:
        return bool(recognises(actual))
    except Exception:  # noqa: BLE001
        return False


def _describe_differences(actual: Tensor, expected: Tensor, close: Tensor) -> str:
    wrong = (~close).nonzero()
    first = tuple(wrong[0].tolist())
    text = (f"{len(wrong)} of {actual.numel()} entries differ; the first, at {list(first)}, "
            f"should be {expected[first].item():.5g} and is {actual[first].item():.5g}")
    if actual.isnan().any() and not expected.isnan().any():
        text += f". Your output contains NaN (first at {actual.isnan().nonzero()[0].tolist()})"
    finite = actual.isfinite() & expected.isfinite() & ~close
    if finite.any():
        text += f"; the largest difference is {(actual - expected)[finite].abs().max().item():.3g}"
    return text + "."


def _shape(tensor: Tensor) -> str:
    return str(tuple(tensor.shape))


# --------------------------------------------------------------------------- circuits

Head = tuple[int, int]


def parse_head(head: object) -> Head:
    """(layer, head) from any pair of integers, Python, numpy or torch ((0, 1), [0, 1], a row
    of `np.argwhere` or of `.nonzero()`, a pair of one-element tensors), or from text: "0.1",
    "L0H1" or "0,1"."""
    pair = _integer_pair(head)
    if pair is not None:
        return pair
    if isinstance(head, str):
        digits = [int(part) for part in "".join(c if c.isdigit() else " " for c in head).split()]
        if len(digits) == 2:
            return digits[0], digits[1]
    raise GraderFailure(f"cannot read {head!r} as a head: write each head as a (layer, head) pair, such as (0, 1).")


def _integer_pair(value: object) -> Head | None:
    """`value` as two ints, if it is a pair of integers of any kind; else None."""
    value = _from_numpy(value)
    if isinstance(value, Tensor):
        value = value.tolist() if value.shape == (2,) else None
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        return None
    integers = [_integer(x) for x in value]
    return None if None in integers else (integers[0], integers[1])


def _integer(value: object) -> int | None:
    """`value` as an int, if it is an integer of any kind (a one-element tensor or array too); else None."""
    value = _from_numpy(value)
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.reshape(()).tolist()
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return None


def _from_numpy(value: object) -> object:
    """A numpy array of numbers as a tensor (which keeps its dtype); anything else as it is."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(value.copy())
    return value


def role_words(key: object) -> str:
    """A learner's name for a role, as snake_case words without a plural "heads":
    "Previous-token heads" -> "previous_token"."""
    words = "_".join(str(key).strip().lower().replace("-", " ").replace("_", " ").split())
    for suffix in ("_heads", "_head"):
        words = words.removesuffix(suffix)
    return words


def read_circuit(answer: object, *, what: str, role_of: Callable[[object], str | None],
                 roles: Sequence[str]) -> dict[str, set[Head]]:
    """A learner's circuit, {role: [(layer, head), ...]}, with its roles named however the
    learner likes (`role_of` reads them) and each head in any of `parse_head`'s forms."""
    if not isinstance(answer, dict):
        raise GraderFailure(f"{what} should return a dict {{role: [(layer, head), ...]}}, got "
                            f"{type(answer).__name__}." + (" Did you forget to `return` it?" if answer is None else ""))
    given: dict[str, set[Head]] = {}
    for key, heads in answer.items():
        role = role_of(key)
        if role is None:
            raise GraderFailure(f"unknown role {key!r}: the roles are {', '.join(map(repr, roles))}.")
        if isinstance(heads, str) or _integer_pair(heads) is not None:
            heads = [heads]  # a single head, not in a list
        given.setdefault(role, set()).update(parse_head(head) for head in heads)
    return given


def circuit_where(roles: Mapping[str, Tensor]) -> dict[str, frozenset[Head]]:
    """A circuit measured on a model: for each role, the heads where its mask holds. A mask is
    (n_layers, n_heads), the heads' scores compared with the role's thresholds."""
    return {role: frozenset((layer, head) for layer, head in mask.nonzero().tolist()) for role, mask in roles.items()}


def compare_circuits(expected: Mapping[str, set[Head] | frozenset[Head]], given: Mapping[str, set[Head]], *,
                     model: str, explain: Callable[[str, set[Head], set[Head]], str]) -> None:
    """Raise `GraderFailure` unless `given` has exactly the heads of `expected` in each role;
    `explain(role, expected heads, given heads)` adds what the shipped model says about them."""
    problems = []
    for role, ours in expected.items():
        theirs = given.get(role, set())
        if ours == theirs:
            continue
        missing = sorted(ours - theirs)
        line = f"role {role!r}: expected {sorted(ours)}, got {sorted(theirs)}." + (f" Missing {missing}." if missing else "")
        problems.append(line + explain(role, set(ours), theirs))
    if problems:
        raise GraderFailure(f"Your circuit does not match the one measured on the shipped {model}:\n"
                            + "\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------- weights

def load_reference_weights(learner: Any, reference: nn.Module, *, what: str) -> None:
    """Copy the reference module's parameters into the learner's module, by name.

    Every parameter must be there, under the reference's name and with its shape, and
    there must be no others; buffers (constants such as a stored mask) are the learner's
    business. Each problem is reported with the likely fix.
    """
    if not (isinstance(learner, nn.Module) or getattr(learner, "remote_kind", None) == "module"):
        raise GraderFailure(f"{what} should be a torch.nn.Module, got {type(learner).__name__}.")
    ours = dict(reference.named_parameters())
    theirs = dict(learner.named_parameters())
    problems = []
    for name in sorted(ours.keys() - theirs.keys()):
        same_shape = [n for n in theirs.keys() - ours.keys() if theirs[n].shape == ours[name].shape]
        guess = f"; your `{same_shape[0]}` has its shape: rename it `{name}`?" if same_shape else ""
        problems.append(f"missing parameter `{name}` of shape {_shape(ours[name])}{guess}")
    for name in sorted(theirs.keys() - ours.keys()):
        problems.append(f"unexpected parameter `{name}` of shape {_shape(theirs[name])}")
    for name in sorted(ours.keys() & theirs.keys()):
        if theirs[name].shape != ours[name].shape:
            transposed = theirs[name].shape == ours[name].shape[::-1]
            problems.append(f"parameter `{name}` has shape {_shape(theirs[name])}, expected {_shape(ours[name])}"
                            + (" (transposed?)" if transposed else ""))
    if problems:
        raise GraderFailure(
            f"{what} does not have the reference's parameters, so the reference weights cannot be "
            "loaded into it:\n" + "\n".join(f"  - {p}" for p in problems)
            + "\nKeep the parameter names and shapes given in the exercise."
        )
    learner.load_state_dict({name: ours[name] for name in theirs}, strict=False)  # its buffers are its own


# --------------------------------------------------------------------------- notebooks

def make_check(chapter: str) -> Callable[..., None]:
    """The `check(obj)` a chapter's notebook calls after each exercise.

    It grades `obj` with the exercise named `obj.__name__` and prints the verdict: with
    every variant that grading uses, and a seed drawn afresh besides (`Exercise.fresh_variants`),
    so that PASS here means the graded notebook passes too. When `obj` fails, the pieces it
    uses are checked, as the notebook that calls `check` defines them, and the first that
    fails is blamed (`Chapter.blame`). Under nbgrader (which sets NBGRADER_EXECUTION while
    autograding or validating) no seed is drawn, and anything but PASS raises
    `ExerciseNotPassed`, so that the graded test cell scores zero. Keyword arguments choose
    one variant (`check(Attention, seed=1, config="odd_shapes")`).
    """
    graded_chapter = load_chapter(chapter)

    def check(obj: Any, **variant: Any) -> None:
        name = getattr(obj, "__name__", None)
        exercise = graded_chapter.exercises.get(name)
        under_nbgrader = bool(os.environ.get("NBGRADER_EXECUTION"))
        if name is None:
            text = (f"ERROR: check() takes the class or function you wrote, as in check(LayerNorm); "
                    f"got an object of type {type(obj).__name__}.")
            result = None
        elif exercise is None:
            text = f"ERROR: no exercise is called {name!r}. Exercises: {', '.join(graded_chapter.exercises)}."
            result = None
        else:
            variants = [variant] if variant else exercise.variants if under_nbgrader else exercise.fresh_variants()
            namespace = sys._getframe(1).f_globals  # the notebook's, where the pieces `obj` uses are defined
            result = graded_chapter.blame(exercise.run(obj, variants), graded_chapter.results_in(namespace))
            text = summary(result)
        print(text)
        if under_nbgrader and (result is None or result.verdict is not Verdict.PASS):
            raise ExerciseNotPassed(text)

    return check

