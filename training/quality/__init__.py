"""Quality checks on training rows (no database, no HTTP): each FLAGS rows for review and none
deletes or changes a row. A finding names the row by the caller's key, the `Flag`, a detail a
reviewer can act on, and the other row involved, if any.

- duplicates: exact and near copies of an earlier row (DUPLICATE);
- contradictions: the same question answered materially differently (CONTRADICTION);
- pii: personal data (PII), and `redact` for bots whose policy redacts instead of flagging;
- outdated: rows made from a document that changed or went since (OUTDATED);
- completeness: blank and cut-off answers (EMPTY, TRUNCATED).

`check_rows` runs the chosen checks over one set of rows and groups the findings by row.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from training.quality.completeness import find_incomplete
from training.quality.contradictions import find_contradictions
from training.quality.duplicates import find_duplicates
from training.quality.findings import Finding
from training.quality.outdated import find_outdated
from training.quality.pii import (
    PiiKind,
    PiiMatch,
    find_personal_data,
    find_pii,
    redact,
    redact_text,
)
from training.rows import Flag, Provenance, Row

__all__ = [
    "CHECKS",
    "Finding",
    "PiiKind",
    "PiiMatch",
    "QualityOptions",
    "check_rows",
    "find_contradictions",
    "find_duplicates",
    "find_incomplete",
    "find_outdated",
    "find_personal_data",
    "find_pii",
    "redact",
    "redact_text",
]

#: The flags these checks raise (UNSUPPORTED needs the source chunk and a model: not here).
CHECKS = frozenset(
    {Flag.DUPLICATE, Flag.CONTRADICTION, Flag.PII, Flag.OUTDATED, Flag.EMPTY, Flag.TRUNCATED}
)


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds of the checks; the defaults are the ones the tests and bench/dedup.py hold to."""

    near_duplicate_threshold: float = field(
        default=0.8, metadata={"help": "Word-shingle Jaccard from which two rows are near-copies."}
    )
    same_answer_ratio: float = field(
        default=90.0,
        metadata={"help": "rapidfuzz ratio (0-100) from which two answers to one question match."},
    )
    shingle_words: int = field(default=2, metadata={"help": "Words per shingle."})
    num_perm: int = field(default=64, metadata={"help": "MinHash permutations."})
    question_similarity: float = field(
        default=85.0,
        metadata={"help": "rapidfuzz token_set_ratio from which two questions are the same."},
    )
    answer_similarity: float = field(
        default=50.0,
        metadata={"help": "token_set_ratio under which answers sharing no content word disagree."},
    )
    pii_ignore: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "E-mails and numbers that are not personal (the bot's own support line)."
        },
    )
    min_words: int = field(
        default=4, metadata={"help": "Shorter outputs are not judged truncated by their ending."}
    )


def check_rows(
    rows: Sequence[tuple[str, Row]],
    *,
    checks: Collection[Flag] | None = None,
    provenance: Mapping[str, Provenance] | None = None,
    current_revisions: Mapping[str, str | None] | None = None,
    options: QualityOptions | None = None,
) -> dict[str, list[Finding]]:
    """The findings of the chosen `checks` (default: all of `CHECKS`, OUTDATED only when
    `current_revisions` is given) on `rows`, grouped by row key in input order; rows with no
    finding are left out. Keys must be unique. OUTDATED reads `provenance` (row key -> where the
    row came from) and `current_revisions` (document id -> revision now, None: deleted)."""
    options = options or QualityOptions()
    if checks is None:
        chosen = set(CHECKS) if current_revisions is not None else set(CHECKS) - {Flag.OUTDATED}
    else:
        chosen = set(checks)
    unknown = chosen - CHECKS
    if unknown:
        names = ", ".join(sorted(unknown))
        raise ValueError(
            f"no check raises {names}; the checks here raise {', '.join(sorted(CHECKS))}"
        )
    if Flag.OUTDATED in chosen and current_revisions is None:
        raise ValueError("the OUTDATED check needs current_revisions (document id -> revision)")
    keys = [key for key, _ in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("row keys must be unique")

    findings: list[Finding] = []
    if Flag.DUPLICATE in chosen:
        findings += find_duplicates(
            rows,
            threshold=options.near_duplicate_threshold,
            answer_ratio=options.same_answer_ratio,
            shingle_words=options.shingle_words,
            num_perm=options.num_perm,
        )
    if Flag.CONTRADICTION in chosen:
        findings += find_contradictions(
            rows,
            question_similarity=options.question_similarity,
            answer_similarity=options.answer_similarity,
            num_perm=options.num_perm,
        )
    if Flag.PII in chosen:
        findings += find_personal_data(rows, ignore=options.pii_ignore)
    if Flag.OUTDATED in chosen and current_revisions is not None:
        findings += find_outdated(rows, provenance or {}, current_revisions)
    if chosen & {Flag.EMPTY, Flag.TRUNCATED}:
        findings += [
            f for f in find_incomplete(rows, min_words=options.min_words) if f.flag in chosen
        ]

    grouped: dict[str, list[Finding]] = {key: [] for key in keys}
    for finding in findings:
        grouped[finding.key].append(finding)
    return {key: found for key, found in grouped.items() if found}
