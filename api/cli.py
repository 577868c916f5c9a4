"""The `shadowdesk` command line: serve, manage bots and keys, chat, migrate."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from api.cli_releases import releases_app
from api.cli_staff import staff_app
from api.db import make_engine, make_session_factory, transaction
from api.settings import Settings

app = typer.Typer(help="Shadowdesk: support chatbots on your own documents.", no_args_is_help=True)
bots_app = typer.Typer(help="Create and manage bots.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
docs_app = typer.Typer(help="A bot's knowledge-base documents.", no_args_is_help=True)
app.add_typer(bots_app, name="bots")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(docs_app, name="documents")
app.add_typer(releases_app, name="releases")
app.add_typer(staff_app, name="staff")

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        err.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _sessions(settings: Settings):  # type: ignore[no-untyped-def]
    """Sessions on an up-to-date schema (the embedded SQLite default upgrades itself)."""
    if settings.should_auto_migrate:
        from api.migrate import upgrade

        upgrade(settings)
    return make_session_factory(make_engine(settings))


def _fail(exc: Exception) -> None:
    from api.errors import ApiError

    if isinstance(exc, ApiError):
        err.print(f"[red]Error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    raise exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request line.")] = True,
) -> None:
    """Start the API server (loads the model, upgrades the embedded database, creates the demo bot)."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level=log_level, access_log=access_log,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(
    kinds: Annotated[
        Optional[list[str]], typer.Option("--kind", help="Only these job kinds (repeatable), e.g. shadow.")
    ] = None,
) -> None:
    """Run background jobs (shadow answers, ingestion, re-embedding, …) in this process, claiming them
    from the shared database; run as many as you like next to `serve --no-worker`-style deployments
    (set SHADOWDESK_RUN_WORKER=false on the servers)."""
    import logging
    import signal

    from api.backends import build_backend
    from api.jobs.handlers import bind
    from api.jobs.worker import WorkerPool
    from api.runtime import Runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    sessions = _sessions(settings)

    async def run() -> None:
        backend = build_backend(settings)
        await backend.start()
        runtime = Runtime(settings=settings, engine=sessions.kw["bind"], sessions=sessions, backend=backend)
        handlers = bind(runtime)
        if kinds:
            unknown = set(kinds) - set(handlers)
            if unknown:
                err.print(f"[red]Unknown job kind(s): {', '.join(sorted(unknown))}[/red]")
                raise typer.Exit(2)
            handlers = {k: v for k, v in handlers.items() if k in kinds}
        runtime.worker = WorkerPool(sessions, handlers, lease_s=settings.job_lease_s,
                                    shadow_lanes=settings.shadow_concurrency)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.worker.stop)
        err.print(f"worker running: {', '.join(runtime.worker.kinds)}")
        try:
            await runtime.worker.run()
        finally:
            await backend.close()

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (production databases are never upgraded implicitly)."""
    from api.migrate import current_heads, upgrade

    settings = _settings()
    upgrade(settings, revision)
    at, heads = current_heads(settings)
    console.print(f"database at {', '.join(sorted(at)) or 'base'} (code head: {', '.join(sorted(heads))})")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the code's."""
    from api.migrate import current_heads

    at, heads = current_heads(_settings())
    console.print(f"database at {', '.join(sorted(at)) or 'base'} (code head: {', '.join(sorted(heads))})")
    if at != heads:
        raise typer.Exit(1)


@bots_app.command("create")
def bots_create(
    slug: Annotated[str, typer.Argument(help="Id clients pass as `model` (lowercase, digits, dashes).")],
    name: Annotated[Optional[str], typer.Option(help="Display name (default: the slug).")] = None,
    system_prompt: Annotated[str, typer.Option(help="Instructions placed before every conversation.")] = "",
    scope: Annotated[str, typer.Option(help="What the bot answers about.")] = "",
    refusal_message: Annotated[
        str, typer.Option(help="What the bot says to out-of-scope questions.")
    ] = "Sorry, I can only help with questions about this product.",
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    policy: Annotated[
        Optional[str], typer.Option(help='Shadow/review/promotion policy as JSON, e.g. \'{"review_sample_rate": 0.1}\'.')
    ] = None,
) -> None:
    """Create a bot; its first release (the configured base model) goes live."""
    from pydantic import ValidationError

    from api.services.bots import BotCreate, create_bot

    settings = _settings()
    try:
        data = BotCreate(
            slug=slug, name=name or slug, system_prompt=system_prompt, scope=scope, refusal_message=refusal_message,
            temperature=temperature, top_p=top_p, max_tokens=max_tokens,
            **({"policy": json.loads(policy)} if policy else {}),
        )
    except json.JSONDecodeError as exc:
        err.print(f"[red]Invalid --policy JSON:[/red] {exc}")
        raise typer.Exit(2) from exc
    except ValidationError as exc:
        err.print(f"[red]Invalid bot:[/red] {exc.errors()[0]['msg']} ({exc.errors()[0]['loc'][0]})")
        raise typer.Exit(2) from exc
    try:
        with transaction(_sessions(settings)) as session:
            bot = create_bot(session, data, base_model=settings.model)
            console.print(f"created bot [bold]{bot.slug}[/bold] ({bot.id})")
        if not scope.strip():
            err.print(
                f"note: {slug} has no scope and no documents yet, so nothing tells it what is off-topic: "
                f"it answers every question. Add documents (shadowdesk ingest {slug} PATH…) or a --scope; "
                "off-topic questions are then refused.", soft_wrap=True)
    except Exception as exc:
        _fail(exc)


