"""Reviewing an item: everything its page shows, the lock a reviewer holds on it, and verdicts.

Locks. Opening an item locks it, and the other pending items of its group, for `lock_s` seconds
(the review page renews the lock while it stays open). Nobody else can lock or judge a held item
until the lock is released or expires, so two reviewers never work on the same item, or on the
same group, at once.

Verdicts. `act` records a `Review` (approved / corrected / rejected / skipped) with the text before
and after and the normalised edit distance, moves the item to that status, writes the audit entry,
and for approved and corrected answers creates the annotation that answers near-identical
questions from then on (at once, or, for four-eyes bots, once a second reviewer approves it). A
reviewer may settle the item's group with the same verdict (`apply_to_group=True`, a deliberate
choice: near-identical questions can still need different answers): the other pending items of the
group (same bot, same release, near-identical question) take the same status without a `Review`
row of their own. Only human judgements become reviews, so metrics and training data count each
judgement once, while nobody reviews the same question fifty times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from api.errors import Conflict, InvalidRequest, NotFound
from api.ids import new_id
from api.models import (
    Annotation,
    AuditEntry,
    Bot,
    Exchange,
    Release,
    Review,
    ReviewItem,
    ShadowAnswer,
    StaffUser,
    utcnow,
)
from api.services.access import audit
from api.services.access.staff import Actor, can_review
from api.services.bots.policy import policy_of
from api.services.review import annotations as annotation_service
from api.services.review.answer_edits import edit_distance
from api.services.review.queue import (
    REJECT_REASONS,
    LockInfo,
    QueueFilter,
    aware,
    last_question,
    lock_holders,
    lock_info,
    unlocked_pending_ids,
)

VERDICTS = ("approved", "corrected", "rejected", "skipped")
MAX_CORRECTION_CHARS = 20_000


class ItemLocked(Conflict):
    code = "item_locked"


@dataclass(frozen=True)
class Verdict:
    """A reviewer's decision on an item."""

    verdict: str
    corrected_text: str | None = None
    reason: str | None = None
    comment: str = ""
    # Settling a whole group is a deliberate choice: answers that look alike may not be.
    apply_to_group: bool = False

    def validated(self) -> Verdict:
        if self.verdict not in VERDICTS:
            raise InvalidRequest(f"verdict must be one of {', '.join(VERDICTS)}.", param="verdict")
        if self.verdict == "corrected":
            text = (self.corrected_text or "").strip()
            if not text:
                raise InvalidRequest(
                    "A correction needs the corrected answer.", param="corrected_text"
                )
            if len(text) > MAX_CORRECTION_CHARS:
                raise InvalidRequest(
                    f"The corrected answer is over {MAX_CORRECTION_CHARS} characters.",
                    param="corrected_text",
                )
        if self.verdict == "rejected" and self.reason not in REJECT_REASONS:
            raise InvalidRequest(
                f"A rejection needs a reason: {', '.join(REJECT_REASONS)}.", param="reason"
            )
        if len(self.comment) > 2_000:
            raise InvalidRequest("The comment is over 2000 characters.", param="comment")
        return self


@dataclass(frozen=True)
class CandidateAnswer:
    """An answer of a candidate release to the item's exchange (a shadow answer)."""

    release_id: str
    release_version: int | None
    adapter: str | None
    answer: str
    status: str
    latency_ms: float
    reviewed: bool  # the answer this item is about


@dataclass
class ItemDetail:
    item: ReviewItem
    bot: Bot
    exchange: Exchange
    question: str
    reviewed_answer: str  # what the verdict is about: a candidate's answer, or the live one
    release: Release | None  # the release that gave the reviewed answer
    live_release: Release | None  # the release that answered the client
    candidates: list[CandidateAnswer]
    reviews: list[Review]  # newest first
    group_size: int  # pending items in the group, this one included
    lock: LockInfo | None
    history: list[AuditEntry] = field(default_factory=list)
    reviewers: dict[str, str] = field(default_factory=dict)  # staff id -> email, for `reviews`

    @property
    def latest_review(self) -> Review | None:
        return self.reviews[0] if self.reviews else None


