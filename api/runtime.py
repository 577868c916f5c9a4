"""The composition root: everything a running Shadowdesk process holds — settings, database,
model backend, knowledge, caches, the exchange writer, the job worker — built by `build_runtime`
and brought up by `Runtime.start`, the same way for the server, every CLI command and the worker.
Services and job handlers receive the runtime; none of them reaches for globals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.db import make_engine, make_session_factory, transaction
from api.metrics import Metrics
from api.settings import Settings
from api.unit_of_work import ACCESS, JOBS, Change, install_after_commit
from serving.backend import Backend, BackendError

if TYPE_CHECKING:
    from api.jobs.worker import WorkerPool
    from api.services.access.cache import AccessCache
    from api.services.chat.exchange_writer import ExchangeWriter
    from api.services.knowledge.registry import KnowledgeRegistry
    from api.services.review.annotations import AnnotationIndex
    from api.services.widget.gate import WidgetGate

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    access: AccessCache
    writer: ExchangeWriter
    metrics: Metrics = field(default_factory=Metrics)
    worker: WorkerPool | None = None
    _backend: Backend | None = None
    _knowledge: KnowledgeRegistry | None = None
    _annotations: AnnotationIndex | None = None
    _widget: WidgetGate | None = None
    _backend_started: bool = False
    _generator: Backend | None = None
    #: Adapters this process loaded into its backend (name -> folder).
    _adapters: dict[str, str] = field(default_factory=dict)
    _adapter_watch: asyncio.Task[None] | None = None
    _reconcile_now: asyncio.Event = field(default_factory=asyncio.Event)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(
        self,
        *,
        backend: bool = True,
        worker: bool = False,
        worker_kinds: Collection[str] | None = None,
        demo: bool = False,
    ) -> None:
        """Bring the process up: upgrade the embedded schema, start the backend (and load the
        adapters of live and candidate releases, which an upstream that restarted has forgotten),
        seed the demo bot (`demo`), start the exchange writer and, with `worker`, run background
        jobs of `worker_kinds` (all by default) in this process."""
        from api.jobs.handlers import bind
        from api.jobs.worker import WorkerPool
        from api.services.releases.lifecycle import load_active_adapters

        if self.settings.should_auto_migrate:
            from api.migrate import upgrade

            await run_in_threadpool(upgrade, self.settings)
        if backend:
            await self.backend.start()
            self._backend_started = True
            await load_active_adapters(self)
            self._watch_adapters()
        if demo and self.settings.create_demo_bot:
            await run_in_threadpool(self._seed_demo)
        self.writer.start()
        if worker:
            handlers = bind(self)
            unknown = set(worker_kinds or ()) - set(handlers)
            if unknown:
                raise ValueError(f"unknown job kind(s): {', '.join(sorted(unknown))}")
            if worker_kinds:
                handlers = {k: v for k, v in handlers.items() if k in worker_kinds}
            self.worker = WorkerPool(
                self.sessions,
                handlers,
                lease_s=self.settings.job_lease_s,
                shadow_lanes=self.settings.shadow_concurrency,
            )
            self.worker.start()

    async def stop(self) -> None:
        """Let running jobs finish (up to 30 s), close the backend, flush the writer."""
        if self.worker is not None:
            self.worker.stop()
            await self.worker.wait_stopped(timeout=30)
        if self._adapter_watch is not None:
            self._adapter_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._adapter_watch
            self._adapter_watch = None
        if self._backend_started:
            await self.backend.close()
        if self._generator is not None:
            await self._generator.close()
        self.writer.stop()
        self.engine.dispose()

    def _seed_demo(self) -> None:
        from api.demo import ensure_demo_bot, ingest_demo_documents

        with transaction(self.sessions) as session:
            created = ensure_demo_bot(session, base_model=self.settings.model)
        if created is not None:
            log.info("created the demo bot (slug 'demo'); indexing its documentation")
            ingest_demo_documents(self, created)

    # -- adapters in this process's backend -------------------------------------------------------
    async def ensure_adapter(self, name: str, path: str) -> None:
        """Load an adapter into the backend unless this process already did (names are immutable,
        so a name once loaded stays right). Each process (server, worker) loads what it serves."""
        if self._adapters.get(name) == path:
            return
        await self.backend.load_adapter(name, path)
        self._adapters[name] = path

    async def drop_adapter(self, name: str) -> None:
        """Unload an adapter (the backend waits for requests still using it)."""
        await self.backend.unload_adapter(name)
        self._adapters.pop(name, None)

    async def reload_adapter(self, name: str, path: str) -> None:
        """Load an adapter the backend says it lost (it restarted, or another process unloaded
        it), even though this process loaded it before."""
        self._adapters.pop(name, None)
        await self.ensure_adapter(name, path)

    def sync_adapters(self, listed: dict[str, str]) -> None:
        """What the backend reports it holds now replaces what this process remembers loading."""
        self._adapters = dict(listed)

    def has_adapter(self, name: str) -> bool:
        return name in self._adapters

    @property
    def loaded_adapters(self) -> dict[str, str]:
        return dict(self._adapters)

    def forget_adapters(self) -> None:
        """The backend (re)started and holds no adapter yet."""
        self._adapters.clear()

    def _watch_adapters(self) -> None:
        """For a vLLM backend, keep what it holds in step with the live and candidate releases:
        every `adapter_reconcile_s`, and at once after the supervised server restarted."""
        from serving.vllm_backend import VLLMBackend

        backend = self.backend
        if not isinstance(backend, VLLMBackend) or self._adapter_watch is not None:
            return

        async def restarted() -> None:
            self._reconcile_now.set()

        backend.on_restart(restarted)
        self._adapter_watch = asyncio.create_task(self._reconcile_loop(), name="adapter-reconcile")

    async def _reconcile_loop(self) -> None:
        from api.services.releases.lifecycle import reconcile_adapters

        seen_extra: set[str] = set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._reconcile_now.wait(), self.settings.adapter_reconcile_s
                )
            self._reconcile_now.clear()
            try:
                seen_extra = await reconcile_adapters(self, seen_extra)
            except BackendError as exc:  # vLLM is down or restarting: try again next round
                log.warning("could not compare adapters with the backend: %s", exc)
            except Exception:
                log.exception("adapter reconciliation failed")

    # -- parts built on first use -----------------------------------------------------------------
    async def generator(self) -> Backend:
        """The backend that writes training rows: `generator_url` when set, else the serving
        backend (started here if this process has not started it)."""
        if self._generator is None:
            generator = build_generator(self.settings)
            if generator is None:
                if not self._backend_started:
                    await self.backend.start()
                    self._backend_started = True
                return self.backend
            await generator.start()
            self._generator = generator
        return self._generator

    @property
    def backend(self) -> Backend:
        """The model backend (built on first use: importing an engine takes seconds; a CLI command
        that never generates never pays for it)."""
        if self._backend is None:
            self._backend = build_backend(self.settings)
        return self._backend

    @property
    def knowledge_opened(self) -> bool:
        return self._knowledge is not None

    @property
    def knowledge(self) -> KnowledgeRegistry:
        """Knowledge engines (opened on first use: they load the embedding model)."""
        if self._knowledge is None:
            from api.services.knowledge.registry import KnowledgeRegistry

            self._knowledge = KnowledgeRegistry(self.settings)
        return self._knowledge

    @property
    def widget(self) -> WidgetGate:
        """Publishable keys, allowed origins and rate limits of the support widget."""
        if self._widget is None:
            from api.services.widget.gate import WidgetGate

            self._widget = WidgetGate(
                self.sessions, self.settings.access_cache_ttl_s, self.settings.rate_limit_storage
            )
        return self._widget

    @property
    def annotations(self) -> AnnotationIndex:
        """Matches client questions to approved annotations. Questions are embedded with the default
        embedding model, loaded only once a bot has annotations."""
        if self._annotations is None:
            from api.services.review.annotations import AnnotationIndex

            def embed(texts: list[str]) -> list[list[float]]:
                return self.knowledge.base(self.settings.embedder).embedder.embed_documents(texts)

            self._annotations = AnnotationIndex(self.sessions, embed)
        return self._annotations

    # -- after commit -----------------------------------------------------------------------------
    def notify_worker(self) -> None:
        if self.worker is not None:
            self.worker.notify()

    def after_commit(self, changes: Iterable[Change]) -> None:
        """What committed changes mean for this process's caches and worker (see unit_of_work)."""
        for change in changes:
            if change == ACCESS:
                self.access.forget()
                if self._widget is not None:
                    self._widget.forget()
            elif change == JOBS:
                self.notify_worker()
            elif isinstance(change, tuple) and change[0] == "annotations":
                if self._annotations is not None:
                    self._annotations.invalidate(change[1])


