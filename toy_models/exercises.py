"""What a notebook's demonstration cells say when an exercise they use is unfinished.

A released notebook's exercises start as `raise NotImplementedError(...)`. A cell that
shows a result built on them (training your `DemoTransformer`, plotting its induction
scores) would otherwise fail with whatever breaks first, often far from the cause: a
`NameError` for a variable an earlier cell never set, or `stack expects a non-empty
TensorList` for a list no training step filled. Such a cell starts with
`finish_first(DemoTransformer, ...)`, which stops it with one sentence naming what to
finish.
"""

import inspect
import types
from collections.abc import Callable, Iterator

#: What a released notebook's stubs raise (nbgrader's code stub, `mi_course.release.CODE_STUB`): a
#: NotImplementedError of the learner's own, for a case their code does not handle, is not a stub.
STUB_MESSAGE = "Write your solution here, then run the check below."


class Unfinished(Exception):
    """An exercise a cell needs still raises NotImplementedError."""


def _functions(exercise: Callable) -> Iterator[types.FunctionType]:
    exercise = inspect.unwrap(exercise)  # through decorators such as @torch.no_grad()
    if isinstance(exercise, type):
        for value in vars(exercise).values():
            yield from _functions(value) if isinstance(value, type | types.FunctionType) else ()
    elif isinstance(exercise, types.FunctionType):
        yield exercise


def unfinished(exercise: Callable) -> bool:
    """Whether the function, or a method the class defines, still holds the stub the notebook
    asks you to replace."""
    return any("NotImplementedError" in function.__code__.co_names and STUB_MESSAGE in function.__code__.co_consts
               for function in _functions(exercise))


def finish_first(*exercises: Callable) -> None:
    """Stop the cell, naming each exercise that is unfinished, if any is."""
    names = [f"`{exercise.__name__}`" for exercise in exercises if unfinished(exercise)]
    if names:
        raise Unfinished(f"Finish {', '.join(names)} first: this cell uses {'them' if len(names) > 1 else 'it'} "
                         "(its check above says what is missing).")
