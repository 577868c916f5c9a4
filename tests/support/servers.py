"""Real servers for tests and benchmarks: any ASGI app on a free loopback port in a thread, the stub
upstream as its own process, free ports, and polling without fixed sleeps."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(probe: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def answers(url: str) -> bool:
    """True when `url` answers 200 now."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def stub_upstream_process(chunks: int = 8) -> Iterator[str]:
    """The stub upstream (tests/support/stub_upstream.py) as its own process; yields its `/v1` URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "support" / "stub_upstream.py"),
            "--port",
            str(port),
            "--chunks",
            str(chunks),
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for(
            lambda: proc.poll() is not None or answers(url + "/models"),
            timeout=30,
            what="the stub upstream",
        )
        assert proc.poll() is None, "the stub upstream exited during startup"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


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
                raise RuntimeError("the test server exited during startup (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test server did not start within {startup_timeout}s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()
