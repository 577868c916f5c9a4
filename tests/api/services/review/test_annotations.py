"""Annotations: created by approvals and corrections, switched off and on, matched against client
questions by embedding similarity from an in-memory cache that follows every change."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from api.errors import NotFound
from api.models import Annotation, AuditEntry
from api.services.access.audit import CLI_ACTOR
from api.services.bots.management import get_bot
from api.services.review.annotations import (
    AnnotationIndex,
    create_annotation,
    normalize_question,
    record_hit,
    set_enabled,
)
from serving.knowledge import EmbedderSpec, SentenceTransformerEmbedder, load_embedder
from tests.api.conftest import Harness
from tests.api.review_fixtures import ask, db, queue, sessions_of, staff, stop_review_feed
from tests.api.routes.test_admin import admin


@pytest.fixture(scope="module")
def minilm() -> Iterator[SentenceTransformerEmbedder]:
    """The packaged all-MiniLM-L6-v2, on one torch thread (the machine is shared)."""
    yield load_embedder(EmbedderSpec(threads=1))


class WordEmbed:
    """A fake embedding: one dimension per known word; counts what it embeds."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.embedded: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            self.embedded += texts
            rows = []
            for text in texts:
                row = [0.0] * 64
                for word in normalize_question(text).split():
                    row[self.vocabulary.setdefault(word, len(self.vocabulary))] += 1.0
                rows.append(row)
            return rows


def add(h: Harness, question: str, answer: str, bot: str = "acme") -> str:
    with db(h) as session:
        return create_annotation(
            session,
            CLI_ACTOR,
            bot_id=get_bot(session, bot).id,
            question=question,
            answer=answer,
            review_id=None,
        ).id


def bot_id(h: Harness, slug: str = "acme") -> str:
    with db(h) as session:
        return get_bot(session, slug).id


def test_a_correction_answers_the_very_next_similar_question(
    harness: Harness, minilm: SentenceTransformerEmbedder
) -> None:
    """End to end with the real MiniLM: review through the API, then chat."""
    stop_review_feed(harness, "acme")
    runtime = harness.client.app.state.runtime  # type: ignore[attr-defined]
    runtime._annotations = AnnotationIndex(sessions_of(harness), minilm.embed_documents)
    first = ask(harness, "How do I reset my password?")
    item_id = queue(harness, first)
    correction = "Open Settings > Security and choose Reset password."
    r = harness.client.post(
        f"/api/review/items/{item_id}/review",
        headers=admin(harness),
        json={"verdict": "corrected", "corrected_text": correction},
    )
    assert r.status_code == 200, r.text
    annotation_id = r.json()["annotation_id"]
    calls = len(harness.backend.calls)

    def answer(question: str) -> tuple[str, str | None]:
        r = harness.client.post(
            "/v1/chat/completions",
            headers=harness.auth(),
            json={"model": "acme", "messages": [{"role": "user", "content": question}]},
        )
        exchange = next(e for e in harness.exchanges() if e.id == r.headers["X-Exchange-Id"])
        return r.json()["choices"][0]["message"]["content"], exchange.annotation_id

    assert answer("how can I reset my password") == (correction, annotation_id)
    assert len(harness.backend.calls) == calls  # answered without the model
    assert answer("How do I change my password?") == (
        "Hello from the bot.",
        None,
    )  # similar, not near-identical
    assert answer("Do you sell gift cards?") == ("Hello from the bot.", None)
    metrics = harness.client.get("/api/review/bots/acme/metrics", headers=admin(harness)).json()
    assert metrics["annotations"]["hits"] == 1
    listed = harness.client.get("/api/review/bots/acme/annotations", headers=admin(harness)).json()
    assert [(a["id"], a["answered"]) for a in listed] == [(annotation_id, 1)]

    r = harness.client.patch(
        f"/api/review/annotations/{annotation_id}", headers=admin(harness), json={"enabled": False}
    )
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert answer("how can I reset my password") == ("Hello from the bot.", None)  # off at once


def test_match_threshold_cache_and_invalidation(harness: Harness) -> None:
    embed = WordEmbed()
    index = AnnotationIndex(sessions_of(harness), embed, recheck_s=3600)
    acme = bot_id(harness)
    assert index.match(acme, "reset password", 0.9) is None
    assert (
        index.known_empty(acme) and embed.embedded == []
    )  # nothing to compare with: no embedding at all
    first = add(harness, "reset password", "Use the reset link.")
    index.invalidate(acme)
    match = index.match(acme, "Reset password!", 0.9)
    assert match is not None and (match.id, match.answer) == (first, "Use the reset link.")
    assert match.similarity == pytest.approx(1.0, abs=1e-6)
    assert index.match(acme, "reset my password", 0.9) is None  # cos = 2/sqrt(6) ≈ 0.82
    assert index.match(acme, "reset my password", 0.8) is not None
    assert index.match(bot_id(harness, "globex"), "reset password", 0.5) is None  # per bot
    embedded = len(embed.embedded)
    second = add(harness, "delete account", "Write to support.")
    index.invalidate(acme)
    assert index.match(acme, "delete account", 0.9).id == second  # type: ignore[union-attr]
    # a reload embeds only the new question (plus the client question)
    assert embed.embedded[embedded:] == ["delete account", "delete account"]
    with db(harness) as session:
        set_enabled(session, staff(harness, "boss@shadowdesk.test", "admin"), first, False)
    index.invalidate(acme)
    assert index.match(acme, "reset password", 0.5) is None


