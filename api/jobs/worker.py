"""The job worker: claims jobs, runs their handler, keeps the lease alive, records the outcome.

Runs inside `shadowdesk serve` (embedded default) or alone as `shadowdesk worker` (scaled out).
Handlers are plain functions (run in a thread) or coroutines (run on the loop) of a `JobContext`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.jobs import queue

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired); stop without finishing it."""


class RetryLater(Exception):
    """A job that cannot finish now (a destination is down): retried after `delay_s`, while
    attempts remain."""

    def __init__(self, message: str, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = delay_s


@dataclass
class JobContext:
    job_id: str
    kind: str
    bot_id: str | None
    payload: dict[str, Any]
    attempt: int
    sessions: sessionmaker[Session]
    worker_id: str
    lease_s: float
    progress: dict[str, Any] = field(default_factory=dict)

    def report(self, **progress: Any) -> None:
        """Record progress (shown in the job's status) and renew the lease."""
        self.progress.update(progress)
        with transaction(self.sessions) as session:
            if not queue.extend_lease(
                session, self.job_id, self.worker_id, self.lease_s, dict(self.progress)
            ):
                raise LeaseLost(self.job_id)


Handler = Callable[[JobContext], dict[str, Any]] | Callable[[JobContext], Awaitable[dict[str, Any]]]


class Worker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        handlers: dict[str, Handler],
        *,
        worker_id: str | None = None,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.handlers = handlers
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._stopping = False

    def notify(self) -> None:
        """A job was enqueued in this process: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Work until `stop()`; never raises because of a job."""
        while not self._stopping:
            try:
                worked = await self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the worker
                log.exception("job worker iteration failed")
                worked = False
            if not worked:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> bool:
        """Claim and run one job; False when none was waiting."""
        job = await asyncio.to_thread(self._claim)
        if job is None:
            return False
        ctx = JobContext(
            job_id=job["id"],
            kind=job["kind"],
            bot_id=job["bot_id"],
            payload=job["payload"],
            attempt=job["attempts"],
            sessions=self.sessions,
            worker_id=self.worker_id,
            lease_s=self.lease_s,
            progress=dict(job["progress"] or {}),
        )
        handler = self.handlers[ctx.kind]
        heartbeat = asyncio.create_task(self._keep_lease(ctx))
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(ctx)
            else:
                result = await asyncio.to_thread(handler, ctx)
        except LeaseLost:
            log.warning("job %s was taken over by another worker", ctx.job_id)
            return True
        except RetryLater as exc:  # an outside service is down: no stack trace, a delay
            log.warning(
                "job %s (%s) will be retried in %.0f s: %s", ctx.job_id, ctx.kind, exc.delay_s, exc
            )
            status = await asyncio.to_thread(self._fail, ctx.job_id, str(exc), exc.delay_s)
            log.info("job %s is now %s", ctx.job_id, status)
            return True
        except Exception as exc:  # noqa: BLE001 - the job failed, the worker goes on
            log.exception("job %s (%s) failed", ctx.job_id, ctx.kind)
            status = await asyncio.to_thread(self._fail, ctx.job_id, f"{type(exc).__name__}: {exc}")
            log.info("job %s is now %s", ctx.job_id, status)
            return True
        finally:
            heartbeat.cancel()
        await asyncio.to_thread(self._finish, ctx.job_id, result)
        return True

    async def _keep_lease(self, ctx: JobContext) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)

            def extend() -> bool:
                with transaction(self.sessions) as session:
                    return queue.extend_lease(session, ctx.job_id, self.worker_id, self.lease_s)

            if not await asyncio.to_thread(extend):
                return

    def _claim(self) -> dict[str, Any] | None:
        with transaction(self.sessions) as session:
            job = queue.claim(session, self.worker_id, list(self.handlers), self.lease_s)
            if job is None:
                return None
            return {
                "id": job.id,
                "kind": job.kind,
                "bot_id": job.bot_id,
                "payload": job.payload,
                "attempts": job.attempts,
                "progress": job.progress,
            }

    def _finish(self, job_id: str, result: dict[str, Any]) -> None:
        with transaction(self.sessions) as session:
            if not queue.finish(session, job_id, self.worker_id, result):
                log.warning("job %s finished after its lease was lost; result discarded", job_id)

    def _fail(self, job_id: str, error: str, retry_in_s: float = 0.0) -> str | None:
        with transaction(self.sessions) as session:
            return queue.fail(session, job_id, self.worker_id, error, retry_in_s=retry_in_s)


class WorkerPool:
    """Several workers, one per lane of job kinds, so that one kind never waits behind another:
    an ingest job does not queue behind a backlog of shadow answers, and `shadow_lanes` shadow
    answers can run at once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        handlers: dict[str, Handler],
        *,
        lease_s: float,
        shadow_lanes: int = 1,
    ) -> None:
        lanes: list[list[str]] = []
        if "shadow" in handlers:
            lanes += [["shadow"]] * max(1, shadow_lanes)
        # Quick jobs a person waits on (the review queue, a visitor's handoff) share a lane.
        quick: list[str] = [k for k in ("review_feed", "handoff") if k in handlers]
        if quick:
            lanes.append(quick)
        rest = [kind for kind in handlers if kind not in ("shadow", *quick)]
        if rest:
            lanes.append(rest)
        self.workers = [
            Worker(sessions, {k: handlers[k] for k in lane}, lease_s=lease_s) for lane in lanes
        ]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def kinds(self) -> list[str]:
        return sorted({kind for w in self.workers for kind in w.handlers})

    def start(self) -> None:
        self._tasks = [asyncio.create_task(w.run()) for w in self.workers]

    async def run(self) -> None:
        """Run every lane until `stop()`."""
        self.start()
        await asyncio.gather(*self._tasks)

    def notify(self) -> None:
        for w in self.workers:
            w.notify()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    async def wait_stopped(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
