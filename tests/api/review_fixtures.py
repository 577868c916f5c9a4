"""Building blocks for review tests: exchanges made through the real chat endpoint, review items on
them with chosen groups and priorities, and staff actors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.ids import new_id
from api.models import Bot, Exchange, ReviewItem, ShadowAnswer
from api.services.access.audit import CLI_ACTOR
from api.services.access.staff import Actor, create_user
from api.services.bots.management import get_bot
from tests.api.conftest import Harness

PASSWORD = "correct horse battery"


def sessions_of(h: Harness) -> sessionmaker[Session]:
    return h.client.app.state.sessions  # type: ignore[attr-defined,no-any-return]


@contextmanager
def db(h: Harness) -> Iterator[Session]:
    with transaction(sessions_of(h)) as session:
        yield session


def stop_review_feed(h: Harness, *slugs: str) -> None:
    """Tests that place their own review items keep the feed from queueing answers too."""
    with db(h) as session:
        for slug in slugs:
            bot = get_bot(session, slug)
            bot.policy = {
                **(bot.policy or {}),
                "review_sample_rate": 0.0,
                "novelty_similarity": 0.0,
            }
    h.client.app.state.access.forget()  # type: ignore[attr-defined]


def ask(
    h: Harness,
    question: str,
    *,
    bot: str = "acme",
    history: list[dict[str, str]] | None = None,
    key: str | None = None,
) -> str:
    """Chat through the app; the stored exchange's id."""
    messages = [*(history or []), {"role": "user", "content": question}]
    r = h.client.post(
        "/v1/chat/completions", json={"model": bot, "messages": messages}, headers=h.auth(key)
    )
    assert r.status_code == 200, r.text
    return r.headers["X-Exchange-Id"]


def queue(
    h: Harness,
    exchange_id: str,
    *,
    group: str | None = None,
    priority: float = 1.0,
    reasons: tuple[str, ...] = ("sampled",),
    shadow_answer: str | None = None,
    shadow_status: str = "completed",
    passages: list[dict[str, Any]] | None = None,
) -> str:
    """Put a review item on `exchange_id` (for its live release, or for a candidate's `shadow_answer`)."""
    with db(h) as session:
        exchange = session.get(Exchange, exchange_id)
        assert exchange is not None
        if passages is not None:
            exchange.passages = passages
        release_id, shadow_id = exchange.release_id, None
        if shadow_answer is not None:
            from api.models import Release
            from api.services.bots.management import next_release_version

            bot = session.get(Bot, exchange.bot_id)
            assert bot is not None
            candidate = session.scalar(
                select(Release).where(Release.bot_id == bot.id, Release.candidate.is_(True))
            )
            if candidate is None:
                candidate = Release(
                    id=new_id("rel"),
                    bot_id=bot.id,
                    version=next_release_version(session, bot.id),
                    base_model="scripted-model",
                    candidate=True,
                )
                session.add(candidate)
                session.flush()
            shadow = ShadowAnswer(
                id=new_id("sha"),
                exchange_id=exchange.id,
                release_id=candidate.id,
                answer=shadow_answer,
                status=shadow_status,
            )
            session.add(shadow)
            session.flush()
            release_id, shadow_id = candidate.id, shadow.id
        item = ReviewItem(
            id=new_id("rvw"),
            bot_id=exchange.bot_id,
            exchange_id=exchange.id,
            release_id=release_id,
            shadow_answer_id=shadow_id,
            priority=priority,
            reasons=list(reasons),
            group_key=group,
        )
        session.add(item)
        session.flush()
        return item.id


def staff(h: Harness, email: str, role: str = "reviewer", bots: tuple[str, ...] = ()) -> Actor:
    """A staff user (password `PASSWORD`) as the services see them."""
    with db(h) as session:
        user = create_user(
            session,
            CLI_ACTOR,
            email=email,
            password=PASSWORD,
            role=role,
            bots=[get_bot(session, slug) for slug in bots],
        )
        return Actor.of_user(user)


def item(h: Harness, item_id: str) -> ReviewItem:
    with db(h) as session:
        row = session.get(ReviewItem, item_id)
        assert row is not None
        session.expunge(row)
        return row


def log_in_page(h: Harness, path: str, email: str = "boss@shadowdesk.test") -> str:
    """The HTML of a staff page, seen by an admin logged in through the login form."""
    import re

    staff(h, email, role="admin")
    c = h.client
    login = c.get("/review/login").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert found is not None
    r = c.post(
        "/review/login",
        data={"email": email, "password": PASSWORD, "csrf_token": found.group(1), "next": path},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    page = c.get(path)
    assert page.status_code == 200, page.text
    return page.text
