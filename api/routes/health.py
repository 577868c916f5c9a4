"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.db import transaction
from api.deps import admin_key, bearer_token, current_key

router = APIRouter()
READY_CHECK_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, str] = {}

    def ping_db() -> None:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # Each check has a few seconds: a dependency that hangs makes the probe say so, not hang it.
    try:
        await asyncio.wait_for(run_in_threadpool(ping_db), READY_CHECK_S)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        healthy = await asyncio.wait_for(state.backend.health(), READY_CHECK_S)
        checks["model"] = "ok" if healthy else "not loaded"
    except Exception as exc:  # noqa: BLE001
        checks["model"] = f"error: {type(exc).__name__}"
    runtime = state.runtime
    if runtime.settings.chroma_url or runtime.knowledge_opened:
        try:
            healthy = await asyncio.wait_for(
                run_in_threadpool(lambda: runtime.knowledge.healthy()), READY_CHECK_S
            )
        except TimeoutError:
            healthy = False
        checks["vector_store"] = "ok" if healthy else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics. Needs `SHADOWDESK_METRICS_TOKEN` (or an admin key) when one is set, and
    always in production: request counts by bot are not for strangers."""
    settings = request.app.state.settings
    if settings.metrics_token is not None or settings.environment == "production":
        token = bearer_token(request)
        expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        if not (token and expected and secrets.compare_digest(token.encode(), expected.encode())):

            def check_admin() -> None:
                with transaction(request.app.state.sessions) as session:
                    admin_key(current_key(request, session))  # the admin API's own check

            await run_in_threadpool(check_admin)
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
