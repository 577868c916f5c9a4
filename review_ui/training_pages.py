"""Training pages: each bot's runs with their status and gate verdict; one run with its progress,
loss chart, evaluation report (live against the adapter, question by question) and the candidate
release it registered. Admins start and cancel runs here."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import SessionDep
from api.errors import InvalidRequest
from api.models import Dataset, Release
from api.services.access.staff import require_admin, require_bot, reviewable_bots
from api.services.bots.management import get_bot
from api.services.datasets import catalog
from api.services.training_runs import runs as run_service
from review_ui.auth import ViewerDep
from review_ui.charts import loss_chart
from review_ui.rendering import render
from training.config import TrainConfig

router = APIRouter(prefix="/review", include_in_schema=False)


@router.get("/training")
def training_page(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    listing = [
        (bot, run_service.list_runs(session, bot), catalog.list_datasets(session, bot))
        for bot in reviewable_bots(session, viewer.actor)
    ]
    return render(
        request,
        "training.html",
        {"title": "Training", "viewer": viewer, "nav": "training", "listing": listing},
    )


@router.post("/bots/{slug}/training-runs")
def start_run(
    viewer: ViewerDep,
    session: SessionDep,
    slug: str,
    dataset: Annotated[str, Form()] = run_service.DEFAULT_DATASET,
    method: Annotated[Literal["qlora", "lora", "full"], Form()] = "lora",
    max_steps: Annotated[int | None, Form()] = None,
    gate_rows: Annotated[int, Form()] = 20,
) -> Response:
    """Admins queue a run; the worker trains it and the run page follows it."""
    require_admin(viewer.actor)
    bot = require_bot(viewer.actor, get_bot(session, slug))
    try:
        data = run_service.RunCreate(
            dataset=dataset,
            config=TrainConfig(method=method, max_steps=max_steps),
            gate_rows=gate_rows,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(f"{first['loc'][-1]}: {first['msg']}") from exc
    run = run_service.start_run(session, bot, data, actor=viewer.actor)
    return RedirectResponse(f"/review/bots/{slug}/training-runs/{run.id}", status_code=303)


@router.get("/bots/{slug}/training-runs/{run_id}")
def run_page(
    request: Request, viewer: ViewerDep, session: SessionDep, slug: str, run_id: str
) -> Response:
    bot = require_bot(viewer.actor, get_bot(session, slug))
    run = run_service.get_run(session, bot, run_id)
    release = session.get(Release, run.release_id) if run.release_id else None
    dataset = session.get(Dataset, run.dataset_id) if run.dataset_id else None
    return render(
        request,
        "training_run.html",
        {
            "title": f"{run.name or run.id} · {bot.slug}",
            "viewer": viewer,
            "nav": "training",
            "bot": bot,
            "run": run,
            "dataset": dataset,
            "release": release,
            "live": run.status in run_service.ACTIVE,
            "chart": loss_chart(run.losses or [], title=f"Training loss of {run.name or run.id}"),
        },
    )


@router.post("/bots/{slug}/training-runs/{run_id}/cancel")
def cancel_run(viewer: ViewerDep, session: SessionDep, slug: str, run_id: str) -> Response:
    require_admin(viewer.actor)
    bot = require_bot(viewer.actor, get_bot(session, slug))
    run_service.cancel_run(session, run_service.get_run(session, bot, run_id), actor=viewer.actor)
    return RedirectResponse(f"/review/bots/{slug}/training-runs/{run_id}", status_code=303)
