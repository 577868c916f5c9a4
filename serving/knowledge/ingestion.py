"""The ingest pipeline for a batch of files into one bot's index.

Stages: parse and chunk every file (skipping unchanged ones), embed all new chunks of the batch in
one encoder call (sorting by length across files keeps batches full; per file it cost ~10 %), then
replace each document in Chroma on its own, so one bad file never holds back the others and each
document's chunks switch over all at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypedDict

from typing_extensions import Unpack

from serving.knowledge.chunking import Chunk, heading_path_json
from serving.knowledge.embedders import Embedder
from serving.knowledge.parsers import SKIP_REASONS, DocumentError, ParsedDocument
from serving.knowledge.store import BotIndex, MetadataValue, StoredChunk, StoreError, flat_metadata

log = logging.getLogger(__name__)

IngestStatus = Literal["ingested", "unchanged", "skipped", "error"]


@dataclass(frozen=True)
class IngestResult:
    """The outcome for one file. "skipped" files had nothing to index (`reason` says why, e.g.
    "navigation_only"). On error, `reason` is a `DocumentError` code or one of
    "embedding_failed", "store_failed", "index_mismatch", "parse_failed", "duplicate"; the bot's
    index then still holds the document's previous version (if any), untouched."""

    source: str
    status: IngestStatus
    doc_id: str | None = None
    chunk_count: int = 0
    content_hash: str | None = None
    format: str | None = None
    title: str | None = None
    page_count: int | None = None
    ingested_at: datetime | None = None
    reason: str | None = None
    message: str | None = None
    #: Of `chunk_count`: chunks embedded now, and chunks whose stored vectors were reused.
    embedded: int = 0
    reused: int = 0
    #: Chunks of the previous version that were removed.
    removed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The document is in the index (now or already)."""
        return self.status in ("ingested", "unchanged")


@dataclass(frozen=True)
class SourceFile:
    """One file of a batch: its document name, how to parse it, and its document id."""

    name: str
    parse: Callable[[], ParsedDocument]
    doc_id: str


@dataclass
class _Staged:
    source: SourceFile
    document: ParsedDocument
    chunks: list[Chunk]
    reused: dict[str, list[float]]
    todo: list[Chunk]
    seconds: float
    vectors: list[list[float]] = field(default_factory=list)


def ingest_batch(
    index: BotIndex,
    embedder: Embedder,
    sources: Sequence[SourceFile],
    *,
    chunk: Callable[[ParsedDocument, str], list[Chunk]],
    chunking_signature: str,
    document_instruction: str,
    force: bool = False,
) -> list[IngestResult]:
    """Ingest `sources` into `index`; one result per source, in order."""
    results: list[IngestResult | None] = [None] * len(sources)
    staged: list[tuple[int, _Staged]] = []
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.doc_id in seen:
            results[i] = _failed(
                source.name, "duplicate", f"{source.name}: the batch already has this document", 0.0
            )
            continue
        seen.add(source.doc_id)
        outcome = _stage(index, source, chunk, chunking_signature, force)
        if isinstance(outcome, IngestResult):
            results[i] = outcome
        else:
            staged.append((i, outcome))

    failures = _embed(embedder, [s for _, s in staged], document_instruction or None)
    for i, item in staged:
        if id(item) in failures:
            results[i] = _failed(
                item.source.name,
                "embedding_failed",
                f"{item.source.name}: embedding failed ({failures[id(item)]})",
                item.seconds,
                **_described(item),
            )
        else:
            results[i] = _commit(index, item, chunking_signature)
    return [r for r in results if r is not None]


def _stage(
    index: BotIndex,
    source: SourceFile,
    chunk: Callable[[ParsedDocument, str], list[Chunk]],
    chunking_signature: str,
    force: bool,
) -> _Staged | IngestResult:
    started = time.perf_counter()
    try:
        document = source.parse()
        chunks = chunk(document, source.doc_id)
    except DocumentError as exc:
        if exc.reason in SKIP_REASONS:
            seconds = time.perf_counter() - started
            return IngestResult(
                source.name, "skipped", reason=exc.reason, message=exc.message, seconds=seconds
            )
        return _failed(source.name, exc.reason, exc.message, time.perf_counter() - started)
    except Exception as exc:
        log.exception("parser crashed on %s", source.name)
        return _failed(
            source.name,
            "parse_failed",
            f"{source.name}: could not be parsed ({type(exc).__name__}: {exc})",
            time.perf_counter() - started,
        )
    described: _Described = {
        "doc_id": source.doc_id,
        "content_hash": document.content_hash,
        "format": document.format,
        "title": document.title,
        "page_count": document.page_count,
    }
    if not chunks:
        return _failed(
            source.name,
            "empty",
            f"{source.name}: no text to index",
            time.perf_counter() - started,
            **described,
        )
    try:
        previous = _stored_version(index, source.doc_id)
        unchanged = (
            not force
            and previous is not None
            and previous.get("content_hash") == document.content_hash
            and previous.get("chunking") == chunking_signature
        )
        if unchanged:
            assert previous is not None
            return IngestResult(
                source.name,
                "unchanged",
                chunk_count=index.count(source.doc_id),
                ingested_at=_timestamp(previous.get("ingested_at")),
                seconds=time.perf_counter() - started,
                **described,
            )
        reused = index.existing_embeddings(source.doc_id, [c.chunk_id for c in chunks])
    except Exception as exc:  # noqa: BLE001 - the store failing for one file is that file's result
        return _failed(
            source.name,
            "store_failed",
            f"{source.name}: reading the index failed ({exc})",
            time.perf_counter() - started,
            **described,
        )
    todo = [c for c in chunks if c.chunk_id not in reused]
    return _Staged(source, document, chunks, reused, todo, time.perf_counter() - started)


def _embed(embedder: Embedder, staged: list[_Staged], instruction: str | None) -> dict[int, str]:
    """Fill each item's `vectors`; returns {id(item): error} for items that could not be embedded.
    One call for the whole batch; if it fails, file by file, to isolate the culprit."""
    texts = [c.embedding_text for item in staged for c in item.todo]
    if not texts:
        return {}
    started = time.perf_counter()
    try:
        vectors = embedder.embed_documents(texts, instruction)
    except Exception:
        log.warning("batch embedding failed; retrying file by file", exc_info=True)
    else:
        elapsed = time.perf_counter() - started
        offset = 0
        for item in staged:
            item.vectors = vectors[offset : offset + len(item.todo)]
            offset += len(item.todo)
            item.seconds += elapsed * len(item.todo) / len(texts)
        return {}
    failures: dict[int, str] = {}
    for item in staged:
        if not item.todo:
            continue
        try:
            item.vectors = embedder.embed_documents(
                [c.embedding_text for c in item.todo], instruction
            )
        except Exception as exc:  # noqa: BLE001 - reported as this file's result
            failures[id(item)] = f"{type(exc).__name__}: {exc}"
    return failures


def _commit(index: BotIndex, item: _Staged, chunking_signature: str) -> IngestResult:
    started = time.perf_counter()
    vectors = {**item.reused, **{c.chunk_id: v for c, v in zip(item.todo, item.vectors)}}
    ingested_at = datetime.now(UTC)
    stored = [stored_chunk(c, item.document, ingested_at, chunking_signature) for c in item.chunks]
    try:
        stats = index.replace_document(
            item.source.doc_id, stored, [vectors[c.chunk_id] for c in item.chunks]
        )
    except (StoreError, ValueError) as exc:
        return _failed(
            item.source.name,
            "store_failed",
            str(exc),
            item.seconds + time.perf_counter() - started,
            **_described(item),
        )
    return IngestResult(
        item.source.name,
        "ingested",
        chunk_count=len(item.chunks),
        ingested_at=ingested_at,
        embedded=len(item.todo),
        reused=len(item.reused),
        removed=stats.removed,
        seconds=item.seconds + time.perf_counter() - started,
        **_described(item),
    )


def stored_chunk(
    chunk: Chunk, document: ParsedDocument, at: datetime, chunking: str
) -> StoredChunk:
    """A chunk with the metadata search, citations and document listings read back."""
    meta: dict[str, MetadataValue] = {
        "doc_id": chunk.doc_id,
        "source": document.source,
        "title": document.title,
        "format": document.format,
        "content_hash": document.content_hash,
        "size_bytes": document.size_bytes,
        "chunk_index": chunk.index,
        "chunk_hash": chunk.content_hash,
        "heading_path": heading_path_json(chunk.heading_path),
        "heading": " > ".join(chunk.heading_path),
        "block_kinds": ",".join(chunk.block_kinds),
        "ingested_at": at.timestamp(),
        "chunking": chunking,
    }
    # Chroma metadata cannot hold None: an absent key means "no page".
    if chunk.page is not None:
        meta["page"] = chunk.page
    if document.page_count is not None:
        meta["page_count"] = document.page_count
    return StoredChunk(chunk.chunk_id, chunk.text, meta)


class _Described(TypedDict, total=False):
    """What is known of a parsed document, for its result whatever happens next."""

    doc_id: str
    content_hash: str
    format: str
    title: str
    page_count: int | None


def _described(item: _Staged) -> _Described:
    doc = item.document
    return {
        "doc_id": item.source.doc_id,
        "content_hash": doc.content_hash,
        "format": doc.format,
        "title": doc.title,
        "page_count": doc.page_count,
    }


def _failed(
    source: str, reason: str, message: str, seconds: float, **extra: Unpack[_Described]
) -> IngestResult:
    log.warning("ingest of %s failed: %s", source, message)
    return IngestResult(source, "error", reason=reason, message=message, seconds=seconds, **extra)


def _stored_version(index: BotIndex, doc_id: str) -> dict[str, MetadataValue] | None:
    found = index.collection.get(where={"doc_id": doc_id}, limit=1, include=["metadatas"])
    metas = found["metadatas"] or []
    return flat_metadata(metas[0]) if metas else None


def _timestamp(value: object) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, (int, float)) else None