@dataclass
class Outcome:
    """What a verdict changed."""

    review: Review
    item: ReviewItem
    settled: list[str]  # other items of the group that took the same status
    annotation: Annotation | None


def visible_item(
    session: Session, actor: Actor, item_id: str, *, for_update: bool = False
) -> ReviewItem:
    """The item, or NotFound: also for items of bots `actor` does not review (their existence is
    nobody else's business)."""
    query = select(ReviewItem).where(ReviewItem.id == item_id)
    item = session.scalar(query.with_for_update() if for_update else query)
    if item is None or not can_review(actor, item.bot_id):
        raise NotFound(f"No review item with id '{item_id}'.", param="item_id")
    return item


def get_item(
    session: Session, actor: Actor, item_id: str, *, now: datetime | None = None
) -> ItemDetail:
    """Everything the review page shows for an item."""
    now = now or utcnow()
    item = visible_item(session, actor, item_id)
    exchange = session.get(Exchange, item.exchange_id)
    bot = session.get(Bot, item.bot_id)
    assert exchange is not None and bot is not None  # foreign keys
    shadows = session.execute(
        select(ShadowAnswer, Release)
        .outerjoin(Release, Release.id == ShadowAnswer.release_id)
        .where(ShadowAnswer.exchange_id == exchange.id)
        .order_by(Release.version)
    ).all()
    candidates = [
        CandidateAnswer(
            s.release_id,
            r.version if r else None,
            r.adapter if r else None,
            s.answer,
            s.status,
            s.latency_ms,
            s.id == item.shadow_answer_id,
        )
        for s, r in shadows
    ]
    reviews = list(
        session.scalars(
            select(Review)
            .where(Review.item_id == item.id)
            .order_by(Review.created_at.desc(), Review.id.desc())
        )
    )
    members = _group(session, item)
    staff_ids = {r.reviewer_id for r in reviews if r.reviewer_id}
    reviewers = (
        {
            i: e
            for i, e in session.execute(
                select(StaffUser.id, StaffUser.email).where(StaffUser.id.in_(staff_ids))
            )
        }
        if staff_ids
        else {}
    )
    return ItemDetail(
        item=item,
        bot=bot,
        exchange=exchange,
        question=last_question(exchange.messages),
        reviewed_answer=reviewed_answer(session, item, exchange),
        release=session.get(Release, item.release_id) if item.release_id else None,
        live_release=session.get(Release, exchange.release_id) if exchange.release_id else None,
        candidates=candidates,
        reviews=reviews,
        group_size=len(members),
        lock=lock_info(item, lock_holders(session, [item], now), actor, now),
        history=audit.history(session, "review_item", item.id),
        reviewers=reviewers,
    )


def reviewed_answer(session: Session, item: ReviewItem, exchange: Exchange | None = None) -> str:
    """The text the item's verdict is about."""
    if item.shadow_answer_id:
        shadow = session.get(ShadowAnswer, item.shadow_answer_id)
        return shadow.answer if shadow is not None else ""
    exchange = exchange or session.get(Exchange, item.exchange_id)
    return exchange.answer if exchange is not None else ""


def lock_item(
    session: Session, actor: Actor, item_id: str, *, lock_s: float, now: datetime | None = None
) -> LockInfo:
    """Hold the item (and its pending group) for `lock_s` seconds, or renew the hold; ItemLocked
    when someone else holds any of it."""
    now = now or utcnow()
    item = visible_item(session, actor, item_id)
    members = _group(session, item, for_update=True)
    _refuse_if_held(session, actor, members, now)
    until = now + timedelta(seconds=lock_s)
    _set_lock(session, [m.id for m in members], actor.id, until)
    return LockInfo(actor.label, until, True)


def unlock_item(session: Session, actor: Actor, item_id: str) -> None:
    """Give up `actor`'s hold on the item and its group (nothing happens to others' holds)."""
    item = visible_item(session, actor, item_id)
    ids = [m.id for m in _group(session, item) if m.locked_by == actor.id]
    _set_lock(session, ids, None, None)