@bots_app.command("list")
def bots_list() -> None:
    """List bots."""
    from api.services.bots import list_bots

    table = Table("slug", "name", "live release", "temperature", "max tokens")
    with transaction(_sessions(_settings())) as session:
        for bot in list_bots(session):
            table.add_row(bot.slug, bot.name, bot.live_release_id or "-", f"{bot.temperature:g}", str(bot.max_tokens))
    console.print(table)


@bots_app.command("update")
def bots_update(
    slug: str,
    name: Annotated[Optional[str], typer.Option()] = None,
    system_prompt: Annotated[Optional[str], typer.Option()] = None,
    scope: Annotated[Optional[str], typer.Option()] = None,
    refusal_message: Annotated[Optional[str], typer.Option()] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, max=2.0)] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=1)] = None,
) -> None:
    """Change a bot's settings (only the options given)."""
    from api.services.bots import BotUpdate, update_bot

    data = BotUpdate(
        name=name, system_prompt=system_prompt, scope=scope, refusal_message=refusal_message,
        temperature=temperature, top_p=top_p, max_tokens=max_tokens,
    )
    try:
        with transaction(_sessions(_settings())) as session:
            update_bot(session, slug, data)
        console.print(f"updated bot [bold]{slug}[/bold]")
    except Exception as exc:
        _fail(exc)


@bots_app.command("delete")
def bots_delete(
    slug: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False
) -> None:
    """Delete a bot with its releases and stored exchanges."""
    from api.services.bots import delete_bot

    if not yes:
        typer.confirm(f"Delete bot '{slug}' and all its exchanges?", abort=True)
    try:
        with transaction(_sessions(_settings())) as session:
            delete_bot(session, slug)
        console.print(f"deleted bot [bold]{slug}[/bold]")
    except Exception as exc:
        _fail(exc)


