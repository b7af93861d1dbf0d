"""The grading platform itself: what `check(obj)` runs, how a failure names its variant and its
root, and which forms of a right answer are read as one."""

import contextlib
import io

import numpy as np
import pytest
import torch

from graders import core
from graders.chapter_00 import CHAPTER as CHAPTER_00
from graders.core import Chapter, ExerciseNotPassed, as_tensor, compare_tensors, make_check, parse_head, read_circuit
from mi_course.runtime.verdicts import Verdict
from mi_course.runtime.wire import WireError, decode, encode, pack, unpack
from solutions import transformer_from_scratch as reference

# --------------------------------------------------------------------------- a chapter of two exercises

TOY = Chapter("toy", glossary={"size": lambda size: f"{size} entries"})


@TOY.exercise("double", points=1, hint="2 * x", reference=lambda x: 2 * x, variants=({}, {"seed": 1, "size": 3}))
def grade_double(double, *, seed: int = 0, size: int = 2) -> None:
    x = torch.full((size,), float(seed))  # the seed is the input: code fitted to the graded seeds shows
    compare_tensors(double(x), 2 * x, what=f"double of {size} entries equal to {seed}")


@TOY.exercise("quadruple", points=1, hint="double twice", reference=lambda x: 4 * x, uses=("double",))
def grade_quadruple(quadruple, *, seed: int = 0) -> None:
    x = torch.arange(3.0) + seed
    compare_tensors(quadruple(x), 4 * x, what="quadruple of [0, 1, 2]")


def double_for_small_inputs(x):
    """Right on the graded seeds (0 and 1), wrong from 100 on, where the check draws its seed."""
    return 2 * x if x.max() < 100 else x


def learner_notebook(monkeypatch, source: str) -> dict:
    """A learner's notebook namespace of chapter TOY, with `check` and the code in `source`."""
    monkeypatch.setattr(core, "load_chapter", lambda name: TOY)
    namespace = {"check": make_check("toy")}
    exec(source, namespace)  # noqa: S102 - the learner's cell
    return namespace


