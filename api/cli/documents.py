"""`shadowdesk ingest` and `shadowdesk documents …`: a bot's knowledge base from the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import IdTable, console, err, fail, load_settings, session_scope
from api.runtime import Runtime
from serving.knowledge import IngestResult

docs_app = typer.Typer(help="A bot's knowledge-base documents.", no_args_is_help=True)


def _quiet_models() -> None:
    """Model loading prints progress bars and warnings that say nothing to a user of these commands."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("serving.knowledge").setLevel(logging.ERROR)  # failures are reported by us
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def ingest(
    bot: Annotated[
        str, typer.Argument(help="Slug of the bot whose knowledge base receives the documents.")
    ],
    paths: Annotated[
        list[str], typer.Argument(help="Files, folders (searched recursively) and globs.")
    ],
    force: Annotated[
        bool, typer.Option(help="Re-index even documents that did not change.")
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            help="Only files of the folders matching this glob (repeatable), e.g. 'docs/*'.",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Skip files matching this glob (repeatable), e.g. 'changelog*'."
        ),
    ] = None,
    site_defaults: Annotated[
        bool,
        typer.Option(
            help="Skip the boilerplate site generators leave (Sphinx _sources/ and genindex, MkDocs "
            "search/, …)."
        ),
    ] = True,
) -> None:
    """Add documents (Markdown, HTML, reStructuredText, PDF, text, DOCX, forum exports) to a bot's
    knowledge base. A documentation site goes in as it is: assets and generator boilerplate are
    skipped and counted, not failed. Every file is reported; a bad file never stops the others.
    Exit code 1 when any file failed."""
    import asyncio
    import time
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.db import transaction
    from api.runtime import build_runtime
    from api.services.bots.management import get_bot
    from api.services.knowledge.documents import IngestSource, ingest_sources
    from serving.knowledge.site_files import select_files

    _quiet_models()
    selection = select_files(
        paths, include=include or (), exclude=exclude or (), site_defaults=site_defaults
    )
    for missing in selection.missing:
        err.print(f"[red]{missing}: no such file[/red]")
    for folder, generator in selection.generators.items():
        err.print(
            f"{folder}: a {generator} site; its generated boilerplate is skipped", soft_wrap=True
        )
    if not selection.files:
        err.print("[red]Error:[/red] nothing to ingest")
        raise typer.Exit(2)
    runtime = build_runtime(load_settings())
    asyncio.run(runtime.start(backend=False))
    try:
        try:
            with transaction(runtime.sessions) as session:
                bot_id = get_bot(session, bot).id
        except Exception as exc:
            fail(exc)
        sources = [IngestSource.from_disk(f.path, f.source) for f in selection.files]
        counts = {"ingested": 0, "unchanged": 0, "skipped": 0, "error": 0}
        chunks = 0
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("loading the embedding model…", total=len(sources))

            def report(result: IngestResult) -> None:
                nonlocal chunks
                progress.advance(task)
                progress.update(task, description=f"ingesting into {bot}")
                counts[result.status] += 1
                if result.status == "ingested":
                    chunks += result.chunk_count
                    progress.console.print(
                        f"[green]✓[/green] {result.source} ({result.chunk_count} chunks)",
                        soft_wrap=True,
                    )
                elif result.status == "unchanged":
                    progress.console.print(
                        f"[green]✓[/green] {result.source} (unchanged)", soft_wrap=True
                    )
                elif result.status == "error":
                    # Messages start with the file's name; the line names the path once.
                    message = (result.message or "").removeprefix(f"{result.source}: ")
                    message = message.removeprefix(f"{Path(result.source).name}: ")
                    progress.console.print(
                        f"[red]✗ {result.source}: {message}[/red] ({result.reason})", soft_wrap=True
                    )

            ingest_sources(
                runtime.knowledge, runtime.sessions, bot_id, sources, force=force, on_result=report
            )
        seconds = time.perf_counter() - started
    finally:
        asyncio.run(runtime.stop())
    skipped = selection.skip_counts()
    skipped["navigation only"] = counts["skipped"]
    skip_text = ", ".join(
        f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()) if n
    )
    rate = (
        f" · {chunks} chunks in {seconds:.1f} s ({chunks / seconds:.1f} chunks/s)" if chunks else ""
    )
    console.print(
        f"{bot}: {counts['ingested']} ingested, {counts['unchanged']} unchanged, "
        f"{sum(skipped.values())} skipped{f' ({skip_text})' if skip_text else ''}, "
        f"{counts['error']} failed{rate}",
        soft_wrap=True,
    )
    if counts["error"] or selection.missing:
        raise typer.Exit(1)


@docs_app.command("list")
def list_(bot: str) -> None:
    """List a bot's documents with chunk counts and ingest time."""
    from api.services.bots.management import get_bot
    from api.services.knowledge.documents import list_documents

    table = IdTable("doc id", "source", "format", "chunks", "pages", "ingested", ids=("doc id",))
    with session_scope() as session:
        for d in list_documents(session, get_bot(session, bot).id):
            table.add_row(
                d.id,
                d.source,
                d.format,
                str(d.chunk_count),
                str(d.page_count or "-"),
                d.ingested_at.isoformat(timespec="seconds"),
            )
    console.print(table)


@docs_app.command("delete")
def delete(bot: str, doc_id: str) -> None:
    """Remove a document and its chunks from a bot's knowledge base."""
    from api.cli.common import run
    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.knowledge.documents import delete_document

    _quiet_models()

    async def work(runtime: Runtime) -> int:
        with transaction(runtime.sessions) as session:
            bot_id = get_bot(session, bot).id
        return delete_document(runtime.knowledge, runtime.sessions, bot_id, doc_id)

    removed = run(work)
    console.print(f"deleted {doc_id} ({removed} chunks)")
