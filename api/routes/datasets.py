"""Admin API for a bot's training datasets: rows and their review, generation from documents,
corrections from reviews, import / export, quality checks, snapshots, and the training planner."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import AdminKey, SessionDep
from api.errors import InvalidRequest
from api.models import Bot, Dataset, DatasetRow, DatasetSnapshot
from api.routes.knowledge import JobOut
from api.services.access.audit import key_actor
from api.services.bots.management import get_bot
from api.services.datasets import catalog, corrections, generation, quality, snapshots, transfers
from api.services.datasets import rows as row_service
from api.services.datasets.planning import plan_for
from training.formats import Format, write_rows
from training.planner import Plan
from training.rows import Flag, Row, Source, Status

router = APIRouter(prefix="/api/bots/{slug}", tags=["datasets"])


def _dataset(session: SessionDep, slug: str, name: str) -> tuple[Bot, Dataset]:
    bot = get_bot(session, slug)
    return bot, catalog.get_dataset(session, bot, name)


class DatasetOut(BaseModel):
    id: str
    name: str
    description: str
    validation_share: float
    rows: dict[str, int] = Field(description="Rows per status.")
    created_at: datetime

    @classmethod
    def of(cls, dataset: Dataset, counts: dict[str, int]) -> DatasetOut:
        return cls(
            id=dataset.id,
            name=dataset.name,
            description=dataset.description,
            validation_share=dataset.validation_share,
            rows=counts,
            created_at=dataset.created_at,
        )


class SnapshotOut(BaseModel):
    version: int
    content_hash: str
    train_rows: int
    validation_rows: int
    stats: dict[str, Any]
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, s: DatasetSnapshot) -> SnapshotOut:
        return cls.model_validate(s, from_attributes=True)


class RowOut(BaseModel):
    id: str
    system: str
    history: list[dict[str, str]]
    instruction: str
    input: str
    output: str
    original_output: str | None
    category: str
    source: str
    provenance: dict[str, Any]
    status: str
    flags: list[dict[str, Any]]
    split: Literal["train", "validation"]
    reviewed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, record: DatasetRow, dataset: Dataset) -> RowOut:
        return cls(
            **{
                k: getattr(record, k)
                for k in (
                    "id",
                    "system",
                    "history",
                    "instruction",
                    "input",
                    "output",
                    "original_output",
                    "category",
                    "source",
                    "provenance",
                    "status",
                    "flags",
                    "reviewed_at",
                    "created_at",
                )
            },
            split=row_service.split_of(record.instruction, dataset.validation_share),
        )


class DatasetDetail(DatasetOut):
    snapshots: list[SnapshotOut]
    generation: dict[str, Any]


@router.post("/datasets", status_code=201)
def create_dataset(
    slug: str, data: catalog.DatasetCreate, key: AdminKey, session: SessionDep
) -> DatasetOut:
    dataset = catalog.create_dataset(session, get_bot(session, slug), data, actor=key_actor(key))
    return DatasetOut.of(dataset, {})


@router.get("/datasets")
def list_datasets(slug: str, _: AdminKey, session: SessionDep) -> list[DatasetOut]:
    return [DatasetOut.of(d, c) for d, c in catalog.list_datasets(session, get_bot(session, slug))]


@router.get("/datasets/{name}")
def get_dataset(slug: str, name: str, _: AdminKey, session: SessionDep) -> DatasetDetail:
    dataset = _dataset(session, slug, name)[1]
    return DatasetDetail(
        **DatasetOut.of(dataset, row_service.status_counts(session, dataset)).model_dump(),
        snapshots=[SnapshotOut.of(s) for s in snapshots.list_snapshots(session, dataset)],
        generation=generation.generation_report(session, dataset),
    )


@router.delete("/datasets/{name}", status_code=204)
def delete_dataset(slug: str, name: str, key: AdminKey, session: SessionDep) -> None:
    dataset = _dataset(session, slug, name)[1]
    catalog.delete_dataset(session, dataset, actor=key_actor(key))


@router.post("/datasets/{name}/generate", status_code=202)
def generate(
    slug: str, name: str, request: generation.GenerateRequest, _: AdminKey, session: SessionDep
) -> JobOut:
    bot, dataset = _dataset(session, slug, name)
    job = generation.start_generation(session, bot, dataset, request)
    session.flush()
    return JobOut.of(job)


@router.post("/datasets/{name}/corrections")
def add_corrections(slug: str, name: str, key: AdminKey, session: SessionDep) -> dict[str, int]:
    bot, dataset = _dataset(session, slug, name)
    return corrections.add_corrections(session, bot, dataset, actor=key_actor(key))


class LineErrorOut(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    imported: int
    errors: list[LineErrorOut]


@router.post("/datasets/{name}/import")
async def import_rows(
    slug: str,
    name: str,
    file: UploadFile,
    key: AdminKey,
    session: SessionDep,
    format: Annotated[Format | None, Form()] = None,
    approve: Annotated[bool, Form()] = False,
) -> ImportOut:
    dataset = _dataset(session, slug, name)[1]
    suffix = Path(file.filename or "upload.jsonl").suffix or ".jsonl"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        with path.open("wb") as out:
            while chunk := await file.read(1 << 20):
                out.write(chunk)
        # Reading and checking a file of rows takes a while: not on the event loop.
        report = await run_in_threadpool(
            transfers.import_file,
            session,
            dataset,
            path,
            name=file.filename,
            format=format,
            approve=approve,
            actor=key_actor(key),
        )
    return ImportOut(
        imported=report.imported,
        errors=[LineErrorOut(line=e.line, reason=e.reason) for e in report.errors],
    )


@router.get("/datasets/{name}/export")
def export_rows(
    slug: str,
    name: str,
    _: AdminKey,
    session: SessionDep,
    format: Format = Format.ALPACA,
    file_type: Literal["jsonl", "json", "csv"] = "jsonl",
    selection: Literal["trainable", "all"] = "trainable",
    split: Literal["train", "validation"] | None = None,
    version: int | None = Query(None, description="A snapshot version (default: the live rows)."),
) -> FileResponse:
    dataset = _dataset(session, slug, name)[1]
    rows = transfers.rows_to_export(
        session, dataset, selection=selection, split=split, snapshot_version=version
    )
    folder = tempfile.mkdtemp()
    path = Path(folder) / f"{dataset.name}.{format.value}.{file_type}"
    result = write_rows(rows, path, format=format, file_type=file_type)
    headers = {"X-Rows-Written": str(result.written), "X-Rows-Refused": str(len(result.refused))}
    if result.refused:
        headers["X-Refused-Reasons"] = transfers.describe_refusals(result.refused)[:500]
    return FileResponse(
        path,
        filename=path.name,
        headers=headers,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


class RowFilterQuery(BaseModel):
    status: Status | None = None
    source: Source | None = None
    flag: Flag | Literal["any", "none"] | None = None
    category: str | None = None
    text: str | None = Field(None, max_length=200)


class RowPage(BaseModel):
    total: int
    rows: list[RowOut]


@router.get("/datasets/{name}/rows")
def list_rows(
    slug: str,
    name: str,
    _: AdminKey,
    session: SessionDep,
    flt: Annotated[RowFilterQuery, Depends()],
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> RowPage:
    dataset = _dataset(session, slug, name)[1]
    page, total = row_service.list_rows(
        session, dataset, row_service.RowFilter(**flt.model_dump()), limit=limit, offset=offset
    )
    return RowPage(total=total, rows=[RowOut.of(r, dataset) for r in page])


@router.post("/datasets/{name}/rows", status_code=201)
def add_row(slug: str, name: str, row: Row, key: AdminKey, session: SessionDep) -> RowOut:
    dataset = _dataset(session, slug, name)[1]
    return RowOut.of(
        row_service.add_manual_row(session, dataset, row, actor=key_actor(key)), dataset
    )


@router.get("/datasets/{name}/rows/{row_id}")
def get_row(slug: str, name: str, row_id: str, _: AdminKey, session: SessionDep) -> RowOut:
    dataset = _dataset(session, slug, name)[1]
    return RowOut.of(row_service.get_row(session, dataset, row_id), dataset)


@router.post("/datasets/{name}/rows/{row_id}/review")
def review_row(
    slug: str,
    name: str,
    row_id: str,
    verdict: row_service.RowVerdict,
    key: AdminKey,
    session: SessionDep,
) -> RowOut:
    dataset = _dataset(session, slug, name)[1]
    record = row_service.get_row(session, dataset, row_id)
    return RowOut.of(
        row_service.review_row(session, record, verdict, actor=key_actor(key)), dataset
    )


class BulkReview(BaseModel):
    verdict: Literal["approve", "reject", "reopen"]
    filter: row_service.RowFilter = Field(default_factory=row_service.RowFilter)


@router.post("/datasets/{name}/rows/bulk")
def bulk_review(
    slug: str, name: str, body: BulkReview, key: AdminKey, session: SessionDep
) -> dict[str, int]:
    dataset = _dataset(session, slug, name)[1]
    changed = row_service.bulk_review(
        session, dataset, body.filter, body.verdict, actor=key_actor(key)
    )
    return {"changed": changed}


@router.post("/datasets/{name}/check")
def check_quality(
    slug: str, name: str, request: Request, _: AdminKey, session: SessionDep
) -> quality.CheckReport:
    bot, dataset = _dataset(session, slug, name)
    return quality.check_dataset(session, request.app.state.runtime, bot, dataset)


@router.post("/datasets/{name}/snapshots")
def create_snapshot(
    slug: str, name: str, request: Request, key: AdminKey, session: SessionDep
) -> SnapshotOut:
    dataset = _dataset(session, slug, name)[1]
    runtime = request.app.state.runtime
    snapshot, _created = snapshots.create_snapshot(
        session,
        runtime.settings,
        dataset,
        actor=key_actor(key),
        count_tokens=snapshots.token_counter(runtime),
    )
    return SnapshotOut.of(snapshot)


@router.get("/datasets/{name}/snapshots")
def list_snapshots(slug: str, name: str, _: AdminKey, session: SessionDep) -> list[SnapshotOut]:
    dataset = _dataset(session, slug, name)[1]
    return [SnapshotOut.of(s) for s in snapshots.list_snapshots(session, dataset)]


@router.get("/plan")
def plan(
    slug: str,
    request: Request,
    _: AdminKey,
    session: SessionDep,
    dataset: str | None = Query(None, description="Count this dataset's reviewed rows."),
    rows: int | None = Query(None, ge=0, description="Or plan for this many rows."),
    params: str | None = Query(None, description="Base model size, e.g. 7B (default: the bot's)."),
    gpu_memory_gib: float | None = Query(None, ge=0, description="Per GPU; 0: no GPU."),
    gpus: int = Query(1, ge=0, le=1024),
) -> Plan:
    bot = get_bot(session, slug)
    if dataset is None and rows is None:
        raise InvalidRequest("Give a dataset (its rows are counted) or rows.", param="dataset")
    return plan_for(
        session,
        request.app.state.runtime,
        bot,
        dataset_name=dataset,
        params=params,
        gpu_memory_gib=gpu_memory_gib,
        gpus=gpus,
        rows=rows,
    )
