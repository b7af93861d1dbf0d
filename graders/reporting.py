"""Results as text, in the four places a learner reads them.

* `summary`: one exercise's verdict, as the notebook's `check(...)` prints it;
* `notebook_report`: a whole notebook's table and score, as `mi-course check` prints it;
* `feedback`: a student's Markdown feedback file, as `mi-course grade` writes it;
* `gradescope_results`: a student's results in Gradescope's `results.json` format.

The feedback is read by someone other than the student whose code wrote much of its text
(error messages, names), so there every text is escaped (`_escape_inline`), fenced
(`_fenced`) or a code span (`_code`), and cut to size: none can write Markdown of its own,
such as a points line, a table row or a heading. Gradescope is told to show every text as
plain text (no HTML or Markdown is rendered), and each is cut to size there too.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from graders.results import Result, StudentGrade
from mi_course.runtime.verdicts import Verdict

__all__ = ["MAX_MESSAGE_CHARS", "MAX_FEEDBACK_BYTES", "summary", "notebook_report", "feedback",
           "gradescope_results"]

#: The first line of each message in `mi-course check`'s table is shortened to this width.
MESSAGE_WIDTH = 72
#: The learner writes the messages of the feedback: each is cut to this many characters, the file to this many bytes.
MAX_MESSAGE_CHARS = 4000
MAX_FEEDBACK_BYTES = 64 * 2**10


def summary(result: Result) -> str:
    """A one-line verdict, then (unless it passed) the details and the hint."""
    head = f"{result.verdict.value.upper()}: {result.exercise} ({result.points:g}/{result.max_points:g} points)"
    if result.verdict is Verdict.PASS:
        return head
    lines = [head, *("    " + line for line in result.message.splitlines())]
    if result.hint:
        lines.append(f"    Hint: {result.hint}")
    return "\n".join(lines)


def notebook_report(name: str, chapter: str, results: Sequence[Result],
                    cell_errors: Sequence[tuple[int, str]]) -> str:
    """A table of exercises, points, verdicts and the first line of each message, the total
    score, then the full message and hint of each exercise that failed or raised an error,
    and the cells that raised an error while the notebook ran."""
    rows = [("exercise", "points", "verdict", "message")]
    for result in results:
        first_line = result.message.splitlines()[0] if result.message else ""
        rows.append((result.exercise, f"{result.points:g}/{result.max_points:g}", result.verdict.value,
                     textwrap.shorten(first_line, MESSAGE_WIDTH, placeholder=" ...")))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"{name} (chapter {chapter})", ""]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    score = sum(result.points for result in results)
    lines += ["", f"Score: {score:g} / {sum(result.max_points for result in results):g}"]

    for result in results:
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            lines += ["", summary(result)]
    # A stub raising NotImplementedError is already reported as "not attempted".
    broken = [(cell, error) for cell, error in cell_errors if not error.startswith("NotImplementedError")]
    if broken:
        lines += ["", "Cells that raised an error while the notebook ran (what they define may be missing):"]
        lines += [f"  cell {cell}: {textwrap.shorten(error, 100, placeholder=' ...')}" for cell, error in broken]
    return "\n".join(lines)


def feedback(grade: StudentGrade) -> str:
    """A student's feedback, as Markdown, with every text of theirs escaped (see the module's doc)."""
    text = _escape_inline
    blocks = [f"# Feedback: {text(grade.chapter)}",
              f"**{text(grade.student)}**: {grade.score:g} / {grade.max_score:g} points"]
    # one block per item: a notebook of many failing cells makes a long list, which the cut may shorten
    if grade.problems:
        blocks += ["## About the notebook", *(f"- {text(problem)}" for problem in grade.problems)]
    if grade.cell_errors:
        blocks += ["## Cells that raised an error when the notebook was run",
                   *(f"- cell {index}: {text(error)}" for index, error in grade.cell_errors)]
    blocks += ["## Exercises", "\n".join([
        "| exercise | points | verdict |", "|---|---|---|",
        *(f"| {_code(r.exercise)} | {r.points:g} / {r.max_points:g} | {text(r.verdict.value)} |"
          for r in grade.results)])]
    for result in grade.results:
        if result.verdict is not Verdict.PASS:
            blocks.append(f"### {_code(result.exercise)}: {text(result.verdict.value)}")
            blocks += [_fenced(result.message)] if result.message else []
            blocks += [f"Hint: {text(result.hint)}"] if result.hint else []
    if grade.events:
        blocks += ["## Stopped by the sandbox", *(f"- {text(event)}" for event in grade.events)]
    blocks.append(f"_Graded in a sandbox ({text(grade.containment)})._")
    return _within(blocks, MAX_FEEDBACK_BYTES)


#: What a visible Gradescope test says of a failure under a hidden variant, whose details wait for the grades.
HIDDEN_VARIANT_NOTE = ("It passed the notebook's visible test and failed one of the graded notebook's hidden tests "
                       "(`check` in your notebook runs them all, and says which). Here, what went wrong and with which "
                       "variant is shown once the grades are published.")


def gradescope_results(grade: StudentGrade) -> dict[str, Any]:
    """A student's grade as Gradescope's autograder `results.json`, in its documented keys only
    (https://gradescope-autograders.readthedocs.io/en/latest/specs/): the notes about the notebook
    as the overall output, then the exercises' tests (`_gradescope_tests`). Every text is shown as
    plain text ("text" format: no HTML or Markdown rendered), since the learner's code wrote some."""
    notes = [*grade.problems, *(f"cell {index}: {error}" for index, error in grade.cell_errors),
             *(f"Stopped by the sandbox: {event}" for event in grade.events), f"Graded in a sandbox ({grade.containment})."]
    return {"score": grade.score, "execution_time": round(grade.seconds),
            "output": _within([_cut(note) for note in notes], MAX_FEEDBACK_BYTES),
            "output_format": "text", "test_output_format": "text", "test_name_format": "text",
            "visibility": "visible", "stdout_visibility": "hidden",  # stdout is the grader's log, for the instructor
            "tests": [test for result in grade.results for test in _gradescope_tests(result)]}


def _gradescope_tests(result: Result) -> list[dict[str, Any]]:
    """One visible test for the exercise, saying what `summary` says; and where it failed under a
    hidden variant, a second, scoreless test that holds that failure's message (which names the
    variant) back until the grades are published: before the deadline it would tell what the
    hidden tests are."""
    shown = replace(result, message=HIDDEN_VARIANT_NOTE if result.hidden_variant else _cut(result.message))
    tests = [{"name": result.exercise, "score": result.points, "max_score": result.max_points,
              "status": "passed" if result.verdict is Verdict.PASS else "failed",
              "output": summary(shown), "visibility": "visible"}]
    if result.hidden_variant:
        tests.append({"name": f"{result.exercise}: the hidden test it failed", "status": "failed",
                      "output": _cut(result.message), "visibility": "after_published"})
    return tests


#: The characters that can start Markdown (emphasis, code, links, HTML, entities, headings, lists, table
#: cells, strikethrough), each of which a backslash makes literal (CommonMark).
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~&])")


