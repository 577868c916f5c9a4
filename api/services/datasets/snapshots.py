"""Dataset snapshots: an immutable, content-hashed file of a dataset's reviewed rows, with a
train / validation split that never moves a row and stats a planner or trainer can read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidRequest, NotFound
from api.ids import new_id
from api.models import Dataset, DatasetRow, DatasetSnapshot
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.datasets.rows import RowFilter, iter_rows, provenance_of, row_of, split_of
from api.settings import Settings
from training.rows import TRAINABLE, Row

TokenCounter = Callable[[Sequence[dict[str, str]]], int]


def approximate_tokens(messages: Sequence[dict[str, str]]) -> int:
    """~4 characters a token: used when no tokenizer is at hand (stats say so)."""
    return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)


def snapshots_dir(settings: Settings, dataset: Dataset) -> Path:
    return settings.data_dir / "datasets" / dataset.bot_id / dataset.id


def trainable_records(session: Session, dataset: Dataset) -> list[DatasetRow]:
    """Reviewed rows fit to train on (approved or edited), in id order (a stable file)."""
    records = [r for r in iter_rows(session, dataset, RowFilter()) if r.status in TRAINABLE]
    return sorted(records, key=lambda r: r.id)


def _lines(dataset: Dataset, records: list[DatasetRow]) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "id": r.id,
                "split": split_of(r.instruction, dataset.validation_share),
                "row": row_of(r).model_dump(mode="json"),
                "provenance": provenance_of(r).model_dump(mode="json", exclude_none=True),
                "status": r.status,
            },
            option=orjson.OPT_SORT_KEYS,
        )
        for r in records
    ]


def _stats(
    records: list[DatasetRow],
    rows: list[Row],
    splits: Sequence[str],
    count_tokens: TokenCounter | None,
) -> dict[str, Any]:
    counter = count_tokens or approximate_tokens
    tokens = [counter(row.messages()) for row in rows]
    by_source = Counter(r.source for r in records)
    total = len(records)
    return {
        "rows": total,
        "train_rows": splits.count("train"),
        "validation_rows": splits.count("validation"),
        "tokens": sum(tokens),
        "tokens_estimated": count_tokens is None,
        "mean_tokens_per_row": round(sum(tokens) / total, 1) if total else 0,
        "max_tokens_per_row": max(tokens, default=0),
        "by_source": {k: round(v / total, 4) for k, v in sorted(by_source.items())},
        "rows_by_source": dict(sorted(by_source.items())),
        "by_category": dict(sorted(Counter(r.category or "-" for r in records).items())),
        "by_status": dict(sorted(Counter(r.status for r in records).items())),
    }


def create_snapshot(
    session: Session,
    settings: Settings,
    dataset: Dataset,
    *,
    actor: AuditActor,
    count_tokens: TokenCounter | None = None,
) -> tuple[DatasetSnapshot, bool]:
    """Snapshot the dataset's reviewed rows; returns (snapshot, created). When nothing changed
    since the latest snapshot, that one is returned (`created` False): same content, same version."""
    records = trainable_records(session, dataset)
    if not records:
        raise InvalidRequest(
            f"Dataset '{dataset.name}' has no approved or edited rows to snapshot: review some "
            "rows first.",
            param="dataset",
            code="empty_dataset",
        )
    lines = _lines(dataset, records)
    content_hash = hashlib.sha256(b"\n".join(lines)).hexdigest()
    latest = latest_snapshot(session, dataset)
    if latest is not None and latest.content_hash == content_hash:
        return latest, False
    version = (latest.version if latest else 0) + 1
    folder = snapshots_dir(settings, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.jsonl"
    # Written whole to a temporary file, then renamed: a crash leaves no half-written snapshot.
    with tempfile.NamedTemporaryFile("wb", dir=folder, delete=False, suffix=".tmp") as tmp:
        tmp.write(b"\n".join(lines) + b"\n")
    os.replace(tmp.name, path)
    splits = [split_of(r.instruction, dataset.validation_share) for r in records]
    stats = _stats(records, [row_of(r) for r in records], splits, count_tokens)
    snapshot = DatasetSnapshot(
        id=new_id("snap"),
        dataset_id=dataset.id,
        version=version,
        content_hash=content_hash,
        path=str(path),
        train_rows=stats["train_rows"],
        validation_rows=stats["validation_rows"],
        stats=stats,
        created_by=actor.label,
    )
    session.add(snapshot)
    session.flush()
    audit.record(
        session,
        actor,
        "dataset.snapshot",
        entity="dataset",
        entity_id=dataset.id,
        bot_id=dataset.bot_id,
        after={"version": version, "content_hash": content_hash, "rows": len(records)},
    )
    return snapshot, True


def latest_snapshot(session: Session, dataset: Dataset) -> DatasetSnapshot | None:
    return session.scalar(
        select(DatasetSnapshot)
        .where(DatasetSnapshot.dataset_id == dataset.id)
        .order_by(DatasetSnapshot.version.desc())
        .limit(1)
    )


def list_snapshots(session: Session, dataset: Dataset) -> list[DatasetSnapshot]:
    return list(
        session.scalars(
            select(DatasetSnapshot)
            .where(DatasetSnapshot.dataset_id == dataset.id)
            .order_by(DatasetSnapshot.version)
        )
    )


def get_snapshot(session: Session, dataset: Dataset, version: int | None) -> DatasetSnapshot:
    """A version, or the latest when `version` is None."""
    if version is None:
        snapshot = latest_snapshot(session, dataset)
    else:
        snapshot = session.scalar(
            select(DatasetSnapshot).where(
                DatasetSnapshot.dataset_id == dataset.id, DatasetSnapshot.version == version
            )
        )
    if snapshot is None:
        which = f"version {version}" if version is not None else "any snapshot"
        raise NotFound(f"Dataset '{dataset.name}' has no {which}.", param="version")
    return snapshot


def read_snapshot(snapshot: DatasetSnapshot) -> list[tuple[str, Row]]:
    """(split, row) for each row of a snapshot file, after checking it is unchanged on disk."""
    data = Path(snapshot.path).read_bytes()
    if hashlib.sha256(data.rstrip(b"\n")).hexdigest() != snapshot.content_hash:
        raise InvalidRequest(
            f"Snapshot file {snapshot.path} does not match its content hash: it was changed.",
            code="snapshot_modified",
        )
    out = []
    for line in data.splitlines():
        item = orjson.loads(line)
        out.append((item["split"], Row.model_validate(item["row"])))
    return out


def token_counter(runtime: Any) -> TokenCounter | None:
    """The serving model's tokenizer when this process has it loaded (else stats are estimates)."""
    backend = runtime.backend if getattr(runtime, "_backend_started", False) else None
    count = getattr(backend, "count_tokens", None)
    if count is None:
        return None

    def counter(messages: Sequence[dict[str, str]]) -> int:
        return int(count(messages))

    return counter
