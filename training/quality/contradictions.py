"""Contradictions: two rows that ask the same question and answer it materially differently. Both
rows are flagged CONTRADICTION, each with `related` naming the other; which answer is right is the
reviewer's call.

Same question: MinHash LSH over the content words of the instructions proposes earlier rows;
rapidfuzz `token_set_ratio` >= `question_similarity` on the normalised instructions confirms, with a
plain `ratio` of 70 or more (a question whose words are a subset of a longer one's has a token set
ratio of 100), unless the questions differ in what they ask (other numbers, a negation, opposite
words like "enable" / "disable": see claims.py). Questions are compared only in the same setting:
the same earlier turns and near-identical inputs with the same numbers (several questions about
one passage are different questions).

Materially different answers, strongest signal first:
1. different numbers ("30 days" / "14 days"; "14 business days" / "14 days");
2. one opens with yes, the other with no (both opening alike agree: the checks below are skipped);
3. near-identical answers of which one negates ("you can" / "you cannot");
4. answers with nothing in common: rapidfuzz `token_set_ratio` below `answer_similarity` and not one
   content word (or number) shared. String similarity alone cannot tell a paraphrase from a
   contradiction (a paraphrase often scores under 50), so low similarity counts only with no shared
   content at all: "Go to Settings > Export" / "E-mail support for an archive".

Rows with no answer are left to the EMPTY check, and an exact copy of a row is left to the duplicate
check: only the first of identical rows is compared.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz import fuzz

from training.quality.claims import (
    STOP_WORDS,
    conflicting_quantities,
    content_stems,
    negations,
    opposite_words,
    polarity,
    quantities,
)
from training.quality.findings import Finding
from training.quality.similarity import (
    Normalised,
    lsh_index,
    same_setting,
    shingles,
    sketches,
    words,
)
from training.rows import Flag, Row

# Two questions must also be this alike as plain strings (rapidfuzz ratio).
_PLAIN_QUESTION_RATIO = 70.0
# Two answers this alike (rapidfuzz ratio) that differ in a negation say opposite things.
_NEGATION_RATIO = 80.0


def find_contradictions(
    rows: Sequence[tuple[str, Row]],
    *,
    question_similarity: float = 85.0,
    answer_similarity: float = 50.0,
    num_perm: int = 64,
    max_candidates: int = 100,
) -> list[Finding]:
    """CONTRADICTION findings, two per contradicting pair (one on each row), in input order.

    `question_similarity`: rapidfuzz token_set_ratio (0-100) from which two questions are the same.
    `answer_similarity`: token_set_ratio under which two answers sharing no content word disagree.
    `max_candidates`: earlier rows compared per row at most (a question asked thousands of times
    must not cost a comparison per pair).
    """
    texts = [Normalised.of(row) for _, row in rows]
    seen: set[bytes] = set()
    compared: list[int] = []
    for i, text in enumerate(texts):
        exact = text.exact_key()
        if text.output and exact not in seen:
            compared.append(i)
        seen.add(exact)

    found: list[tuple[int, Finding]] = []
    # Content words only: "how do I" is in half the questions; unigrams: word order barely matters
    # in a short question, and token_set_ratio confirms.
    index = lsh_index(0.5, num_perm)
    topics = (shingles(_topic(texts[i].instruction), 1) for i in compared)
    for i, sketch in zip(compared, sketches(topics, num_perm)):
        candidates = sorted(j for j in index.query(sketch) if isinstance(j, int))
        for j in candidates[:max_candidates]:
            similarity = _same_question(texts[i], texts[j], question_similarity)
            if similarity is None:
                continue
            (key, row), (other_key, other) = rows[i], rows[j]
            details = _disagreement(row.output, other.output, texts[i], texts[j], answer_similarity)
            if details is not None:
                said = f"answers a {int(similarity)}% similar question differently from row"
                mine = Finding(
                    key, Flag.CONTRADICTION, f"{said} {other_key}: {details[0]}", other_key
                )
                theirs = Finding(other_key, Flag.CONTRADICTION, f"{said} {key}: {details[1]}", key)
                found += [(i, mine), (j, theirs)]
        index.insert(i, sketch, check_duplication=False)
    return [finding for _, finding in sorted(found, key=lambda pair: pair[0])]


def _topic(question: str) -> str:
    content = [w for w in words(question) if w not in STOP_WORDS]
    return " ".join(content) if content else question


def _same_question(a: Normalised, b: Normalised, threshold: float) -> float | None:
    """The questions' similarity when they ask the same thing, else None."""
    similarity = fuzz.token_set_ratio(a.instruction, b.instruction)
    # token_set_ratio forgives extra words entirely ("how do I cancel" scores 100 against "how do I
    # cancel my order from last week"): the plain ratio keeps such pairs apart.
    if similarity < threshold or fuzz.ratio(a.instruction, b.instruction) < _PLAIN_QUESTION_RATIO:
        return None
    if not same_setting(a, b) or quantities(a.input) != quantities(b.input):
        return None
    if quantities(a.instruction) != quantities(b.instruction):
        return None
    if negations(a.instruction) != negations(b.instruction):
        return None
    if opposite_words(a.instruction, b.instruction):
        return None
    return similarity


def _disagreement(
    a: str, b: str, a_text: Normalised, b_text: Normalised, answer_similarity: float
) -> tuple[str, str] | None:
    """How answer `a` and answer `b` disagree, said from each side, or None."""
    numbers = conflicting_quantities(a, b)
    if numbers is not None:
        mine, theirs = (", ".join(n) for n in numbers)
        return f"{mine} here, {theirs} there", f"{theirs} here, {mine} there"
    yes_no = polarity(a), polarity(b)
    if None not in yes_no:
        if yes_no[0] == yes_no[1]:
            return None  # agreed on the point; the rest is wording
        return f"{yes_no[0]} here, {yes_no[1]} there", f"{yes_no[1]} here, {yes_no[0]} there"
    a_answer, b_answer = a_text.output, b_text.output
    if negations(a) != negations(b) and fuzz.ratio(a_answer, b_answer) >= _NEGATION_RATIO:
        detail = "one answer negates the other"
        return detail, detail
    similarity = fuzz.token_set_ratio(a_answer, b_answer)
    if similarity < answer_similarity and not content_stems(a_answer) & content_stems(b_answer):
        detail = f"the answers share no content ({int(similarity)}% similar)"
        return detail, detail
    return None
