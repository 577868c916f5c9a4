"""Review metrics per bot and release, over time, and the decision the bot's thresholds give.

Counted per release from the latest verdict of each reviewed item (a re-review replaces the
earlier verdict; skips are not verdicts):

- reviewed: approved + corrected + rejected
- approved unchanged %, corrected %, rejected % of reviewed; modified share = corrected + rejected
- mean normalised edit distance over approved (0.0) and corrected answers (rejected ones have no
  corrected text to measure)

Decision (thresholds in `BotPolicy`, defaults there: min_reviews 20, promote 0.20, retrain 0.50):
fewer than `min_reviews` reviews: collecting; modified share ≤ promote threshold: promote (for the
live release: keep); ≤ retrain threshold: retrain; above: redo (rethink data, prompt or base model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.errors import InvalidRequest
from api.models import Annotation, Bot, Exchange, Release, Review, utcnow
from api.services.access import audit
from api.services.access.staff import Actor, require_admin, require_bot
from api.services.bots.policy import BotPolicy, policy_of
from api.services.review.queue import aware
from api.unit_of_work import ACCESS, annotations_of, changed

THRESHOLD_FIELDS = (
    "min_reviews",
    "promote_threshold",
    "retrain_threshold",
    "annotations_enabled",
    "annotation_similarity",
)


@dataclass
class Tally:
    approved: int = 0
    corrected: int = 0
    rejected: int = 0
    skipped: int = 0
    _distance_sum: float = 0.0
    _distance_n: int = 0

    def add(self, verdict: str, distance: float | None) -> None:
        if verdict in ("approved", "corrected", "rejected", "skipped"):
            setattr(self, verdict, getattr(self, verdict) + 1)
        if distance is not None and verdict in ("approved", "corrected"):
            self._distance_sum += distance
            self._distance_n += 1

    @property
    def reviewed(self) -> int:
        return self.approved + self.corrected + self.rejected

    def share(self, verdict: str) -> float | None:
        return getattr(self, verdict) / self.reviewed if self.reviewed else None

    @property
    def modified_share(self) -> float | None:
        return (self.corrected + self.rejected) / self.reviewed if self.reviewed else None

    @property
    def mean_edit_distance(self) -> float | None:
        return self._distance_sum / self._distance_n if self._distance_n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "approved": self.approved,
            "corrected": self.corrected,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "approved_share": self.share("approved"),
            "corrected_share": self.share("corrected"),
            "rejected_share": self.share("rejected"),
            "modified_share": self.modified_share,
            "mean_edit_distance": self.mean_edit_distance,
        }


@dataclass(frozen=True)
class Decision:
    action: str  # collecting | promote | keep | retrain | redo
    reason: str


@dataclass
class DayPoint:
    day: date
    tally: Tally


@dataclass
class ReleaseMetrics:
    release: Release
    live: bool
    tally: Tally
    decision: Decision
    series: list[DayPoint] = field(default_factory=list)


@dataclass
class BotMetrics:
    bot: Bot
    policy: BotPolicy
    days: int
    releases: list[ReleaseMetrics]
    annotations_enabled: int
    annotations_total: int
    annotation_hits: int  # exchanges answered by an annotation, all time
    annotation_hits_window: int  # ... within the last `days` days


def decide(tally: Tally, policy: BotPolicy, *, live: bool = False) -> Decision:
    """What the thresholds say about a release with this tally."""
    share = tally.modified_share
    if tally.reviewed < policy.min_reviews or share is None:
        return Decision(
            "collecting", f"{tally.reviewed} of {policy.min_reviews} reviews needed for a decision"
        )
    pct = f"{share:.0%} modified"
    if share <= policy.promote_threshold:
        return Decision("keep" if live else "promote", f"{pct} ≤ {policy.promote_threshold:.0%}")
    if share <= policy.retrain_threshold:
        return Decision(
            "retrain",
            f"{pct}: above {policy.promote_threshold:.0%}, ≤ {policy.retrain_threshold:.0%}",
        )
    return Decision("redo", f"{pct} > {policy.retrain_threshold:.0%}")


def release_decision(session: Session, bot: Bot, release_id: str) -> Decision:
    """What the thresholds say about one release now (its items' latest verdicts)."""
    latest: dict[str, tuple[str, float | None]] = {}
    for item_id, verdict, distance in session.execute(
        select(Review.item_id, Review.verdict, Review.edit_distance)
        .where(Review.bot_id == bot.id, Review.release_id == release_id)
        .order_by(Review.created_at, Review.id)
    ):
        latest[item_id] = (verdict, distance)
    tally = Tally()
    for verdict, distance in latest.values():
        tally.add(verdict, distance)
    return decide(tally, policy_of(bot.policy), live=release_id == bot.live_release_id)


def bot_metrics(
    session: Session, actor: Actor, bot: Bot, *, days: int = 30, now: datetime | None = None
) -> BotMetrics:
    """Per-release tallies, daily series over the last `days` days, decisions and annotation use."""
    require_bot(actor, bot)
    if not 1 <= days <= 366:
        raise InvalidRequest("days must be between 1 and 366.", param="days")
    now = now or utcnow()
    start = (now - timedelta(days=days - 1)).date()
    policy = policy_of(bot.policy)
    latest: dict[str, tuple[str | None, str, float | None, datetime]] = {}
    for item_id, release_id, verdict, distance, created in session.execute(
        select(
            Review.item_id,
            Review.release_id,
            Review.verdict,
            Review.edit_distance,
            Review.created_at,
        )
        .where(Review.bot_id == bot.id)
        .order_by(Review.created_at, Review.id)
    ):
        latest[item_id] = (release_id, verdict, distance, aware(created))
    tallies: dict[str | None, Tally] = {}
    series: dict[str | None, dict[date, Tally]] = {}
    for release_id, verdict, distance, created in latest.values():
        tallies.setdefault(release_id, Tally()).add(verdict, distance)
        if created.date() >= start:
            series.setdefault(release_id, {}).setdefault(created.date(), Tally()).add(
                verdict, distance
            )
    shown = session.scalars(
        select(Release).where(
            Release.bot_id == bot.id,
            or_(
                Release.id.in_([r for r in tallies if r]),
                Release.candidate.is_(True),
                Release.id == bot.live_release_id,
            ),
        )
    ).all()
    releases = [
        ReleaseMetrics(
            release=r,
            live=r.id == bot.live_release_id,
            tally=tallies.get(r.id, Tally()),
            decision=decide(tallies.get(r.id, Tally()), policy, live=r.id == bot.live_release_id),
            series=[
                DayPoint(
                    start + timedelta(days=i),
                    series.get(r.id, {}).get(start + timedelta(days=i), Tally()),
                )
                for i in range(days)
            ],
        )
        for r in sorted(
            shown, key=lambda r: (not r.candidate, r.id != bot.live_release_id, -r.version)
        )
    ]
    hits = (
        select(func.count())
        .select_from(Exchange)
        .where(Exchange.bot_id == bot.id, Exchange.annotation_id.is_not(None))
    )
    window_start = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    enabled, total = session.execute(
        select(func.count().filter(Annotation.enabled.is_(True)), func.count()).where(
            Annotation.bot_id == bot.id
        )
    ).one()
    return BotMetrics(
        bot=bot,
        policy=policy,
        days=days,
        releases=releases,
        annotations_enabled=int(enabled or 0),
        annotations_total=int(total or 0),
        annotation_hits=session.scalar(hits) or 0,
        annotation_hits_window=session.scalar(hits.where(Exchange.created_at >= window_start)) or 0,
    )


class ThresholdUpdate(BaseModel):
    """Decision and annotation thresholds of a bot; omitted fields keep their value."""

    min_reviews: int | None = Field(None, ge=1, le=100_000)
    promote_threshold: float | None = Field(None, ge=0.0, le=1.0)
    retrain_threshold: float | None = Field(None, ge=0.0, le=1.0)
    annotations_enabled: bool | None = None
    annotation_similarity: float | None = Field(None, ge=0.0, le=1.0)


def update_thresholds(
    session: Session, actor: Actor, bot: Bot, changes: ThresholdUpdate
) -> BotPolicy:
    """Change the bot's thresholds (admins only; audited); the policy's other fields are kept."""
    require_admin(actor)
    current = policy_of(bot.policy)
    updated = current.model_copy(update=changes.model_dump(exclude_none=True))
    if updated.promote_threshold > updated.retrain_threshold:
        raise InvalidRequest(
            "promote_threshold must not exceed retrain_threshold.", param="promote_threshold"
        )
    bot.policy = {**(bot.policy or {}), **changes.model_dump(exclude_none=True)}
    session.flush()
    changed(session, ACCESS, annotations_of(bot.id))
    audit.record(
        session,
        actor,
        "bot.thresholds",
        entity="bot",
        entity_id=bot.id,
        bot_id=bot.id,
        before={k: getattr(current, k) for k in THRESHOLD_FIELDS},
        after={k: getattr(updated, k) for k in THRESHOLD_FIELDS},
    )
    return updated


def thresholds(policy: BotPolicy) -> dict[str, Any]:
    """The threshold fields of a policy, with their defaults and descriptions."""
    fields = BotPolicy.model_fields
    return {
        k: {
            "value": getattr(policy, k),
            "default": fields[k].default,
            "description": fields[k].description,
        }
        for k in THRESHOLD_FIELDS
    }
