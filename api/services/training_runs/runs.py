"""Training runs as background jobs: queued from the API, trained by a worker with progress
(step, loss, tokens/s, ETA) on the job and the run, cancellable between steps, resumed from the
last checkpoint after a crash, and judged by the evaluation gate on the snapshot's validation rows
against the base model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import Conflict, NotFound
from api.ids import new_id
from api.jobs.queue import enqueue
from api.models import Bot, Dataset, TrainingRun
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.datasets.catalog import get_dataset
from api.services.datasets.snapshots import get_snapshot, read_snapshot
from api.services.training_runs.local import (
    adapter_dir,
    base_model_folder,
    prepare_rows,
    train_adapter,
)
from training.config import TrainConfig
from training.trainer import Cancelled, Progress

ACTIVE = ("queued", "running", "cancelling")


class RunCreate(BaseModel):
    dataset: str = Field(description="The dataset to train on (its current snapshot).")
    config: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
    gate_rows: int = Field(
        20, ge=0, le=500, description="Validation rows the gate answers (0: no gate)."
    )


def start_run(session: Session, bot: Bot, data: RunCreate, *, actor: AuditActor) -> TrainingRun:
    """Queue a training run (one at a time per bot: they share the adapter numbering)."""
    dataset = get_dataset(session, bot, data.dataset)
    busy = session.scalar(
        select(TrainingRun.id).where(TrainingRun.bot_id == bot.id, TrainingRun.status.in_(ACTIVE))
    )
    if busy is not None:
        raise Conflict(f"Run {busy} of bot '{bot.slug}' is still going.", code="run_in_progress")
    run = TrainingRun(
        id=new_id("run"),
        bot_id=bot.id,
        dataset_id=dataset.id,
        method=data.config.method,
        config={**data.config.model_dump(mode="json"), "gate_rows": data.gate_rows},
        status="queued",
        created_by=actor.label,
        snapshot={},
        metrics={},
        losses=[],
    )
    session.add(run)
    session.flush()
    job = enqueue(session, "training", {"run_id": run.id}, bot_id=bot.id, max_attempts=3)
    run.job_id = job.id
    audit.record(
        session,
        actor,
        "training.start",
        entity="training_run",
        entity_id=run.id,
        bot_id=bot.id,
        after={"dataset": dataset.name, "method": run.method},
    )
    return run


def get_run(session: Session, bot: Bot, run_id: str) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None or run.bot_id != bot.id:
        raise NotFound(f"No training run '{run_id}' for bot '{bot.slug}'.", param="run_id")
    return run


def list_runs(session: Session, bot: Bot) -> list[TrainingRun]:
    return list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.bot_id == bot.id)
            .order_by(TrainingRun.created_at.desc())
        )
    )


def cancel_run(session: Session, run: TrainingRun, *, actor: AuditActor) -> TrainingRun:
    """Ask a run to stop: a queued one stops at once, a running one after its current step."""
    if run.status not in ACTIVE:
        raise Conflict(f"Run {run.id} has already ended ({run.status}).", code="run_ended")
    run.status = "cancelling" if run.status == "running" else "cancelled"
    audit.record(
        session,
        actor,
        "training.cancel",
        entity="training_run",
        entity_id=run.id,
        bot_id=run.bot_id,
    )
    return run


def _update(runtime: Any, run_id: str, **fields: Any) -> str:
    with transaction(runtime.sessions) as session:
        run = session.get_one(TrainingRun, run_id)
        for name, value in fields.items():
            setattr(run, name, value)
        return run.status


def run_training_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `training`, payload {"run_id"}: train, then gate on the validation rows."""
    run_id: str = ctx.payload["run_id"]
    with transaction(runtime.sessions) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status == "cancelled":
            return {"skipped": "cancelled or deleted"}
        bot = session.get_one(Bot, run.bot_id)
        dataset = session.get(Dataset, run.dataset_id) if run.dataset_id else None
        if dataset is None:
            run.status, run.error = "failed", "its dataset was deleted"
            return {"failed": run.error}
        config = TrainConfig.model_validate(
            {k: v for k, v in run.config.items() if k != "gate_rows"}
        )
        gate_rows = int(run.config.get("gate_rows", 20))
        actor = audit.NamedActor(None, run.created_by or "system")
        rows, source = prepare_rows(session, runtime.settings, dataset, actor=actor)
        snapshot = get_snapshot(session, dataset, source["snapshot_version"])
        validation = [row for split, row in read_snapshot(snapshot) if split == "validation"]
        name, folder = (run.name, None) if run.name else adapter_dir(runtime.settings, bot)
        if folder is None:
            folder = runtime.settings.data_dir / "adapters" / name
        run.name, run.status, run.snapshot = name, "running", source
    base = base_model_folder(runtime.settings)
    if runtime.settings.torch_threads and config.torch_threads is None:
        config = config.model_copy(update={"torch_threads": runtime.settings.torch_threads})
    last_report = 0.0

    def report(p: Progress) -> None:
        nonlocal last_report
        figures = {
            "step": p.step,
            "total_steps": p.total_steps,
            "loss": round(p.loss, 4),
            "tokens_per_s": p.tokens_per_s,
            "eta_s": p.eta_s,
        }
        ctx.report(**figures)  # renews the job's lease too
        now = datetime.now(UTC).timestamp()
        if now - last_report >= 2 or p.step == p.total_steps:
            last_report = now
            with transaction(runtime.sessions) as session:
                current = session.get_one(TrainingRun, run_id)
                current.metrics = {**(current.metrics or {}), **figures}
                current.losses = [*(current.losses or []), round(p.loss, 4)]

    def should_stop() -> bool:
        with transaction(runtime.sessions) as session:
            return session.get_one(TrainingRun, run_id).status == "cancelling"

    try:
        result, manifest = train_adapter(
            rows, base, name, folder, config, source, on_progress=report, should_stop=should_stop
        )
    except Cancelled as exc:
        _update(runtime, run_id, status="cancelled", error=str(exc), finished_at=datetime.now(UTC))
        return {"cancelled": str(exc)}
    except Exception as exc:
        _update(
            runtime,
            run_id,
            status="failed",
            error=f"{type(exc).__name__}: {exc}",
            finished_at=datetime.now(UTC),
        )
        raise
    gate: dict[str, Any] | None = None
    if gate_rows and not validation:
        # Said on the run, not silently absent: a gate needs held-out rows.
        gate = {"passed": None, "skipped": "the snapshot has no validation rows"}
    elif gate_rows:
        from serving.knowledge.embedders import load_embedder
        from training.evaluation import LocalAnswerer, evaluate

        held_out = validation[:gate_rows]
        report_ = evaluate(
            held_out,
            LocalAnswerer(base, max_new_tokens=96),
            LocalAnswerer(base, result.output_dir, max_new_tokens=96),
            load_embedder(),
            refusal=bot.refusal_message or None,
        )
        gate = {**report_.to_dict(), "against": "base model", "rows": len(held_out)}
    _update(
        runtime,
        run_id,
        status="succeeded",
        metrics={**manifest["metrics"]},
        losses=result.losses,
        gate=gate,
        artifact_path=str(result.output_dir),
        finished_at=datetime.now(UTC),
    )
    return {
        "name": name,
        "steps": result.steps,
        "gate_passed": gate.get("passed") if gate else None,
    }
