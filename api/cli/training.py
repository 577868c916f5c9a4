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
    dataset: Annotated[str, typer.Option(help="The dataset to train on (its current snapshot).")],
    config: Annotated[
        Path | None, typer.Option(help="A YAML file of training settings.", exists=True)
    ] = None,
    method: Annotated[str | None, typer.Option(help="qlora, lora or full.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the rows.")] = None,
) -> None:
    """Train an adapter on a dataset, in the foreground, into `<bot>-v<N>` in the data dir (an
    interrupted run resumes from its last checkpoint when run again)."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.training_runs.local import (
        adapter_dir,
        base_model_folder,
        prepare_rows,
        train_adapter,
    )
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
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            fail(exc)
        err.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc

    async def work(runtime: Any) -> tuple[Any, dict[str, Any]]:
        with transaction(runtime.sessions) as session:
            bot_row = get_bot(session, bot)
            rows, source = prepare_rows(
                session, runtime.settings, get_dataset(session, bot_row, dataset), actor=CLI_ACTOR
            )
            name, folder = adapter_dir(runtime.settings, bot_row)
        base = base_model_folder(runtime.settings)
        err.print(
            f"training {name} ({train_config.method}) on {len(rows)} rows of {dataset} "
            f"v{source['snapshot_version']}",
            soft_wrap=True,
        )
        with Progress(
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("train", total=None, figures="loading the model…")

            def report(p: Any) -> None:
                progress.update(
                    task,
                    completed=p.step,
                    total=p.total_steps,
                    figures=f"loss {p.loss:.3f} · {p.tokens_per_s:.0f} tokens/s",
                )

            return await asyncio.to_thread(
                train_adapter, rows, base, name, folder, train_config, source, on_progress=report
            )

    result, manifest = run(work)
    console.print(
        f"{manifest['name']}: {result.steps} steps, loss {result.losses[0]:.3f} → "
        f"{result.final_loss:.3f}, {result.tokens_per_s:.0f} tokens/s, "
        f"{result.artifact_bytes / 1e6:.1f} MB at {result.output_dir}",
        soft_wrap=True,
    )