def build_runtime(settings: Settings, *, backend: Backend | None = None) -> Runtime:
    """The runtime the settings describe; nothing is started (`await runtime.start()`).
    `backend` overrides the configured one (tests, embedding)."""
    from api.deps import bootstrap_admin_secret
    from api.services.access.cache import AccessCache
    from api.services.chat.exchange_writer import ExchangeWriter

    engine = make_engine(settings)
    sessions = make_session_factory(engine)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        _backend=backend,
        access=AccessCache(sessions, settings.access_cache_ttl_s, bootstrap_admin_secret(settings)),
        writer=ExchangeWriter(engine),
    )
    install_after_commit(sessions, runtime.after_commit)
    return runtime


def build_generator(settings: Settings) -> Backend | None:
    """A separate backend for generating training data, when one is configured (None: use the
    serving backend)."""
    if not settings.generator_url:
        return None
    from serving.openai_backend import OpenAIBackend

    key = settings.generator_api_key.get_secret_value() if settings.generator_api_key else "none"
    return OpenAIBackend(
        base_url=settings.generator_url,
        api_key=key,
        model=settings.generator_model or settings.model,
        timeout=settings.backend_timeout_s,
    )


def build_backend(settings: Settings) -> Backend:
    """The serving backend the settings ask for (heavy engines are imported only when chosen; none
    loads a model before `start`)."""
    if settings.backend == "openai":
        from serving.openai_backend import OpenAIBackend

        assert settings.upstream_url is not None  # enforced by Settings
        key = settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else "none"
        return OpenAIBackend(
            base_url=settings.upstream_url,
            api_key=key,
            model=settings.model,
            timeout=settings.backend_timeout_s,
        )
    if settings.backend == "vllm":
        return build_vllm_backend(settings)
    from serving.transformers_backend import TransformersBackend

    return TransformersBackend(
        settings.model,
        max_batch_size=settings.max_batch_size,
        torch_threads=settings.torch_threads,
        # A GGUF is converted to an HF folder once; later starts load that in under a second.
        cache_dir=settings.data_dir / "models",
    )


