"""`shadowdesk bots …`: create, list, update and delete bots. Options are the fields of the models
the admin API validates with (`BotCreate`, `BotUpdate`): same limits, same help."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from api.cli.common import console, err, invalid, json_option, load_settings, session_scope
from api.services.bots.management import BotCreate, BotFields, BotUpdate

bots_app = typer.Typer(help="Create and manage bots.", no_args_is_help=True)

_F = BotFields


def _opt(field: str) -> typer.models.OptionInfo:
    return typer.Option(help=_F.model_fields[field].description or "")


@bots_app.command("create")
def create(
    slug: Annotated[str, typer.Argument(help=BotCreate.model_fields["slug"].description or "")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the slug).")] = None,
    system_prompt: Annotated[str | None, _opt("system_prompt")] = None,
    scope: Annotated[str | None, _opt("scope")] = None,
    refusal_message: Annotated[str | None, _opt("refusal_message")] = None,
    temperature: Annotated[float | None, _opt("temperature")] = None,
    top_p: Annotated[float | None, _opt("top_p")] = None,
    max_tokens: Annotated[int | None, _opt("max_tokens")] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Shadow/review/promotion policy as JSON, e.g. '{\"review_sample_rate\": 0.1}'."
        ),
    ] = None,
) -> None:
    """Create a bot; its first release (the configured base model) goes live."""
    from api.services.bots.management import create_bot

    given = {
        "system_prompt": system_prompt,
        "scope": scope,
        "refusal_message": refusal_message,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "policy": json_option(policy, "policy"),
    }
    try:
        data = BotCreate(
            slug=slug, name=name or slug, **{k: v for k, v in given.items() if v is not None}
        )
    except ValidationError as exc:
        raise invalid(exc, "bot") from exc
    with session_scope() as session:
        bot = create_bot(session, data, base_model=load_settings().model)
        console.print(f"created bot [bold]{bot.slug}[/bold] ({bot.id})")
    if not data.scope.strip():
        err.print(
            f"note: {slug} has no scope and no documents yet, so nothing tells it what is off-topic: "
            f"it answers every question. Add documents (shadowdesk ingest {slug} PATH…) or a --scope; "
            "off-topic questions are then refused.",
            soft_wrap=True,
        )


@bots_app.command("list")
def list_() -> None:
    """List bots."""
    from api.services.bots.management import list_bots

    table = Table("slug", "name", "live release", "temperature", "max tokens")
    with session_scope() as session:
        for bot in list_bots(session):
            table.add_row(
                bot.slug,
                bot.name,
                bot.live_release_id or "-",
                f"{bot.temperature:g}",
                str(bot.max_tokens),
            )
    console.print(table)


@bots_app.command("update")
def update(
    slug: str,
    name: Annotated[str | None, _opt("name")] = None,
    system_prompt: Annotated[str | None, _opt("system_prompt")] = None,
    scope: Annotated[str | None, _opt("scope")] = None,
    refusal_message: Annotated[str | None, _opt("refusal_message")] = None,
    temperature: Annotated[float | None, _opt("temperature")] = None,
    top_p: Annotated[float | None, _opt("top_p")] = None,
    max_tokens: Annotated[int | None, _opt("max_tokens")] = None,
) -> None:
    """Change a bot's settings (only the options given)."""
    from api.services.bots.management import update_bot

    given = {
        "name": name,
        "system_prompt": system_prompt,
        "scope": scope,
        "refusal_message": refusal_message,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
    }
    try:
        data = BotUpdate(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise invalid(exc, "bot") from exc
    with session_scope() as session:
        update_bot(session, slug, data)
    console.print(f"updated bot [bold]{slug}[/bold]")


@bots_app.command("delete")
def delete(
    slug: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a bot with its releases and stored exchanges."""
    from api.services.bots.management import delete_bot

    if not yes:
        typer.confirm(f"Delete bot '{slug}' and all its exchanges?", abort=True)
    with session_scope() as session:
        delete_bot(session, slug)
    console.print(f"deleted bot [bold]{slug}[/bold]")
