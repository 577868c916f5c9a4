"""The whole serving path on the real SmolLM2: uvicorn on loopback, the official `openai` client,
usage counted with the model's tokenizer, concurrent requests batched, exchanges stored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import openai
import pytest

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import BotCreate, create_bot
from api.settings import Settings
from serving.transformers_backend import TransformersBackend
from tests.support.servers import serve_app

pytestmark = pytest.mark.slow

SYSTEM = "You are a helpful assistant."


@pytest.fixture
def server(
    tmp_path: Path, fresh_backend: Callable[[int], Awaitable[TransformersBackend]]
) -> Iterator[tuple[object, str, str, TransformersBackend]]:
    backend = asyncio.run(fresh_backend(8))
    app = create_app(
        Settings(_env_file=None, data_dir=tmp_path, create_demo_bot=False), backend=backend
    )  # type: ignore[call-arg]
    with serve_app(app, lifespan="on", startup_timeout=60) as url:
        with transaction(app.state.sessions) as session:
            bot = create_bot(
                session,
                BotCreate(slug="acme", name="Acme", system_prompt=SYSTEM, temperature=0),
                base_model=backend.model_name,
                actor=SYSTEM_ACTOR,
            )
            key = create_key(session, bots=[bot], actor=SYSTEM_ACTOR)[1]
        yield app, url, key, backend


def test_openai_client_gets_a_real_answer_with_tokenizer_usage(server) -> None:  # type: ignore[no-untyped-def]
    app, url, key, backend = server
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, timeout=120)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    completion = client.chat.completions.create(
        model="acme", messages=question, max_tokens=24, temperature=0
    )
    text = completion.choices[0].message.content or ""
    assert "Paris" in text
    expected_prompt = backend.count_tokens([{"role": "system", "content": SYSTEM}, *question])
    assert completion.usage is not None and completion.usage.prompt_tokens == expected_prompt
    assert 0 < completion.usage.completion_tokens <= 24
    with transaction(app.state.sessions) as session:
        [row] = session.query(Exchange).all()
        assert (
            row.answer == text
            and row.prompt_tokens == expected_prompt
            and row.status == "completed"
        )


def test_streaming_with_the_openai_client_matches_non_streaming(server) -> None:  # type: ignore[no-untyped-def]
    _, url, key, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, timeout=120)
    question = [{"role": "user", "content": "Name three colours."}]
    whole = client.chat.completions.create(
        model="acme", messages=question, max_tokens=20, temperature=0
    )
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model="acme",
        messages=question,
        max_tokens=20,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        usage = chunk.usage or usage
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_seed_and_stop_are_honoured(server) -> None:  # type: ignore[no-untyped-def]
    _, url, key, _ = server
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, timeout=120)
    question = [{"role": "user", "content": "Write a short sentence about cats."}]
    a, b = (
        client.chat.completions.create(
            model="acme", messages=question, max_tokens=16, temperature=1.0, seed=1234
        )
        .choices[0]
        .message.content
        for _ in range(2)
    )
    assert a == b
    first = client.chat.completions.create(
        model="acme", messages=question, max_tokens=16, temperature=0
    )
    text = first.choices[0].message.content or ""
    word = text.split()[2]
    stopped = client.chat.completions.create(
        model="acme", messages=question, max_tokens=16, temperature=0, stop=[word]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(word)]


def test_concurrent_requests_are_batched(server) -> None:  # type: ignore[no-untyped-def]
    _, url, key, backend = server

    async def ask(client: openai.AsyncOpenAI, i: int) -> str:
        r = await client.chat.completions.create(
            model="acme",
            messages=[{"role": "user", "content": f"Count from {i} to {i + 3}."}],
            max_tokens=12,
            temperature=0,
        )
        return r.choices[0].message.content or ""

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, timeout=120) as client:
            return await asyncio.gather(*(ask(client, i) for i in range(4)))

    answers = asyncio.run(main())
    assert all(answers)
    assert backend.stats.max_batch_seen >= 2
