"""Reviewing: the queue (groups, filters, counts), locks between reviewers, verdicts with their
reviews, audit entries and annotations. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rapidfuzz.distance import Levenshtein
from sqlalchemy import select

from api.errors import InvalidRequest, NotFound, PermissionDenied
from api.models import Annotation, AuditEntry, Review, ReviewItem, utcnow
from api.services.bots.management import get_bot
from api.services.review import verdicts as reviews
from api.services.review.queue import QueueFilter, list_queue
from api.services.review.verdicts import ItemLocked, Verdict
from api.unit_of_work import annotations_of, pending
from tests.api.conftest import Harness
from tests.api.review_fixtures import ask, db, item, queue, staff, stop_review_feed

LOCK_S = 300


@pytest.fixture
def h(harness: Harness) -> Harness:
    stop_review_feed(harness, "acme", "globex")
    return harness


def test_queue_shows_each_group_once_with_its_size_and_counts(h: Harness) -> None:
    admin = staff(h, "admin@shadowdesk.test", "admin")
    same = [
        ask(h, q)
        for q in ("How do I reset my password?", "how do i reset my password", "Reset my password?")
    ]
    low, high, mid = (
        queue(h, e, group="pw", priority=p) for e, p in zip(same, (1.0, 3.0, 2.0), strict=True)
    )
    alone = queue(
        h, ask(h, "What is the warranty?"), priority=0.5, reasons=("low_retrieval", "sampled")
    )
    with db(h) as session:
        acme = get_bot(session, "acme").id
        page = list_queue(session, admin, QueueFilter(bot_id=acme))
        assert [(e.item.id, e.group_size) for e in page.entries] == [(high, 3), (alone, 1)]
        assert page.entries[0].question == "how do i reset my password"
        assert page.entries[0].answer == "Hello from the bot."
        assert page.counts["pending"] == (4, 2) and page.counts["approved"] == (0, 0)
        assert page.total_groups == 2
        only = list_queue(session, admin, QueueFilter(bot_id=acme, reason="low_retrieval"))
        assert [e.item.id for e in only.entries] == [alone] and only.counts["pending"] == (1, 1)
        assert (
            list_queue(session, admin, QueueFilter(bot_id=acme, release_id="rel_other")).entries
            == []
        )
        with pytest.raises(InvalidRequest):
            list_queue(session, admin, QueueFilter(status="done"))
    assert {low, mid}  # members stay behind their representative


def test_approval_settles_the_group_with_one_review_audit_and_annotation(h: Harness) -> None:
    admin = staff(h, "admin@shadowdesk.test", "admin")
    first = queue(h, ask(h, "How do I reset my password?"), group="pw", priority=2.0)
    second = queue(h, ask(h, "how do I reset my password"), group="pw")
    with db(h) as session:
        outcome = reviews.act(session, admin, first, Verdict("approved", apply_to_group=True))
        assert outcome.settled == [second]
        assert annotations_of(outcome.item.bot_id) in pending(
            session
        )  # served answers reload on commit
    assert item(h, first).status == item(h, second).status == "approved"
    assert item(h, first).locked_by is None
    with db(h) as session:
        [review] = session.scalars(
            select(Review)
        ).all()  # the group's other item has no review of its own
        assert (review.item_id, review.verdict, review.edit_distance) == (first, "approved", 0.0)
        assert review.original_text == "Hello from the bot." and review.reviewer_id == admin.id
        [annotation] = session.scalars(select(Annotation)).all()
        assert (annotation.question, annotation.answer, annotation.enabled) == (
            "How do I reset my password?",
            "Hello from the bot.",
            True,
        )
        audited = session.scalars(select(AuditEntry).where(AuditEntry.entity == "review_item"))
        entries = {e.entity_id: e for e in audited}
        assert (
            entries[first].action == "review.approved"
            and entries[first].actor == "admin@shadowdesk.test"
        )
        assert entries[first].before == {"status": "pending"}
        assert (
            entries[first].after["status"] == "approved"
            and entries[first].after["annotation_id"] == annotation.id
        )
        assert entries[second].after == {
            "status": "approved",
            "settled_with": first,
            "review_id": review.id,
        }
        assert (
            session.scalar(select(AuditEntry).where(AuditEntry.action == "annotation.create"))
            is not None
        )


def test_correction_alone_measures_the_edit_and_answers_with_the_correction(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    first = queue(h, ask(h, "Do you ship to Canada?"), group="ship", priority=2.0)
    second = queue(h, ask(h, "do you ship to canada"), group="ship")
    corrected = "Yes: we ship to Canada in 5 to 7 days."
    with db(h) as session:
        outcome = reviews.act(
            session, reviewer, first, Verdict("corrected", f"  {corrected}\n", apply_to_group=False)
        )
        assert outcome.settled == []
        review = outcome.review
        assert review.corrected_text == corrected
        assert review.edit_distance == pytest.approx(
            Levenshtein.normalized_distance("Hello from the bot.", corrected)
        )
        assert outcome.annotation is not None and outcome.annotation.answer == corrected
    assert item(h, first).status == "corrected" and item(h, second).status == "pending"
    with db(h) as session:  # "corrected" back to the very same text is an approval
        outcome = reviews.act(
            session, reviewer, second, Verdict("corrected", "Hello from the bot.")
        )
        assert outcome.review.verdict == "approved" and outcome.review.corrected_text is None
        # the newer verdict on the same question is the one that answers
        enabled = session.scalars(select(Annotation).where(Annotation.enabled.is_(True))).all()
        assert [a.answer for a in enabled] == ["Hello from the bot."]


def test_rejection_needs_a_reason_and_never_becomes_an_annotation(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    item_id = queue(h, ask(h, "Can I return a used toaster?"))
    with db(h) as session:
        for bad in (
            Verdict("rejected"),
            Verdict("rejected", reason="meh"),
            Verdict("corrected", "  "),
            Verdict("maybe"),
        ):
            with pytest.raises(InvalidRequest):
                reviews.act(session, reviewer, item_id, bad)
        outcome = reviews.act(
            session, reviewer, item_id, Verdict("rejected", reason="should_refuse", comment="no")
        )
        review = outcome.review
        assert (review.reason, review.edit_distance, outcome.annotation) == (
            "should_refuse",
            None,
            None,
        )
    assert item(h, item_id).status == "rejected"


def test_a_new_verdict_replaces_the_old_one_and_its_annotation(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    item_id = queue(h, ask(h, "Is the blender dishwasher safe?"))
    with db(h) as session:
        approved = reviews.act(session, reviewer, item_id, Verdict("approved"))
        assert approved.annotation is not None
    with db(h) as session:
        rejected = reviews.act(session, reviewer, item_id, Verdict("rejected", reason="outdated"))
        assert (
            annotations_of(rejected.item.bot_id) in pending(session) and rejected.annotation is None
        )
        assert session.scalars(select(Annotation.enabled)).all() == [False]
        assert len(session.scalars(select(Review).where(Review.item_id == item_id)).all()) == 2
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.created_at)).all()
        assert "annotation.disable" in actions
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "review.rejected"))
        assert (
            entry is not None
            and entry.before["verdict"] == "approved"
            and entry.after["reason"] == "outdated"
        )


def test_follow_up_questions_do_not_become_annotations(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    history = [
        {"role": "user", "content": "I have the X100."},
        {"role": "assistant", "content": "Nice."},
    ]
    item_id = queue(h, ask(h, "And in blue?", history=history))
    with db(h) as session:
        outcome = reviews.act(session, reviewer, item_id, Verdict("approved"))
        assert outcome.annotation is None and annotations_of(outcome.item.bot_id) not in pending(
            session
        )


def test_cut_off_answers_do_not_become_annotations(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    broken = queue(
        h, ask(h, "What are your opening hours?"), shadow_answer="We open at", shadow_status="error"
    )
    with db(h) as session:
        assert reviews.act(session, reviewer, broken, Verdict("approved")).annotation is None
        fixed = reviews.act(session, reviewer, broken, Verdict("corrected", "We open at nine."))
        assert fixed.annotation is not None and fixed.annotation.answer == "We open at nine."


def test_two_reviewers_never_hold_the_same_group_and_locks_expire(h: Harness) -> None:
    alice = staff(h, "alice@acme.test", bots=("acme",))
    bob = staff(h, "bob@acme.test", bots=("acme",))
    first = queue(h, ask(h, "Where is my order?"), group="order", priority=2.0)
    second = queue(h, ask(h, "where is my order"), group="order")
    other = queue(h, ask(h, "Do you sell gift cards?"), priority=1.0)
    now = utcnow()
    with db(h) as session:
        lock = reviews.lock_item(session, alice, first, lock_s=LOCK_S, now=now)
        assert lock.mine and lock.until == now + timedelta(seconds=LOCK_S)
    assert item(h, second).locked_by == alice.id  # the whole group is held
    with db(h) as session:
        with pytest.raises(ItemLocked, match=r"alice@acme\.test"):
            reviews.lock_item(session, bob, second, lock_s=LOCK_S, now=now)
        with pytest.raises(ItemLocked):
            reviews.act(session, bob, first, Verdict("approved"), now=now)
        # "next" skips a group someone else holds
        nxt = reviews.lock_next(session, bob, QueueFilter(), lock_s=LOCK_S, now=now)
        assert nxt is not None and nxt.id == other
        detail = reviews.get_item(session, bob, first, now=now)
        assert (
            detail.lock is not None
            and not detail.lock.mine
            and detail.lock.holder == "alice@acme.test"
        )
        assert detail.group_size == 2
    with db(h) as session:  # alice renews her lock; bob still cannot act
        reviews.lock_item(session, alice, first, lock_s=LOCK_S, now=now + timedelta(seconds=200))
    later = now + timedelta(seconds=LOCK_S + 1)
    with db(h) as session, pytest.raises(ItemLocked):
        reviews.lock_item(session, bob, first, lock_s=LOCK_S, now=later)
    expired = now + timedelta(seconds=200 + LOCK_S + 1)
    with db(h) as session:  # alice went away: her lock ran out
        reviews.lock_item(session, bob, first, lock_s=LOCK_S, now=expired)
        reviews.act(session, bob, first, Verdict("approved", apply_to_group=True), now=expired)
    assert item(h, second).status == "approved" and item(h, second).locked_by is None
    with db(h) as session:  # unlocking gives the item to the next reviewer at once
        reviews.lock_item(session, alice, other, lock_s=LOCK_S, now=expired)
        reviews.unlock_item(session, alice, other)
        reviews.lock_item(session, bob, other, lock_s=LOCK_S, now=expired)


def test_reviewers_reach_only_their_bots(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    mine = queue(h, ask(h, "Acme question?"))
    theirs = queue(h, ask(h, "Globex question?", bot="globex", key=h.other_key))
    with db(h) as session:
        assert [e.item.id for e in list_queue(session, reviewer, QueueFilter()).entries] == [mine]
        with pytest.raises(PermissionDenied):
            list_queue(session, reviewer, QueueFilter(bot_id=get_bot(session, "globex").id))
        for attempt in (
            lambda: reviews.get_item(session, reviewer, theirs),
            lambda: reviews.lock_item(session, reviewer, theirs, lock_s=LOCK_S),
            lambda: reviews.act(session, reviewer, theirs, Verdict("approved")),
        ):
            with pytest.raises(NotFound):
                attempt()
    assert item(h, theirs).status == "pending"


def test_item_detail_has_the_conversation_passages_and_every_answer(h: Harness) -> None:
    admin = staff(h, "admin@shadowdesk.test", "admin")
    exchange = ask(h, "How long is the warranty?")
    passages = [
        {
            "document": "warranty.md",
            "heading_path": ["Warranty"],
            "page": None,
            "score": 0.71,
            "text": "Two years.",
        }
    ]
    item_id = queue(h, exchange, shadow_answer="Two years from purchase.", passages=passages)
    with db(h) as session:
        detail = reviews.get_item(session, admin, item_id)
        assert detail.question == "How long is the warranty?"
        assert detail.reviewed_answer == "Two years from purchase."
        assert (
            detail.exchange.answer == "Hello from the bot." and detail.exchange.passages == passages
        )
        assert [(c.answer, c.reviewed) for c in detail.candidates] == [
            ("Two years from purchase.", True)
        ]
        assert detail.release is not None and detail.release.candidate
        outcome = reviews.act(
            session, admin, item_id, Verdict("corrected", "Two years from the date of purchase.")
        )
        assert outcome.review.original_text == "Two years from purchase."
        assert outcome.review.release_id == detail.release.id
    with db(h) as session:
        detail = reviews.get_item(session, admin, item_id)
        assert detail.latest_review is not None and detail.latest_review.verdict == "corrected"
        assert [e.action for e in detail.history] == ["review.corrected"]
        assert detail.reviewers == {admin.id: "admin@shadowdesk.test"}
        assert session.get(ReviewItem, item_id).status == "corrected"  # type: ignore[union-attr]


def test_a_verdict_settles_only_its_item_unless_the_group_is_asked_for(h: Harness) -> None:
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    first = queue(h, ask(h, "How do I reset my password?"), group="pw", priority=2.0)
    second = queue(h, ask(h, "how do I reset my password"), group="pw")
    with db(h) as session:
        outcome = reviews.act(session, reviewer, first, Verdict("approved"))
        assert outcome.settled == []
    assert item(h, first).status == "approved" and item(h, second).status == "pending"
