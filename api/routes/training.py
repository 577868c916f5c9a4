"""Admin API for training runs: start one on a dataset, follow its progress and gate, cancel it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import AdminKey, SessionDep
from api.models import TrainingRun
from api.services.access.audit import key_actor
from api.services.bots.management import get_bot
from api.services.training_runs import runs as service

router = APIRouter(prefix="/api/bots/{slug}/training-runs", tags=["training"])


class RunOut(BaseModel):
    id: str
    name: str | None
    method: str
    status: str
    job_id: str | None
    config: dict[str, Any]
    snapshot: dict[str, Any]
    metrics: dict[str, Any]
    losses: list[float]
    gate: dict[str, Any] | None
    artifact_path: str | None
    release_id: str | None = None  # the candidate release a passing run registered
    error: str | None
    created_by: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: TrainingRun) -> RunOut:
        return cls.model_validate(run, from_attributes=True)


@router.post("", status_code=202)
def start_run(slug: str, data: service.RunCreate, key: AdminKey, session: SessionDep) -> RunOut:
    run = service.start_run(session, get_bot(session, slug), data, actor=key_actor(key))
    session.flush()
    return RunOut.of(run)


@router.get("")
def list_runs(slug: str, _: AdminKey, session: SessionDep) -> list[RunOut]:
    return [RunOut.of(r) for r in service.list_runs(session, get_bot(session, slug))]


@router.get("/{run_id}")
def get_run(slug: str, run_id: str, _: AdminKey, session: SessionDep) -> RunOut:
    return RunOut.of(service.get_run(session, get_bot(session, slug), run_id))


@router.post("/{run_id}/cancel")
def cancel_run(slug: str, run_id: str, key: AdminKey, session: SessionDep) -> RunOut:
    run = service.get_run(session, get_bot(session, slug), run_id)
    return RunOut.of(service.cancel_run(session, run, actor=key_actor(key)))
