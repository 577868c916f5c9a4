"""Training runs as background jobs: queued from the API, trained by a worker with progress
(step, loss, tokens/s, ETA) on the job and the run, cancellable between steps, resumed from the
last checkpoint after a crash, and judged by the evaluation gate against the live release on the
snapshot's validation rows (held-out generated rows and corrections). A passing adapter is
registered as a candidate release and starts shadowing; each process loads it on first use."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import ApiError, Conflict, NotFound
from api.ids import new_id
from api.jobs.queue import enqueue
from api.models import Bot, Dataset, Release, TrainingRun
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.bots.policy import BotPolicy, policy_of
from api.services.datasets.catalog import ensure_dataset, get_dataset
from api.services.datasets.corrections import add_corrections
from api.services.datasets.snapshots import get_snapshot, read_snapshot
from api.services.releases.lifecycle import ReleaseCreate, create_release
from api.services.training_runs.local import (
    MANIFEST,
    adapter_dir,
    base_model_folder,
    check_adapter_folder,
    import_adapter,
    prepare_rows,
    train_adapter,
)
from training.config import TrainConfig
from training.rows import Row
from training.trainer import Cancelled, Progress

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running", "cancelling")
#: Keys of a run's stored config that are not training settings.
RUN_OPTIONS = ("gate_rows", "include_corrections", "adapter_path")
#: The dataset a run trains on when none is named: created on first use.
DEFAULT_DATASET = "learning"


class RunCreate(BaseModel):
    dataset: str = Field(
        DEFAULT_DATASET,
        min_length=1,
        max_length=100,
        description="The dataset to train on: its reviewed rows, as a new snapshot. The default "
        f"'{DEFAULT_DATASET}' dataset is created if missing.",
    )
    include_corrections: bool = Field(
        True,
        description="First add the reviewed answers from shadow review not yet in the dataset "
        "(approved and corrected answers, and 'should refuse' rejections as refusal rows).",
    )
    config: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
    gate_rows: int = Field(
        20, ge=0, le=500, description="Validation rows the gate answers (0: no gate)."
    )
    adapter_path: str | None = Field(
        None,
        max_length=4096,
        description="Judge a LoRA adapter trained elsewhere (a peft folder on this server) instead "
        "of training one: it is copied under the bot's next versioned name, gated against the "
        "live release on the snapshot's validation rows, and registered if it passes.",
    )


def start_run(
    session: Session, bot: Bot, data: RunCreate, *, actor: AuditActor, queue: bool = True
) -> TrainingRun:
    """Record a training run (one at a time per bot: they share the adapter numbering) and queue
    its job; with `queue=False` the caller runs it (`execute_run`, the CLI in the foreground)."""
    if data.adapter_path is not None:
        check_adapter_folder(Path(data.adapter_path))
    if data.dataset == DEFAULT_DATASET:
        dataset = ensure_dataset(session, bot, data.dataset, actor=actor)
    else:
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
        method="imported" if data.adapter_path else data.config.method,
        config={
            **data.config.model_dump(mode="json"),
            "gate_rows": data.gate_rows,
            "include_corrections": data.include_corrections,
            "adapter_path": data.adapter_path,
        },
        status="queued",
        created_by=actor.label,
        snapshot={},
        metrics={},
        losses=[],
    )
    session.add(run)
    session.flush()
    if queue:
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
    return execute_run(runtime, ctx.payload["run_id"], lambda figures: ctx.report(**figures))


def execute_run(
    runtime: Any, run_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run a recorded training run to its end: add the corrections, snapshot, train (resuming a
    checkpoint), gate against the live release, and register a passing adapter as a candidate.
    `on_progress` receives {step, total_steps, loss, tokens_per_s, eta_s} after each step."""
    try:
        prepared = _prepare(runtime, run_id)
    except ApiError as exc:  # nothing to train on, a bad dataset: the run says why, once
        _update(runtime, run_id, status="failed", error=exc.message, finished_at=datetime.now(UTC))
        return {"failed": exc.message}
    if prepared is None:
        return {"skipped": "cancelled or deleted"}
    return _train_and_judge(runtime, run_id, prepared, on_progress)


@dataclass
class _Prepared:
    """What a run trains on and against, read in one transaction."""

    bot: Bot
    config: TrainConfig
    gate_rows: int
    run_config: dict[str, Any]
    rows: list[Row]
    source: dict[str, Any]
    live: dict[str, Any]
    validation: list[Row]
    name: str
    folder: Path


def _prepare(runtime: Any, run_id: str) -> _Prepared | None:
    """Add the corrections, snapshot the dataset and name the adapter (one transaction)."""
    with transaction(runtime.sessions) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status == "cancelled":
            return None
        bot = session.get_one(Bot, run.bot_id)
        dataset = session.get(Dataset, run.dataset_id) if run.dataset_id else None
        if dataset is None:
            raise NotFound("The run's dataset was deleted.", param="dataset")
        config = TrainConfig.model_validate(
            {k: v for k, v in run.config.items() if k not in RUN_OPTIONS}
        )
        gate_rows = int(run.config.get("gate_rows", 20))
        run_config = dict(run.config)
        actor = audit.NamedActor(None, run.created_by or "system")
        corrections = None
        if run.config.get("include_corrections", True) and not run.snapshot:
            corrections = add_corrections(session, bot, dataset, actor=actor)
        rows, source = prepare_rows(session, runtime.settings, dataset, actor=actor)
        if corrections is not None:
            source["corrections_added"] = corrections
        live = _live_side(bot)
        snapshot = get_snapshot(session, dataset, source["snapshot_version"])
        validation = [row for split, row in read_snapshot(snapshot) if split == "validation"]
        name, folder = (run.name, None) if run.name else adapter_dir(runtime.settings, bot)
        if folder is None:
            folder = runtime.settings.data_dir / "adapters" / name
        run.name, run.status, run.snapshot = name, "running", source
        session.expunge(bot)
        return _Prepared(
            bot, config, gate_rows, run_config, rows, source, live, validation, name, folder
        )


