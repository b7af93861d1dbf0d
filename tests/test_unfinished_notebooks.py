"""A released notebook run top to bottom before any exercise is written: every cell that
shows a result built on an exercise stops with "Finish `X` first", never with a raw
`NameError` or `stack expects a non-empty TensorList` far from the cause.

Every chapter: each notebook stops early at each demonstration, so all eight take about
80 s on two cores.
"""

import nbformat
import pytest
from nbclient import NotebookClient

from mi_course.runtime.paths import COURSE_DIR

CHAPTERS = ["00_transformer_from_scratch", "01_three_buckets", "02_induction_heads", "03_indirect_object_identification",
            "04_superposition_and_saes", "05_honest_limits", "06_circuit_discovery",
            "07_attribution_graphs"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_cells_that_need_an_unfinished_exercise_say_which(chapter: str) -> None:
    notebook = nbformat.read(COURSE_DIR / f"{chapter}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(COURSE_DIR)}}).execute()
    errors = [(index, output["ename"], output["evalue"]) for index, cell in enumerate(notebook.cells)
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert errors, "an untouched notebook has no finished exercise: its demonstrations must stop"
    raw = [(index, name, value[:200]) for index, name, value in errors
           if name != "Unfinished" or not value.startswith("Finish `")]
    assert not raw, raw
