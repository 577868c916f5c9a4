"""Search a bot's knowledge: embed the question, query the bot's collection, return passages.

Scores are cosine similarities: the collection uses Chroma's cosine space, whose distance is
`1 - cos(q, d)`, so `score = 1 - distance`, clipped to [0, 1] (higher is better; a negative
similarity means "unrelated" and becomes 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chromadb.errors import NotFoundError

from serving.knowledge.embedders import Embedder
from serving.knowledge.store import BotIndex, ChromaStore, MetadataValue, StoreHit


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with where it came from, ready to cite."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    source: str
    title: str
    heading_path: tuple[str, ...]
    page: int | None


def effective_instruction(embedder: Embedder, side: str, override: str | None) -> str:
    """The instruction really applied on `side` ("document" or "query"): "" for models that
    ignore instructions, else the override or the embedder's default."""
    if not getattr(embedder, "uses_instructions", True):
        return ""
    return override or getattr(embedder, f"default_{side}_instruction", None) or ""


class Retriever:
    """`search(bot, query, k, min_score)` over the bot's collection for this embedder's model."""

    def __init__(self, store: ChromaStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def embed_query(self, query: str, instruction: str | None = None) -> list[float]:
        """The query vector `search` would use (so a caller can reuse it, e.g. for the guard)."""
        return self.embedder.embed_query(query, instruction)

    def search(
        self,
        bot: str,
        query: str,
        k: int = 5,
        min_score: float = 0.0,
        *,
        query_instruction: str | None = None,
    ) -> list[Passage]:
        """Up to `k` passages with score >= `min_score`, best first; [] if the bot has no index."""
        return self.search_by_vector(bot, self.embed_query(query, query_instruction), k, min_score)

    def search_by_vector(
        self, bot: str, vector: Sequence[float], k: int = 5, min_score: float = 0.0
    ) -> list[Passage]:
        """`search` with a precomputed query vector."""
        if k <= 0:
            return []
        index = self._index(bot)
        if index is None:
            return []
        try:
            # Over-fetch a little: hits of a document's superseded version are dropped below.
            hits = index.query(vector, k + max(2, k // 2))
        except NotFoundError:
            # The collection was dropped (and maybe recreated) elsewhere: look it up once more.
            self.store.forget(index.name)
            index = self._index(bot)
            if index is None:
                return []
            hits = index.query(vector, k + max(2, k // 2))
        passages = [_passage(hit) for hit in _latest_versions(hits)]
        return [p for p in passages if p.score >= min_score][:k]

    def _index(self, bot: str) -> BotIndex | None:
        model = self.embedder
        return self.store.index(bot, model.model_id, model.dimension, create=False, cached=True)


def _latest_versions(hits: list[StoreHit]) -> list[StoreHit]:
    # While a re-ingest replaces a document, old and new chunks coexist for a moment; showing
    # only the newest ingest of each document keeps the two versions from being mixed.
    newest: dict[str, float] = {}
    for hit in hits:
        doc = str(hit.metadata.get("doc_id", ""))
        newest[doc] = max(newest.get(doc, 0.0), _float(hit.metadata.get("ingested_at")))
    return [
        h
        for h in hits
        if _float(h.metadata.get("ingested_at")) >= newest[str(h.metadata.get("doc_id", ""))]
    ]


def _passage(hit: StoreHit) -> Passage:
    meta = hit.metadata
    page = meta.get("page")
    return Passage(
        chunk_id=hit.chunk_id,
        doc_id=str(meta.get("doc_id", "")),
        text=hit.text,
        score=min(1.0, max(0.0, 1.0 - hit.distance)),
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        heading_path=_heading_path(meta),
        page=int(page) if isinstance(page, (int, float)) and not isinstance(page, bool) else None,
    )


def _heading_path(meta: Mapping[str, MetadataValue]) -> tuple[str, ...]:
    raw = meta.get("heading_path")
    if not isinstance(raw, str) or not raw:
        return ()
    try:
        return tuple(str(p) for p in json.loads(raw))
    except (json.JSONDecodeError, TypeError):
        return ()


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