def lock_next(
    session: Session, actor: Actor, flt: QueueFilter, *, lock_s: float, now: datetime | None = None
) -> ReviewItem | None:
    """Lock and return the first pending group representative under `flt` nobody else holds."""
    now = now or utcnow()
    for item_id in unlocked_pending_ids(session, actor, flt, now):
        try:
            lock_item(session, actor, item_id, lock_s=lock_s, now=now)
        except ItemLocked:  # taken between the query and the lock; nothing was written
            continue
        return visible_item(session, actor, item_id)
    return None


def act(
    session: Session, actor: Actor, item_id: str, verdict: Verdict, *, now: datetime | None = None
) -> Outcome:
    """Record `verdict` on the item (and, when asked, its pending group); see the module docstring."""
    verdict = verdict.validated()
    now = now or utcnow()
    item = visible_item(session, actor, item_id, for_update=True)
    members = _group(session, item, for_update=True)
    _refuse_if_held(session, actor, members, now)
    exchange = session.get(Exchange, item.exchange_id)
    assert exchange is not None
    original = reviewed_answer(session, item, exchange)
    kind, corrected = verdict.verdict, None
    if kind == "corrected":
        corrected = (verdict.corrected_text or "").strip()
        if corrected == original.strip():  # "edited" back to the same text: an approval
            kind, corrected = "approved", None
    distance = (
        0.0
        if kind == "approved"
        else edit_distance(original, corrected)
        if corrected is not None
        else None
    )
    earlier = list(session.scalars(select(Review.id).where(Review.item_id == item.id)))
    before = _item_state(session, item)
    review = Review(
        id=new_id("rev"),
        item_id=item.id,
        bot_id=item.bot_id,
        release_id=item.release_id,
        reviewer_id=actor.staff_user_id,
        verdict=kind,
        original_text=original,
        corrected_text=corrected,
        reason=verdict.reason if kind == "rejected" else None,
        comment=verdict.comment.strip(),
        edit_distance=distance,
        created_at=now,
    )
    session.add(review)
    item.status = kind
    item.updated_at = now
    session.flush()

    annotation_service.disable_for_reviews(session, actor, earlier)
    annotation = None
    answers_clients = kind in ("approved", "corrected") and _single_question(exchange)
    if answers_clients and _usable_answer(session, item, exchange, corrected):
        annotation = annotation_service.create_annotation(
            session,
            actor,
            bot_id=item.bot_id,
            question=last_question(exchange.messages),
            answer=corrected if corrected is not None else original,
            review_id=review.id,
            now=now,
            four_eyes=_four_eyes(session, item.bot_id),
        )
    after = _item_state(session, item) | {"annotation_id": annotation.id if annotation else None}
    audit.record(
        session,
        actor,
        f"review.{kind}",
        entity="review_item",
        entity_id=item.id,
        bot_id=item.bot_id,
        before=before,
        after=after,
        at=now,
    )

    settled = []
    if verdict.apply_to_group and item.group_key is not None:
        settled = _settle_group(
            session, actor, item, [m for m in members if m.id != item.id], review, now
        )
    _set_lock(session, [item.id, *settled], None, None)
    return Outcome(review, item, settled, annotation)


def _settle_group(
    session: Session,
    actor: Actor,
    item: ReviewItem,
    others: list[ReviewItem],
    review: Review,
    now: datetime,
) -> list[str]:
    settled = []
    for member in others:
        if member.status != "pending":
            continue
        before = {"status": member.status}
        member.status = item.status
        member.updated_at = now
        settled.append(member.id)
        audit.record(
            session,
            actor,
            f"review.group_{item.status}",
            entity="review_item",
            entity_id=member.id,
            bot_id=member.bot_id,
            before=before,
            after={"status": member.status, "settled_with": item.id, "review_id": review.id},
            at=now,
        )
    session.flush()
    return settled


def _usable_answer(
    session: Session, item: ReviewItem, exchange: Exchange, corrected: str | None
) -> bool:
    """Whether the verdict's answer may answer clients: a correction, or an approved answer that was
    generated to the end (never an empty or cut-off one)."""
    if corrected is not None:
        return True
    shadow = session.get(ShadowAnswer, item.shadow_answer_id) if item.shadow_answer_id else None
    status, text = (
        (shadow.status, shadow.answer) if shadow is not None else (exchange.status, exchange.answer)
    )
    return status in ("completed", "refused") and bool(text.strip())


