"""Admin API for a bot's knowledge base: upload documents (small batches at once, large ones as a
job), list and delete them, change retrieval settings; job status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.db import transaction
from api.deps import AdminKey, SessionDep
from api.errors import InvalidRequest
from api.jobs import queue
from api.models import Document, Job
from api.runtime import Runtime
from api.services.bots import management as bot_service
from api.services.knowledge import documents as kb_service
from api.services.knowledge.config import KnowledgeConfig, knowledge_of, update_knowledge

router = APIRouter(prefix="/api")


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    title: str
    format: str
    chunk_count: int
    page_count: int | None
    size_bytes: int | None
    content_hash: str
    embedder: str
    ingested_at: datetime

    @classmethod
    def of(cls, row: Document) -> DocumentOut:
        return cls(
            doc_id=row.id,
            source=row.source,
            title=row.title,
            format=row.format,
            chunk_count=row.chunk_count,
            page_count=row.page_count,
            size_bytes=row.size_bytes,
            content_hash=row.content_hash,
            embedder=row.embedder,
            ingested_at=row.ingested_at,
        )


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls.model_validate(job, from_attributes=True)


@router.post("/bots/{slug}/documents", response_model=None)
async def upload_documents(
    slug: str, files: list[UploadFile], request: Request, _: AdminKey, force: bool = False
) -> JSONResponse:
    """Multipart upload (field `files`, repeatable). Each file succeeds or fails on its own."""
    runtime: Runtime = request.app.state.runtime
    if not files:
        raise InvalidRequest(
            "Send at least one file in the multipart field 'files'.", param="files"
        )

    def accept() -> kb_service.UploadOutcome:
        with transaction(runtime.sessions) as session:
            bot_id = bot_service.get_bot(session, slug).id
        return kb_service.accept_uploads(
            lambda: runtime.knowledge,
            runtime.sessions,
            runtime.settings,
            bot_id,
            [(f.filename, f.size, f.file) for f in files],
            force=force,
        )

    outcome = await run_in_threadpool(accept)
    if outcome.job is not None:
        return JSONResponse(
            {"job": JobOut.of(outcome.job).model_dump(mode="json"), "rejected": outcome.rejected},
            status_code=202,
            headers={"Location": f"/api/jobs/{outcome.job.id}"},
        )
    body = outcome.results or []
    counts = kb_service.ingest_counts(body)
    # 422 only when every file failed: a batch with any success, skip or no-op is a 200.
    return JSONResponse(
        {"results": body, **counts},
        status_code=422 if body and counts["failed"] == len(body) else 200,
    )


@router.get("/bots/{slug}/documents")
def list_documents(slug: str, _: AdminKey, session: SessionDep) -> list[DocumentOut]:
    bot = bot_service.get_bot(session, slug)
    return [DocumentOut.of(d) for d in kb_service.list_documents(session, bot.id)]


@router.delete("/bots/{slug}/documents/{doc_id}")
async def delete_document(slug: str, doc_id: str, request: Request, _: AdminKey) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime

    def remove() -> int:
        with transaction(runtime.sessions) as session:
            bot_id = bot_service.get_bot(session, slug).id
        return kb_service.delete_document(runtime.knowledge, runtime.sessions, bot_id, doc_id)

    removed = await run_in_threadpool(remove)
    return {"doc_id": doc_id, "chunks_removed": removed}


@router.get("/bots/{slug}/knowledge")
def get_knowledge(slug: str, _: AdminKey, session: SessionDep) -> KnowledgeConfig:
    return knowledge_of(bot_service.get_bot(session, slug).knowledge)


@router.put("/bots/{slug}/knowledge", response_model=None)
def put_knowledge(
    slug: str, config: KnowledgeConfig, request: Request, _: AdminKey, session: SessionDep
) -> JSONResponse:
    """Replace the bot's knowledge settings. A new embedding model starts a re-embedding job; the bot
    switches to it once every document is re-embedded (202 with the job)."""
    runtime: Runtime = request.app.state.runtime
    wanted, job = update_knowledge(
        session,
        bot_service.get_bot(session, slug),
        config,
        default_embedder=runtime.settings.embedder,
    )
    if job is not None:
        return JSONResponse(
            {"knowledge": wanted, "job": JobOut.of(job).model_dump(mode="json")}, status_code=202
        )
    return JSONResponse({"knowledge": wanted})


@router.get("/jobs/{job_id}")
def get_job(job_id: str, _: AdminKey, session: SessionDep) -> JobOut:
    return JobOut.of(queue.get_job(session, job_id))


@router.get("/jobs")
def list_jobs(
    _: AdminKey, session: SessionDep, bot: str | None = None, kind: str | None = None
) -> list[JobOut]:
    bot_id = bot_service.get_bot(session, bot).id if bot else None
    return [JobOut.of(j) for j in queue.list_jobs(session, bot_id=bot_id, kind=kind)]
