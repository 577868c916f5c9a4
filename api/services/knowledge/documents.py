"""A bot's documents as the application sees them: ingestion with a document row per file and the
original kept in the data dir (for re-embedding), uploads staged and ingested now or as a job,
listing and deletion."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import NotFound
from api.jobs.queue import enqueue
from api.models import Bot, Document, Job
from api.services.knowledge.config import knowledge_of
from api.services.knowledge.registry import KnowledgeRegistry
from api.settings import Settings
from api.unit_of_work import ACCESS, changed
from serving.knowledge import IngestResult
from serving.knowledge.parsers import expanded_size

log = logging.getLogger(__name__)


@dataclass
class IngestSource:
    """A file to ingest: where it is now, the name that identifies the document, and (for a file
    ingested from disk where it lives) its resolved path, so that the same file reached another
    way later replaces its document instead of adding a second one."""

    path: Path
    source: str
    origin: str | None = None

    @classmethod
    def from_disk(cls, path: Path, source: str) -> IngestSource:
        return cls(path, source, str(path.resolve()))


def originals_dir(settings: Settings, bot_id: str) -> Path:
    return settings.data_dir / "documents" / bot_id


def ingest_sources(
    hub: KnowledgeRegistry,
    sessions: Any,
    bot_id: str,
    sources: Sequence[IngestSource],
    *,
    force: bool = False,
    on_result: Callable[[IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest files for a bot: each file succeeds, is skipped (nothing to index) or fails alone;
    ingested files are recorded as document rows and their originals kept (for re-embedding).
    Files go to the encoder in batches (many files' chunks per pass). Blocking: call from a
    thread or a job."""
    with transaction(sessions) as session:
        config = knowledge_of(bot_row(session, bot_id).knowledge)
        sources = _known_names(session, bot_id, sources)
    spec = hub.spec(config)
    base = hub.base(spec)
    by_name = {item.source: item for item in sources}

    def record(result: IngestResult) -> None:
        if result.ok:
            _record_document(hub.settings, sessions, bot_id, by_name[result.source], result, spec)
        if on_result is not None:
            on_result(result)

    return base.ingest_paths(
        bot_id,
        [(item.path, item.source) for item in sources],
        instructions=config.instructions(),
        force=force,
        on_result=record,
    )


def _known_names(
    session: Session, bot_id: str, sources: Sequence[IngestSource]
) -> list[IngestSource]:
    """Sources renamed to the document their file already is (same resolved path): a document's
    identity does not depend on whether it was reached through its folder or on its own."""
    origins = [s.origin for s in sources if s.origin]
    if not origins:
        return list(sources)
    rows = session.execute(
        select(Document.origin, Document.source).where(
            Document.bot_id == bot_id, Document.origin.in_(origins)
        )
    )
    known = {str(origin): str(source) for origin, source in rows}
    return [
        IngestSource(s.path, known.get(s.origin, s.source), s.origin) if s.origin else s
        for s in sources
    ]


def _record_document(
    settings: Settings,
    sessions: Any,
    bot_id: str,
    item: IngestSource,
    result: IngestResult,
    spec: str,
) -> None:
    assert result.doc_id is not None
    keep = originals_dir(settings, bot_id) / result.doc_id
    keep.mkdir(parents=True, exist_ok=True)
    target = keep / Path(item.source).name
    if item.path.resolve() != target.resolve():
        for old in keep.iterdir():
            old.unlink()
        shutil.copyfile(item.path, target)
    with transaction(sessions) as session:
        row = session.get(Document, (result.doc_id, bot_id))
        if row is None:
            row = Document(id=result.doc_id, bot_id=bot_id)
            session.add(row)
            changed(session, ACCESS)  # the bot may have had no documents until now
        row.source = item.source
        row.origin = item.origin
        row.title = result.title or item.source
        row.format = result.format or ""
        row.content_hash = result.content_hash or ""
        row.chunk_count = result.chunk_count
        row.page_count = result.page_count
        row.size_bytes = target.stat().st_size
        row.embedder = spec
        if result.status == "ingested" or row.ingested_at is None:
            row.ingested_at = result.ingested_at or datetime.now(UTC)


def list_documents(session: Session, bot_id: str) -> list[Document]:
    return list(
        session.scalars(select(Document).where(Document.bot_id == bot_id).order_by(Document.source))
    )


def count_documents(session: Session, bot_id: str) -> int:
    return (
        session.scalar(select(func.count()).select_from(Document).where(Document.bot_id == bot_id))
        or 0
    )


def delete_document(hub: KnowledgeRegistry, sessions: Any, bot_id: str, doc_id: str) -> int:
    """Remove a document's chunks, its row and its original; returns the chunks removed."""
    with transaction(sessions) as session:
        row = session.get(Document, (doc_id, bot_id))
        if row is None:
            raise NotFound(f"No document '{doc_id}' in this bot's knowledge base.", param="doc_id")
        config = knowledge_of(bot_row(session, bot_id).knowledge)
    removed = hub.base(hub.spec(config)).delete_document(bot_id, doc_id)
    with transaction(sessions) as session:
        session.execute(delete(Document).where(Document.id == doc_id, Document.bot_id == bot_id))
        changed(session, ACCESS)
    shutil.rmtree(originals_dir(hub.settings, bot_id) / doc_id, ignore_errors=True)
    return removed


