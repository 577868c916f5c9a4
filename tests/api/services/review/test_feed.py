"""The review queue's intake: random sampling, priority reasons that are always queued, and groups of
near-identical questions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import transaction
from api.ids import new_id
from api.models import Bot, Exchange, ReviewItem
from api.services.bots.policy import BotPolicy
from api.services.chat.exchanges import ExchangeRecord, record_exchange
from api.services.review.feed import answer_distance, enqueue_review, review_live_answer
from tests.api.conftest import Harness

NEVER_SAMPLED = BotPolicy(review_sample_rate=0.0)


def add_exchange(
    session: Session,
    question: str,
    *,
    answer: str = "An answer.",
    feedback: int | None = None,
    flags: list[str] | None = None,
    passages: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    bot = session.scalar(select(Bot).where(Bot.slug == "acme"))
    assert bot is not None
    exchange_id = new_id("exch")
    record_exchange(
        session,
        ExchangeRecord(
            id=exchange_id,
            bot_id=bot.id,
            conversation_id="conv",
            release_id=bot.live_release_id,
            api_key_id=None,
            messages=[{"role": "user", "content": question}],
            params={},
            answer=answer,
            status="completed",
            finish_reason="stop",
            error=None,
            streamed=False,
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=1.0,
            ttft_ms=None,
            passages=passages or [],
            flags=flags or [],
        ),
    )
    session.flush()
    if feedback is not None:
        session.get_one(Exchange, exchange_id).feedback = feedback
    return bot.id, exchange_id


def enqueue(
    session: Session,
    question: str,
    *,
    policy: BotPolicy = NEVER_SAMPLED,
    release_id: str | None = None,
    live_answer: str | None = None,
    answer: str = "An answer.",
    score: float | None = 0.9,
    thumbs_down: bool = False,
    exchange: tuple[str, str] | None = None,
) -> ReviewItem | None:
    bot_id, exchange_id = exchange or add_exchange(session, question)
    return enqueue_review(
        session,
        bot_id=bot_id,
        exchange_id=exchange_id,
        release_id=release_id,
        shadow_answer_id=None,
        question=question,
        answer=answer,
        live_answer=live_answer,
        top_retrieval_score=score,
        thumbs_down=thumbs_down,
        policy=policy,
        rng=random.Random(1),
    )


def test_priority_cases_are_queued_whatever_the_sample_rate(harness: Harness) -> None:
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        first = enqueue(session, "How do I reset my password?")
        assert first is not None and first.reasons == [
            "novel"
        ]  # nothing reviewed yet: everything is new
        first.status = "approved"
        session.flush()
        q = "how do I reset my password"
        assert enqueue(session, q) is None  # like a reviewed question, nothing special, not sampled
        thumbs = enqueue(session, q, thumbs_down=True)
        weak = enqueue(session, q, score=0.1)
        agree = enqueue(
            session,
            q,
            live_answer="Open settings and press reset.",
            answer="Open settings, press reset!",
        )
        differ = enqueue(
            session,
            q,
            live_answer="Open settings and press reset.",
            answer="Our lamps come in blue.",
        )
        sampled = enqueue(session, q, policy=BotPolicy(review_sample_rate=1.0))
        new = enqueue(session, "Which colours can the Glow lamp show?")
        assert agree is None
        assert thumbs and weak and differ and sampled and new
        assert (thumbs.reasons, weak.reasons, differ.reasons, sampled.reasons, new.reasons) == (
            ["thumbs_down"],
            ["low_retrieval"],
            ["disagreement"],
            ["sampled"],
            ["novel"],
        )
        order = sorted([thumbs, weak, differ, sampled, new], key=lambda i: -i.priority)
        assert order[0] is thumbs and order[-1] is sampled and sampled.priority == 0.0
        assert weak.priority == pytest.approx(2.0 + (0.40 - 0.1))


def test_answer_distance_ignores_case_and_punctuation() -> None:
    assert answer_distance("Press RESET.", "press reset") == 0.0
    assert answer_distance("abc", "xyz") == 1.0
    assert 0 < answer_distance("Open the app, then tap reset.", "Open the app and tap reset.") < 0.3


def test_near_identical_questions_share_a_group_per_release(harness: Harness) -> None:
    always = BotPolicy(review_sample_rate=1.0)
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        live = session.scalar(select(Bot.live_release_id).where(Bot.slug == "acme"))
        a = enqueue(session, "How do I reset my password?", policy=always, release_id=live)
        b = enqueue(session, "how do i reset my password??", policy=always, release_id=live)
        c = enqueue(session, "How do I reset my pasword?", policy=always, release_id=live)
        other_topic = enqueue(
            session, "Which colours can the lamp show?", policy=always, release_id=live
        )
        fragment = enqueue(session, "password", policy=always, release_id=live)
        other_release = enqueue(
            session, "How do I reset my password?", policy=always, release_id=None
        )
        assert a and b and c and other_topic and fragment and other_release
        assert a.group_key == b.group_key == c.group_key
        assert (
            len({a.group_key, other_topic.group_key, fragment.group_key, other_release.group_key})
            == 4
        )
        # Only pending items gather a group: once reviewed, a new ask starts a new group.
        for item in (a, b, c):
            item.status = "approved"
        session.flush()
        d = enqueue(session, "How do I reset my password?", policy=always, release_id=live)
        assert d is not None and d.group_key != a.group_key


def test_enqueue_is_idempotent_and_a_late_thumbs_down_raises_priority(harness: Harness) -> None:
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        exchange = add_exchange(session, "How do I pair the hub?")
        first = enqueue(
            session,
            "How do I pair the hub?",
            policy=BotPolicy(review_sample_rate=1.0),
            exchange=exchange,
        )
        again = enqueue(
            session,
            "How do I pair the hub?",
            policy=BotPolicy(review_sample_rate=1.0),
            exchange=exchange,
        )
        assert first is not None and again is first
        before = first.priority
        later = enqueue(session, "How do I pair the hub?", thumbs_down=True, exchange=exchange)
        assert later is first and "thumbs_down" in first.reasons and first.priority > before
        assert len(list(session.scalars(select(ReviewItem)))) == 1


def test_review_feed_reads_feedback_and_retrieval_from_the_exchange(harness: Harness) -> None:
    sessions = harness.client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        _, exchange_id = add_exchange(
            session, "Why is the ring red?", feedback=-1, flags=["no_passages"]
        )
    result = review_live_answer(sessions, exchange_id)
    assert set(result["reasons"]) == {"thumbs_down", "low_retrieval", "novel", "sampled"}
    with transaction(sessions) as session:
        [item] = session.scalars(select(ReviewItem))
        assert (
            item.exchange_id == exchange_id
            and item.shadow_answer_id is None
            and item.release_id is not None
        )
    assert (
        review_live_answer(sessions, exchange_id)["review_item_id"] == result["review_item_id"]
    )  # no second item
    assert review_live_answer(sessions, "exch_gone") == {"skipped": "exchange_deleted"}


def test_a_thumbs_down_goes_first_and_a_changed_rating_takes_it_back(harness: Harness) -> None:
    from api.models import ApiKey
    from api.services.chat.exchanges import record_feedback

    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        # Many reasons at once: weak retrieval, a strong disagreement, a novel question.
        rich = enqueue(
            session,
            "Something nobody asked before?",
            score=0.05,
            live_answer="Completely different words here",
            answer="x" * 40,
        )
        assert rich is not None and len(rich.reasons) >= 2
        _, disliked_id = add_exchange(session, "Why is the ring red?")
        disliked = enqueue_review(
            session,
            bot_id=rich.bot_id,
            exchange_id=disliked_id,
            release_id=None,
            shadow_answer_id=None,
            question="Why is the ring red?",
            answer="An answer.",
            live_answer=None,
            top_retrieval_score=None,
            thumbs_down=False,
            policy=BotPolicy(),
            rng=random.Random(0),
        )
        assert disliked is not None
        admin = ApiKey(id="key_admin", name="a", prefix="sd-x", secret_hash="h", is_admin=True)
        record_feedback(session, admin, disliked_id, "down", "  The ring is amber, not red.  ")
        session.flush()
        assert disliked.reasons[0] == "thumbs_down" and disliked.priority > rich.priority
        exchange = session.get_one(Exchange, disliked_id)
        assert exchange.feedback_comment == "The ring is amber, not red."
        record_feedback(session, admin, disliked_id, "up")
        session.flush()
        assert "thumbs_down" not in disliked.reasons and disliked.priority < 100
        assert exchange.feedback == 1 and exchange.feedback_comment is None


def _policy(h: Harness, **policy: object) -> None:
    admin_key = h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]
    assert (
        h.client.patch("/api/bots/acme", headers=admin_key, json={"policy": policy}).status_code
        == 200
    )


def test_live_answers_are_sampled_while_candidates_shadow(harness: Harness) -> None:
    from api.models import Job
    from tests.api.review_fixtures import ask

    h = harness
    admin_key = h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]
    _policy(h, review_sample_rate=0.0, live_review_sample_rate=1.0, novelty_similarity=0.0)
    candidate = h.client.post(
        "/api/bots/acme/releases", headers=admin_key, json={"candidate": True}
    )
    assert candidate.status_code == 201
    exchange_id = ask(h, "How do I reset my password?")
    sessions = h.client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        kinds = sorted(
            j.kind
            for j in session.scalars(select(Job))
            if j.payload.get("exchange_id") == exchange_id
        )
    assert kinds == ["review_feed", "shadow"]  # the live answer is considered too
    assert review_live_answer(sessions, exchange_id)["reasons"] == ["sampled"]
    with transaction(sessions) as session:
        live = session.scalars(
            select(ReviewItem).where(ReviewItem.exchange_id == exchange_id)
        ).one()
        assert live.shadow_answer_id is None  # the answer the client got

    # Outside the live sample, a novel question queues the candidates' answers, not the live one
    # too; a client's thumbs-down does queue it (it is the answer the client saw).
    _policy(h, live_review_sample_rate=0.0, novelty_similarity=1.0)
    quiet = ask(h, "Can I change my username?")
    assert review_live_answer(sessions, quiet)["review_item_id"] is None
    r = h.client.post(f"/v1/exchanges/{quiet}/feedback", headers=h.auth(), json={"rating": "down"})
    assert r.status_code == 200, r.text
    assert review_live_answer(sessions, quiet)["reasons"] == ["thumbs_down"]


def test_refusals_are_sampled_at_their_own_rate_and_labelled(harness: Harness) -> None:
    from tests.api.review_fixtures import ask, log_in_page

    h = harness
    admin_key = h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]
    h.client.patch(
        "/api/bots/acme", headers=admin_key, json={"scope": "TPS reports and cover sheets"}
    )
    _policy(h, review_sample_rate=0.0, refusal_review_sample_rate=1.0, novelty_similarity=0.0)
    exchange_id = ask(h, "Give me a recipe for banana bread.")
    sessions = h.client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        assert session.get_one(Exchange, exchange_id).status == "refused"
    result = review_live_answer(sessions, exchange_id)
    assert result["reasons"] == ["sampled"]
    page = log_in_page(h, f"/review/items/{result['review_item_id']}")
    assert 'id="refusal-label"' in page and "refused this question" in page
    _policy(h, refusal_review_sample_rate=0.0)
    other = ask(h, "Who won the football match yesterday?")
    assert review_live_answer(sessions, other)["review_item_id"] is None


def test_a_reviewer_on_a_candidate_answer_can_correct_the_live_one_too(harness: Harness) -> None:
    from api.services.review.verdicts import live_item
    from tests.api.review_fixtures import ask, queue, staff, stop_review_feed

    h = harness
    stop_review_feed(h, "acme")
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    shadow_item = queue(h, ask(h, "How do I reset my password?"), shadow_answer="Candidate says.")
    sessions = h.client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        live = live_item(session, reviewer, shadow_item)
        assert (
            live.shadow_answer_id is None
            and live.reasons == ["requested"]
            and live.status == "pending"
        )
        live_id = live.id
    with transaction(sessions) as session:
        assert live_item(session, reviewer, shadow_item).id == live_id  # one live item per exchange
