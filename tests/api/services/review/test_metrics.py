"""Review metrics per release, over time, and the decision the bot's thresholds give."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from api.errors import InvalidRequest, PermissionDenied
from api.models import AuditEntry, Bot, utcnow
from api.services.bots.management import get_bot
from api.services.bots.policy import BotPolicy
from api.services.review import metrics as review_metrics
from api.services.review import verdicts as reviews
from api.services.review.answer_edits import edit_distance
from api.services.review.metrics import Tally, ThresholdUpdate, decide
from api.services.review.verdicts import Verdict
from tests.api.conftest import Harness
from tests.api.review_fixtures import ask, db, queue, staff, stop_review_feed


def tally(approved: int = 0, corrected: int = 0, rejected: int = 0) -> Tally:
    t = Tally()
    for verdict, n in (("approved", approved), ("corrected", corrected), ("rejected", rejected)):
        for _ in range(n):
            t.add(
                verdict, 0.0 if verdict == "approved" else 0.5 if verdict == "corrected" else None
            )
    return t


def test_decisions_follow_the_thresholds() -> None:
    policy = BotPolicy(min_reviews=10, promote_threshold=0.2, retrain_threshold=0.5)
    assert decide(tally(approved=9), policy).action == "collecting"
    assert (
        decide(tally(approved=8, corrected=2), policy).action == "promote"
    )  # 20 %: at the threshold
    assert decide(tally(approved=8, corrected=2), policy, live=True).action == "keep"
    assert decide(tally(approved=7, corrected=2, rejected=1), policy).action == "retrain"
    assert (
        decide(tally(approved=5, rejected=5), policy).action == "retrain"
    )  # 50 %: at the threshold
    assert decide(tally(approved=4, corrected=3, rejected=3), policy).action == "redo"
    assert "20%" in decide(tally(approved=8, corrected=2), policy).reason
    t = tally(approved=2, corrected=2, rejected=1)
    assert (t.reviewed, t.share("approved"), t.modified_share) == (5, 0.4, 0.6)
    assert t.mean_edit_distance == pytest.approx(
        0.25
    )  # (0 + 0 + 0.5 + 0.5) / 4: rejections have no edit


def test_bot_metrics_count_latest_verdicts_per_release_and_day(harness: Harness) -> None:
    stop_review_feed(harness, "acme")
    reviewer = staff(harness, "rev@acme.test", bots=("acme",))
    items = [queue(harness, ask(harness, f"Question number {i}?")) for i in range(4)]
    candidate_item = queue(
        harness, ask(harness, "Candidate question?"), shadow_answer="A candidate answer."
    )
    now = utcnow()
    yesterday = now - timedelta(days=1)
    with db(harness) as session:
        reviews.act(session, reviewer, items[0], Verdict("approved"), now=yesterday)
        reviews.act(
            session,
            reviewer,
            items[1],
            Verdict("corrected", "Hello from the better bot."),
            now=yesterday,
        )
        reviews.act(session, reviewer, items[2], Verdict("rejected", reason="wrong"), now=now)
        reviews.act(session, reviewer, items[3], Verdict("skipped"), now=now)
        reviews.act(session, reviewer, candidate_item, Verdict("approved"), now=now)
    with db(harness) as session:  # a re-review replaces the earlier verdict in the counts
        reviews.act(session, reviewer, items[0], Verdict("rejected", reason="outdated"), now=now)
    with db(harness) as session:
        bot = get_bot(session, "acme")
        m = review_metrics.bot_metrics(session, reviewer, bot, days=7, now=now)
        candidate, live = m.releases  # candidates first
        assert candidate.release.candidate and live.live
        assert (candidate.tally.reviewed, candidate.decision.action) == (1, "collecting")
        t = live.tally
        assert (t.reviewed, t.approved, t.corrected, t.rejected, t.skipped) == (3, 0, 1, 2, 1)
        assert t.modified_share == 1.0
        assert t.mean_edit_distance == pytest.approx(
            edit_distance("Hello from the bot.", "Hello from the better bot.")
        )
        assert len(live.series) == 7 and live.series[-1].day == now.date()
        assert (live.series[-2].tally.reviewed, live.series[-1].tally.reviewed) == (1, 2)
        assert (
            m.annotations_total == 3 and m.annotations_enabled == 2
        )  # the re-judged approval's is off


def test_thresholds_are_admin_only_validated_and_audited(harness: Harness) -> None:
    reviewer = staff(harness, "rev@acme.test", bots=("acme",))
    admin = staff(harness, "admin@shadowdesk.test", "admin")
    with db(harness) as session:
        bot = get_bot(session, "acme")
        with pytest.raises(PermissionDenied):
            review_metrics.update_thresholds(session, reviewer, bot, ThresholdUpdate(min_reviews=5))
        with pytest.raises(InvalidRequest):
            review_metrics.update_thresholds(
                session, admin, bot, ThresholdUpdate(promote_threshold=0.6)
            )
        policy = review_metrics.update_thresholds(
            session,
            admin,
            bot,
            ThresholdUpdate(min_reviews=5, promote_threshold=0.1, annotation_similarity=0.95),
        )
        assert (policy.min_reviews, policy.promote_threshold, policy.retrain_threshold) == (
            5,
            0.1,
            0.5,
        )
    with db(harness) as session:
        stored = session.scalar(select(Bot.policy).where(Bot.slug == "acme"))
        assert stored["annotation_similarity"] == 0.95
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "bot.thresholds"))
        assert (
            entry is not None
            and entry.before["min_reviews"] == 20
            and entry.after["min_reviews"] == 5
        )
        assert review_metrics.thresholds(BotPolicy())["promote_threshold"]["default"] == 0.2
