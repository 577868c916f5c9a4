"""Request bodies over a size get 413 in the error envelope before anything parses them: the
`Content-Length` is checked up front, and a body sent without one (chunked) is counted as it
arrives and cut off at the limit."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_error


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """`json_limit` for every body but multipart uploads, which get `upload_limit`."""

    def __init__(self, app: ASGIApp, *, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.upload_limit if multipart else self.json_limit
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > limit
            except ValueError:
                too_large = False  # the server refuses a malformed length itself
            if too_large:
                await _refuse(send, limit)
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    await send_error(
        send,
        413,
        f"The request body is larger than {limit} bytes.",
        "request_too_large",
        close=True,
    )
