"""The learner's side of sandboxed grading: the processes that run a learner's code.

Three kinds of process, each forked from the one before:

* the **zygote**, started once per grading run (`python -m mi_course.learner_process
  SOCKET`): it imports torch, TransformerLens and `toy_models` once, then waits on a
  Unix socket. Each connection is a request for a sandbox; the zygote forks one and
  hands it the connection. It never imports `graders` or `solutions`, so nothing it
  forks holds the references or the hidden tests in memory.
* a **sandbox** per submission: its first process (root, trusted) creates the
  namespaces and the working folder (`mi_course.sandbox`), forks the learner's process
  and waits for it; the learner's process drops its privileges, sets its limits, runs
  the notebook's cells, and then serves the grader.
* an **exercise process** per exercise, forked from the learner's process once the
  notebook has run: it has its own CPU limit, and whatever the learner's code does to
  it (exit, crash, delete its state) costs that exercise alone.

The grader (`mi_course.remote`) sends requests (find this object, call it with these
arguments, read that attribute) and gets answers as plain data (`mi_course.wire`). The
verdict is never decided here.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import itertools
import os
import signal
import socket
import struct
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mi_course.learner_code import describe_error, new_namespace, run_cell, stub_name
from mi_course.sandbox import Limits, apply_limits, isolate, limit_cpu, make_workdir, remove_workdir
from mi_course.wire import MAX_MESSAGE_BYTES, WireError, decode, encode, pack, unpack

__all__ = ["PRELOAD", "send", "receive", "zygote"]

#: What a learner's notebook imports, imported once by the zygote instead of once per sandbox.
PRELOAD = (
    "torch", "einops", "jaxtyping", "numpy", "matplotlib.pyplot", "tqdm.auto", "transformer_lens",
    "transformer_lens.patching", "toy_models", "toy_models.data", "toy_models.train", "toy_models.metrics",
)


# --------------------------------------------------------------------------- framing

def send(sock: socket.socket, header: dict, tensors: dict | None = None, *, limit: int = MAX_MESSAGE_BYTES) -> None:
    message = pack(header, tensors or {}, limit=limit)
    sock.sendall(struct.pack("<Q", len(message)) + message)


def receive(sock: socket.socket, *, limit: int) -> tuple[dict, dict]:
    """The next message; `EOFError` if the other side is gone, `WireError` if it sends
    something malformed or larger than `limit` bytes."""
    (length,) = struct.unpack("<Q", _read_exactly(sock, 8))
    if length > limit:
        raise WireError(f"a message of {length} bytes is larger than the limit of {limit} bytes")
    return unpack(_read_exactly(sock, length))


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, missing = [], n
    while missing:
        chunk = sock.recv(min(missing, 2**20))
        if not chunk:
            raise EOFError("the connection was closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- the zygote

def zygote(address: str) -> None:
    """Import what notebooks need, then fork a sandbox for each connection to `address`."""
    os.environ["MPLBACKEND"] = "Agg"
    for module in PRELOAD:
        importlib.import_module(module)
    import torch

    torch.set_num_threads(1)  # one grading worker per core; and a forked thread pool would hang
    # An optimizer's first step imports torch._dynamo, for seconds: pay that here, once,
    # not in every exercise process.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sandboxes are reaped by the kernel
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
                _sandbox(connection)
            finally:
                os._exit(0)
        connection.close()


def _sandbox(connection: socket.socket) -> None:
    """The sandbox's first process: contain, fork the learner's process, wait for it."""
    request, _ = receive(connection, limit=2**30)
    limits = Limits(**request["limits"])
    isolated, uid = request["isolated"], request["uid"]
    try:
        if isolated:
            isolate([Path(p) for p in request["hidden"]], [Path(p) for p in request["needed"]], limits.scratch_bytes)
        workdir = make_workdir(uid, limits.scratch_bytes, isolated)
    except OSError as error:  # the grader's machine, not the learner, is at fault: say so
        send(connection, {"op": "failed", "message": str(error)})
        return
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        os.read(go_read, 1)  # wait until the grader knows this process's pid
        os.close(go_read)
        try:
            _learner(connection, request["cells"], limits, uid, workdir)
        finally:
            os._exit(0)
    os.close(go_read)
    send(connection, {"op": "started", "pid": pid})
    os.write(go_write, b"x")
    os.close(go_write)
    connection.close()
    os.waitpid(pid, 0)
    remove_workdir(workdir, isolated)


# --------------------------------------------------------------------------- the learner's process

class CellTimeout(BaseException):
    """A notebook cell ran past its time; raised in it by a timer."""


def _learner(connection: socket.socket, cells: list, limits: Limits, uid: int | None, workdir: Path) -> None:
    os.setsid()  # its own process group, which the grader kills when it kills the sandbox
    _silence_and_close_fds(keep=connection.fileno())
    os.chdir(workdir)
    os.environ.update(HOME=str(workdir), TMPDIR=str(workdir))
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
        request, _ = receive(connection, limit=2**30)
        if request.get("op") != "exercise":
            return
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.setpgid(0, 0)  # a group of its own, for whatever processes the learner's code starts
                limit_cpu(limits.exercise_cpu_seconds)
                _Exercise(connection, namespace, limits).serve(request["name"])
            except BaseException:  # noqa: BLE001 - the connection broke, or the learner's code escaped
                code = 70
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _kill_leftovers(pid)
        send(connection, {"op": "exercise_ended", "exit_code": os.waitstatus_to_exitcode(status)})


def _reset_torch_globals() -> None:
    """Grade as the in-process checks do: a notebook's `torch.set_grad_enabled(False)` at
    the top is for its own cells, not for the grader's calls."""
    import torch

    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)


