"""`shadowdesk staff …`: create staff users (admins, reviewers), list them, grant bots, deactivate.

Works on the database directly; every change is audited with the actor `cli`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import IdTable, console, session_scope
from api.services.access import staff
from api.services.access.audit import CLI_ACTOR
from api.services.bots.management import get_bot

staff_app = typer.Typer(
    help="Staff users of the review UI: admins and reviewers.", no_args_is_help=True
)

BotsOpt = Annotated[
    list[str] | None, typer.Option("--bot", help="Slug of a bot to review (repeatable).")
]


@staff_app.command("create")
def create(
    email: Annotated[str, typer.Option(help="Login email.")],
    role: Annotated[
        str, typer.Option(help="admin (every bot, thresholds) or reviewer (granted bots).")
    ] = "reviewer",
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    bot: BotsOpt = None,
    password: Annotated[
        str | None,
        typer.Option(help="Password (>= 10 characters); asked for, hidden, when left out."),
    ] = None,
) -> None:
    """Create a staff user."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with session_scope() as session:
        bots = [get_bot(session, slug) for slug in bot or []]
        user = staff.create_user(
            session, CLI_ACTOR, email=email, password=password, role=role, name=name, bots=bots
        )
        console.print(
            f"created {user.role} {user.email} ({user.id})"
            + (f", reviews {', '.join(b.slug for b in user.bots)}" if user.bots else "")
        )


@staff_app.command("list")
def list_staff() -> None:
    """List staff users, their roles, bots and whether they may log in."""
    with session_scope() as session:
        table = IdTable("email", "name", "role", "bots", "active", "id", ids=("id", "email"))
        for user in staff.list_users(session):
            bots = (
                "all"
                if user.role == "admin"
                else ", ".join(sorted(b.slug for b in user.bots)) or "-"
            )
            table.add_row(
                user.email, user.name, user.role, bots, "yes" if user.active else "no", user.id
            )
        console.print(table)


@staff_app.command("grant")
def grant(
    email: Annotated[str, typer.Argument(help="The staff user's email.")],
    bot: Annotated[list[str], typer.Option("--bot", help="Slug of a bot to review (repeatable).")],
) -> None:
    """Let a reviewer review more bots."""
    with session_scope() as session:
        user = staff.grant(session, CLI_ACTOR, email, [get_bot(session, slug) for slug in bot])
        console.print(f"{user.email} reviews {', '.join(sorted(b.slug for b in user.bots))}")


@staff_app.command("deactivate")
def deactivate(email: Annotated[str, typer.Argument(help="The staff user's email.")]) -> None:
    """Stop a staff user from logging in; their open sessions end at their next request."""
    with session_scope() as session:
        user = staff.deactivate(session, CLI_ACTOR, email)
        console.print(f"{user.email} deactivated")
