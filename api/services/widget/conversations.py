"""A widget conversation lives on the server: the visitor's browser keeps only its id. Each new
question is answered with the conversation's earlier turns (so a client cannot put words in the
bot's mouth), and a page reload shows the conversation again from the stored exchanges."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidRequest, NotFound
from api.models import Exchange
from api.schemas.openai import CONVERSATION_ID as CONVERSATION_ID_PATTERN

# The chat API's rule (visible ASCII, 1-200): what may go into a header and a query.
CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)
# Answers worth remembering: the bot's reply stands (interrupted answers and errors are left out).
_ANSWERED = ("completed", "refused")


def check_conversation_id(value: str | None) -> str | None:
    if value is not None and not CONVERSATION_ID.match(value):
        raise InvalidRequest(
            "conversation_id must be 1-200 visible ASCII characters.",
            param="conversation_id",
            code="invalid_conversation_id",
        )
    return value


def _exchanges(session: Session, bot_id: str, conversation_id: str, limit: int) -> list[Exchange]:
    rows = session.scalars(
        select(Exchange)
        .where(Exchange.bot_id == bot_id, Exchange.conversation_id == conversation_id)
        .order_by(Exchange.created_at.desc(), Exchange.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def earlier_turns(
    session: Session, bot_id: str, conversation_id: str, turns: int
) -> list[dict[str, str]] | None:
    """The last `turns` questions and answers of the conversation as chat messages; None when the
    bot has no such conversation (the visitor starts a new one)."""
    rows = _exchanges(session, bot_id, conversation_id, max(turns, 1) * 2)
    if not rows:
        return None
    messages: list[dict[str, str]] = []
    answered = [r for r in rows if r.status in _ANSWERED]
    for row in answered[-turns:] if turns > 0 else []:
        messages.append({"role": "user", "content": _question(row)})
        messages.append({"role": "assistant", "content": row.answer})
    return messages


def with_question(history: list[dict[str, str]], message: str, limit: int) -> list[dict[str, str]]:
    """Earlier turns and the new question, oldest turns dropped first to stay within `limit`
    characters."""
    while history and sum(len(m["content"]) for m in history) + len(message) > limit:
        history = history[2:]
    return [*history, {"role": "user", "content": message}]


def transcript(
    session: Session, bot_id: str, conversation_id: str, limit: int = 200
) -> list[dict[str, Any]]:
    """The conversation as the widget shows it again (and as a handoff sends it); 404 when this bot
    has no such conversation: another bot's conversation looks exactly like a missing one."""
    rows = _exchanges(session, bot_id, conversation_id, limit)
    if not rows:
        raise NotFound(
            "No such conversation.", param="conversation_id", code="conversation_not_found"
        )
    return [
        {
            "exchange_id": row.id,
            "question": _question(row),
            "answer": row.answer,
            "status": row.status,
            "citations": [_public_citation(c) for c in row.citations or []],
            "feedback": {1: "up", -1: "down"}.get(row.feedback or 0),
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]


def _question(row: Exchange) -> str:
    for message in reversed(row.messages or []):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _public_citation(citation: dict[str, Any]) -> dict[str, Any]:
    keep = ("marker", "document", "title", "heading_path", "page", "chunk_id")
    return {k: citation.get(k) for k in keep}


def source_passage(
    session: Session, bot_id: str, exchange_id: str, chunk_id: str
) -> dict[str, Any]:
    """A passage an answer was given (what a citation link opens)."""
    row = session.get(Exchange, exchange_id)
    if row is None or row.bot_id != bot_id:
        raise NotFound("No such source.", param="exchange_id")
    for passage in row.passages or []:
        if passage.get("chunk_id") == chunk_id:
            return passage
    raise NotFound("No such source.", param="chunk_id")
