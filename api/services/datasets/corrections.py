"""Staff verdicts on shadow and live answers become training rows: an approved answer as it was,
a corrected one as corrected, a "should refuse" rejection as the bot's refusal.

A row holds the prompt the reviewed release was given (its system prompt and, for RAG releases,
the retrieved sources with the grounding rules), so the adapter learns to answer the way it will be
asked at serving time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Bot, Dataset, Exchange, Release, Review, ReviewItem
from api.services.access.audit import AuditActor
from api.services.datasets.rows import RowFilter, add_rows, iter_rows
from api.services.releases.shadow import candidate_prompt
from serving.prompting import build_prompt
from serving.scope_guard import Scope
from training.rows import Provenance, Row, Source, Status, Turn


def _conversation(messages: list[dict[str, Any]]) -> tuple[tuple[Turn, ...], str] | None:
    """(earlier turns, last question) of a stored conversation, or None if it has no question."""
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if not turns or turns[-1].get("role") != "user":
        return None
    history: list[Turn] = []
    for m in turns[:-1]:
        role = str(m["role"])
        if history and history[-1].role == role:  # two in a row: keep the later one
            history[-1] = Turn(role=role, content=str(m.get("content", "")))
        elif history or role == "user":
            history.append(Turn(role=role, content=str(m.get("content", ""))))
    if history and history[-1].role == "user":
        history.pop()
    return tuple(history), str(turns[-1].get("content", ""))


def _served_prompt(
    session: Session, bot: Bot, item: ReviewItem, exchange: Exchange
) -> tuple[str, list[dict[str, Any]]]:
    """(system message, the other messages) of the prompt the reviewed release was given."""
    release = session.get(Release, item.release_id) if item.release_id else None
    if release is None:
        prompt = build_prompt(bot.system_prompt, exchange.messages or [])
    else:
        prompt = candidate_prompt(release, bot, exchange)
    system = "\n\n".join(m["content"] for m in prompt if m["role"] == "system")
    return system, [dict(m) for m in prompt if m["role"] != "system"]


def add_corrections(
    session: Session, bot: Bot, dataset: Dataset, *, actor: AuditActor
) -> dict[str, int]:
    """Add a row for each reviewed answer of the bot not yet in the dataset; returns counts."""
    present = {
        (r.provenance or {}).get("exchange_id")
        for r in iter_rows(session, dataset, RowFilter(source=Source.CORRECTION))
    }
    latest: dict[str, Review] = {}
    for review in session.scalars(
        select(Review).where(Review.bot_id == bot.id).order_by(Review.created_at)
    ):
        latest[review.item_id] = review  # the latest verdict per item counts
    refusal = Scope(refusal_message=bot.refusal_message or Scope().refusal_message, name=bot.name)
    approved: list[tuple[Row, Provenance]] = []
    edited: list[tuple[Row, Provenance]] = []
    skipped = 0
    for item_id, review in latest.items():
        item = session.get(ReviewItem, item_id)
        if item is None:
            continue
        exchange = session.get(Exchange, item.exchange_id)
        if exchange is None or exchange.id in present:
            continue
        conversation = _conversation(exchange.messages or [])
        if conversation is None:
            skipped += 1
            continue
        category = "closed_qa" if exchange.passages else "open_qa"
        if review.verdict == "approved":
            output, target = review.original_text, approved
        elif review.verdict == "corrected" and review.corrected_text:
            output, target = review.corrected_text, edited
        elif review.verdict == "rejected" and review.reason == "should_refuse":
            output, target, category = refusal.refusal, edited, "refusal"
        else:
            continue  # a plain rejection says what is wrong, not what is right
        system, served = _served_prompt(session, bot, item, exchange)
        conversation = _conversation(served) or conversation
        history, question = conversation
        if not question.strip() or not output.strip():
            skipped += 1
            continue
        row = Row(
            system=system, history=history, instruction=question, output=output, category=category
        )
        provenance = Provenance(source=Source.CORRECTION, exchange_id=exchange.id)
        target.append((row, provenance))
        present.add(exchange.id)
    added = add_rows(session, dataset, approved, status=Status.APPROVED, reviewed_by=actor)
    added_edited = add_rows(session, dataset, edited, status=Status.EDITED, reviewed_by=actor)
    return {"approved": added, "corrected": added_edited, "skipped": skipped}
