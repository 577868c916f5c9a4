"""Answering a chat request: validate, build the prompt, generate, stream, and store the exchange.

The exchange row is written once, when the outcome is known, and always *before* the client receives
the final chunk: an answer a client saw is never lost. A client that goes away mid-stream leaves the
row marked `interrupted` with what had been generated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.errors import (
    ApiError,
    InvalidRequest,
    UpstreamFailed,
    UpstreamTimeout,
)
from api.ids import new_id
from api.jobs.queue import job_row
from api.runtime import Runtime
from api.schemas.openai import UNSUPPORTED_PARAMS, ChatCompletionRequest
from api.services.access import BotConfig, KeyGrant, check_allowed
from api.services.answer_plan import AnswerPlan, plain_prompt, plan_answer
from api.services.exchange_writer import ExchangeWriter
from api.services.exchanges import ExchangeRecord
from api.settings import Settings
from serving.backend import (
    BackendError,
    BackendTimeout,
    ChatMessage,
    Finished,
    GenerationParams,
    PromptTooLong,
    StreamEvent,
    TextDelta,
)

log = logging.getLogger(__name__)


@dataclass
class ChatTurn:
    """A validated request, detached from the database session, ready to generate."""

    exchange_id: str
    bot: BotConfig
    api_key_id: str | None
    conversation_id: str
    client_messages: list[dict[str, Any]]
    prompt: list[ChatMessage]
    params: GenerationParams
    stream: bool
    include_usage: bool
    started: float = field(default_factory=time.perf_counter)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    created: int = field(default_factory=lambda: int(time.time()))
    plan: AnswerPlan = field(default_factory=AnswerPlan)

    @property
    def bot_slug(self) -> str:
        return self.bot.slug

    @property
    def question(self) -> str:
        return str(self.client_messages[-1]["content"])


@dataclass
class Outcome:
    answer: str = ""
    status: str = "completed"
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None


def validate_request(req: ChatCompletionRequest, settings: Settings) -> None:
    """Refuse what we cannot honour (400s), before anything is generated or stored."""
    for name in UNSUPPORTED_PARAMS:
        if getattr(req, name) is not None:
            raise InvalidRequest(f"The parameter '{name}' is not supported.", param=name, code="unsupported_parameter")
    if req.n is not None and req.n != 1:
        raise InvalidRequest("Only n=1 is supported.", param="n", code="unsupported_parameter")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (None, 0, 0.0):
            raise InvalidRequest(f"The parameter '{name}' is not supported.", param=name, code="unsupported_parameter")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("stream_options is only allowed with stream=true.", param="stream_options")
    if not req.messages:
        raise InvalidRequest("messages must contain at least one message.", param="messages", code="empty_messages")
    if len(req.messages) > settings.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(req.messages)} > {settings.max_messages}.", param="messages",
            code="too_many_messages",
        )
    total = 0
    for i, msg in enumerate(req.messages):
        text = msg.text()
        if len(text) > settings.max_message_chars:
            raise InvalidRequest(
                f"Message {i} is too long: {len(text)} > {settings.max_message_chars} characters.",
                param=f"messages.{i}.content", code="message_too_long",
            )
        total += len(text)
    if total > settings.max_total_chars:
        raise InvalidRequest(
            f"The conversation is too long: {total} > {settings.max_total_chars} characters.",
            param="messages", code="conversation_too_long",
        )
    if req.messages[-1].role != "user":
        raise InvalidRequest("The last message must come from the user.", param="messages", code="last_not_user")
    if not req.messages[-1].text().strip():
        raise InvalidRequest("The last user message is empty.", param=f"messages.{len(req.messages) - 1}.content",
                             code="empty_message")
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens is too large: {max_tokens} > {settings.max_tokens_limit}.", param="max_tokens",
            code="max_tokens_too_large",
        )


def build_turn(
    req: ChatCompletionRequest, *, grant: KeyGrant, bot: BotConfig, conversation_id: str | None, settings: Settings
) -> ChatTurn:
    """Check the key may use the bot and assemble the prompt and parameters (bot defaults + request)."""
    check_allowed(grant, bot)
    client_messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    prompt = plain_prompt(bot.system_prompt, client_messages)
    max_tokens = req.max_completion_tokens or req.max_tokens or min(bot.max_tokens, settings.max_tokens_limit)
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=bot.temperature if req.temperature is None else req.temperature,
        top_p=bot.top_p if req.top_p is None else req.top_p,
        stop=tuple(req.stop or ()),  # type: ignore[arg-type]
        seed=req.seed,
    )
    return ChatTurn(
        exchange_id=new_id("exch"),
        bot=bot,
        api_key_id=grant.id,
        conversation_id=conversation_id or req.conversation_id or new_id("conv"),
        client_messages=client_messages,
        prompt=prompt,
        params=params,
        stream=req.stream,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )


class ChatService:
    """Runs turns against the backend and stores their exchanges."""

    def __init__(self, runtime: Runtime, writer: ExchangeWriter) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.writer = writer
        self.backend = runtime.backend
        self.metrics = runtime.metrics

    async def prepare(self, turn: ChatTurn) -> None:
        """Decide how the turn is answered (annotation, refusal, passages, model); may raise a 503
        when the knowledge base is unreachable. Nothing is stored for a turn that fails here."""
        turn.plan = await plan_answer(turn, self.runtime)

    def _events(self, turn: ChatTurn) -> AsyncIterator[StreamEvent]:
        if turn.plan.direct_answer is not None:
            return _direct(turn.plan.direct_answer)
        return self.backend.stream(turn.prompt, turn.params, turn.bot.adapter)

    # -- non-streaming ------------------------------------------------------------------------------
    async def complete(self, turn: ChatTurn) -> dict[str, Any]:
        outcome = Outcome()
        try:
            async with asyncio.timeout(self.settings.backend_timeout_s):
                async for event in self._events(turn):
                    self._apply(turn, outcome, event)
        except BaseException as exc:
            api_error = await self._fail(turn, outcome, exc)
            if api_error is None:
                raise
            raise api_error from exc
        citations = await self._store(turn, outcome)
        return self._completion_body(turn, outcome, citations)

    # -- streaming ------------------------------------------------------------------------------
    async def open_stream(self, turn: ChatTurn) -> AsyncIterator[bytes]:
        """Start generating and wait for the first event, so that a backend that fails or times out
        before answering still gets a proper 502/504 status; then hand back the SSE body."""
        events = aiter(self._events(turn))
        outcome = Outcome()
        deadline = asyncio.get_running_loop().time() + self.settings.backend_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                first = await anext(events)
        except BaseException as exc:
            await _close_quietly(events)
            api_error = await self._fail(turn, outcome, exc)
            if api_error is None:
                raise
            raise api_error from exc
        return self._sse(turn, outcome, events, first, deadline)

    async def _sse(
        self, turn: ChatTurn, outcome: Outcome, events: AsyncIterator[StreamEvent], first: StreamEvent, deadline: float
    ) -> AsyncIterator[bytes]:
        chunk = _chunk_encoder(turn)
        content = _content_encoder(turn)
        # The role chunk rides with the first piece of text (already here: we waited for it before
        # answering), and the closing chunks go out together: fewer writes, no added latency.
        pending = chunk({"role": "assistant", "content": ""}, None)
        # A per-chunk timer costs ~10 us a token; skip it when the backend bounds its own waits.
        timed = not (self.backend.bounds_waits and turn.plan.direct_answer is None)
        event: StreamEvent | None = first
        try:
            while True:
                assert event is not None
                self._apply(turn, outcome, event)
                if isinstance(event, Finished):
                    break
                if event.text:
                    yield pending + content(event.text)
                    pending = b""
                if timed:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                else:
                    event = await anext(events)
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away: keep what was generated, marked interrupted.
            outcome.status, outcome.finish_reason = "interrupted", "interrupted"
            await _close_quietly(events)
            await asyncio.shield(self._store(turn, outcome))
            raise
        except BaseException as exc:
            await _close_quietly(events)
            api_error = await self._fail(turn, outcome, exc)
            if api_error is None:
                raise
            yield pending + _sse_data(api_error.envelope()) + b"data: [DONE]\n\n"
            return
        # Durable before the client sees the end of the answer.
        citations = await self._store(turn, outcome)
        tail = pending + chunk({}, outcome.finish_reason, citations)
        if turn.include_usage:
            tail += _sse_data(
                {
                    "id": turn.exchange_id, "object": "chat.completion.chunk", "created": turn.created,
                    "model": turn.bot_slug, "choices": [], "usage": _usage(outcome),
                }
            )
        yield tail + b"data: [DONE]\n\n"

    # -- shared -----------------------------------------------------------------------------------
    def _apply(self, turn: ChatTurn, outcome: Outcome, event: StreamEvent) -> None:
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

    async def _fail(self, turn: ChatTurn, outcome: Outcome, exc: BaseException) -> ApiError | None:
        """Store the failed exchange and say which API error the client gets (None: re-raise as is)."""
        api_error: ApiError
        if isinstance(exc, PromptTooLong):
            # Bad input: nothing generated, nothing stored.
            self.metrics.errors.labels(turn.bot_slug, "invalid_request_error").inc()
            return InvalidRequest(str(exc), param="messages", code="context_length_exceeded")
        if isinstance(exc, (TimeoutError, BackendTimeout)):
            api_error = UpstreamTimeout(f"The model did not answer within {self.settings.backend_timeout_s:g} s.")
        elif isinstance(exc, BackendError):
            api_error = UpstreamFailed(f"The model backend failed: {exc}")
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            outcome.status, outcome.finish_reason = "interrupted", "interrupted"
            await asyncio.shield(self._store(turn, outcome))
            return None
        else:
            log.exception("backend raised an unexpected error", exc_info=exc)
            api_error = UpstreamFailed(f"The model backend failed unexpectedly: {type(exc).__name__}")
        outcome.status, outcome.finish_reason, outcome.error = "error", "error", api_error.message
        self.metrics.errors.labels(turn.bot_slug, api_error.code or api_error.type).inc()
        await self._store(turn, outcome)
        return api_error

    async def _store(self, turn: ChatTurn, outcome: Outcome) -> list[dict[str, Any]] | None:
        """Commit the exchange (with the background jobs it starts) and return its citations."""
        plan = turn.plan
        latency_ms = (time.perf_counter() - turn.started) * 1000
        if outcome.status == "completed" and plan.status == "refused":
            outcome.status = "refused"
        citations = _citations(plan, outcome.answer) if outcome.status == "completed" else None
        record = ExchangeRecord(
            id=turn.exchange_id,
            bot_id=turn.bot.id,
            conversation_id=turn.conversation_id,
            release_id=turn.bot.release_id,
            api_key_id=turn.api_key_id,
            messages=turn.client_messages,
            params=_params_dict(turn.params),
            answer=outcome.answer,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            error=outcome.error,
            streamed=turn.stream,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            latency_ms=latency_ms,
            ttft_ms=outcome.ttft_ms,
            created_at=turn.received_at,
            passages=plan.passages,
            citations=citations or [],
            guard=plan.guard,
            flags=plan.flags,
            annotation_id=plan.annotation_id,
        )
        jobs = follow_up_jobs(turn, outcome) if outcome.status == "completed" else []
        await self.writer.write(record, jobs)
        if jobs:
            self.runtime.notify_worker()
        m, bot = self.metrics, turn.bot_slug
        m.requests.labels(bot, outcome.status).inc()
        m.latency.labels(bot).observe(latency_ms / 1000)
        if outcome.ttft_ms is not None and turn.stream:
            m.ttft.labels(bot).observe(outcome.ttft_ms / 1000)
        m.tokens.labels(bot, "prompt").inc(outcome.prompt_tokens)
        m.tokens.labels(bot, "completion").inc(outcome.completion_tokens)
        if plan.annotation_id is not None:
            m.annotation_hits.labels(bot).inc()
        return citations

    def _completion_body(
        self, turn: ChatTurn, outcome: Outcome, citations: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": turn.exchange_id,
            "object": "chat.completion",
            "created": turn.created,
            "model": turn.bot_slug,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": outcome.answer},
                    "finish_reason": outcome.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(outcome),
            "conversation_id": turn.conversation_id,
        }
        if citations is not None:
            body["citations"] = citations
        if outcome.status == "refused":
            body["refused"] = True
        return body


def _usage(outcome: Outcome) -> dict[str, int]:
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


def _params_dict(params: GenerationParams) -> dict[str, Any]:
    return {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop": list(params.stop),
        "seed": params.seed,
    }


def _sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunk_encoder(turn: ChatTurn) -> Callable[..., bytes]:
    # The constant parts of every chunk are encoded once per stream, not once per token.
    head = json.dumps(
        {"id": turn.exchange_id, "object": "chat.completion.chunk", "created": turn.created, "model": turn.bot_slug},
        separators=(",", ":"),
    )[:-1]

    def encode(delta: dict[str, Any], finish_reason: str | None, citations: list[dict[str, Any]] | None = None) -> bytes:
        choices = json.dumps(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}], separators=(",", ":")
        )
        extra = "" if citations is None else ',"citations":' + json.dumps(citations, separators=(",", ":"))
        return f'data: {head},"choices":{choices}{extra}}}\n\n'.encode()

    return encode


def _content_encoder(turn: ChatTurn) -> Callable[[str], bytes]:
    """The per-token chunk, built around one JSON-escaped string (the hot loop of streaming)."""
    head = json.dumps(
        {"id": turn.exchange_id, "object": "chat.completion.chunk", "created": turn.created, "model": turn.bot_slug},
        separators=(",", ":"),
    )[:-1]
    prefix = f'data: {head},"choices":[{{"index":0,"delta":{{"content":'.encode()
    suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def encode(text: str) -> bytes:
        return prefix + json.dumps(text).encode() + suffix

    return encode


async def _close_quietly(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is None:
        return
    try:
        await asyncio.shield(aclose())
    except BaseException:  # noqa: BLE001 - closing must never mask the original outcome
        log.debug("closing the backend stream raised", exc_info=True)


async def _direct(text: str) -> AsyncIterator[StreamEvent]:
    """A prepared answer (refusal, annotation, passages, holding message) as a one-piece stream."""
    yield TextDelta(text)
    yield Finished("stop", 0, 0)


def _citations(plan: AnswerPlan, answer: str) -> list[dict[str, Any]] | None:
    """Sources of a grounded answer: those whose [n] markers the answer uses, else every source given."""
    if plan.context is None:
        return None
    cited = plan.context.cited_in(answer) or list(plan.context.citations)
    return [
        {"marker": c.marker, "document": c.source, "title": c.title, "heading_path": list(c.heading_path),
         "page": c.page, "score": c.score, "chunk_id": c.chunk_id, "doc_id": c.doc_id}
        for c in cited
    ]


def follow_up_jobs(turn: ChatTurn, outcome: Outcome) -> list[dict[str, Any]]:
    """Background work an answered exchange starts, committed with it: a shadow answer per candidate
    (sampled), or, without candidates, a review-feed job for the live answer."""
    if turn.plan.annotation_id is not None:
        return []
    bot = turn.bot
    if bot.candidate_release_ids:
        from api.services.shadow import shadow_job_rows

        return shadow_job_rows(turn.exchange_id, bot.id, bot.policy, bot.candidate_release_ids, _rng)
    if not bot.policy.review_enabled:
        return []
    # Even at a low sample rate the feed must see every answer: priority cases are queued regardless.
    return [job_row("review_feed", {"exchange_id": turn.exchange_id}, bot_id=bot.id)]


_rng = random.Random()
