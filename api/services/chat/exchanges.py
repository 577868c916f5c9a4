"""Stored exchanges: every client question, the answer it got and how it went."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Select, String, cast, or_, select
from sqlalchemy.orm import Session, sessionmaker

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

    #: 1 thumbs-up, -1 thumbs-down, None: no rating; and what the client wrote with it.
    feedback: int | None = None
    feedback_comment: str | None = None

    @classmethod
    def of(cls, row: Exchange) -> ExchangeView:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def record_exchange(session: Session, record: ExchangeRecord) -> Exchange:
    row = Exchange(**record.__dict__)
    session.add(row)
    return row


class ExchangeFilter(BaseModel):
    """Which stored exchanges to read (every field optional; all given ones must hold)."""

    bot_id: str | None = None
    conversation_id: str | None = None
    release_id: str | None = None
    status: Literal["completed", "refused", "interrupted", "error"] | None = None
    rating: Literal["up", "down", "none"] | None = Field(None, description="The client's feedback.")
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = Field(None, max_length=200, description="In the question or the answer.")


def list_exchanges(
    session: Session, flt: ExchangeFilter, *, limit: int = 50, offset: int = 0
) -> list[Exchange]:
    """Matching exchanges, newest first."""
    query = _filtered(flt).order_by(Exchange.created_at.desc(), Exchange.id.desc())
    return list(session.scalars(query.limit(limit).offset(offset)))


def iter_exchanges(
    session: Session, flt: ExchangeFilter, *, batch: int = 500
) -> Iterator[Exchange]:
    """Every matching exchange, newest first, read in batches (for exports of any size)."""
    offset = 0
    while True:
        rows = list_exchanges(session, flt, limit=batch, offset=offset)
        yield from rows
        if len(rows) < batch:
            return
        offset += batch


def _filtered(flt: ExchangeFilter) -> Select[Exchange]:
    query = select(Exchange)
    for column, value in (
        (Exchange.bot_id, flt.bot_id),
        (Exchange.conversation_id, flt.conversation_id),
        (Exchange.release_id, flt.release_id),
        (Exchange.status, flt.status),
    ):
        if value is not None:
            query = query.where(column == value)
    if flt.rating is not None:
        rating = {"up": 1, "down": -1}.get(flt.rating)
        query = query.where(
            Exchange.feedback.is_(None) if rating is None else Exchange.feedback == rating
        )
    if flt.since is not None:
        query = query.where(Exchange.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(Exchange.created_at < flt.until)
    if flt.text:
        # Messages are JSON; matching their text form finds the question on both databases.
        pattern = f"%{flt.text.replace('%', '').replace('_', '')}%"
        query = query.where(
            or_(Exchange.answer.ilike(pattern), cast(Exchange.messages, String).ilike(pattern))
        )
    return query


def get_exchange(session: Session, exchange_id: str) -> Exchange:
    row = session.get(Exchange, exchange_id)
    if row is None:
        raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
    return row


def record_feedback(
    session: Session,
    key: ApiKey,
    exchange_id: str,
    rating: Literal["up", "down"],
    comment: str | None = None,
) -> Exchange:
    """Store a client's thumbs-up/down and optional comment. A thumbs-down puts the answer in front
    of reviewers (first in the queue); a changed rating updates the items already queued.
    Another bot's exchange looks exactly like a missing one: nothing leaks across tenants."""
    exchange = session.get(Exchange, exchange_id)
    if exchange is None or not (key.is_admin or any(b.id == exchange.bot_id for b in key.bots)):
        raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
    exchange.feedback = 1 if rating == "up" else -1
    exchange.feedback_comment = (comment or "").strip() or None
    from api.services.review.feed import apply_rating

    apply_rating(session, exchange)
    if rating == "down":
        enqueue(session, "review_feed", {"exchange_id": exchange_id}, bot_id=exchange.bot_id)
    return exchange


EXPORT_COLUMNS = (
    "id",
    "created_at",
    "bot_id",
    "conversation_id",
    "release_id",
    "status",
    "rating",
    "question",
    "answer",
    "cited_documents",
    "flags",
    "feedback_comment",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
)


def export_exchanges(
    sessions: sessionmaker[Session], flt: ExchangeFilter, fmt: Literal["jsonl", "csv"]
) -> Iterator[str]:
    """The matching exchanges as JSON lines (everything stored) or CSV (one row each, the columns
    above), produced as they are read."""
    if fmt == "csv":
        yield _csv_line(EXPORT_COLUMNS)
    with sessions() as session:
        for row in iter_exchanges(session, flt):
            view = ExchangeView.of(row)
            if fmt == "jsonl":
                yield json.dumps(asdict(view), default=str, ensure_ascii=False) + "\n"
                continue
            question = next(
                (m.get("content", "") for m in reversed(view.messages) if m.get("role") == "user"),
                "",
            )
            yield _csv_line(
                (
                    view.id,
                    view.created_at.isoformat(),
                    view.bot_id,
                    view.conversation_id,
                    view.release_id or "",
                    view.status,
                    {1: "up", -1: "down"}.get(view.feedback or 0, ""),
                    question,
                    view.answer,
                    "; ".join(dict.fromkeys(c.get("document", "") for c in view.citations)),
                    ",".join(view.flags),
                    view.feedback_comment or "",
                    round(view.latency_ms, 1),
                    view.prompt_tokens,
                    view.completion_tokens,
                )
            )


def _csv_line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()
