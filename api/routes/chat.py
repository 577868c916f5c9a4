"""OpenAI-compatible chat: `POST /v1/chat/completions`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State

from api.deps import bearer_token
from api.errors import InvalidRequest
from api.schemas.openai import ChatCompletionRequest
from api.services.access import AccessCache
from api.services.chat import ChatService, ChatTurn, build_turn, validate_request
from api.services.keys import require_secret

router = APIRouter()

CONVERSATION_HEADER = "X-Conversation-Id"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
    chat: ChatService = request.app.state.chat  # not a dependency: resolving one costs ~70 us a request
    token = require_secret(bearer_token(request))
    body = await _parse_body(request)
    conversation_id = request.headers.get(CONVERSATION_HEADER)
    if conversation_id is not None and not (0 < len(conversation_id) <= 200):
        raise InvalidRequest("X-Conversation-Id must be 1-200 characters.", param=CONVERSATION_HEADER)
    token = bearer_token(request)
    turn = await _resolve_turn(request.app.state, token, body, conversation_id)
    await chat.prepare(turn)
    headers = {CONVERSATION_HEADER: turn.conversation_id, "X-Exchange-Id": turn.exchange_id}
    if turn.stream:
        body_iter = await chat.open_stream(turn)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        return StreamingResponse(body_iter, media_type="text/event-stream", headers=headers)
    return JSONResponse(await chat.complete(turn), headers=headers)


async def _parse_body(request: Request) -> ChatCompletionRequest:
    raw = await request.body()
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def _resolve_turn(
    state: State, token: str, body: ChatCompletionRequest, conversation_id: str | None
) -> ChatTurn:
    """Authenticate, find the bot, validate and build the turn (from memory when the cache is warm)."""
    access: AccessCache = state.access
    hit = access.cached(token, body.model)
    grant, bot = hit if hit is not None else await run_in_threadpool(access.resolve, token, body.model)
    validate_request(body, state.settings)
    return build_turn(body, grant=grant, bot=bot, conversation_id=conversation_id, settings=state.settings)
