"""Where each byte of Python source sits: inside a string, a comment, an indent, ...

These are the "labels" a person gives SAE features ("fires inside string literals"),
written as code so that a label can be checked: for every byte of a text, `byte_concepts`
says which concepts hold there. The string and comment tracking is a small state machine
(not Python's tokenizer) so that it also works on a window that starts mid-file; started
at the beginning of a file it is exact for ordinary code.
"""

from collections.abc import Callable

import torch
from jaxtyping import Bool, Int
from torch import Tensor

_IDENT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _string_and_comment_states(data: bytes) -> tuple[list[bool], list[bool], list[bool]]:
    """Per byte: inside a string literal (quotes included), inside a triple-quoted one,
    inside a comment (the '#' included)."""
    in_string, in_triple, in_comment = [False] * len(data), [False] * len(data), [False] * len(data)
    i, quote, comment = 0, b"", False
    while i < len(data):
        byte = data[i : i + 1]
        if comment:
            if byte == b"\n":
                comment = False
            else:
                in_comment[i] = True
            i += 1
            continue
        if quote:
            in_string[i] = True
            in_triple[i] = len(quote) == 3
            if byte == b"\\":  # an escape: the next byte cannot close the string
                if i + 1 < len(data):
                    in_string[i + 1], in_triple[i + 1] = True, len(quote) == 3
                i += 2
                continue
            if data.startswith(quote, i):
                for j in range(i, min(i + len(quote), len(data))):
                    in_string[j], in_triple[j] = True, len(quote) == 3
                i += len(quote)
                quote = b""
                continue
            if len(quote) == 1 and byte == b"\n":  # unterminated one-line string: recover
                quote = b""
            i += 1
            continue
        if byte == b"#":
            comment = True
            in_comment[i] = True
        elif byte in (b"'", b'"'):
            quote = data[i : i + 3] if data[i : i + 3] in (b"'''", b'"""') else byte
            for j in range(i, min(i + len(quote), len(data))):
                in_string[j], in_triple[j] = True, len(quote) == 3
            i += len(quote)
            continue
        i += 1
    return in_string, in_triple, in_comment


def _after(data: bytes, i: int, prefix: bytes) -> bool:
    """Is byte i inside the identifier that directly follows `prefix`?"""
    j = i
    while j > 0 and data[j - 1] in _IDENT:
        j -= 1
    return data[i] in _IDENT and data[max(0, j - len(prefix)) : j] == prefix


CONCEPTS: dict[str, Callable[[bytes, int, dict], bool]] = {
    "in a string literal": lambda d, i, s: s["string"][i] and not s["triple"][i],
    "in a docstring or triple-quoted string": lambda d, i, s: s["triple"][i],
    "in a comment": lambda d, i, s: s["comment"][i],
    "in leading indentation": lambda d, i, s: d[i] == 32 and d[d.rfind(b"\n", 0, i) + 1 : i + 1].strip(b" ") == b"",
    "a newline": lambda d, i, s: d[i] == 10,
    "a digit": lambda d, i, s: 48 <= d[i] <= 57,
    "an uppercase letter": lambda d, i, s: 65 <= d[i] <= 90,
    "an opening bracket": lambda d, i, s: d[i] in b"([{",
    "a closing bracket": lambda d, i, s: d[i] in b")]}",
    "a dot": lambda d, i, s: d[i] == 46,
    "a comma": lambda d, i, s: d[i] == 44,
    "a colon": lambda d, i, s: d[i] == 58,
    "an equals sign": lambda d, i, s: d[i] == 61,
    "a space after an identifier": lambda d, i, s: d[i] == 32 and i > 0 and d[i - 1] in _IDENT,
    "in the name after 'def '": lambda d, i, s: _after(d, i, b"def "),
    "in the name after 'class '": lambda d, i, s: _after(d, i, b"class "),
    "in the attribute after 'self.'": lambda d, i, s: _after(d, i, b"self."),
    "in the module after 'import ' or 'from '": lambda d, i, s: _after(d, i, b"import ") or _after(d, i, b"from "),
    "in 'self'": lambda d, i, s: _word_so_far(d, i) in (b"se", b"sel", b"self"),
    "in an identifier": lambda d, i, s: d[i] in _IDENT and not s["string"][i] and not s["comment"][i],
}


def _word_so_far(data: bytes, i: int) -> bytes:
    """The identifier characters ending at byte i."""
    j = i + 1
    while j > 0 and data[j - 1] in _IDENT:
        j -= 1
    return data[j : i + 1]


def byte_concepts(data: bytes) -> dict[str, list[bool]]:
    """For each concept in CONCEPTS, whether it holds at each byte of `data`."""
    string, triple, comment = _string_and_comment_states(data)
    state = {"string": string, "triple": triple, "comment": comment}
    return {name: [holds(data, i, state) for i in range(len(data))] for name, holds in CONCEPTS.items()}


def concept_mask(tokens: Int[Tensor, " n"], concept: str) -> Bool[Tensor, " n"]:
    """Where `concept` holds in a 1-D run of byte tokens (read from its start)."""
    data = bytes(tokens.tolist())
    string, triple, comment = _string_and_comment_states(data)
    state = {"string": string, "triple": triple, "comment": comment}
    holds = CONCEPTS[concept]
    return torch.tensor([holds(data, i, state) for i in range(len(data))])
