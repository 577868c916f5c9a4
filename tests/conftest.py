"""Test-wide setup. Two cores are shared by the test process, servers it starts and model threads, so
thread counts are pinned before torch is imported anywhere."""

import os

# A shell that runs `make serve` may export SHADOWDESK_* (an API key, a data dir, a production
# database URL): none of it may leak into the tests, nor a `.env` file in the working directory.
for _name in [n for n in os.environ if n.startswith("SHADOWDESK_")]:
    del os.environ[_name]
os.environ["SHADOWDESK_ENV_FILE"] = os.devnull

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


pytest_plugins = ["tests.support.databases"]

import asyncio  # noqa: E402
import gc  # noqa: E402
from collections.abc import Awaitable, Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from serving.packaged_model import PackagedModelMissing, packaged_gguf_path  # noqa: E402
from serving.transformers_backend import TransformersBackend  # noqa: E402


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test, so a leaked connection or socket is reported (as an error: warnings
    are errors) against the test that leaked it, not a later one. What existed before the test is
    frozen first: the collection then scans only the test's own objects (a full one over the loaded
    models costs about a second)."""
    gc.freeze()
    yield
    gc.collect()


@pytest.fixture(scope="session")
def smollm2_backend(pytestconfig: pytest.Config) -> Iterator[TransformersBackend]:
    """The packaged SmolLM2, loaded once per session (one torch thread: the box is shared).

    The GGUF is converted to an HF folder in pytest's cache dir on the first run (~15 s), so later
    sessions load in about a second. The engine thread does not belong to any event loop, so the
    backend serves every test's loop.
    """
    try:
        packaged_gguf_path()
    except PackagedModelMissing as exc:  # installed by `make install`; missing is a broken setup
        pytest.fail(str(exc))
    cache = getattr(pytestconfig, "cache", None)  # absent under `-p no:cacheprovider`
    cache_dir = cache.mkdir("smollm2-hf") if cache is not None else None
    backend = TransformersBackend("smollm2", cache_dir=cache_dir, torch_threads=1)
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(scope="session")
def hf_folder(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged SmolLM2 as an HF folder (what vLLM and peft adapters are built on)."""
    from tests.support.lora import smollm2_hf_folder

    return smollm2_hf_folder(pytestconfig, tmp_path_factory)


@pytest.fixture
def fresh_backend(
    smollm2_backend: TransformersBackend,
) -> Iterator[Callable[[int], Awaitable[TransformersBackend]]]:
    """Make extra backends over the already loaded model (own engine, own counters), closed after
    the test."""
    made: list[TransformersBackend] = []

    async def make(max_batch_size: int = 8) -> TransformersBackend:
        backend = TransformersBackend.from_loaded(
            smollm2_backend.model,
            smollm2_backend.tokenizer,
            model_name=smollm2_backend.model_name,
            max_batch_size=max_batch_size,
            torch_threads=1,
        )
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        asyncio.run(backend.close())
