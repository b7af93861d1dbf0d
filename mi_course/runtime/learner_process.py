"""The learner's side of sandboxed grading: the processes that run a learner's code.

Four kinds of process, each forked from the one before:

* the **zygote**, started once per grading run (`python -m mi_course.runtime.learner_process
  SOCKET`): it imports torch, TransformerLens and `toy_models` once, then waits on a
  Unix socket that only the grader can reach. Each connection asks for a sandbox; the
  zygote forks a supervisor for it. It never imports `graders` or `solutions`, so nothing
  it forks holds the references or the hidden tests in memory.
* a **supervisor** per sandbox (trusted): it joins the namespaces bubblewrap made for the
  sandbox (`mi_course.runtime.containment.enter`), forks the learner's process into them, and tells
  the grader, on the connection it came with, how that process ended. It stays outside
  the learner's process tree, so the learner's code can neither see nor signal it, and
  the connection it speaks on is never open in the learner's process.
* the **learner's process**, in the sandbox: it drops its privileges, sets its limits,
  runs the notebook's cells, and then answers the grader on a socket of its own. Anything
  that arrives on that socket is an answer to be checked, never a verdict or an order.
* an **exercise process** per exercise, forked from the learner's process once the
  notebook has run: it has its own CPU limit, and whatever the learner's code does to it
  (exit, crash, delete its state) costs that exercise alone.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import itertools
import os
import select
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mi_course.runtime.containment import (
    SCRATCH,
    IsolationFailed,
    Limits,
    apply_limits,
    end_processes,
    enter,
    limit_cpu,
    make_workdir,
    remove_workdir,
)
from mi_course.runtime.learner_code import describe_error, new_namespace, run_cell, stub_name
from mi_course.runtime.verdicts import LearnerCodeFailed, Verdict, not_attempted_message
from mi_course.runtime.wire import WireError, decode, encode, receive, send

__all__ = ["PRELOAD", "zygote"]

#: What a learner's notebook imports, imported once by the zygote instead of once per sandbox.
PRELOAD = (
    "torch", "einops", "jaxtyping", "numpy", "matplotlib.pyplot", "tqdm.auto", "transformer_lens",
    "transformer_lens.patching", "toy_models", "toy_models.data", "toy_models.train", "toy_models.metrics",
    "multiprocessing.synchronize",  # tqdm's lock, made with the first progress bar
)
#: The grader's requests are small; a learner's answers are bounded by `Limits.output_bytes`.
REQUEST_BYTES = 2**31


# --------------------------------------------------------------------------- the zygote

def zygote(address: str) -> None:
    """Import what notebooks need, then fork a supervisor for each connection to `address`."""
    os.environ["MPLBACKEND"] = "Agg"
    for module in PRELOAD:
        importlib.import_module(module)
    torch.set_num_threads(1)  # one grading worker per core; and a forked thread pool would hang
    # An optimizer's first step imports torch._dynamo, for seconds: pay that here, once,
    # not in every exercise process.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _supervise(connection)
            finally:
                os._exit(0)
        connection.close()


def _supervise(control: socket.socket) -> None:
    """Enter the sandbox, start the learner's process in it, hand the grader a socket to
    it, and report how it ended; kill it when the grader hangs up."""
    request, _ = receive(control, limit=REQUEST_BYTES)
    limits, uid, holder = Limits(**request["limits"]), request["uid"], request["holder_pid"]
    try:
        if holder is not None:
            enter(holder, as_root=uid is not None)
        workdir = SCRATCH if holder is not None else make_workdir(uid)
    except (OSError, IsolationFailed) as error:
        control.sendall(b"F")
        send(control, {"op": "setup_failed", "message": str(error)[:500]})
        return
    grader_end, learner_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        control.close()
        grader_end.close()
        try:
            _learner(learner_end, request["cells"], limits, uid, workdir)
        finally:
            os._exit(0)
    learner_end.close()
    socket.send_fds(control, [b"S"], [grader_end.fileno()])  # "started", with the socket to the learner
    grader_end.close()
    learner_ended = os.pidfd_open(pid)
    readable, _, _ = select.select([learner_ended, control], [], [])
    if learner_ended not in readable:  # the grader is done with this sandbox
        os.kill(pid, signal.SIGKILL)
    if holder is None:  # inside a sandbox, its end ends them all; here, before the learner's pid can be reused
        end_processes(uid, group=pid)
    _, status, usage = os.wait4(pid, 0)
    with contextlib.suppress(OSError):
        send(control, {"op": "exited", "status": os.waitstatus_to_exitcode(status),
                       "cpu_seconds": usage.ru_utime + usage.ru_stime})
    if holder is None:
        remove_workdir(workdir)


# --------------------------------------------------------------------------- the learner's process

class CellTimeout(BaseException):
    """A notebook cell ran past its time; raised in it by a timer."""


def _learner(connection: socket.socket, cells: list, limits: Limits, uid: int | None, workdir: Path) -> None:
    os.setsid()  # its own session and process group, which the grader's tree kill reaches
    _silence_and_close_fds(keep=connection.fileno())
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(HOME=str(workdir), TMPDIR=str(workdir), MPLBACKEND="Agg", PATH="/usr/bin:/bin",
                      OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    apply_limits(limits, uid)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past its size limit is an OSError, not a dead process
    sys.modules["graders"] = _graders_stand_in()
    namespace = new_namespace()
    cell_errors = []
    signal.signal(signal.SIGALRM, _raise_cell_timeout)
    for index, source in cells:
        signal.setitimer(signal.ITIMER_REAL, limits.cell_seconds)
        try:
            run_cell(source, namespace, f"<cell {index}>")
        except CellTimeout:
            cell_errors.append([index, f"the cell ran for more than {limits.cell_seconds:g} s and was stopped"])
        except BaseException as error:  # noqa: BLE001 - recorded, the next cell runs, as in a notebook
            cell_errors.append([index, f"{type(error).__name__}: {error}"[:1000]])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    _reset_torch_globals()
    send(connection, {"op": "loaded", "cell_errors": cell_errors})
    while True:
        request, _ = receive(connection, limit=REQUEST_BYTES)
        if request.get("op") != "exercise":
            return
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.setpgid(0, 0)  # a group of its own, for whatever processes the learner's code starts
                limit_cpu(limits.exercise_cpu_seconds)
                _Exercise(connection, namespace, limits, request.get("references", [])).serve(request["name"])
            except BaseException:  # noqa: BLE001 - the connection broke, or the learner's code escaped
                code = 70
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # what the exercise's code started does not outlive it
        send(connection, {"op": "exercise_ended", "exit_code": os.waitstatus_to_exitcode(status),
                          "number": request.get("number")})


def _reset_torch_globals() -> None:
    """Grade as the in-process checks do: a notebook's `torch.set_grad_enabled(False)` at
    the top is for its own cells, not for the grader's calls."""
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)


