"""Drops connections to a PostgreSQL server that stopped answering.

The server's own `statement_timeout` ends slow commands, but only a live server applies it. A server
that is stopped, swapped out or cut off by the network leaves a command waiting forever: the kernel
still accepts and acknowledges the bytes (TCP keepalives included), so neither libpq nor the socket
ever gives up. Every request that touches the database would hang with it.

The watchdog samples each connection's libpq state. One whose command has been in flight for longer
than its limit, with no new command started meanwhile, has its socket shut down: the thread waiting on
it gets an `OperationalError` at once (a 503 `database_unavailable` to clients) and the pool discards
the connection. Sampling sees commands that no event announces (the pool's pre-ping, the reset on
return); the per-connection command counter keeps a run of short back-to-back commands from reading
as one long one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

SAMPLE_S = 0.25
_ACTIVE = 1  # libpq PQTRANS_ACTIVE: a command is in flight (psycopg's TransactionStatus.ACTIVE)


@dataclass
class _Watch:
    limit_s: float
    commands: int = 0  # commands started, as far as events tell
    seen_commands: int = -1  # the count when the current in-flight stretch was first sampled
    active_since: float | None = None


class _Watchdog:
    def __init__(self) -> None:
        self._watched: weakref.WeakKeyDictionary[Any, _Watch] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, dbapi_conn: Any, limit_s: float) -> None:
        with self._lock:
            self._watched[dbapi_conn] = _Watch(limit_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()

    def started(self, dbapi_conn: Any) -> None:
        watch = self._watched.get(dbapi_conn)
        if watch is not None:
            watch.commands += 1

    def _run(self) -> None:
        while True:
            time.sleep(SAMPLE_S)
            with self._lock:
                watched = list(self._watched.items())
            now = time.monotonic()
            for conn, watch in watched:
                try:
                    self._check(conn, watch, now)
                except Exception:  # noqa: BLE001 - one odd connection must not stop the watch
                    log.debug("database watchdog: could not check a connection", exc_info=True)

    def _check(self, conn: Any, watch: _Watch, now: float) -> None:
        if conn.closed or conn.info.transaction_status != _ACTIVE:
            watch.active_since = None
            return
        if watch.active_since is None or watch.seen_commands != watch.commands:
            watch.active_since, watch.seen_commands = now, watch.commands
            return
        if now - watch.active_since >= watch.limit_s:
            log.warning(
                "database did not answer a command for %.0f s: dropping the connection",
                now - watch.active_since,
            )
            watch.active_since = None
            _sever(conn)


def _sever(conn: Any) -> None:
    """Shut the connection's socket down under the thread that waits on it (a duplicate descriptor,
    so the driver still owns and closes its own)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    finally:
        sock.close()


_WATCHDOG = _Watchdog()


def watch_hung_connections(engine: Engine, limit_s: float) -> None:
    """Drop `engine`'s connections whose server leaves a command unanswered for `limit_s`."""

    @event.listens_for(engine, "connect", insert=True)  # before the dialect's own first commands
    def _connected(dbapi_conn: Any, _record: Any) -> None:
        _WATCHDOG.add(dbapi_conn, limit_s)

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        _WATCHDOG.started(dbapi_conn)

    @event.listens_for(engine, "before_cursor_execute")
    def _execute(conn: Any, *_: Any) -> None:
        _WATCHDOG.started(conn.connection.dbapi_connection)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _end(conn: Any) -> None:
        if not conn.invalidated:  # a dropped connection has no driver connection left to watch
            _WATCHDOG.started(conn.connection.dbapi_connection)
