"""Nothing goes live by accident: a promotion respects the review decision (or is forced, and
audited as such), a rollback restores the bot as it was (live release and candidates), and items of
releases that stop answering leave the pending queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from api.models import AuditEntry, Release, ReviewItem
from api.services.review import verdicts as reviews
from api.services.review.queue import QueueFilter, list_queue
from api.services.review.verdicts import Verdict
from tests.api.conftest import Harness
from tests.api.review_fixtures import ask, db, item, queue, staff, stop_review_feed


def admin(h: Harness) -> dict[str, str]:
    return h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]


def releases(h: Harness, path: str = "", body: dict[str, Any] | None = None) -> Any:
    return h.client.post(f"/api/bots/acme/releases{path}", headers=admin(h), json=body)


def candidates(h: Harness) -> set[str]:
    with db(h) as session:
        return set(session.scalars(select(Release.id).where(Release.candidate.is_(True))))


def test_a_release_the_reviewers_say_to_redo_needs_a_forced_promotion(harness: Harness) -> None:
    h = harness
    stop_review_feed(h, "acme")
    assert (
        h.client.patch(
            "/api/bots/acme", headers=admin(h), json={"policy": {"min_reviews": 2}}
        ).status_code
        == 200
    )
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    rejected = [queue(h, ask(h, f"Question {i}?"), shadow_answer="Wrong.") for i in range(2)]
    with db(h) as session:
        for item_id in rejected:
            reviews.act(session, reviewer, item_id, Verdict("rejected", reason="wrong"))
        candidate = session.get_one(ReviewItem, rejected[0]).release_id
    assert candidate is not None

    refused = releases(h, f"/{candidate}/promote")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "decision_not_promote" and "REDO" in error["message"]
    assert "100% modified" in error["message"]
    forced = releases(h, f"/{candidate}/promote", {"force": True})
    assert (
        forced.status_code == 200
        and forced.json()["decision"] == "redo"
        and forced.json()["forced"]
    )
    with db(h) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "release.promote")
        ).one()
    assert entry.after is not None and entry.after["forced"] and entry.after["decision"] == "redo"


def test_a_release_the_reviewers_approve_goes_live_without_force(harness: Harness) -> None:
    h = harness
    stop_review_feed(h, "acme")
    h.client.patch("/api/bots/acme", headers=admin(h), json={"policy": {"min_reviews": 2}})
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    approved = [queue(h, ask(h, f"Question {i}?"), shadow_answer="Right.") for i in range(2)]
    with db(h) as session:
        for item_id in approved:
            reviews.act(session, reviewer, item_id, Verdict("approved"))
    candidate = item(h, approved[0]).release_id
    moved = releases(h, f"/{candidate}/promote")
    assert moved.status_code == 200 and moved.json()["decision"] == "promote"
    assert not moved.json()["forced"]


def test_rollback_restores_the_live_release_and_the_candidates(harness: Harness) -> None:
    h = harness
    v1 = h.client.get("/api/bots/acme", headers=admin(h)).json()["live_release_id"]
    v2 = releases(h, body={"candidate": True, "notes": "two"}).json()["id"]
    v3 = releases(h, body={"candidate": True, "notes": "three"}).json()["id"]
    stop_review_feed(h, "acme")
    pending_live = queue(h, ask(h, "How do I reset my password?"))  # an item of v1's live answer

    moved = releases(h, f"/{v2}/promote", {"force": True}).json()
    assert moved["after"] == v2 and moved["candidates"] == [v3] and candidates(h) == {v3}
    # v1 answers no more: its pending item leaves the queue, kept for the record.
    assert item(h, pending_live).status == "retired"

    back = releases(h, "/rollback").json()
    assert back["after"] == v1 and sorted(back["candidates"]) == sorted([v2, v3])
    assert candidates(h) == {v2, v3}  # the former candidate shadows again, no `attach` needed
    exchange_id = ask(h, "Where is my parcel?")
    with db(h) as session:
        from api.models import Job

        shadowed = {
            j.payload["release_id"]
            for j in session.scalars(select(Job).where(Job.kind == "shadow"))
            if j.payload["exchange_id"] == exchange_id
        }
    assert shadowed == {v2, v3}


def test_detaching_a_candidate_retires_its_pending_items(harness: Harness) -> None:
    h = harness
    stop_review_feed(h, "acme")
    shadow_item = queue(h, ask(h, "How do I reset my password?"), shadow_answer="Candidate says.")
    candidate = item(h, shadow_item).release_id
    assert releases(h, f"/{candidate}/detach").status_code == 200
    assert item(h, shadow_item).status == "retired"
    boss = staff(h, "boss@acme.test", role="admin")
    with db(h) as session:
        pending = list_queue(session, boss, QueueFilter(status="pending"))
        retired = list_queue(session, boss, QueueFilter(status="retired"))
    assert shadow_item not in [e.item.id for e in pending.entries]
    assert [e.item.id for e in retired.entries] == [shadow_item]
