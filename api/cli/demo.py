"""`shadowdesk demo-loop`: the whole learning loop on this machine, narrated, in a few minutes."""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import console, err, load_settings


def demo_loop(
    url: Annotated[
        str | None,
        typer.Option(
            help="A running Shadowdesk server (with its worker) on this machine; without it, one "
            "is started in a fresh data dir."
        ),
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(help="An admin API key of --url's server.", envvar="ADMIN_KEY")
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 30,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the started server keeps its data (default: a temporary dir)."),
    ] = None,
) -> None:
    """Run the learning loop end to end through the HTTP API: a bot with a manual, clients chatting,
    a shadowing candidate, staff corrections, a training run, the evaluation gate, a promotion, the
    live bot answering with the new adapter, and the gate refusing a damaged adapter."""
    import httpx

    from api.demo_loop import LearningLoop, LoopError, LoopSettings

    def say(line: str) -> None:
        console.print(line, soft_wrap=True, highlight=False)

    with _server(url, admin_key, data_dir) as (base_url, key):
        with httpx.Client(base_url=base_url, timeout=600) as client:
            loop = LearningLoop(client, key, settings=LoopSettings(steps=steps), say=say)
            started = time.perf_counter()
            try:
                report = loop.run()
            except LoopError as exc:
                err.print(f"[red]The loop stopped:[/red] {exc}", soft_wrap=True)
                raise typer.Exit(1) from exc
    gate = report.run.get("gate") or {}
    say(
        f"Done in {time.perf_counter() - started:.0f} s: {report.corrected} corrections → "
        f"{report.run.get('name')}, gate similarity live {gate['live']['similarity']:.3f} vs "
        f"adapter {gate['candidate']['similarity']:.3f}; now live: {report.promoted.get('after')}"
    )


@contextmanager
def _server(
    url: str | None, admin_key: str | None, data_dir: Path | None
) -> Iterator[tuple[str, str]]:
    if url is not None:
        if not admin_key:
            err.print("[red]Error:[/red] --url needs --admin-key (or ADMIN_KEY).")
            raise typer.Exit(2)
        yield url.rstrip("/"), admin_key
        return
    from pydantic import SecretStr

    from api.app import create_app
    from api.threaded_server import serve_app

    key = "sd-demo-" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="shadowdesk-demo-") as scratch:
        folder = data_dir or Path(scratch)
        settings = load_settings().model_copy(
            update={
                "data_dir": folder,
                "admin_key": SecretStr(key),
                "create_demo_bot": False,
                "database_url": None,
                "chroma_url": None,
            }
        )
        err.print(f"starting a Shadowdesk server in {folder} (loading the model)…")
        app = create_app(settings)
        with serve_app(
            app, lifespan="on", startup_timeout=300, timeout_graceful_shutdown=30
        ) as base:
            yield base, key
