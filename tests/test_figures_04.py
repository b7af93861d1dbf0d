"""Chapter 04's prose quotes no measured number; its table of feature labels is the course's own."""

import re

from prose_figures import Prose

from toy_models.sae import FEATURE_LABELS, FEATURE_NOTES

PROSE = Prose("04_superposition_and_saes")

NOT_MEASURED = {
    "(here `0.9^i`)": "the toy model's importance, a hyperparameter",
    "to sparse (0.05)": "the sparsest feature density of the shipped sweep, a hyperparameter",
}


def test_the_feature_table_is_the_labels_the_course_checks():
    """The table of labelled features says what toy_models.sae's FEATURE_LABELS and
    FEATURE_NOTES say (the labels' rules are checked against the shipped SAE by
    tests/test_checkpoints.py)."""
    for feature, label in FEATURE_LABELS.items():
        row = f"| {feature} | {label} | {' '.join(FEATURE_NOTES[feature].split())} |"
        assert row in PROSE.text, f"04_superposition_and_saes: the feature table lacks the row {row!r}"
    rows = re.findall(r"\| (\d+) \| [^|]+ \| [^|]+ \|", PROSE.text)  # the only table written in the prose
    assert sorted(map(int, rows)) == sorted(FEATURE_LABELS), "the feature table has rows FEATURE_LABELS lacks"


def test_every_number_in_the_prose_is_computed_or_explained():
    PROSE.assert_every_number_explained(NOT_MEASURED)
