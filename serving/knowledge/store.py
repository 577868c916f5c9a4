"""Chroma as the vector store: one collection per (bot, embedding model).

Separate collections (rather than a bot filter on one) make isolation structural — a query for
one bot runs against a collection that holds nothing else — and keep vectors of different models
apart. We always pass vectors ourselves: Chroma's default embedding function downloads a model
and would silently mix a second model into the index.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings
from chromadb.errors import NotFoundError

log = logging.getLogger(__name__)

MetadataValue = str | int | float | bool


class StoreError(Exception):
    """The vector store failed; the document being written was left as it was before."""


class IndexMismatchError(StoreError):
    """An existing collection was built with another model, dimension or document instruction."""


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored: id, text and flat metadata (Chroma metadata has no lists or None)."""

    chunk_id: str
    text: str
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True)
class StoreHit:
    chunk_id: str
    text: str
    metadata: Mapping[str, MetadataValue]
    #: Cosine distance, 1 - cosine similarity, in [0, 2].
    distance: float


@dataclass(frozen=True)
class ReplaceStats:
    added: int
    kept: int
    removed: int


def flat_metadata(meta: Mapping[str, object] | None) -> dict[str, MetadataValue]:
    """A chunk's metadata as we write it: scalars only (Chroma's type also allows sparse vectors,
    lists and None, which we never store)."""
    return {k: v for k, v in (meta or {}).items() if isinstance(v, (str, int, float, bool))}


def collection_name(bot: str, model_id: str) -> str:
    """A valid Chroma collection name, unique per (bot, model) even after sanitising: readable
    prefix plus a hash of the exact pair (names must be 3-63 chars of [a-zA-Z0-9._-])."""
    digest = hashlib.sha256(f"{bot}\0{model_id}".encode()).hexdigest()[:10]

    def slug(value: str, limit: int) -> str:
        return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:limit].strip("-") or "x"

    return f"kb-{slug(bot, 20)}-{slug(model_id.rsplit('/', 1)[-1], 24)}-{digest}"


class ChromaStore:
    """Owns the Chroma client: embedded (`PersistentClient` in a directory) or a server by URL."""

    def __init__(self, client: ClientAPI) -> None:
        self.client = client
        self.max_batch = client.get_max_batch_size()
        # Collection handles by name: over HTTP each lookup is a round trip.
        self._collections: dict[str, Collection] = {}

    @classmethod
    def open(
        cls,
        location: str | Path,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> ChromaStore:
        """`http(s)://host:port` connects to a Chroma server (every call bounded by `timeout_s`: a
        hung server is an error, not a hung caller); anything else is a directory for the
        embedded client."""
        settings = Settings(anonymized_telemetry=False)
        text = str(location)
        if text.startswith(("http://", "https://")):
            url = urlparse(text)
            ssl = url.scheme == "https"
            # chromadb's HTTP client waits forever (httpx timeout=None), even while it connects:
            # ask the server first, with a bound, then bound the client's own session.
            httpx.get(
                text.rstrip("/") + "/api/v2/heartbeat",
                headers=dict(headers or {}),
                timeout=timeout_s,
            ).raise_for_status()
            client = chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if ssl else 8000),
                ssl=ssl,
                headers=dict(headers or {}),
                settings=settings,
            )
            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                session.timeout = httpx.Timeout(timeout_s)
            else:  # pragma: no cover - only if chromadb's internals move
                log.warning("cannot bound Chroma calls with a timeout (chromadb changed)")
        else:
            Path(text).mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=text, settings=settings)
        return cls(client)

    def index(
        self,
        bot: str,
        model_id: str,
        dimension: int,
        *,
        document_instruction: str | None = None,
        create: bool = True,
        cached: bool = False,
    ) -> BotIndex | None:
        """The collection of `bot` for `model_id`, created if needed (None if absent and not
        `create`). Raises `IndexMismatchError` if it holds vectors of another dimension, or was
        built with another document instruction (`None` skips that check, e.g. for searching).

        `cached` reuses the handle from an earlier lookup (saves a round trip per search over
        HTTP); a caller that gets `NotFoundError` from it should `forget` it and look it up again.
        """
        name = collection_name(bot, model_id)
        wanted = {"bot": bot, "model_id": model_id, "dimension": dimension}
        collection = self._collections.get(name) if cached else None
        if collection is None and not create:
            try:
                collection = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        elif collection is None:
            collection = self.client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={**wanted, "document_instruction": document_instruction or ""},
                embedding_function=None,
            )
        self._collections[name] = collection
        meta = collection.metadata or {}
        for key, value in wanted.items():
            if meta.get(key) != value:
                raise IndexMismatchError(
                    f"collection {name} has {key}={meta.get(key)!r}, expected {value!r}"
                )
        if document_instruction is not None:
            stored = meta.get("document_instruction") or ""
            if stored != document_instruction:
                if collection.count():
                    raise IndexMismatchError(
                        f"bot {bot!r}: documents were embedded with instruction {stored!r}, not "
                        f"{document_instruction!r}; drop the index and re-ingest"
                    )
                collection.modify(metadata={**meta, "document_instruction": document_instruction})
        return BotIndex(collection, bot, model_id, dimension, self.max_batch)

    def drop_index(self, bot: str, model_id: str) -> bool:
        """Delete the bot's collection for `model_id`; False if there was none."""
        name = collection_name(bot, model_id)
        self.forget(name)
        try:
            self.client.delete_collection(name)
        except NotFoundError:
            return False
        return True

    def forget(self, name: str) -> None:
        """Drop a cached collection handle (after it was deleted, possibly by another process)."""
        self._collections.pop(name, None)