@keys_app.command("create")
def keys_create(
    bot: Annotated[Optional[list[str]], typer.Option("--bot", help="Bot slug the key may use (repeatable).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Admin key: all bots and the admin API.")] = False,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key. The key is printed once, as the last line; only its hash is stored."""
    from api.services.bots import get_bot
    from api.services.keys import create_key

    if not bot and not admin:
        err.print("[red]Error:[/red] give --bot SLUG (repeatable) or --admin")
        raise typer.Exit(2)
    try:
        with transaction(_sessions(_settings())) as session:
            bots = [get_bot(session, slug) for slug in bot or []]
            key, secret = create_key(session, bots=bots, is_admin=admin, name=name)
            scope = "admin" if admin else ", ".join(b.slug for b in bots)
            err.print(f"created key {key.id} ({scope}); store it now, it is not shown again:")
    except Exception as exc:
        _fail(exc)
    print(secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    from api.services.keys import list_keys

    table = Table("id", "name", "prefix", "scope", "last used", "revoked")
    with transaction(_sessions(_settings())) as session:
        for key in list_keys(session):
            scope = "admin" if key.is_admin else ", ".join(b.slug for b in key.bots)
            last = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
            table.add_row(key.id, key.name, key.prefix + "…", scope, last, revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: it stops working on the next request."""
    from api.services.keys import revoke_key

    try:
        with transaction(_sessions(_settings())) as session:
            revoke_key(session, key_id)
        console.print(f"revoked {key_id}")
    except Exception as exc:
        _fail(exc)


@app.command()
def ingest(
    bot: Annotated[str, typer.Argument(help="Slug of the bot whose knowledge base receives the documents.")],
    paths: Annotated[list[str], typer.Argument(help="Files, folders (searched recursively) and globs.")],
    force: Annotated[bool, typer.Option(help="Re-index even documents that did not change.")] = False,
    include: Annotated[Optional[list[str]], typer.Option(
        "--include", help="Only files of the folders matching this glob (repeatable), e.g. 'docs/*'.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(
        "--exclude", help="Skip files matching this glob (repeatable), e.g. 'changelog*'.")] = None,
    site_defaults: Annotated[bool, typer.Option(
        help="Skip the boilerplate site generators leave (Sphinx _sources/ and genindex, MkDocs "
             "search/, …).")] = True,
) -> None:
    """Add documents (Markdown, HTML, reStructuredText, PDF, text, DOCX, forum exports) to a bot's
    knowledge base. A documentation site goes in as it is: assets and generator boilerplate are
    skipped and counted, not failed. Every file is reported; a bad file never stops the others.
    Exit code 1 when any file failed."""
    import logging
    import os
    import time
    from pathlib import Path

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("serving.knowledge").setLevel(logging.ERROR)  # failures are reported below

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.runtime import Runtime
    from api.services.bots import get_bot
    from api.services.knowledge import IngestSource, ingest_sources
    from serving.knowledge.site_files import select_files

    selection = select_files(paths, include=include or (), exclude=exclude or (), site_defaults=site_defaults)
    for missing in selection.missing:
        err.print(f"[red]{missing}: no such file[/red]")
    for folder, generator in selection.generators.items():
        err.print(f"{folder}: a {generator} site; its generated boilerplate is skipped", soft_wrap=True)
    if not selection.files:
        err.print("[red]Error:[/red] nothing to ingest")
        raise typer.Exit(2)
    settings = _settings()
    sessions = _sessions(settings)
    try:
        with transaction(sessions) as session:
            bot_id = get_bot(session, bot).id
    except Exception as exc:
        _fail(exc)
    runtime = Runtime(settings=settings, engine=sessions.kw["bind"], sessions=sessions, backend=None)  # type: ignore[arg-type]
    sources = [IngestSource(f.path, f.source) for f in selection.files]
    counts = {"ingested": 0, "unchanged": 0, "skipped": 0, "error": 0}
    chunks = 0
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        task = progress.add_task("loading the embedding model…", total=len(sources))

        def report(result) -> None:  # type: ignore[no-untyped-def]
            nonlocal chunks
            progress.advance(task)
            progress.update(task, description=f"ingesting into {bot}")
            counts[result.status] += 1
            if result.status == "ingested":
                chunks += result.chunk_count
                progress.console.print(f"[green]✓[/green] {result.source} ({result.chunk_count} chunks)")
            elif result.status == "unchanged":
                progress.console.print(f"[green]✓[/green] {result.source} (unchanged)")
            elif result.status == "error":
                message = (result.message or "").removeprefix(f"{Path(result.source).name}: ")
                progress.console.print(f"[red]✗ {result.source}: {message}[/red] ({result.reason})",
                                       soft_wrap=True)

        ingest_sources(runtime.knowledge, sessions, bot_id, sources, force=force, on_result=report)
    seconds = time.perf_counter() - started
    skipped = selection.skip_counts()
    skipped["navigation only"] = counts["skipped"]
    skip_text = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()) if n)
    rate = f" · {chunks} chunks in {seconds:.1f} s ({chunks / seconds:.1f} chunks/s)" if chunks else ""
    console.print(
        f"{bot}: {counts['ingested']} ingested, {counts['unchanged']} unchanged, "
        f"{sum(skipped.values())} skipped{f' ({skip_text})' if skip_text else ''}, "
        f"{counts['error']} failed{rate}", soft_wrap=True
    )
    if counts["error"] or selection.missing:
        raise typer.Exit(1)


@docs_app.command("list")
def documents_list(bot: str) -> None:
    """List a bot's documents with chunk counts and ingest time."""
    from api.services.bots import get_bot
    from api.services.knowledge import list_documents

    table = Table("doc id", "source", "format", "chunks", "pages", "ingested")
    try:
        with transaction(_sessions(_settings())) as session:
            for d in list_documents(session, get_bot(session, bot).id):
                table.add_row(d.id, d.source, d.format, str(d.chunk_count), str(d.page_count or "-"),
                              d.ingested_at.isoformat(timespec="seconds"))
    except Exception as exc:
        _fail(exc)
    console.print(table)


@docs_app.command("delete")
def documents_delete(bot: str, doc_id: str) -> None:
    """Remove a document and its chunks from a bot's knowledge base."""
    from api.runtime import Runtime
    from api.services.bots import get_bot
    from api.services.knowledge import delete_document

    settings = _settings()
    sessions = _sessions(settings)
    try:
        with transaction(sessions) as session:
            bot_id = get_bot(session, bot).id
        runtime = Runtime(settings=settings, engine=sessions.kw["bind"], sessions=sessions, backend=None)  # type: ignore[arg-type]
        removed = delete_document(runtime.knowledge, sessions, bot_id, doc_id)
    except Exception as exc:
        _fail(exc)
    console.print(f"deleted {doc_id} ({removed} chunks)")


