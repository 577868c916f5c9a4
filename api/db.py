"""Engine and sessions. SQLite runs in WAL mode so readers never block the writer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from api.db_watchdog import watch_hung_connections
from api.settings import Settings

# How much longer than the server's own statement timeout a silent server is waited for.
MAX_HUNG_GRACE_S = 5.0


class Base(DeclarativeBase):
    pass


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # A database that is down or hung must be an error in seconds (then a 503), not a wait:
    # connecting, waiting for a pooled connection and each command are bounded (the last one by
    # the server itself, and by the watchdog when the server no longer answers at all).
    timeout_ms = round(settings.database_timeout_s * 1000)
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )

    timeout_s = settings.database_timeout_s
    watch_hung_connections(engine, timeout_s + min(timeout_s, MAX_HUNG_GRACE_S))

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_conn: Any, _record: Any) -> None:
        # A SET rather than a startup option: connection poolers refuse unknown startup options.
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {timeout_ms}")
        dbapi_conn.autocommit = autocommit

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error (no half-written rows)."""
    with factory() as session, session.begin():
        yield session


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (`Session.execute` is typed as returning a plain `Result`;
    for those statements it is a `CursorResult`, which counts them)."""
    return int(cast(CursorResult[Any], result).rowcount)
