"""Dataset pages: a bot's training rows with filters and bulk verdicts, and one row beside its source
chunk with the same keyboard-first flow as shadow answers (approve, edit, flag invalid, next)."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import RuntimeDep, SessionDep
from api.errors import ApiError, InvalidRequest
from api.models import Bot, Dataset, DatasetRow
from api.services.access.staff import require_bot, reviewable_bots
from api.services.bots.management import get_bot
from api.services.datasets import catalog
from api.services.datasets import rows as row_service
from api.services.knowledge.config import knowledge_of
from review_ui.auth import ViewerDep
from review_ui.rendering import render

log = logging.getLogger(__name__)
router = APIRouter(prefix="/review", include_in_schema=False)

PER_PAGE = 50
LIST_SHORTCUTS = [
    ("j / k", "select the next / previous row"),
    ("o or Enter", "open the selected row"),
    ("?", "show / hide shortcuts"),
]
ROW_SHORTCUTS = [
    ("a", "approve"),
    ("e", "edit the output, then Ctrl+Enter to save"),
    ("x", "flag invalid (reject)"),
    ("u", "back to pending"),
    ("j / k", "next / previous row"),
    ("d", "back to the dataset"),
    ("Esc", "close the editor"),
    ("?", "show / hide shortcuts"),
]
FILTERS = ("status", "source", "flag", "category", "text")


def _filter(params: dict[str, str | None]) -> row_service.RowFilter:
    try:
        return row_service.RowFilter(**{k: v or None for k, v in params.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(
            f"{first['loc'][0]}: {first['msg']}", param=str(first["loc"][0])
        ) from exc


def _dataset(session: SessionDep, viewer: ViewerDep, slug: str, name: str) -> tuple[Bot, Dataset]:
    bot = require_bot(viewer.actor, get_bot(session, slug))
    return bot, catalog.get_dataset(session, bot, name)


@router.get("/datasets")
def datasets_page(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    bots = reviewable_bots(session, viewer.actor)
    listing = [(bot, catalog.list_datasets(session, bot)) for bot in bots]
    return render(
        request,
        "datasets.html",
        {"title": "Datasets", "viewer": viewer, "nav": "datasets", "listing": listing},
    )


@router.get("/bots/{slug}/datasets/{name}")
def dataset_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    slug: str,
    name: str,
    status: str | None = "pending",
    source: str | None = None,
    flag: str | None = None,
    category: str | None = None,
    text: str | None = Query(None, max_length=200),
    page: int = Query(1, ge=1, le=100_000),
    done: int | None = None,
) -> Response:
    bot, dataset = _dataset(session, viewer, slug, name)
    params = {"status": status, "source": source, "flag": flag, "category": category, "text": text}
    flt = _filter(params)
    rows, total = row_service.list_rows(
        session, dataset, flt, limit=PER_PAGE, offset=(page - 1) * PER_PAGE
    )
    query = urlencode({k: v for k, v in params.items() if v})
    return render(
        request,
        "dataset.html",
        {
            "title": f"{dataset.name} · {bot.slug}",
            "viewer": viewer,
            "nav": "datasets",
            "bot": bot,
            "dataset": dataset,
            "rows": rows,
            "total": total,
            "page": page,
            "more": page * PER_PAGE < total,
            "filters": {k: v or "" for k, v in params.items()},
            "query": query,
            "counts": row_service.status_counts(session, dataset),
            "done": done,
            "shortcuts": LIST_SHORTCUTS,
        },
    )


@router.post("/bots/{slug}/datasets/{name}/bulk")
def bulk_verdict(
    viewer: ViewerDep,
    session: SessionDep,
    slug: str,
    name: str,
    verdict: Annotated[Literal["approve", "reject", "reopen"], Form()],
    status: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    flag: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    _, dataset = _dataset(session, viewer, slug, name)
    params: dict[str, str | None] = {
        "status": status,
        "source": source,
        "flag": flag,
        "category": category,
        "text": text,
    }
    changed = row_service.bulk_review(
        session,
        dataset,
        _filter(params),
        verdict,
        actor=viewer.actor,
    )
    query = urlencode({**{k: v for k, v in params.items() if v}, "done": changed})
    return RedirectResponse(f"/review/bots/{slug}/datasets/{name}?{query}", status_code=303)


def _neighbours(
    session: SessionDep, dataset: Dataset, flt: row_service.RowFilter, row_id: str
) -> tuple[str | None, str | None]:
    ids = [r.id for r in row_service.iter_rows(session, dataset, flt)]
    if row_id not in ids:
        return (ids[0] if ids else None), None
    at = ids.index(row_id)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def _source_chunk(runtime: Any, bot: Bot, record: DatasetRow) -> dict[str, Any] | None:
    if not record.chunk_id:
        return None
    config = knowledge_of(bot.knowledge)
    try:
        chunk = runtime.knowledge.base(runtime.knowledge.spec(config)).stored_chunk(
            bot.id, record.chunk_id
        )
    except Exception:  # the store unreachable: the page still works without the chunk
        log.exception("could not read chunk %s of bot %s", record.chunk_id, bot.slug)
        return {"missing": True, "reason": "the knowledge store could not be read"}
    if chunk is None:
        return {"missing": True, "reason": "its document was re-ingested or deleted since"}
    return {
        "missing": False,
        "text": chunk.text,
        "source": chunk.metadata.get("source", ""),
        "heading": chunk.metadata.get("heading", ""),
    }


@router.get("/bots/{slug}/datasets/{name}/rows/{row_id}")
def row_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    runtime: RuntimeDep,
    slug: str,
    name: str,
    row_id: str,
    status: str | None = None,
    source: str | None = None,
    flag: str | None = None,
    category: str | None = None,
    text: str | None = Query(None, max_length=200),
    error: str | None = None,
) -> Response:
    bot, dataset = _dataset(session, viewer, slug, name)
    record = row_service.get_row(session, dataset, row_id)
    params = {"status": status, "source": source, "flag": flag, "category": category, "text": text}
    previous, following = _neighbours(session, dataset, _filter(params), row_id)
    query = urlencode({k: v for k, v in params.items() if v})
    return render(
        request,
        "dataset_row.html",
        {
            "title": f"Row · {dataset.name}",
            "viewer": viewer,
            "nav": "datasets",
            "bot": bot,
            "dataset": dataset,
            "row": record,
            "chunk": _source_chunk(runtime, bot, record),
            "previous": previous,
            "next": following,
            "query": query,
            "error": error,
            "split": row_service.split_of(record.instruction, dataset.validation_share),
            "shortcuts": ROW_SHORTCUTS,
        },
    )


@router.post("/bots/{slug}/datasets/{name}/rows/{row_id}")
def review_row(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    slug: str,
    name: str,
    row_id: str,
    verdict: Annotated[str, Form()],
    output: Annotated[str | None, Form()] = None,
    query: Annotated[str, Form()] = "",
    next_row: Annotated[str, Form()] = "",
) -> Response:
    _, dataset = _dataset(session, viewer, slug, name)
    record = row_service.get_row(session, dataset, row_id)
    base = f"/review/bots/{slug}/datasets/{name}"
    try:
        body = row_service.RowVerdict(verdict=verdict, output=output)
        row_service.review_row(session, record, body, actor=viewer.actor)
    except (ValidationError, ApiError) as exc:
        message = exc.message if isinstance(exc, ApiError) else "Choose approve, edit or reject."
        extra = urlencode({"error": message})
        return RedirectResponse(
            f"{base}/rows/{row_id}?{query}{'&' if query else ''}{extra}", status_code=303
        )
    # On to the next row of the same selection; back to the list when there is none.
    target = f"{base}/rows/{next_row}" if next_row else base
    return RedirectResponse(f"{target}{'?' + query if query else ''}", status_code=303)
