"""Real servers for tests and benchmarks: any ASGI app on a free loopback port in a thread, the stub
upstream as its own process, free ports, and polling without fixed sleeps. Apps run under
`api.threaded_server.serve_app`, re-exported here."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from api.threaded_server import serve_app as serve_app  # re-exported for tests and benches

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