class BotIndex:
    """One bot's chunks for one embedding model (one Chroma collection)."""

    def __init__(
        self, collection: Collection, bot: str, model_id: str, dimension: int, max_batch: int
    ) -> None:
        self.collection = collection
        self.bot = bot
        self.model_id = model_id
        self.dimension = dimension
        self._max_batch = max_batch

    @property
    def name(self) -> str:
        return self.collection.name

    @property
    def uid(self) -> str:
        """The collection's id: a collection dropped and re-created under the same name differs."""
        return str(self.collection.id)

    def revision(self) -> str:
        """Changes whenever chunks are written or deleted through any `BotIndex`, in any process
        (read fresh from the store, so caches of the chunk texts know when to reload)."""
        meta = self.collection.metadata or {}
        return str(meta.get("revision", ""))

    def _bump_revision(self) -> None:
        meta = {k: v for k, v in (self.collection.metadata or {}).items() if k != "revision"}
        self.collection.modify(metadata={**meta, "revision": uuid.uuid4().hex})

    def iter_chunks(self, page_size: int = 5000) -> Iterator[StoredChunk]:
        """Every chunk with its text and metadata, paged."""
        offset = 0
        while True:
            page = self.collection.get(
                include=["documents", "metadatas"], limit=page_size, offset=offset
            )
            metadatas = page["metadatas"] or []
            documents = page["documents"] or []
            for cid, doc, meta in zip(page["ids"], documents, metadatas):
                yield StoredChunk(cid, doc or "", flat_metadata(meta))
            if len(page["ids"]) < page_size:
                return
            offset += page_size

    def embeddings_of(self, chunk_ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors of the given chunks (absent ids are left out)."""
        if not chunk_ids:
            return {}
        found = self.collection.get(ids=list(chunk_ids), include=["embeddings"])
        vectors = found["embeddings"]
        if vectors is None:
            return {}
        return {cid: [float(x) for x in vec] for cid, vec in zip(found["ids"], vectors)}

    def existing_embeddings(self, doc_id: str, chunk_ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors of `doc_id` among `chunk_ids`, so unchanged chunks are not re-embedded."""
        if not chunk_ids:
            return {}
        found = self.collection.get(
            ids=list(chunk_ids), where={"doc_id": doc_id}, include=["embeddings"]
        )
        vectors = found["embeddings"]
        if vectors is None:
            return {}
        return {cid: [float(x) for x in vec] for cid, vec in zip(found["ids"], vectors)}

    def replace_document(
        self,
        doc_id: str,
        chunks: Sequence[StoredChunk],
        embeddings: Sequence[Sequence[float]],
    ) -> ReplaceStats:
        """Make `chunks` the document's only chunks.

        The new set is written first (one upsert call while it fits a Chroma batch), then the old
        chunks not in it are deleted; searches hide the older version while both exist (see
        `Retriever`). If a write fails, what was added is removed and kept chunks get their old
        metadata back, then `StoreError` is raised: the document stays as it was.
        """
        if len(chunks) != len(embeddings):
            raise ValueError("one embedding per chunk is required")
        ids = [c.chunk_id for c in chunks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate chunk ids in document {doc_id}")
        for vector in embeddings:
            if len(vector) != self.dimension:
                raise ValueError(
                    f"embedding of dimension {len(vector)}, index has {self.dimension}"
                )
        before = self._metadata_of(doc_id)
        new = set(ids)
        try:
            for start in range(0, len(chunks), self._max_batch):
                batch = chunks[start : start + self._max_batch]
                self.collection.upsert(
                    ids=[c.chunk_id for c in batch],
                    embeddings=np.asarray(
                        embeddings[start : start + self._max_batch], dtype=np.float32
                    ),
                    documents=[c.text for c in batch],
                    metadatas=[dict(c.metadata) for c in batch],
                )
            stale = [cid for cid in before if cid not in new]
            self._delete_ids(stale)
            self._bump_revision()
        except Exception as exc:
            self._rollback(added=[i for i in ids if i not in before], restore=before, keep=new)
            raise StoreError(f"writing document {doc_id} to {self.name} failed: {exc}") from exc
        kept = len(new & before.keys())
        return ReplaceStats(added=len(new) - kept, kept=kept, removed=len(before.keys() - new))

    def delete_document(self, doc_id: str) -> int:
        """Remove all chunks of `doc_id`; returns how many there were."""
        ids = list(self._metadata_of(doc_id))
        self._delete_ids(ids)
        if ids:
            self._bump_revision()
        return len(ids)

    def count(self, doc_id: str | None = None) -> int:
        if doc_id is None:
            return self.collection.count()
        return len(self.collection.get(where={"doc_id": doc_id}, include=[])["ids"])

    def query(
        self, vector: Sequence[float], k: int, where: Mapping[str, Any] | None = None
    ) -> list[StoreHit]:
        """The `k` nearest chunks to `vector` (cosine distance, nearest first)."""
        result = self.collection.query(
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=k,
            where=dict(where) if where else None,
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            StoreHit(cid, doc or "", flat_metadata(meta), float(dist))
            for cid, doc, meta, dist in zip(ids, documents, metadatas, distances)
        ]

    def iter_metadata(
        self, page_size: int = 5000
    ) -> Iterator[tuple[str, Mapping[str, MetadataValue]]]:
        """Every chunk's (id, metadata), paged so large collections are not loaded at once."""
        offset = 0
        while True:
            page = self.collection.get(include=["metadatas"], limit=page_size, offset=offset)
            for cid, meta in zip(page["ids"], page["metadatas"] or []):
                yield cid, flat_metadata(meta)
            if len(page["ids"]) < page_size:
                return
            offset += page_size

    def _metadata_of(self, doc_id: str) -> dict[str, Mapping[str, MetadataValue]]:
        found = self.collection.get(where={"doc_id": doc_id}, include=["metadatas"])
        return {cid: flat_metadata(m) for cid, m in zip(found["ids"], found["metadatas"] or [])}

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self._max_batch):
            self.collection.delete(ids=list(ids[start : start + self._max_batch]))

    def _rollback(
        self, added: list[str], restore: Mapping[str, Mapping[str, MetadataValue]], keep: set[str]
    ) -> None:
        # Best effort: the store just failed once, so each step is tried independently.
        try:
            self._delete_ids(added)
        except Exception:  # noqa: BLE001 - reported, and the restore below is still tried
            log.warning("rollback in %s: could not remove %d new chunks", self.name, len(added))
        kept = [cid for cid in restore if cid in keep]
        try:
            for start in range(0, len(kept), self._max_batch):
                batch = kept[start : start + self._max_batch]
                self.collection.update(ids=batch, metadatas=[dict(restore[c]) for c in batch])
        except Exception:  # noqa: BLE001 - reported; the caller gets the original error
            log.warning(
                "rollback in %s: could not restore %d chunks' metadata", self.name, len(kept)
            )
