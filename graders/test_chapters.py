"""One pytest test per exercise of every chapter: `pytest graders [--submission NOTEBOOK]`.

With a submission, only its chapter's exercises run (the others are skipped); without
one, every grader grades the course's own reference.
"""

import pytest

from graders import CHAPTERS, Submission, load_chapter
from graders.reporting import summary
from mi_course.runtime.verdicts import Verdict

EXERCISES = [(chapter, name) for chapter in CHAPTERS for name in load_chapter(chapter).exercises]


@pytest.mark.parametrize("chapter_name, name", EXERCISES, ids=[f"{chapter}:{name}" for chapter, name in EXERCISES])
def test_exercise(chapter_name: str, name: str, submission: Submission | None) -> None:
    chapter = load_chapter(chapter_name)
    if submission is None:
        exercise = chapter.exercises[name]
        result = exercise.run(exercise.reference)
    elif submission.chapter != chapter.name:
        pytest.skip(f"the submission is a notebook of chapter {submission.chapter}")
    else:
        result = chapter.grade(name, submission.namespace)
    if result.verdict is not Verdict.PASS:
        pytest.fail(summary(result), pytrace=False)
