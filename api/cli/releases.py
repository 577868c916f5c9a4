"""`shadowdesk releases …`: create, list, attach / detach candidates, promote and roll back.

Works on the database directly. Adapters are loaded into the configured backend before anything
points at them (an OpenAI-compatible / vLLM upstream is shared, so a running server can use them at
once); a running server sees the moved alias within `SHADOWDESK_ACCESS_CACHE_TTL_S`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from api.cli.common import IdTable, console, invalid, run, session_scope
from api.services.access.audit import CLI_ACTOR
from api.services.releases import lifecycle as service
from api.services.releases.lifecycle import AliasMove, ReleaseCreate, ReleaseView

releases_app = typer.Typer(
    help="Releases of a bot: candidates, promotion, rollback.", no_args_is_help=True
)

BotArg = Annotated[str, typer.Argument(help="Slug of the bot.")]
ReleaseArg = Annotated[str, typer.Argument(help="Release id, or its version (3 or v3).")]


def _show(view: ReleaseView) -> None:
    adapter = f", adapter {view.adapter}" if view.adapter else ""
    console.print(f"{view.id}  v{view.version}  {view.mode}{adapter}  [bold]{view.status}[/bold]")


def _show_move(move: AliasMove) -> None:
    verb = "promoted" if move.action == service.PROMOTE else "rolled back"
    console.print(
        f"{move.bot}: {verb}; live release {move.before or '-'} -> [bold]{move.after}[/bold]"
        + (f"; candidates: {', '.join(move.candidates)}" if move.candidates else ""),
        soft_wrap=True,
    )
    if move.decision is not None:
        forced = " (forced, recorded in the audit log)" if move.forced else ""
        console.print(
            f"review decision: {move.decision} — {move.decision_reason}{forced}", soft_wrap=True
        )


@releases_app.command("create")
def create(
    bot: BotArg,
    adapter: Annotated[
        str | None, typer.Option(help="Versioned adapter name, e.g. acme-support-v3.")
    ] = None,
    adapter_path: Annotated[
        str | None, typer.Option(help="Where the backend loads the adapter from.")
    ] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="Prompt frozen with the release.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="rag | adapter | adapter+rag | retrieval | holding")
    ] = "rag",
    holding_message: Annotated[
        str | None, typer.Option(help="What a holding release answers.")
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="Base model (default: the live release's).")
    ] = None,
    based_on: Annotated[
        str | None, typer.Option(help="Copy unset fields from this release.")
    ] = None,
    notes: Annotated[str, typer.Option()] = "",
    candidate: Annotated[
        bool, typer.Option("--candidate", help="Attach as a candidate at once.")
    ] = False,
) -> None:
    """Create a release with the bot's next version (releases never change)."""
    given = {
        "adapter": adapter,
        "adapter_path": adapter_path,
        "system_prompt": system_prompt,
        "holding_message": holding_message,
        "base_model": base_model,
        "based_on": based_on,
    }
    try:
        data = ReleaseCreate.model_validate(
            {
                "mode": mode,
                "notes": notes,
                "candidate": candidate,
                **{k: v for k, v in given.items() if v is not None},
            }
        )
    except ValidationError as exc:
        raise invalid(exc, "release") from exc
    _show(run(lambda rt: service.create(rt, bot, data, CLI_ACTOR), backend=data.candidate))


@releases_app.command("list")
def list_(bot: BotArg) -> None:
    """List a bot's releases, newest first."""
    with session_scope() as session:
        views = service.list_releases(session, bot)
    table = IdTable(
        "version", "status", "mode", "adapter", "base model", "id", "created", ids=("id", "adapter")
    )
    for v in views:
        table.add_row(
            f"v{v.version}",
            v.status,
            v.mode,
            v.adapter or "-",
            v.base_model,
            v.id,
            v.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@releases_app.command("attach")
def attach(bot: BotArg, release: ReleaseArg) -> None:
    """Attach a release as a candidate: it answers every (sampled) live question in the background."""
    _show(run(backend=True, work=lambda rt: service.attach(rt, bot, release, CLI_ACTOR)))


@releases_app.command("detach")
def detach(bot: BotArg, release: ReleaseArg) -> None:
    """Stop a candidate from shadowing."""
    _show(run(lambda rt: service.detach(rt, bot, release, CLI_ACTOR)))


@releases_app.command("promote")
def promote(
    bot: BotArg,
    release: ReleaseArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Promote although the review decision is not 'promote' (audited)."
        ),
    ] = False,
) -> None:
    """Make a release live (move the alias); requests already running finish on the old one. Only
    a release whose review decision is "promote" goes live without --force."""
    _show_move(
        run(
            backend=True,
            work=lambda rt: service.promote_release(rt, bot, release, CLI_ACTOR, force=force),
        )
    )


@releases_app.command("rollback")
def rollback(bot: BotArg) -> None:
    """Move the alias back to the release that was live before the last promotion."""
    _show_move(run(backend=True, work=lambda rt: service.rollback_release(rt, bot, CLI_ACTOR)))
