"""The support widget: `GET /widget.js`, and the routes it calls under `/v1/widget/{publishable
key}/…` — its settings, chat (streamed), a conversation shown again, feedback, handoff to a person,
and the source passages its citations link to.

The key is in the path so that a CORS preflight (which carries no credentials) can be answered for
that bot's allowed origins only. Every call checks the page's Origin server-side; chat, feedback and
handoffs count against the key's and the visitor's rate limits.
"""

from __future__ import annotations

import gzip
import hashlib
import html
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db import transaction
from api.errors import NotFound
from api.models import ApiKey
from api.routes.chat import CONVERSATION_HEADER, STREAM_HEADERS, sse_events
from api.runtime import Runtime
from api.schemas.openai import ChatCompletionRequest, ChatMessageIn
from api.services.access.cache import KeyGrant
from api.services.chat.exchanges import record_feedback
from api.services.chat.service import ChatService
from api.services.widget import conversations
from api.services.widget.gate import WidgetGrant, service_origin
from api.services.widget.handoffs import request_handoff

router = APIRouter()

WIDGET_JS = Path(__file__).resolve().parent.parent / "static" / "widget.js"
PREFIX = "/v1/widget/"
_EXPOSED = "X-Conversation-Id, X-Exchange-Id, Retry-After"


class WidgetChat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    message: str = Field(min_length=1, max_length=8000)
    conversation_id: str | None = Field(None, max_length=200)


class WidgetFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=2000)


