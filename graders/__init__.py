"""Graders for the course's exercises: one module per chapter, and the platform they share.

In a chapter's notebook::

    from graders import make_check
    check = make_check("00_transformer_from_scratch")
    check(LayerNorm)  # prints PASS / FAIL / NOT ATTEMPTED / ERROR, with what to fix

From a terminal: `mi-course check NOTEBOOK`, or `pytest graders --submission NOTEBOOK`.
"""

from graders.core import CHAPTERS, Chapter, Exercise, GraderFailure, compare_tensors, load_chapter, make_check
from graders.submission import Submission, load_submission

__all__ = [
    "CHAPTERS", "Chapter", "Exercise", "GraderFailure", "Submission",
    "compare_tensors", "load_chapter", "load_submission", "make_check",
]
