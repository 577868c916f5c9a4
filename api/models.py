"""Database tables (SQLAlchemy 2). The schema changes only through Alembic (`migrations/`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from api.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


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
    # The alias clients reach: moving it promotes a release, moving it back rolls back.
    live_release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", use_alter=True, name="fk_bots_live_release")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    live_release: Mapped[Release | None] = relationship(foreign_keys=[live_release_id], lazy="joined")


class Release(Base):
    """An immutable answering configuration of a bot: base model + optional adapter + prompt + mode."""

    __tablename__ = "releases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(String(500))
    adapter: Mapped[str | None] = mapped_column(String(200))
    adapter_path: Mapped[str | None] = mapped_column(String(1000))
    # None: the bot's current system prompt; set: a prompt frozen with this release.
    system_prompt: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(20), default="rag")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """Keys are random and shown once; only a SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    bots: Mapped[list[Bot]] = relationship(secondary="api_key_bots", lazy="selectin")


class ApiKeyBot(Base):
    __tablename__ = "api_key_bots"

    key_id: Mapped[str] = mapped_column(String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True)


class Exchange(Base):
    """One client question and the answer it got, written once the outcome is known."""

    __tablename__ = "exchanges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(String(200))
    release_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("releases.id", ondelete="SET NULL")
    )
    api_key_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("api_keys.id", ondelete="SET NULL"))
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

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
    bot_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("bots.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued | running | succeeded | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_jobs_claim", "status", "created_at"),)