def _kill_leftovers(exercise_pid: int) -> None:
    """Processes the learner's code started in an exercise do not outlive it: as the first
    process of its own process tree (isolated), kill every other; else, the exercise's group."""
    with contextlib.suppress(OSError):
        os.killpg(exercise_pid, signal.SIGKILL)
    if os.getpid() == 1:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # reap them: the first process of a tree inherits orphans
                pass


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
    """`graders` is hidden in the sandbox; the notebook's `from graders import make_check`
    gets a `check` that does nothing (the grader runs the checks itself)."""
    module = types.ModuleType("graders", "Stand-in: checks are run by the grader, outside the sandbox.")
    module.make_check = lambda chapter: (lambda obj, **variant: None)
    return module


class _Callback:
    """A callable of the grader's (a metric, say), passed to the learner's code: calling it
    asks the grader. Gradients flow through it: when its arguments require grad, the grader
    sends back, with the value, the value's gradient with respect to each of them."""

    def __init__(self, exercise: "_Exercise", callback_id: int):
        self._exercise, self._id = exercise, callback_id

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value, inputs, gradients = self._exercise.call_back(self._id, args, kwargs)
        if not inputs:
            return value
        return _ComputedByGrader.apply(value, gradients, *inputs)


def _computed_by_grader() -> type:
    import torch

    class ComputedByGrader(torch.autograd.Function):
        """`value`, as a function of `inputs` whose gradients the grader has worked out."""

        @staticmethod
        def forward(ctx: Any, value: Any, gradients: list, *inputs: Any) -> Any:
            ctx.gradients = gradients
            return value.clone()

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> tuple:
            return (None, None, *(grad_output * gradient for gradient in ctx.gradients))

    return ComputedByGrader


_ComputedByGrader = _computed_by_grader()


class _Exercise:
    """Serves the grader's requests about one exercise, in the exercise process."""

    def __init__(self, connection: socket.socket, namespace: dict, limits: Limits):
        self.connection, self.namespace, self.limits = connection, namespace, limits
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}  # id(object) -> its number, so that an object keeps one reference

    def serve(self, name: str) -> None:
        self.pid = os.getpid()
        if name in self.namespace:
            self.reply({"op": "object", "value": self.namespace[name]})
        else:
            self.reply({"op": "object", "value": None, "missing": True})
        while True:
            request, tensors = receive(self.connection, limit=2**31)
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
            except _LearnerFailed as failed:
                self.reply({"op": "error", "verdict": failed.verdict, "message": failed.message})
            except BaseException as error:  # noqa: BLE001 - a learner's attribute or result that cannot travel
                self.reply({"op": "error", "verdict": "error", "message": _describe(error)})

    def run_learner_code(self, target: Callable, args: list, kwargs: dict) -> Any:
        output = io.StringIO()
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                return target(*args, **kwargs)
        except NotImplementedError as error:
            stub = stub_name(error)
            if stub is None:
                raise _LearnerFailed("error", describe_error(error)) from None
            raise _LearnerFailed("not attempted", stub) from None
        except SystemExit as error:
            raise _LearnerFailed("error", f"Your code called sys.exit({error.code!r}); "
                                          "a function should return its answer, not end the program.") from None
        except BaseException as error:  # noqa: BLE001 - reported to the grader
            raise _LearnerFailed("error", _describe(error)) from None

    def reply(self, header: dict) -> None:
        if os.getpid() != self.pid:  # a copy of this process, forked by the learner's code, does not speak for it
            os._exit(0)
        value = header.pop("value", None)
        structure, tensors = encode(value, self.reference, limit=self.limits.output_bytes)
        send(self.connection, {**header, "value": structure}, tensors, limit=self.limits.output_bytes)

    def reference(self, obj: Any) -> dict:
        """A learner's object that cannot travel as data: a reference to it, kept here."""
        number = self.ids.get(id(obj))
        if number is None:
            number = self.ids[id(obj)] = len(self.objects)
            self.objects[number] = obj
        import torch

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
        import torch

        differentiable: list = []
        structure, tensors = encode([list(args), kwargs], self.reference, limit=self.limits.output_bytes,
                                    differentiable=differentiable if torch.is_grad_enabled() else None)
        send(self.connection, {"op": "callback", "id": callback_id, "arguments": structure,
                               "differentiable": [key for key, _ in differentiable]}, tensors, limit=self.limits.output_bytes)
        reply, tensors = receive(self.connection, limit=2**31)
        if reply.get("op") != "callback_result":
            raise RuntimeError(reply.get("message", "the grader's function failed"))
        value, gradients = decode(reply["value"], tensors, self.resolve, accept_modules=True)
        if gradients is None:
            return value, [], []
        return value, [tensor for _, tensor in differentiable], gradients


class _LearnerFailed(Exception):
    def __init__(self, verdict: str, message: str):
        super().__init__(message)
        self.verdict, self.message = verdict, message


def _describe(error: BaseException) -> str:
    if isinstance(error, WireError):
        return f"Your answer could not be sent back to the grader: {error}"
    return describe_error(error)


def _attribute(target: Any, name: str) -> Any:
    try:
        return getattr(target, name)
    except AttributeError as error:
        if error.__traceback__.tb_next is None:  # not raised by the learner's own code (a property, say)
            raise _LearnerFailed("error", f"Your code raised AttributeError: {error}") from None
        raise


def _listed(result: Any) -> Any:
    """Generators (`named_parameters()`) travel as lists."""
    if inspect.isgenerator(result) or isinstance(result, (map, filter, zip)):
        return list(itertools.islice(result, 100_000))
    return result


if __name__ == "__main__":
    zygote(sys.argv[1])
