"""Tests for toy_models.data: the data sets the course's toy models train on."""

import hashlib
import math

import pytest
import torch

from toy_models import data
from toy_models.data import (
    IOI_NAMES,
    IOI_TEMPLATES,
    IOI_TEST_TEMPLATES,
    IOI_TRAIN_TEMPLATES,
    ByteTokenizer,
    WordTokenizer,
    ioi_tokenizer,
    load_python_corpus,
    make_ioi_prompts,
    python_file_split,
    python_source_files,
    random_windows,
    repeated_random_tokens,
    unigram_cross_entropy,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------
# Induction data
# ---------------------------------------------------------------------------


def test_repeated_tokens_shape_dtype_and_repeats():
    tokens = repeated_random_tokens(5, 7, 50, n_repeats=3, generator=seeded(0))
    assert tokens.shape == (5, 21)
    assert tokens.dtype == torch.int64
    first, second, third = tokens.split(7, dim=1)
    assert torch.equal(first, second)
    assert torch.equal(first, third)
    assert tokens.min() >= 0 and tokens.max() < 50


def test_repeated_tokens_default_is_two_halves():
    tokens = repeated_random_tokens(4, 10, 100, generator=seeded(1))
    assert tokens.shape == (4, 20)
    assert torch.equal(tokens[:, :10], tokens[:, 10:])
    # The block itself is random, not constant.
    assert len(tokens[:, :10].unique()) > 10


def test_repeated_tokens_with_bos():
    bos = 3
    tokens = repeated_random_tokens(200, 8, 6, bos_token=bos, generator=seeded(2))
    assert tokens.shape == (200, 17)
    assert (tokens[:, 0] == bos).all()
    body = tokens[:, 1:]
    assert not (body == bos).any()
    assert torch.equal(body[:, :8], body[:, 8:])
    # Every non-BOS token, including the ones above the BOS id, is used.
    assert set(body.unique().tolist()) == {0, 1, 2, 4, 5}


def test_repeated_tokens_deterministic_per_seed():
    a = repeated_random_tokens(3, 12, 1000, generator=seeded(42))
    b = repeated_random_tokens(3, 12, 1000, generator=seeded(42))
    c = repeated_random_tokens(3, 12, 1000, generator=seeded(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_sequences=0, seq_len=4, d_vocab=10), r"n_sequences=0 must be at least 1"),
        (dict(n_sequences=2, seq_len=0, d_vocab=10), r"seq_len=0 must be at least 1"),
        (dict(n_sequences=2, seq_len=4, d_vocab=10, n_repeats=0), r"n_repeats=0 must be at least 1"),
        (dict(n_sequences=2, seq_len=4, d_vocab=10, bos_token=10), r"bos_token=10 .*\[0, d_vocab=10\)"),
        (dict(n_sequences=2, seq_len=4, d_vocab=1, bos_token=0), r"d_vocab.*=1 must be at least 2"),
    ],
)
def test_repeated_tokens_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        repeated_random_tokens(**kwargs, generator=seeded(0))


def test_periodic_tokens_repeat_with_a_period_per_row():
    bos = 0
    tokens = data.periodic_random_tokens(300, 48, 512, min_period=4, max_period=24, bos_token=bos, generator=seeded(3))
    assert tokens.shape == (300, 49) and tokens.dtype == torch.int64
    assert (tokens[:, 0] == bos).all()
    body = tokens[:, 1:]
    assert not (body == bos).any() and body.max() < 512
    periods = []
    for row in body:
        # The smallest shift under which the row matches itself is its period.
        period = next(p for p in range(1, 49) if torch.equal(row[p:], row[:-p]))
        periods.append(period)
    assert min(periods) == 4 and max(periods) == 24
    assert len(set(periods)) == 21  # every period in the range is drawn
    again = data.periodic_random_tokens(300, 48, 512, min_period=4, max_period=24, bos_token=bos, generator=seeded(3))
    assert torch.equal(tokens, again)
    with pytest.raises(ValueError, match=r"max_period=3 must be at least 4"):
        data.periodic_random_tokens(2, 8, 10, min_period=4, max_period=3, generator=seeded(0))


# ---------------------------------------------------------------------------
# Python corpus
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_files():
    return python_source_files()


@pytest.fixture(scope="module")
def train_corpus():
    return load_python_corpus("train")


@pytest.fixture(scope="module")
def validation_corpus():
    return load_python_corpus("validation")


