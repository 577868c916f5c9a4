"""An ASGI app under uvicorn in a background thread on a free loopback port: what `shadowdesk
demo-loop` starts when no server is given, and what the tests and benchmarks serve apps with."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve_app(app: Any, *, startup_timeout: float = 10.0, **config: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread; yield its base URL (`http://127.0.0.1:PORT`).

    The socket is bound before the server starts, so the port is known and free of races. Extra
    keyword arguments go to `uvicorn.Config` (e.g. `lifespan="on"`). On exit the server shuts down;
    requests still open after one second (hung streams) are cut.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 1,
        "proxy_headers": False,  # as `shadowdesk serve` without trusted proxies
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server exited during startup (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {startup_timeout}s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()
