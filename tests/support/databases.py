"""Database fixtures for every test package: a fresh PostgreSQL database per test, tests run on both
databases (`database_url`), and the settings of a test app on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db import make_engine, make_session_factory
from api.settings import Settings


@contextmanager
def open_sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the settings' database, its engine disposed afterwards (no connection leaks)."""
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


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


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    if not postgres_available():
        pytest.fail("PostgreSQL is not answering at 127.0.0.1:5432 (.ci/run starts it)")
    name = f"sd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server: None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


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


@pytest.fixture
def data_dir_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """Sessions on the embedded database of a `shadowdesk` whose data dir is `tmp_path`."""
    with open_sessions(Settings(_env_file=None, data_dir=tmp_path)) as sessions:  # type: ignore[call-arg]
        yield sessions
