"""The app factory: mounts routes and the review UI on a runtime built by `build_runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.body_limit import BodyLimit
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.nul_guard import NulGuard
from api.routes import (
    admin,
    chat,
    datasets,
    feedback,
    health,
    knowledge,
    models,
    releases,
    review,
    training,
    widget,
)
from api.runtime import Runtime, build_runtime
from api.services.chat.service import ChatService
from api.settings import Settings, get_settings
from review_ui import mount_review_ui
from serving.backend import Backend


def create_app(settings: Settings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """Build the application. `backend` overrides the one the settings describe (tests, embedding)."""
    runtime = build_runtime(settings or get_settings(), backend=backend)
    return app_for(runtime)


def app_for(runtime: Runtime) -> FastAPI:
    """The HTTP application over `runtime`; its lifespan starts and stops the runtime."""
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start(worker=settings.run_worker, demo=True)
        try:
            yield
        finally:
            await runtime.stop()

    docs = settings.docs_enabled  # off in production unless asked for: no map for a stranger
    app = FastAPI(
        title="Shadowdesk",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        responses=ERROR_RESPONSES,  # every operation documents the envelope it errs with
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.engine = runtime.engine
    app.state.sessions = runtime.sessions
    app.state.backend = runtime.backend
    app.state.metrics = runtime.metrics
    app.state.access = runtime.access
    app.state.chat = ChatService(runtime)
    install_error_handlers(app)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            chat.add_request_schemas(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    for module in (
        chat,
        models,
        feedback,
        health,
        admin,
        knowledge,
        releases,
        review,
        datasets,
        training,
        widget,
    ):
        app.include_router(module.router)
    app.add_middleware(widget.WidgetCors)
    app.add_middleware(NulGuard)
    app.add_middleware(
        BodyLimit,
        json_limit=settings.max_request_bytes,
        upload_limit=settings.max_upload_request_bytes,
    )
    mount_review_ui(
        app, runtime
    )  # staff pages at /review (after the error handlers: it refines them)
    return app
