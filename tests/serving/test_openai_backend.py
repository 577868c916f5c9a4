"""`OpenAIBackend` against the stub upstream served for real by uvicorn on loopback."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from serving.backend import (
    BackendError,
    BackendTimeout,
    ChatMessage,
    Finished,
    GenerationParams,
    TextDelta,
)
from serving.openai_backend import OpenAIBackend
from tests.support.servers import serve_app
from tests.support.stub_upstream import DEFAULT_MODEL, StubUpstream, answer_chunks, create_app

CHUNKS = 5
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "How do I reset my password?"},
]
PARAMS = GenerationParams(max_tokens=32, temperature=0.0)


@pytest.fixture(scope="module")
def stub_app() -> StubUpstream:
    return create_app(chunks=CHUNKS)


@pytest.fixture(scope="module")
def stub_url(stub_app: StubUpstream) -> Iterator[str]:
    with serve_app(stub_app) as url:
        yield url + "/v1"


@pytest.fixture
async def backend(stub_url: str) -> AsyncIterator[OpenAIBackend]:
    backend = OpenAIBackend(stub_url, DEFAULT_MODEL, api_key="sk-test", timeout=5.0)
    await backend.start()
    yield backend
    await backend.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_complete_returns_the_whole_answer_and_usage(backend: OpenAIBackend) -> None:
    result = await backend.complete(MESSAGES, PARAMS)

    assert result.text == "".join(answer_chunks(CHUNKS))
    assert result.finish_reason == "stop"
    assert result.completion_tokens == CHUNKS
    assert result.prompt_tokens == sum(len(m["content"].split()) for m in MESSAGES)


async def test_stream_yields_one_delta_per_upstream_chunk_then_finished(
    backend: OpenAIBackend,
) -> None:
    events = [event async for event in backend.stream(MESSAGES, PARAMS)]

    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == answer_chunks(CHUNKS)
    assert events[-1] == Finished("stop", sum(len(m["content"].split()) for m in MESSAGES), CHUNKS)
    assert sum(isinstance(e, Finished) for e in events) == 1


async def test_stream_passes_each_delta_through_as_it_arrives(stub_url: str) -> None:
    # The stub waits between chunks; buffering anywhere would deliver the deltas all at once.
    delay = 0.05
    backend = OpenAIBackend(
        stub_url, DEFAULT_MODEL, extra_headers={"x-stub-chunk-delay": str(delay)}
    )
    arrivals: list[float] = []
    try:
        async for event in backend.stream(MESSAGES, PARAMS):
            if isinstance(event, TextDelta):
                arrivals.append(time.perf_counter())
    finally:
        await backend.close()

    assert len(arrivals) == CHUNKS
    assert arrivals[-1] - arrivals[0] >= (CHUNKS - 1) * delay * 0.8


async def test_stream_without_usage_falls_back_to_estimates(backend: OpenAIBackend) -> None:
    events = [e async for e in backend.stream(MESSAGES, PARAMS, adapter="stub-nousage")]

    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.completion_tokens == CHUNKS  # one per content delta
    assert finished.prompt_tokens > 0


async def test_length_finish_reason_is_mapped(backend: OpenAIBackend) -> None:
    result = await backend.complete(MESSAGES, PARAMS, adapter="stub-length")
    streamed = [e async for e in backend.stream(MESSAGES, PARAMS, adapter="stub-length")]

    assert result.finish_reason == "length"
    assert streamed[-1] == Finished("length", streamed[-1].prompt_tokens, CHUNKS)  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
async def test_params_adapter_and_key_reach_the_upstream(
    backend: OpenAIBackend, stream: bool
) -> None:
    params = GenerationParams(max_tokens=7, temperature=0.3, top_p=0.9, stop=("\n\n",), seed=42)

    if stream:
        events = [e async for e in backend.stream(MESSAGES, params, adapter="stub-echo")]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
    else:
        text = (await backend.complete(MESSAGES, params, adapter="stub-echo")).text
    echo = json.loads(text)
    sent = echo["body"]

    assert echo["headers"]["authorization"] == "Bearer sk-test"
    assert sent["model"] == "stub-echo"  # the adapter is addressed as the model, as vLLM does
    assert sent["messages"] == MESSAGES
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (7, 0.3, 0.9)
    assert (sent["stop"], sent["seed"]) == (["\n\n"], 42)
    assert sent.get("stream", False) is stream
    if stream:
        assert sent["stream_options"] == {"include_usage": True}


async def test_optional_params_are_left_out(backend: OpenAIBackend) -> None:
    echo = json.loads((await backend.complete(MESSAGES, PARAMS, adapter="stub-echo")).text)

    assert "stop" not in echo["body"] and "seed" not in echo["body"]


async def test_azure_style_key_version_and_extra_headers(stub_url: str) -> None:
    backend = OpenAIBackend(
        stub_url,
        "stub-echo",
        api_key="azure-key",
        api_version="2024-10-21",
        extra_headers={"x-tenant": "acme"},
    )
    try:
        echo = json.loads((await backend.complete(MESSAGES, PARAMS)).text)
    finally:
        await backend.close()

    assert echo["headers"]["api-key"] == "azure-key"
    assert "authorization" not in echo["headers"]
    assert echo["headers"]["x-tenant"] == "acme"
    assert echo["query"] == "api-version=2024-10-21"


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_500_is_a_backend_error(backend: OpenAIBackend, stream: bool) -> None:
    with pytest.raises(BackendError, match=r"HTTP 500.*failed on purpose"):
        if stream:
            [e async for e in backend.stream(MESSAGES, PARAMS, adapter="stub-error")]
        else:
            await backend.complete(MESSAGES, PARAMS, adapter="stub-error")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_reply_that_is_not_the_api_is_a_backend_error(
    backend: OpenAIBackend, stream: bool
) -> None:
    with pytest.raises(BackendError) as caught:
        if stream:
            [e async for e in backend.stream(MESSAGES, PARAMS, adapter="stub-bad")]
        else:
            await backend.complete(MESSAGES, PARAMS, adapter="stub-bad")
    assert not isinstance(caught.value, BackendTimeout)


async def test_an_error_event_mid_stream_is_a_backend_error(backend: OpenAIBackend) -> None:
    seen: list[str] = []
    with pytest.raises(BackendError, match="engine died mid-stream"):
        async for event in backend.stream(MESSAGES, PARAMS, adapter="stub-midstream-error"):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    assert seen == answer_chunks(CHUNKS)[:1]


@pytest.mark.parametrize("stream", [False, True])
async def test_unreachable_upstream_is_a_backend_error(stream: bool) -> None:
    backend = OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1", "m", timeout=2.0)
    try:
        with pytest.raises(BackendError, match=re.escape("127.0.0.1")) as caught:
            if stream:
                [e async for e in backend.stream(MESSAGES, PARAMS)]
            else:
                await backend.complete(MESSAGES, PARAMS)
        assert not isinstance(caught.value, BackendTimeout)
        assert await backend.health() is False
    finally:
        await backend.close()


@pytest.mark.parametrize("adapter", ["stub-hang", "stub-hang-stream"])
async def test_a_hanging_upstream_is_a_backend_timeout(stub_url: str, adapter: str) -> None:
    backend = OpenAIBackend(stub_url, DEFAULT_MODEL, timeout=0.3)
    try:
        with pytest.raises(BackendTimeout):
            [e async for e in backend.stream(MESSAGES, PARAMS, adapter=adapter)]
        if adapter == "stub-hang":
            with pytest.raises(BackendTimeout):
                await backend.complete(MESSAGES, PARAMS, adapter=adapter)
    finally:
        await backend.close()


async def test_closing_a_stream_early_leaves_the_backend_usable(backend: OpenAIBackend) -> None:
    stream = backend.stream(MESSAGES, PARAMS)
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    assert first == TextDelta(answer_chunks(CHUNKS)[0])
    assert (await backend.complete(MESSAGES, PARAMS)).text == "".join(answer_chunks(CHUNKS))


async def test_health(backend: OpenAIBackend) -> None:
    assert await backend.health() is True


async def test_load_and_unload_adapter(backend: OpenAIBackend, stub_app: StubUpstream) -> None:
    await backend.load_adapter("acme-support-v1", "/adapters/acme-support-v1")
    assert stub_app.adapters["acme-support-v1"] == "/adapters/acme-support-v1"
    await backend.load_adapter("acme-support-v1", "/adapters/acme-support-v1")  # idempotent

    await backend.unload_adapter("acme-support-v1")
    assert "acme-support-v1" not in stub_app.adapters
    await backend.unload_adapter("acme-support-v1")  # idempotent


async def test_load_adapter_failure_is_a_backend_error(backend: OpenAIBackend) -> None:
    with pytest.raises(BackendError, match=r"HTTP 404.*No adapter found"):
        await backend.load_adapter("acme-support-v2", "/missing/acme-support-v2")


async def test_adapter_routes_missing_upstream_explain_the_vllm_setting(stub_url: str) -> None:
    # A base URL without /v1 hits the stub's generic 404, like a vLLM without runtime LoRA updates.
    backend = OpenAIBackend(stub_url.removesuffix("/v1"), DEFAULT_MODEL)
    try:
        with pytest.raises(BackendError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            await backend.load_adapter("a", "/adapters/a")
        assert await backend.health() is False  # /models is not there either
    finally:
        await backend.close()
