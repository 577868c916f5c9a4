"""Training rows in the database: add, list with filters, review (approve / edit / reject), bulk
verdicts on a filtered selection."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.orm import Session

from api.errors import InvalidRequest, NotFound
from api.ids import new_id
from api.models import Dataset, DatasetRow
from api.services.access import audit
from api.services.access.audit import AuditActor
from training.rows import Flag, Provenance, Row, Source, Status, Turn

# Rows are written in batches of this size: a 100k-row import is a few hundred statements.
INSERT_BATCH = 1000


def row_of(record: DatasetRow) -> Row:
    """The training row a table row holds."""
    return Row(
        system=record.system,
        history=tuple(Turn.model_validate(t) for t in record.history or ()),
        instruction=record.instruction,
        input=record.input,
        output=record.output,
        category=record.category,
    )


def provenance_of(record: DatasetRow) -> Provenance:
    return Provenance.model_validate(record.provenance or {})


def split_of(instruction: str, validation_share: float) -> Literal["train", "validation"]:
    """A row's split: a function of its question (case and spacing aside) and the dataset's fixed
    share. It never moves as rows come and go, the same rows split the same way every time, and
    rows asking the same question share a split: a question held out is not also trained on."""
    key = " ".join(instruction.casefold().split())
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return "validation" if bucket < validation_share else "train"


def _values(dataset_id: str, row: Row, provenance: Provenance, status: Status) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": new_id("row"),
        "dataset_id": dataset_id,
        "system": row.system,
        "history": [t.model_dump() for t in row.history],
        "instruction": row.instruction,
        "input": row.input,
        "output": row.output,
        "category": row.category,
        "original_output": None,
        "source": provenance.source.value,
        "provenance": provenance.model_dump(mode="json", exclude_none=True),
        "chunk_id": provenance.chunk_id,
        "document_id": provenance.document_id,
        "status": status.value,
        "flags": [],
        "content_hash": row.content_hash,
        "reviewed_by": None,
        "reviewed_at": None,
        "created_at": now,
        "updated_at": now,
    }


def add_rows(
    session: Session,
    dataset: Dataset,
    rows: Iterable[tuple[Row, Provenance]],
    *,
    status: Status = Status.PENDING,
    reviewed_by: AuditActor | None = None,
) -> int:
    """Insert rows (in batches); returns how many. Rows added as reviewed name their reviewer."""
    count = 0
    batch: list[dict[str, Any]] = []
    reviewed = status is not Status.PENDING
    now = datetime.now(UTC)
    for row, provenance in rows:
        values = _values(dataset.id, row, provenance, status)
        if reviewed:
            values.update(reviewed_by=reviewed_by.id if reviewed_by else None, reviewed_at=now)
        batch.append(values)
        if len(batch) >= INSERT_BATCH:
            session.execute(insert(DatasetRow), batch)
            count += len(batch)
            batch = []
    if batch:
        session.execute(insert(DatasetRow), batch)
        count += len(batch)
    return count


class RowFilter(BaseModel):
    """Which rows: every given field must hold."""

    status: Status | None = None
    source: Source | None = None
    flag: Flag | Literal["any", "none"] | None = Field(
        None, description="Rows with this flag; 'any' flag; 'none' for unflagged rows."
    )
    category: str | None = None
    document_id: str | None = None
    text: str | None = Field(
        None, max_length=200, description="Words in the instruction or the output."
    )


def _filtered(dataset: Dataset, flt: RowFilter) -> Select[Any]:
    query = select(DatasetRow).where(DatasetRow.dataset_id == dataset.id)
    if flt.status is not None:
        query = query.where(DatasetRow.status == flt.status.value)
    if flt.source is not None:
        query = query.where(DatasetRow.source == flt.source.value)
    if flt.category:
        query = query.where(DatasetRow.category == flt.category)
    if flt.document_id:
        query = query.where(DatasetRow.document_id == flt.document_id)
    if flt.text:
        pattern = f"%{flt.text}%"
        query = query.where(
            or_(DatasetRow.instruction.ilike(pattern), DatasetRow.output.ilike(pattern))
        )
    return query


def _flag_matches(record: DatasetRow, flag: str | None) -> bool:
    flags = {f["flag"] for f in record.flags or ()}
    if flag is None:
        return True
    if flag == "any":
        return bool(flags)
    if flag == "none":
        return not flags
    return flag in flags


def iter_rows(
    session: Session, dataset: Dataset, flt: RowFilter | None = None
) -> Iterator[DatasetRow]:
    """Matching rows, oldest first, streamed in pages (flags are JSON: filtered here, portably)."""
    flt = flt or RowFilter()
    flag = flt.flag.value if isinstance(flt.flag, Flag) else flt.flag
    query = _filtered(dataset, flt).order_by(DatasetRow.created_at, DatasetRow.id)
    for record in session.scalars(query.execution_options(yield_per=2000)):
        if _flag_matches(record, flag):
            yield record


def list_rows(
    session: Session, dataset: Dataset, flt: RowFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[DatasetRow], int]:
    """A page of matching rows and how many match in all."""
    matching = list(iter_rows(session, dataset, flt))
    return matching[offset : offset + limit], len(matching)


def status_counts(session: Session, dataset: Dataset) -> dict[str, int]:
    return {
        status: n
        for status, n in session.execute(
            select(DatasetRow.status, func.count())
            .where(DatasetRow.dataset_id == dataset.id)
            .group_by(DatasetRow.status)
        )
    }


def get_row(session: Session, dataset: Dataset, row_id: str) -> DatasetRow:
    record = session.get(DatasetRow, row_id)
    if record is None or record.dataset_id != dataset.id:
        raise NotFound(f"No row '{row_id}' in dataset '{dataset.name}'.", param="row_id")
    return record


class RowVerdict(BaseModel):
    verdict: Literal["approve", "edit", "reject", "reopen"]
    output: str | None = Field(None, description="The corrected output (verdict 'edit').")
    instruction: str | None = Field(None, description="A corrected instruction (verdict 'edit').")
    comment: str = Field("", max_length=2000)


def review_row(
    session: Session, record: DatasetRow, verdict: RowVerdict, *, actor: AuditActor
) -> DatasetRow:
    """Record a reviewer's verdict on a row; an edit keeps the first output for the record."""
    before = {"status": record.status, "output": record.output, "instruction": record.instruction}
    if verdict.verdict == "edit":
        output = verdict.output if verdict.output is not None else record.output
        instruction = verdict.instruction if verdict.instruction is not None else record.instruction
        if not output.strip():
            raise InvalidRequest("An edited row needs an output.", param="output")
        if not instruction.strip():
            raise InvalidRequest("An edited row needs an instruction.", param="instruction")
        if record.original_output is None and output != record.output:
            record.original_output = record.output
        record.output, record.instruction = output, instruction
        record.content_hash = row_of(record).content_hash
        record.status = Status.EDITED.value
        # What the edit fixed no longer stands; the next quality check looks again.
        record.flags = [f for f in record.flags or () if f["flag"] in (Flag.PII, Flag.OUTDATED)]
    elif verdict.verdict == "approve":
        record.status = Status.APPROVED.value
    elif verdict.verdict == "reject":
        record.status = Status.REJECTED.value
    else:
        record.status = Status.PENDING.value
    record.reviewed_by = actor.id
    record.reviewed_at = datetime.now(UTC) if record.status != Status.PENDING else None
    session.flush()
    audit.record(
        session,
        actor,
        f"dataset.row.{verdict.verdict}",
        entity="dataset_row",
        entity_id=record.id,
        before=before,
        after={
            "status": record.status,
            "output": record.output,
            "instruction": record.instruction,
            **({"comment": verdict.comment} if verdict.comment else {}),
        },
    )
    return record


