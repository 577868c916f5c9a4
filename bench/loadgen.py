"""A small asyncio load generator for OpenAI-compatible `/v1/chat/completions` endpoints.

`run_load` is shared by the benchmarks (upstream stub, gateway). It keeps its own per-request work
minimal (aiohttp, no JSON parsing of stream chunks) because it shares the CPU with the server under
test: with httpx as the client, the client itself was the bottleneck from ~8 requests in flight.

CLI: `python bench/loadgen.py --base-url http://127.0.0.1:9100/v1 --concurrency 1 32 --stream`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson comes with our stack

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()


DEFAULT_MESSAGES = [{"role": "user", "content": "How do I reset my password?"}]
_DONE = b"data: [DONE]"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of `values`; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


async def run_load(
    base_url: str,
    api_key: str | None,
    model: str,
    concurrency: int,
    requests: int,
    stream: bool,
    *,
    messages: Sequence[dict[str, str]] = DEFAULT_MESSAGES,
    max_tokens: int = 64,
    warmup: int | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Send `requests` chat completions, `concurrency` at a time, over one pooled client.

    `base_url` includes the API prefix (`.../v1`). Returns a flat dict: counts, `rps`, latency
    percentiles in ms (`p50_ms`, `p90_ms`, `p99_ms`, `mean_ms`), and for streams the time to the
    first body byte (`ttfb_p50_ms`, `ttfb_p99_ms`). A request counts as an error when it answers
    non-2xx, fails, or (streaming) ends without `data: [DONE]`; `first_error` shows one of them.
    `warmup` requests (default: `concurrency`) run first, untimed, to open the connections.
    """
    body: dict[str, Any] = {"model": model, "messages": list(messages), "max_tokens": max_tokens}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    payload = _dumps(body)
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    url = base_url.rstrip("/") + "/chat/completions"

    latencies: list[float] = []
    ttfbs: list[float] = []
    errors: list[str] = []

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as client:

        async def one(record: bool) -> None:
            start = time.perf_counter()
            try:
                if stream:
                    first, error = await _stream_once(client, url, payload)
                else:
                    first, error = None, await _post_once(client, url, payload)
            except (aiohttp.ClientError, TimeoutError) as exc:
                first, error = None, f"{type(exc).__name__}: {exc}"
            if not record:
                return
            if error is not None:
                errors.append(error)
                return
            latencies.append((time.perf_counter() - start) * 1000)
            if first is not None:
                ttfbs.append((first - start) * 1000)

        async def worker(count: int, record: bool) -> None:
            for _ in range(count):
                await one(record)

        await _spread(worker, concurrency, concurrency if warmup is None else warmup, False)
        started = time.perf_counter()
        await _spread(worker, concurrency, requests, True)
        wall = time.perf_counter() - started

    result: dict[str, Any] = {
        "concurrency": concurrency,
        "stream": stream,
        "requests": requests,
        "errors": len(errors),
        "wall_s": round(wall, 3),
        "rps": round(len(latencies) / wall, 1) if wall else 0.0,
        "mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
        "p50_ms": round(percentile(latencies, 50), 3),
        "p90_ms": round(percentile(latencies, 90), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
    }
    if stream:
        result["ttfb_p50_ms"] = round(percentile(ttfbs, 50), 3)
        result["ttfb_p99_ms"] = round(percentile(ttfbs, 99), 3)
    if errors:
        result["first_error"] = errors[0]
    return result


async def _spread(worker: Any, concurrency: int, total: int, record: bool) -> None:
    # A fixed pool of workers (not one task per request) keeps exactly `concurrency` in flight.
    share, extra = divmod(total, concurrency)
    counts = [share + (i < extra) for i in range(concurrency)]
    await asyncio.gather(*(worker(n, record) for n in counts if n))


async def _post_once(client: aiohttp.ClientSession, url: str, payload: bytes) -> str | None:
    """One plain request; the error text, or None when it succeeded."""
    async with client.post(url, data=payload) as resp:
        raw = await resp.read()
    return None if resp.ok else f"HTTP {resp.status}: {raw[:200]!r}"


async def _stream_once(
    client: aiohttp.ClientSession, url: str, payload: bytes
) -> tuple[float | None, str | None]:
    """One streamed request: when its first body byte came, and the error text or None."""
    first: float | None = None
    tail = b""
    async with client.post(url, data=payload) as resp:
        if not resp.ok:
            return None, f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
        async for piece in resp.content.iter_any():
            if first is None:
                first = time.perf_counter()
            tail = (tail + piece)[-64:]
    return first, None if _DONE in tail else "stream ended without data: [DONE]"


def main() -> None:
    parser = argparse.ArgumentParser(description="Load an OpenAI-compatible chat endpoint.")
    parser.add_argument("--base-url", default="http://127.0.0.1:9100/v1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", default="stub-model")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    async def sweep() -> None:
        for concurrency in args.concurrency:
            result = await run_load(
                args.base_url, args.api_key, args.model, concurrency, args.requests, args.stream
            )
            print(json.dumps(result))

    try:
        import uvloop  # the gateway runs on uvloop too; it also lowers the generator's own cost
    except ImportError:
        asyncio.run(sweep())
    else:
        uvloop.run(sweep())


if __name__ == "__main__":
    main()
