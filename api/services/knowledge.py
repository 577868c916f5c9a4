"""A bot's knowledge base as the application sees it: per-bot configuration, ingestion with
document rows in the database and originals kept in the data dir, background ingest and re-embed
jobs, and grounding a chat turn (retrieval + scope guard + prompt with numbered sources)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import NotFound, Unavailable
from api.jobs.queue import enqueue
from api.models import Bot, Document, Job
from api.settings import Settings
from serving.backend import ChatMessage
from serving.knowledge import (
    ChromaStore,
    ChunkingConfig,
    ContextBlock,
    IngestResult,
    Instructions,
    KnowledgeBase,
    ParseLimits,
    Passage,
    build_context,
    grounded_messages,
    load_embedder,
)
from serving.scope_guard import GuardDecision, Scope, ScopeGuard

log = logging.getLogger(__name__)


class KnowledgeConfig(BaseModel):
    """Per-bot knowledge settings (the bot's `knowledge` JSON)."""

    embedder: str | None = Field(None, description="Embedding model spec (None: SHADOWDESK_EMBEDDER).")
    top_k: int = Field(4, ge=1, le=50, description="Passages put into the prompt at most.")
    min_score: float = Field(0.35, ge=0.0, le=1.0, description="Passages scoring below this are left out.")
    max_context_chars: int = Field(4000, ge=200, le=100_000)
    document_instruction: str | None = None
    query_instruction: str | None = None
    guard: bool = Field(True, description="Refuse questions outside the bot's scope (and answer small talk).")
    llm_guard: bool = Field(False, description="Ask the model when the embedding signals are unsure.")
    answer_without_context: bool = Field(
        False, description="When the vector store is unreachable, answer without passages (flagged) instead of 503."
    )
    topics: list[str] = Field(default_factory=list)
    example_questions: list[str] = Field(default_factory=list)
    out_of_scope_examples: list[str] = Field(default_factory=list)
    greeting_message: str | None = Field(
        None, description="What the bot answers to a greeting (default: says what it covers, from its name, "
        "topics and scope).")

    def instructions(self) -> Instructions:
        return Instructions(document=self.document_instruction, query=self.query_instruction)


def knowledge_of(raw: dict[str, Any] | None) -> KnowledgeConfig:
    return KnowledgeConfig.model_validate(raw or {})


class KnowledgeHub:
    """One vector store, one knowledge base per embedding model, one scope guard per bot scope."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ChromaStore | None = None
        self._bases: dict[str, KnowledgeBase] = {}
        self._guards: dict[tuple[str, str], ScopeGuard] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> ChromaStore:
        """The vector store, connected on first use (a Chroma server may come up after us)."""
        with self._lock:
            if self._store is None:
                self._store = ChromaStore.open(self.settings.chroma_url or str(self.settings.data_dir / "chroma"))
            return self._store

    def spec(self, config: KnowledgeConfig) -> str:
        return config.embedder or self.settings.embedder

    def base(self, spec: str) -> KnowledgeBase:
        store = self.store
        with self._lock:
            if spec not in self._bases:
                embedder = load_embedder(None if spec == "minilm" else spec)
                self._bases[spec] = KnowledgeBase(
                    store,
                    embedder,
                    chunking=ChunkingConfig(size=self.settings.chunk_size, overlap=self.settings.chunk_overlap),
                    limits=ParseLimits(max_bytes=self.settings.max_document_bytes),
                )
            return self._bases[spec]

    def guard(self, bot_id: str, config: KnowledgeConfig, refusal: str, name: str = "",
              description: str = "") -> ScopeGuard:
        scope = Scope(
            topics=tuple(config.topics),
            example_questions=tuple(config.example_questions),
            out_of_scope_examples=tuple(config.out_of_scope_examples),
            refusal_message=refusal or "Sorry, I can only help with questions about {topics}.",
            description=description,
            name=name,
            greeting_message=config.greeting_message,
        )
        key = (bot_id, hashlib.sha256(json.dumps([repr(scope), self.spec(config), config.query_instruction]).encode()).hexdigest())
        with self._lock:
            guard = self._guards.get(key)
        if guard is None:
            guard = ScopeGuard(scope, self.base(self.spec(config)).embedder, instruction=config.query_instruction)
            with self._lock:
                self._guards[key] = guard
        return guard

    def healthy(self) -> bool:
        try:
            self.store.client.heartbeat()
            return True
        except Exception:  # noqa: BLE001 - any failure means unreachable
            return False


def open_knowledge_base(settings: Settings) -> KnowledgeHub:
    return KnowledgeHub(settings)


# -- ingestion ------------------------------------------------------------------------------------

@dataclass
class IngestSource:
    """A file to ingest: where it is now and the name that identifies the document."""

    path: Path
    source: str


def originals_dir(settings: Settings, bot_id: str) -> Path:
    return settings.data_dir / "documents" / bot_id


def ingest_sources(
    hub: KnowledgeHub,
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
        config = knowledge_of(_bot(session, bot_id).knowledge)
    spec = hub.spec(config)
    base = hub.base(spec)
    by_name = {item.source: item for item in sources}

    def record(result: IngestResult) -> None:
        if result.ok:
            _record_document(hub.settings, sessions, bot_id, by_name[result.source], result, spec)
        if on_result is not None:
            on_result(result)

    return base.ingest_paths(bot_id, [(item.path, item.source) for item in sources],
                             instructions=config.instructions(), force=force, on_result=record)


def _record_document(
    settings: Settings, sessions: Any, bot_id: str, item: IngestSource, result: IngestResult, spec: str
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
        row.source = item.source
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
    return list(session.scalars(select(Document).where(Document.bot_id == bot_id).order_by(Document.source)))


def count_documents(session: Session, bot_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Document).where(Document.bot_id == bot_id)) or 0


def delete_document(hub: KnowledgeHub, sessions: Any, bot_id: str, doc_id: str) -> int:
    """Remove a document's chunks, its row and its original; returns the chunks removed."""
    with transaction(sessions) as session:
        row = session.get(Document, (doc_id, bot_id))
        if row is None:
            raise NotFound(f"No document '{doc_id}' in this bot's knowledge base.", param="doc_id")
        config = knowledge_of(_bot(session, bot_id).knowledge)
    removed = hub.base(hub.spec(config)).delete_document(bot_id, doc_id)
    with transaction(sessions) as session:
        session.execute(delete(Document).where(Document.id == doc_id, Document.bot_id == bot_id))
    shutil.rmtree(originals_dir(hub.settings, bot_id) / doc_id, ignore_errors=True)
    return removed


def _bot(session: Session, bot_id: str) -> Bot:
    bot = session.get(Bot, bot_id)
    if bot is None:
        raise NotFound(f"No bot with id '{bot_id}'.")
    return bot


def ingest_counts(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many files were ingested (new or changed), unchanged, skipped and failed."""
    statuses = [r["status"] for r in results]
    return {status: statuses.count(status) for status in ("ingested", "unchanged", "skipped")} | {
        "failed": statuses.count("error")}


def result_dict(result: IngestResult) -> dict[str, Any]:
    return {
        "source": result.source, "status": result.status, "doc_id": result.doc_id,
        "chunk_count": result.chunk_count, "format": result.format, "title": result.title,
        "page_count": result.page_count, "reason": result.reason, "message": result.message,
        "embedded": result.embedded, "reused": result.reused, "removed": result.removed,
    }


@dataclass
class UploadOutcome:
    """Uploaded files either ingested before the reply (`results`) or handed to a job (`job`);
    `rejected` lists files refused before parsing (too large)."""

    rejected: list[dict[str, Any]]
    results: list[dict[str, Any]] | None = None
    job: Job | None = None


def accept_uploads(
    hub_of: Callable[[], KnowledgeHub],
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
    rejected: list[dict[str, Any]] = []
    sources: list[IngestSource] = []
    total = 0
    for i, (filename, size, stream) in enumerate(uploads):
        name = Path(filename or f"upload-{i}").name
        if (size or 0) > settings.max_document_bytes:
            rejected.append({"source": name, "status": "error", "reason": "too_large",
                             "message": f"{size} bytes; the limit is {settings.max_document_bytes}"})
            continue
        target = upload_dir / f"{i:04d}" / name
        target.parent.mkdir()
        with target.open("wb") as out:
            shutil.copyfileobj(stream, out)
        total += target.stat().st_size
        sources.append(IngestSource(target, name))
    if total > settings.sync_ingest_bytes:
        with transaction(sessions) as session:
            job = enqueue(session, "ingest", {
                "files": [{"path": str(src.path), "source": src.source} for src in sources],
                "force": force, "upload_dir": str(upload_dir), "rejected": rejected,
            }, bot_id=bot_id)
        return UploadOutcome(rejected, job=job)
    try:
        results = ingest_sources(hub_of(), sessions, bot_id, sources, force=force)
    finally:
        shutil.rmtree(upload_dir, ignore_errors=True)
    return UploadOutcome(rejected, results=[result_dict(r) for r in results] + rejected)


# -- jobs -----------------------------------------------------------------------------------------

def run_ingest_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `ingest`: payload {"files": [{"path", "source"}], "force"}; files live in the job's upload
    folder and are removed once ingested."""
    files = [IngestSource(Path(f["path"]), f["source"]) for f in ctx.payload["files"]]
    done: list[dict[str, Any]] = list(ctx.progress.get("results") or ctx.payload.get("rejected", []))
    finished = {r["source"] for r in done}
    todo = [f for f in files if f.source not in finished]  # resume after a crash where we stopped

    def report(result: IngestResult) -> None:
        done.append(result_dict(result))
        ctx.report(results=done, total=len(files), done=len(done))

    ingest_sources(runtime.knowledge, runtime.sessions, ctx.bot_id, todo, force=bool(ctx.payload.get("force")),
                   on_result=report)
    upload_dir = ctx.payload.get("upload_dir")
    if upload_dir:
        shutil.rmtree(upload_dir, ignore_errors=True)
    return {"results": done, **ingest_counts(done)}


def run_reembed_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `reembed`: payload {"embedder": spec}. Builds the bot's collection for the new model from the
    kept originals, then switches the bot to it; until then chat keeps using the old model, so vectors
    of two models are never mixed."""
    new_spec: str = ctx.payload["embedder"]
    hub: KnowledgeHub = runtime.knowledge
    with transaction(runtime.sessions) as session:
        bot = _bot(session, ctx.bot_id)
        config = knowledge_of(bot.knowledge)
        docs = [(d.id, d.source) for d in list_documents(session, ctx.bot_id)]
    old_spec = hub.spec(config)
    base = hub.base(new_spec)
    failed: list[dict[str, Any]] = []
    for i, (doc_id, source) in enumerate(docs):
        folder = originals_dir(runtime.settings, ctx.bot_id) / doc_id
        files = list(folder.iterdir()) if folder.exists() else []
        if not files:
            failed.append({"doc_id": doc_id, "source": source, "message": "original file missing"})
            continue
        result = base.ingest_file(ctx.bot_id, files[0], source=source, instructions=config.instructions(), force=True)
        if not result.ok:
            failed.append({"doc_id": doc_id, "source": source, "message": result.message})
        ctx.report(done=i + 1, total=len(docs))
    if failed:
        base.store.drop_index(ctx.bot_id, base.embedder.model_id)
        raise RuntimeError(f"re-embedding failed for {len(failed)} document(s); the bot keeps {old_spec}: {failed}")
    with transaction(runtime.sessions) as session:
        bot = _bot(session, ctx.bot_id)
        bot.knowledge = {**(bot.knowledge or {}), "embedder": new_spec}
        for row in list_documents(session, ctx.bot_id):
            row.embedder = new_spec
    if old_spec != new_spec:
        old = hub.base(old_spec)
        old.store.drop_index(ctx.bot_id, old.embedder.model_id)
    return {"embedder": new_spec, "documents": len(docs)}


# -- grounding a chat turn ------------------------------------------------------------------------

@dataclass
class Grounding:
    """What retrieval and the scope guard decided for one question."""

    prompt: list[ChatMessage] | None = None  # None: keep the plain prompt
    passages: list[Passage] = field(default_factory=list)
    context: ContextBlock | None = None
    decision: GuardDecision | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.decision is not None and self.decision.verdict == "refuse"

    @property
    def small_talk(self) -> bool:
        return self.decision is not None and self.decision.verdict == "smalltalk"


@dataclass(frozen=True)
class TurnBot:
    """The parts of a bot that grounding reads."""

    id: str
    name: str
    scope: str
    refusal: str
    system_prompt: str
    config: KnowledgeConfig
    has_documents: bool


def ground_turn(
    hub: KnowledgeHub,
    bot: TurnBot,
    *,
    history: Sequence[ChatMessage],
    question: str,
    use_passages: bool,
) -> Grounding:
    """Retrieve passages for `question` (dense + lexical), let the guard decide, and build the
    grounded prompt. The guard runs for every bot with documents or a scope text; a bot with
    neither has nothing to judge by. Blocking (embedding, vector search): call from a thread."""
    grounding = Grounding()
    config = bot.config
    guarded = config.guard and (bot.has_documents or bool(bot.scope.strip() or config.topics
                                                          or config.example_questions))
    if not bot.has_documents and not guarded:
        return grounding
    found = None
    try:
        base = hub.base(hub.spec(config))
        vector = base.retriever.embed_query(question, config.query_instruction)
        if bot.has_documents:
            found = base.retriever.hybrid_search(bot.id, question, vector, config.top_k, config.min_score)
    except Exception as exc:  # noqa: BLE001 - the store being down must not look like "no passages"
        if hub.healthy():
            raise
        if not config.answer_without_context:
            raise Unavailable("The knowledge base is unreachable; try again shortly.",
                              code="knowledge_unavailable") from exc
        log.warning("vector store unreachable; answering without context")
        grounding.flags.append("no_context")
        return grounding
    if found is not None:
        grounding.passages = found.passages
    if guarded:
        guard = hub.guard(bot.id, config, bot.refusal, bot.name, bot.scope)
        grounding.decision = guard.assess(question, found, question_vector=vector)
        if grounding.refused or grounding.small_talk:
            return grounding
    if use_passages and grounding.passages:
        grounding.context = build_context(grounding.passages, max_chars=config.max_context_chars)
        grounding.prompt = grounded_messages(bot.system_prompt, question, grounding.context, history)
    elif use_passages and bot.has_documents:
        grounding.flags.append("no_passages")
    return grounding
