"""The gateway on a real uvicorn server on loopback, driven by the official `openai` client, in front of
a real OpenAI-compatible upstream (the stub server), plus client disconnects mid-stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import BotCreate, create_bot
from api.settings import Settings
from tests.fakes import ScriptedBackend
from tests.support.servers import serve_app
from tests.support.stub_upstream import answer_chunks
from tests.support.stub_upstream import create_app as create_stub

STUB_CHUNKS = 12


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with serve_app(create_stub(chunks=STUB_CHUNKS)) as url:
        yield url + "/v1"


def _provision(app) -> str:  # type: ignore[no-untyped-def]
    with transaction(app.state.sessions) as session:
        bot = create_bot(
            session,
            BotCreate(slug="acme", name="Acme", system_prompt="Be helpful."),
            base_model=app.state.settings.model,
            actor=SYSTEM_ACTOR,
        )
        return create_key(session, bots=[bot], actor=SYSTEM_ACTOR)[1]


def _rows(app) -> list[Exchange]:  # type: ignore[no-untyped-def]
    with transaction(app.state.sessions) as session:
        return list(session.query(Exchange).order_by(Exchange.created_at))


@pytest.fixture
def gateway(tmp_path: Path, upstream_url: str) -> Iterator[tuple[object, str, str]]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        backend="openai",
        upstream_url=upstream_url,  # type: ignore[call-arg]
        model="stub-model",
        backend_timeout_s=5,
        create_demo_bot=False,
    )
    app = create_app(settings)
    with serve_app(app, lifespan="on") as url:
        yield app, url, _provision(app)


def test_openai_client_non_streaming_through_the_gateway(gateway: tuple[object, str, str]) -> None:
    app, url, key = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=key)
    raw = client.chat.completions.with_raw_response.create(
        model="acme",
        messages=[{"role": "user", "content": "hello"}],
        temperature=0.3,
        max_tokens=50,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "".join(answer_chunks(STUB_CHUNKS))
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-conversation-id"].startswith("conv_")
    [row] = _rows(app)
    assert row.answer == completion.choices[0].message.content and row.status == "completed"
    assert row.completion_tokens == completion.usage.completion_tokens
    assert [m.id for m in client.models.list().data] == ["acme"]


def test_openai_client_streaming_passes_chunks_through(gateway: tuple[object, str, str]) -> None:
    app, url, key = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=key)
    stream = client.chat.completions.create(
        model="acme",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    assert pieces == answer_chunks(
        STUB_CHUNKS
    )  # one client chunk per upstream chunk: nothing buffered or merged
    assert usage is not None and usage.completion_tokens == STUB_CHUNKS
    [row] = _rows(app)
    assert row.answer == "".join(pieces) and row.streamed


def test_openai_client_sees_errors_in_the_envelope(gateway: tuple[object, str, str]) -> None:
    _, url, key = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="acme", messages=[{"role": "user", "content": "hi"}], n=3
        )
    assert bad.value.param == "n"


def test_upstream_down_gives_502_and_stores_the_error(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        backend="openai",  # type: ignore[call-arg]
        upstream_url="http://127.0.0.1:9/v1",
        model="stub-model",
        backend_timeout_s=5,
        create_demo_bot=False,
    )
    app = create_app(settings)
    with serve_app(app, lifespan="on") as url:
        key = _provision(app)
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="acme", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 502
        assert httpx.get(url + "/readyz").status_code == 503
    [row] = _rows(app)
    assert row.status == "error" and row.error


def test_client_disconnect_mid_stream_leaves_an_interrupted_row(tmp_path: Path) -> None:
    backend = ScriptedBackend(words=[f" w{i}" for i in range(200)])
    backend.delay = 0.02
    settings = Settings(
        _env_file=None, data_dir=tmp_path, max_tokens_limit=4096, create_demo_bot=False
    )  # type: ignore[call-arg]
    app = create_app(settings, backend=backend)
    with serve_app(app, lifespan="on") as url:
        key = _provision(app)
        body = {
            "model": "acme",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 500,
        }
        received = []
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        received.append(delta)
                if len(received) >= 5:
                    break  # leaving the block closes the connection
        deadline = time.monotonic() + 10
        rows: list[Exchange] = []
        while time.monotonic() < deadline and not rows:
            rows = _rows(app)
            time.sleep(0.05)
    [row] = rows
    assert row.status == "interrupted" and row.finish_reason == "interrupted"
    assert row.answer.startswith(
        "".join(received)
    )  # everything the client saw, and what came after
    assert len(row.answer.split()) < 200
    assert backend.cancelled == 1  # generation stopped
