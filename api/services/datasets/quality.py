"""Quality checks on a dataset (`training.quality`): findings become row flags for review; with a
bot whose policy redacts personal data, that data is replaced in the row and the row is flagged."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Bot, Dataset, DatasetRow, Document
from api.services.bots.policy import policy_of
from api.services.datasets.rows import iter_rows, provenance_of, row_of
from training.quality import CHECKS, QualityOptions, check_rows, redact
from training.rows import TRAINABLE, Flag, Status


class CheckReport(BaseModel):
    rows: int
    flags: dict[str, int]
    redacted: int


def _order(record: DatasetRow) -> tuple[int, Any, str]:
    # Reviewed rows first: a pending copy of an approved row is the duplicate, never the original.
    return (0 if record.status in TRAINABLE else 1, record.created_at, record.id)


def check_dataset(session: Session, runtime: Any, bot: Bot, dataset: Dataset) -> CheckReport:
    """Run every check on the dataset's rows (rejected ones aside) and store the findings as flags
    (replacing the flags of earlier checks)."""
    policy = policy_of(bot.policy)
    records = sorted(
        (r for r in iter_rows(session, dataset) if r.status != Status.REJECTED),
        key=_order,
    )
    rows = [(r.id, row_of(r)) for r in records]
    provenance = {r.id: provenance_of(r) for r in records}
    documents = {r.document_id for r in records if r.document_id}
    revisions: dict[str, str | None] = dict.fromkeys(documents)
    for doc_id, content_hash in session.execute(
        select(Document.id, Document.content_hash).where(
            Document.bot_id == bot.id, Document.id.in_(documents)
        )
    ):
        revisions[doc_id] = content_hash
    options = QualityOptions(pii_ignore=tuple(policy.training_pii_allow))
    findings = check_rows(rows, provenance=provenance, current_revisions=revisions, options=options)
    counts: Counter[str] = Counter()
    redacted = 0
    checked = {f.value for f in CHECKS}
    for record, (_, row) in zip(records, rows, strict=True):
        found = findings.get(record.id, [])
        kept = [f for f in record.flags or () if f["flag"] not in checked]
        flags = kept + [
            {"flag": f.flag.value, "detail": f.detail, "related": f.related} for f in found
        ]
        if policy.training_pii == "redact" and any(f.flag is Flag.PII for f in found):
            clean = redact(row, ignore=options.pii_ignore)
            if record.original_output is None and clean.output != record.output:
                record.original_output = record.output
            record.system, record.instruction = clean.system, clean.instruction
            record.input, record.output = clean.input, clean.output
            record.history = [t.model_dump() for t in clean.history]
            record.content_hash = clean.content_hash
            flags = [
                {**f, "detail": f"redacted: {f['detail']}"} if f["flag"] == Flag.PII else f
                for f in flags
            ]
            redacted += 1
        if flags != (record.flags or []):
            record.flags = flags
        counts.update(f.flag.value for f in found)
    session.flush()
    return CheckReport(rows=len(records), flags=dict(counts.most_common()), redacted=redacted)
