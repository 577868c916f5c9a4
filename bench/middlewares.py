"""What each ASGI middleware in front of every route costs a request: the body limit, the NUL guard
and the widget's CORS, each around a bare app, and all three stacked as the app stacks them. In
process (no sockets, no framework), so the figures are the middlewares' own work.

    python bench/middlewares.py [--requests 50000]

The request is a typical chat body (JSON, ~300 bytes). Goal: microseconds, far under the gateway's
1 ms budget (bench/gateway.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.body_limit import BodyLimit  # noqa: E402
from api.nul_guard import NulGuard  # noqa: E402
from api.routes.widget import WidgetCors  # noqa: E402

BODY = json.dumps(
    {
        "model": "acme",
        "stream": True,
        "messages": [{"role": "user", "content": "How long does the battery last on warm? " * 6}],
    }
).encode()
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "query_string": b"",
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"authorization", b"Bearer sk-0123456789"),
    ],
}


async def bare(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body and answers, as a route would."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def per_request_us(app: Any, n: int) -> float:
    async def send(_: Any) -> None:
        pass

    started = time.perf_counter()
    for _ in range(n):
        messages = [{"type": "http.request", "body": BODY, "more_body": False}]

        async def receive() -> Any:
            return messages.pop()

        await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    limit = {"json_limit": 1 << 20, "upload_limit": 100 << 20}
    apps = {
        "bare app (baseline)": bare,
        "body limit": BodyLimit(bare, **limit),
        "NUL guard": NulGuard(bare),
        "widget CORS": WidgetCors(bare),
        "all three, stacked": BodyLimit(NulGuard(WidgetCors(bare)), **limit),
    }

    async def run() -> None:
        for app in apps.values():  # warm up
            await per_request_us(app, 1000)
        best = {
            name: min([await per_request_us(app, args.requests) for _ in range(3)])
            for name, app in apps.items()
        }
        base = best["bare app (baseline)"]
        for name, us in best.items():
            print(
                f"{name:>20}: {us:6.2f} us a request ({us / base:5.2f}x), adds {us - base:5.2f} us"
            )

    asyncio.run(run())


if __name__ == "__main__":
    main()
