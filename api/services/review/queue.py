"""The review queue: items a staff member may review, filtered, one row per group, with counts.

Items of one bot and release whose questions are near-identical share a `group_key` (set by the
review feed). The queue shows each group once, represented by its most urgent item (highest
priority, then oldest), with the group's size; a verdict on the representative settles the group
(see `api.services.review.verdicts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, exists, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from api.db import rowcount
from api.errors import InvalidRequest, NotFound
from api.models import Bot, Exchange, Release, Review, ReviewItem, ShadowAnswer, StaffUser, utcnow
from api.services.access.staff import Actor, require_bot

# "retired": the release stopped answering before anyone reviewed it (kept for the record).
STATUSES = ("pending", "approved", "corrected", "rejected", "skipped", "retired")
REJECT_REASONS = ("wrong", "should_refuse", "unsafe", "outdated")
_REASON = re.compile(r"^[a-z0-9_:-]{1,40}$")


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows. `reason` is one of the feed's reasons for queueing an item (e.g.
    `low_retrieval`) or a rejection reason (`wrong`, `should_refuse`, `unsafe`, `outdated`)."""

    bot_id: str | None = None
    status: str = "pending"
    reason: str | None = None
    release_id: str | None = None

    def validated(self) -> QueueFilter:
        if self.status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}.", param="status")
        if self.reason is not None and not _REASON.match(self.reason):
            raise InvalidRequest("reason must be a short lowercase word.", param="reason")
        return self

    def query(self) -> dict[str, str]:
        """The filter as query parameters (what links between pages carry along)."""
        pairs = {
            "bot": self.bot_id,
            "status": self.status,
            "reason": self.reason,
            "release": self.release_id,
        }
        return {k: v for k, v in pairs.items() if v}


@dataclass(frozen=True)
class LockInfo:
    holder: str  # who holds it: a staff email or "API client"
    until: datetime
    mine: bool


@dataclass(frozen=True)
class QueueEntry:
    item: ReviewItem
    bot_slug: str
    release_version: int | None
    question: str
    answer: str
    group_size: int
    lock: LockInfo | None


@dataclass
class QueuePage:
    entries: list[QueueEntry]
    # status -> (items, groups) under the filter's bot, release and reason
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    total_groups: int = 0
    limit: int = 50
    offset: int = 0


def resolve_filter(
    session: Session,
    actor: Actor,
    *,
    bot: str | None,
    status: str = "pending",
    reason: str | None = None,
    release: str | None = None,
) -> tuple[QueueFilter, Bot | None]:
    """A queue filter from what people type (the bot by slug; empty values mean "any"), checked
    against what `actor` reviews; with the bot it names."""
    selected = None
    if bot:
        found = session.scalar(select(Bot).where(Bot.slug == bot))
        if found is None:
            raise NotFound(f"No bot '{bot}'.", param="bot")
        selected = require_bot(actor, found)
    flt = QueueFilter(selected.id if selected else None, status, reason or None, release or None)
    return flt.validated(), selected


def scope_clause(session: Session, actor: Actor, flt: QueueFilter) -> ColumnElement[bool]:
    """The bot, release and reason part of a filter, limited to the bots `actor` reviews."""
    conds: list[ColumnElement[bool]] = []
    if flt.bot_id is not None:
        bot = session.get(Bot, flt.bot_id)
        if bot is None:
            raise NotFound(f"No bot with id '{flt.bot_id}'.", param="bot")
        require_bot(actor, bot)
        conds.append(ReviewItem.bot_id == bot.id)
    elif not actor.is_admin:
        conds.append(ReviewItem.bot_id.in_(actor.bot_ids))
    if flt.release_id is not None:
        conds.append(ReviewItem.release_id == flt.release_id)
    if flt.reason is not None:
        conds.append(_reason_clause(flt.reason))
    return and_(true(), *conds)


