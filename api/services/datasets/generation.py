"""Rows generated from a bot's knowledge chunks, as a resumable background job.

Each (chunk, style) is generated once per dataset: its rows and a `generated_chunks` record commit
together, so a job interrupted at any point resumes where it stopped and never generates a chunk
twice. A model reply that cannot be used never stops the job (`training.generation` drops it with a
reason, kept on the chunk's record); a backend that is down stops it, with the work done kept.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import InvalidRequest
from api.jobs.queue import enqueue
from api.models import Bot, Dataset, GeneratedChunk, Job
from api.services.datasets.rows import add_rows
from api.services.knowledge.config import knowledge_of
from serving.backend import Backend, BackendError, GenerationParams
from serving.scope_guard import Scope
from training.generation import (
    Chunk,
    ChunkResult,
    GenerationOptions,
    Style,
    generate_from_chunk,
    refusal_rows,
)

REFUSALS_KEY = "scope:refusals"
# A chunk whose backend call failed is tried again once after this pause before the job stops.
BACKEND_RETRY_S = 2.0


class GenerateRequest(BaseModel):
    styles: list[Style] = Field(
        default_factory=lambda: [Style.ALPACA], min_length=1, description="Row styles to write."
    )
    pairs_per_chunk: int = Field(3, ge=1, le=10, description="Question/answer pairs per chunk.")
    max_chunks: int | None = Field(
        None, ge=1, description="Stop after this many chunks (a trial run); default: all."
    )
    document_id: str | None = Field(None, description="Only this document's chunks.")
    refusals: bool = Field(
        True, description="Add refusal rows from the bot's scope (off-topic → its refusal)."
    )
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=16, le=4096, description="Longest reply per chunk.")


def start_generation(session: Session, bot: Bot, dataset: Dataset, request: GenerateRequest) -> Job:
    """Queue a generation job (committed with the caller's transaction)."""
    return enqueue(
        session,
        "dataset_generation",
        {"dataset_id": dataset.id, **request.model_dump(mode="json")},
        bot_id=bot.id,
        max_attempts=3,
    )


def chunks_of(runtime: Any, bot: Bot, document_id: str | None = None) -> list[Chunk]:
    """The bot's knowledge chunks in a stable order (document, then position)."""
    config = knowledge_of(bot.knowledge)
    base = runtime.knowledge.base(runtime.knowledge.spec(config))
    chunks = []
    for stored in base.chunks(bot.id):
        meta = stored.metadata
        doc_id = str(meta.get("doc_id", "")) or None
        if document_id is not None and doc_id != document_id:
            continue
        chunks.append(
            (
                str(meta.get("source", "")),
                int(meta.get("chunk_index", 0)),
                Chunk(
                    chunk_id=stored.chunk_id,
                    text=stored.text,
                    document_id=doc_id,
                    document=str(meta.get("source", "")) or None,
                    document_revision=str(meta.get("content_hash", "")) or None,
                    heading=str(meta.get("heading", "")),
                ),
            )
        )
    return [c for _, _, c in sorted(chunks, key=lambda item: (item[0], item[1]))]


def _done(session: Session, dataset_id: str) -> set[tuple[str, str]]:
    return {
        (chunk_id, style)
        for chunk_id, style in session.execute(
            select(GeneratedChunk.chunk_id, GeneratedChunk.style).where(
                GeneratedChunk.dataset_id == dataset_id
            )
        )
    }


async def run_generation_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `dataset_generation`: payload {"dataset_id", GenerateRequest fields}."""
    request = GenerateRequest.model_validate(
        {k: v for k, v in ctx.payload.items() if k != "dataset_id"}
    )
    dataset_id: str = ctx.payload["dataset_id"]
    with transaction(runtime.sessions) as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            return {"skipped": "dataset_deleted"}
        bot = session.get_one(Bot, dataset.bot_id)
        config = knowledge_of(bot.knowledge)
        scope = Scope(
            topics=tuple(config.topics),
            out_of_scope_examples=tuple(config.out_of_scope_examples),
            refusal_message=bot.refusal_message or Scope().refusal_message,
            name=bot.name,
        )
        done = _done(session, dataset_id)
    chunks = await asyncio.to_thread(chunks_of, runtime, bot, request.document_id)
    if not chunks and not request.refusals:
        raise InvalidRequest(f"Bot '{bot.slug}' has no documents to generate from.")
    todo = [(c, s) for c in chunks for s in request.styles if (c.chunk_id, s.value) not in done]
    if request.max_chunks is not None:
        already = {cid for cid, _ in done}
        allowed = request.max_chunks - len(already & {c.chunk_id for c in chunks})
        keep = list(dict.fromkeys(c.chunk_id for c, _ in todo))[: max(allowed, 0)]
        todo = [(c, s) for c, s in todo if c.chunk_id in keep]
    backend: Backend = await runtime.generator()
    options = GenerationOptions(
        pairs_per_chunk=request.pairs_per_chunk,
        params=GenerationParams(max_tokens=request.max_tokens, temperature=request.temperature),
    )
    totals = dict(
        ctx.progress.get("totals")
        or {"rows": 0, "dropped": 0, "prompt_tokens": 0, "completion_tokens": 0}
    )
    started = time.monotonic()
    new_rows = 0

    if request.refusals and (REFUSALS_KEY, "refusal") not in done:
        rows = refusal_rows(scope.refusal, out_of_scope_questions=scope.out_of_scope_examples)
        with transaction(runtime.sessions) as session:
            dataset = session.get_one(Dataset, dataset_id)
            count = add_rows(session, dataset, rows)
            session.add(
                GeneratedChunk(
                    dataset_id=dataset_id,
                    chunk_id=REFUSALS_KEY,
                    style="refusal",
                    rows=count,
                    dropped=[],
                )
            )
        totals["rows"] += count

    async def generate(chunk: Chunk, style: Style) -> ChunkResult:
        try:
            return await generate_from_chunk(backend, chunk, style, options)
        except BackendError:
            await asyncio.sleep(BACKEND_RETRY_S)
            return await generate_from_chunk(backend, chunk, style, options)  # raises: job fails

    # A few chunks at a time: a batching backend answers them together (about 4x the rows/s of one
    # at a time with the local model, bench/generation.py); each chunk still commits on its own.
    window = max(1, runtime.settings.generation_concurrency)
    done_count = 0
    done_chunks: set[str] = set()
    for start in range(0, len(todo), window):
        batch = todo[start : start + window]
        results = await asyncio.gather(*(generate(c, s) for c, s in batch), return_exceptions=True)
        failure: BaseException | None = None
        for (chunk, style), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            with transaction(runtime.sessions) as session:
                dataset = session.get(Dataset, dataset_id)
                if dataset is None:
                    return {"skipped": "dataset_deleted", **totals}
                count = add_rows(session, dataset, result.rows)
                session.add(
                    GeneratedChunk(
                        dataset_id=dataset_id,
                        chunk_id=chunk.chunk_id,
                        style=style.value,
                        rows=count,
                        dropped=[{"reason": d.reason, "text": d.text} for d in result.dropped],
                        prompt_tokens=result.prompt_tokens,
                        completion_tokens=result.completion_tokens,
                    )
                )
            done_count += 1
            done_chunks.add(chunk.chunk_id)
            new_rows += count
            totals["rows"] += count
            totals["dropped"] += len(result.dropped)
            totals["prompt_tokens"] += result.prompt_tokens
            totals["completion_tokens"] += result.completion_tokens
        elapsed = time.monotonic() - started
        ctx.report(
            done=done_count,
            total=len(todo),
            totals=totals,
            rows_per_s=round(new_rows / elapsed, 3) if elapsed > 0 else None,
        )
        if failure is not None:
            raise failure
    return {"chunks": len(done_chunks), "passes": done_count, **totals}


def generation_report(session: Session, dataset: Dataset) -> dict[str, Any]:
    """What generation did for a dataset: chunks done, rows, and why items were dropped."""
    records = list(
        session.scalars(select(GeneratedChunk).where(GeneratedChunk.dataset_id == dataset.id))
    )
    reasons: dict[str, int] = {}
    for record in records:
        for item in record.dropped or ():
            reason = item["reason"].split(" (")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "chunks": len({r.chunk_id for r in records if r.chunk_id != REFUSALS_KEY}),
        "rows": sum(r.rows for r in records),
        "dropped": sum(len(r.dropped or ()) for r in records),
        "dropped_by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "prompt_tokens": sum(r.prompt_tokens for r in records),
        "completion_tokens": sum(r.completion_tokens for r in records),
    }
