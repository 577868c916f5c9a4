"""`shadowdesk datasets …` and `shadowdesk plan`: training data from documents, reviews and files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.common import IdTable, console, err, fail, load_settings, run, session_scope
from api.services.access.audit import CLI_ACTOR

datasets_app = typer.Typer(
    help="Training datasets: generate rows from documents, review, import, export, snapshot.",
    no_args_is_help=True,
)

BotArg = Annotated[str, typer.Argument(help="The bot's slug.")]
NameArg = Annotated[str, typer.Argument(help="The dataset's name.")]


@datasets_app.command("create")
def create(
    bot: BotArg,
    name: NameArg,
    description: Annotated[str, typer.Option(help="What the dataset is for.")] = "",
    validation_share: Annotated[
        float, typer.Option(help="Share of rows held out for validation (fixed).")
    ] = 0.1,
) -> None:
    """Create an empty dataset."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import DatasetCreate, create_dataset

    with session_scope() as session:
        data = DatasetCreate(name=name, description=description, validation_share=validation_share)
        dataset = create_dataset(session, get_bot(session, bot), data, actor=CLI_ACTOR)
        console.print(f"created dataset [bold]{dataset.name}[/bold] ({dataset.id})")


@datasets_app.command("list")
def list_(bot: BotArg) -> None:
    """The bot's datasets with their rows per status."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import list_datasets

    table = IdTable("name", "pending", "approved", "edited", "rejected", "id", ids=("name", "id"))
    with session_scope() as session:
        for dataset, counts in list_datasets(session, get_bot(session, bot)):
            table.add_row(
                dataset.name,
                *(str(counts.get(s, 0)) for s in ("pending", "approved", "edited", "rejected")),
                dataset.id,
            )
    console.print(table)


@datasets_app.command("show")
def show(bot: BotArg, name: NameArg) -> None:
    """Rows per status and flag, generation figures, snapshots."""
    from collections import Counter

    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.generation import generation_report
    from api.services.datasets.rows import iter_rows, status_counts
    from api.services.datasets.snapshots import list_snapshots

    with session_scope() as session:
        dataset = get_dataset(session, get_bot(session, bot), name)
        counts = status_counts(session, dataset)
        flags = Counter(f["flag"] for r in iter_rows(session, dataset) for f in r.flags or ())
        report = generation_report(session, dataset)
        console.print(f"[bold]{dataset.name}[/bold] ({dataset.id}) of {bot}")
        console.print(
            "rows: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")
        )
        if flags:
            console.print("flags: " + ", ".join(f"{n} {f}" for f, n in flags.most_common()))
        if report["chunks"] or report["rows"]:
            dropped = ", ".join(f"{n} {r}" for r, n in report["dropped_by_reason"].items())
            console.print(
                f"generated: {report['rows']} rows from {report['chunks']} chunks, "
                f"{report['dropped']} dropped{f' ({dropped})' if dropped else ''}; "
                f"{report['prompt_tokens']} prompt + {report['completion_tokens']} completion tokens",
                soft_wrap=True,
            )
        for s in list_snapshots(session, dataset):
            console.print(
                f"snapshot v{s.version}: {s.train_rows} train + {s.validation_rows} validation rows, "
                f"{s.stats.get('tokens')} tokens, {s.content_hash[:12]} ({s.path})",
                soft_wrap=True,
            )


class _Context:
    """What a job handler is given, for running a generation in this process with a progress bar."""

    def __init__(self, payload: dict[str, Any], on_report: Any) -> None:
        self.payload, self.bot_id = payload, None
        self.progress: dict[str, Any] = {}
        self._on_report = on_report

    def report(self, **progress: Any) -> None:
        self.progress.update(progress)
        self._on_report(self.progress)


@datasets_app.command("generate")
def generate(
    bot: BotArg,
    name: NameArg,
    style: Annotated[
        list[str] | None,
        typer.Option(help="alpaca, dolly, orca or sharegpt (repeatable). Default: alpaca."),
    ] = None,
    pairs: Annotated[int, typer.Option(help="Question/answer pairs per chunk.")] = 3,
    max_chunks: Annotated[
        int | None, typer.Option(help="Stop after this many chunks (a trial run).")
    ] = None,
    document: Annotated[str | None, typer.Option(help="Only this document id's chunks.")] = None,
    refusals: Annotated[bool, typer.Option(help="Add refusal rows from the bot's scope.")] = True,
    max_tokens: Annotated[int, typer.Option(help="Longest reply per chunk.")] = 512,
) -> None:
    """Generate rows from the bot's documents with the model (`generator_url` when set, else the
    serving model). Creates the dataset if needed. Interrupted, it resumes where it stopped: no
    chunk is generated twice. Rows wait for review."""
    from pydantic import ValidationError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import ensure_dataset
    from api.services.datasets.generation import GenerateRequest, run_generation_job

    try:
        request = GenerateRequest(
            styles=style or ["alpaca"],
            pairs_per_chunk=pairs,
            max_chunks=max_chunks,
            document_id=document,
            refusals=refusals,
            max_tokens=max_tokens,
        )
    except ValidationError as exc:
        fail(exc)

    async def work(runtime: Any) -> dict[str, Any]:
        with transaction(runtime.sessions) as session:
            dataset = ensure_dataset(session, get_bot(session, bot), name, actor=CLI_ACTOR)
            dataset_id = dataset.id
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[figures]}"),
            console=err,
        ) as progress:
            task = progress.add_task("reading chunks…", total=None, figures="")

            def on_report(p: dict[str, Any]) -> None:
                t = p.get("totals", {})
                progress.update(
                    task,
                    description=f"generating into {name}",
                    completed=p.get("done", 0),
                    total=p.get("total"),
                    figures=f"{t.get('rows', 0)} rows, {t.get('dropped', 0)} dropped, "
                    f"{t.get('prompt_tokens', 0) + t.get('completion_tokens', 0)} tokens",
                )

            ctx = _Context({"dataset_id": dataset_id, **request.model_dump(mode="json")}, on_report)
            return await run_generation_job(ctx, runtime)

    started = time.perf_counter()
    result = run(work, backend=False)
    seconds = time.perf_counter() - started
    rate = result.get("rows", 0) / seconds if seconds else 0.0
    console.print(
        f"{name}: {result.get('rows', 0)} rows from {result.get('chunks', 0)} chunks "
        f"({result.get('dropped', 0)} items dropped), {result.get('prompt_tokens', 0)} prompt + "
        f"{result.get('completion_tokens', 0)} completion tokens in {seconds:.1f} s "
        f"({rate:.2f} rows/s); review them with `shadowdesk datasets rows {bot} {name}` or on "
        "the review site",
        soft_wrap=True,
    )


@datasets_app.command("corrections")
def add_corrections(bot: BotArg, name: NameArg) -> None:
    """Add staff verdicts on answers (approved, corrected, should-refuse) as reviewed rows."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import ensure_dataset
    from api.services.datasets.corrections import add_corrections as add

    with session_scope() as session:
        bot_row = get_bot(session, bot)
        counts = add(
            session,
            bot_row,
            ensure_dataset(session, bot_row, name, actor=CLI_ACTOR),
            actor=CLI_ACTOR,
        )
    console.print(
        f"{name}: {counts['approved']} approved and {counts['corrected']} corrected answers added"
        + (f", {counts['skipped']} skipped (no question or answer)" if counts["skipped"] else "")
    )