def relative(path) -> str:
    return path.relative_to(data._stdlib_root()).as_posix()


def test_source_files_sorted_capped_and_without_tests(corpus_files):
    relative_paths = [relative(p) for p in corpus_files]
    assert len(relative_paths) > 100
    assert relative_paths == sorted(relative_paths)
    assert all(p.endswith(".py") for p in relative_paths)
    for path in relative_paths:
        parts = path.split("/")
        assert not {"test", "tests", "idle_test", "site-packages"} & set(parts[:-1]), path
        assert not parts[-1].startswith("test_"), path
    total = sum(p.stat().st_size for p in corpus_files)
    assert 4_000_000 < total <= data.MAX_CORPUS_BYTES
    # Files we expect from any CPython 3.11+ install, early in sorted order.
    assert "abc.py" in relative_paths
    assert "argparse.py" in relative_paths


def test_split_is_by_sha256_of_relative_path(corpus_files):
    for path in corpus_files:
        rel = relative(path)
        digest = hashlib.sha256(rel.encode()).digest()
        expected = "validation" if int.from_bytes(digest[:8], "big") < 0.1 * 2**64 else "train"
        assert python_file_split(rel) == expected


def test_splits_partition_the_files(corpus_files):
    train_files = python_source_files("train")
    validation_files = python_source_files("validation")
    assert set(train_files).isdisjoint(validation_files)
    assert sorted(train_files + validation_files) == sorted(corpus_files)
    fraction = len(validation_files) / len(corpus_files)
    assert 0.04 < fraction < 0.2
    # Deterministic: a second listing is identical.
    assert python_source_files("validation") == validation_files


def test_corpus_is_the_joined_split_files(train_corpus, validation_corpus):
    for split, corpus in (("train", train_corpus), ("validation", validation_corpus)):
        files = python_source_files(split)
        expected = b"\n".join(p.read_bytes() for p in files)
        assert corpus.dtype == torch.int64
        assert corpus.dim() == 1
        assert corpus.shape[0] == len(expected)
        assert bytes(corpus[:2000].tolist()) == expected[:2000]
        assert bytes(corpus[-2000:].tolist()) == expected[-2000:]
    assert train_corpus.shape[0] > 5 * validation_corpus.shape[0] > 0


def test_corpus_contains_real_python(train_corpus, validation_corpus):
    for corpus in (train_corpus, validation_corpus):
        text = bytes(corpus.tolist())
        assert text.count(b"def ") > 1000 * len(text) / 8_000_000
        assert text.count(b"import ") > 100 * len(text) / 8_000_000
        assert corpus.min() >= 0 and corpus.max() < 256
        text.decode("utf-8")  # every file was valid UTF-8, so the join is too


def test_corpus_deterministic(validation_corpus):
    assert torch.equal(load_python_corpus("validation"), validation_corpus)


def test_corpus_unknown_split():
    with pytest.raises(ValueError, match=r"'valid'.*\('train', 'validation'\)"):
        load_python_corpus("valid")
    with pytest.raises(ValueError, match="'test'"):
        python_source_files("test")


def test_unigram_baseline_is_sensible(train_corpus, validation_corpus):
    baseline = unigram_cross_entropy(train_corpus, validation_corpus)
    assert 2.0 < baseline < 6.0
    # It cannot beat the validation set's own byte entropy.
    counts = torch.bincount(validation_corpus, minlength=256).double()
    probs = counts[counts > 0] / counts.sum()
    own_entropy = float(-(probs * probs.log()).sum())
    assert baseline > own_entropy


