"""Where things are: the checkout's folders, and the course's packages wherever installed.

From a checkout, the repository's folders (`course/`, `solutions/`) sit beside the packages;
an installed course has no checkout, so what grading and the sandbox need is found through
the packages' own locations (`package_dirs`), which hold in both cases.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["REPO_ROOT", "COURSE_DIR", "SOLUTIONS_DIR", "package_dirs"]

#: The checkout this package sits in (from an installed package: the folder of the installed packages).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The student notebooks, which `mi-course start` opens.
COURSE_DIR = REPO_ROOT / "course"
#: The chapters' sources and the nbgrader source notebooks built from them.
SOLUTIONS_DIR = REPO_ROOT / "solutions"


def package_dirs(name: str) -> list[Path]:
    """The folders of the package `name` as this Python imports it; none if it cannot."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(location).resolve() for location in spec.submodule_search_locations]
