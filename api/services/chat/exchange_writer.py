"""Durable exchange writes: inline on SQLite, group commit on a server database.

Every answer must be committed before its last chunk is sent, so the write sits on the client's
path and its cost is the gateway's overhead.

- A server database (PostgreSQL) is reached over the network, which must never block the event
  loop: a single writer thread takes every record waiting in its queue and commits them in one
  transaction (group commit). Each caller's await returns only after its transaction committed.
- SQLite in WAL mode commits a row in ~0.15 ms, about half of what a hand-off to a thread and back
  costs (measured: 141 us inline vs 315 us round trip), so the write runs inline. It uses its own
  connection with a short lock timeout: when another process holds the write lock, the record goes
  to the writer thread instead of stalling the loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from api.models import Exchange, Job
from api.services.chat.exchanges import ExchangeRecord

log = logging.getLogger(__name__)

_Item = tuple[ExchangeRecord, list[dict[str, Any]], asyncio.AbstractEventLoop, asyncio.Future[None]]


class _Stop:
    """Tells the writer thread to flush and end."""


_STOP = _Stop()
MAX_BATCH = 256


INLINE_LOCK_TIMEOUT_MS = 20


class ExchangeWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Item | _Stop] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._inline: Engine | None = None
        if engine.dialect.name == "sqlite":
            self._inline = create_engine(
                engine.url,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False, "timeout": INLINE_LOCK_TIMEOUT_MS / 1000},
            )
            event.listen(self._inline, "connect", _sqlite_inline_pragmas)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="exchange-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Flush what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=30)
            self._thread = None
        if self._inline is not None:
            self._inline.dispose()

    async def write(self, record: ExchangeRecord, jobs: list[dict[str, Any]] | None = None) -> None:
        """Return once `record` (and the `jobs` rows it starts, in the same transaction) is committed;
        raise if it could not be."""
        if self._inline is not None:
            try:
                self._insert([record], jobs or [], self._inline)
                return
            except OperationalError as exc:  # locked by another process: don't stall the loop
                log.debug("inline exchange write deferred to the writer thread: %s", exc)
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((record, jobs or [], loop, future))
        await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return
            batch: list[_Item] = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, _Stop):
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        try:
            self._insert(
                [record for record, _, _, _ in batch],
                [job for _, jobs, _, _ in batch for job in jobs],
            )
        except Exception:
            if len(batch) == 1:
                record, _, loop, future = batch[0]
                log.exception("could not store exchange %s", record.id)
                _resolve(loop, future, _failure())
                return
            # Find the bad record(s) without failing the good ones.
            for one in batch:
                self._commit([one])
            return
        for _, _, loop, future in batch:
            _resolve(loop, future, None)

    def _insert(
        self,
        records: list[ExchangeRecord],
        jobs: list[dict[str, Any]],
        engine: Engine | None = None,
    ) -> None:
        # A shallow copy: dataclasses.asdict deep-copies every message and passage (~0.2 ms a row).
        rows = [dict(vars(r)) for r in records]
        with (engine or self.engine).begin() as conn:
            conn.execute(insert(Exchange), rows)
            if jobs:
                conn.execute(insert(Job), jobs)


def _failure() -> Exception:
    return RuntimeError("the exchange could not be stored")


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: Exception | None
) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop is gone (shutdown); the row is committed regardless
        log.debug("event loop closed before an exchange write was acknowledged")


def _sqlite_inline_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={INLINE_LOCK_TIMEOUT_MS}")
    cur.close()
