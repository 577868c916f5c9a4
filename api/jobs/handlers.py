"""Which function runs each kind of job. Every handler takes the job's context and the runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from api.jobs.worker import Handler, JobContext
from api.runtime import Runtime

RuntimeHandler = Callable[[JobContext, Runtime], dict[str, Any]] | Callable[
    [JobContext, Runtime], Awaitable[dict[str, Any]]
]


def registry() -> dict[str, RuntimeHandler]:
    """kind -> handler. Imported lazily so that a process only loads the engines its jobs need."""
    from api.services.knowledge.jobs import run_ingest_job, run_reembed_job
    from api.services.releases.shadow import run_shadow_job
    from api.services.review.feed import run_review_feed_job

    return {
        "ingest": run_ingest_job,
        "reembed": run_reembed_job,
        "shadow": run_shadow_job,
        "review_feed": run_review_feed_job,
    }


def bind(runtime: Runtime) -> dict[str, Handler]:
    """The registry with the runtime bound in, ready for a `Worker`."""
    bound: dict[str, Handler] = {}
    for kind, handler in registry().items():
        fn = partial(handler, runtime=runtime)
        # Keep coroutine-ness visible to the worker (partial hides it from inspect on 3.11).
        if _is_async(handler):
            async def run(ctx: JobContext, _h: Any = handler) -> dict[str, Any]:
                return await _h(ctx, runtime=runtime)
            bound[kind] = run
        else:
            bound[kind] = fn  # type: ignore[assignment]
    return bound


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
