"""LoRA adapters in the in-process backend: hot-loaded while requests run, mixed in one batch with
the base model and each other, unloaded only once idle, and refused clearly when they cannot load."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.backend import BackendError, GenerationParams, TextDelta
from serving.transformers_backend import TransformersBackend
from tests.support.lora import random_adapters

GREEDY = GenerationParams(max_tokens=12, temperature=0)
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def adapters(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two LoRA adapters with random (non-zero) weights, so each visibly changes the answers."""
    return random_adapters(
        hf_folder,
        ["shop-v1", "bank-v1"],
        tmp_path_factory,
        alpha=64,
        target_modules=["q_proj", "v_proj"],
    )


@pytest.fixture
def backend(hf_folder: Path) -> Iterator[TransformersBackend]:
    """A backend with its own copy of the model: adapters change the model they are loaded into."""
    served = TransformersBackend(hf_folder, torch_threads=1, model_name="smollm2")
    asyncio.run(served.start())
    yield served
    asyncio.run(served.close())


async def answer(backend: TransformersBackend, adapter: str | None, max_tokens: int = 12) -> str:
    params = GenerationParams(max_tokens=max_tokens, temperature=0)
    return (await backend.complete(QUESTION, params, adapter)).text


def test_adapters_are_mixed_in_one_batch_and_match_their_answers_alone(
    backend: TransformersBackend, adapters: dict[str, Path]
) -> None:
    async def scenario() -> dict[str, Any]:
        base_before = await answer(backend, None)
        for name, folder in adapters.items():
            await backend.load_adapter(name, str(folder))
        alone = {name: await answer(backend, name) for name in [None, *adapters]}
        forwards = backend.stats.decode_forwards
        together = await asyncio.gather(*(answer(backend, name) for name in [None, *adapters]))
        return {
            "base_before": base_before,
            "alone": alone,
            "together": dict(zip([None, *adapters], together, strict=True)),
            "shared_forwards": backend.stats.decode_forwards - forwards,
            "max_batch": backend.stats.max_batch_seen,
        }

    seen = asyncio.run(scenario())
    alone = seen["alone"]
    assert alone[None] == seen["base_before"]  # loading adapters leaves the base model's answers
    assert len({alone[None], alone["shop-v1"], alone["bank-v1"]}) == 3  # each adapter counts
    assert seen["together"] == alone  # one mixed batch gives each row its own adapter's answer
    assert seen["max_batch"] == 3
    assert seen["shared_forwards"] <= 12  # answered together, not one after the other


def test_an_adapter_hot_loads_while_a_request_streams_and_unloads_once_idle(
    backend: TransformersBackend, adapters: dict[str, Path]
) -> None:
    async def scenario() -> dict[str, Any]:
        base = await answer(backend, None, max_tokens=40)
        await backend.load_adapter("shop-v1", str(adapters["shop-v1"]))
        with_adapter = await answer(backend, "shop-v1", max_tokens=40)
        stream = backend.stream(QUESTION, GenerationParams(max_tokens=40, temperature=0), "shop-v1")
        first = await anext(stream)  # the adapter's request is running...
        await backend.load_adapter("bank-v1", str(adapters["bank-v1"]))  # ...a new one hot-loads
        await backend.unload_adapter("shop-v1")  # retiring: waits for the running request
        still_loaded = sorted(backend.adapters)
        rest = [event async for event in stream]
        text = "".join(e.text for e in [first, *rest] if isinstance(e, TextDelta))
        await asyncio.sleep(0.05)
        await backend.unload_adapter("bank-v1")
        return {
            "base": base,
            "with_adapter": with_adapter,
            "streamed": text,
            "loaded_while_running": still_loaded,
            "loaded_after": sorted(backend.adapters),
            "base_after": await answer(backend, None, max_tokens=40),
        }

    seen = asyncio.run(scenario())
    assert seen["streamed"] == seen["with_adapter"]  # the running request kept its adapter
    assert seen["loaded_while_running"] == ["bank-v1", "shop-v1"]
    assert seen["loaded_after"] == []
    assert seen["base_after"] == seen["base"]  # the last unload restored the plain model

    with pytest.raises(BackendError, match="not loaded"):
        asyncio.run(answer(backend, "shop-v1"))


def test_bad_adapters_are_refused_with_a_reason(
    backend: TransformersBackend, adapters: dict[str, Path], tmp_path: Path
) -> None:
    async def scenario() -> list[str]:
        errors = []
        for name, path in [
            ("nothing-v1", tmp_path),  # not an adapter folder
            ("__base__", adapters["shop-v1"]),  # the reserved name
        ]:
            try:
                await backend.load_adapter(name, str(path))
            except BackendError as exc:
                errors.append(str(exc))
        await backend.load_adapter("shop-v1", str(adapters["shop-v1"]))
        await backend.load_adapter("shop-v1", str(adapters["shop-v1"]))  # same again: a no-op
        try:  # one name, one folder: names are immutable
            await backend.load_adapter("shop-v1", str(adapters["bank-v1"]))
        except BackendError as exc:
            errors.append(str(exc))
        errors.append(await answer(backend, "shop-v1"))  # still serves the first weights
        return errors

    not_adapter, reserved, renamed, served = asyncio.run(scenario())
    assert "no adapter_config.json" in not_adapter
    assert "reserved" in reserved
    assert "immutable" in renamed
    assert served
