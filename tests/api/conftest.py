"""Fixtures for API tests: an app with a scripted backend, bots and keys (the database fixtures are
in tests/support/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import BotCreate, create_bot
from api.settings import Settings
from tests.fakes import ScriptedBackend


@dataclass
class Harness:
    client: TestClient
    backend: ScriptedBackend
    settings: Settings
    key: str  # may use bots "acme" and "initech"
    other_key: str  # may use only "globex"

    def exchanges(self) -> list[Exchange]:
        with transaction(self.client.app.state.sessions) as session:  # type: ignore[attr-defined]
            return list(session.scalars(select(Exchange).order_by(Exchange.created_at)))

    def exchange_count(self) -> int:
        with transaction(self.client.app.state.sessions) as session:  # type: ignore[attr-defined]
            return session.scalar(select(func.count()).select_from(Exchange)) or 0

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@contextmanager
def harness_with(settings: Settings, backend: ScriptedBackend) -> Iterator[Harness]:
    """The app with bots acme, globex and initech and two keys (acme + initech; globex), on a backend of
    the test's choosing."""
    app = create_app(settings, backend=backend)
    with TestClient(app) as client:
        with transaction(app.state.sessions) as session:
            acme = create_bot(
                session,
                BotCreate(slug="acme", name="Acme", system_prompt="You are Acme's bot."),
                base_model="scripted-model",
                actor=SYSTEM_ACTOR,
            )
            globex = create_bot(
                session,
                BotCreate(slug="globex", name="Globex"),
                base_model="scripted-model",
                actor=SYSTEM_ACTOR,
            )
            initech = create_bot(
                session,
                BotCreate(slug="initech", name="Initech"),
                base_model="scripted-model",
                actor=SYSTEM_ACTOR,
            )
            _, key = create_key(session, bots=[acme, initech], name="acme key", actor=SYSTEM_ACTOR)
            _, other = create_key(session, bots=[globex], name="globex key", actor=SYSTEM_ACTOR)
        yield Harness(client, backend, settings, key, other)


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    with harness_with(settings, ScriptedBackend()) as h:
        yield h


def chat_body(content: str = "How do I reset my password?", **extra: object) -> dict[str, object]:
    return {"model": "acme", "messages": [{"role": "user", "content": content}], **extra}