def test_unigram_cross_entropy_by_hand():
    train = torch.tensor([0, 0, 1])
    validation = torch.tensor([0, 2])
    # Add-one smoothing over 256 bytes: p(0) = 3/259, p(2) = 1/259.
    expected = -(math.log(3 / 259) + math.log(1 / 259)) / 2
    assert unigram_cross_entropy(train, validation) == pytest.approx(expected)
    with pytest.raises(ValueError, match="validation"):
        unigram_cross_entropy(train, torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        unigram_cross_entropy(torch.tensor([300]), validation)


def test_random_windows_are_contiguous_slices():
    corpus = torch.arange(1000)
    windows = random_windows(corpus, 64, 16, generator=seeded(0))
    assert windows.shape == (64, 16)
    assert windows.dtype == torch.int64
    assert (windows[:, 1:] - windows[:, :-1] == 1).all()
    assert windows.min() >= 0 and windows.max() <= 999
    assert len(windows[:, 0].unique()) > 32  # starts actually vary


def test_random_windows_from_uint8_corpus_and_determinism():
    corpus = torch.arange(200, dtype=torch.uint8)
    a = random_windows(corpus, 8, 200, generator=seeded(5))
    assert a.dtype == torch.int64
    assert torch.equal(a, corpus.long().expand(8, 200))  # only one possible start
    b = random_windows(torch.arange(5000), 8, 20, generator=seeded(5))
    c = random_windows(torch.arange(5000), 8, 20, generator=seeded(5))
    d = random_windows(torch.arange(5000), 8, 20, generator=seeded(6))
    assert torch.equal(b, c)
    assert not torch.equal(b, d)


def test_random_windows_corpus_too_short():
    with pytest.raises(ValueError, match=r"length 10 is shorter than window_len=11"):
        random_windows(torch.arange(10), 2, 11, generator=seeded(0))


# ---------------------------------------------------------------------------
# Byte tokenizer
# ---------------------------------------------------------------------------


def test_byte_tokenizer_round_trip_with_non_ascii():
    tokenizer = ByteTokenizer()
    text = "def café(x):\n\treturn '日本' + \"✓\"  # ok"
    tokens = tokenizer.encode(text)
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == list(text.encode("utf-8"))
    assert len(tokens) > len(text)  # non-ASCII characters take several bytes
    assert tokenizer.decode(tokens) == text
    assert tokenizer.decode(tokens.tolist()) == text
    assert tokenizer.d_vocab == 256
    assert tokenizer.encode("").shape == (0,)


def test_byte_tokenizer_decode_broken_utf8_replaces():
    tokenizer = ByteTokenizer()
    tokens = tokenizer.encode("é")[:1]  # half of a two-byte character
    assert tokenizer.decode(tokens) == "\ufffd"


def test_byte_tokenizer_display():
    tokenizer = ByteTokenizer()
    assert tokenizer.decode_token(ord("\n")) == "\\n"
    assert tokenizer.decode_token(ord("\t")) == "\\t"
    assert tokenizer.decode_token(ord(" ")) == "␣"
    assert tokenizer.decode_token(ord("a")) == "a"
    assert tokenizer.decode_token(torch.tensor(ord(":"))) == ":"
    assert tokenizer.decode_token(0xE2) == "\\xe2"
    assert all(tokenizer.decode_token(t).isprintable() for t in range(256))


def test_byte_tokenizer_rejects_out_of_range():
    tokenizer = ByteTokenizer()
    with pytest.raises(ValueError, match=r"256 is outside \[0, 256\)"):
        tokenizer.decode([65, 256])
    with pytest.raises(ValueError, match=r"-1 is outside \[0, 256\)"):
        tokenizer.decode_token(-1)


# ---------------------------------------------------------------------------
# IOI tokenizer and templates
# ---------------------------------------------------------------------------


def test_templates_equal_length_and_slots():
    lengths = {len(t.split()) for t in IOI_TEMPLATES}
    assert lengths == {14}
    assert len(IOI_TRAIN_TEMPLATES) >= 8
    assert len(IOI_TEST_TEMPLATES) >= 4
    for template in IOI_TEMPLATES:
        words = template.split()
        for slot in ("{A}", "{B}", "{S}", "{PLACE}", "{OBJECT}"):
            assert words.count(slot) == 1, (template, slot)
        assert words.index("{A}") < words.index("{B}") < words.index("{S}")
        assert words[-1] == "to"


def test_train_and_test_templates_disjoint():
    assert set(IOI_TRAIN_TEMPLATES).isdisjoint(IOI_TEST_TEMPLATES)
    assert len(set(IOI_TEMPLATES)) == len(IOI_TEMPLATES)
    # Held-out templates only use words a model trained on the train set has seen.
    train_words = {w for t in IOI_TRAIN_TEMPLATES for w in t.split()}
    test_words = {w for t in IOI_TEST_TEMPLATES for w in t.split()}
    assert test_words <= train_words


def test_ioi_tokenizer_is_canonical_and_round_trips():
    tokenizer = ioi_tokenizer()
    assert tokenizer.words == ioi_tokenizer().words
    assert tokenizer.d_vocab == len(tokenizer.words) == len(set(tokenizer.words))
    assert tokenizer.token_id("<bos>") == tokenizer.bos_token_id == 0
    sentence = "When Mary and John went to the store , John gave a drink to"
    tokens = tokenizer.encode(sentence)
    assert tokens.dtype == torch.int64
    assert tokens.shape == (15,)
    assert tokens[0] == tokenizer.bos_token_id
    assert tokens[2] == tokenizer.token_id("Mary")
    assert tokens[4] == tokens[10] == tokenizer.token_id("John")
    assert tokenizer.decode(tokens) == "<bos> " + sentence
    assert tokenizer.decode_token(tokens[9]) == ","
    for name in IOI_NAMES:
        assert tokenizer.decode_token(tokenizer.token_id(name)) == name


def test_word_tokenizer_errors():
    tokenizer = ioi_tokenizer()
    with pytest.raises(ValueError, match="'Zebedee'"):
        tokenizer.encode("When Zebedee and John")
    with pytest.raises(ValueError, match=rf"{tokenizer.d_vocab} is outside"):
        tokenizer.decode_token(tokenizer.d_vocab)
    with pytest.raises(ValueError, match="duplicate words.*'a'"):
        WordTokenizer(["<bos>", "a", "a"])
    with pytest.raises(ValueError, match="<bos>"):
        WordTokenizer(["a", "b"])


# ---------------------------------------------------------------------------
# IOI prompts
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts():
    return make_ioi_prompts(200, seed=0)


def test_prompt_shapes(prompts):
    n = 200
    assert len(prompts) == n
    assert prompts.tokens.shape == (n, 15)
    assert prompts.tokens.dtype == torch.int64
    for name in ("io_tokens", "s_tokens", "io_pos", "s1_pos", "s2_pos", "end_pos", "template_ids"):
        value = getattr(prompts, name)
        assert value.shape == (n,), name
        assert value.dtype == torch.int64, name
    assert len(prompts.orders) == len(prompts.sentences) == n
    assert (prompts.tokens[:, 0] == ioi_tokenizer().bos_token_id).all()
    assert (prompts.end_pos == 14).all()
    assert prompts.with_answers().shape == (n, 16)


def test_positions_point_at_the_right_tokens(prompts):
    batch = torch.arange(len(prompts))
    tokens = prompts.tokens
    assert torch.equal(tokens[batch, prompts.io_pos], prompts.io_tokens)
    assert torch.equal(tokens[batch, prompts.s1_pos], prompts.s_tokens)
    assert torch.equal(tokens[batch, prompts.s2_pos], prompts.s_tokens)
    assert (prompts.io_tokens != prompts.s_tokens).all()
    assert (prompts.s1_pos < prompts.s2_pos).all()
    to_id = ioi_tokenizer().token_id("to")
    assert (tokens[batch, prompts.end_pos] == to_id).all()


def test_io_once_and_s_twice(prompts):
    tokenizer = ioi_tokenizer()
    name_ids = {tokenizer.token_id(n) for n in IOI_NAMES}
    for row, io, s in zip(prompts.tokens.tolist(), prompts.io_tokens.tolist(), prompts.s_tokens.tolist()):
        assert row.count(io) == 1
        assert row.count(s) == 2
        assert sum(t in name_ids for t in row) == 3


def test_orders_balanced_and_consistent(prompts):
    assert prompts.orders.count("ABBA") == prompts.orders.count("BABA") == 100
    for order, io_pos, s1_pos in zip(prompts.orders, prompts.io_pos.tolist(), prompts.s1_pos.tolist()):
        assert (io_pos < s1_pos) == (order == "ABBA")
    odd = make_ioi_prompts(7, seed=3)
    assert abs(odd.orders.count("ABBA") - odd.orders.count("BABA")) == 1


def test_sentences_match_tokens_and_answers(prompts):
    tokenizer = ioi_tokenizer()
    for sentence, row in zip(prompts.sentences, prompts.tokens):
        assert torch.equal(tokenizer.encode(sentence), row)
    full = prompts.with_answers()
    assert torch.equal(full[:, :-1], prompts.tokens)
    assert torch.equal(full[:, -1], prompts.io_tokens)
    first = prompts.sentences[0]
    words = first.split()
    assert words[prompts.io_pos[0] - 1] == tokenizer.decode_token(prompts.io_tokens[0])


def test_prompts_use_variety_of_templates_names_places():
    prompts = make_ioi_prompts(400, seed=1)
    assert set(prompts.template_ids.tolist()) == set(range(len(IOI_TRAIN_TEMPLATES)))
    assert len(set(prompts.io_tokens.tolist())) == len(IOI_NAMES)
    assert len(set(prompts.s_tokens.tolist())) == len(IOI_NAMES)
    places = {w for s in prompts.sentences for w in s.split()} & set(data.IOI_PLACES)
    assert places == set(data.IOI_PLACES)


def test_test_split_uses_only_test_templates():
    prompts = make_ioi_prompts(100, split="test", seed=0)
    n_train = len(IOI_TRAIN_TEMPLATES)
    assert set(prompts.template_ids.tolist()) == set(range(n_train, len(IOI_TEMPLATES)))
    for sentence, template_id in zip(prompts.sentences, prompts.template_ids.tolist()):
        template_words = IOI_TEMPLATES[template_id].split()
        for word, template_word in zip(sentence.split(), template_words):
            assert template_word.startswith("{") or word == template_word
    assert prompts.tokens.shape == (100, 15)


def test_prompts_deterministic_per_seed():
    a = make_ioi_prompts(50, seed=7)
    b = make_ioi_prompts(50, seed=7)
    c = make_ioi_prompts(50, seed=8)
    assert torch.equal(a.tokens, b.tokens) and a.sentences == b.sentences
    assert not torch.equal(a.tokens, c.tokens)


def test_abc_corruption_has_three_distinct_names(prompts):
    corrupted = prompts.corrupt("abc")
    batch = torch.arange(len(prompts))
    io = corrupted.tokens[batch, corrupted.io_pos]
    s1 = corrupted.tokens[batch, corrupted.s1_pos]
    s2 = corrupted.tokens[batch, corrupted.s2_pos]
    assert (io != s1).all() and (io != s2).all() and (s1 != s2).all()
    name_ids = {ioi_tokenizer().token_id(n) for n in IOI_NAMES}
    assert set(s2.tolist()) <= name_ids
    # Clean names kept at their first mentions and in io_tokens / s_tokens.
    assert torch.equal(io, prompts.io_tokens) and torch.equal(corrupted.io_tokens, prompts.io_tokens)
    assert torch.equal(s1, prompts.s_tokens) and torch.equal(corrupted.s_tokens, prompts.s_tokens)
    # Everything except the second subject is unchanged (places, objects, template).
    changed = corrupted.tokens != prompts.tokens
    assert torch.equal(changed.nonzero()[:, 1], prompts.s2_pos)
    assert corrupted.sentences != prompts.sentences
    for sentence, row in zip(corrupted.sentences, corrupted.tokens):
        assert torch.equal(ioi_tokenizer().encode(sentence), row)
    # No mutation of the clean prompts, and the third name is reproducible.
    assert (prompts.tokens[batch, prompts.s2_pos] == prompts.s_tokens).all()
    assert torch.equal(prompts.corrupt("abc").tokens, corrupted.tokens)
    assert not torch.equal(prompts.corrupt("abc", seed=1).tokens, corrupted.tokens)


def test_flip_corruption_swaps_the_answer(prompts):
    flipped = prompts.corrupt("flip")
    assert torch.equal(flipped.io_tokens, prompts.s_tokens)
    assert torch.equal(flipped.s_tokens, prompts.io_tokens)
    batch = torch.arange(len(prompts))
    assert torch.equal(flipped.tokens[batch, flipped.io_pos], flipped.io_tokens)
    assert torch.equal(flipped.tokens[batch, flipped.s1_pos], flipped.s_tokens)
    assert torch.equal(flipped.tokens[batch, flipped.s2_pos], flipped.s_tokens)
    assert torch.equal(flipped.with_answers()[:, -1], prompts.s_tokens)
    # Only the three name slots change.
    changed = (flipped.tokens != prompts.tokens).sum(dim=1)
    assert (changed == 3).all()
    assert torch.equal(flipped.corrupt("flip").tokens, prompts.tokens)
    first = flipped.sentences[0].split()
    clean = prompts.sentences[0].split()
    assert first[prompts.io_pos[0] - 1] == clean[prompts.s1_pos[0] - 1]


def test_ioi_bad_arguments(prompts):
    with pytest.raises(ValueError, match=r"'dev'.*\('train', 'test'\)"):
        make_ioi_prompts(4, split="dev")
    with pytest.raises(ValueError, match="n_prompts=0 must be at least 1"):
        make_ioi_prompts(0)
    with pytest.raises(ValueError, match=r"'swap'.*\('abc', 'flip'\)"):
        prompts.corrupt("swap")
