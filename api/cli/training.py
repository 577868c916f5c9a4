"""`shadowdesk train`: a dataset trained into a versioned adapter, in the foreground."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.common import console, err, fail, load_settings, run
from api.services.access.audit import CLI_ACTOR

BotArg = Annotated[str, typer.Argument(help="The bot's slug.")]


def train_command(
    bot: BotArg,
    dataset: Annotated[
        str, typer.Option(help="The dataset to train on (a new snapshot of its reviewed rows).")
    ] = "learning",
    config: Annotated[
        Path | None, typer.Option(help="A YAML file of training settings.", exists=True)
    ] = None,
    method: Annotated[str | None, typer.Option(help="qlora, lora or full.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the rows.")] = None,
    corrections: Annotated[
        bool, typer.Option(help="Add the reviewed answers from shadow review first.")
    ] = True,
    gate_rows: Annotated[
        int, typer.Option(help="Held-out rows the evaluation gate answers (0: no gate).")
    ] = 20,
) -> None:
    """Train an adapter in the foreground, the way a queued run does: the reviewed corrections are
    added, the dataset is snapshotted, the adapter is trained into `<bot>-v<N>` in the data dir,
    the evaluation gate compares it with the live release, and a passing adapter becomes a
    candidate release. An interrupted run resumes from its last checkpoint when run again."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.training_runs.runs import RunCreate, execute_run, start_run
    from training.config import TrainConfig, load_config

    try:
        settings_ = load_config(config) if config else TrainConfig()
        overrides = {
            k: v
            for k, v in {"method": method, "max_steps": max_steps, "epochs": epochs}.items()
            if v is not None
        }
        train_config = TrainConfig.model_validate(
            {**settings_.model_dump(), **overrides, "torch_threads": load_settings().torch_threads}
        )
        request = RunCreate(
            dataset=dataset,
            include_corrections=corrections,
            config=train_config,
            gate_rows=gate_rows,
        )
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            fail(exc)
        err.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc

    async def work(runtime: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        with transaction(runtime.sessions) as session:
            run_id = start_run(
                session, get_bot(session, bot), request, actor=CLI_ACTOR, queue=False
            ).id
        err.print(f"run {run_id}: training ({train_config.method}) on '{dataset}'", soft_wrap=True)
        with Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("train", total=None, figures="loading the model…")

            def report(p: dict[str, Any]) -> None:
                progress.update(
                    task,
                    completed=p["step"],
                    total=p["total_steps"],
                    figures=f"loss {p['loss']:.3f} · {p['tokens_per_s']:.0f} tokens/s",
                )

            outcome = await asyncio.to_thread(execute_run, runtime, run_id, report)
        with transaction(runtime.sessions) as session:
            from api.models import TrainingRun

            run_row = session.get_one(TrainingRun, run_id)
            view = {
                "status": run_row.status,
                "error": run_row.error,
                "metrics": dict(run_row.metrics or {}),
                "losses": list(run_row.losses or []),
                "gate": run_row.gate,
                "artifact_path": run_row.artifact_path,
            }
        return outcome, view

    outcome, view = run(work)
    if view["status"] != "succeeded":
        err.print(f"[red]Error:[/red] the run {view['status']}: {view['error']}", soft_wrap=True)
        raise typer.Exit(1)
    m, losses = view["metrics"], view["losses"]
    console.print(
        f"{outcome['name']}: {m.get('steps')} steps, loss {losses[0]:.3f} → "
        f"{m.get('final_loss', losses[-1]):.3f}, {m.get('tokens_per_s', 0):.0f} tokens/s, "
        f"{m.get('artifact_bytes', 0) / 1e6:.1f} MB at {view['artifact_path']}",
        soft_wrap=True,
    )
    gate = view["gate"]
    if gate is None:
        console.print("gate: not run (--gate-rows 0)")
    elif gate.get("skipped"):
        console.print(f"gate: not run ({gate['skipped']})", soft_wrap=True)
    else:
        verdict = "passed" if gate["passed"] else "refused"
        console.print(f"gate {verdict} against {gate['against']} on {gate['rows']} held-out rows:")
        for reason in gate["reasons"]:
            console.print(f"  {reason}", soft_wrap=True)
    if outcome.get("release_id"):
        console.print(
            f"candidate release {outcome['release_id']} ({outcome['name']}) is shadowing",
            soft_wrap=True,
        )