def _escape_inline(text: str) -> str:
    """`text` as Markdown that shows as it is and writes no markup: on one line (a line of its own
    could start a heading, a list or a table row), with every character of Markdown's escaped."""
    return _MARKDOWN.sub(r"\\\1", " ".join(_cut(text).split()))


def _code(name: str) -> str:
    """`name` as a code span, shown as it is: on one line, between runs of backticks longer than any
    in it, and with `|` escaped, which a table cell needs even in a code span (GFM)."""
    name = " ".join(_cut(name).split()).replace("|", "\\|")
    ticks = "`" * (1 + max(map(len, re.findall("`+", name)), default=0))
    # a space pads a name that starts or ends with a backtick, which would join the fence; one is taken off each side
    return f"{ticks} {name} {ticks}" if name.startswith("`") or name.endswith("`") else f"{ticks}{name}{ticks}"


def _fenced(text: str) -> str:
    """`text` as a code block, shown as it is: only a run of at least as many backticks as its
    fence could close it (CommonMark), and the fence is longer than any run in the text."""
    text = _cut(text)
    fence = "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def _cut(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[:MAX_MESSAGE_CHARS]} [... cut: {len(text) - MAX_MESSAGE_CHARS} more characters]"


def _within(blocks: list[str], limit: int) -> str:
    """The blocks as one Markdown text of at most `limit` bytes: those that fit, then a note if any
    did not. Only whole blocks are kept, so the cut never leaves a code fence open."""
    note = f"_The rest of this feedback was cut: it was over {limit // 2**10} kB._"
    size = len(note.encode()) + 1  # room for the note (and the last newline), whether it is needed or not
    for kept, block in enumerate(blocks):
        size += len(block.encode()) + 2
        if size > limit:
            return "\n\n".join([*blocks[:kept], note]) + "\n"
    return "\n\n".join(blocks) + "\n"