def bot_row(session: Session, bot_id: str) -> Bot:
    bot = session.get(Bot, bot_id)
    if bot is None:
        raise NotFound(f"No bot with id '{bot_id}'.")
    return bot


def ingest_counts(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many files were ingested (new or changed), unchanged, skipped and failed."""
    statuses = [r["status"] for r in results]
    return {status: statuses.count(status) for status in ("ingested", "unchanged", "skipped")} | {
        "failed": statuses.count("error")
    }


def result_dict(result: IngestResult) -> dict[str, Any]:
    return {
        "source": result.source,
        "status": result.status,
        "doc_id": result.doc_id,
        "chunk_count": result.chunk_count,
        "format": result.format,
        "title": result.title,
        "page_count": result.page_count,
        "reason": result.reason,
        "message": result.message,
        "embedded": result.embedded,
        "reused": result.reused,
        "removed": result.removed,
    }


@dataclass
class UploadOutcome:
    """Uploaded files either ingested before the reply (`results`) or handed to a job (`job`);
    `rejected` lists files refused before parsing (too large)."""

    rejected: list[dict[str, Any]]
    results: list[dict[str, Any]] | None = None
    job: Job | None = None


def accept_uploads(
    hub_of: Callable[[], KnowledgeRegistry],
    sessions: Any,
    settings: Settings,
    bot_id: str,
    uploads: Sequence[tuple[str | None, int | None, BinaryIO]],
    *,
    force: bool = False,
) -> UploadOutcome:
    """Stage (filename, size, stream) uploads on disk, then ingest them now when small, or enqueue an
    `ingest` job (which removes the staged files when done). Blocking: call from a thread."""
    staging = settings.data_dir / "uploads"
    staging.mkdir(parents=True, exist_ok=True)
    upload_dir = Path(tempfile.mkdtemp(prefix="upload-", dir=staging))
    try:
        return _stage_and_ingest(
            hub_of, sessions, settings, bot_id, uploads, upload_dir, force=force
        )
    except BaseException:
        shutil.rmtree(upload_dir, ignore_errors=True)  # nothing half-staged stays behind
        raise


def upload_name(filename: str | None, index: int) -> str | None:
    """The file name to keep for an upload (its last path part), or None when it cannot be one:
    empty, `.`/`..`, a NUL or control byte, or over 255 bytes."""
    if not filename:
        return f"upload-{index}"
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if name in ("", ".", "..") or len(name.encode("utf-8", "surrogatepass")) > 255:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 or 0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        return None
    return name


def _refused(source: str, reason: str, message: str) -> dict[str, Any]:
    """An upload refused before parsing, as an ingest result reports it."""
    return {"source": source, "status": "error", "reason": reason, "message": message}


def _stage_and_ingest(
    hub_of: Callable[[], KnowledgeRegistry],
    sessions: Any,
    settings: Settings,
    bot_id: str,
    uploads: Sequence[tuple[str | None, int | None, BinaryIO]],
    upload_dir: Path,
    *,
    force: bool,
) -> UploadOutcome:
    rejected: list[dict[str, Any]] = []
    sources: list[IngestSource] = []
    total = 0
    for i, (filename, size, stream) in enumerate(uploads):
        name = upload_name(filename, i)
        if name is None:
            rejected.append(
                _refused(
                    (filename or "")[:255].encode("utf-8", "replace").decode(),
                    "bad_name",
                    "the file name is empty, '.', '..', too long (over 255 bytes) or holds "
                    "control characters",
                )
            )
            continue
        if (size or 0) > settings.max_document_bytes:
            rejected.append(
                _refused(
                    name, "too_large", f"{size} bytes; the limit is {settings.max_document_bytes}"
                )
            )
            continue
        target = upload_dir / f"{i:04d}" / name
        target.parent.mkdir()
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out)
        # The sync/job choice counts what the file becomes: a small ZIP can hold a lot of text.
        total += expanded_size(target)
        sources.append(IngestSource(target, name))
    if not sources:
        shutil.rmtree(upload_dir, ignore_errors=True)
        return UploadOutcome(rejected, results=list(rejected))
    if total > settings.sync_ingest_bytes:
        with transaction(sessions) as session:
            job = enqueue(
                session,
                "ingest",
                {
                    "files": [{"path": str(src.path), "source": src.source} for src in sources],
                    "force": force,
                    "upload_dir": str(upload_dir),
                    "rejected": rejected,
                },
                bot_id=bot_id,
            )
        return UploadOutcome(rejected, job=job)
    try:
        results = ingest_sources(hub_of(), sessions, bot_id, sources, force=force)
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
    return UploadOutcome(rejected, results=[result_dict(r) for r in results] + rejected)
