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
    original, equal and inserted ones to the revision); each run of changes is one deletion
    followed by one insertion."""
    a, b = _TOKEN.findall(original), _TOKEN.findall(revised)
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    # A lone space kept between two changes reads better as part of one change ("Candidate says" ->
    # "Kestrel support", not two separate word swaps).
    for k in range(1, len(opcodes) - 1):
        tag, i1, i2, j1, j2 = opcodes[k]
        if (
            tag == "equal"
            and not "".join(a[i1:i2]).strip()
            and opcodes[k - 1][0] != "equal"
            and opcodes[k + 1][0] != "equal"
        ):
            opcodes[k] = ("replace", i1, i2, j1, j2)
    spans: list[DiffSpan] = []
    deleted: list[str] = []
    inserted: list[str] = []
    for tag, i1, i2, j1, j2 in [*opcodes, ("equal", len(a), len(a), len(b), len(b))]:
        if tag != "equal":  # runs of changes become one deletion and one insertion
            deleted += a[i1:i2]
            inserted += b[j1:j2]
            continue
        _append(spans, "delete", "".join(deleted))
        _append(spans, "insert", "".join(inserted))
        deleted, inserted = [], []
        _append(spans, "equal", "".join(a[i1:i2]))
    return spans


def _append(spans: list[DiffSpan], op: Literal["equal", "insert", "delete"], text: str) -> None:
    if not text:
        return
    if spans and spans[-1].op == op:
        spans[-1] = DiffSpan(op, spans[-1].text + text)
    else:
        spans.append(DiffSpan(op, text))
