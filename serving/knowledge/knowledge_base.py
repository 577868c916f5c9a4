"""`KnowledgeBase`: ingest files for a bot end to end (parse → chunk → embed → replace), list and
delete documents. Everything it needs to remember lives in Chroma metadata; it touches no database
and returns what the caller may want to persist (`IngestResult`, `DocumentInfo`).

Calls block (parsing, encoding): from async code, run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from serving.knowledge.chunking import Chunk, ChunkingConfig, chunk_document
from serving.knowledge.embedders import Embedder
from serving.knowledge.ingestion import IngestResult, SourceFile, ingest_batch
from serving.knowledge.parsers import ParsedDocument, ParseLimits, parse_document
from serving.knowledge.retriever import Retriever, effective_instruction
from serving.knowledge.store import (
    BotIndex,
    ChromaStore,
    IndexMismatchError,
    MetadataValue,
    StoredChunk,
    flat_metadata,
)

__all__ = ["DocumentInfo", "IngestResult", "Instructions", "KnowledgeBase", "document_id"]


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    source: str
    title: str
    format: str
    content_hash: str
    chunk_count: int
    ingested_at: datetime
    size_bytes: int
    page_count: int | None = None


@dataclass(frozen=True)
class Instructions:
    """Per-bot embedding instructions for instruction-following models such as Instructor (None:
    the embedder's default; models without instructions ignore them). Example:
    document="Represent the Kestrel lamp support document for retrieval: "."""

    document: str | None = None
    query: str | None = None


def document_id(source: str) -> str:
    """The default document id: stable for a source name, so re-ingesting it replaces it."""
    return "doc_" + hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass
class KnowledgeBase:
    """Ingest, list and delete a bot's documents; `retriever` searches them."""

    store: ChromaStore
    embedder: Embedder
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    limits: ParseLimits = field(default_factory=ParseLimits)
    #: How files are parsed: `parse_document` in this process by default; an `IsolatedParser`'s
    #: `parse` runs untrusted files in a child process with a time and memory budget.
    parser: Callable[[Path | bytes, str, ParseLimits], ParsedDocument] | None = None

    def __post_init__(self) -> None:
        self.retriever = Retriever(self.store, self.embedder)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def ingest_files(
        self,
        bot: str,
        paths: Iterable[str | Path],
        *,
        instructions: Instructions = Instructions(),
        force: bool = False,
    ) -> list[IngestResult]:
        """Ingest files from disk, one result each: a bad file is reported, the others go in.
        A document is named by its file name, which also decides its identity (see `document_id`)."""
        return self.ingest_paths(
            bot, [(p, Path(p).name) for p in paths], instructions=instructions, force=force
        )

    def ingest_paths(
        self,
        bot: str,
        items: Iterable[tuple[str | Path, str]],
        *,
        instructions: Instructions = Instructions(),
        force: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        batch_files: int = 32,
    ) -> list[IngestResult]:
        """Ingest (path, document name) pairs, `batch_files` files per encoder pass (one file at a
        time leaves the encoder's batches half empty); `on_result` hears of each file as its batch
        completes."""
        results: list[IngestResult] = []
        pending = [self._from_path(Path(path), name, None) for path, name in items]
        for start in range(0, len(pending), max(1, batch_files)):
            batch = self._ingest(bot, pending[start : start + batch_files], instructions, force)
            for result in batch:
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results

    def ingest_file(
        self,
        bot: str,
        path: str | Path,
        *,
        source: str | None = None,
        doc_id: str | None = None,
        instructions: Instructions = Instructions(),
        force: bool = False,
    ) -> IngestResult:
        """Ingest one file from disk. `source` (default: the file name) names the document and,
        unless `doc_id` is given, decides its identity: the same source replaces the old version."""
        item = self._from_path(Path(path), source or Path(path).name, doc_id)
        return self._ingest(bot, [item], instructions, force)[0]

    def ingest_uploads(
        self,
        bot: str,
        files: Iterable[tuple[str, bytes]],
        *,
        instructions: Instructions = Instructions(),
        force: bool = False,
    ) -> list[IngestResult]:
        """Ingest uploaded (filename, content) pairs; the filename picks the format and names the
        document."""
        sources = [self._from_bytes(data, name, None) for name, data in files]
        return self._ingest(bot, sources, instructions, force)

    def ingest_bytes(
        self,
        bot: str,
        data: bytes,
        filename: str,
        *,
        doc_id: str | None = None,
        instructions: Instructions = Instructions(),
        force: bool = False,
    ) -> IngestResult:
        """Ingest one upload."""
        return self._ingest(bot, [self._from_bytes(data, filename, doc_id)], instructions, force)[0]

    def list_documents(self, bot: str) -> list[DocumentInfo]:
        """The bot's documents with chunk counts and ingest time, newest first."""
        index = self._index(bot, create=False)
        if index is None:
            return []
        latest: dict[str, dict[str, MetadataValue]] = {}
        counts: dict[str, int] = {}
        for _, meta in index.iter_metadata():
            doc_id = str(meta.get("doc_id", ""))
            counts[doc_id] = counts.get(doc_id, 0) + 1
            if doc_id not in latest or _float(meta.get("ingested_at")) > _float(
                latest[doc_id].get("ingested_at")
            ):
                latest[doc_id] = dict(meta)
        docs = [_document_info(doc_id, meta, counts[doc_id]) for doc_id, meta in latest.items()]
        return sorted(docs, key=lambda d: d.ingested_at, reverse=True)

    def chunks(self, bot: str) -> Iterator[StoredChunk]:
        """Every chunk of the bot's documents with its text and metadata (none if it has none)."""
        index = self._index(bot, create=False)
        if index is not None:
            yield from index.iter_chunks()

    def stored_chunk(self, bot: str, chunk_id: str) -> StoredChunk | None:
        """One chunk by id, or None when it is gone (its document re-ingested or deleted)."""
        index = self._index(bot, create=False)
        if index is None:
            return None
        found = index.collection.get(ids=[chunk_id], include=["documents", "metadatas"])
        if not found["ids"]:
            return None
        meta = (found["metadatas"] or [{}])[0]
        return StoredChunk(chunk_id, (found["documents"] or [""])[0] or "", flat_metadata(meta))

    def delete_document(self, bot: str, doc_id: str) -> int:
        """Remove a document's chunks; returns how many were removed (0 if it was unknown)."""
        with self._lock(bot):
            index = self._index(bot, create=False)
            removed = index.delete_document(doc_id) if index is not None else 0
        self.retriever.invalidate(bot)
        return removed

    def drop_bot(self, bot: str) -> bool:
        """Delete the bot's whole index for this embedder (e.g. to change its document
        instruction, then re-ingest)."""
        with self._lock(bot):
            dropped = self.store.drop_index(bot, self.embedder.model_id)
        self.retriever.invalidate(bot)
        return dropped

    def chunk(self, document: ParsedDocument, doc_id: str) -> list[Chunk]:
        """Chunks of a parsed document under this knowledge base's chunking config."""
        length = None
        if self.chunking.unit == "tokens":
            length = getattr(self.embedder, "count_tokens", None)
            if length is None:
                raise ValueError("token-sized chunks need an embedder with count_tokens()")
        return chunk_document(document, doc_id, self.chunking, length)

    def _ingest(
        self, bot: str, sources: Sequence[SourceFile], instructions: Instructions, force: bool
    ) -> list[IngestResult]:
        doc_instruction = effective_instruction(self.embedder, "document", instructions.document)
        with self._lock(bot):
            try:
                index = self._index(bot, create=True, document_instruction=doc_instruction)
                assert index is not None
            except IndexMismatchError as exc:
                return [
                    IngestResult(s.name, "error", reason="index_mismatch", message=str(exc))
                    for s in sources
                ]
            except Exception as exc:  # noqa: BLE001 - store unreachable: report it per file
                message = f"opening the index of bot {bot!r} failed: {exc}"
                return [
                    IngestResult(s.name, "error", reason="store_failed", message=message)
                    for s in sources
                ]
            try:
                return ingest_batch(
                    index,
                    self.embedder,
                    sources,
                    chunk=self.chunk,
                    chunking_signature=self.chunking.signature,
                    document_instruction=doc_instruction,
                    force=force,
                )
            finally:
                self.retriever.invalidate(bot)

    def _parse(self, source: Path | bytes, name: str) -> ParsedDocument:
        if self.parser is not None:
            return self.parser(source, name, self.limits)
        return parse_document(source, name, limits=self.limits)

    def _from_path(self, path: Path, name: str, doc_id: str | None) -> SourceFile:
        return SourceFile(
            name,
            lambda: self._parse(path, name),
            doc_id or document_id(name),
        )

    def _from_bytes(self, data: bytes, name: str, doc_id: str | None) -> SourceFile:
        return SourceFile(
            name,
            lambda: self._parse(data, name),
            doc_id or document_id(name),
        )

    def _index(
        self, bot: str, *, create: bool, document_instruction: str | None = None
    ) -> BotIndex | None:
        return self.store.index(
            bot,
            self.embedder.model_id,
            self.embedder.dimension,
            document_instruction=document_instruction,
            create=create,
        )

    def _lock(self, bot: str) -> threading.Lock:
        # Two ingests for one bot at once could interleave the replace steps of one document.
        with self._locks_guard:
            return self._locks.setdefault(bot, threading.Lock())


def _document_info(doc_id: str, meta: dict[str, MetadataValue], chunk_count: int) -> DocumentInfo:
    page_count = meta.get("page_count")
    return DocumentInfo(
        doc_id=doc_id,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        format=str(meta.get("format", "")),
        content_hash=str(meta.get("content_hash", "")),
        chunk_count=chunk_count,
        ingested_at=datetime.fromtimestamp(_float(meta.get("ingested_at")), UTC),
        size_bytes=int(meta.get("size_bytes", 0) or 0),
        page_count=int(page_count) if isinstance(page_count, int) else None,
    )


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
