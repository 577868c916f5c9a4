"""Continuous batching for an in-process transformers causal LM.

One dedicated thread owns the model. Requests arrive through a thread-safe inbox; at every step
boundary the thread drops cancelled rows, prefills newcomers (left-padded, as one batch) and merges
their KV cache into the running batch, then runs one decode forward for all rows. Rows leave the
batch the moment they finish or are cancelled, so the batch stays full while requests come and go.

The running batch is a `DynamicCache` whose rows are left-padded to a common length, a 2D attention
mask marking the real cache columns, and explicit per-row position ids (a row's positions count its
own tokens only, so padding never shifts its rotary embeddings).

Each request may name a LoRA adapter (`LoraSet`): a forward passes every row's adapter, so one batch
mixes bots. Adapters are loaded and unloaded by the engine thread between steps (`call`), and an
adapter is only dropped once no running or waiting request uses it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

from serving.backend import (
    BackendError,
    Finished,
    FinishReason,
    GenerationParams,
    StreamEvent,
    TextDelta,
)
from serving.decode_stream import IncrementalDecoder, StopMatcher
from serving.lora_set import LoraSet

logger = logging.getLogger(__name__)

#: Receives a request's events, in order, from the engine thread; must not block.
EventSink = Callable[[StreamEvent | BackendError], None]


@dataclass(eq=False)
class EngineRequest:
    """One generation request as the engine sees it: an already templated and tokenized prompt."""

    prompt_ids: list[int]
    params: GenerationParams
    sink: EventSink
    #: A LoRA adapter loaded into the engine (`load_adapter`), or None for the base model.
    adapter: str | None = None
    #: Set from any thread; the engine drops the request at its next step boundary.
    cancelled: bool = False


@dataclass
class EngineStats:
    """Counters that show what the engine did (read a copy via `BatchEngine.stats`)."""

    prefill_forwards: int = 0
    decode_forwards: int = 0
    max_batch_seen: int = 0
    generated_tokens: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    active: int = 0
    waiting: int = 0


@dataclass(eq=False)
class _Row:
    """A running sequence: one row of the batch."""

    request: EngineRequest
    decoder: IncrementalDecoder
    stops: StopMatcher
    generator: torch.Generator | None
    position: int = 0  # position id of `next_token`
    next_token: int = 0  # sampled, not yet in the cache
    generated: int = 0


_STOP = object()


@dataclass(eq=False)
class _Call:
    """Work that must run in the engine thread between steps (it changes the model)."""

    work: Callable[[], Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    cache: DynamicCache | None = None
    mask: torch.Tensor | None = None  # (rows, cache columns), 1 = real token


class BatchEngine:
    """Runs generation for many concurrent requests on one model, in one background thread."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch_size: int = 8,
        eos_token_ids: Collection[int] = (),
        torch_threads: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._model = model
        self._tokenizer = tokenizer
        self._max_batch_size = max_batch_size
        self._eos = frozenset(eos_token_ids)
        self._torch_threads = torch_threads
        # Any id will do for padding (it is masked); prefer the tokenizer's own pad token.
        pad = tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else min(self._eos, default=0)
        # transformers 5 renamed the forward's `past_key_values` to `cache` (the old name goes
        # in 5.40); 4.x only knows the old one.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._loras = LoraSet(model)
        self._retiring: set[str] = set()
        _kv_layers(DynamicCache(config=model.config))  # refuse unsupported models up front
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._waiting: deque[EngineRequest] = deque()
        self._batch = _Batch()
        self._stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name="batch-engine", daemon=True)

    # -- API for other threads -------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread."""
        self._thread.start()

    def submit(self, request: EngineRequest) -> None:
        """Queue a request; its events go to `request.sink`."""
        if not self._thread.is_alive():
            raise BackendError("the generation thread is not running")
        self._inbox.put(request)

    def cancel(self, request: EngineRequest) -> None:
        """Drop a request at the next step boundary; it gets no further events."""
        request.cancelled = True
        self._inbox.put(None)  # wakes an idle engine so the request leaves the inbox

    def load_adapter(self, name: str, path: str) -> concurrent.futures.Future[None]:
        """Load a LoRA adapter under `name` (idempotent); done when the future is."""

        def work() -> None:
            self._retiring.discard(name)
            self._loras.load(name, path)

        return self._call(work)

    def unload_adapter(self, name: str) -> concurrent.futures.Future[None]:
        """Drop an adapter once no running or waiting request uses it (new requests for it are
        still served until then)."""

        def work() -> None:
            if name in self._loras:
                self._retiring.add(name)
                self._unload_idle()

        return self._call(work)

    @property
    def adapters(self) -> dict[str, str]:
        """Loaded adapters (name -> folder)."""
        return self._loras.names

    def _call(self, work: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        if not self._thread.is_alive():
            raise BackendError("the generation thread is not running")
        call = _Call(work)
        self._inbox.put(call)
        return call.future

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread; requests still running end with finish reason "interrupted"."""
        if self._thread.is_alive():
            self._inbox.put(_STOP)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        return dataclasses.replace(
            self._stats, active=len(self._batch.rows), waiting=len(self._waiting)
        )

    # -- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        if self._torch_threads:
            # The thread count is per thread for OpenMP, so set it here, where the math runs.
            torch.set_num_threads(self._torch_threads)
        with torch.inference_mode():
            while self._take_inbox(block=not self._batch.rows and not self._waiting):
                try:
                    self._step()
                except Exception as exc:  # a bug in the bookkeeping: fail the batch, keep serving
                    logger.exception("engine step failed")
                    for row in self._batch.rows:
                        self._fail(row.request, exc)
                    self._batch = _Batch()
        self._interrupt_all()
        while not self._inbox.empty():  # calls that came after the stop get an answer too
            item = self._inbox.get_nowait()
            if isinstance(item, _Call) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(BackendError("the generation thread stopped"))

    def _step(self) -> None:
        self._drop_cancelled()
        self._admit()
        if self._batch.rows:
            self._decode_step()
        self._unload_idle()

    def _take_inbox(self, block: bool) -> bool:
        """Move newly submitted requests to the waiting line; False once asked to stop."""
        while True:
            try:
                item = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if item is _STOP:
                return False
            if isinstance(item, EngineRequest):
                self._waiting.append(item)
            elif isinstance(item, _Call):
                self._run_call(item)

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.work())
        except Exception as exc:  # the caller sees it; the engine keeps serving
            call.future.set_exception(exc)

    def _unload_idle(self) -> None:
        """Unload the retiring adapters that no request uses any more."""
        if not self._retiring:
            return
        used = {row.request.adapter for row in self._batch.rows}
        used |= {request.adapter for request in self._waiting}
        for name in sorted(self._retiring - used):
            self._retiring.discard(name)
            self._loras.unload(name)

    def _drop_cancelled(self) -> None:
        for request in [r for r in self._waiting if r.cancelled]:
            self._waiting.remove(request)
            self._stats.cancelled += 1
        gone = [i for i, row in enumerate(self._batch.rows) if row.request.cancelled]
        if gone:
            self._stats.cancelled += len(gone)
            self._remove_rows(gone)

    def _admit(self) -> None:
        free = self._max_batch_size - len(self._batch.rows)
        newcomers: list[EngineRequest] = []
        while free > len(newcomers) and self._waiting:
            request = self._waiting.popleft()
            if request.adapter is not None and request.adapter not in self._loras:
                self._fail(request, BackendError(f"adapter '{request.adapter}' is not loaded"))
                continue
            newcomers.append(request)
        if not newcomers:
            return
        if len(newcomers) == 1:
            self._join([newcomers[0]], fail_on_error=True)
        elif not self._join(newcomers, fail_on_error=False):
            # One bad prompt must not fail the requests that happened to arrive with it.
            for request in newcomers:
                self._join([request], fail_on_error=True)

    def _join(self, requests: list[EngineRequest], fail_on_error: bool) -> bool:
        """Prefill `requests`, add them to the running batch and emit their first tokens."""
        try:
            rows, cache, mask, logits = self._prefill(requests)
        except Exception as exc:  # never lets a bad prompt take the running batch down
            if fail_on_error:
                logger.exception("prefill failed")
                for request in requests:
                    self._fail(request, exc)
            return False
        self._merge(rows, cache, mask)
        self._stats.max_batch_seen = max(self._stats.max_batch_seen, len(self._batch.rows))
        self._advance_rows(logits, first=len(self._batch.rows) - len(rows))
        return True

    def _prefill(
        self, requests: list[EngineRequest]
    ) -> tuple[list[_Row], DynamicCache, torch.Tensor, torch.Tensor]:
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        rows: list[_Row] = []
        for i, request in enumerate(requests):
            n = len(request.prompt_ids)
            ids[i, width - n :] = torch.tensor(request.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
            rows.append(self._new_row(request))
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self._model.config)
        logits = self._forward(ids, mask, positions, cache, [r.adapter for r in requests])
        self._stats.prefill_forwards += 1
        return rows, cache, mask, logits

    def _new_row(self, request: EngineRequest) -> _Row:
        generator = None
        if request.params.temperature > 0:
            generator = torch.Generator()
            if request.params.seed is None:
                generator.seed()
            else:
                generator.manual_seed(request.params.seed)

        def decode(ids: Sequence[int]) -> str:
            return str(
                self._tokenizer.decode(
                    list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
            )

        return _Row(
            request=request,
            decoder=IncrementalDecoder(decode),
            stops=StopMatcher(request.params.stop),
            generator=generator,
            position=len(request.prompt_ids),
        )

    def _decode_step(self) -> None:
        batch = self._batch
        assert batch.cache is not None and batch.mask is not None
        ids = torch.tensor([[row.next_token] for row in batch.rows], dtype=torch.long)
        positions = torch.tensor([[row.position] for row in batch.rows], dtype=torch.long)
        mask = F.pad(batch.mask, (0, 1), value=1)
        try:
            logits = self._forward(
                ids, mask, positions, batch.cache, [row.request.adapter for row in batch.rows]
            )
        except Exception as exc:  # the shared cache is now in an unknown state: fail the batch
            logger.exception("decode step failed")
            for row in batch.rows:
                self._fail(row.request, exc)
            self._batch = _Batch()
            return
        batch.mask = mask
        self._stats.decode_forwards += 1
        for row in batch.rows:
            row.position += 1
        self._advance_rows(logits, first=0)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        adapters: list[str | None],
    ) -> torch.Tensor:
        """One model forward; returns the last position's logits, shape (rows, vocab)."""
        out = self._loras.forward(
            adapters,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: cache},
        )
        logits: torch.Tensor = out.logits[:, -1, :]
        return logits

    def _advance_rows(self, logits: torch.Tensor, first: int) -> None:
        """Sample a token for each row from `first` on (logits row j is batch row first + j),
        stream its text and retire the rows that finished."""
        greedy = logits.argmax(-1).tolist()
        done: list[int] = []
        for j, row in enumerate(self._batch.rows[first:]):
            try:
                token = greedy[j] if row.generator is None else self._sample(row, logits[j])
                reason = self._accept(row, token)
            except Exception as exc:
                logger.exception("sampling failed")
                self._fail(row.request, exc)
                done.append(first + j)
                continue
            if reason is not None:
                self._finish(row, reason)
                done.append(first + j)
        if done:
            self._remove_rows(done)

    def _sample(self, row: _Row, logits: torch.Tensor) -> int:
        params = row.request.params
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest head whose mass reaches top_p (always at least the top token).
            outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _accept(self, row: _Row, token: int) -> FinishReason | None:
        """Record a sampled token and emit its text; return a finish reason when the row is done."""
        row.generated += 1
        row.next_token = token
        self._stats.generated_tokens += 1
        if token in self._eos:
            return "stop"
        self._emit_text(row, row.decoder.push(token))
        if row.stops.stopped:
            return "stop"
        if row.generated >= row.request.params.max_tokens:
            return "length"
        return None

    def _finish(self, row: _Row, reason: FinishReason) -> None:
        if not row.stops.stopped:
            self._emit_text(row, row.decoder.flush())
            if row.stops.stopped:
                reason = "stop"
            else:
                tail = row.stops.flush()
                if tail:
                    row.request.sink(TextDelta(tail))
        row.request.sink(Finished(reason, len(row.request.prompt_ids), row.generated))
        self._stats.finished += 1

    def _emit_text(self, row: _Row, text: str) -> None:
        safe = row.stops.feed(text) if text else ""
        if safe:
            row.request.sink(TextDelta(safe))

    def _fail(self, request: EngineRequest, exc: Exception) -> None:
        self._stats.failed += 1
        request.sink(BackendError(f"generation failed: {exc.__class__.__name__}: {exc}"))

    def _interrupt_all(self) -> None:
        for row in self._batch.rows:
            row.request.sink(Finished("interrupted", len(row.request.prompt_ids), row.generated))
        for request in self._waiting:
            request.sink(Finished("interrupted", len(request.prompt_ids), 0))
        self._batch = _Batch()
        self._waiting.clear()

    # -- KV cache surgery ------------------------------------------------------------------------

    def _merge(self, rows: list[_Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append prefilled rows to the running batch, left-padding the shorter side."""
        batch = self._batch
        if batch.cache is None or batch.mask is None:
            self._batch = _Batch(rows, cache, mask)
            return
        old_len, new_len = batch.mask.shape[1], mask.shape[1]
        width = max(old_len, new_len)
        for old, new in zip(_kv_layers(batch.cache), _kv_layers(cache), strict=True):
            (old_keys, old_values), (new_keys, new_values) = _kv(old), _kv(new)
            old.keys = _cat_left_padded(old_keys, new_keys, width)
            old.values = _cat_left_padded(old_values, new_values, width)
        batch.mask = torch.cat(
            [F.pad(batch.mask, (width - old_len, 0)), F.pad(mask, (width - new_len, 0))]
        )
        batch.rows.extend(rows)

    def _remove_rows(self, indices: list[int]) -> None:
        """Drop rows from the batch, then the leading columns that are padding in every row."""
        batch = self._batch
        gone = set(indices)
        keep = [i for i in range(len(batch.rows)) if i not in gone]
        if not keep or batch.cache is None or batch.mask is None:
            self._batch = _Batch()
            return
        index = torch.tensor(keep, dtype=torch.long)
        mask = batch.mask[index]
        start = int(mask.any(0).int().argmax())  # first column some row still uses
        for layer in _kv_layers(batch.cache):
            keys, values = _kv(layer)
            layer.keys, layer.values = keys[index, :, start:], values[index, :, start:]
        batch.mask = mask[:, start:]
        batch.rows = [batch.rows[i] for i in keep]


def _cat_left_padded(a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
    """Concatenate two (batch, heads, seq, dim) caches along batch, left-padding seq to `width`."""
    return torch.cat(
        [F.pad(a, (0, 0, width - a.shape[-2], 0)), F.pad(b, (0, 0, width - b.shape[-2], 0))]
    )


def _kv_layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers, checked to be plain full-attention ones: padding a sliding-window or
    linear-attention layer's state on the left would corrupt it."""
    layers: list[DynamicLayer] = []
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            kinds = sorted({type(other).__name__ for other in cache.layers})
            raise ValueError(
                f"continuous batching supports full-attention caches only (this model uses {kinds})"
            )
        layers.append(layer)
    return layers


def _kv(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    if layer.keys is None or layer.values is None:
        raise RuntimeError("cache layer was never filled")
    return layer.keys, layer.values
