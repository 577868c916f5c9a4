"""`OpenAIBackend`: any OpenAI-compatible upstream (a vLLM server, Azure OpenAI, OpenAI).

The HTTP client is aiohttp, chosen by measurement against tests/support/stub_upstream.py (16-chunk
streamed answers, client CPU per request, 2-core machine): `openai` SDK ~3200 us; httpx ~820 us at
1 in flight, growing to ~2200 us at 128 (its connection pool rescans every connection on each
request); httpx2 ~700-900 us; aiohttp ~130-220 us, flat with concurrency. That CPU is gateway
overhead on every chat turn, and the wire format is small and stable, so we speak it ourselves.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import aiohttp
import orjson

from serving.backend import (
    AdapterMissing,
    Backend,
    BackendError,
    BackendRejected,
    BackendTimeout,
    ChatMessage,
    Completion,
    Finished,
    FinishReason,
    GenerationParams,
    StreamEvent,
    TextDelta,
)

# Upstream finish reasons we know; anything else ends normally as "stop".
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "stop",
    "function_call": "stop",
    "content_filter": "error",  # the upstream withheld the rest: the answer is not usable as-is
    "abort": "interrupted",  # vLLM: the request was aborted before it finished
}
_MAX_ERROR_CHARS = 300


class OpenAIBackend(Backend):
    """Talks to an OpenAI-compatible `/chat/completions` over one pooled HTTP session.

    `base_url` includes the API prefix (`http://vllm:8000/v1`, `https://api.openai.com/v1`). For
    Azure OpenAI pass the resource URL up to the deployment or the v1 API
    (`https://NAME.openai.azure.com/openai/v1`) and `api_version` when the API needs one; the key
    is then sent as `api-key` instead of a bearer token.

    Token counts come from the upstream (`stream_options.include_usage`). Upstreams that do not
    report usage get estimates instead: prompt tokens ~ characters / 4, completion tokens = the
    number of content deltas (one token per delta on token-streaming servers such as vLLM).

    `proxy` (an `http://` URL) is used for every request; environment proxy variables are ignored.

    `timeout` bounds each wait on the upstream (a free pooled connection, the first byte, the gap
    between two stream chunks), not the whole answer, so a long answer that keeps flowing is never
    cut. No retries: a failed request surfaces at once and the caller decides.
    """

    kind = "openai"
    # `timeout` bounds each wait (first byte, every chunk), so the gateway needs no per-chunk timer.
    bounds_waits = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        health_timeout: float = 2.0,
        max_connections: int = 256,
        extra_headers: Mapping[str, str] | None = None,
        api_version: str | None = None,
        proxy: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._model = model
        self._timeout = aiohttp.ClientTimeout(
            connect=timeout, sock_connect=min(connect_timeout, timeout), sock_read=timeout
        )
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout)
        self._max_connections = max_connections
        headers = {"content-type": "application/json"}
        if api_key:
            if api_version:
                headers["api-key"] = api_key
            else:
                headers["authorization"] = f"Bearer {api_key}"
        headers.update(extra_headers or {})
        self._headers = headers
        self._params = {"api-version": api_version} if api_version else None
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None

    @property
    def model_name(self) -> str:
        return self._model

    async def start(self) -> None:
        self._http()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, which aiohttp requires.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers=self._headers,
                timeout=self._timeout,
                proxy=self._proxy,
                # Environment proxies / netrc are not read: aiohttp looks them up in a thread on
                # every request (two thread hops each); pass `proxy` explicitly instead.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API upstream has no session to keep
            )
        return self._session

    def _body(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None,
        stream: bool,
    ) -> bytes:
        # vLLM serves each loaded LoRA adapter as its own model name.
        body: dict[str, Any] = {
            "model": adapter or self._model,
            "messages": list(messages),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Yield each upstream content delta as one `TextDelta` on arrival, then one `Finished`.

        Raises `BackendTimeout` when the upstream stalls longer than `timeout`, `BackendError` for
        anything else that goes wrong (unreachable, HTTP error, malformed or truncated stream).
        Closing the iterator early closes the upstream connection, which makes vLLM abort the
        request instead of generating for nobody.
        """
        body = self._body(messages, params, adapter, stream=True)
        upstream_finish: str | None = None
        usage: Mapping[str, Any] | None = None
        deltas = 0
        done = False
        with _upstream_errors(self.base_url):
            async with self._http().post(
                self.base_url + "/chat/completions", data=body, params=self._params
            ) as resp:
                if resp.status >= 400:
                    raise _request_error(resp.status, await resp.read(), adapter)
                async for data in _sse_data(resp.content.iter_any()):
                    if done:
                        continue  # keep draining so the connection goes back to the pool
                    if data == b"[DONE]":
                        done = True
                        continue
                    chunk = _parse_json(data)
                    if "error" in chunk:
                        raise BackendError(f"upstream failed mid-stream: {_error_text(chunk)}")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            deltas += 1
                            yield TextDelta(text)
                        if choice.get("finish_reason"):
                            upstream_finish = choice["finish_reason"]
        if not done and upstream_finish is None:
            raise BackendError("upstream stream ended before the answer was finished")
        prompt_tokens, completion_tokens = _token_counts(usage, messages, deltas)
        yield Finished(_finish_reason(upstream_finish), prompt_tokens, completion_tokens)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None = None,
    ) -> Completion:
        """Generate a whole answer in one non-streaming request (cheaper than draining a stream)."""
        body = self._body(messages, params, adapter, stream=False)
        with _upstream_errors(self.base_url):
            async with self._http().post(
                self.base_url + "/chat/completions", data=body, params=self._params
            ) as resp:
                status, raw = resp.status, await resp.read()
        if status >= 400:
            raise _request_error(status, raw, adapter)
        reply = _parse_json(raw)
        try:
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"upstream reply has no answer: {_clip(raw)}") from exc
        prompt_tokens, completion_tokens = _token_counts(
            reply.get("usage"), messages, 1 if text else 0
        )
        return Completion(
            text,
            _finish_reason(choice.get("finish_reason")),
            prompt_tokens,
            completion_tokens,
            [text] if text else [],
        )

    async def health(self) -> bool:
        """True when `GET {base_url}/models` answers 2xx within `health_timeout` seconds."""
        try:
            async with self._http().get(
                self.base_url + "/models", params=self._params, timeout=self._health_timeout
            ) as resp:
                await resp.read()
                return resp.ok
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def listed_adapters(self) -> dict[str, str] | None:
        """The LoRA adapters the upstream lists (`GET /models` entries with a `parent`: vLLM lists
        each loaded adapter as a model whose parent is the base model), name -> folder."""
        with _upstream_errors(self.base_url):
            async with self._http().get(self.base_url + "/models", params=self._params) as resp:
                status, raw = resp.status, await resp.read()
        if status >= 400:
            raise _status_error(status, raw)
        entries = _parse_json(raw).get("data") or []
        return {
            str(e["id"]): str(e.get("root") or "")
            for e in entries
            if isinstance(e, dict) and e.get("parent") and e.get("id")
        }

    async def load_adapter(self, name: str, path: str) -> None:
        """Load a LoRA adapter into a vLLM server under `name` (`POST /v1/load_lora_adapter`).

        Idempotent: an adapter already loaded under `name` counts as success, because adapter names
        are immutable and versioned, so the same name always means the same weights.
        """
        await self._adapter_call(
            "/load_lora_adapter", {"lora_name": name, "lora_path": path}, b"has already been loaded"
        )

    async def unload_adapter(self, name: str) -> None:
        """Unload a LoRA adapter from a vLLM server; unloading one that is not loaded succeeds."""
        await self._adapter_call("/unload_lora_adapter", {"lora_name": name}, b"cannot be found")

    async def _adapter_call(self, path: str, payload: dict[str, str], benign: bytes) -> None:
        with _upstream_errors(self.base_url):
            async with self._http().post(
                self.base_url + path, data=orjson.dumps(payload), params=self._params
            ) as resp:
                status, raw = resp.status, await resp.read()
        if status < 400 or benign in raw:
            return
        error = _status_error(status, raw)
        # A missing route answers the framework's bare "Not Found"; a failed load says more.
        route_missing = str(error).endswith(("Not Found", "Method Not Allowed"))
        if status in (404, 405) and route_missing:
            raise BackendError(
                f"upstream has no {path} route (HTTP {status}); start vLLM with "
                "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            )
        raise error


@contextmanager
def _upstream_errors(base_url: str) -> Iterator[None]:
    """Turn client failures into `BackendTimeout` / `BackendError` naming the upstream."""
    try:
        yield
    except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors (some also ClientErrors)
        raise BackendTimeout(
            f"upstream {base_url} did not answer in time ({type(exc).__name__})"
        ) from exc
    except aiohttp.ClientError as exc:
        raise BackendError(f"upstream {base_url} failed: {type(exc).__name__}: {exc}") from exc


async def _sse_data(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The `data` payload of each server-sent event, as soon as the blank line ending it arrives.

    Hand-rolled over raw bytes because it is on the hot path: no text decoding, no per-line objects.
    """
    buffer = b""
    data: list[bytes] = []
    async for piece in pieces:
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # other fields (event:, id:, retry:) and comments (":") carry nothing we use
    if data:
        yield b"\n".join(data)


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BackendError(f"upstream sent something that is not JSON: {_clip(raw)}") from exc
    if not isinstance(value, dict):
        raise BackendError(f"upstream sent unexpected JSON: {_clip(raw)}")
    return value


def _request_error(status: int, raw: bytes, adapter: str | None) -> BackendError:
    """What an HTTP error on a generation request means: the adapter is gone (reload and retry),
    the request itself was refused (the caller's input), or the upstream failed."""
    error = _status_error(status, raw)
    text = str(error)
    if status == 404 and adapter is not None and "does not exist" in text:
        return AdapterMissing(f"the upstream does not hold adapter '{adapter}': {text}")
    if status in (400, 413, 422):
        lowered = text.lower()
        context = any(m in lowered for m in ("context length", "maximum context", "max_model_len"))
        return BackendRejected(text, context_length=context)
    return error


def _status_error(status: int, raw: bytes) -> BackendError:
    try:
        detail = _error_text(orjson.loads(raw))
    except orjson.JSONDecodeError:
        detail = _clip(raw)
    return BackendError(f"upstream answered HTTP {status}: {detail}")


def _error_text(body: Any) -> str:
    # OpenAI, new vLLM: {"error": {"message"}}; older vLLM: {"message"}; FastAPI: {"detail"}.
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
            if message:
                return _clip(str(message))
        elif isinstance(inner, str):
            return _clip(inner)
    return _clip(str(body))


def _clip(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + "…"


def _finish_reason(upstream: str | None) -> FinishReason:
    return _FINISH_REASONS.get(upstream or "stop", "stop")


def _token_counts(
    usage: Mapping[str, Any] | None, messages: Sequence[ChatMessage], deltas: int
) -> tuple[int, int]:
    if usage:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    chars = sum(len(m["content"]) for m in messages)
    return math.ceil(chars / 4), deltas