def test_changes_from_elsewhere_are_seen_after_recheck(harness: Harness) -> None:
    clock = [0.0]
    index = AnnotationIndex(
        sessions_of(harness), WordEmbed(), recheck_s=2.0, clock=lambda: clock[0]
    )
    acme = bot_id(harness)
    assert index.match(acme, "reset password", 0.9) is None
    add(harness, "reset password", "Use the reset link.")  # another replica: no invalidate here
    assert index.match(acme, "reset password", 0.9) is None  # cached
    clock[0] = 2.5
    assert index.match(acme, "reset password", 0.9) is not None


def test_hits_leave_the_cache_alone(harness: Harness) -> None:
    embed = WordEmbed()
    index = AnnotationIndex(sessions_of(harness), embed, recheck_s=0.0)
    first = add(harness, "reset password", "Use the reset link.")
    assert index.match(bot_id(harness), "reset password", 0.9) is not None
    loaded = len(embed.embedded)
    with db(harness) as session:
        before = session.get(Annotation, first).updated_at  # type: ignore[union-attr]
        record_hit(session, first)
        record_hit(session, first)
    with db(harness) as session:
        row = session.get(Annotation, first)
        assert row is not None and row.hits == 2 and row.updated_at == before
    index.match(bot_id(harness), "reset password", 0.9)
    assert len(embed.embedded) == loaded + 1  # re-checked, nothing re-embedded


def test_matching_from_many_threads_while_annotations_change(harness: Harness) -> None:
    index = AnnotationIndex(sessions_of(harness), WordEmbed(), recheck_s=0.0)
    acme = bot_id(harness)
    add(harness, "reset password", "Use the reset link.")
    errors: list[BaseException] = []
    found: list[bool] = []

    def client() -> None:
        try:
            for _ in range(15):
                found.append(index.match(acme, "reset password", 0.9) is not None)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for i in range(5):
        add(harness, f"question {i}", f"answer {i}")
        index.invalidate(acme)
    for t in threads:
        t.join()
    assert errors == [] and len(found) == 90 and all(found)


def test_switching_annotations_is_scoped_and_audited(harness: Harness) -> None:
    stop_review_feed(harness, "acme", "globex")
    reviewer = staff(harness, "rev@acme.test", bots=("acme",))
    mine = add(harness, "reset password", "Use the reset link.")
    theirs = add(harness, "reset password", "Globex answer.", bot="globex")
    with db(harness) as session:
        set_enabled(session, reviewer, mine, False)
        set_enabled(session, reviewer, mine, False)  # no change, no entry
        set_enabled(session, reviewer, mine, True)
        with pytest.raises(NotFound):
            set_enabled(session, reviewer, theirs, False)
    with db(harness) as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_id == mine)
            .order_by(AuditEntry.created_at, AuditEntry.id)
        ).all()
        assert [e.action for e in entries] == [
            "annotation.create",
            "annotation.disable",
            "annotation.enable",
        ]
        assert entries[1].actor == "rev@acme.test" and entries[1].after["enabled"] is False
    # A newer annotation of the same question takes over from the older one.
    newer = add(harness, "Reset password?", "Use the new reset page.")
    with db(harness) as session:
        enabled = session.scalars(select(Annotation.id).where(Annotation.enabled.is_(True))).all()
        assert sorted(enabled) == sorted([newer, theirs])


def test_four_eyes_annotations_answer_clients_only_after_a_second_approval(
    harness: Harness, minilm: SentenceTransformerEmbedder
) -> None:
    from api.errors import Conflict
    from api.services.review import annotations as annotation_service
    from api.services.review import verdicts as reviews

    h = harness
    stop_review_feed(h, "acme")
    assert (
        h.client.patch(
            "/api/bots/acme",
            headers=admin(h),
            json={"policy": {"annotation_approval": "four_eyes"}},
        ).status_code
        == 200
    )
    runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
    runtime._annotations = AnnotationIndex(sessions_of(h), minilm.embed_documents)
    ana = staff(h, "ana@acme.test", bots=("acme",))
    bob = staff(h, "bob@acme.test", bots=("acme",))
    item_id = queue(h, ask(h, "How do I reset my password?"))
    correction = "Open Settings > Security and choose Reset password."
    with db(h) as session:
        outcome = reviews.act(session, ana, item_id, reviews.Verdict("corrected", correction))
        assert outcome.annotation is not None
        annotation_id = outcome.annotation.id
        assert outcome.annotation.awaiting_approval and not outcome.annotation.enabled

    def answer() -> str:
        r = h.client.post(
            "/v1/chat/completions",
            headers=h.auth(),
            json={
                "model": "acme",
                "messages": [{"role": "user", "content": "how can I reset my password"}],
            },
        )
        return str(r.json()["choices"][0]["message"]["content"])

    assert answer() == "Hello from the bot."  # not yet: one reviewer alone put nothing live
    with db(h) as session, pytest.raises(Conflict, match="second reviewer"):
        annotation_service.approve(session, ana, annotation_id)  # not by its own author
    with db(h) as session, pytest.raises(Conflict):
        set_enabled(session, ana, annotation_id, True)  # nor switched on around the rule
    with db(h) as session:
        approved = annotation_service.approve(session, bob, annotation_id)
        assert approved.enabled and not approved.awaiting_approval
    assert answer() == correction
    with db(h) as session:
        actions = [
            e.action
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_id == annotation_id)
                .order_by(AuditEntry.created_at)
            )
        ]
    assert actions == ["annotation.create", "annotation.enable"]
