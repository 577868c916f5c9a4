"""How much, and where, a reviewer changed an answer: normalised edit distance and a word diff."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from rapidfuzz.distance import Levenshtein

# Words, runs of whitespace and single punctuation marks: a diff at this grain reads like a
# track-changes view, and joining the tokens gives back the text exactly.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def edit_distance(original: str, revised: str) -> float:
    """Character-level Levenshtein distance divided by the longer length: 0.0 same, 1.0 all new."""
    return float(Levenshtein.normalized_distance(original, revised))


@dataclass(frozen=True)
class DiffSpan:
    op: Literal["equal", "insert", "delete"]
    text: str


def word_diff(original: str, revised: str) -> list[DiffSpan]:
    """Spans that turn `original` into `revised` (equal and deleted spans concatenate to the
    original, equal and inserted ones to the revision); adjacent spans of one kind are merged."""
    a, b = _TOKEN.findall(original), _TOKEN.findall(revised)
    spans: list[DiffSpan] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            _append(spans, "delete", "".join(a[i1:i2]))
        if tag in ("insert", "replace"):
            _append(spans, "insert", "".join(b[j1:j2]))
        if tag == "equal":
            _append(spans, "equal", "".join(a[i1:i2]))
    return spans


def _append(spans: list[DiffSpan], op: Literal["equal", "insert", "delete"], text: str) -> None:
    if not text:
        return
    if spans and spans[-1].op == op:
        spans[-1] = DiffSpan(op, spans[-1].text + text)
    else:
        spans.append(DiffSpan(op, text))
