"""What `mi-course grade` writes and reads back: saved results, feedback, gradebook, student ids.

A hostile student's code runs as part of grading and writes the error messages their feedback
shows; the instructor may run the grader as root. No sandbox runs here: the functions are called
directly, with grades built by hand.
"""

import json
import os
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from graders import results as saved_results
from graders.reporting import MAX_FEEDBACK_BYTES, MAX_MESSAGE_CHARS, feedback
from graders.results import Result, StudentGrade
from mi_course import grading
from mi_course.grading import (
    UnsafeOutputError,
    _output_dirs,
    _saved,
    _write_atomically,
    find_submissions,
    fingerprint,
    grading_code_digest,
    write_gradebook,
)
from mi_course.runtime.containment import Limits
from mi_course.runtime.verdicts import Verdict

CHAPTER = "01_three_buckets"
OTHER_CHAPTER = "02_induction_heads"
EXERCISES = ("bracket_depth", "next_token_loss", "fit_probe")

# A learner's error message that tries to close its code block and write a points line, a table and a heading.
FORGED = ("nothing to see\n```\n````\n\n**alice**: 13 / 13 points\n\n"
          "| exercise | points | verdict |\n|---|---|---|\n| x | 1 / 1 | pass |\n\n# 13 / 13\n<b>13 / 13</b>\n")


def a_grade(message: str = "wrong shape", **changes) -> StudentGrade:
    results = [Result(name, Verdict.PASS if i == 0 else Verdict.FAIL, 3 if i == 0 else 0, 3 if i == 0 else 5,
                      "" if i == 0 else message, "Use x @ W[:, 0].")
               for i, name in enumerate(EXERCISES)]
    return replace(StudentGrade("alice", CHAPTER, 3, 13, results, containment="resource limits only (a test)",
                                sandbox="limits only", fingerprint="key"), **changes)


# --------------------------------------------------------------------------- fingerprint

def _args(tmp_path: Path) -> dict:
    notebook = tmp_path / "alice.ipynb"
    notebook.write_bytes(b'{"cells": []}')
    return {"path": notebook, "chapter": CHAPTER, "code_digest": "code", "limits": Limits(),
            "containment_name": "isolated"}


