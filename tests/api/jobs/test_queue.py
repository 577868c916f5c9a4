"""The durable job queue: claims are exclusive, leases expire, completion is exactly once, and one
kind of job never waits behind another."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.jobs import queue
from api.jobs.worker import JobContext, WorkerPool
from api.migrate import upgrade
from api.models import Job
from api.settings import Settings
from tests.support.databases import open_sessions


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    upgrade(settings)
    with open_sessions(settings) as factory:
        yield factory


def test_claims_are_exclusive_and_leases_expire(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        job_id = queue.enqueue(session, "ingest", {"n": 1}).id
    with transaction(sessions) as session:
        job = queue.claim(session, "w1", ["ingest"], lease_s=60)
        assert job is not None and job.id == job_id and job.attempts == 1
    with transaction(sessions) as session:
        assert queue.claim(session, "w2", ["ingest"], lease_s=60) is None  # held by w1
        assert queue.claim(session, "w2", ["shadow"], lease_s=60) is None  # other kinds only
    with transaction(sessions) as session:  # w1 dies: its lease runs out
        session.execute(update(Job).values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    with transaction(sessions) as session:
        again = queue.claim(session, "w2", ["ingest"], lease_s=60)
        assert again is not None and again.attempts == 2
    with transaction(sessions) as session:
        assert not queue.finish(
            session, job_id, "w1", {"late": True}
        )  # the dead worker's result is dropped
        assert queue.finish(session, job_id, "w2", {"ok": True})
    with transaction(sessions) as session:
        row = queue.get_job(session, job_id)
        assert row.status == "succeeded" and row.result == {"ok": True}


def test_failures_retry_then_fail(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        job_id = queue.enqueue(session, "ingest", {}, max_attempts=2).id
    for expected in ("queued", "failed"):
        with transaction(sessions) as session:
            assert queue.claim(session, "w", ["ingest"], lease_s=60) is not None
        with transaction(sessions) as session:
            assert queue.fail(session, job_id, "w", "boom") == expected
    with transaction(sessions) as session:
        row = queue.get_job(session, job_id)
        assert row.status == "failed" and row.error == "boom" and row.attempts == 2


def test_an_ingest_job_does_not_wait_behind_a_stuck_shadow_job(
    sessions: sessionmaker[Session],
) -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def shadow(ctx: JobContext) -> dict[str, Any]:
        order.append("shadow started")
        await release.wait()
        return {}

    def ingest(ctx: JobContext) -> dict[str, Any]:
        order.append("ingest done")
        return {"files": 1}

    async def main() -> None:
        pool = WorkerPool(sessions, {"shadow": shadow, "ingest": ingest}, lease_s=30)
        with transaction(sessions) as session:
            queue.enqueue(session, "shadow", {})
            ingest_id = queue.enqueue(session, "ingest", {}).id
        pool.start()
        pool.notify()
        for _ in range(200):
            await asyncio.sleep(0.05)
            with transaction(sessions) as session:
                if queue.get_job(session, ingest_id).status == "succeeded":
                    break
        assert "ingest done" in order and "shadow started" in order
        release.set()
        pool.stop()
        await pool.wait_stopped(10)

    asyncio.run(main())
