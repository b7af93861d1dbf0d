"""Chapter 02, induction heads: one test per exercise."""

import pytest

from graders import Submission, Verdict
from graders.chapter_02 import CHAPTER


@pytest.mark.parametrize("name", CHAPTER.exercises)
def test_exercise(name: str, submission: Submission | None) -> None:
    if submission is None:
        exercise = CHAPTER.exercises[name]
        result = exercise.run(exercise.reference)
    elif submission.chapter != CHAPTER.name:
        pytest.skip(f"the submission is a notebook of chapter {submission.chapter}")
    else:
        result = CHAPTER.grade(name, submission.namespace)
    if result.verdict is not Verdict.PASS:
        pytest.fail(result.summary(), pytrace=False)
