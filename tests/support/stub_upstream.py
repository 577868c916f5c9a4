"""A minimal, fast OpenAI-compatible upstream that answers instantly.

Its own latency is the floor every gateway benchmark is measured against, so it is a plain ASGI
callable (no framework, no validation) that serialises with orjson when available and caches the
encoded chunks of its fixed answer per model name.

Routes: `POST /v1/chat/completions` (streaming SSE and plain JSON, honouring
`stream_options.include_usage`), `GET /v1/models`, and vLLM's runtime LoRA routes
`POST /v1/load_lora_adapter` / `POST /v1/unload_lora_adapter`.

Misbehaviour for tests is chosen by the requested model name, so one server covers every case:

| model              | behaviour                                                                  |
|--------------------|----------------------------------------------------------------------------|
| `stub-echo`        | answers, in one chunk, JSON `{"body", "headers", "query"}` of the request  |
| `stub-error`       | HTTP 500 with an OpenAI error envelope                                     |
| `stub-bad`         | HTTP 200 whose body is not JSON / not SSE                                  |
| `stub-slow`        | waits `x-stub-delay` seconds (default 0.5) before answering                |
| `stub-hang`        | never answers (until the client disconnects)                               |
| `stub-hang-stream` | streams the first chunk, then never sends anything more                    |
| `stub-length`      | normal answer with `finish_reason: "length"`                               |
| `stub-nousage`     | normal answer that never reports usage                                     |
| `stub-midstream-error` | streams the first chunk, then an SSE `{"error": ...}` event           |
| anything else      | the fixed answer of N word chunks (adapter names included)                 |

Headers `x-stub-delay` (seconds before answering) and `x-stub-chunk-delay` (seconds between stream
chunks) work with every model.

Run: `python tests/support/stub_upstream.py --port 9100 --chunks 16` (env `STUB_CHUNKS`, `STUB_MODEL`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a transitive dependency of our stack
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODEL = "stub-model"
DEFAULT_CHUNKS = 16
_WORDS = ("Shadowdesk", "answers", "from", "your", "own", "documents", "and", "learns")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]
_DONE = b"data: [DONE]\n\n"
_CACHE_LIMIT = 256  # distinct model names whose encoded answers are kept


def answer_chunks(chunks: int) -> list[str]:
    """The fixed answer as its stream chunks: `chunks` words, space-separated when joined."""
    return [("" if i == 0 else " ") + _WORDS[i % len(_WORDS)] for i in range(chunks)]


def _prompt_tokens(messages: Any) -> int:
    # A cheap, deterministic stand-in for a tokenizer: whitespace words of all message contents.
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class StubUpstream:
    """The ASGI app. One instance keeps its loaded-adapter set; create one per test if needed."""

    def __init__(self, chunks: int = DEFAULT_CHUNKS, model: str = DEFAULT_MODEL) -> None:
        self.chunks = chunks
        self.model = model
        self.adapters: dict[str, str] = {}
        self._texts = answer_chunks(chunks)
        self._answer = "".join(self._texts)
        # model name -> pre-encoded SSE content events (role chunk + words); built on first use.
        self._sse_cache: dict[str, list[bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(scope, receive, send)
        elif path == "/v1/models" and method == "GET":
            await self._models(send)
        elif path == "/v1/load_lora_adapter" and method == "POST":
            await self._load_adapter(receive, send)
        elif path == "/v1/unload_lora_adapter" and method == "POST":
            await self._unload_adapter(receive, send)
        else:
            await _send_error(send, 404, "Not Found", "NotFoundError")

    async def _models(self, send: Send) -> None:
        data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "stub"}]
        data += [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "stub",
                "parent": self.model,
                "root": path,
            }
            for name, path in self.adapters.items()
        ]
        await _send_body(send, 200, _JSON_HEADERS, _dumps({"object": "list", "data": data}))

    async def _load_adapter(self, receive: Receive, send: Send) -> None:
        req = _loads(await _read_body(receive))
        name, path = req.get("lora_name"), req.get("lora_path")
        if not name or not path:
            await _send_error(send, 400, "Both 'lora_name' and 'lora_path' must be provided.")
        elif name in self.adapters:
            # Same status and wording as vLLM, so the backend's idempotence is tested for real.
            await _send_error(send, 400, f"The lora adapter '{name}' has already been loaded.")
        elif path.startswith("/missing"):
            await _send_error(send, 404, f"No adapter found for {path}", "NotFoundError")
        else:
            self.adapters[name] = path
            msg = f"Success: LoRA adapter '{name}' added successfully."
            await _send_body(send, 200, [(b"content-type", b"text/plain")], msg.encode())

    async def _unload_adapter(self, receive: Receive, send: Send) -> None:
        req = _loads(await _read_body(receive))
        name = req.get("lora_name")
        if name not in self.adapters:
            msg = f"The lora adapter '{name}' cannot be found."
            await _send_error(send, 404, msg, "NotFoundError")
            return
        del self.adapters[name]
        msg = f"Success: LoRA adapter '{name}' removed successfully."
        await _send_body(send, 200, [(b"content-type", b"text/plain")], msg.encode())

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await _read_body(receive)
        try:
            req = _loads(raw)
            model = str(req.get("model") or self.model)
        except Exception:
            await _send_error(send, 400, "request body is not JSON")
            return
        headers = dict(scope["headers"])
        delay = float(headers.get(b"x-stub-delay", b"0.5" if model == "stub-slow" else b"0"))
        chunk_delay = float(headers.get(b"x-stub-chunk-delay", b"0"))
        if delay:
            await asyncio.sleep(delay)

        if model == "stub-hang":
            await _wait_for_disconnect(receive)
            return
        if model == "stub-error":
            await _send_error(send, 500, "stub upstream failed on purpose", "InternalServerError")
            return
        if model == "stub-bad":
            await _send_body(send, 200, _JSON_HEADERS, b"<html>not an API</html>")
            return

        if model == "stub-echo":
            texts = [_echo(scope, req)]
        elif model == "stub-qa":
            texts = [_qa(req)]
        else:
            texts = self._texts
        finish = "length" if model == "stub-length" else "stop"
        prompt_tokens = _prompt_tokens(req.get("messages"))
        usage = None if model == "stub-nousage" else _usage(prompt_tokens, len(texts))

        if not req.get("stream"):
            text = texts[0] if model in ("stub-echo", "stub-qa") else self._answer
            reply: dict[str, Any] = {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
            }
            if usage is not None:
                reply["usage"] = usage
            await _send_body(send, 200, _JSON_HEADERS, _dumps(reply))
            return

        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        events = self._events(model) if texts is self._texts else _encode_events(model, texts)
        for i, event in enumerate(events):
            if chunk_delay and i:
                await asyncio.sleep(chunk_delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if i == 1 and model == "stub-hang-stream":
                await _wait_for_disconnect(receive)
                return
            if i == 1 and model == "stub-midstream-error":
                err = {
                    "error": {
                        "message": "engine died mid-stream",
                        "type": "InternalServerError",
                        "param": None,
                        "code": 500,
                    }
                }
                await send({"type": "http.response.body", "body": _sse(err) + _DONE})
                return
        tail = _sse(_chunk(model, {}, finish))
        include_usage = (req.get("stream_options") or {}).get("include_usage")
        if include_usage and usage is not None:
            tail += _sse({**_chunk(model, {}, None), "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": tail + _DONE})

    def _events(self, model: str) -> list[bytes]:
        events = self._sse_cache.get(model)
        if events is None:
            if len(self._sse_cache) >= _CACHE_LIMIT:
                self._sse_cache.clear()
            events = self._sse_cache[model] = _encode_events(model, self._texts)
        return events


def _encode_events(model: str, texts: list[str]) -> list[bytes]:
    # Like OpenAI and vLLM: a first chunk carrying only the role, then one chunk per text piece.
    first = _sse(_chunk(model, {"role": "assistant", "content": ""}, None))
    return [first] + [_sse(_chunk(model, {"content": t}, None)) for t in texts]


def _qa(req: Any) -> str:
    """A dataset generator's reply: one question/answer pair whose answer is the first sentence of
    the passage in the prompt (between triple quotes)."""
    prompt = str((req.get("messages") or [{}])[-1].get("content", ""))
    parts = prompt.split('"""')
    passage = parts[1].strip() if len(parts) > 2 else prompt
    first = passage.replace("\n", " ").split(". ")[0].rstrip(".") + "."
    question = "What does the manual say about " + " ".join(first.split()[:5]) + "?"
    return _dumps([{"question": question, "answer": first}]).decode()


