"""The transformers backend on the real packaged SmolLM2 (slow), plus its model-free checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import cast

import pytest

from serving.backend import (
    BackendError,
    ChatMessage,
    Finished,
    GenerationParams,
    StreamEvent,
    TextDelta,
)
from serving.decode_stream import IncrementalDecoder
from serving.transformers_backend import ContextLengthExceeded, TransformersBackend

Factory = Callable[[int], Awaitable[TransformersBackend]]
GREEDY = GenerationParams(max_tokens=24, temperature=0.0)
FRANCE: list[ChatMessage] = [{"role": "user", "content": "What is the capital of France?"}]
SUPPORT_QUESTIONS = [
    "How do I reset my password?",
    "My order hasn't arrived yet, what should I do?",
    "How do I change my shipping address?",
    "What payment methods do you accept?",
]


def ask(question: str) -> list[ChatMessage]:
    return [{"role": "user", "content": question}]


async def collect(stream_events: object) -> tuple[list[str], Finished]:
    deltas: list[str] = []
    async for event in stream_events:  # type: ignore[attr-defined]
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            assert isinstance(event, Finished)
            return deltas, event
    raise AssertionError("stream ended without Finished")


async def wait_idle(backend: TransformersBackend, timeout: float = 10.0) -> None:
    """Wait until the engine has no running or waiting rows (it retires rows just after their
    last event)."""
    async with asyncio.timeout(timeout):
        while backend.stats.active or backend.stats.waiting:
            await asyncio.sleep(0.01)


# -- without the model -------------------------------------------------------------------------


def test_unknown_model_source_is_rejected() -> None:
    backend = TransformersBackend("/nonexistent/model")
    with pytest.raises(FileNotFoundError):
        asyncio.run(backend.start())


async def test_not_started_backend_is_unhealthy_and_refuses() -> None:
    backend = TransformersBackend()
    assert backend.kind == "transformers"
    assert backend.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert not await backend.health()
    with pytest.raises(BackendError):
        await backend.complete(FRANCE, GREEDY)


def test_context_length_exceeded_is_a_value_error() -> None:
    assert issubclass(ContextLengthExceeded, ValueError)


def test_bad_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="dtype"):
        TransformersBackend(dtype="float33")
    with pytest.raises(ValueError, match="max_batch_size"):
        TransformersBackend(max_batch_size=0)


# -- on the real model -------------------------------------------------------------------------


@pytest.mark.slow
async def test_greedy_answer_mentions_paris(smollm2_backend: TransformersBackend) -> None:
    assert await smollm2_backend.health()
    result = await smollm2_backend.complete(FRANCE, GREEDY)
    assert "Paris" in result.text
    assert result.finish_reason == "stop"  # ended on the model's <|im_end|>


@pytest.mark.slow
async def test_stream_deltas_concatenate_to_complete_text(
    smollm2_backend: TransformersBackend,
) -> None:
    messages = ask("Write one sentence about tea, with an emoji and the word café.")
    deltas, finished = await collect(smollm2_backend.stream(messages, GREEDY))
    complete = await smollm2_backend.complete(messages, GREEDY)
    assert len(deltas) > 1 and all(deltas)
    assert "".join(deltas) == complete.text
    assert (finished.finish_reason, finished.completion_tokens) == (
        complete.finish_reason,
        complete.completion_tokens,
    )


@pytest.mark.slow
def test_incremental_decoding_with_the_real_tokenizer(smollm2_backend: TransformersBackend) -> None:
    tokenizer = smollm2_backend.tokenizer
    text = "Prix : 12 € — naïve café 🙂🚀 日本語, done.\n  Indented line."
    ids = tokenizer.encode(text, add_special_tokens=False)

    def decode(part: Sequence[int]) -> str:
        return str(tokenizer.decode(list(part), skip_special_tokens=True))

    decoder = IncrementalDecoder(decode)
    deltas = [decoder.push(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + decoder.flush() == decode(ids) == text


@pytest.mark.slow
async def test_max_tokens_ends_with_length(smollm2_backend: TransformersBackend) -> None:
    params = GenerationParams(max_tokens=5, temperature=0.0)
    result = await smollm2_backend.complete(ask(SUPPORT_QUESTIONS[0]), params)
    assert result.finish_reason == "length"
    assert result.completion_tokens == 5
    tokenizer = smollm2_backend.tokenizer
    assert len(tokenizer.encode(result.text, add_special_tokens=False)) == 5


@pytest.mark.slow
async def test_stop_string_cuts_the_answer(smollm2_backend: TransformersBackend) -> None:
    full = await smollm2_backend.complete(FRANCE, GREEDY)
    assert "France is" in full.text
    params = GenerationParams(max_tokens=24, temperature=0.0, stop=("France is",))
    deltas, finished = await collect(smollm2_backend.stream(FRANCE, params))
    assert "".join(deltas) == full.text[: full.text.index("France is")]
    assert finished.finish_reason == "stop"
    assert finished.completion_tokens < full.completion_tokens


@pytest.mark.slow
async def test_usage_counts_match_the_tokenizer(smollm2_backend: TransformersBackend) -> None:
    tokenizer = smollm2_backend.tokenizer
    templated = tokenizer.apply_chat_template(
        [dict(m) for m in FRANCE], add_generation_prompt=True, tokenize=False
    )
    prompt_tokens = len(tokenizer.encode(templated, add_special_tokens=False))
    result = await smollm2_backend.complete(FRANCE, GREEDY)
    assert result.prompt_tokens == prompt_tokens == smollm2_backend.count_tokens(FRANCE)
    # The answer's tokens plus the end-of-turn token that stopped it.
    answer_tokens = len(tokenizer.encode(result.text, add_special_tokens=False))
    assert result.completion_tokens == answer_tokens + 1


@pytest.mark.slow
async def test_prompt_too_long_for_the_context(smollm2_backend: TransformersBackend) -> None:
    limit = smollm2_backend.max_context_tokens
    assert limit == 8192
    params = GenerationParams(max_tokens=limit, temperature=0.0)
    with pytest.raises(ContextLengthExceeded):
        await smollm2_backend.complete(FRANCE, params)
    with pytest.raises(ValueError):
        await smollm2_backend.complete(FRANCE, GenerationParams(top_p=0.0))


@pytest.mark.slow
async def test_same_seed_same_answer_alone_and_batched(fresh_backend: Factory) -> None:
    backend = await fresh_backend(8)
    messages = ask("Invent a name for a friendly robot and describe it.")
    params = GenerationParams(max_tokens=20, temperature=1.0, top_p=0.95, seed=1234)
    alone = await backend.complete(messages, params)
    again = await backend.complete(messages, params)
    companions = [
        backend.complete(ask(q), GenerationParams(max_tokens=12 + 4 * i, temperature=0.8, seed=i))
        for i, q in enumerate(SUPPORT_QUESTIONS)
    ]
    batched, *_ = await asyncio.gather(backend.complete(messages, params), *companions)
    other_seed = await backend.complete(
        messages, GenerationParams(max_tokens=20, temperature=1.0, top_p=0.95, seed=4321)
    )
    assert backend.stats.max_batch_seen >= 4
    assert alone.text == again.text == batched.text
    assert other_seed.text != alone.text


@pytest.mark.slow
async def test_concurrent_requests_are_batched(fresh_backend: Factory) -> None:
    backend = await fresh_backend(8)
    params = GenerationParams(max_tokens=16, temperature=0.0)
    alone = [await backend.complete(ask(q), params) for q in SUPPORT_QUESTIONS]
    sequential_steps = backend.stats.decode_forwards
    together = await asyncio.gather(*(backend.complete(ask(q), params) for q in SUPPORT_QUESTIONS))
    await wait_idle(backend)
    stats = backend.stats
    assert stats.max_batch_seen == 4
    batched_steps = stats.decode_forwards - sequential_steps
    # Newcomers join at step boundaries, so a late one costs at most a step or two extra.
    assert batched_steps <= max(r.completion_tokens for r in together) + 2
    assert batched_steps < sequential_steps / 2
    # Batching (left padding, merged caches) does not change greedy answers.
    assert [r.text for r in together] == [r.text for r in alone]


@pytest.mark.slow
async def test_requests_joining_a_running_batch_get_their_solo_answers(
    fresh_backend: Factory,
) -> None:
    """Newcomers are merged into a running batch (caches of different lengths, left-padded both
    ways), an early finisher leaves it and its padding is trimmed; nobody's answer changes."""
    backend = await fresh_backend(8)
    params = GenerationParams(max_tokens=40, temperature=0.0)
    long_prompt: list[ChatMessage] = [
        {"role": "system", "content": "You are the support assistant of Nimbus Owl Labs. " * 8},
        {"role": "user", "content": SUPPORT_QUESTIONS[2]},
    ]
    conversations = [ask(SUPPORT_QUESTIONS[0]), long_prompt, FRANCE, ask(SUPPORT_QUESTIONS[3])]
    solo = [await backend.complete(m, params) for m in conversations]

    async def joining_late(messages: list[ChatMessage], after: int) -> str:
        async with asyncio.timeout(60):
            while backend.stats.decode_forwards < after:
                await asyncio.sleep(0.005)
        return (await backend.complete(messages, params)).text

    steps = backend.stats.decode_forwards
    texts = await asyncio.gather(
        *(
            joining_late(m, steps + after)
            for m, after in zip(conversations, (0, 5, 8, 20), strict=True)
        )
    )
    assert list(texts) == [r.text for r in solo]
    assert backend.stats.max_batch_seen >= 3


