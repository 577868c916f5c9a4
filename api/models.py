"""Database tables (SQLAlchemy 2). The schema changes only through Alembic (`migrations/`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from api.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime on every database: SQLite keeps no zone, so what it gives back is
    read as UTC (what was written). The API never answers a time without its zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Bot(Base):
    __tablename__ = "bots"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")
    refusal_message: Mapped[str] = mapped_column(Text, default="")
    temperature: Mapped[float] = mapped_column(Float, default=0.7)
    top_p: Mapped[float] = mapped_column(Float, default=1.0)
    max_tokens: Mapped[int] = mapped_column(Integer, default=256)
    # Knowledge base and scope guard settings (serving.knowledge), validated by api.services.knowledge.
    knowledge: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Shadow sampling, review sampling, decision thresholds, annotation threshold (api.services.bots.policy).
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The support widget: allowed origins, theme, strings, handoff (api.services.widget.config).
    widget: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The alias clients reach: moving it promotes a release, moving it back rolls back.
    live_release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", use_alter=True, name="fk_bots_live_release")
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    live_release: Mapped[Release | None] = relationship(
        foreign_keys=[live_release_id], lazy="joined"
    )


class Release(Base):
    """An immutable answering configuration of a bot: base model + optional adapter + prompt + mode."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(String(500))
    adapter: Mapped[str | None] = mapped_column(String(200))
    adapter_path: Mapped[str | None] = mapped_column(String(1000))
    # None: the bot's current system prompt; set: a prompt frozen with this release.
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # rag | adapter | adapter+rag | retrieval (no model: best passages) | holding (a fixed message)
    mode: Mapped[str] = mapped_column(String(20), default="rag")
    holding_message: Mapped[str | None] = mapped_column(Text)
    # True while the release shadows live traffic.
    candidate: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiKey(Base):
    """Keys are random and shown once; only a SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # secret (servers) | publishable (the support widget in browsers: one bot, allowed origins only)
    kind: Mapped[str] = mapped_column(String(20), default="secret")
    # A publishable key is public by design (it sits in the web page): kept in clear for the snippet.
    publishable_value: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    bots: Mapped[list[Bot]] = relationship(secondary="api_key_bots", lazy="selectin")


class ApiKeyBot(Base):
    __tablename__ = "api_key_bots"

    key_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True
    )


class Exchange(Base):
    """One client question and the answer it got, written once the outcome is known."""

    __tablename__ = "exchanges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", ondelete="SET NULL")
    )
    api_key_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    answer: Mapped[str] = mapped_column(Text, default="")
    # completed | interrupted | error
    status: Mapped[str] = mapped_column(String(20))
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    # Retrieved passages given to the model (text, source, heading path, page, score).
    passages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Passages the answer cites (document, heading path, page, score).
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Scope guard verdict and signals; flags such as "no_context".
    guard: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    annotation_id: Mapped[str | None] = mapped_column(String(40))
    # Client feedback: 1 thumbs-up, -1 thumbs-down, with what the client wrote.
    feedback: Mapped[int | None] = mapped_column(Integer)
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_exchanges_bot_created", "bot_id", "created_at"),
        Index("ix_exchanges_conversation", "conversation_id"),
    )


class Job(Base):
    """A unit of background work (ingestion, re-embedding, later shadow answers and training).

    Claimed by one worker at a time with a lease; a worker that dies leaves its lease to expire and the
    job is picked up again, so pending work survives crashes and restarts.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    bot_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued | running | succeeded | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_jobs_claim", "status", "created_at"),)


class ShadowAnswer(Base):
    """A candidate release's answer to a client's exchange, generated in the background, never shown."""

    __tablename__ = "shadow_answers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    exchange_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("exchanges.id", ondelete="CASCADE"), index=True
    )
    release_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("releases.id", ondelete="CASCADE")
    )
    answer: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # completed | error
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    # Exactly one answer per exchange and candidate, whatever happens to the job that makes it.
    __table_args__ = (
        UniqueConstraint("exchange_id", "release_id", name="uq_shadow_exchange_release"),
    )


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | reviewer
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    bots: Mapped[list[Bot]] = relationship(secondary="staff_bot_access", lazy="selectin")


class StaffBotAccess(Base):
    __tablename__ = "staff_bot_access"

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True
    )
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True
    )


class ReviewItem(Base):
    """One answer waiting for (or having had) a staff verdict: a candidate's shadow answer, or the
    live answer itself when the bot has no candidate."""

    __tablename__ = "review_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    exchange_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("exchanges.id", ondelete="CASCADE")
    )
    release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", ondelete="CASCADE")
    )
    shadow_answer_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("shadow_answers.id", ondelete="CASCADE")
    )
    # pending | approved | corrected | rejected | skipped
    status: Mapped[str] = mapped_column(String(20), default="pending")
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Near-identical questions share a group; staff review one per group.
    group_key: Mapped[str | None] = mapped_column(String(64))
    locked_by: Mapped[str | None] = mapped_column(String(40))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_review_items_queue", "bot_id", "status", "priority"),
        UniqueConstraint("exchange_id", "release_id", name="uq_review_exchange_release"),
    )