def build_vllm_backend(settings: Settings) -> Backend:
    """vLLM at `vllm_url`, or a local vLLM server this process starts and supervises."""
    from serving.vllm_backend import VLLMBackend

    if settings.vllm_url:
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        return VLLMBackend(
            settings.model,
            base_url=settings.vllm_url,
            api_key=key,
            timeout=settings.backend_timeout_s,
        )
    from serving.packaged_model import hf_model_folder
    from serving.vllm_server import VLLMServer, VLLMServerConfig, default_dtype

    def model_folder() -> Path:
        # vLLM cannot read GGUF: the packaged model is converted to an HF folder once.
        return hf_model_folder(settings.model, settings.data_dir / "models")

    config = VLLMServerConfig(
        python=settings.vllm_python or default_vllm_python(),
        model=model_folder,
        served_name=settings.model,
        log_path=settings.data_dir / "logs" / "vllm.log",
        port=settings.vllm_port,
        dtype=settings.vllm_dtype or default_dtype(),
        max_model_len=settings.vllm_max_model_len,
        max_loras=settings.vllm_max_loras,
        max_lora_rank=settings.vllm_max_lora_rank,
        max_cpu_loras=settings.vllm_max_cpu_loras,
        cpu_kv_cache_gib=settings.vllm_kv_cache_gib,
        extra_args=tuple(settings.vllm_extra_args),
        start_timeout_s=settings.vllm_start_timeout_s,
    )
    return VLLMBackend(
        settings.model, server=VLLMServer(config), timeout=settings.backend_timeout_s
    )


def default_vllm_python() -> Path:
    """`.venv-vllm/bin/python` in the project folder, where `make vllm` installs vLLM."""
    return Path(__file__).resolve().parent.parent / ".venv-vllm" / "bin" / "python"