@pytest.mark.slow
async def test_closed_stream_frees_its_slot(fresh_backend: Factory) -> None:
    backend = await fresh_backend(1)  # one slot: the waiting request needs the cancelled one's
    params = GenerationParams(max_tokens=400, temperature=0)
    long_stream = cast(
        AsyncGenerator[StreamEvent, None],
        backend.stream(ask("Write a long story about a dragon."), params),
    )
    first = await anext(long_stream)
    assert isinstance(first, TextDelta)
    waiting = asyncio.create_task(backend.complete(FRANCE, GREEDY))
    await asyncio.sleep(0.2)
    assert backend.stats.waiting == 1
    await long_stream.aclose()  # what a disconnected client's stream does
    result = await asyncio.wait_for(waiting, timeout=60)
    assert "Paris" in result.text
    await wait_idle(backend)
    assert backend.stats.cancelled == 1
    assert backend.stats.generated_tokens < 400


@pytest.mark.slow
async def test_cancelled_consumer_task_cancels_its_row(fresh_backend: Factory) -> None:
    backend = await fresh_backend(8)
    events: list[StreamEvent] = []

    async def consume() -> None:
        async for event in backend.stream(
            ask("Write a long story about a dragon."), GenerationParams(max_tokens=400)
        ):
            events.append(event)

    task = asyncio.create_task(consume())
    other = asyncio.create_task(backend.complete(FRANCE, GREEDY))
    async with asyncio.timeout(30):
        while len(events) < 3:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "Paris" in (await other).text
    await wait_idle(backend)
    assert backend.stats.cancelled == 1 and backend.stats.finished == 1


