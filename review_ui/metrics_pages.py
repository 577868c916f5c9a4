"""The metrics page: per release review outcomes over time, the decision, thresholds, annotations."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from anyio import from_thread
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import RuntimeDep, SessionDep
from api.errors import ApiError, Conflict, InvalidRequest
from api.services.access.staff import require_admin, require_bot, reviewable_bots
from api.services.bots.management import get_bot
from api.services.releases import lifecycle
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
    release_error: str | None = None,
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
            "release_error": release_error,
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


@router.post("/annotations/{annotation_id}/approve")
def approve_annotation(
    request: Request, annotation_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    """htmx: a second reviewer approves an annotation (four-eyes bots); answers with its row."""
    row = annotation_service.approve(session, viewer.actor, annotation_id)
    return render(
        request,
        "partials/annotation_row.html",
        {
            "a": row,
            "viewer": viewer,
            "answered": annotation_service.answered_counts(session, row.bot_id),
        },
    )


@router.post("/bots/{slug}/releases/{release_id}/promote", response_model=None)
def promote_release(
    request: Request,
    slug: str,
    release_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    runtime: RuntimeDep,
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Admins promote a candidate from its decision card. A release whose decision is not "promote"
    needs the explicit "promote anyway" confirmation (`force`), which the audit log records."""
    require_admin(viewer.actor)
    try:
        release = lifecycle.view_release(session, slug, release_id)
        from_thread.run(
            partial(
                lifecycle.ensure_servable,
                runtime,
                adapter=release.adapter,
                adapter_path=release.adapter_path,
            )
        )
        lifecycle.promote(session, slug, release_id, actor=viewer.actor, force=force)
    except (Conflict, InvalidRequest) as exc:  # refused before anything was written
        return _render(request, viewer, session, slug, None, 30, None, exc.status_code, exc.message)
    session.commit()  # the move is final before the adapter it retired is unloaded
    from_thread.run(lifecycle.unload_retired_adapters, runtime)
    return RedirectResponse(f"/review/metrics?bot={slug}", status_code=303)


@router.post("/bots/{slug}/rollback", response_model=None)
def rollback_release(
    request: Request, slug: str, viewer: ViewerDep, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Admins restore the bot as it was before its last promotion (live release and candidates)."""
    require_admin(viewer.actor)
    bot = get_bot(session, slug)
    target = lifecycle.rollback_target(session, bot)
    try:
        if target is not None:
            release = lifecycle.get_release(session, bot, target[0])
            from_thread.run(
                partial(
                    lifecycle.ensure_servable,
                    runtime,
                    adapter=release.adapter,
                    adapter_path=release.adapter_path,
                )
            )
        lifecycle.rollback(session, slug, actor=viewer.actor)
    except (Conflict, InvalidRequest) as exc:
        return _render(request, viewer, session, slug, None, 30, None, exc.status_code, exc.message)
    session.commit()
    from_thread.run(lifecycle.unload_retired_adapters, runtime)
    return RedirectResponse(f"/review/metrics?bot={slug}", status_code=303)


def _fraction(percent: str) -> float:
    return float(percent.strip().rstrip("%")) / 100
