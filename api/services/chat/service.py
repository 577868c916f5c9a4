"""Answering a chat request, in one place: access, validation, planning (annotation, guard,
retrieval, prompt), generation, and the stored exchange, as a stream of domain events.

The exchange row is written once, when the outcome is known, and always *before* the caller sees
`AnswerDone`: an answer a client saw is never lost. A caller that goes away mid-stream leaves the row
marked `interrupted` with what had been generated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.errors import ApiError, InvalidRequest, UpstreamFailed, UpstreamTimeout
from api.runtime import Runtime
from api.schemas.openai import ChatCompletionRequest
from api.services.access.cache import KeyGrant
from api.services.chat.answer_plan import plan_answer
from api.services.chat.events import AnswerDone, AnswerFailed, AnswerText, ChatEvent, Generation
from api.services.chat.exchanges import ExchangeRecord
from api.services.chat.turn import ChatTurn, build_turn, validate_request
from serving.backend import (
    AdapterMissing,
    BackendError,
    BackendRejected,
    BackendTimeout,
    Finished,
    PromptTooLong,
    StreamEvent,
    TextDelta,
)

log = logging.getLogger(__name__)


@dataclass
class ChatAnswer:
    """A started answer: the turn it belongs to, and its events. For a stream, the first event is
    already in hand (so a backend that fails before answering is an HTTP error, not a broken
    stream); the rest follow as the model generates."""

    turn: ChatTurn
    events: AsyncIterator[ChatEvent]

    async def collect(self) -> tuple[Generation, AnswerDone]:
        """The whole answer (raises the API error of a failed generation)."""
        text: list[str] = []
        async for event in self.events:
            if isinstance(event, AnswerText):
                text.append(event.text)
            elif isinstance(event, AnswerFailed):
                raise event.error
            else:
                generation = Generation(
                    answer="".join(text),
                    finish_reason=event.finish_reason,
                    prompt_tokens=event.usage.prompt_tokens,
                    completion_tokens=event.usage.completion_tokens,
                )
                return generation, event
        raise RuntimeError("the answer ended without a final event")


class ChatService:
    """Runs turns against the backend and stores their exchanges."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.writer = runtime.writer
        self.backend = runtime.backend
        self.metrics = runtime.metrics

    async def answer(
        self,
        request: ChatCompletionRequest,
        *,
        token: str | None,
        conversation_id: str | None,
        grant: KeyGrant | None = None,
    ) -> ChatAnswer:
        """Check access, validate, decide how to answer, and start answering. Raises `ApiError`
        for anything that fails before the first piece of the answer (nothing is stored for bad
        input). `grant` skips the key check (the terminal chat of an operator)."""
        turn = await self._turn(request, token, conversation_id, grant)
        turn.plan = await plan_answer(turn, self.runtime)
        events = self.stream(turn)
        first = await anext(events)
        if isinstance(first, AnswerFailed):
            raise first.error
        return ChatAnswer(turn, _prepend(first, events))

    async def _turn(
        self,
        request: ChatCompletionRequest,
        token: str | None,
        conversation_id: str | None,
        grant: KeyGrant | None,
    ) -> ChatTurn:
        access = self.runtime.access
        if grant is None:
            hit = access.cached(token, request.model)
            found = (
                hit
                if hit is not None
                else await run_in_threadpool(access.resolve, token, request.model)
            )
            grant, bot = found
        else:
            bot = await run_in_threadpool(access.bot, request.model)
        validate_request(request, self.settings)
        return build_turn(
            request, grant=grant, bot=bot, conversation_id=conversation_id, settings=self.settings
        )

    async def stream(self, turn: ChatTurn) -> AsyncGenerator[ChatEvent, None]:
        """Generate the planned answer as events; the exchange is stored before `AnswerDone` (or
        `AnswerFailed`) is yielded, or as `interrupted` when the consumer stops early."""
        events = aiter(self._backend_events(turn))
        outcome = Generation()
        deadline = asyncio.get_running_loop().time() + self.settings.backend_timeout_s
        # A per-chunk timer costs ~10 us a token; skip it when the backend bounds its own waits
        # (the first event is always timed: nothing bounds a backend that never starts).
        timed = not (self.backend.bounds_waits and turn.plan.direct_answer is None)
        first = True
        try:
            while True:
                if timed or first:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                else:
                    event = await anext(events)
                first = False
                self._apply(turn, outcome, event)
                if isinstance(event, Finished):
                    break
                if event.text:
                    yield AnswerText(event.text)
        except (asyncio.CancelledError, GeneratorExit):
            # The consumer went away: keep what was generated, marked interrupted.
            outcome.status, outcome.finish_reason = "interrupted", "interrupted"
            await _close_quietly(events)
            await asyncio.shield(self._store(turn, outcome))
            raise
        except BaseException as exc:
            await _close_quietly(events)
            yield AnswerFailed(await self._fail(turn, outcome, exc))
            return
        citations = await self._store(turn, outcome)
        yield AnswerDone(
            outcome.finish_reason,
            outcome.usage,
            citations,
            outcome.status == "refused",
            list(turn.plan.flags),
        )

    def _backend_events(self, turn: ChatTurn) -> AsyncIterator[StreamEvent]:
        if turn.plan.direct_answer is not None:
            return _direct(turn.plan.direct_answer)
        adapter, path = turn.bot.adapter, turn.bot.adapter_path
        if adapter is None or path is None:
            return self.backend.stream(turn.prompt, turn.params, adapter)
        return self._stream_with_adapter(turn, adapter, path)

    async def _stream_with_adapter(
        self, turn: ChatTurn, adapter: str, path: str
    ) -> AsyncIterator[StreamEvent]:
        """Answer with the release's adapter: loaded first when this process has not loaded it
        (another process promoted it), and once more when the backend says it lost it (a vLLM
        restart). Nothing was generated then, so that retry is safe."""
        await self.runtime.ensure_adapter(adapter, path)
        events = self.backend.stream(turn.prompt, turn.params, adapter)
        try:
            try:
                first = await anext(events)
            except AdapterMissing:
                await _close_quietly(events)
                await self.runtime.reload_adapter(adapter, path)
                events = self.backend.stream(turn.prompt, turn.params, adapter)
                first = await anext(events)
            yield first
            async for event in events:
                yield event
        finally:
            await _close_quietly(events)

    def _apply(self, turn: ChatTurn, outcome: Generation, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            if outcome.ttft_ms is None and event.text:
                outcome.ttft_ms = (time.perf_counter() - turn.started) * 1000
            outcome.answer += event.text
        else:
            outcome.finish_reason = event.finish_reason
            outcome.prompt_tokens = event.prompt_tokens
            outcome.completion_tokens = event.completion_tokens
            if event.finish_reason == "error":
                raise BackendError("the backend reported an error while generating")

    async def _fail(self, turn: ChatTurn, outcome: Generation, exc: BaseException) -> ApiError:
        """Store the failed exchange and say which API error the caller gets."""
        if isinstance(exc, PromptTooLong) or (
            isinstance(exc, BackendRejected) and not outcome.answer
        ):
            # Bad input (the engine refused it before answering): nothing stored.
            self.metrics.errors.labels(turn.bot_slug, "invalid_request_error").inc()
            code = (
                "context_length_exceeded"
                if isinstance(exc, PromptTooLong) or exc.context_length
                else "rejected_by_model"
            )
            return InvalidRequest(str(exc), param="messages", code=code)
        api_error: ApiError
        if isinstance(exc, (TimeoutError, BackendTimeout)):
            api_error = UpstreamTimeout(
                f"The model did not answer within {self.settings.backend_timeout_s:g} s."
            )
        elif isinstance(exc, BackendError):
            api_error = UpstreamFailed(f"The model backend failed: {exc}")
        else:
            log.exception("backend raised an unexpected error", exc_info=exc)
            api_error = UpstreamFailed(
                f"The model backend failed unexpectedly: {type(exc).__name__}"
            )
        outcome.status, outcome.finish_reason, outcome.error = "error", "error", api_error.message
        self.metrics.errors.labels(turn.bot_slug, api_error.code or api_error.type).inc()
        await self._store(turn, outcome)
        return api_error

    async def _store(self, turn: ChatTurn, outcome: Generation) -> list[dict[str, Any]] | None:
        """Commit the exchange (with the background jobs it starts) and return its citations."""
        plan = turn.plan
        outcome.latency_ms = (time.perf_counter() - turn.started) * 1000
        if outcome.status == "completed" and plan.status == "refused":
            outcome.status = "refused"
        citations = _citations(turn, outcome.answer) if outcome.status == "completed" else None
        record = ExchangeRecord(
            id=turn.exchange_id,
            bot_id=turn.bot.id,
            conversation_id=turn.conversation_id,
            release_id=turn.bot.release_id,
            api_key_id=turn.api_key_id,
            messages=turn.client_messages,
            params=turn.params.to_dict(),
            answer=outcome.answer,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            error=outcome.error,
            streamed=turn.stream,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            latency_ms=outcome.latency_ms,
            ttft_ms=outcome.ttft_ms,
            created_at=turn.received_at,
            passages=plan.passages,
            citations=citations or [],
            guard=plan.guard,
            flags=plan.flags,
            annotation_id=plan.annotation_id,
        )
        jobs = follow_up_jobs(turn, outcome.status)
        await self.writer.write(record, jobs)
        if jobs:
            self.runtime.notify_worker()  # the writer commits outside any session: no hook fires
        m, bot = self.metrics, turn.bot_slug
        m.requests.labels(bot, outcome.status).inc()
        m.latency.labels(bot).observe(outcome.latency_ms / 1000)
        if outcome.ttft_ms is not None and turn.stream:
            m.ttft.labels(bot).observe(outcome.ttft_ms / 1000)
        m.tokens.labels(bot, "prompt").inc(outcome.prompt_tokens)
        m.tokens.labels(bot, "completion").inc(outcome.completion_tokens)
        if plan.annotation_id is not None:
            m.annotation_hits.labels(bot).inc()
        return citations


async def _prepend(
    first: ChatEvent, rest: AsyncGenerator[ChatEvent, None]
) -> AsyncIterator[ChatEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        # Closing this generator (the client went away) closes the answer's, which stores it as
        # interrupted.
        await rest.aclose()


async def _close_quietly(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is None:
        return
    try:
        await asyncio.shield(aclose())
    except BaseException:  # noqa: BLE001 - closing must never mask the original outcome
        log.debug("closing the backend stream raised", exc_info=True)


async def _direct(text: str) -> AsyncIterator[StreamEvent]:
    """A prepared answer (refusal, small talk, annotation, passages, holding message) as a
    one-piece stream."""
    yield TextDelta(text)
    yield Finished("stop", 0, 0)


def _citations(turn: ChatTurn, answer: str) -> list[dict[str, Any]] | None:
    """Sources of a grounded answer: those whose [n] markers the answer uses, else every source given."""
    context = turn.plan.context
    if context is None:
        return None
    cited = context.cited_in(answer) or list(context.citations)
    return [
        {
            "marker": c.marker,
            "document": c.source,
            "title": c.title,
            "heading_path": list(c.heading_path),
            "page": c.page,
            "score": c.score,
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
        }
        for c in cited
    ]


def follow_up_jobs(turn: ChatTurn, status: str) -> list[dict[str, Any]]:
    """Background work an answer starts, committed with it: a shadow answer per candidate (sampled)
    and a review-feed job for the live answer, which decides whether staff see it (answers and
    refusals alike: a wrong refusal is as bad as a wrong answer)."""
    if turn.plan.annotation_id is not None or status not in ("completed", "refused"):
        return []
    bot = turn.bot
    jobs: list[dict[str, Any]] = []
    if bot.candidate_release_ids and status == "completed":
        from api.services.releases.shadow import shadow_job_rows

        jobs += shadow_job_rows(
            turn.exchange_id, bot.id, bot.policy, bot.candidate_release_ids, _rng
        )
    if bot.policy.review_enabled:
        # Even at a low sample rate the feed must see every answer: priority cases are queued
        # regardless.
        from api.services.review.feed import review_feed_job_row

        jobs.append(review_feed_job_row(turn.exchange_id, bot.id))
    return jobs


_rng = random.Random()
