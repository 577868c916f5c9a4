"""`shadowdesk keys …`: create (the secret printed once, last), list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import IdTable, console, err, session_scope
from api.services.access.audit import CLI_ACTOR

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
def create(
    bot: Annotated[
        list[str] | None, typer.Option("--bot", help="Bot slug the key may use (repeatable).")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="Admin key: all bots and the admin API.")
    ] = False,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="A publishable key (pk-…) for one bot's support widget, used in web pages.",
        ),
    ] = False,
) -> None:
    """Create an API key. The key is printed once, as the last line; only its hash is stored."""
    from api.services.access.keys import create_key
    from api.services.bots.management import get_bot

    if not bot and not admin:
        err.print("[red]Error:[/red] give --bot SLUG (repeatable) or --admin")
        raise typer.Exit(2)
    with session_scope() as session:
        bots = [get_bot(session, slug) for slug in bot or []]
        key, secret = create_key(
            session,
            bots=bots,
            is_admin=admin,
            name=name,
            publishable=publishable,
            actor=CLI_ACTOR,
        )
        scope = "admin" if admin else ", ".join(b.slug for b in bots)
        if publishable:
            err.print(f"created publishable key {key.id} ({scope}) for the support widget:")
        else:
            err.print(f"created key {key.id} ({scope}); store it now, it is not shown again:")
    print(secret)


@keys_app.command("list")
def list_() -> None:
    """List API keys (never their secrets)."""
    from api.services.access.keys import list_keys

    table = IdTable("id", "name", "prefix", "scope", "last used", "revoked", ids=("id",))
    with session_scope() as session:
        for key in list_keys(session):
            scope = "admin" if key.is_admin else ", ".join(b.slug for b in key.bots)
            scope += " (widget)" if key.kind == "publishable" else ""
            last = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
            table.add_row(key.id, key.name, key.prefix + "…", scope, last, revoked)
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key: it stops working on the next request."""
    from api.services.access.keys import revoke_key

    with session_scope() as session:
        revoke_key(session, key_id, actor=CLI_ACTOR)
    console.print(f"revoked {key_id}")
