"""A chapter's own demonstration cells, run here, so that a test asserts a figure's caption
on the very data the figure plots, without a second copy of the code that makes it.

``run_cells("05_honest_limits", through="def induction_circuit_of")`` runs the code cells of
the literate source in order, from the first through the first cell that contains the
marker, in one namespace, and returns it. The exercise cells import the references, as in
the solution notebook; figures are drawn on a non-interactive backend and closed.
"""

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported by any cell

import jupytext  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from mi_course.runtime.paths import SOLUTIONS_DIR  # noqa: E402


def run_cells(chapter: str, through: str) -> dict:
    cells = [cell for cell in jupytext.read(SOLUTIONS_DIR / f"{chapter}.py", fmt="py:percent").cells
             if cell.cell_type == "code"]
    last = next((index for index, cell in enumerate(cells) if through in cell.source), None)
    assert last is not None, f"{chapter}: no code cell contains {through!r}"
    namespace: dict = {"__name__": f"chapter_{chapter}"}
    for cell in cells[: last + 1]:
        exec(compile(cell.source, f"<{chapter} cell>", "exec"), namespace)  # noqa: S102 - the chapter's own code
        plt.close("all")
    return namespace