class WidgetHandoff(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    conversation_id: str = Field(max_length=200)
    email: str | None = Field(None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str | None = Field(None, max_length=200)
    message: str = Field("", max_length=2000)
    page_url: str | None = Field(None, max_length=2000)


class HandoffAccepted(BaseModel):
    handoff_id: str
    message: str = Field(description="What the visitor is told happens next.")


@lru_cache(maxsize=1)
def _script() -> tuple[bytes, bytes, str]:
    raw = WIDGET_JS.read_bytes()
    return raw, gzip.compress(raw, 9, mtime=0), '"' + hashlib.sha256(raw).hexdigest()[:16] + '"'


@router.get("/widget.js", include_in_schema=False)
def widget_js(request: Request) -> Response:
    raw, packed, etag = _script()
    headers = {"Cache-Control": "public, max-age=300", "ETag": etag, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        raw = packed
    return Response(raw, media_type="text/javascript; charset=utf-8", headers=headers)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def own_origin(request: Request) -> str:
    return service_origin(
        request.app.state.settings.public_url, request.url.scheme, request.url.netloc
    )


async def _open(request: Request, key: str, *, counted: bool = False) -> WidgetGrant:
    """The key's grant, once the page's origin is allowed (and, when `counted`, the request is
    within the rate limits)."""
    gate = _runtime(request).widget
    grant = await run_in_threadpool(gate.grant, key)
    origin = gate.check_origin(
        grant,
        request.headers.get("origin"),
        own_origin(request),
        request.headers.get("sec-fetch-site"),
    )
    request.state.cors_origin = origin  # from here on, errors too are readable by the page
    if counted:
        gate.hit(grant, request.client.host if request.client else "?")
    return grant


@router.options(PREFIX + "{key}/{rest:path}", include_in_schema=False)
async def preflight(key: str, rest: str, request: Request) -> Response:
    await _open(request, key)
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "content-type",
            "Access-Control-Max-Age": "600",
        },
    )


@router.get(PREFIX + "{key}/config")
async def widget_config(key: str, request: Request) -> dict[str, Any]:
    """The widget's look and words (never its allowed origins or handoff destinations)."""
    grant = await _open(request, key)
    return {"bot": grant.bot_slug, **grant.config.public()}


@router.post(PREFIX + "{key}/chat", response_class=StreamingResponse)
async def widget_chat(key: str, body: WidgetChat, request: Request) -> Response:
    """Answer a visitor's message as server-sent `ChatCompletionChunk` events (as
    `/v1/chat/completions` streams them), continuing the conversation the id names; an unknown id
    starts a new conversation, whose id comes back in `X-Conversation-Id`."""
    grant = await _open(request, key, counted=True)
    runtime = _runtime(request)
    settings = runtime.settings
    conversation_id = conversations.check_conversation_id(body.conversation_id)

    def earlier() -> list[dict[str, str]] | None:
        if conversation_id is None:
            return None
        with transaction(runtime.sessions) as session:
            return conversations.earlier_turns(
                session, grant.bot_id, conversation_id, settings.widget_history_turns
            )

    history = await run_in_threadpool(earlier)
    messages = conversations.with_question(history or [], body.message, settings.max_total_chars)
    chat: ChatService = request.app.state.chat
    answer = await chat.answer(
        ChatCompletionRequest(
            model=grant.bot_slug,
            messages=[ChatMessageIn.model_validate(m) for m in messages],
            stream=True,
        ),
        token=None,
        conversation_id=conversation_id if history is not None else None,
        grant=KeyGrant(grant.key_id, False, frozenset({grant.bot_id})),
    )
    turn = answer.turn
    headers = {CONVERSATION_HEADER: turn.conversation_id, "X-Exchange-Id": turn.exchange_id}
    return StreamingResponse(
        sse_events(answer), media_type="text/event-stream", headers={**headers, **STREAM_HEADERS}
    )


@router.get(PREFIX + "{key}/conversations/{conversation_id}")
async def widget_conversation(key: str, conversation_id: str, request: Request) -> dict[str, Any]:
    """The conversation so far (a page reload shows it again)."""
    grant = await _open(request, key)
    conversations.check_conversation_id(conversation_id)

    def load() -> list[dict[str, Any]]:
        with transaction(_runtime(request).sessions) as session:
            return conversations.transcript(session, grant.bot_id, conversation_id)

    return {"conversation_id": conversation_id, "turns": await run_in_threadpool(load)}


@router.post(PREFIX + "{key}/exchanges/{exchange_id}/feedback")
async def widget_feedback(
    key: str, exchange_id: str, body: WidgetFeedback, request: Request
) -> dict[str, str]:
    """Thumbs up or down on an answer; a thumbs-down puts it first in the review queue."""
    grant = await _open(request, key, counted=True)

    def record() -> None:
        with transaction(_runtime(request).sessions) as session:
            row = session.get(ApiKey, grant.key_id)
            if row is None:
                raise NotFound(f"No exchange with id '{exchange_id}'.", param="exchange_id")
            record_feedback(session, row, exchange_id, body.rating, body.comment)

    await run_in_threadpool(record)
    return {"exchange_id": exchange_id, "rating": body.rating}


@router.post(PREFIX + "{key}/handoff", status_code=202)
async def widget_handoff(key: str, body: WidgetHandoff, request: Request) -> HandoffAccepted:
    """Send the conversation to a person (the bot's webhook and/or e-mail address); the reply says
    what happens next. Delivery runs as a job, retried until it succeeds."""
    grant = await _open(request, key, counted=True)
    conversations.check_conversation_id(body.conversation_id)

    def record() -> HandoffAccepted:
        with transaction(_runtime(request).sessions) as session:
            handoff, reply = request_handoff(
                session,
                grant,
                conversation_id=body.conversation_id,
                email=body.email,
                name=(body.name or "").strip() or None,
                message=body.message.strip(),
                page_url=body.page_url,
            )
            return HandoffAccepted(handoff_id=handoff.id, message=reply)

    return await run_in_threadpool(record)


@router.get(PREFIX + "{key}/exchanges/{exchange_id}/sources/{chunk_id}", include_in_schema=False)
async def widget_source(key: str, exchange_id: str, chunk_id: str, request: Request) -> Response:
    """A cited passage as a small page (what a citation in the widget opens, in a new tab)."""
    gate = _runtime(request).widget
    grant = await run_in_threadpool(gate.grant, key)

    def load() -> dict[str, Any]:
        with transaction(_runtime(request).sessions) as session:
            return conversations.source_passage(session, grant.bot_id, exchange_id, chunk_id)

    passage = await run_in_threadpool(load)
    title = html.escape(str(passage.get("title") or passage.get("document") or "Source"))
    where = " › ".join(html.escape(str(h)) for h in passage.get("heading_path") or [])
    page = f"page {int(passage['page'])}" if passage.get("page") else ""
    text = html.escape(str(passage.get("text", "")))
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;"
        "margin:2rem auto;padding:0 1rem;color:#1f2937}small{color:#6b7280}"
        "blockquote{white-space:pre-wrap;border-left:4px solid #d1d5db;margin:1rem 0;"
        f"padding:.25rem 1rem}}</style><h1>{title}</h1><small>{where} {page}</small>"
        f"<blockquote>{text}</blockquote></html>"
    )
    return HTMLResponse(
        body, headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    )


class WidgetCors:
    """CORS headers on `/v1/widget/` responses, for the origin the route allowed (set on the
    request's state once checked): a page from any other origin cannot read an answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                origin = scope.get("state", {}).get("cors_origin")
                if origin:
                    headers += [
                        (b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"access-control-expose-headers", _EXPOSED.encode()),
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)
