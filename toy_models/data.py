"""Data sets for the course's toy models, all generated or read locally.

The course runs offline on a CPU, so every data set here is either generated
from a seed or read from files that are already on the machine:

1. **Induction data.** Blocks of random tokens repeated several times. The
   first copy of a block is unpredictable; every later copy can be predicted
   perfectly by a model that looks back to "what came after this token last
   time". That gap in loss is what makes induction heads appear, and what lets
   us measure them.

2. **A byte-level Python corpus.** The Python standard library's own ``.py``
   source, which every Python install ships. Code is a good small corpus: it
   is highly structured (indentation, brackets, repeated identifiers), so even
   a tiny model learns visible, interpretable behaviour from a few megabytes.
   Files are split between train and validation by a hash of their path, so
   the split is the same on every machine with the same Python and no file
   leaks between the two.

3. **Indirect object identification (IOI) prompts**, in the style of Wang et
   al. (2022), "Interpretability in the Wild". "When Mary and John went to the
   store , John gave a drink to" is completed by " Mary": the name that is
   *not* repeated. A word-level tokenizer keeps every name a single token and
   every template the same length, so prompts stack into one tensor and the
   name positions line up with the words a student sees.

Randomness never comes from a global random state: every random function takes
a ``torch.Generator`` or a ``seed``, so a notebook run twice gives the same data.
"""

import hashlib
import os
import pathlib
import sysconfig
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

# ---------------------------------------------------------------------------
# 1. Induction data: repeated random tokens
# ---------------------------------------------------------------------------


def repeated_random_tokens(
    n_sequences: int,
    seq_len: int,
    d_vocab: int,
    *,
    n_repeats: int = 2,
    bos_token: int | None = None,
    generator: torch.Generator,
) -> Int[Tensor, "batch pos"]:
    """Rows made of one block of ``seq_len`` uniform random tokens, repeated.

    Each row has length ``seq_len * n_repeats``, plus one if ``bos_token`` is
    given, in which case the row starts with it. The random tokens are then
    drawn from the vocabulary *without* ``bos_token``, so the beginning-of-
    sequence marker stays unambiguous: it only ever appears at position 0.
    """
    _check_at_least("n_sequences", n_sequences, 1)
    _check_at_least("seq_len", seq_len, 1)
    _check_at_least("n_repeats", n_repeats, 1)
    block = _random_tokens(n_sequences, seq_len, d_vocab, bos_token, generator)
    return _prepend_bos(block.repeat(1, n_repeats), bos_token)


def periodic_random_tokens(
    n_sequences: int,
    seq_len: int,
    d_vocab: int,
    *,
    min_period: int,
    max_period: int,
    bos_token: int | None = None,
    generator: torch.Generator,
) -> Int[Tensor, "batch pos"]:
    """Rows of random tokens that repeat with a period drawn per row.

    Each row draws a period uniformly from ``[min_period, max_period]`` and is
    a block of that many uniform random tokens tiled out to ``seq_len`` tokens
    (the last copy cut short), plus a leading ``bos_token`` if given, which the
    random tokens then never use. Training on a mix of periods rules out the
    positional shortcut that one fixed period allows ("copy the token 23 back")
    and leaves induction as the only way to predict the repeats.
    """
    _check_at_least("n_sequences", n_sequences, 1)
    _check_at_least("seq_len", seq_len, 1)
    _check_at_least("min_period", min_period, 1)
    _check_at_least("max_period", max_period, min_period)
    block = _random_tokens(n_sequences, seq_len, d_vocab, bos_token, generator)
    period = torch.randint(min_period, max_period + 1, (n_sequences, 1), generator=generator)
    return _prepend_bos(block.gather(1, torch.arange(seq_len)[None, :] % period), bos_token)