def _raise_cell_timeout(signum: int, frame: Any) -> None:
    raise CellTimeout


def _silence_and_close_fds(keep: int) -> None:
    """What the learner's code prints goes nowhere; no descriptor of the grader stays open."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def _graders_stand_in() -> types.ModuleType:
    """`graders` is absent from the sandbox; the notebook's `from graders import make_check`
    gets a `check` that does nothing (the grader runs the checks itself)."""
    module = types.ModuleType("graders", "Stand-in: checks are run by the grader, outside the sandbox.")
    module.make_check = lambda chapter: (lambda obj, **variant: None)
    return module


class _Callback:
    """A callable of the grader's (a metric, say), passed to the learner's code: calling it
    asks the grader. Gradients flow through it: when its arguments require grad, the grader
    sends back, with the value, the value's gradient with respect to each of them."""

    def __init__(self, exercise: _Exercise, callback_id: int):
        self._exercise, self._id = exercise, callback_id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value, inputs, gradients = self._exercise.call_back(self._id, args, kwargs)
        if not inputs:
            return value
        return _ComputedByGrader.apply(value, gradients, *inputs)


class _ComputedByGrader(torch.autograd.Function):
    """`value`, as a function of `inputs` whose gradients the grader has worked out."""

    @staticmethod
    def forward(ctx: Any, value: Any, gradients: list, *inputs: Any) -> Any:
        ctx.gradients = gradients
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: Any) -> tuple:
        return (None, None, *(grad_output * gradient for gradient in ctx.gradients))


