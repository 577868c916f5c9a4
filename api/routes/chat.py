"""OpenAI-compatible chat: `POST /v1/chat/completions`. Parses the request, calls the chat service,
and encodes its events: one `ChatCompletion` body, or `ChatCompletionChunk` server-sent events."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from api.deps import bearer_token
from api.errors import InvalidRequest
from api.schemas.openai import (
    CONVERSATION_ID,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Citation,
    Delta,
    Usage,
)
from api.services.chat.events import AnswerDone, AnswerFailed, AnswerText, ChatEvent
from api.services.chat.events import Usage as UsageCounts
from api.services.chat.service import ChatAnswer, ChatService
from api.services.chat.turn import ChatTurn

router = APIRouter()

CONVERSATION_HEADER = "X-Conversation-Id"
_CONVERSATION_ID = re.compile(CONVERSATION_ID)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    # The body is parsed by hand (speed); its schema is documented here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}
                }
            },
        }
    },
    responses={
        200: {
            "content": {"text/event-stream": {"schema": ChatCompletionChunk.model_json_schema()}},
            "description": "A `ChatCompletion`, or with `stream` a stream of `ChatCompletionChunk` "
            "events ending with `data: [DONE]`.",
        }
    },
)
async def chat_completions(request: Request) -> Response:
    chat: ChatService = (
        request.app.state.chat
    )  # not a dependency: resolving one costs ~70 us a request
    body = await _parse_body(request)
    conversation_id = request.headers.get(CONVERSATION_HEADER)
    if conversation_id is not None and not _CONVERSATION_ID.match(conversation_id):
        raise InvalidRequest(
            "X-Conversation-Id must be 1-200 visible ASCII characters.",
            param=CONVERSATION_HEADER,
            code="invalid_conversation_id",
        )
    answer = await chat.answer(body, token=bearer_token(request), conversation_id=conversation_id)
    turn = answer.turn
    headers = {CONVERSATION_HEADER: turn.conversation_id, "X-Exchange-Id": turn.exchange_id}
    if turn.stream:
        return StreamingResponse(
            sse_events(answer),
            media_type="text/event-stream",
            headers={**headers, **STREAM_HEADERS},
        )
    generation, done = await answer.collect()
    completion = ChatCompletion.model_construct(
        id=turn.exchange_id,
        created=turn.created,
        model=turn.bot_slug,
        choices=[
            Choice.model_construct(
                index=0,
                message=AssistantMessage(content=generation.answer),
                finish_reason=done.finish_reason,
                logprobs=None,
            )
        ],
        usage=_usage(done.usage),
        conversation_id=turn.conversation_id,
        citations=_citation_models(done.citations),
        refused=True if done.refused else None,
    )
    return Response(
        completion.model_dump_json(exclude=_unset_extensions(completion)).encode(),
        media_type="application/json",
        headers=headers,
    )


def add_request_schemas(openapi: dict[str, Any]) -> None:
    """Put the hand-parsed request body's schema (and the ones it uses) into the document."""
    schema = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["ChatCompletionRequest"] = schema


async def _parse_body(request: Request) -> ChatCompletionRequest:
    raw = await request.body()
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError: not JSON, not UTF-8, or an integer past Python's 4300 digits;
        # RecursionError: nesting deeper than the parser goes.
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def sse_events(answer: ChatAnswer) -> AsyncIterator[bytes]:
    """The events as `data:` lines. The role rides with the first text and the closing chunks go
    out in one write: fewer writes, no added latency."""
    turn = answer.turn
    content = _content_encoder(turn)
    pending = _chunk(turn, Delta(role="assistant", content=""))
    event: ChatEvent
    async for event in answer.events:
        if isinstance(event, AnswerText):
            yield pending + content(event.text)
            pending = b""
        elif isinstance(event, AnswerFailed):
            yield pending + _data(event.error.envelope()) + b"data: [DONE]\n\n"
            return
        elif isinstance(event, AnswerDone):
            tail = pending + _chunk(turn, Delta(), event.finish_reason, event)
            if turn.include_usage:
                usage = ChatCompletionChunk.model_construct(
                    id=turn.exchange_id,
                    created=turn.created,
                    model=turn.bot_slug,
                    choices=[],
                    usage=_usage(event.usage),
                )
                tail += (
                    b"data: "
                    + usage.model_dump_json(exclude={"citations", "refused"}).encode()
                    + b"\n\n"
                )
            yield tail + b"data: [DONE]\n\n"


def _chunk(
    turn: ChatTurn, delta: Delta, finish_reason: str | None = None, done: AnswerDone | None = None
) -> bytes:
    chunk = ChatCompletionChunk.model_construct(
        id=turn.exchange_id,
        created=turn.created,
        model=turn.bot_slug,
        choices=[
            ChunkChoice.model_construct(
                index=0, delta=delta, logprobs=None, finish_reason=finish_reason
            )
        ],
        usage=None,
        citations=_citation_models(done.citations) if done else None,
        refused=True if done is not None and done.refused else None,
    )
    empty = {name for name in ("role", "content") if getattr(delta, name) is None}
    exclude: dict[str, Any] = {"usage": True, "choices": {0: {"delta": empty}}}
    exclude.update(dict.fromkeys(_unset_extensions(chunk), True))
    return b"data: " + chunk.model_dump_json(exclude=exclude).encode() + b"\n\n"


def _content_encoder(turn: ChatTurn) -> Callable[[str], bytes]:
    """The per-token chunk: the wire model rendered once around a placeholder, then one JSON-escaped
    string per token (the hot loop of streaming)."""
    marker = "\x00"
    template = _chunk(turn, Delta(content=marker))
    prefix, suffix = template.split(json.dumps(marker).encode(), 1)

    def encode(text: str) -> bytes:
        return prefix + json.dumps(text).encode() + suffix

    return encode


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _usage(usage: UsageCounts) -> Usage:
    return Usage.model_construct(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _citation_models(citations: list[dict[str, Any]] | None) -> list[Citation] | None:
    return None if citations is None else [Citation.model_construct(**c) for c in citations]


def _unset_extensions(model: ChatCompletion | ChatCompletionChunk) -> set[str]:
    # Extensions appear only when they say something; OpenAI's own fields always do.
    return {
        name
        for name in ("conversation_id", "citations", "refused")
        if getattr(model, name, None) is None
    }
