"""What grading gives back: an exercise's `Result`, and a student's `StudentGrade` holding them.

Both travel as JSON (`to_json`, `from_json`): `mi-course grade` saves each student's grade
and reads it back on the next run. A saved file may have been written by anyone who could
write to the results folder, so `from_json` takes nothing on trust: a file that is not
exactly what `to_json` writes (each field there, of its type, and no other) is refused, and
what `reporting` and the gradebook then read cannot fail on a wrong type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mi_course.runtime.verdicts import Verdict

__all__ = ["Result", "StudentGrade"]

_NUMBER = (int, float)


@dataclass(frozen=True)
class Result:
    exercise: str
    verdict: Verdict
    points: float  # awarded
    max_points: float
    message: str = ""  # empty on PASS
    hint: str = ""
    #: It failed under a hidden variant (not the notebook's visible test), which the message names: an
    #: export that shows results before the deadline (Gradescope's) holds that message back until then.
    hidden_variant: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}

    @classmethod
    def from_json(cls, data: object) -> Result:
        """The result `to_json` wrote; ValueError if `data` is anything else."""
        _require_fields(data, _RESULT_FIELDS)
        if data["verdict"] not in _VERDICTS:
            raise ValueError(f"unknown verdict {str(data['verdict'])[:40]!r}")
        return cls(**{**data, "verdict": Verdict(data["verdict"])})


@dataclass
class StudentGrade:
    student: str
    chapter: str
    score: float
    max_score: float
    results: list[Result]
    problems: list[str] = field(default_factory=list)  # about the notebook itself
    cell_errors: list[tuple[int, str]] = field(default_factory=list)  # (cell index, error)
    events: list[str] = field(default_factory=list)  # containment events
    sandbox: str = ""  # the containment mode: "isolated", "limits only", ...
    containment: str = ""  # what that meant, in words
    fingerprint: str = ""  # notebook + graders + limits: results are reused while it holds
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "results": [result.to_json() for result in self.results],
                "cell_errors": [list(error) for error in self.cell_errors]}

    @classmethod
    def from_json(cls, data: object) -> StudentGrade:
        """The grade `to_json` wrote; ValueError if `data` is anything else."""
        _require_fields(data, _GRADE_FIELDS)
        if not all(isinstance(text, str) for text in [*data["problems"], *data["events"]]):
            raise ValueError("a problem or an event that is not text")
        if not all(isinstance(error, list) and len(error) == 2 and type(error[0]) is int and isinstance(error[1], str)
                   for error in data["cell_errors"]):
            raise ValueError("a cell error that is not [cell index, text]")
        return cls(**{**data, "results": [Result.from_json(result) for result in data["results"]],
                      "cell_errors": [(index, error) for index, error in data["cell_errors"]]})


_VERDICTS = {verdict.value for verdict in Verdict}
#: Each field of a saved Result and StudentGrade, with its type as JSON gives it back.
_RESULT_FIELDS = {"exercise": str, "verdict": str, "points": _NUMBER, "max_points": _NUMBER, "message": str,
                  "hint": str, "hidden_variant": bool}
_GRADE_FIELDS = {"student": str, "chapter": str, "score": _NUMBER, "max_score": _NUMBER, "results": list,
                 "problems": list, "cell_errors": list, "events": list, "sandbox": str, "containment": str,
                 "fingerprint": str, "seconds": _NUMBER}


def _require_fields(data: object, fields: dict[str, type | tuple[type, ...]]) -> None:
    """ValueError unless `data` is a dict of exactly these fields, each of its type."""
    if not (isinstance(data, dict) and data.keys() == fields.keys()
            and all(isinstance(data[name], kind) for name, kind in fields.items())):
        raise ValueError(f"not a saved {', '.join(fields)} record")
