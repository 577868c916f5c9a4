"""The staff review UI: server-rendered pages (Jinja2 + htmx, assets vendored) under `/review`.

It uses `api` services only, never the database directly. `mount_review_ui(app, runtime)` is called
once by the app factory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from api.errors import ApiError
from api.runtime import Runtime
from review_ui import (
    audit_pages,
    auth,
    dataset_pages,
    item_pages,
    login_pages,
    metrics_pages,
    queue_pages,
    training_pages,
    widget_pages,
)
from review_ui.rendering import render

STATIC_DIR = Path(__file__).parent / "static"


def mount_review_ui(app: FastAPI, runtime: Runtime) -> None:
    """Add the staff pages at `/review` and their assets at `/review/static` to `app`.

    Call after the API's error handlers are installed: errors on staff pages become HTML pages,
    everywhere else they keep the JSON envelope. `runtime` is where pages find the annotation
    matcher to refresh after a change.
    """
    app.state.runtime = runtime  # pages reach the annotation matcher through it
    for module in (
        login_pages,
        queue_pages,
        item_pages,
        metrics_pages,
        audit_pages,
        dataset_pages,
        training_pages,
        widget_pages,
    ):
        app.include_router(module.router)
    app.mount("/review/static", StaticFiles(directory=STATIC_DIR), name="review-static")
    auth.install_handlers(app)
    json_errors = app.exception_handlers.get(ApiError)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        path = request.url.path
        if json_errors is None or path == "/review" or path.startswith("/review/"):
            return render(
                request,
                "error.html",
                {
                    "title": _TITLES.get(exc.status_code, "Something went wrong"),
                    "message": exc.message,
                },
                status_code=exc.status_code,
            )
        # The JSON handler api.errors installs is a coroutine; Starlette types handlers as sync-or-async.
        return await json_errors(request, exc)  # type: ignore[misc]

    app.add_exception_handler(ApiError, api_error)


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Someone else has this", 400: "Not accepted"}