@datasets_app.command("import")
def import_(
    bot: BotArg,
    name: NameArg,
    file: Annotated[
        Path, typer.Argument(help="A .jsonl, .json or .csv file.", exists=True, dir_okay=False)
    ],
    format: Annotated[
        str | None,
        typer.Option(
            help="alpaca, dolly, orca, sharegpt, openai, prompt_completion "
            "(default: detected from the keys)."
        ),
    ] = None,
    approve: Annotated[
        bool, typer.Option(help="The rows are already reviewed (a curated dataset).")
    ] = False,
) -> None:
    """Import rows. A bad line is reported with its number and reason; the rest is imported.
    Exit code 1 when any line was bad."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import ensure_dataset
    from api.services.datasets.transfers import import_file
    from training.formats import Format, FormatError

    try:
        fmt = Format(format) if format else None
    except ValueError:
        err.print(f"[red]Invalid --format:[/red] {format}; one of {', '.join(Format)}")
        raise typer.Exit(2) from None
    started = time.perf_counter()
    try:
        with session_scope() as session:
            bot_row = get_bot(session, bot)
            dataset = ensure_dataset(session, bot_row, name, actor=CLI_ACTOR)
            report = import_file(
                session, dataset, file, format=fmt, approve=approve, actor=CLI_ACTOR
            )
    except FormatError as exc:
        err.print(f"[red]Error:[/red] {file}: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    seconds = time.perf_counter() - started
    for e in report.errors[:50]:
        err.print(f"[red]{file}:{e.line}: {e.reason}[/red]", soft_wrap=True)
    if len(report.errors) > 50:
        err.print(f"[red]… and {len(report.errors) - 50} more bad lines[/red]")
    console.print(
        f"{name}: {report.imported} rows imported"
        + (f", {len(report.errors)} bad lines" if report.errors else "")
        + f" in {seconds:.1f} s"
    )
    if report.errors:
        raise typer.Exit(1)


@datasets_app.command("export")
def export(
    bot: BotArg,
    name: NameArg,
    file: Annotated[
        Path, typer.Argument(help="Where to write (.jsonl, .json or .csv).", dir_okay=False)
    ],
    format: Annotated[
        str, typer.Option(help="alpaca, dolly, orca, sharegpt, openai or prompt_completion.")
    ] = "alpaca",
    all_rows: Annotated[
        bool, typer.Option("--all", help="Every row, not only approved and edited ones.")
    ] = False,
    split: Annotated[str | None, typer.Option(help="train or validation only.")] = None,
    version: Annotated[int | None, typer.Option(help="A snapshot version.")] = None,
) -> None:
    """Export the dataset's reviewed rows (or a snapshot) in a trainer's format."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.transfers import describe_refusals, rows_to_export
    from training.formats import Format, FormatError, write_rows

    if split not in (None, "train", "validation"):
        err.print("[red]Invalid --split:[/red] train or validation")
        raise typer.Exit(2)
    try:
        fmt = Format(format)
    except ValueError:
        err.print(f"[red]Invalid --format:[/red] {format}; one of {', '.join(Format)}")
        raise typer.Exit(2) from None
    with session_scope() as session:
        dataset = get_dataset(session, get_bot(session, bot), name)
        rows = rows_to_export(
            session,
            dataset,
            selection="all" if all_rows else "trainable",
            split=split,  # type: ignore[arg-type]
            snapshot_version=version,
        )
    try:
        result = write_rows(rows, file, format=fmt)
    except FormatError as exc:
        err.print(f"[red]Error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if result.refused:
        err.print(
            f"[yellow]{len(result.refused)} rows not written: "
            f"{describe_refusals(result.refused)}[/yellow]",
            soft_wrap=True,
        )
    console.print(f"wrote {result.written} rows to {file} ({fmt.value}, {result.file_type})")


@datasets_app.command("rows")
def rows(
    bot: BotArg,
    name: NameArg,
    status: Annotated[str | None, typer.Option(help="pending, approved, edited, rejected.")] = None,
    source: Annotated[
        str | None, typer.Option(help="generated, correction, imported, manual.")
    ] = None,
    flag: Annotated[str | None, typer.Option(help="A flag, 'any' or 'none'.")] = None,
    category: Annotated[str | None, typer.Option(help="refusal, closed_qa, open_qa, …")] = None,
    text: Annotated[str | None, typer.Option(help="Words in the instruction or output.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
) -> None:
    """List rows with their status, flags and source."""
    from pydantic import ValidationError

    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.rows import RowFilter, list_rows

    try:
        flt = RowFilter(status=status, source=source, flag=flag, category=category, text=text)
    except ValidationError as exc:
        fail(exc)
    table = IdTable("id", "status", "flags", "source", "instruction", "output", ids=("id",))
    with session_scope() as session:
        dataset = get_dataset(session, get_bot(session, bot), name)
        page, total = list_rows(session, dataset, flt, limit=limit)
        for r in page:
            table.add_row(
                r.id,
                r.status,
                ", ".join(f["flag"] for f in r.flags or ()) or "-",
                r.source,
                r.instruction[:80],
                r.output[:120],
            )
    console.print(table)
    console.print(f"{len(page)} of {total} rows")


@datasets_app.command("review")
def review(
    bot: BotArg,
    name: NameArg,
    row_id: Annotated[str, typer.Argument(help="The row's id.")],
    verdict: Annotated[str, typer.Argument(help="approve, edit, reject or reopen.")],
    output: Annotated[str | None, typer.Option(help="The corrected output (edit).")] = None,
) -> None:
    """Give a verdict on one row."""
    from pydantic import ValidationError

    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.rows import RowVerdict, get_row, review_row

    try:
        body = RowVerdict(verdict=verdict, output=output)
    except ValidationError as exc:
        fail(exc)
    with session_scope() as session:
        dataset = get_dataset(session, get_bot(session, bot), name)
        record = review_row(session, get_row(session, dataset, row_id), body, actor=CLI_ACTOR)
        console.print(f"{row_id}: {record.status}")


@datasets_app.command("bulk")
def bulk(
    bot: BotArg,
    name: NameArg,
    verdict: Annotated[str, typer.Argument(help="approve, reject or reopen.")],
    status: Annotated[str | None, typer.Option(help="Only rows with this status.")] = "pending",
    source: Annotated[str | None, typer.Option(help="Only rows from this source.")] = None,
    flag: Annotated[str | None, typer.Option(help="A flag, 'any' or 'none'.")] = None,
    category: Annotated[str | None, typer.Option(help="Only rows of this category.")] = None,
) -> None:
    """One verdict on every row a filter selects (e.g. approve pending unflagged refusal rows)."""
    from pydantic import ValidationError

    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.rows import RowFilter, bulk_review

    if verdict not in ("approve", "reject", "reopen"):
        err.print("[red]Invalid verdict:[/red] approve, reject or reopen")
        raise typer.Exit(2)
    try:
        flt = RowFilter(status=status, source=source, flag=flag, category=category)
    except ValidationError as exc:
        fail(exc)
    with session_scope() as session:
        dataset = get_dataset(session, get_bot(session, bot), name)
        changed = bulk_review(session, dataset, flt, verdict, actor=CLI_ACTOR)  # type: ignore[arg-type]
    console.print(f"{name}: {changed} rows {verdict}d")


@datasets_app.command("check")
def check(bot: BotArg, name: NameArg) -> None:
    """Run the quality checks: duplicates, contradictions, personal data, outdated, empty or cut
    off outputs. Flags rows for review (or redacts personal data, if the bot's policy says so)."""
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset

    async def work(runtime: Any) -> Any:
        from api.db import transaction

        with transaction(runtime.sessions) as session:
            bot_row = get_bot(session, bot)
            return await asyncio.to_thread(
                _check_in_thread, runtime, bot_row.id, get_dataset(session, bot_row, name).id
            )

    started = time.perf_counter()
    report = run(work)
    seconds = time.perf_counter() - started
    flagged = ", ".join(f"{n} {f}" for f, n in report.flags.items()) or "nothing"
    console.print(
        f"{name}: {report.rows} rows checked in {seconds:.1f} s; flagged: {flagged}"
        + (f"; {report.redacted} rows redacted" if report.redacted else "")
    )


def _check_in_thread(runtime: Any, bot_id: str, dataset_id: str) -> Any:
    from api.db import transaction
    from api.models import Bot, Dataset
    from api.services.datasets.quality import check_dataset

    with transaction(runtime.sessions) as session:
        return check_dataset(
            session, runtime, session.get_one(Bot, bot_id), session.get_one(Dataset, dataset_id)
        )


@datasets_app.command("snapshot")
def snapshot(bot: BotArg, name: NameArg) -> None:
    """Freeze the reviewed rows as a new immutable, content-hashed version (with token counts
    from the base model's tokenizer)."""
    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.datasets.catalog import get_dataset
    from api.services.datasets.snapshots import create_snapshot, token_counter

    async def work(runtime: Any) -> tuple[Any, bool]:
        with transaction(runtime.sessions) as session:
            dataset = get_dataset(session, get_bot(session, bot), name)
            return create_snapshot(
                session,
                runtime.settings,
                dataset,
                actor=CLI_ACTOR,
                count_tokens=token_counter(runtime),
            )

    snap, created = run(work, backend=load_settings().backend == "transformers")
    stats = snap.stats
    shares = ", ".join(f"{k} {v:.0%}" for k, v in stats.get("by_source", {}).items())
    verb = "created" if created else "unchanged since"
    console.print(
        f"{name}: {verb} v{snap.version} — {snap.train_rows} train + {snap.validation_rows} "
        f"validation rows, {stats.get('tokens')} tokens"
        f"{' (estimated)' if stats.get('tokens_estimated') else ''}; {shares}; "
        f"sha256 {snap.content_hash[:16]}…",
        soft_wrap=True,
    )


def plan(
    bot: BotArg,
    dataset: Annotated[str | None, typer.Option(help="Count this dataset's reviewed rows.")] = None,
    rows: Annotated[int | None, typer.Option(help="Plan for this many rows instead.")] = None,
    params: Annotated[
        str | None, typer.Option(help="Base model size, e.g. 7B (default: the serving model's).")
    ] = None,
    gpu_memory: Annotated[
        float | None, typer.Option(help="GiB per GPU; 0 for none (CPU only).")
    ] = None,
    gpus: Annotated[int, typer.Option(help="Number of GPUs.")] = 1,
) -> None:
    """Recommend LoRA, QLoRA or a full fine-tune for the dataset and model, with memory estimates
    per method and the reasoning (and its sources)."""
    from api.db import transaction
    from api.services.bots.management import get_bot
    from api.services.datasets.planning import plan_for
    from training.planner import render

    if dataset is None and rows is None:
        err.print("[red]Error:[/red] give --dataset NAME or --rows N")
        raise typer.Exit(2)

    async def work(runtime: Any) -> str:
        with transaction(runtime.sessions) as session:
            result = plan_for(
                session,
                runtime,
                get_bot(session, bot),
                dataset_name=dataset,
                params=params,
                gpu_memory_gib=gpu_memory,
                gpus=gpus,
                rows=rows,
            )
        return render(result)

    needs_model = params is None and load_settings().backend == "transformers"
    print(run(work, backend=needs_model))
