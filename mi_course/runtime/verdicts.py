"""The four verdicts on an exercise, and the error that carries one out of learner code.

Both sides of sandboxed grading use them: the learner's process says why it gave no answer
(a stub, an error), and the grader's side turns that into a verdict. Only the grader
decides a PASS or a FAIL.
"""

from __future__ import annotations

import enum

__all__ = ["Verdict", "LearnerCodeFailed", "not_attempted_message"]


class Verdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_ATTEMPTED = "not attempted"
    ERROR = "error"


class LearnerCodeFailed(Exception):
    """The learner's code did not give an answer: it raised, was a stub, or (run in a
    sandbox) broke a limit. Carries the verdict and the message to report."""

    def __init__(self, verdict: Verdict, message: str):
        super().__init__(message)
        self.verdict, self.message = verdict, message


def not_attempted_message(stub: str) -> str:
    return f"`{stub}` still raises NotImplementedError: replace the stub with your code."
