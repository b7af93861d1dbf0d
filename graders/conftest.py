"""`pytest graders --submission NOTEBOOK` grades a learner's notebook through pytest.

Without `--submission`, every grader grades the course's own reference solution: the
graders test themselves.
"""

import pytest

from graders import Submission, load_submission


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--submission", metavar="NOTEBOOK", default=None,
        help="a learner's notebook to grade (default: grade the reference solutions)",
    )


@pytest.fixture(scope="session")
def submission(request: pytest.FixtureRequest) -> Submission | None:
    """The learner's notebook, run once for the whole session; None without --submission."""
    path = request.config.getoption("submission")
    return None if path is None else load_submission(path)