class Review(Base):
    """A staff verdict on a review item. The latest one per item counts; all are kept."""

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("review_items.id", ondelete="CASCADE"), index=True
    )
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", ondelete="CASCADE")
    )
    reviewer_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("staff_users.id", ondelete="SET NULL")
    )
    verdict: Mapped[str] = mapped_column(String(20))  # approved | corrected | rejected | skipped
    original_text: Mapped[str] = mapped_column(Text, default="")
    corrected_text: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(
        String(40)
    )  # wrong | should_refuse | unsafe | outdated
    comment: Mapped[str] = mapped_column(Text, default="")
    edit_distance: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (Index("ix_reviews_release_created", "release_id", "created_at"),)


class Annotation(Base):
    """An approved question -> answer pair that answers near-identical questions directly."""

    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    review_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("reviews.id", ondelete="SET NULL")
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Four-eyes bots: a reviewer's annotation serves clients only once another one approves it.
    awaiting_approval: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_by: Mapped[str | None] = mapped_column(String(40))
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """Who changed what, when, with the before and after."""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    actor_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(40))
    bot_id: Mapped[str | None] = mapped_column(String(40))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class Document(Base):
    """A document in a bot's knowledge base (its chunks live in the vector store)."""

    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(1000))
    # The resolved path the file was ingested from (None for uploads): the same file reached another
    # way (a folder, then the file alone) is the same document.
    origin: Mapped[str | None] = mapped_column(String(4096))
    title: Mapped[str] = mapped_column(String(1000), default="")
    format: Mapped[str] = mapped_column(String(20), default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    page_count: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    embedder: Mapped[str] = mapped_column(String(200), default="")
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Dataset(Base):
    """A bot's training rows under one name; snapshots of it are what training runs read."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    # Fixed at creation: a row's split is a function of its id and this share, so it never moves.
    validation_share: Mapped[float] = mapped_column(Float, default=0.1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("bot_id", "name", name="uq_dataset_bot_name"),)


class DatasetRow(Base):
    """One training example (training.rows.Row) with its provenance, review status and flags."""

    __tablename__ = "dataset_rows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    system: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    instruction: Mapped[str] = mapped_column(Text)
    input: Mapped[str] = mapped_column(Text, default="")
    output: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(40), default="")
    # The output as first written, kept when a reviewer edits it.
    original_output: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20))  # training.rows.Source
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    chunk_id: Mapped[str | None] = mapped_column(String(100))
    document_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # training.rows.Status
    # [{"flag": "pii", "detail": "...", "related": row id | null}] from the quality checks.
    flags: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(40))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_dataset_rows_status", "dataset_id", "status"),)


class DatasetSnapshot(Base):
    """An immutable, content-hashed version of a dataset's trainable rows, written to a file."""

    __tablename__ = "dataset_snapshots"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("datasets.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(4096))
    train_rows: Mapped[int] = mapped_column(Integer, default=0)
    validation_rows: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_snapshot_dataset_version"),
    )


class GeneratedChunk(Base):
    """A chunk a generation run has finished in one style: a resumed run skips it."""

    __tablename__ = "generated_chunks"

    dataset_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    style: Mapped[str] = mapped_column(String(20), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    # [{"reason": ..., "text": ...}] for each generated item that did not become a row.
    dropped: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class TrainingRun(Base):
    """A dataset snapshot trained into a versioned adapter, with its figures and gate report."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    dataset_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("datasets.id", ondelete="SET NULL")
    )
    job_id: Mapped[str | None] = mapped_column(String(40))
    name: Mapped[str | None] = mapped_column(String(200))  # <bot>-v<N>, set when training starts
    method: Mapped[str] = mapped_column(String(10))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued | running | cancelling | cancelled | succeeded | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    losses: Mapped[list[float]] = mapped_column(JSON, default=list)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifact_path: Mapped[str | None] = mapped_column(String(4096))
    # The candidate release a passing run registered (None: gate failed, skipped or still running).
    release_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Handoff(Base):
    """A widget visitor asked for a person: the conversation, sent to the bot's webhook or e-mail
    address by a job (retried), and what was sent."""

    __tablename__ = "handoffs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    conversation_id: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    page_url: Mapped[str | None] = mapped_column(String(2000))
    # pending | sent | failed
    status: Mapped[str] = mapped_column(String(20), default="pending")
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class RevokedSession(Base):
    """A staff session ended by logging out: its cookie is refused until it would have expired
    anyway (then the row can go)."""

    __tablename__ = "revoked_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # a hash of the session's token
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