@pytest.mark.slow
async def test_failure_in_the_model_thread_spares_the_others(
    fresh_backend: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await fresh_backend(8)
    engine = backend._engine
    assert engine is not None
    real_forward = engine._forward
    fail_next_prefill = False

    def flaky_forward(ids, mask, positions, cache, adapters):  # type: ignore[no-untyped-def]
        nonlocal fail_next_prefill
        if fail_next_prefill and ids.shape[1] > 1:
            fail_next_prefill = False
            raise RuntimeError("injected prefill failure")
        return real_forward(ids, mask, positions, cache, adapters)

    monkeypatch.setattr(engine, "_forward", flaky_forward)
    params = GenerationParams(max_tokens=32, temperature=0)
    running = backend.stream(ask(SUPPORT_QUESTIONS[1]), params)
    first = await anext(running)
    fail_next_prefill = True
    with pytest.raises(BackendError, match="injected"):
        await backend.complete(FRANCE, GREEDY)
    deltas, finished = await collect(running)
    assert finished.finish_reason == "length" and finished.completion_tokens == 32
    assert isinstance(first, TextDelta) and deltas
    assert "Paris" in (await backend.complete(FRANCE, GREEDY)).text
    assert await backend.health()


@pytest.mark.slow
async def test_close_interrupts_running_streams(fresh_backend: Factory) -> None:
    backend = await fresh_backend(8)
    params = GenerationParams(max_tokens=400)
    stream = backend.stream(ask("Write a long story about a dragon."), params)
    await anext(stream)
    await backend.close()
    _, finished = await collect(stream)
    assert finished.finish_reason == "interrupted"
    assert not await backend.health()