def _echo(scope: Scope, req: Any) -> str:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    query = scope.get("query_string", b"").decode("latin-1")
    return _dumps({"body": req, "headers": headers, "query": query}).decode()


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        piece: bytes = message.get("body", b"")
        body += piece
        if not message.get("more_body"):
            return body


async def _wait_for_disconnect(receive: Receive) -> None:
    # After the body is read, the next receive() only returns once the client goes away; that ends
    # a "hang" without leaking a task past the test that caused it.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_body(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, kind: str = "BadRequestError") -> None:
    envelope = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    await _send_body(send, status, _JSON_HEADERS, _dumps(envelope))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(chunks: int | None = None, model: str | None = None) -> StubUpstream:
    """A fresh stub; unset arguments come from `STUB_CHUNKS` / `STUB_MODEL` or the defaults."""
    return StubUpstream(
        chunks=chunks if chunks is not None else int(os.environ.get("STUB_CHUNKS", DEFAULT_CHUNKS)),
        model=model or os.environ.get("STUB_MODEL", DEFAULT_MODEL),
    )


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=None, help="word chunks per answer")
    parser.add_argument("--model", default=None, help="base model name in /v1/models")
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        create_app(args.chunks, args.model),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,  # access logging alone costs more than the stub's own work
    )


if __name__ == "__main__":
    main()
