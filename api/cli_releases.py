"""`shadowdesk releases …`: create, list, attach / detach candidates, promote and roll back.

Works on the database directly. Adapters are loaded into the configured backend before anything
points at them (an OpenAI-compatible / vLLM upstream is shared, so a running server can use them at
once); a running server sees the moved alias within `SHADOWDESK_ACCESS_CACHE_TTL_S`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from api.db import transaction
from api.runtime import Runtime
from api.services import releases as service
from api.services.audit import CLI_ACTOR
from api.services.releases import AliasMove, ReleaseCreate, ReleaseView

releases_app = typer.Typer(help="Releases of a bot: candidates, promotion, rollback.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

T = TypeVar("T")
BotArg = Annotated[str, typer.Argument(help="Slug of the bot.")]
ReleaseArg = Annotated[str, typer.Argument(help="Release id, or its version (3 or v3).")]


def _with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run `work` against the database and the configured backend (nothing is loaded unless an
    adapter has to be)."""
    from api.backends import build_backend
    from api.cli import _sessions, _settings

    settings = _settings()
    sessions = _sessions(settings)

    async def run() -> T:
        backend = build_backend(settings)
        runtime = Runtime(settings=settings, engine=sessions.kw["bind"], sessions=sessions, backend=backend)
        try:
            return await work(runtime)
        finally:
            await backend.close()

    try:
        return asyncio.run(run())
    except Exception as exc:
        _fail(exc)
        raise


def _fail(exc: Exception) -> None:
    from api.cli import _fail as fail

    fail(exc)


def _show(view: ReleaseView) -> None:
    adapter = f", adapter {view.adapter}" if view.adapter else ""
    console.print(f"{view.id}  v{view.version}  {view.mode}{adapter}  [bold]{view.status}[/bold]")


def _show_move(move: AliasMove) -> None:
    verb = "promoted" if move.action == service.PROMOTE else "rolled back"
    console.print(f"{move.bot}: {verb}; live release {move.before or '-'} -> [bold]{move.after}[/bold]")


@releases_app.command("create")
def create(
    bot: BotArg,
    adapter: Annotated[str | None, typer.Option(help="Versioned adapter name, e.g. acme-support-v3.")] = None,
    adapter_path: Annotated[str | None, typer.Option(help="Where the backend loads the adapter from.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="Prompt frozen with the release.")] = None,
    mode: Annotated[str, typer.Option(help="rag | adapter | adapter+rag | retrieval | holding")] = "rag",
    holding_message: Annotated[str | None, typer.Option(help="What a holding release answers.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model (default: the live release's).")] = None,
    based_on: Annotated[str | None, typer.Option(help="Copy unset fields from this release.")] = None,
    notes: Annotated[str, typer.Option()] = "",
    candidate: Annotated[bool, typer.Option("--candidate", help="Attach as a candidate at once.")] = False,
) -> None:
    """Create a release with the bot's next version (releases never change)."""
    given = {"adapter": adapter, "adapter_path": adapter_path, "system_prompt": system_prompt,
             "holding_message": holding_message, "base_model": base_model, "based_on": based_on}
    try:
        data = ReleaseCreate(mode=mode, notes=notes, candidate=candidate,  # type: ignore[arg-type]
                             **{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        err.print(f"[red]Invalid release:[/red] {first['msg']} ({first['loc'][0]})")
        raise typer.Exit(2) from exc
    _show(_with_runtime(lambda rt: service.create(rt, bot, data, CLI_ACTOR)))


@releases_app.command("list")
def list_(bot: BotArg) -> None:
    """List a bot's releases, newest first."""
    from api.cli import _sessions, _settings

    try:
        with transaction(_sessions(_settings())) as session:
            views = service.list_releases(session, bot)
    except Exception as exc:
        _fail(exc)
        raise
    table = Table("version", "status", "mode", "adapter", "base model", "id", "created")
    for v in views:
        table.add_row(f"v{v.version}", v.status, v.mode, v.adapter or "-", v.base_model, v.id,
                      v.created_at.isoformat(timespec="seconds"))
    console.print(table)


@releases_app.command("attach")
def attach(bot: BotArg, release: ReleaseArg) -> None:
    """Attach a release as a candidate: it answers every (sampled) live question in the background."""
    _show(_with_runtime(lambda rt: service.attach(rt, bot, release, CLI_ACTOR)))


@releases_app.command("detach")
def detach(bot: BotArg, release: ReleaseArg) -> None:
    """Stop a candidate from shadowing."""
    _show(_with_runtime(lambda rt: service.detach(rt, bot, release, CLI_ACTOR)))


@releases_app.command("promote")
def promote(bot: BotArg, release: ReleaseArg) -> None:
    """Make a release live (move the alias); requests already running finish on the old one."""
    _show_move(_with_runtime(lambda rt: service.promote_release(rt, bot, release, CLI_ACTOR)))


@releases_app.command("rollback")
def rollback(bot: BotArg) -> None:
    """Move the alias back to the release that was live before the last promotion."""
    _show_move(_with_runtime(lambda rt: service.rollback_release(rt, bot, CLI_ACTOR)))
