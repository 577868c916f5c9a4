"""Stored exchanges: every client question, the answer it got and how it went."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.jobs.queue import enqueue
from api.models import ApiKey, Exchange


@dataclass
class ExchangeRecord:
    """Everything known about an exchange once its outcome is known; written in one INSERT."""

    id: str
    bot_id: str
    conversation_id: str
    release_id: str | None
    api_key_id: str | None
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    answer: str
    status: str  # completed | interrupted | error
    finish_reason: str | None
    error: str | None
    streamed: bool
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    passages: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    guard: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    annotation_id: str | None = None


@dataclass
class ExchangeView(ExchangeRecord):
    """A stored exchange as admins read it: the record, and what the client said of the answer."""

    #: 1 thumbs-up, -1 thumbs-down, None: no rating.
    feedback: int | None = None

    @classmethod
    def of(cls, row: Exchange) -> ExchangeView:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def record_exchange(session: Session, record: ExchangeRecord) -> Exchange:
    row = Exchange(**record.__dict__)
    session.add(row)
    return row


def list_exchanges(
    session: Session,
    *,
    bot_id: str | None = None,
    conversation_id: str | None = None,
    limit: int = 50,
) -> list[Exchange]:
    query = select(Exchange).order_by(Exchange.created_at.desc(), Exchange.id.desc()).limit(limit)
    if bot_id is not None:
        query = query.where(Exchange.bot_id == bot_id)
    if conversation_id is not None:
        query = query.where(Exchange.conversation_id == conversation_id)
    return list(session.scalars(query))


def get_exchange(session: Session, exchange_id: str) -> Exchange:
    row = session.get(Exchange, exchange_id)
    if row is None:
        raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
    return row


def record_feedback(
    session: Session, key: ApiKey, exchange_id: str, rating: Literal["up", "down"]
) -> Exchange:
    """Store a client's thumbs-up/down. A thumbs-down queues the answer for review (a priority).
    Another bot's exchange looks exactly like a missing one: nothing leaks across tenants."""
    exchange = session.get(Exchange, exchange_id)
    if exchange is None or not (key.is_admin or any(b.id == exchange.bot_id for b in key.bots)):
        raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
    exchange.feedback = 1 if rating == "up" else -1
    if rating == "down":
        enqueue(session, "review_feed", {"exchange_id": exchange_id}, bot_id=exchange.bot_id)
    return exchange
