"""The grader's side of sandboxed grading: a learner's notebook running elsewhere, and its
objects as proxies the graders can use as if they were local.

    with Zygote() as zygote:
        notebook = LearnerNotebook(zygote.address, cells, Limits(), containment, hidden=(...), uid=..., references={...})
        with notebook.exercise("LayerNorm") as LayerNorm:  # a RemoteObject, or None
            result = chapter.exercises["LayerNorm"].run(LayerNorm)

A `RemoteObject` forwards calls and attribute reads to the learner's process and returns
the answers as plain data. Whatever goes wrong on the learner's side (an exception, a
stub, a crash, a timeout, a broken limit, a message out of step or malformed) reaches the
grader as `LearnerCodeFailed`, which the graders turn into a verdict with its reason. Two
channels per sandbox: the learner's socket carries only answers, to be checked; how the
learner's process ended comes from its supervisor, on a socket the learner cannot reach.
If the learner's process had to be killed, the next exercise starts a new one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mi_course.runtime.containment import Containment, IsolatedView, IsolationFailed, Limits
from mi_course.runtime.verdicts import LearnerCodeFailed, Verdict
from mi_course.runtime.wire import WireError, decode, encode, receive, send

__all__ = ["Zygote", "LearnerNotebook", "RemoteObject"]


class Zygote:
    """The process that forks sandboxes (see `mi_course.runtime.learner_process`), for one grading run."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="mi-course-zygote-")  # mode 700: the learners' users cannot connect
        self.address = str(Path(self._folder.name) / "zygote.sock")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mi_course.runtime.learner_process", self.address],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        if self._process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the grader's learner-process zygote did not start")

    def close(self) -> None:
        self._process.kill()
        self._process.wait()
        self._folder.cleanup()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LearnerNotebook:
    """One learner's notebook, loaded in a contained process, for as long as its student is
    graded: exercises that crash or exit cost themselves only; a process that had to be
    killed is replaced, at most `Limits.reloads` times, within `Limits.student_seconds`."""

    def __init__(self, zygote_address: str, cells: list[tuple[int, str]], limits: Limits, containment: Containment,
                 *, hidden: tuple[Path, ...], uid: int | None, references: Mapping[str, list[str]]):
        self.zygote_address, self.cells, self.limits, self.containment = zygote_address, cells, limits, containment
        self.hidden, self.uid, self.references = hidden, uid, references
        self.view: IsolatedView | None = None
        self.control: socket.socket | None = None  # to the trusted supervisor
        self.connection: socket.socket | None = None  # to the learner's process
        self.cell_errors: list[tuple[int, str]] = []
        self.events: list[str] = []  # containment events, for the feedback
        self.loads = 0
        self.deadline = time.monotonic() + limits.student_seconds
        self._time_left = limits.exercise_seconds
        self.exercise_over = False  # its process ended on its own
        self.exercises = 0  # asked for so far: each exercise's end names its number
        self.broken: LearnerCodeFailed | None = None

    # ----------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Build a sandbox and run the notebook in it; `LearnerCodeFailed` if it does not finish."""
        if self.loads > self.limits.reloads:
            self.broken = LearnerCodeFailed(Verdict.ERROR, (
                f"Your notebook's process had to be stopped {self.loads} times, so the remaining exercises were "
                "not graded: see the exercises above for what stopped it."))
            raise self.broken
        self.loads += 1
        try:
            if self.containment.isolated:
                self.view = IsolatedView(as_root=self.containment.as_root, scratch_bytes=self.limits.scratch_bytes,
                                         hidden=self.hidden)
            self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.control.connect(self.zygote_address)
            send(self.control, {"cells": self.cells, "limits": asdict(self.limits), "uid": self.uid,
                                "holder_pid": None if self.view is None else self.view.pid})
            self.control.settimeout(30)
            kind, handles, _, _ = socket.recv_fds(self.control, 1, 1)
            if kind != b"S" or len(handles) != 1:
                message = receive(self.control, limit=2**20)[0].get("message") if kind == b"F" else "no answer"
                raise IsolationFailed(str(message))
        except (OSError, EOFError, WireError) as error:
            self.stop()
            self.broken = LearnerCodeFailed(Verdict.ERROR, (
                f"The grader could not build a sandbox for this notebook ({str(error)[:300]}); the instructor "
                "should check that bubblewrap works (`bwrap --version`) and grade again."))
            raise self.broken from None
        self.connection = socket.socket(fileno=handles[0])
        try:
            loaded, _ = self._expect("loaded", timeout=self.limits.notebook_seconds, timed_out=(
                f"Your notebook's code did not finish running within {self.limits.notebook_seconds:g} s."))
        except LearnerCodeFailed as failed:
            self.broken = failed  # running the notebook again would fail again
            raise
        errors = loaded.get("cell_errors")
        self.cell_errors = [(int(e[0]), str(e[1])[:1000]) for e in errors[:200] if _is_cell_error(e)] if isinstance(
            errors, list) else []

    def stop(self) -> None:
        """End the learner's process and every process it started."""
        for channel in (self.connection, self.control):
            if channel is not None:
                channel.close()
        if self.view is not None:
            self.view.close()  # the sandbox's first process: the kernel kills every other with it
        self.connection = self.control = self.view = None

    @contextlib.contextmanager
    def exercise(self, name: str) -> Iterator[RemoteObject | None]:
        """The learner's object called `name` (None if the notebook defines none), for as
        long as the block grades it, in a fresh exercise process. Raises `LearnerCodeFailed`
        if the notebook cannot be loaded or the exercise process does not start."""
        if self.broken is not None:
            raise self.broken
        if self.connection is None:
            self.start()
        self._time_left = self.limits.exercise_seconds  # the learner's share: waiting for its answers
        self.exercise_over = False
        self.exercises += 1
        self._send({"op": "exercise", "name": name, "references": self.references.get(name, []),
                    "number": self.exercises})
        reply, tensors = self._expect("object", timeout=self._time_left)
        try:
            yield None if reply.get("missing") else self._result(reply, tensors)
        finally:
            if self.connection is not None and not self.exercise_over:  # end the exercise process, keep the notebook
                try:
                    self._send({"op": "end"})
                    self._expect("exercise_ended", timeout=5)
                except LearnerCodeFailed:
                    pass  # the verdict stands; the next exercise gets a new sandbox

    # ----------------------------------------------------------------- requests

    def call(self, target: int, args: tuple, kwargs: dict) -> Any:
        callbacks: dict[int, Callable] = {}
        structure, tensors = encode([list(args), kwargs], lambda obj: self._outgoing(obj, callbacks))
        return self._request({"op": "call", "target": target, "arguments": structure}, tensors, callbacks)

    def getattr(self, target: int, name: str) -> Any:
        return self._request({"op": "getattr", "target": target, "name": name}, {}, {})

    def _request(self, header: dict, tensors: dict, callbacks: dict[int, Callable]) -> Any:
        if self.connection is None:
            raise LearnerCodeFailed(Verdict.ERROR, "The learner's process is gone.")
        self._send(header, tensors)
        while True:
            reply, reply_tensors = self._receive(timeout=self._time_left)
            op = reply.get("op")
            if op == "callback" and reply.get("id") in callbacks:
                self._answer_callback(callbacks[reply["id"]], reply, reply_tensors)
            elif op == "result":
                return self._result(reply, reply_tensors)
            elif op == "error":  # the learner's side may say "not attempted" (a stub), never more
                verdict = Verdict.NOT_ATTEMPTED if reply.get("verdict") == Verdict.NOT_ATTEMPTED.value else Verdict.ERROR
                raise LearnerCodeFailed(verdict, str(reply.get("message", ""))[:5000])
            else:
                self._out_of_step(reply)

    def _answer_callback(self, callback: Callable, request: dict, tensors: dict) -> None:
        """Run a grader's function the learner's code called; with the gradients of its
        value with respect to the arguments that require grad on the learner's side."""
        try:
            differentiable = [tensors[key].requires_grad_(True) for key in request.get("differentiable", [])
                              if key in tensors and tensors[key].is_floating_point()]
            args, kwargs = decode(request["arguments"], tensors, self._incoming)
        except (WireError, KeyError, TypeError, AttributeError) as error:
            self._fail(f"Your code's call of a grader's function could not be read: {str(error)[:300]}")
        try:
            with torch.enable_grad():
                value = callback(*args, **kwargs)
                gradients = None
                if differentiable and isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1:
                    found = torch.autograd.grad(value, differentiable, allow_unused=True)
                    gradients = [torch.zeros_like(x) if g is None else g for x, g in zip(differentiable, found)]
        except Exception as error:  # noqa: BLE001 - learner code called a grader's function wrongly
            self._send({"op": "callback_error", "message": f"{type(error).__name__}: {error}"[:2000]})
            return
        structure, out = encode((value, gradients), lambda obj: self._outgoing(obj, {}))
        self._send({"op": "callback_result", "value": structure}, out)

    def _result(self, reply: dict, tensors: dict) -> Any:
        uses = reply.get("course_code")
        if uses:
            raise LearnerCodeFailed(Verdict.FAIL, (
                "Your code uses the course's own reference solution: it "
                + "; ".join(str(use)[:200] for use in (uses if isinstance(uses, list) else [uses])[:5])
                + ". Graded code must be your own: write it from torch and nn.Module, as the exercise asks."))
        try:
            return decode(reply.get("value"), tensors, self._incoming)
        except (WireError, KeyError, TypeError, ValueError) as error:
            raise LearnerCodeFailed(Verdict.ERROR, f"Your code's answer could not be read: {error}") from None

    def _incoming(self, reference: dict) -> RemoteObject:
        if "__remote__" not in reference:
            raise WireError("the learner's process sent a callback reference")
        return RemoteObject(self, int(reference["__remote__"]), str(reference.get("kind"))[:20],
                            str(reference.get("name"))[:200])

    def _outgoing(self, obj: Any, callbacks: dict[int, Callable]) -> dict:
        if isinstance(obj, RemoteObject):
            if obj._notebook is not self:
                raise WireError("a remote object of another notebook")
            return {"__remote__": obj._id}
        if callable(obj):
            callbacks[len(callbacks)] = obj
            return {"__callback__": len(callbacks) - 1}
        raise WireError(f"cannot send an object of type {type(obj).__name__} to the learner's process")

    # ----------------------------------------------------------------- replies

    def _send(self, header: dict, tensors: dict | None = None) -> None:
        try:
            send(self.connection, header, tensors)
        except OSError:
            self._fail(self._ended())

    def _expect(self, op: str, *, timeout: float, timed_out: str | None = None) -> tuple[dict, dict]:
        reply, tensors = self._receive(timeout=timeout, timed_out=timed_out)
        if reply.get("op") != op:
            self._out_of_step(reply)
        return reply, tensors

    def _receive(self, *, timeout: float, timed_out: str | None = None) -> tuple[dict, dict]:
        """The learner's next message, within `timeout` seconds and the student's budget.
        The supervisor's word that the learner's process ended is taken on its own channel."""
        budget = self.deadline - time.monotonic()
        wait = max(min(timeout, budget), 0.001)
        started = time.monotonic()
        try:
            readable, _, _ = select.select([self.connection, self.control], [], [], wait)
            if self.connection in readable:
                self.connection.settimeout(max(wait - (time.monotonic() - started), 0.001))
                return receive(self.connection, limit=self.limits.output_bytes + 2**20)
            if self.control in readable:
                reason = self._ended()
            elif budget <= timeout:
                reason = (f"Your notebook used up the {self.limits.student_seconds:g} s its whole grading may take; "
                          "the remaining exercises were not graded.")
            else:
                reason = timed_out or (f"Your code ran for more than {self.limits.exercise_seconds:g} s in this "
                                       "exercise and was stopped: an infinite loop, or far more work than it needs?")
        except TimeoutError:
            reason = timed_out or "Your code sent part of an answer and then stopped."
        except EOFError:
            reason = self._ended()
        except WireError as error:
            reason = f"Your code's answer could not be read: {error}"
        finally:
            self._time_left -= time.monotonic() - started
        self._fail(reason)

    def _ended(self) -> str:
        """Why the learner's process ended, as its supervisor saw it."""
        try:
            self.control.settimeout(2)
            status = receive(self.control, limit=2**16)[0].get("status")
        except (OSError, EOFError, WireError, AttributeError):
            status = None
        return _exit_reason(status, self.limits)

    def _out_of_step(self, reply: dict) -> None:
        """The learner's process sent something other than the answer asked for."""
        if reply.get("op") == "exercise_ended" and reply.get("number") == self.exercises:  # the notebook's lives on
            self.exercise_over = True
            reason = _exit_reason(reply.get("exit_code"), self.limits)
            self.events.append(reason)
            raise LearnerCodeFailed(Verdict.ERROR, reason)
        self._fail(f"The learner's process sent {str(reply.get('op'))[:40]!r} where an answer was expected.")

    def _fail(self, reason: str) -> None:
        self.events.append(reason)
        self.stop()
        raise LearnerCodeFailed(Verdict.ERROR, reason)


def _is_cell_error(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and not isinstance(entry[0], bool)


class RemoteObject:
    """A learner's class, function or object, living in the learner's process."""

    def __init__(self, notebook: LearnerNotebook, number: int, kind: str, name: str):
        self._notebook, self._id, self.remote_kind, self._name = notebook, number, kind, name

    @property
    def __name__(self) -> str:  # noqa: A003 - graders name exercises by the object's __name__
        return self._name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._notebook.call(self._id, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._notebook.getattr(self._id, name)

    def __repr__(self) -> str:
        return f"<learner's {self.remote_kind} {self._name}>"


def _exit_reason(code: Any, limits: Limits) -> str:
    if not isinstance(code, int):
        return "The learner's process ended without an answer."
    if code == -signal.SIGXCPU:
        return f"Your code used more than {limits.exercise_cpu_seconds} s of CPU time and was stopped."
    if code == -signal.SIGKILL:
        return "Your code's process was killed, most likely for using too much memory."
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"Your code crashed the Python process ({name}{', a segmentation fault' if name == 'SIGSEGV' else ''})."
    return f"Your code ended the Python process (exit status {code}, e.g. os._exit) instead of returning an answer."
