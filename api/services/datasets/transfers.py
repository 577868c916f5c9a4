"""Import rows from files and export them, in the formats trainers use (`training.formats`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from api.errors import InvalidRequest
from api.models import Dataset
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.datasets.rows import RowFilter, add_rows, iter_rows, row_of, split_of
from api.services.datasets.snapshots import get_snapshot, read_snapshot
from training.formats import Format, FormatError, LineError, Refusal
from training.formats import iter_rows as read_file
from training.rows import TRAINABLE, Provenance, Row, Source, Status


@dataclass
class ImportReport:
    imported: int
    errors: list[LineError]
    format: Format | None
    file_type: str


def import_file(
    session: Session,
    dataset: Dataset,
    path: Path,
    *,
    name: str | None = None,
    format: Format | None = None,
    file_type: str | None = None,
    approve: bool = False,
    actor: AuditActor,
) -> ImportReport:
    """Import every good record of a file (a bad line is reported with its number and reason; the
    rest is imported, in the caller's transaction). `approve` marks rows as already reviewed (a
    curated dataset); otherwise they wait for review."""
    label = name or path.name
    errors: list[LineError] = []

    def good() -> Iterator[tuple[Row, Provenance]]:
        for item in read_file(path, format=format, file_type=file_type):
            if isinstance(item, LineError):
                errors.append(item)
                continue
            line, row = item
            if not row.output.strip():  # nothing to learn from: reported, not imported
                errors.append(LineError(line, "the output is empty"))
                continue
            yield row, Provenance(source=Source.IMPORTED, file=label, line=line)

    try:
        count = add_rows(
            session,
            dataset,
            good(),
            status=Status.APPROVED if approve else Status.PENDING,
            reviewed_by=actor,
        )
    except FormatError as exc:
        # Named as the client named it: the server's temporary path is nobody's business.
        message = str(exc).replace(str(path), label)
        raise InvalidRequest(message, param="file", code="bad_file") from exc
    audit.record(
        session,
        actor,
        "dataset.import",
        entity="dataset",
        entity_id=dataset.id,
        bot_id=dataset.bot_id,
        after={"file": label, "rows": count, "bad_lines": len(errors), "approved": approve},
    )
    kind = file_type or path.suffix.lstrip(".").lower()
    return ImportReport(imported=count, errors=errors, format=format, file_type=kind)


Selection = Literal["trainable", "all"]


def rows_to_export(
    session: Session,
    dataset: Dataset,
    *,
    selection: Selection = "trainable",
    split: Literal["train", "validation"] | None = None,
    flt: RowFilter | None = None,
    snapshot_version: int | None = None,
    from_snapshot: bool = False,
) -> list[Row]:
    """The rows an export writes: a snapshot's, or the dataset's reviewed rows (or all, or a filter)."""
    if from_snapshot or snapshot_version is not None:
        items = read_snapshot(get_snapshot(session, dataset, snapshot_version))
        return [row for s, row in items if split is None or s == split]
    records = iter_rows(session, dataset, flt)
    return [
        row_of(r)
        for r in records
        if (selection == "all" or r.status in TRAINABLE)
        and (split is None or split_of(r.instruction, dataset.validation_share) == split)
    ]


def describe_refusals(refused: list[Refusal], limit: int = 5) -> str:
    reasons: dict[str, int] = {}
    for r in refused:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    parts = [f"{n} × {reason}" for reason, n in list(reasons.items())[:limit]]
    return "; ".join(parts)
