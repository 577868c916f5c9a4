"""Enqueue, claim, finish. Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL (many workers) and a
conditional UPDATE everywhere, so two workers can never run the same job at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from api.db import rowcount
from api.errors import NotFound
from api.ids import new_id
from api.models import Job
from api.unit_of_work import JOBS, changed


def _now() -> datetime:
    return datetime.now(UTC)


def job_row(
    kind: str, payload: dict[str, Any], *, bot_id: str | None = None, max_attempts: int = 3
) -> dict[str, Any]:
    """A complete `jobs` row, for inserting in bulk inside another transaction (e.g. with an exchange)."""
    now = _now()
    return {
        "id": new_id("job"),
        "kind": kind,
        "bot_id": bot_id,
        "payload": payload,
        "status": "queued",
        "progress": {},
        "result": None,
        "error": None,
        "attempts": 0,
        "max_attempts": max_attempts,
        "locked_by": None,
        "locked_until": None,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
    }


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    bot_id: str | None = None,
    max_attempts: int = 3,
) -> Job:
    """Add a job in the caller's transaction: it exists exactly when the caller's work commits."""
    job = Job(
        id=new_id("job"),
        kind=kind,
        bot_id=bot_id,
        payload=payload,
        status="queued",
        max_attempts=max_attempts,
        progress={},
    )
    session.add(job)
    session.flush()
    changed(session, JOBS)
    return job


def claim(session: Session, worker_id: str, kinds: list[str], lease_s: float) -> Job | None:
    """Take the oldest runnable job of `kinds`: queued, or running with an expired lease (its worker died)."""
    now = _now()
    # A queued job may wait out a retry delay (`fail(retry_in_s=…)`) in locked_until.
    waited = or_(Job.locked_until.is_(None), Job.locked_until <= now)
    runnable = or_(
        (Job.status == "queued") & waited, (Job.status == "running") & (Job.locked_until < now)
    )
    candidate = session.scalar(
        select(Job.id)
        .where(Job.kind.in_(kinds), runnable)
        .order_by(Job.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if candidate is None:
        return None
    taken = session.execute(
        update(Job)
        .where(Job.id == candidate, runnable)
        .values(
            status="running",
            locked_by=worker_id,
            locked_until=now + timedelta(seconds=lease_s),
            attempts=Job.attempts + 1,
            started_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(taken) != 1:  # another worker got it first
        return None
    return session.get(Job, candidate, populate_existing=True)


def extend_lease(
    session: Session,
    job_id: str,
    worker_id: str,
    lease_s: float,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Keep a long job ours; False when the lease was lost (the job must stop without finishing)."""
    values: dict[str, Any] = {"locked_until": _now() + timedelta(seconds=lease_s)}
    if progress is not None:
        values["progress"] = progress
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def finish(session: Session, job_id: str, worker_id: str, result: dict[str, Any]) -> bool:
    """Mark succeeded, only if this worker still holds the job (exactly-once completion)."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == "running")
        .values(
            status="succeeded", result=result, finished_at=_now(), locked_until=None, error=None
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(done) == 1


def fail(
    session: Session, job_id: str, worker_id: str, error: str, *, retry_in_s: float = 0.0
) -> str | None:
    """Record a failure: back to the queue while attempts remain (runnable again after
    `retry_in_s`), else failed. Returns the new status."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.locked_by != worker_id or job.status != "running":
        return None
    job.error = error
    job.locked_until = _now() + timedelta(seconds=retry_in_s) if retry_in_s > 0 else None
    if job.attempts >= job.max_attempts:
        job.status, job.finished_at = "failed", _now()
    else:
        job.status = "queued"
    return job.status


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job with id '{job_id}'.", param="job_id")
    return job


def list_jobs(
    session: Session, *, bot_id: str | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if bot_id is not None:
        query = query.where(Job.bot_id == bot_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return list(session.scalars(query))