def _random_tokens(
    n_sequences: int, length: int, d_vocab: int, bos_token: int | None, generator: torch.Generator
) -> Int[Tensor, "batch pos"]:
    """Uniform random tokens that never use ``bos_token``, so that the beginning-of-
    sequence marker stays unambiguous."""
    if bos_token is None:
        _check_at_least("d_vocab", d_vocab, 1)
        return torch.randint(0, d_vocab, (n_sequences, length), generator=generator)
    # One token is reserved for BOS, so at least one other must remain.
    _check_at_least("d_vocab (with a bos_token)", d_vocab, 2)
    if not 0 <= bos_token < d_vocab:
        raise ValueError(f"bos_token={bos_token} must lie in [0, d_vocab={d_vocab})")
    # Draw from d_vocab - 1 values, then step over the BOS id: uniform over every
    # token except BOS.
    tokens = torch.randint(0, d_vocab - 1, (n_sequences, length), generator=generator)
    return tokens + (tokens >= bos_token).long()


def _prepend_bos(tokens: Int[Tensor, "batch pos"], bos_token: int | None) -> Int[Tensor, "batch pos"]:
    if bos_token is None:
        return tokens
    bos_column = torch.full((tokens.shape[0], 1), bos_token, dtype=torch.long)
    return torch.cat([bos_column, tokens], dim=1)


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")


# ---------------------------------------------------------------------------
# 2. Byte-level Python source corpus
# ---------------------------------------------------------------------------

# About 8 MB keeps loading under a second or two and is still far more text
# than a toy model can memorise.
MAX_CORPUS_BYTES = 8_000_000
VALIDATION_FRACTION = 0.1

CORPUS_SPLITS = ("train", "validation")

# Directories never read. Test suites contain deliberately odd code (broken
# syntax, huge generated literals); site-packages differs from machine to
# machine; encodings and pydoc_data are data tables and prose stored in .py
# files, not code anyone wrote by hand.
_EXCLUDED_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "encodings",
        "pydoc_data",
    }
)


def _stdlib_root() -> pathlib.Path:
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def _is_excluded_dir(name: str) -> bool:
    # config-3.X-<platform>/ holds build configuration specific to this machine.
    return name in _EXCLUDED_DIRS or name.startswith("config-")


def _is_wanted_file(name: str) -> bool:
    # _sysconfigdata_*.py is generated per build, so it would make the corpus
    # differ between machines running the same Python version.
    return (
        name.endswith(".py")
        and not name.startswith("test_")
        and not name.startswith("_sysconfigdata")
    )


def _candidate_relative_paths(root: pathlib.Path) -> list[str]:
    """Every wanted .py file under ``root``, as sorted POSIX relative paths."""
    relative_paths = []
    for directory, subdirectories, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into excluded trees,
        # which matters: site-packages can hold many thousands of files.
        subdirectories[:] = [d for d in subdirectories if not _is_excluded_dir(d)]
        relative_dir = pathlib.Path(directory).relative_to(root)
        for name in filenames:
            if _is_wanted_file(name):
                relative_paths.append((relative_dir / name).as_posix())
    return sorted(relative_paths)


