"""The grader's side of sandboxed grading: a learner's notebook running elsewhere, and its
objects as proxies the graders can use as if they were local.

    with Zygote() as zygote:
        sandbox = Sandbox(zygote.address, cells, Limits(), containment, hidden=[...], uid=...)
        with sandbox.exercise("LayerNorm") as LayerNorm:  # a RemoteObject, or None
            result = chapter.exercises["LayerNorm"].run(LayerNorm)

A `RemoteObject` forwards calls and attribute reads to the learner's process and returns
the answers as plain data. Whatever goes wrong on the learner's side (an exception, a
stub, a crash, a timeout, a broken limit) reaches the grader as `LearnerCodeFailed`,
which the graders turn into a verdict with its reason. If the learner's process is gone,
the next exercise starts a new one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from graders.core import LearnerCodeFailed, Verdict, not_attempted_message
from mi_course.learner_process import receive, send
from mi_course.sandbox import Containment, Limits
from mi_course.wire import WireError, decode, encode

__all__ = ["Zygote", "Sandbox", "RemoteObject"]


class Zygote:
    """The process that forks sandboxes (see `mi_course.learner_process`), for one grading run."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="mi-course-zygote-")  # mode 700: the learners' users cannot connect
        self.address = str(Path(self._folder.name) / "zygote.sock")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mi_course.learner_process", self.address],
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


