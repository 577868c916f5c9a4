"""`shadowdesk bots …`: create, list, update and delete bots. Options are the fields of the models
the admin API validates with (`BotCreate`, `BotUpdate`, `KnowledgeConfig`): same limits, same help."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from api.cli.common import IdTable, console, err, invalid, json_option, load_settings, session_scope
from api.services.access.audit import CLI_ACTOR
from api.services.bots.management import BotCreate, BotFields, BotUpdate
from api.services.knowledge.config import KnowledgeConfig

bots_app = typer.Typer(help="Create and manage bots.", no_args_is_help=True)


def _opt(field: str, model: type[BaseModel] = BotFields, *names: str) -> Any:
    return typer.Option(*names, help=model.model_fields[field].description or "")


K = KnowledgeConfig
Topic = Annotated[list[str] | None, _opt("topics", K, "--topic")]
Example = Annotated[list[str] | None, _opt("example_questions", K, "--example-question")]
OutOfScope = Annotated[list[str] | None, _opt("out_of_scope_examples", K, "--out-of-scope-example")]
TopK = Annotated[int | None, _opt("top_k", K)]
MinScore = Annotated[float | None, _opt("min_score", K)]
Greeting = Annotated[str | None, _opt("greeting_message", K)]


def _knowledge(**given: Any) -> dict[str, Any]:
    """The knowledge settings given on the command line (repeatable options as lists)."""
    return {k: v for k, v in given.items() if v is not None and v != []}


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
    topic: Topic = None,
    example_question: Example = None,
    out_of_scope_example: OutOfScope = None,
    top_k: TopK = None,
    min_score: MinScore = None,
    greeting_message: Greeting = None,
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
        "knowledge": _knowledge(
            topics=topic,
            example_questions=example_question,
            out_of_scope_examples=out_of_scope_example,
            top_k=top_k,
            min_score=min_score,
            greeting_message=greeting_message,
        ),
    }
    try:
        data = BotCreate(
            slug=slug, name=name or slug, **{k: v for k, v in given.items() if v is not None}
        )
    except ValidationError as exc:
        raise invalid(exc, "bot") from exc
    with session_scope() as session:
        bot = create_bot(session, data, base_model=load_settings().model, actor=CLI_ACTOR)
        console.print(f"created bot [bold]{bot.slug}[/bold] ({bot.id})")
    if not data.scope.strip() and not data.knowledge.topics:
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

    table = IdTable(
        "slug", "name", "live release", "temperature", "max tokens", ids=("slug", "live release")
    )
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
    topic: Topic = None,
    example_question: Example = None,
    out_of_scope_example: OutOfScope = None,
    top_k: TopK = None,
    min_score: MinScore = None,
    greeting_message: Greeting = None,
) -> None:
    """Change a bot's settings (only the options given; a repeatable option given replaces its
    whole list)."""
    from api.services.bots.management import get_bot, update_bot
    from api.services.knowledge.config import knowledge_of, update_knowledge

    given = {
        "name": name,
        "system_prompt": system_prompt,
        "scope": scope,
        "refusal_message": refusal_message,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
    }
    knowledge = _knowledge(
        topics=topic,
        example_questions=example_question,
        out_of_scope_examples=out_of_scope_example,
        top_k=top_k,
        min_score=min_score,
        greeting_message=greeting_message,
    )
    try:
        data = BotUpdate(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise invalid(exc, "bot") from exc
    with session_scope() as session:
        bot = update_bot(session, slug, data, actor=CLI_ACTOR)
        if knowledge:
            try:
                merged = KnowledgeConfig.model_validate(
                    {**knowledge_of(get_bot(session, slug).knowledge).model_dump(), **knowledge}
                )
            except ValidationError as exc:
                raise invalid(exc, "knowledge settings") from exc
            update_knowledge(session, bot, merged, default_embedder=load_settings().embedder)
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
        delete_bot(session, slug, actor=CLI_ACTOR)
    console.print(f"deleted bot [bold]{slug}[/bold]")