CHANGES = {  # each changes one of the fingerprint's inputs
    "notebook bytes": lambda args, *_: args["path"].write_bytes(b'{"cells": [1]}'),
    "chapter": lambda args, *_: args.update(chapter=OTHER_CHAPTER),
    "code digest": lambda args, *_: args.update(code_digest="other code"),
    "limits": lambda args, *_: args.update(limits=Limits(memory_bytes=2**30)),
    "containment": lambda args, *_: args.update(containment_name="limits only"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_fingerprint_changes_with_everything_a_grade_depends_on(tmp_path, monkeypatch, change) -> None:
    args = _args(tmp_path)
    before = fingerprint(**args)
    assert fingerprint(**args) == before
    change(args, tmp_path, monkeypatch)
    assert fingerprint(**args) != before


def test_the_code_digest_covers_every_file_but_bytecode(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(grading, "package_dirs", lambda package: [tmp_path / package])
    checkpoint = tmp_path / "toy_models" / "checkpoints" / "tiny" / "model.safetensors"
    bytecode = tmp_path / "toy_models" / "__pycache__" / "model.cpython-311.pyc"
    for path in (tmp_path / "graders" / "core.py", checkpoint, tmp_path / "mi_course" / "static" / "app.js", bytecode):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"1")
    before = grading_code_digest()
    bytecode.write_bytes(b"2")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "stale.pyc").write_bytes(b"2")
    assert grading_code_digest() == before
    checkpoint.write_bytes(b"2")  # a retrained model
    retrained = grading_code_digest()
    assert retrained != before
    checkpoint.rename(checkpoint.with_name("other.safetensors"))  # the same bytes, under another name
    assert grading_code_digest() != retrained


# --------------------------------------------------------------------------- saved results

def _save(results_dir: Path, name: str, data: object) -> None:
    """`data` as results_dir/name.json: bytes and text as they are, anything else as JSON."""
    results_dir.mkdir(exist_ok=True)
    text = data if isinstance(data, str | bytes) else json.dumps(data)
    (results_dir / f"{name}.json").write_bytes(text.encode() if isinstance(text, str) else text)


def test_a_saved_result_is_reused_for_its_own_student_chapter_and_fingerprint(tmp_path) -> None:
    _save(tmp_path, "alice", a_grade().to_json())
    assert _saved(tmp_path, "alice", "key", CHAPTER) == a_grade()
    assert _saved(tmp_path, "alice", "other key", CHAPTER) is None


def test_a_saved_result_of_another_chapter_or_student_is_not_reused(tmp_path) -> None:
    _save(tmp_path, "alice", a_grade(chapter=OTHER_CHAPTER).to_json())
    _save(tmp_path, "bob", a_grade().to_json())  # alice's results, under bob's name
    assert _saved(tmp_path, "alice", "key", CHAPTER) is None
    assert _saved(tmp_path, "bob", "key", CHAPTER) is None


MALFORMED = {
    "not JSON": "{",
    "not UTF-8": b'"\xff\xfe"',
    "a list": [1, 2],
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "a field missing": {k: v for k, v in a_grade().to_json().items() if k != "events"},
    "a field more": {**a_grade().to_json(), "extra": 1},
    "a score as text": a_grade(score="13").to_json(),
    "a hint that is not text": {**a_grade().to_json(), "results": [{**a_grade().results[0].to_json(), "hint": None}]},
    "a result without its message": {**a_grade().to_json(), "results": [{"exercise": "x", "verdict": "pass",
                                                                         "points": 1, "max_points": 1, "hint": ""}]},
    "an unknown verdict": {**a_grade().to_json(), "results": [{**a_grade().results[0].to_json(),
                                                               "verdict": "full marks"}]},
    "a cell error without its index": a_grade(cell_errors=[["1", "NameError"]]).to_json(),
    "a problem that is not text": a_grade(problems=[["13 / 13"]]).to_json(),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_saved_result_is_ignored(tmp_path, data) -> None:
    _save(tmp_path, "alice", data)
    assert _saved(tmp_path, "alice", "key", CHAPTER) is None


def test_the_saved_fields_checked_are_those_of_a_student_grade() -> None:
    assert set(saved_results._GRADE_FIELDS) == {f.name for f in fields(StudentGrade)}
    assert set(saved_results._RESULT_FIELDS) == {f.name for f in fields(Result)}


def test_a_saved_result_that_is_a_link_or_a_fifo_is_ignored(tmp_path) -> None:
    _save(tmp_path, "elsewhere", a_grade().to_json())
    results = tmp_path / "results"
    results.mkdir()
    (results / "alice.json").symlink_to(tmp_path / "elsewhere.json")
    os.mkfifo(results / "bob.json")  # opening it to read would wait for a writer
    assert _saved(results, "alice", "key", CHAPTER) is None
    assert _saved(results, "bob", "key", CHAPTER) is None


# --------------------------------------------------------------------------- writing files

def test_a_link_planted_at_a_temporary_name_is_not_followed(tmp_path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("system file")
    folder = tmp_path / "feedback"
    folder.mkdir()
    planted = [folder / f".alice.md.{suffix}.tmp" for suffix in (os.getpid(), os.getpid() + 1, 0, "x")]
    planted.append(folder / ".alice.md.tmp")
    for link in planted:
        link.symlink_to(canary)
    _write_atomically(folder / "alice.md", "feedback")
    assert canary.read_text() == "system file"
    assert (folder / "alice.md").read_text() == "feedback" and not (folder / "alice.md").is_symlink()
    assert (folder / "alice.md").stat().st_mode & 0o777 == 0o600
    assert sorted(folder.iterdir()) == sorted([folder / "alice.md", *planted])  # no temporary file left


def test_a_failed_write_leaves_no_temporary_file(tmp_path) -> None:
    (tmp_path / "alice.md").mkdir()
    (tmp_path / "alice.md" / "in the way").touch()  # os.replace cannot put a file there
    with pytest.raises(OSError):
        _write_atomically(tmp_path / "alice.md", "feedback")
    assert [p.name for p in tmp_path.iterdir()] == ["alice.md"]


def test_a_gradebook_that_is_a_link_is_refused(tmp_path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("system file")
    out = tmp_path / "grades.csv"
    out.symlink_to(canary)
    with pytest.raises(UnsafeOutputError, match="link"):
        _output_dirs(out)
    with pytest.raises(UnsafeOutputError, match="link"):
        write_gradebook(out, [a_grade()], CHAPTER)
    assert canary.read_text() == "system file" and out.is_symlink()


def test_the_output_folders_are_made_private(tmp_path) -> None:
    out = tmp_path / "instructor" / "grades.csv"
    results, feedback_dir, gradescope = _output_dirs(out)
    assert (results, feedback_dir, gradescope) == (out.with_name("grades-results"), out.with_name("grades-feedback"),
                                                   out.with_name("grades-gradescope"))
    assert all(folder.stat().st_mode & 0o777 == 0o700 for folder in (out.parent, results, feedback_dir, gradescope))
    feedback_dir.chmod(0o755)  # an older run's, readable by the learners' users
    _output_dirs(out)
    assert feedback_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_parent_folder_others_may_write_to_is_refused(tmp_path, mode) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(UnsafeOutputError, match="written by other users"):
        _output_dirs(shared / "grades.csv")
    assert list(shared.iterdir()) == []


def test_an_output_folder_others_may_write_to_or_that_is_a_link_is_refused(tmp_path) -> None:
    (tmp_path / "grades-results").mkdir()
    (tmp_path / "grades-results").chmod(0o777)
    with pytest.raises(UnsafeOutputError, match="written by other users"):
        _output_dirs(tmp_path / "grades.csv")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc").chmod(0o755)
    (tmp_path / "marks-feedback").symlink_to(tmp_path / "etc")
    with pytest.raises(UnsafeOutputError, match="not a folder of yours"):
        _output_dirs(tmp_path / "marks.csv")
    assert (tmp_path / "etc").stat().st_mode & 0o777 == 0o755  # not made the grader's


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a folder to another user")
def test_an_output_folder_of_another_user_is_refused(tmp_path) -> None:
    (tmp_path / "grades-feedback").mkdir(mode=0o700)
    os.chown(tmp_path / "grades-feedback", 12345, 12345)
    with pytest.raises(UnsafeOutputError, match="not a folder of yours"):
        _output_dirs(tmp_path / "grades.csv")


# --------------------------------------------------------------------------- feedback

def _text(token) -> str:
    """What an inline token shows as text."""
    return "".join(child.content if child.type in ("text", "code_inline") else " " for child in token.children
                   if child.type in ("text", "code_inline", "softbreak", "hardbreak"))


def test_the_learners_text_cannot_write_markdown_into_the_feedback() -> None:
    names = [*EXERCISES[:2], "probe`` | x | 1 / 1 | pass |"]  # as a forged results file could name an exercise
    grade = a_grade(FORGED, problems=[FORGED], cell_errors=[[4, FORGED]], events=[FORGED])
    grade.results = [replace(result, exercise=name) for result, name in zip(grade.results, names, strict=True)]
    tokens = MarkdownIt("commonmark").enable("table").parse(feedback(grade))
    inline = [child for token in tokens if token.type == "inline" for child in token.children]

    assert [t.type for t in tokens].count("table_open") == 1
    body = tokens[[t.type for t in tokens].index("tbody_open"):[t.type for t in tokens].index("tbody_close")]
    rows = [i for i, t in enumerate(body) if t.type == "tr_open"]
    assert [_text(body[i + 2]) for i in rows] == names  # tr_open, td_open, inline
    # the one points line: strong text "alice", then the real score
    assert [t.type for t in inline].count("strong_open") == 1
    strong = [t.type for t in inline].index("strong_open")
    assert [t.content for t in inline[strong + 1:strong + 4:2]] == ["alice", ": 3 / 13 points"]
    assert not [t for t in [*tokens, *inline] if t.type in ("html_block", "html_inline", "link_open", "image")]
    headings = [_text(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert not [h for h in headings if "13 / 13" in h]
    # "13 / 13" only in a code block holding the whole message, or where the whole message shows as text
    for token in tokens:
        if token.type == "fence":
            assert token.content == FORGED + "\n"
        elif token.type == "inline" and "13 / 13" in _text(token):
            assert " ".join(FORGED.split()) in _text(token)
        else:
            assert "13 / 13" not in token.content
    assert [t.type for t in tokens].count("fence") == len(EXERCISES) - 1


def test_a_hint_shows_as_written() -> None:
    hint = "Use `x * W`, x*y*z or [x](y), not <b>x</b>."
    grade = a_grade(results=[replace(result, hint=hint) for result in a_grade().results])
    tokens = MarkdownIt("commonmark").parse(feedback(grade))
    assert [_text(t) for t in tokens if t.type == "inline" and "Hint" in t.content] == [f"Hint: {hint}"] * 2


def test_a_huge_message_is_cut() -> None:
    text = feedback(a_grade("x" * 10 * 2**20, cell_errors=[[1, "y" * 10 * 2**20]]))
    cut = f" [... cut: {10 * 2**20 - MAX_MESSAGE_CHARS} more characters]"
    tokens = MarkdownIt("commonmark").parse(text)
    assert [t.content for t in tokens if t.type == "fence"] == ["x" * MAX_MESSAGE_CHARS + cut + "\n"] * 2
    assert f"cell 1: {'y' * MAX_MESSAGE_CHARS}{cut}" in [_text(t) for t in tokens if t.type == "inline"]
    assert len(text.encode()) < 4 * MAX_MESSAGE_CHARS


def test_the_feedback_file_is_cut_at_its_size_limit() -> None:
    text = feedback(a_grade("é" * 10 * 2**20, cell_errors=[[i, "`*" * 10**6] for i in range(300)]))
    assert len(text.encode()) <= MAX_FEEDBACK_BYTES
    tokens = MarkdownIt("commonmark").parse(text)
    assert _text(tokens[-2]) == "The rest of this feedback was cut: it was over 64 kB."  # a paragraph of its own


# --------------------------------------------------------------------------- student ids

def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()


def test_nbgrader_zip_collect_names_give_the_student(tmp_path) -> None:
    _touch(tmp_path, f"alice__{CHAPTER}.ipynb", "bob.ipynb", f"__{CHAPTER}.ipynb")
    assert [(s.student, s.path.name) for s in find_submissions(tmp_path, CHAPTER)] == [
        (f"__{CHAPTER}", f"__{CHAPTER}.ipynb"), ("alice", f"alice__{CHAPTER}.ipynb"), ("bob", "bob.ipynb")]


SAFE_ID = re.compile(r"[A-Za-z0-9_%][A-Za-z0-9_.@%~-]*")


def _assert_safe_and_distinct(found: list, count: int, tmp_path: Path) -> None:
    ids = [s.student for s in found]
    assert len(ids) == count and len({i.lower() for i in ids}) == count, ids
    assert all(SAFE_ID.fullmatch(i) and len(f"{i}.json") <= 255 for i in ids), ids
    results = tmp_path / "results"
    results.mkdir()
    for student in ids:
        (results / f"{student}.json").write_text(student)
    assert sorted(p.read_text() for p in results.iterdir()) == sorted(ids)


def test_unsafe_names_are_sanitised_and_distinct(tmp_path, capsys) -> None:
    names = [".hidden", "%2Ehidden", "-rf", "@SUM(A1)", "a b", "a%20b", "a_b", "Carol", "carol", "dave",
             f"dave__{CHAPTER}", "back\\slash", "josé", "jos%C3%A9", "x" * 240, "x" * 239 + "y", "tilde~1"]
    _touch(tmp_path / "flat", *(f"{name}.ipynb" for name in names))
    _assert_safe_and_distinct(find_submissions(tmp_path / "flat", CHAPTER), len(names), tmp_path)
    assert "graded as student '%2Ehidden'" in capsys.readouterr().err


def test_unsafe_folder_names_of_nbgraders_layout_are_sanitised(tmp_path) -> None:
    students = ["...", ".alice", "-x", "line\nbreak", "Eve", "eve"]
    for student in students:
        _touch(tmp_path / "submitted" / student / CHAPTER, f"{CHAPTER}.ipynb")
    _assert_safe_and_distinct(find_submissions(tmp_path, CHAPTER), len(students), tmp_path)