def _single_question(exchange: Exchange) -> bool:
    # A follow-up ("and in blue?") means something only after its conversation: answering it
    # from an annotation elsewhere would be wrong, so only first questions become annotations.
    return sum(1 for m in exchange.messages or [] if m.get("role") == "user") == 1


def _group_clause(item: ReviewItem) -> ColumnElement[bool]:
    release = (
        ReviewItem.release_id.is_(None)
        if item.release_id is None
        else ReviewItem.release_id == item.release_id
    )
    return and_(
        ReviewItem.bot_id == item.bot_id,
        release,
        ReviewItem.group_key == item.group_key,
        ReviewItem.status == "pending",
    )


def _group(session: Session, item: ReviewItem, *, for_update: bool = False) -> list[ReviewItem]:
    """The items a lock or verdict on `item` covers: itself, plus its pending group if it is pending."""
    if item.status != "pending" or item.group_key is None:
        return [item]
    query = select(ReviewItem).where(_group_clause(item)).order_by(ReviewItem.id)
    members = list(session.scalars(query.with_for_update() if for_update else query))
    return members if any(m.id == item.id for m in members) else [item, *members]


def _refuse_if_held(
    session: Session, actor: Actor, members: list[ReviewItem], now: datetime
) -> None:
    for member in members:
        if (
            member.locked_by
            and member.locked_by != actor.id
            and member.locked_until is not None
            and aware(member.locked_until) > now
        ):
            holder = lock_holders(session, [member], now).get(member.locked_by, "someone")
            until = aware(member.locked_until).strftime("%H:%M:%S UTC")
            raise ItemLocked(
                f"{holder} is reviewing this item (held until {until}).", param="item_id"
            )


def _set_lock(session: Session, ids: list[str], holder: str | None, until: datetime | None) -> None:
    if not ids:
        return
    # A lock is not an edit: updated_at (the order of reviewed items) stays as it is.
    session.execute(
        update(ReviewItem)
        .where(ReviewItem.id.in_(ids))
        .values(locked_by=holder, locked_until=until, updated_at=ReviewItem.updated_at)
        .execution_options(synchronize_session="fetch")
    )


def _item_state(session: Session, item: ReviewItem) -> dict[str, Any]:
    latest = session.scalar(
        select(Review)
        .where(Review.item_id == item.id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
    )
    state: dict[str, Any] = {"status": item.status}
    if latest is not None:
        state |= {
            "review_id": latest.id,
            "verdict": latest.verdict,
            "text": latest.corrected_text or latest.original_text,
            "reason": latest.reason,
            "edit_distance": latest.edit_distance,
        }
    return state


def live_item(session: Session, actor: Actor, item_id: str) -> ReviewItem:
    """The review item of the live answer to `item_id`'s exchange, queued now if it was not (a
    reviewer looking at a candidate's answer can correct the answer the client got, too)."""
    item = visible_item(session, actor, item_id)
    exchange = session.get(Exchange, item.exchange_id)
    assert exchange is not None
    if item.shadow_answer_id is None:
        return item  # already the live answer
    existing = session.scalar(
        select(ReviewItem).where(
            ReviewItem.exchange_id == exchange.id,
            ReviewItem.release_id.is_not_distinct_from(exchange.release_id),
            ReviewItem.shadow_answer_id.is_(None),
        )
    )
    if existing is not None:
        return existing
    live = ReviewItem(
        id=new_id("rvw"),
        bot_id=item.bot_id,
        exchange_id=exchange.id,
        release_id=exchange.release_id,
        shadow_answer_id=None,
        status="pending",
        priority=0.0,
        reasons=["requested"],
        group_key=new_id("grp"),
    )
    session.add(live)
    session.flush()
    return live


def _four_eyes(session: Session, bot_id: str) -> bool:
    bot = session.get(Bot, bot_id)
    return bot is not None and policy_of(bot.policy).annotation_approval == "four_eyes"
