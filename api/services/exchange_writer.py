"""Durable exchange writes with group commit.

Every answer must be committed before its last chunk is sent. One INSERT + COMMIT per request, each
on a thread-pool hop, dominates the gateway's overhead under load; instead, a single writer thread
takes every record waiting in its queue and commits them in one transaction. Each caller's await
returns only after the transaction holding its record has committed, so durability is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, insert

from api.models import Exchange, Job
from api.services.exchanges import ExchangeRecord

log = logging.getLogger(__name__)

_Item = tuple[ExchangeRecord, list[dict[str, Any]], asyncio.AbstractEventLoop, asyncio.Future[None]]
_STOP = object()
MAX_BATCH = 256


class ExchangeWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

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

    async def write(self, record: ExchangeRecord, jobs: list[dict[str, Any]] | None = None) -> None:
        """Return once `record` (and the `jobs` rows it starts, in the same transaction) is committed;
        raise if it could not be."""
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((record, jobs or [], loop, future))
        await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[_Item] = [item]  # type: ignore[list-item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        try:
            self._insert([record for record, _, _, _ in batch], [job for _, jobs, _, _ in batch for job in jobs])
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

    def _insert(self, records: list[ExchangeRecord], jobs: list[dict[str, Any]]) -> None:
        rows = [asdict(r) for r in records]
        with self.engine.begin() as conn:
            conn.execute(insert(Exchange.__table__), rows)
            if jobs:
                conn.execute(insert(Job.__table__), jobs)


def _failure() -> Exception:
    return RuntimeError("the exchange could not be stored")


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: Exception | None) -> None:
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
