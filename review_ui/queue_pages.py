"""The queue page and "review the next item"."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep
from api.services.access.staff import Actor, reviewable_bots
from api.services.releases.lifecycle import list_releases
from api.services.review import verdicts as reviews
from api.services.review.queue import (
    REJECT_REASONS,
    STATUSES,
    QueueFilter,
    list_queue,
    resolve_filter,
)
from review_ui.auth import ViewerDep
from review_ui.rendering import render

router = APIRouter(prefix="/review", include_in_schema=False)

QUEUE_REASONS = ("thumbs_down", "disagreement", "low_retrieval", "novel", "sampled")
QUEUE_SHORTCUTS = [
    ("j / k", "select next / previous row"),
    ("o or Enter", "open the selected item"),
    ("n", "review the next pending item"),
    ("m", "metrics"),
    ("?", "show / hide shortcuts"),
]


def page_filter(
    session: SessionDep,
    actor: Actor,
    bot: str | None,
    status: str = "pending",
    reason: str | None = None,
    release: str | None = None,
) -> tuple[QueueFilter, Any]:
    """The queue filter from a page's query (bot by slug) and the bot it names."""
    return resolve_filter(session, actor, bot=bot, status=status, reason=reason, release=release)


def filter_query(flt: QueueFilter, bot: Any, **extra: str | None) -> str:
    """The filter (bot by slug) as a query string, for links that keep it."""
    pairs = {
        "bot": bot.slug if bot else None,
        "status": flt.status,
        "reason": flt.reason,
        "release": flt.release_id,
        **extra,
    }
    return urlencode({k: v for k, v in pairs.items() if v})


@router.get("", response_model=None)
def home() -> Response:
    return RedirectResponse("/review/queue", status_code=303)


@router.get("/queue")
def queue_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    bot: str | None = None,
    status: str = "pending",
    reason: str | None = None,
    release: str | None = None,
    offset: int = Query(0, ge=0, le=10_000_000),
    empty: bool = False,
) -> Response:
    flt, selected = page_filter(session, viewer.actor, bot, status, reason, release)
    page = list_queue(session, viewer.actor, flt, limit=50, offset=offset)
    bots = reviewable_bots(session, viewer.actor)
    return render(
        request,
        "queue.html",
        {
            "viewer": viewer,
            "bots": bots,
            "selected": selected,
            "flt": flt,
            "page": page,
            "statuses": STATUSES,
            "reasons": QUEUE_REASONS + REJECT_REASONS,
            "releases": list_releases(session, selected.slug) if selected else [],
            "query": filter_query(flt, selected),
            "base_query": filter_query(flt, selected, status=None),
            "empty": empty,
            "shortcuts": QUEUE_SHORTCUTS,
            "title": "Review queue",
            "nav": "queue",
        },
    )


@router.get("/next", response_model=None)
def next_item(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    bot: str | None = None,
    reason: str | None = None,
    release: str | None = None,
    prev: str | None = None,
) -> Response:
    """Lock the next pending item nobody else holds and open it (back to the queue when none is left)."""
    flt, selected = page_filter(session, viewer.actor, bot, "pending", reason, release)
    item = reviews.lock_next(
        session, viewer.actor, flt, lock_s=request.app.state.settings.review_lock_s
    )
    if item is None:
        return RedirectResponse(
            f"/review/queue?{filter_query(flt, selected, empty='1')}", status_code=303
        )
    return RedirectResponse(
        f"/review/items/{item.id}?{filter_query(flt, selected, prev=prev)}", status_code=303
    )
