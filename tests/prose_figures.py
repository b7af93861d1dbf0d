"""The figures a chapter's prose quotes, held to what the shipped checkpoints give.

A chapter's Markdown may quote a measured number ("about 0.97 at positions 1 to 24") only
if a test computes it. Each chapter's ``tests/test_figures_NN.py`` declares the phrases
that quote figures, with a placeholder for each number::

    PROSE = Prose("02_induction_heads")
    PREVIOUS_TOKEN = PROSE.quote("(about {:.2f} at positions 1 to 24)")

    def test_head_0_0_attends_to_the_previous_token():
        PREVIOUS_TOKEN.holds(score)   # computed from the shipped checkpoint

``holds`` formats the phrase with the computed figures and fails, quoting the sentence
the prose has now, unless the prose says exactly that: after ``mi-course train NAME``,
the failing test names the sentence that became false. And one test per chapter,
``PROSE.assert_every_number_explained(NOT_MEASURED)``, fails on any decimal number or
percentage in the prose that is neither inside a declared quote nor inside a phrase of
``NOT_MEASURED`` (a head's name, a threshold, a hyperparameter, a published figure),
each given with the reason it is not a measurement.

The prose is the Markdown cells' text with every run of white space made one space, so a
phrase is written on one line whatever the line breaks of the source.
"""

from __future__ import annotations

import re

import jupytext

from mi_course.runtime.paths import SOLUTIONS_DIR

#: A decimal number or a percentage: what the prose may not quote unexplained.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?%|(?<![\w.])\d+\.\d+")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


class Prose:
    """The Markdown cells of one chapter source, as one text with single spaces."""

    def __init__(self, chapter: str):
        self.chapter = chapter
        cells = jupytext.read(SOLUTIONS_DIR / f"{chapter}.py", fmt="py:percent").cells
        self.text = " ".join(" ".join(cell.source.split()) for cell in cells if cell.cell_type == "markdown")
        self.quotes: list[Quote] = []

    def quote(self, template: str) -> Quote:
        """A phrase of the prose that quotes figures: ``template`` with a format field
        (``{}``, ``{:.2f}``, ``{:.0%}``) where each figure stands."""
        quote = Quote(self, template)
        self.quotes.append(quote)
        return quote

    def numbers(self) -> list[re.Match]:
        """Every decimal number and percentage in the prose."""
        return list(NUMBER.finditer(self.text))

    def assert_every_number_explained(self, not_measured: dict[str, str]) -> None:
        """Every decimal number and percentage of the prose lies inside a declared quote
        or inside a phrase of ``not_measured`` ({phrase: why it is not a measurement})."""
        explained = [span for quote in self.quotes for span in self.spans(quote.pattern)]
        for phrase in not_measured:
            spans = self.spans(re.compile(re.escape(phrase)))
            assert spans, f"{self.chapter}: the prose no longer says {phrase!r}; remove it from NOT_MEASURED"
            explained += spans
        unexplained = [f"{number.group()!r} in ...{self.around(number)}..." for number in self.numbers()
                       if not any(start <= number.start() and number.end() <= end for start, end in explained)]
        assert not unexplained, (
            f"{self.chapter}: numbers in the prose that no test computes and NOT_MEASURED does not explain:\n  "
            + "\n  ".join(unexplained))

    def spans(self, pattern: re.Pattern) -> list[tuple[int, int]]:
        return [match.span() for match in pattern.finditer(self.text)]

    def around(self, match: re.Match, width: int = 60) -> str:
        """The words around a match, to name its sentence in a message."""
        return self.text[max(0, match.start() - width):match.end() + width]


class Quote:
    """One phrase of the prose that quotes figures."""

    def __init__(self, prose: Prose, template: str):
        self.prose, self.template = prose, template
        # The phrase with any figure (a number, or a word like "twice") where the template has one.
        self.pattern = re.compile(r"[\w.%+−-]+".join(re.escape(part) for part in _PLACEHOLDER.split(template)))

    def holds(self, *figures) -> None:
        """The prose says this phrase with exactly these figures, as the template formats them."""
        expected = self.template.format(*figures)
        if expected in self.prose.text:
            return
        found = [self.prose.around(match, 30) for match in self.pattern.finditer(self.prose.text)]
        raise AssertionError(
            f"{self.prose.chapter}: the shipped checkpoint gives {expected!r}, but the prose says:\n  "
            + ("\n  ".join(found) or "(nothing like it: was the sentence rewritten?)")
            + f"\nUpdate the sentence in solutions/{self.prose.chapter}.py, then run mi-course release.")