class Sandbox:
    """One learner's notebook, loaded in a contained process; restarted after a fatal exercise."""

    def __init__(self, zygote_address: str, cells: list[tuple[int, str]], limits: Limits, containment: Containment,
                 *, hidden: list[Path], uid: int | None):
        self.zygote_address, self.cells, self.limits, self.containment = zygote_address, cells, limits, containment
        self.hidden, self.uid = hidden, uid
        self.connection: socket.socket | None = None
        self.pid: int | None = None
        self.cell_errors: list[tuple[int, str]] = []
        self.events: list[str] = []  # containment events, for the feedback
        self._time_left = limits.exercise_seconds
        self.broken: LearnerCodeFailed | None = None

    # ----------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Fork a sandbox and run the notebook in it; `LearnerCodeFailed` if it does not finish."""
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.connection.connect(self.zygote_address)
        needed = sorted({Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parent.parent,
                         *map(Path, filter(None, sys.path))})
        self._send({
            "op": "spawn", "cells": self.cells, "limits": asdict(self.limits), "isolated": self.containment.isolated,
            "uid": self.uid, "hidden": [str(p) for p in self.hidden], "needed": [str(p) for p in needed],
        })
        try:
            self.pid = self._expect("started", timeout=30)[0]["pid"]
            loaded, _ = self._expect("loaded", timeout=self.limits.notebook_seconds, timed_out=(
                f"Your notebook's code did not finish running within {self.limits.notebook_seconds:g} s."))
        except LearnerCodeFailed as failed:
            self.broken = failed  # running the notebook again would fail again
            raise
        self.cell_errors = [(int(index), str(error)[:1000]) for index, error in loaded.get("cell_errors", [])]

    def stop(self) -> None:
        """Kill the learner's process and every process it started."""
        if self.pid is not None:
            for kill in (os.kill, os.killpg):  # its process tree (isolated) or its process group
                with contextlib.suppress(OSError):
                    kill(self.pid, signal.SIGKILL)
        if self.connection is not None:
            self.connection.close()
        self.connection = self.pid = None

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
        self._send({"op": "exercise", "name": name})
        reply, tensors = self._expect("object", timeout=self._time_left)
        try:
            yield None if reply.get("missing") else self._result(reply, tensors)
        except BaseException:
            self.stop()
            raise
        if self.connection is not None:  # still alive after the grading: end the exercise process
            with contextlib.suppress(LearnerCodeFailed):  # the verdict stands; the next exercise gets a new sandbox
                self._send({"op": "end"})
                self._expect("exercise_ended", timeout=5)

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
            elif op == "error":
                verdict = Verdict.NOT_ATTEMPTED if reply.get("verdict") == "not attempted" else Verdict.ERROR
                message = str(reply.get("message", ""))[:5000]
                raise LearnerCodeFailed(verdict, not_attempted_message(message) if verdict is Verdict.NOT_ATTEMPTED else message)
            else:
                self._gone(reply)

    def _answer_callback(self, callback: Callable, request: dict, tensors: dict) -> None:
        """Run a grader's function the learner's code called; with the gradients of its
        value with respect to the arguments that require grad on the learner's side."""
        differentiable = [tensors[key].requires_grad_(True) for key in request.get("differentiable", [])
                          if key in tensors and tensors[key].is_floating_point()]
        args, kwargs = decode(request["arguments"], tensors, self._incoming)
        try:
            with torch.enable_grad():
                value = callback(*args, **kwargs)
                gradients = None
                if differentiable and isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1:
                    found = torch.autograd.grad(value, differentiable, allow_unused=True)
                    gradients = [torch.zeros_like(x) if g is None else g for x, g in zip(differentiable, found)]
        except Exception as error:  # noqa: BLE001 - learner code called a grader's function wrongly
            self._send({"op": "callback_error", "message": f"{type(error).__name__}: {error}"})
            return
        structure, out = encode((value, gradients), lambda obj: self._outgoing(obj, {}))
        self._send({"op": "callback_result", "value": structure}, out)

    def _result(self, reply: dict, tensors: dict) -> Any:
        try:
            return decode(reply.get("value"), tensors, self._incoming)
        except (WireError, KeyError, TypeError, ValueError) as error:
            raise LearnerCodeFailed(Verdict.ERROR, f"Your code's answer could not be read: {error}") from None

    def _incoming(self, reference: dict) -> RemoteObject:
        if "__remote__" not in reference:
            raise WireError("the learner's process sent a callback reference")
        return RemoteObject(self, int(reference["__remote__"]), str(reference.get("kind")), str(reference.get("name")))

    def _outgoing(self, obj: Any, callbacks: dict[int, Callable]) -> dict:
        if isinstance(obj, RemoteObject):
            if obj._sandbox is not self:
                raise WireError("a remote object of another sandbox")
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
            self._fail("The learner's process ended without an answer.")

    def _expect(self, op: str, *, timeout: float, timed_out: str | None = None) -> tuple[dict, dict]:
        reply, tensors = self._receive(timeout=timeout, timed_out=timed_out)
        if reply.get("op") != op:
            self._gone(reply)
        return reply, tensors

    def _receive(self, *, timeout: float, timed_out: str | None = None) -> tuple[dict, dict]:
        self.connection.settimeout(max(timeout, 0.001))
        started = time.monotonic()
        try:
            return receive(self.connection, limit=self.limits.output_bytes + 2**20)
        except TimeoutError:
            reason = timed_out or (f"Your code ran for more than {self.limits.exercise_seconds:g} s in this exercise "
                                   "and was stopped: an infinite loop, or far more work than the exercise needs?")
        except EOFError:
            reason = "The learner's process ended without an answer."
        except WireError as error:
            reason = f"Your code's answer could not be read: {error}"
        finally:
            self._time_left -= time.monotonic() - started
        self._fail(reason)

    def _gone(self, reply: dict) -> None:
        """The exercise process ended (or sent nonsense) where an answer was expected."""
        if reply.get("op") == "failed":
            self.stop()
            raise RuntimeError(f"The grader could not set up a sandbox: {reply.get('message')}")
        if reply.get("op") == "exercise_ended":
            self._fail(_exit_reason(reply.get("exit_code"), self.limits))
        self._fail(f"The learner's process sent {str(reply.get('op'))[:40]!r} where an answer was expected.")

    def _fail(self, reason: str) -> None:
        self.events.append(reason)
        self.stop()
        raise LearnerCodeFailed(Verdict.ERROR, reason)


class RemoteObject:
    """A learner's class, function or object, living in the learner's process."""

    def __init__(self, sandbox: Sandbox, number: int, kind: str, name: str):
        self._sandbox, self._id, self.remote_kind, self._name = sandbox, number, kind, name

    @property
    def __name__(self) -> str:  # noqa: A003 - graders name exercises by the object's __name__
        return self._name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sandbox.call(self._id, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._sandbox.getattr(self._id, name)

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
