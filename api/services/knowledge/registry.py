"""The knowledge engines of one process: the vector store, one `KnowledgeBase` per embedding model,
one scope guard per bot scope (all built on first use: loading an embedder takes seconds)."""

from __future__ import annotations

import hashlib
import json
import threading

import httpx

from api.services.knowledge.config import KnowledgeConfig
from api.settings import Settings
from serving.knowledge import ChromaStore, ChunkingConfig, KnowledgeBase, ParseLimits, load_embedder
from serving.knowledge.parse_worker import IsolatedParser
from serving.scope_guard import Scope, ScopeGuard


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        max_bytes=settings.max_document_bytes,
        max_expanded_bytes=settings.max_document_expanded_bytes,
        max_archive_entries=settings.max_archive_entries,
        max_compression_ratio=settings.max_compression_ratio,
        max_pages=settings.max_document_pages,
        max_chars=settings.max_document_chars,
        max_rows=settings.max_export_rows,
    )


class KnowledgeRegistry:
    """One vector store, one knowledge base per embedding model, one scope guard per bot scope."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ChromaStore | None = None
        self._bases: dict[str, KnowledgeBase] = {}
        self._guards: dict[tuple[str, str], ScopeGuard] = {}
        self._lock = threading.Lock()
        # One budgeted child process parses every upload (started on the first file, shared by
        # every registry of this process, ended with it).
        self.parser = (
            IsolatedParser.shared(
                timeout_s=settings.parse_timeout_s, memory_mb=settings.parse_memory_mb
            )
            if settings.parse_isolated
            else None
        )

    @property
    def store(self) -> ChromaStore:
        """The vector store, connected on first use (a Chroma server may come up after us)."""
        with self._lock:
            if self._store is None:
                self._store = ChromaStore.open(
                    self.settings.chroma_url or str(self.settings.data_dir / "chroma"),
                    timeout_s=self.settings.knowledge_timeout_s,
                )
            return self._store

    def spec(self, config: KnowledgeConfig) -> str:
        return config.embedder or self.settings.embedder

    def base(self, spec: str) -> KnowledgeBase:
        store = self.store
        with self._lock:
            if spec not in self._bases:
                embedder = load_embedder(None if spec == "minilm" else spec)
                self._bases[spec] = KnowledgeBase(
                    store,
                    embedder,
                    chunking=ChunkingConfig(
                        size=self.settings.chunk_size, overlap=self.settings.chunk_overlap
                    ),
                    limits=parse_limits(self.settings),
                    parser=self.parser.parse if self.parser is not None else None,
                )
            return self._bases[spec]

    def guard(
        self,
        bot_id: str,
        config: KnowledgeConfig,
        refusal: str,
        name: str = "",
        description: str = "",
    ) -> ScopeGuard:
        scope = Scope(
            topics=tuple(config.topics),
            example_questions=tuple(config.example_questions),
            out_of_scope_examples=tuple(config.out_of_scope_examples),
            refusal_message=refusal or "Sorry, I can only help with questions about {topics}.",
            description=description,
            name=name,
            greeting_message=config.greeting_message,
        )
        key = (
            bot_id,
            hashlib.sha256(
                json.dumps([repr(scope), self.spec(config), config.query_instruction]).encode()
            ).hexdigest(),
        )
        with self._lock:
            guard = self._guards.get(key)
        if guard is None:
            guard = ScopeGuard(
                scope, self.base(self.spec(config)).embedder, instruction=config.query_instruction
            )
            with self._lock:
                self._guards[key] = guard
        return guard

    def healthy(self) -> bool:
        url = self.settings.chroma_url
        try:
            if url:  # a quick question of its own, not one more wait of the client's full timeout
                timeout = min(3.0, self.settings.knowledge_timeout_s)
                httpx.get(url.rstrip("/") + "/api/v2/heartbeat", timeout=timeout).raise_for_status()
            self.store.client.heartbeat()
            return True
        except Exception:  # noqa: BLE001 - any failure means unreachable
            return False
