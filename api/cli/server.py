"""`shadowdesk serve`, `shadowdesk worker` and `shadowdesk db …`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from api.cli.common import console, err, load_settings

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request line.")] = True,
    backend: Annotated[
        str | None,
        typer.Option(
            help="transformers (in-process), vllm (a vLLM server: local and supervised, or "
            "--vllm-url) or openai (SHADOWDESK_UPSTREAM_URL). Default: SHADOWDESK_BACKEND."
        ),
    ] = None,
    vllm_url: Annotated[
        str | None,
        typer.Option(
            help="With --backend vllm: a running vLLM server (…/v1) instead of a local one."
        ),
    ] = None,
) -> None:
    """Start the API server (loads the model, upgrades the embedded database, creates the demo bot).

    With --backend vllm and no --vllm-url, a local vLLM server is started from the environment
    `make vllm` installs, health-checked and restarted if it dies (log: DATA_DIR/logs/vllm.log)."""
    import uvicorn

    from api.app import create_app
    from api.runtime import default_vllm_python

    settings = load_settings(backend=backend, vllm_url=vllm_url)
    if settings.backend == "vllm" and not settings.vllm_url:
        python = settings.vllm_python or default_vllm_python()
        if not python.is_file():
            err.print(
                f"[red]No vLLM environment at {python}.[/red] Install vLLM's CPU build with "
                "`make vllm` (about 3.5 GB, 2 minutes), set SHADOWDESK_VLLM_PYTHON to the Python of "
                "an environment that has vLLM, or pass --vllm-url of a running vLLM server.",
                soft_wrap=True,
            )
            raise typer.Exit(2)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
        # X-Forwarded-For is believed only from the configured proxies (none by default, not even
        # loopback): otherwise any local client could pose as anyone to the login brake.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )


def worker(
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only these job kinds (repeatable), e.g. shadow."),
    ] = None,
) -> None:
    """Run background jobs (shadow answers, ingestion, re-embedding, …) in this process, claiming them
    from the shared database; run as many as you like next to servers started with
    SHADOWDESK_RUN_WORKER=false. Starts like the server: the backend, with the adapters of live and
    candidate releases loaded."""
    import logging
    import signal

    from api.runtime import build_runtime

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = build_runtime(load_settings())

    async def main() -> None:
        try:
            await runtime.start(worker=True, worker_kinds=kinds)
        except ValueError as exc:  # unknown job kinds
            err.print(f"[red]{exc}[/red]")
            await runtime.stop()
            raise typer.Exit(2) from exc
        assert runtime.worker is not None
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        err.print(f"worker running: {', '.join(runtime.worker.kinds)}")
        try:
            await stopped.wait()
        finally:
            await runtime.stop()

    asyncio.run(main())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (production databases are never upgraded implicitly)."""
    from api.migrate import current_heads, upgrade

    settings = load_settings()
    upgrade(settings, revision)
    at, heads = current_heads(settings)
    console.print(
        f"database at {', '.join(sorted(at)) or 'base'} (code head: {', '.join(sorted(heads))})"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the code's."""
    from api.migrate import current_heads

    at, heads = current_heads(load_settings())
    console.print(
        f"database at {', '.join(sorted(at)) or 'base'} (code head: {', '.join(sorted(heads))})"
    )
    if at != heads:
        raise typer.Exit(1)