class _Exercise:
    """Serves the grader's requests about one exercise, in the exercise process."""

    def __init__(self, connection: socket.socket, namespace: dict, limits: Limits, references: list[str]):
        self.connection, self.namespace, self.limits = connection, namespace, limits
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}  # id(object) -> its number, so that an object keeps one reference
        self.references = _importable(references)
        self.reference_code = {code: name for obj, name in self.references.items() for code in _code_of(obj)}
        self.course_code: list[str] = []  # how the graded object uses the course's references

    def serve(self, name: str) -> None:
        self.pid = os.getpid()
        if name in self.namespace:
            self.course_code = _uses_of(self.namespace[name], self.references)
            self.reply({"op": "object", "value": self.namespace[name]})
        else:
            self.reply({"op": "object", "value": None, "missing": True})
        while True:
            request, tensors = receive(self.connection, limit=REQUEST_BYTES)
            op = request.get("op")
            if op == "end":
                return
            try:
                target = self.objects[request["target"]]
                if op == "getattr":
                    result = _attribute(target, request["name"])
                else:
                    args, kwargs = decode(request["arguments"], tensors, self.resolve, accept_modules=True)
                    result = self.run_learner_code(target, args, kwargs)
                self.reply({"op": "result", "value": _listed(result)})
            except LearnerCodeFailed as failed:
                self.reply({"op": "error", "verdict": failed.verdict.value, "message": failed.message})
            except BaseException as error:  # noqa: BLE001 - a learner's attribute or result that cannot travel
                self.reply({"op": "error", "verdict": Verdict.ERROR.value, "message": _describe(error)})

    def run_learner_code(self, target: Callable, args: list, kwargs: dict) -> Any:
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), self.watching_calls():
                return target(*args, **kwargs)
        except NotImplementedError as error:
            stub = stub_name(error)
            if stub is None:
                raise LearnerCodeFailed(Verdict.ERROR, describe_error(error)) from None
            raise LearnerCodeFailed(Verdict.NOT_ATTEMPTED, not_attempted_message(stub)) from None
        except SystemExit as error:
            raise LearnerCodeFailed(Verdict.ERROR, f"Your code called sys.exit({error.code!r}); "
                                          "a function should return its answer, not end the program.") from None
        except BaseException as error:  # noqa: BLE001 - reported to the grader
            raise LearnerCodeFailed(Verdict.ERROR, _describe(error)) from None

    def reply(self, header: dict) -> None:
        if os.getpid() != self.pid:  # a copy of this process, forked by the learner's code, does not speak for it
            os._exit(0)
        value = header.pop("value", None)
        structure, tensors = encode(value, self.reference, limit=self.limits.output_bytes)
        send(self.connection, {**header, "value": structure, "course_code": self.course_code[:20]}, tensors,
             limit=self.limits.output_bytes)

    @contextlib.contextmanager
    def watching_calls(self):
        """Note every call the learner's code makes into the course's references."""
        if not self.reference_code:
            yield
            return

        def watch(frame: types.FrameType, event: str, arg: Any) -> None:
            if event == "call" and frame.f_code in self.reference_code:
                use = f"calls `{self.reference_code[frame.f_code]}`"
                if use not in self.course_code:
                    self.course_code.append(use)

        previous = sys.getprofile()
        sys.setprofile(watch)
        threading.setprofile(watch)
        try:
            yield
        finally:
            if sys.getprofile() is not watch:
                self.course_code.append("switched off the grader's watch on the course's references")
            sys.setprofile(previous)
            threading.setprofile(None)

    def reference(self, obj: Any) -> dict:
        """A learner's object that cannot travel as data: a reference to it, kept here."""
        number = self.ids.get(id(obj))
        if number is None:
            number = self.ids[id(obj)] = len(self.objects)
            self.objects[number] = obj
        kind = ("class" if isinstance(obj, type) else "module" if isinstance(obj, torch.nn.Module)
                else "function" if callable(obj) else "object")
        name = getattr(obj, "__name__", type(obj).__name__)
        return {"__remote__": number, "kind": kind, "name": name if isinstance(name, str) else type(obj).__name__}

    def resolve(self, reference: dict) -> Any:
        if "__remote__" in reference:
            return self.objects[reference["__remote__"]]
        return _Callback(self, reference["__callback__"])

    def call_back(self, callback_id: int, args: tuple, kwargs: dict) -> tuple[Any, list, list]:
        """The grader's function's value on these arguments; the arguments that require grad
        (if grad is enabled) and the value's gradients with respect to them."""
        differentiable: list = []
        structure, tensors = encode([list(args), kwargs], self.reference, limit=self.limits.output_bytes,
                                    differentiable=differentiable if torch.is_grad_enabled() else None)
        send(self.connection, {"op": "callback", "id": callback_id, "arguments": structure,
                               "differentiable": [key for key, _ in differentiable]}, tensors, limit=self.limits.output_bytes)
        reply, tensors = receive(self.connection, limit=REQUEST_BYTES)
        if reply.get("op") != "callback_result":
            raise RuntimeError(reply.get("message", "the grader's function failed"))
        value, gradients = decode(reply["value"], tensors, self.resolve, accept_modules=True)
        if gradients is None:
            return value, [], []
        return value, [tensor for _, tensor in differentiable], gradients