def _reason_clause(reason: str) -> ColumnElement[bool]:
    if reason in REJECT_REASONS:
        latest = (
            select(Review.reason)
            .where(Review.item_id == ReviewItem.id)
            .order_by(Review.created_at.desc(), Review.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        return and_(ReviewItem.status == "rejected", latest == reason)
    # `reasons` is a JSON list of plain words, so its text holds `"word"` exactly when the list does
    # (LIKE's own wildcards are escaped); portable across SQLite and PostgreSQL JSON.
    pattern = '%"' + reason.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + '"%'
    return cast(ReviewItem.reasons, Text).like(pattern, escape="\\")


def group_expr() -> ColumnElement[str]:
    """A group's identity within a bot and release: its key, or the item's own id when ungrouped."""
    return func.coalesce(ReviewItem.group_key, ReviewItem.id)


def _order(status: str) -> tuple[Any, ...]:
    if status == "pending":
        return (ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id)
    return (ReviewItem.updated_at.desc(), ReviewItem.id.desc())


def list_queue(
    session: Session,
    actor: Actor,
    flt: QueueFilter,
    *,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> QueuePage:
    """One page of the queue: each group once (its representative and size), plus counts by status."""
    flt = flt.validated()
    now = now or utcnow()
    scope = scope_clause(session, actor, flt)
    ranked = representatives(scope, flt.status)
    total = session.scalar(select(func.count()).select_from(ranked).where(ranked.c.rank == 1)) or 0
    rows = session.execute(
        select(ReviewItem, ranked.c.size, Bot.slug, Release.version, Exchange, ShadowAnswer.answer)
        .join(ranked, ranked.c.id == ReviewItem.id)
        .join(Bot, Bot.id == ReviewItem.bot_id)
        .join(Exchange, Exchange.id == ReviewItem.exchange_id)
        .outerjoin(Release, Release.id == ReviewItem.release_id)
        .outerjoin(ShadowAnswer, ShadowAnswer.id == ReviewItem.shadow_answer_id)
        .where(ranked.c.rank == 1)
        .order_by(*_order(flt.status))
        .limit(limit)
        .offset(offset)
    ).all()
    holders = lock_holders(session, [r[0] for r in rows], now)
    entries = [
        QueueEntry(
            item=item,
            bot_slug=slug,
            release_version=version,
            question=last_question(exchange.messages),
            answer=shadow_answer if item.shadow_answer_id else exchange.answer,
            group_size=size,
            lock=lock_info(item, holders, actor, now),
        )
        for item, size, slug, version, exchange, shadow_answer in rows
    ]
    return QueuePage(entries, count_by_status(session, scope), total, limit, offset)


def representatives(scope: ColumnElement[bool], status: str) -> Any:
    """A subquery of (id, rank, size) per item of `status` in `scope`; rank 1 represents its group."""
    partition = (ReviewItem.bot_id, ReviewItem.release_id, group_expr())
    return (
        select(
            ReviewItem.id.label("id"),
            func.row_number()
            .over(partition_by=partition, order_by=_order("pending"))
            .label("rank"),
            func.count().over(partition_by=partition).label("size"),
        )
        .where(scope, ReviewItem.status == status)
        .subquery()
    )


def ordered_ids(session: Session, actor: Actor, flt: QueueFilter, *, limit: int = 500) -> list[str]:
    """The representatives' ids in queue order (for next / previous)."""
    flt = flt.validated()
    ranked = representatives(scope_clause(session, actor, flt), flt.status)
    query = (
        select(ReviewItem.id)
        .join(ranked, ranked.c.id == ReviewItem.id)
        .where(ranked.c.rank == 1)
        .order_by(*_order(flt.status))
        .limit(limit)
    )
    return list(session.scalars(query))


def unlocked_pending_ids(
    session: Session, actor: Actor, flt: QueueFilter, now: datetime, *, limit: int = 20
) -> list[str]:
    """Pending representatives, in queue order, whose group nobody else holds."""
    flt = QueueFilter(flt.bot_id, "pending", flt.reason, flt.release_id).validated()
    ranked = representatives(scope_clause(session, actor, flt), "pending")
    member = aliased(ReviewItem)
    held = exists().where(
        member.bot_id == ReviewItem.bot_id,
        or_(
            member.release_id == ReviewItem.release_id,
            and_(member.release_id.is_(None), ReviewItem.release_id.is_(None)),
        ),
        func.coalesce(member.group_key, member.id) == group_expr(),
        member.status == "pending",
        member.locked_by.is_not(None),
        member.locked_by != actor.id,
        member.locked_until > now,
    )
    query = (
        select(ReviewItem.id)
        .join(ranked, ranked.c.id == ReviewItem.id)
        .where(ranked.c.rank == 1, ~held)
        .order_by(*_order("pending"))
        .limit(limit)
    )
    return list(session.scalars(query))


def count_by_status(session: Session, scope: ColumnElement[bool]) -> dict[str, tuple[int, int]]:
    """status -> (items, groups) within `scope`."""
    group = func.coalesce(ReviewItem.release_id, "") + ":" + group_expr()
    rows = session.execute(
        select(ReviewItem.status, func.count(), func.count(group.distinct()))
        .where(scope)
        .group_by(ReviewItem.status)
    ).all()
    counts = {status: (0, 0) for status in STATUSES}
    counts.update({status: (int(items), int(groups)) for status, items, groups in rows})
    return counts


def lock_holders(session: Session, items: list[ReviewItem], now: datetime) -> dict[str, str]:
    """Holder id -> label for the live locks among `items`."""
    ids = {
        i.locked_by for i in items if i.locked_by and i.locked_until and aware(i.locked_until) > now
    }
    if not ids:
        return {}
    emails = {
        i: e
        for i, e in session.execute(
            select(StaffUser.id, StaffUser.email).where(StaffUser.id.in_(ids))
        )
    }
    return {i: emails.get(i, "API client") for i in ids}


def lock_info(
    item: ReviewItem, holders: dict[str, str], actor: Actor, now: datetime
) -> LockInfo | None:
    if not item.locked_by or item.locked_until is None or aware(item.locked_until) <= now:
        return None
    return LockInfo(
        holders.get(item.locked_by, "someone"), aware(item.locked_until), item.locked_by == actor.id
    )


def last_question(messages: list[dict[str, Any]]) -> str:
    """The conversation's last user message (what the answer answers)."""
    for message in reversed(messages or []):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they are stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def retire_items(session: Session, bot: Bot) -> int:
    """Take the pending items of releases that no longer answer (neither live nor candidate) out of
    the queue, kept for the record as "retired"; returns how many."""
    answering = select(Release.id).where(
        Release.bot_id == bot.id,
        or_(Release.candidate.is_(True), Release.id == bot.live_release_id),
    )
    done = session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.bot_id == bot.id,
            ReviewItem.status == "pending",
            ReviewItem.release_id.is_not(None),
            ReviewItem.release_id.not_in(answering),
        )
        .values(status="retired", locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return rowcount(done)