@app.command()
def chat(
    bot: Annotated[str, typer.Argument(help="Slug of the bot to talk to.")],
    url: Annotated[Optional[str], typer.Option(help="Talk to a running server instead of loading the model here.")] = None,
    key: Annotated[Optional[str], typer.Option(envvar="SHADOWDESK_API_KEY", help="API key for --url.")] = None,
) -> None:
    """Chat with a bot in the terminal; answers stream as they are generated. Ctrl-D or 'exit' quits."""
    if url:
        asyncio.run(_chat_remote(bot, url, key))
    else:
        asyncio.run(_chat_local(bot))


def _read_line() -> str | None:
    try:
        line = input("\nyou> ")
    except EOFError:
        return None
    return None if line.strip() in {"exit", "quit"} else line


async def _chat_local(slug: str) -> None:
    from api.backends import build_backend
    from api.errors import ApiError
    from api.schemas.openai import ChatCompletionRequest
    from api.services.access import BotConfig, KeyGrant
    from api.services.bots import get_bot
    from api.services.chat import ChatService, build_turn, validate_request
    from api.services.exchange_writer import ExchangeWriter

    settings = _settings()
    sessions = _sessions(settings)
    try:
        with transaction(sessions) as session:
            bot = BotConfig.of(get_bot(session, slug), session)
    except Exception as exc:
        _fail(exc)
    backend = build_backend(settings)
    err.print("loading the model…")
    await backend.start()
    writer = ExchangeWriter(sessions.kw["bind"])
    from api.runtime import Runtime

    runtime = Runtime(settings=settings, engine=sessions.kw["bind"], sessions=sessions, backend=backend)
    service = ChatService(runtime, writer)
    terminal = KeyGrant(id=None, is_admin=True, bot_ids=frozenset())
    history: list[dict[str, str]] = []
    conversation_id: str | None = None
    try:
        while (line := _read_line()) is not None:
            if not line.strip():
                continue
            history.append({"role": "user", "content": line})
            try:
                req = ChatCompletionRequest(model=slug, messages=history, stream=True)  # type: ignore[arg-type]
                validate_request(req, settings)
                turn = build_turn(req, grant=terminal, bot=bot, conversation_id=conversation_id, settings=settings)
                conversation_id = turn.conversation_id
                await service.prepare(turn)
                answer = await _print_stream(service, turn)
            except ApiError as exc:
                err.print(f"[red]{exc.message}[/red]")
                history.pop()
                continue
            history.append({"role": "assistant", "content": answer})
    finally:
        await backend.close()
        writer.stop()


async def _print_stream(service, turn) -> str:  # type: ignore[no-untyped-def]
    sys.stdout.write(f"{turn.bot_slug}> ")
    parts: list[str] = []
    async for raw in await service.open_stream(turn):
        for block in raw.decode().split("\n\n"):
            data = block.removeprefix("data: ").strip()
            if not data or data == "[DONE]":
                continue
            payload = json.loads(data)
            if "error" in payload:
                err.print(f"\n[red]{payload['error']['message']}[/red]")
                continue
            for choice in payload.get("choices", []):
                text = choice["delta"].get("content") or ""
                parts.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


async def _chat_remote(slug: str, url: str, key: str | None) -> None:
    from openai import APIError, AsyncOpenAI

    client = AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key=key or "missing")
    history: list[dict[str, str]] = []
    conversation_id: str | None = None
    while (line := _read_line()) is not None:
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        headers = {"X-Conversation-Id": conversation_id} if conversation_id else {}
        try:
            response = await client.chat.completions.with_raw_response.create(
                model=slug, messages=history, stream=True, extra_headers=headers  # type: ignore[arg-type]
            )
            conversation_id = response.headers.get("x-conversation-id", conversation_id)
            sys.stdout.write(f"{slug}> ")
            parts: list[str] = []
            async for chunk in response.parse():
                for choice in chunk.choices:
                    text = choice.delta.content or ""
                    parts.append(text)
                    sys.stdout.write(text)
                    sys.stdout.flush()
            sys.stdout.write("\n")
            history.append({"role": "assistant", "content": "".join(parts)})
        except APIError as exc:
            err.print(f"[red]{exc.message}[/red]")
            history.pop()


if __name__ == "__main__":
    app()
