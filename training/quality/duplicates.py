"""Duplicate rows: the same example more than once, exactly or nearly; every copy after the first is
flagged DUPLICATE with `related` naming the row it repeats.

Three tests, cheapest first, on text as `similarity.normalise` leaves it (case, whitespace runs and
punctuation at the ends of each part do not count):

1. exact: the same conversation, question and answer -> "same as row X" (X: the first such row);
2. the same question with a near-identical answer (rapidfuzz `ratio` >= `answer_ratio`) ->
   "same question as row X, answer 94% similar";
3. near: MinHash LSH over word shingles of instruction and answer, confirmed by the exact Jaccard
   similarity of the shingles >= `threshold` -> "92% similar to row X".

Rows asked in different settings are never duplicates: other earlier turns, or inputs (passages)
that are not near-identical (see `similarity.same_setting`). The input is not shingled: rows
generated from one passage carry it whole, and would all look like copies of each other.

Tests 2 and 3 compare a row only with the rows kept so far (never flagged), so a flagged row always
names one that stays, and the kept rows are pairwise below the threshold: the greedy pass a person
deduplicating by hand would make. Only kept rows enter the index, so a large cluster of copies costs
one comparison per copy, not one per pair. Rows whose answers give different numbers ("30 days" /
"14 days") are never near-duplicates: dropping one would hide a contradiction (contradictions.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rapidfuzz import fuzz

from training.quality.claims import conflicting_quantities
from training.quality.findings import Finding
from training.quality.similarity import (
    Normalised,
    jaccard,
    lsh_index,
    same_setting,
    shingles,
    sketches,
)
from training.rows import Flag, Row

# Kept rows compared per repeated question: bounds the cost of a question asked thousands of times.
_MAX_SAME_QUESTION = 32


def find_duplicates(
    rows: Sequence[tuple[str, Row]],
    *,
    threshold: float = 0.8,
    answer_ratio: float = 90.0,
    shingle_words: int = 2,
    num_perm: int = 64,
) -> list[Finding]:
    """DUPLICATE findings for every row that repeats an earlier one, in input order.

    `threshold`: Jaccard similarity of word shingles from which two rows are near-duplicates.
    `answer_ratio`: rapidfuzz ratio (0-100) from which two answers to the same question are the
    same answer. `shingle_words`: words per shingle (2 suits rows of a few dozen words: one changed
    word in 40 keeps 90% of the shingles). `num_perm`: MinHash permutations (64: the index only
    proposes candidates, each is then confirmed exactly).
    """
    found: list[tuple[int, Finding]] = []  # (position, finding): reported in input order
    texts = [Normalised.of(row) for _, row in rows]
    first_of: dict[bytes, str] = {}
    remaining: list[int] = []
    for i, (key, _) in enumerate(rows):
        original = first_of.setdefault(texts[i].exact_key(), key)
        if original != key:
            found.append((i, Finding(key, Flag.DUPLICATE, f"same as row {original}", original)))
        else:
            remaining.append(i)

    # The index only proposes; exact Jaccard decides. Its threshold sits well below ours because
    # 64-permutation estimates are noisy: at 0.8, an index at 0.55 finds 99.9% of the pairs at 0.8
    # or more, one at 0.65 finds 98% (bench/dedup.py), for 13% less time.
    index = lsh_index(max(threshold - 0.25, 0.3), num_perm)
    kept_shingles: dict[int, np.ndarray] = {}
    kept_by_question: dict[bytes, list[int]] = {}
    prepared = [(i, shingles(texts[i].exchange, shingle_words)) for i in remaining]
    for (i, row_shingles), sketch in zip(prepared, sketches((s for _, s in prepared), num_perm)):
        same_question = kept_by_question.setdefault(texts[i].question_key(), [])
        finding = _same_question(rows, texts, i, same_question, answer_ratio)
        if finding is None and row_shingles.size:
            candidates = [j for j in index.query(sketch) if isinstance(j, int)]
            finding = _near(rows, texts, i, row_shingles, candidates, kept_shingles, threshold)
        if finding is not None:
            found.append((i, finding))
            continue
        if len(same_question) < _MAX_SAME_QUESTION:
            same_question.append(i)
        if row_shingles.size:
            index.insert(i, sketch, check_duplication=False)
            kept_shingles[i] = row_shingles
    return [finding for _, finding in sorted(found, key=lambda pair: pair[0])]


def _same_answer(a: str, b: str) -> bool:
    """Whether two answers could be swapped without changing a fact: no differing numbers."""
    return conflicting_quantities(a, b) is None


def _same_question(
    rows: Sequence[tuple[str, Row]],
    texts: list[Normalised],
    i: int,
    kept: list[int],
    answer_ratio: float,
) -> Finding | None:
    key, row = rows[i]
    for j in kept:
        other_key, other = rows[j]
        score = fuzz.ratio(texts[i].output, texts[j].output)
        if score >= answer_ratio and _same_answer(row.output, other.output):
            detail = f"same question as row {other_key}, answer {int(score)}% similar"
            return Finding(key, Flag.DUPLICATE, detail, other_key)
    return None


def _near(
    rows: Sequence[tuple[str, Row]],
    texts: list[Normalised],
    i: int,
    row_shingles: np.ndarray,
    candidates: list[int],
    kept_shingles: dict[int, np.ndarray],
    threshold: float,
) -> Finding | None:
    key, row = rows[i]
    best: tuple[float, int] | None = None
    for j in sorted(candidates):
        similarity = jaccard(row_shingles, kept_shingles[j])
        if similarity >= threshold and (best is None or similarity > best[0]):
            other = rows[j][1]
            if same_setting(texts[i], texts[j]) and _same_answer(row.output, other.output):
                best = (similarity, j)
    if best is None:
        return None
    other_key = rows[best[1]][0]
    return Finding(
        key, Flag.DUPLICATE, f"{int(best[0] * 100)}% similar to row {other_key}", other_key
    )