def notebook_check(namespace: dict, call: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(call, namespace)  # noqa: S102 - the learner's check cell
    return printed.getvalue()


LEARNER = """
import torch
def double(x):
    return 2 * x if x.max() < 100 else x
def quadruple(x):
    return double(double(x))
"""


def test_check_runs_every_graded_variant_and_a_seed_drawn_afresh(monkeypatch):
    namespace = learner_notebook(monkeypatch, LEARNER)
    assert TOY.exercises["double"].run(namespace["double"]).verdict is Verdict.PASS  # the graded variants only
    printed = notebook_check(namespace, "check(double)")
    assert printed.startswith("FAIL: double (0/1 points)"), printed
    assert "This was with seed " in printed and "and size 3 (3 entries)" in printed
    drawn = [variant["seed"] for variant in (TOY.exercises["double"].fresh_variants()[-1] for _ in range(3))]
    assert all(seed >= core.FRESH_SEEDS[0] for seed in drawn) and len(set(drawn)) > 1


def test_under_nbgrader_check_runs_the_graded_variants_and_raises_unless_they_pass(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    namespace = learner_notebook(monkeypatch, LEARNER)
    assert notebook_check(namespace, "check(double)").startswith("PASS")  # the same verdict as grading
    namespace = learner_notebook(monkeypatch, LEARNER.replace("return 2 * x if", "return 3 * x if"))
    with pytest.raises(ExerciseNotPassed):
        notebook_check(namespace, "check(double, seed=1, size=3)")


def test_a_failure_is_blamed_on_the_failing_piece_it_uses(monkeypatch):
    namespace = learner_notebook(monkeypatch, LEARNER.replace("return 2 * x if", "return 3 * x if"))
    printed = notebook_check(namespace, "check(quadruple)")
    assert "Your `quadruple` uses your `double`, which fails its own check: fix it first" in printed, printed
    assert "quadruple of [0, 1, 2] is wrong" in printed  # what it gave is still said
    [double, quadruple] = TOY.grade_namespace(namespace)  # mi-course check says the same
    assert double.verdict is Verdict.FAIL and "uses your `double`, which fails" in quadruple.message
    assert TOY.grade("quadruple", namespace) == quadruple  # and so does `pytest graders --submission`


def test_a_piece_that_passes_its_check_is_not_blamed(monkeypatch):
    namespace = learner_notebook(monkeypatch, LEARNER.replace("return double(double(x))", "return 3 * x"))
    printed = notebook_check(namespace, "check(quadruple)")
    assert printed.startswith("FAIL: quadruple") and "uses your" not in printed, printed


def test_an_exercise_uses_only_earlier_exercises():
    chapter = Chapter("toy")
    with pytest.raises(ValueError, match="not earlier exercises"):
        chapter.exercise("whole", points=1, hint="", reference=None, uses=("piece",))(grade_quadruple)


def test_a_failure_names_its_variant_in_full_and_how_to_run_it_alone():
    class Attention(reference.Attention):  # right only where d_head = d_model / n_heads
        def forward(self, x):
            right = self.cfg.d_head == self.cfg.d_model // self.cfg.n_heads
            return super().forward(x) * (1 if right else 2)

    result = CHAPTER_00.exercises["Attention"].run(Attention)
    assert result.verdict is Verdict.FAIL
    assert ("This was with seed 1 and config odd_shapes (n_layers=3, d_model=20, n_heads=5, d_head=6, d_vocab=37, "
            "n_ctx=11, d_mlp=28); check(Attention, seed=1, config='odd_shapes') runs this case alone.") in result.message


# --------------------------------------------------------------------------- answers of every type

@pytest.mark.parametrize("head", [
    (1, 2), [1, 2], "1.2", "L1H2", (np.int64(1), np.int32(2)), np.array([1, 2]), np.argwhere(np.eye(3) > 0)[0] + [1, 2],
    torch.tensor([1, 2]), torch.tensor([[0, 0, 0], [0, 0, 1]]).nonzero()[0],
    (torch.tensor([1]), torch.tensor(2)), torch.tensor([1, 2], dtype=torch.int8), (np.uint8(1), 2),
], ids=repr)
def test_a_head_is_any_pair_of_integers(head):
    assert parse_head(head) == (1, 2)


@pytest.mark.parametrize("head", [(True, 1), (0.5, 1), torch.tensor([0.0, 1.0]), np.array([0.0, 1.0]), (0, 1, 2), 3],
                         ids=repr)
def test_a_head_is_not_a_float_a_bool_or_three_numbers(head):
    with pytest.raises(core.GraderFailure, match="as a head"):
        parse_head(head)


def test_a_circuit_may_list_its_heads_as_a_table_read_with_argwhere_or_nonzero():
    mask = np.zeros((2, 4), dtype=bool)
    mask[1, [0, 2]] = True
    circuit = read_circuit({"induction": np.argwhere(mask), "previous": torch.tensor([0, 3]),
                            "other": torch.from_numpy(mask).nonzero()[:1]},
                           what="circuit", role_of=str, roles=["induction", "previous", "other"])
    assert circuit == {"induction": {(1, 0), (1, 2)}, "previous": {(0, 3)}, "other": {(1, 0)}}


@pytest.mark.parametrize("number", [
    0.5, np.float32(0.5), np.float64(0.5), np.float16(0.5), torch.tensor(0.5), torch.tensor([0.5], dtype=torch.float64),
    np.array(0.5, dtype=np.float32), np.array([0.5]),
], ids=repr)
def test_a_float_is_any_float_python_numpy_or_torch(number):
    assert torch.equal(as_tensor(number), torch.tensor(0.5))


@pytest.mark.parametrize("number", [3, np.int64(3), np.uint8(3), torch.tensor(3), torch.tensor([3], dtype=torch.int32),
                                    np.argwhere(np.arange(5) == 3)[0]], ids=repr)
def test_an_integer_is_any_integer_python_numpy_or_torch(number):
    assert torch.equal(as_tensor(number), torch.tensor(3.0))


def test_a_bool_is_not_a_number():
    assert as_tensor(True) is True


# --------------------------------------------------------------------------- numpy across the wire

def crossed(value):
    """`value` as the grader reads it after the learner's process sent it."""
    structure, tensors = encode({"answer": value}, on_object=lambda item: pytest.fail(f"{item!r} is not data"))
    header, tensors = unpack(pack({"value": structure}, tensors))
    return decode(header["value"], tensors, on_reference=lambda ref: pytest.fail("a reference"))["answer"]


@pytest.mark.parametrize(("value", "expected"), [
    (np.float32(0.25), 0.25), (np.int64(3), 3), (np.bool_(True), True), (np.array(2.5, dtype=np.float32), 2.5),
    ((np.int64(1), np.int32(2)), (1, 2)),
], ids=repr)
def test_numpy_numbers_arrive_as_python_numbers(value, expected):
    answer = crossed(value)
    assert answer == expected and type(answer) is type(expected)


def test_numpy_non_finite_floats_arrive_as_floats():
    assert np.isnan(crossed(np.float64("nan"))) and crossed(np.float32("-inf")) == float("-inf")


@pytest.mark.parametrize(("array", "dtype"), [(np.argwhere(np.eye(2) > 0), torch.int64), (np.ones(3, np.float32), torch.float32),
                                              (np.arange(3, dtype=np.uint16), torch.int64)], ids=repr)
def test_numpy_arrays_arrive_as_tensors(array, dtype):
    answer = crossed(array)
    assert isinstance(answer, torch.Tensor) and answer.dtype == dtype and answer.tolist() == array.tolist()


def test_sets_of_edges_and_dicts_keyed_by_them_arrive_as_sent():
    """Chapter 06's answers: circuits as sets of (sender, receiver) edges, scores keyed by edge."""
    circuit = frozenset({("embed", "A0.0.v"), ("A0.0", "A1.0.k")})
    assert crossed(circuit) == circuit and type(crossed(circuit)) is frozenset
    assert crossed(set(circuit)) == set(circuit) and type(crossed(set(circuit))) is set
    assert crossed({edge: -1.5 for edge in circuit}) == {edge: -1.5 for edge in circuit}


def test_a_set_of_unhashable_members_is_refused_on_arrival():
    structure = {"__set__": [{"__dict__": []}], "frozen": True}
    with pytest.raises(WireError, match="cannot be hashed"):
        decode(structure, {}, on_reference=lambda ref: pytest.fail("a reference"))


def test_a_numpy_array_of_text_cannot_be_sent():
    with pytest.raises(WireError, match="dtype <U1"):
        crossed(np.array(["a"]))