def _describe(error: BaseException) -> str:
    if isinstance(error, WireError):
        return f"Your answer could not be sent back to the grader: {error}"
    return describe_error(error)


def _attribute(target: Any, name: str) -> Any:
    try:
        return getattr(target, name)
    except AttributeError as error:
        if error.__traceback__.tb_next is None:  # not raised by the learner's own code (a property, say)
            raise LearnerCodeFailed(Verdict.ERROR, f"Your code raised AttributeError: {error}") from None
        raise


def _importable(references: list[str]) -> dict[Any, str]:
    """{object: its dotted name} for the course's references ("module:qualname") that the
    learner's process can import: those the learner could copy by subclassing or calling."""
    found = {}
    for reference in references:
        module_name, _, qualname = reference.partition(":")
        with contextlib.suppress(ImportError, AttributeError):
            found[getattr(importlib.import_module(module_name), qualname)] = f"{module_name}.{qualname}"
    return found


def _code_of(obj: Any) -> list[types.CodeType]:
    """The code objects of a function, or of every method and property of a class. A
    decorated reference's own code, not its decorator's: `@torch.no_grad()` wraps every
    function it decorates in one shared code object, which the learner's functions run too."""
    members = vars(obj).values() if isinstance(obj, type) else [obj]
    functions = []
    for member in members:
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, property):
            functions += [member.fget, member.fset]
        else:
            functions.append(member)
    return [inspect.unwrap(f).__code__ for f in functions if isinstance(f, types.FunctionType)]


def _uses_of(obj: Any, references: dict[Any, str]) -> list[str]:
    """How `obj` is, inherits from or wraps one of `references` (a bounded search through
    base classes, wrapped functions, partials, bound methods and closures)."""
    by_id = {id(reference): name for reference, name in references.items()}  # identity: no learner __eq__ runs
    uses, seen, frontier = [], set(), [(obj, "is")]
    while frontier and len(seen) < 1000:
        item, how = frontier.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if id(item) in by_id:
            uses.append(f"{how} `{by_id[id(item)]}`")
            continue
        if isinstance(item, type):
            frontier += [(base, "inherits from") for base in item.__mro__[1:]]
            frontier += [(member, "wraps") for member in vars(item).values()]
            continue
        frontier += [(inner, "wraps") for inner in _wrapped_by(item)]
    return uses


def _wrapped_by(item: Any) -> list[Any]:
    """What a function-like object calls on: a partial's function and arguments, a bound or
    static method's function, a property's accessors, a decorated function's original and
    its closure."""
    if isinstance(item, functools.partial):
        return [item.func, *item.args, *item.keywords.values()]
    if isinstance(item, (types.MethodType, staticmethod, classmethod)):
        return [item.__func__]
    if isinstance(item, property):
        return [item.fget, item.fset]
    if isinstance(item, types.FunctionType):
        cells = []
        for cell in item.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell
                cells.append(cell.cell_contents)
        return [*cells, *([item.__dict__["__wrapped__"]] if "__wrapped__" in item.__dict__ else [])]
    return []


def _listed(result: Any) -> Any:
    """Generators (`named_parameters()`) travel as lists."""
    if inspect.isgenerator(result) or isinstance(result, (map, filter, zip)):
        return list(itertools.islice(result, 100_000))
    return result


if __name__ == "__main__":
    zygote(sys.argv[1])
