"""The metrics page: per release review outcomes over time, the decision, thresholds, annotations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import SessionDep
from api.errors import ApiError, InvalidRequest
from api.services.access.staff import require_bot, reviewable_bots
from api.services.bots.management import get_bot
from api.services.review import annotations as annotation_service
from api.services.review import metrics as review_metrics
from review_ui.auth import ViewerDep
from review_ui.charts import DayValue, Threshold, modified_share_chart
from review_ui.rendering import render

router = APIRouter(prefix="/review", include_in_schema=False)

METRICS_SHORTCUTS = [
    ("q", "queue"),
    ("n", "review the next pending item"),
    ("?", "show / hide shortcuts"),
]


@router.get("/metrics")
def metrics_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    bot: str | None = None,
    release: str | None = None,
    days: int = Query(30, ge=1, le=366),
) -> Response:
    bots = reviewable_bots(session, viewer.actor)
    if not bots:
        return render(
            request, "error.html", {"title": "No bots", "message": "You do not review any bot yet."}
        )
    if bot is None:
        return RedirectResponse(f"/review/metrics?bot={bots[0].slug}", status_code=303)
    return _render(request, viewer, session, bot, release, days, None)


def _render(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    slug: str,
    release: str | None,
    days: int,
    threshold_error: str | None,
    status_code: int = 200,
) -> Response:
    selected = require_bot(viewer.actor, get_bot(session, slug))
    m = review_metrics.bot_metrics(session, viewer.actor, selected, days=days)
    shown = next(
        (r for r in m.releases if r.release.id == release), m.releases[0] if m.releases else None
    )
    chart = None
    if shown is not None:
        points = [DayValue(p.day, p.tally.modified_share, p.tally.reviewed) for p in shown.series]
        chart = modified_share_chart(
            points,
            [
                Threshold(m.policy.promote_threshold, "promote ≤", "promote"),
                Threshold(m.policy.retrain_threshold, "retrain ≤", "retrain"),
            ],
            title=f"Modified share per day, release v{shown.release.version}",
        )
    return render(
        request,
        "metrics.html",
        {
            "viewer": viewer,
            "bots": reviewable_bots(session, viewer.actor),
            "selected": selected,
            "m": m,
            "shown": shown,
            "chart": chart,
            "thresholds": review_metrics.thresholds(m.policy),
            "annotations": annotation_service.list_annotations(session, selected.id, limit=100),
            "answered": annotation_service.answered_counts(session, selected.id),
            "threshold_error": threshold_error,
            "shortcuts": METRICS_SHORTCUTS,
            "title": f"Metrics {selected.slug}",
            "nav": "metrics",
            "query": f"bot={selected.slug}",
        },
        status_code=status_code,
    )


@router.post("/bots/{slug}/thresholds", response_model=None)
def save_thresholds(
    request: Request,
    slug: str,
    viewer: ViewerDep,
    session: SessionDep,
    min_reviews: Annotated[str, Form()],
    promote_threshold: Annotated[str, Form()],
    retrain_threshold: Annotated[str, Form()],
    annotation_similarity: Annotated[str, Form()],
    annotations_enabled: Annotated[bool, Form()] = False,
) -> Response:
    """Admins change a bot's thresholds from the metrics page (shares typed as percentages)."""
    bot = require_bot(viewer.actor, get_bot(session, slug))
    try:
        changes = review_metrics.ThresholdUpdate(
            min_reviews=int(min_reviews),
            promote_threshold=_fraction(promote_threshold),
            retrain_threshold=_fraction(retrain_threshold),
            annotation_similarity=_fraction(annotation_similarity),
            annotations_enabled=annotations_enabled,
        )
        review_metrics.update_thresholds(session, viewer.actor, bot, changes)
    except (
        ValueError,
        ValidationError,
        InvalidRequest,
    ) as exc:  # refused before anything was written
        message = (
            exc.message
            if isinstance(exc, ApiError)
            else "Thresholds must be numbers: reviews ≥ 1, shares between 0 and 100 %."
        )
        return _render(request, viewer, session, slug, None, 30, message, status_code=400)
    return RedirectResponse(f"/review/metrics?bot={slug}", status_code=303)


@router.post("/annotations/{annotation_id}/toggle")
def toggle_annotation(
    request: Request,
    annotation_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    enabled: Annotated[bool, Form()] = False,
) -> Response:
    """htmx: switch an annotation on or off; answers with its updated table row."""
    row = annotation_service.set_enabled(session, viewer.actor, annotation_id, enabled)
    page = render(
        request,
        "partials/annotation_row.html",
        {
            "a": row,
            "viewer": viewer,
            "answered": annotation_service.answered_counts(session, row.bot_id),
        },
    )
    return page


def _fraction(percent: str) -> float:
    return float(percent.strip().rstrip("%")) / 100