def _read_utf8_source(path: pathlib.Path) -> bytes | None:
    """The file's bytes, or None if they are not valid UTF-8."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data


def _read_corpus_files() -> list[tuple[str, bytes]]:
    """(relative path, bytes) of the corpus files, in sorted order, up to the cap."""
    root = _stdlib_root()
    files = []
    total_bytes = 0
    for relative_path in _candidate_relative_paths(root):
        data = _read_utf8_source(root / relative_path)
        if data is None:
            continue
        # Stop (rather than skip) at the first file that does not fit, so the
        # corpus is simply "a prefix of the sorted file list".
        if total_bytes + len(data) > MAX_CORPUS_BYTES:
            break
        files.append((relative_path, data))
        total_bytes += len(data)
    return files


def python_file_split(relative_path: str) -> Literal["train", "validation"]:
    """Which split a file belongs to, decided by a hash of its relative path.

    A hash of the path (not a random draw, not Python's salted ``hash()``)
    gives the same answer on every machine and every run, and a file is
    assigned as a whole, so no code leaks from train into validation.
    """
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if uniform < VALIDATION_FRACTION else "train"


def _check_corpus_split(split: str) -> None:
    if split not in CORPUS_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {CORPUS_SPLITS}")


def python_source_files(
    split: Literal["train", "validation"] | None = None,
) -> list[pathlib.Path]:
    """The standard-library source files that make up the corpus.

    Sorted by path relative to the standard library; test suites,
    site-packages, data-only modules and files that are not valid UTF-8 are
    left out, and files are taken in sorted order until about
    ``MAX_CORPUS_BYTES``. With ``split`` given, only that split's files.
    """
    if split is not None:
        _check_corpus_split(split)
    root = _stdlib_root()
    return [
        root / relative_path
        for relative_path, _ in _read_corpus_files()
        if split is None or python_file_split(relative_path) == split
    ]


def _bytes_to_tokens(data: bytes) -> Int[Tensor, " n_bytes"]:
    if not data:
        return torch.zeros(0, dtype=torch.long)
    # frombuffer avoids a slow Python loop over millions of bytes.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def load_python_corpus(split: Literal["train", "validation"]) -> Int[Tensor, " n_bytes"]:
    """One split of the corpus as a 1-D int64 tensor of byte values (0..255).

    Files are joined with a newline between them. The result is int64, not
    uint8: that is what ``nn.Embedding`` and ``F.cross_entropy`` expect, and
    it avoids a trap where indexing with a uint8 tensor is read as a mask.
    """
    _check_corpus_split(split)
    file_bytes = [
        data
        for relative_path, data in _read_corpus_files()
        if python_file_split(relative_path) == split
    ]
    return _bytes_to_tokens(b"\n".join(file_bytes))


class ByteTokenizer:
    """Text <-> UTF-8 byte values. Every byte is one token, so ``d_vocab`` is 256.

    Bytes need no training and cannot meet an unknown word; the price is that
    a non-ASCII character (like "é") takes two or more tokens.
    """

    d_vocab = 256

    # Shown instead of characters that would be invisible in a plot label.
    _DISPLAY = {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", ord(" "): "␣"}

    def encode(self, text: str) -> Int[Tensor, " pos"]:
        return _bytes_to_tokens(text.encode("utf-8"))

    def decode(self, tokens: Int[Tensor, " pos"] | Sequence[int]) -> str:
        """Bytes back to text; a cut-off multi-byte character becomes U+FFFD."""
        values = _as_int_list(tokens)
        for value in values:
            self._check_token(value)
        return bytes(values).decode("utf-8", errors="replace")

    def decode_token(self, token: int | Tensor) -> str:
        """A short, visible label for one byte, e.g. "a", "\\n", "␣" or "\\xe2"."""
        value = int(token)
        self._check_token(value)
        if value in self._DISPLAY:
            return self._DISPLAY[value]
        if 32 < value < 127:
            return chr(value)
        # Control bytes and the pieces of multi-byte characters have no
        # glyph of their own, so show the raw byte.
        return f"\\x{value:02x}"

    def _check_token(self, value: int) -> None:
        if not 0 <= value < self.d_vocab:
            raise ValueError(f"byte token {value} is outside [0, {self.d_vocab})")


def _as_int_list(tokens: Tensor | Sequence[int]) -> list[int]:
    if isinstance(tokens, Tensor):
        if tokens.dim() != 1:
            raise ValueError(f"expected a 1-D tensor of tokens, got shape {tuple(tokens.shape)}")
        if tokens.is_floating_point():
            raise ValueError(f"expected integer tokens, got dtype {tokens.dtype}")
        return tokens.tolist()
    return [int(t) for t in tokens]


def random_windows(
    corpus: Int[Tensor, " n"],
    n_windows: int,
    window_len: int,
    *,
    generator: torch.Generator,
) -> Int[Tensor, "batch pos"]:
    """``n_windows`` contiguous slices of ``corpus``, each ``window_len`` long, as int64.

    Start positions are uniform, so windows may overlap and may start
    mid-line: the model must cope with text that begins anywhere.
    """
    _check_at_least("n_windows", n_windows, 1)
    _check_at_least("window_len", window_len, 1)
    if corpus.dim() != 1:
        raise ValueError(f"corpus must be 1-D, got shape {tuple(corpus.shape)}")
    n_starts = corpus.shape[0] - window_len + 1
    if n_starts < 1:
        raise ValueError(
            f"corpus of length {corpus.shape[0]} is shorter than window_len={window_len}"
        )
    starts = torch.randint(0, n_starts, (n_windows, 1), generator=generator)
    offsets = torch.arange(window_len)
    return corpus[starts + offsets].long()


def unigram_cross_entropy(train: Int[Tensor, " n_train"], validation: Int[Tensor, " n_val"]) -> float:
    """Validation cross-entropy, in nats per byte, of a byte-frequency model fit on ``train``.

    The model predicts every byte from its frequency in ``train`` alone,
    ignoring context. Any model that uses context must beat this number;
    add-one smoothing keeps bytes never seen in train from costing infinity.
    """
    for name, tokens in (("train", train), ("validation", validation)):
        if tokens.dim() != 1 or tokens.numel() == 0:
            shape = tuple(tokens.shape)
            raise ValueError(f"{name} must be a non-empty 1-D tensor, got shape {shape}")
        if tokens.min() < 0 or tokens.max() >= ByteTokenizer.d_vocab:
            raise ValueError(f"{name} holds values outside [0, {ByteTokenizer.d_vocab})")
    d_vocab = ByteTokenizer.d_vocab
    train_counts = torch.bincount(train.long(), minlength=d_vocab).double() + 1.0
    log_probs = (train_counts / train_counts.sum()).log()
    validation_counts = torch.bincount(validation.long(), minlength=d_vocab).double()
    return float(-(validation_counts * log_probs).sum() / validation.numel())


# ---------------------------------------------------------------------------
# 3. Indirect object identification (IOI)
# ---------------------------------------------------------------------------

IOI_NAMES = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah",
    "David", "Emma", "Paul", "Laura", "Mark", "Kate", "Peter", "Lucy",
    "Daniel", "Rachel", "Michael", "Sophie", "Chris", "Julia", "Sam", "Grace",
)  # fmt: skip
IOI_PLACES = (
    "store", "park", "school", "station", "restaurant",
    "hospital", "garden", "library", "office", "market",
)  # fmt: skip
# All start with a consonant, so "a {OBJECT}" is always grammatical.
IOI_OBJECTS = (
    "drink", "ball", "book", "letter", "key",
    "gift", "ring", "pencil", "coin", "cake",
)  # fmt: skip

# Slots in a template. "{A} and {B}" introduce the two names; "{S}" is the
# subject mentioned again. ABBA fills A=IO, B=S; BABA fills A=S, B=IO.
# Punctuation is written as separate words so splitting on spaces tokenizes.
# Every template has exactly 14 words, so prompts from different templates
# stack into one tensor with no padding.
IOI_TRAIN_TEMPLATES = (
    "When {A} and {B} went to the {PLACE} , {S} gave a {OBJECT} to",
    "Then , {A} and {B} visited the {PLACE} . {S} gave a {OBJECT} to",
    "After {A} and {B} arrived at the {PLACE} , {S} handed a {OBJECT} to",
    "While {A} and {B} were at the {PLACE} , {S} passed a {OBJECT} to",
    "{A} and {B} went to the {PLACE} together . {S} gave a {OBJECT} to",
    "When {A} and {B} left the {PLACE} , {S} threw the {OBJECT} back to",
    "Once {A} and {B} finally reached the {PLACE} , {S} offered a {OBJECT} to",
    "{A} and {B} had lunch at the {PLACE} . {S} sent a {OBJECT} to",
    # Adverbs and clauses that move the names around, so that the model has to find the
    # names by what they are rather than by where they usually stand.
    "When {A} and {B} reached the {PLACE} , {S} quickly gave a {OBJECT} to",
    "{A} and {B} were at the {PLACE} . Later {S} gave a {OBJECT} to",
    "Then {A} and {B} went to the {PLACE} and {S} gave a {OBJECT} to",
    "After lunch {A} and {B} visited the {PLACE} . {S} sent a {OBJECT} to",
    "As {A} and {B} left the {PLACE} , {S} kindly passed the {OBJECT} to",
)
# Held-out templates: new sentences, but built only from words that appear in
# the train templates. A model trained on the train templates has then seen
# every token, so a drop in accuracy measures the new arrangement, not
# untrained embeddings.
IOI_TEST_TEMPLATES = (
    "{A} and {B} arrived at the {PLACE} together . {S} handed a {OBJECT} to",
    "After {A} and {B} left the {PLACE} , {S} finally sent a {OBJECT} to",
    "Once {A} and {B} reached the {PLACE} , {S} threw a {OBJECT} back to",
    "{A} and {B} visited the {PLACE} . Then , {S} offered a {OBJECT} to",
)
# ``IOIPrompts.template_ids`` index into this tuple: train ids come first,
# so ids are unique even when prompts from both splits are mixed.
IOI_TEMPLATES = IOI_TRAIN_TEMPLATES + IOI_TEST_TEMPLATES

IOI_SPLITS = ("train", "test")
IOI_ORDERS = ("ABBA", "BABA")
_SLOTS = ("{A}", "{B}", "{S}", "{PLACE}", "{OBJECT}")
BOS = "<bos>"


class WordTokenizer:
    """A fixed word-level vocabulary; text is split on whitespace.

    Word-level tokens make IOI easy to read: each name is exactly one token
    and the positions in a prompt match its words (plus one for ``<bos>``).
    """

    def __init__(self, words: Sequence[str]):
        if BOS not in words:
            raise ValueError(f"the vocabulary must contain {BOS!r}")
        duplicates = sorted(word for word, count in Counter(words).items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate words in the vocabulary: {duplicates}")
        self.words: tuple[str, ...] = tuple(words)
        self._ids = {word: index for index, word in enumerate(self.words)}

    @property
    def d_vocab(self) -> int:
        return len(self.words)

    @property
    def bos_token_id(self) -> int:
        return self._ids[BOS]

    def token_id(self, word: str) -> int:
        try:
            return self._ids[word]
        except KeyError:
            raise ValueError(
                f"unknown word {word!r}: not among the {self.d_vocab} words of this tokenizer"
            ) from None

    def encode(self, text: str) -> Int[Tensor, " pos"]:
        """Token ids of the whitespace-separated words, with ``<bos>`` prepended."""
        ids = [self.bos_token_id] + [self.token_id(word) for word in text.split()]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, tokens: Int[Tensor, " pos"] | Sequence[int]) -> str:
        """Words joined by spaces; a ``<bos>`` token is shown as "<bos>"."""
        return " ".join(self.decode_token(t) for t in _as_int_list(tokens))

    def decode_token(self, token: int | Tensor) -> str:
        value = int(token)
        if not 0 <= value < self.d_vocab:
            raise ValueError(f"token {value} is outside [0, {self.d_vocab})")
        return self.words[value]


def _template_words(template: str) -> list[str]:
    return template.split()


def ioi_tokenizer() -> WordTokenizer:
    """The canonical IOI tokenizer; the same vocabulary on every call.

    ``<bos>`` is id 0, then names, places and objects in list order (so each
    group is a contiguous id range, handy for plots), then the remaining
    template words in sorted order.
    """
    content_words = (*IOI_NAMES, *IOI_PLACES, *IOI_OBJECTS)
    template_words = {
        word
        for template in IOI_TEMPLATES
        for word in _template_words(template)
        if word not in _SLOTS
    }
    other_words = sorted(template_words - set(content_words))
    return WordTokenizer([BOS, *content_words, *other_words])


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is not a bool
class IOIPrompts:
    """A batch of IOI prompts, each ending just before the answer.

    Positions count ``<bos>`` as position 0. ``io_pos`` is where the indirect
    object's name appears, ``s1_pos`` and ``s2_pos`` the first and second
    mentions of the subject, and ``end_pos`` the last position, where the
    model must predict the IO.

    In clean and "flip" prompts, ``io_tokens`` is the correct answer and
    ``s_tokens`` the repeated name. In "abc" prompts there is no correct
    answer; ``io_tokens`` and ``s_tokens`` keep the clean names (still present
    at ``io_pos`` and ``s1_pos``), so the clean metric, e.g. logit(IO) -
    logit(S), can be measured on the corrupted run.
    """

    tokens: Int[Tensor, "batch pos"]
    io_tokens: Int[Tensor, " batch"]
    s_tokens: Int[Tensor, " batch"]
    io_pos: Int[Tensor, " batch"]
    s1_pos: Int[Tensor, " batch"]
    s2_pos: Int[Tensor, " batch"]
    end_pos: Int[Tensor, " batch"]
    orders: tuple[str, ...]
    template_ids: Int[Tensor, " batch"]
    sentences: tuple[str, ...]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def with_answers(self) -> Int[Tensor, "batch pos_plus_1"]:
        """The prompts with ``io_tokens`` appended: full training sequences."""
        return torch.cat([self.tokens, self.io_tokens[:, None]], dim=1)

    def corrupt(self, kind: Literal["abc", "flip"], *, seed: int = 0) -> "IOIPrompts":
        """A corrupted copy, for activation patching; places and objects are kept.

        "abc": the second mention of S becomes a third name C, different from
        both, so no name is repeated and nothing singles out the IO
        ("When Mary and John went to the store , Sam gave a drink to").
        ``io_tokens``/``s_tokens`` keep the clean names (see the class docs);
        ``seed`` picks C.

        "flip": IO and S swap names everywhere, so the answer flips
        ("When John and Mary went to the store , Mary gave a drink to" -> John).
        ``io_tokens``/``s_tokens`` are swapped to match the new sentence; the
        positions are unchanged, since the roles stay where they were.
        """
        batch = torch.arange(len(self))
        tokens = self.tokens.clone()
        if kind == "flip":
            tokens[batch, self.io_pos] = self.s_tokens
            tokens[batch, self.s1_pos] = self.io_tokens
            tokens[batch, self.s2_pos] = self.io_tokens
            io_tokens, s_tokens = self.s_tokens, self.io_tokens
        elif kind == "abc":
            tokens[batch, self.s2_pos] = self._third_names(seed)
            io_tokens, s_tokens = self.io_tokens, self.s_tokens
        else:
            raise ValueError(f"unknown corruption {kind!r}; valid kinds are ('abc', 'flip')")
        tokenizer = ioi_tokenizer()
        return IOIPrompts(
            tokens=tokens,
            io_tokens=io_tokens.clone(),
            s_tokens=s_tokens.clone(),
            io_pos=self.io_pos.clone(),
            s1_pos=self.s1_pos.clone(),
            s2_pos=self.s2_pos.clone(),
            end_pos=self.end_pos.clone(),
            orders=self.orders,
            template_ids=self.template_ids.clone(),
            sentences=tuple(tokenizer.decode(row[1:]) for row in tokens),
        )

    def _third_names(self, seed: int) -> Int[Tensor, " batch"]:
        """For each prompt, a random name that is neither its IO nor its S."""
        tokenizer = ioi_tokenizer()
        name_ids = [tokenizer.token_id(name) for name in IOI_NAMES]
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randint(0, len(name_ids) - 2, (len(self),), generator=generator)
        third_names = []
        for io, s, pick in zip(self.io_tokens.tolist(), self.s_tokens.tolist(), picks.tolist()):
            others = [n for n in name_ids if n not in (io, s)]
            third_names.append(others[pick])
        return torch.tensor(third_names, dtype=torch.long)


def ioi_templates(split: Literal["train", "test"]) -> tuple[str, ...]:
    if split == "train":
        return IOI_TRAIN_TEMPLATES
    if split == "test":
        return IOI_TEST_TEMPLATES
    raise ValueError(f"unknown split {split!r}; valid splits are {IOI_SPLITS}")


def make_ioi_prompts(
    n_prompts: int,
    *,
    split: Literal["train", "test"] = "train",
    seed: int = 0,
) -> IOIPrompts:
    """``n_prompts`` IOI prompts from the templates of ``split``.

    Each prompt gets a random template, two different random names, a random
    place and a random object. Orders alternate ABBA, BABA, ... so the two
    are balanced in every prefix of the batch, and a model cannot win by
    always answering with the first (or second) name.
    """
    _check_at_least("n_prompts", n_prompts, 1)
    templates = ioi_templates(split)
    first_id = IOI_TEMPLATES.index(templates[0])
    generator = torch.Generator().manual_seed(seed)

    def draw(n_choices: int) -> list[int]:
        return torch.randint(0, n_choices, (n_prompts,), generator=generator).tolist()

    template_picks = draw(len(templates))
    io_picks = draw(len(IOI_NAMES))
    # Adding 1..n-1 (mod n) to the IO index gives a uniform, different name.
    s_offsets = draw(len(IOI_NAMES) - 1)
    place_picks = draw(len(IOI_PLACES))
    object_picks = draw(len(IOI_OBJECTS))

    tokenizer = ioi_tokenizer()
    rows = []
    for i in range(n_prompts):
        io_name = IOI_NAMES[io_picks[i]]
        s_name = IOI_NAMES[(io_picks[i] + 1 + s_offsets[i]) % len(IOI_NAMES)]
        rows.append(
            _fill_template(
                templates[template_picks[i]],
                order=IOI_ORDERS[i % 2],
                io_name=io_name,
                s_name=s_name,
                place=IOI_PLACES[place_picks[i]],
                obj=IOI_OBJECTS[object_picks[i]],
            )
        )
    sentences = tuple(" ".join(words) for words, _ in rows)

    def column(slot: str) -> Int[Tensor, " batch"]:
        return torch.tensor([positions[slot] for _, positions in rows], dtype=torch.long)

    tokens = torch.stack([tokenizer.encode(sentence) for sentence in sentences])
    return IOIPrompts(
        tokens=tokens,
        io_tokens=tokens[torch.arange(n_prompts), column("io")],
        s_tokens=tokens[torch.arange(n_prompts), column("s1")],
        io_pos=column("io"),
        s1_pos=column("s1"),
        s2_pos=column("s2"),
        end_pos=torch.full((n_prompts,), tokens.shape[1] - 1, dtype=torch.long),
        orders=tuple(IOI_ORDERS[i % 2] for i in range(n_prompts)),
        template_ids=torch.tensor([first_id + t for t in template_picks], dtype=torch.long),
        sentences=sentences,
    )


def _fill_template(
    template: str, *, order: str, io_name: str, s_name: str, place: str, obj: str
) -> tuple[list[str], dict[str, int]]:
    """The prompt's words, and the token positions (counting <bos>) of IO, S1 and S2."""
    first, second = (io_name, s_name) if order == "ABBA" else (s_name, io_name)
    fillers = {"{A}": first, "{B}": second, "{S}": s_name, "{PLACE}": place, "{OBJECT}": obj}
    template_words = _template_words(template)
    slot_pos = {word: i + 1 for i, word in enumerate(template_words) if word in fillers}
    io_slot, s1_slot = ("{A}", "{B}") if order == "ABBA" else ("{B}", "{A}")
    positions = {"io": slot_pos[io_slot], "s1": slot_pos[s1_slot], "s2": slot_pos["{S}"]}
    return [fillers.get(word, word) for word in template_words], positions
