"""NUL characters are refused at the door with a 400, on either database.

No text column stores one on PostgreSQL (the insert fails), while SQLite takes it: without this rule
the same request would be a 400 on one and stored on the other. A NUL reaches the API as `\\u0000` in
a JSON string, or `%00` in the path, a query string or a form body; those are checked before any
route runs. Uploaded files are checked where they are read (upload names, file parsers), and a value
the database still refuses is a 400 as well (`api.errors`).
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error

# `\u0000` preceded by an even number of backslashes (`\\u0000` is the six characters, not a NUL).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_URL_NUL = b"%00"


class NulGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            await _refuse(send, "path", None)
            return
        query: bytes = scope.get("query_string", b"")
        if _URL_NUL in query:
            await _refuse(send, "query", _form_param(query))
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
        json_body = content_type == b"application/json" or content_type.endswith(b"+json")
        form_body = content_type == b"application/x-www-form-urlencoded"
        if not (json_body or form_body):
            await self.app(scope, receive, send)
            return
        # These bodies are read whole by the route anyway (and bounded by the body limit).
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if json_body and b"\\u0000" in body and _JSON_NUL.search(body):
            await _refuse(send, "body", _json_param(body))
            return
        if form_body and _URL_NUL in body:
            await _refuse(send, "body", _form_param(body))
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _form_param(encoded: bytes) -> str | None:
    pairs = parse_qsl(encoded.decode("latin-1"), keep_blank_values=True)
    return next((k for k, v in pairs if "\x00" in k + v), None)


def _json_param(body: bytes) -> str | None:
    """Where the first NUL is, as validation errors name a place (`messages.0.content`)."""

    def find(value: object, path: list[str]) -> list[str] | None:
        if isinstance(value, str):
            return path if "\x00" in value else None
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, item in items:
            if "\x00" in str(key):
                return [*path, str(key)]
            found = find(item, [*path, str(key)])
            if found is not None:
                return found
        return None

    try:
        found = find(json.loads(body), [])
    except (ValueError, RecursionError):
        return None
    return ".".join(found) or None if found is not None else None


async def _refuse(send: Send, where: str, param: str | None) -> None:
    message = f"The request {where} contains a NUL character (U+0000); text may not hold one."
    await send_error(send, 400, message, "nul_character", param=param)
