"""Which function runs each kind of job. Every handler takes the job's context and the runtime."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from api.jobs.worker import Handler, JobContext
from api.runtime import Runtime

RuntimeHandler = (
    Callable[[JobContext, Runtime], dict[str, Any]]
    | Callable[[JobContext, Runtime], Awaitable[dict[str, Any]]]
)


def registry() -> dict[str, RuntimeHandler]:
    """kind -> handler. Imported lazily so that a process only loads the engines its jobs need."""
    from api.services.datasets.generation import run_generation_job
    from api.services.knowledge.jobs import run_ingest_job, run_reembed_job
    from api.services.releases.shadow import run_shadow_job
    from api.services.review.feed import run_review_feed_job
    from api.services.training_runs.runs import run_training_job
    from api.services.widget.handoffs import run_handoff_job

    return {
        "ingest": run_ingest_job,
        "reembed": run_reembed_job,
        "shadow": run_shadow_job,
        "review_feed": run_review_feed_job,
        "dataset_generation": run_generation_job,
        "training": run_training_job,
        "handoff": run_handoff_job,
    }


def bind(runtime: Runtime) -> dict[str, Handler]:
    """The registry with the runtime bound in, ready for a `Worker`."""
    return {kind: _bound(handler, runtime) for kind, handler in registry().items()}


def _bound(handler: RuntimeHandler, runtime: Runtime) -> Handler:
    # Coroutine-ness stays visible to the worker (a functools.partial would hide it on 3.11).
    if inspect.iscoroutinefunction(handler):

        async def run_async(ctx: JobContext) -> dict[str, Any]:
            result: dict[str, Any] = await handler(ctx, runtime)
            return result

        return run_async

    def run(ctx: JobContext) -> dict[str, Any]:
        return handler(ctx, runtime)  # type: ignore[return-value]  # synchronous: narrowed above

    return run