def bulk_review(
    session: Session,
    dataset: Dataset,
    flt: RowFilter,
    verdict: Literal["approve", "reject", "reopen"],
    *,
    actor: AuditActor,
) -> int:
    """The same verdict on every row the filter selects; returns how many changed."""
    status = {"approve": Status.APPROVED, "reject": Status.REJECTED, "reopen": Status.PENDING}[
        verdict
    ]
    now = datetime.now(UTC)
    changed = 0
    for record in iter_rows(session, dataset, flt):
        if record.status == status.value:
            continue
        record.status = status.value
        record.reviewed_by = actor.id
        record.reviewed_at = now if status is not Status.PENDING else None
        changed += 1
    session.flush()
    audit.record(
        session,
        actor,
        f"dataset.bulk.{verdict}",
        entity="dataset",
        entity_id=dataset.id,
        bot_id=dataset.bot_id,
        after={"filter": flt.model_dump(mode="json", exclude_none=True), "rows": changed},
    )
    return changed


def add_manual_row(
    session: Session, dataset: Dataset, row: Row, *, actor: AuditActor
) -> DatasetRow:
    """A row written by hand: approved by its author."""
    if not row.output.strip():
        raise InvalidRequest("A row needs an output.", param="output")
    values = _values(dataset.id, row, Provenance(source=Source.MANUAL), Status.APPROVED)
    values.update(reviewed_by=actor.id, reviewed_at=datetime.now(UTC))
    record = DatasetRow(**values)
    session.add(record)
    session.flush()
    return record
