"""Fixtures for API tests: settings on SQLite or PostgreSQL, an app with a scripted backend, keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.bots import BotCreate, create_bot
from api.services.keys import create_key
from api.settings import Settings
from tests.fakes import ScriptedBackend

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> None:
    if not postgres_available():
        pytest.fail("PostgreSQL is not answering at 127.0.0.1:5432 (.ci/run starts it)")


@pytest.fixture
def postgres_url(postgres_server: None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"sd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Runs a test on both databases: None means the embedded SQLite default."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=database_url,
        auto_migrate=True,
        admin_key="admin-secret-for-tests-0123456789",  # type: ignore[arg-type]
        max_messages=8,
        max_message_chars=500,
        max_total_chars=1500,
        max_tokens_limit=64,
        backend_timeout_s=2.0,
        create_demo_bot=False,  # the demo indexes its documentation: tested on its own
    )


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
            acme = create_bot(session, BotCreate(slug="acme", name="Acme", system_prompt="You are Acme's bot."),
                              base_model="scripted-model")
            globex = create_bot(session, BotCreate(slug="globex", name="Globex"), base_model="scripted-model")
            initech = create_bot(session, BotCreate(slug="initech", name="Initech"), base_model="scripted-model")
            _, key = create_key(session, bots=[acme, initech], name="acme key")
            _, other = create_key(session, bots=[globex], name="globex key")
        yield Harness(client, backend, settings, key, other)


@pytest.fixture
def harness(settings: Settings) -> Iterator[Harness]:
    with harness_with(settings, ScriptedBackend()) as h:
        yield h


def chat_body(content: str = "How do I reset my password?", **extra: object) -> dict[str, object]:
    return {"model": "acme", "messages": [{"role": "user", "content": content}], **extra}
