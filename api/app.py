"""The app factory: the single place where settings, database, backend, services and routes meet."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.backends import build_backend
from api.db import make_engine, make_session_factory, transaction
from api.demo import ensure_demo_bot, ingest_demo_documents
from api.deps import bootstrap_admin_secret
from api.errors import install_error_handlers
from api.jobs.handlers import bind as bind_handlers
from api.jobs.worker import WorkerPool
from api.migrate import upgrade
from api.routes import admin, chat, feedback, health, knowledge, models, releases, review
from api.runtime import Runtime
from api.services.access import AccessCache
from api.services.chat import ChatService
from api.services.exchange_writer import ExchangeWriter
from api.services.releases import load_active_adapters
from api.settings import Settings, get_settings
from review_ui import mount_review_ui
from serving.backend import Backend

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, backend: Backend | None = None) -> FastAPI:
    """Build the application. `backend` overrides the one the settings describe (tests, embedding)."""
    settings = settings or get_settings()
    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    backend = backend or build_backend(settings)
    runtime = Runtime(settings=settings, engine=engine, sessions=sessions, backend=backend)
    metrics = runtime.metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.should_auto_migrate:
            await run_in_threadpool(upgrade, settings)
        await backend.start()
        # An upstream that restarted has forgotten the adapters of live and candidate releases.
        await load_active_adapters(runtime)
        if settings.create_demo_bot:
            def seed() -> None:
                with transaction(sessions) as session:
                    created = ensure_demo_bot(session, base_model=settings.model)
                if created is not None:
                    log.info("created the demo bot (slug 'demo'); indexing its documentation")
                    ingest_demo_documents(runtime, created)
            await run_in_threadpool(seed)
        writer.start()
        if settings.run_worker:
            runtime.worker = WorkerPool(sessions, bind_handlers(runtime), lease_s=settings.job_lease_s,
                                        shadow_lanes=settings.shadow_concurrency)
            runtime.worker.start()
        try:
            yield
        finally:
            if runtime.worker is not None:
                runtime.worker.stop()
                await runtime.worker.wait_stopped(timeout=30)
            await backend.close()
            writer.stop()
            engine.dispose()

    app = FastAPI(title="Shadowdesk", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.backend = backend
    app.state.metrics = metrics
    writer = ExchangeWriter(engine)
    runtime.access = AccessCache(sessions, settings.access_cache_ttl_s, bootstrap_admin_secret(settings))
    app.state.access = runtime.access
    app.state.chat = ChatService(runtime, writer)
    install_error_handlers(app)
    for module in (chat, models, feedback, health, admin, knowledge):
        app.include_router(module.router)
    app.include_router(releases.router)
    app.include_router(review.router)
    mount_review_ui(app, runtime)  # staff pages at /review (after the error handlers: it refines them)
    return app