def _train_and_judge(
    runtime: Any,
    run_id: str,
    prepared: _Prepared,
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    bot, config, gate_rows = prepared.bot, prepared.config, prepared.gate_rows
    run_config, rows, source = prepared.run_config, prepared.rows, prepared.source
    live, validation = prepared.live, prepared.validation
    name, folder = prepared.name, prepared.folder
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
        if on_progress is not None:
            on_progress(figures)  # a job's renews its lease too
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

    imported = run_config.get("adapter_path")
    try:
        if imported:
            result, manifest = import_adapter(Path(imported), base, name, folder, source)
        else:
            result, manifest = train_adapter(
                rows,
                base,
                name,
                folder,
                config,
                source,
                on_progress=report,
                should_stop=should_stop,
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
        try:
            gate = judge(
                base, live, result.output_dir, validation[:gate_rows], policy_of(bot.policy), bot
            )
        except Exception as exc:  # the adapter stays; the run says why it was not judged
            log.exception("the evaluation gate of run %s failed", run_id)
            gate = {"passed": None, "error": f"{type(exc).__name__}: {exc}"}
    _record_gate(result.output_dir.parent, gate)
    release_id = None
    # A full fine-tune is a model of its own, not an adapter on the served base: never auto-attached.
    if (
        gate
        and gate.get("passed")
        and config.method != "full"
        and policy_of(bot.policy).gate_auto_candidate
    ):
        release_id = _register_candidate(runtime, run_id, name, result.output_dir, source, live)
    _update(
        runtime,
        run_id,
        status="succeeded",
        metrics={**manifest["metrics"]},
        losses=result.losses,
        gate=gate,
        artifact_path=str(result.output_dir),
        release_id=release_id,
        finished_at=datetime.now(UTC),
    )
    return {
        "name": name,
        "steps": result.steps if not imported else 0,
        "gate_passed": gate.get("passed") if gate else None,
        "release_id": release_id,
    }


def judge(
    base: Path,
    live: dict[str, Any],
    adapter: Path,
    held_out: list[Row],
    policy: BotPolicy,
    bot: Bot,
) -> dict[str, Any]:
    """The evaluation gate: the live side (`_live_side`) and the adapter answer the held-out rows;
    the bot's pass rule decides. Returns the stored report (summaries, reasons, per question)."""
    from serving.knowledge.embedders import load_embedder
    from training.evaluation import GateRule, LocalAnswerer, evaluate

    report = evaluate(
        held_out,
        LocalAnswerer(base, live["adapter_path"], max_new_tokens=96),
        LocalAnswerer(base, adapter, max_new_tokens=96),
        load_embedder(),
        refusal=bot.refusal_message or None,
        rule=GateRule(
            min_gain=policy.gate_min_gain, refusal_tolerance=policy.gate_refusal_tolerance
        ),
    )
    return {**report.to_dict(), "against": live["label"], "rows": len(held_out)}


def _live_side(bot: Bot) -> dict[str, Any]:
    """What the gate compares with: the live release's adapter, or the base model when the live
    release has none (a RAG release answers with the base model; retrieval and holding ones with
    no model at all, so the base model is the fair stand-in)."""
    live: Release | None = bot.live_release
    path = Path(live.adapter_path) if live is not None and live.adapter_path else None
    if live is None:
        label = "base model (no live release)"
    elif path is not None:
        label = f"live release v{live.version} ({live.adapter})"
    else:
        label = f"live release v{live.version} (base model, {live.mode})"
    return {
        "adapter_path": path,
        "label": label,
        "release_id": live.id if live is not None else None,
        "mode": live.mode if live is not None else None,
    }


def _record_gate(folder: Path, gate: dict[str, Any] | None) -> None:
    """Add the gate's verdict to the adapter's manifest (the figures travel with the weights)."""
    manifest_file = folder / MANIFEST
    if gate is None or not manifest_file.is_file():
        return
    manifest = json.loads(manifest_file.read_text())
    manifest["gate"] = {k: v for k, v in gate.items() if k != "questions"}
    manifest_file.write_text(json.dumps(manifest, indent=2))


def _register_candidate(
    runtime: Any,
    run_id: str,
    name: str,
    adapter: Path,
    source: dict[str, Any],
    live: dict[str, Any],
) -> str:
    """A release for the passing adapter, attached as a candidate: it shadows live traffic at once
    (each process loads the adapter on first use). It keeps the live release's prompt and, for a
    grounded bot, its sources: the adapter was trained on prompts shaped that way."""
    mode = "adapter" if live["mode"] == "adapter" else "adapter+rag"
    with transaction(runtime.sessions) as session:
        run = session.get_one(TrainingRun, run_id)
        bot = session.get_one(Bot, run.bot_id)
        view = create_release(
            session,
            bot.slug,
            ReleaseCreate(
                based_on=live["release_id"],
                adapter=name,
                adapter_path=str(adapter),
                mode=mode,
                notes=f"Trained by run {run_id} on '{source['dataset']}' snapshot "
                f"v{source['snapshot_version']}; passed the evaluation gate against "
                f"{live['label']}.",
                candidate=True,
            ),
            default_base_model=runtime.settings.model,
            actor=audit.NamedActor(None, f"training run {run_id}"),
        )
        return view.id
