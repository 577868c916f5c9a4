"""Search a bot's knowledge: dense vectors and BM25 together, fused by rank, one passage per section.

- Dense: the question's embedding against the bot's Chroma collection (paraphrases, synonyms).
- Lexical: BM25 over the same chunks (exact names, options, error codes the embedding misses).
- Fusion: reciprocal-rank fusion (Cormack et al., 2009): robust without calibrating two score
  scales against each other.
- Distinct passages: chunks are small (precise matching); the best chunk stands for its section
  and the next ones of that section are dropped, so the k passages are k places in the documents.

`Passage.score` stays the cosine similarity of the question and the passage (in [0, 1], higher is
better: the collection uses Chroma's cosine space, whose distance is `1 - cos`), so thresholds
mean the same whichever search found the passage.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from chromadb.errors import NotFoundError

from serving.knowledge.embedders import Embedder
from serving.knowledge.lexical import LexicalIndex, TermEvidence
from serving.knowledge.store import BotIndex, ChromaStore, MetadataValue, StoredChunk, StoreHit


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


@dataclass(frozen=True)
class SearchSettings:
    """How the two searches are fused. Defaults chosen on the tuning doc sets of
    `bench/retrieval_quality.py` (never on its held-out sets)."""

    #: Candidates taken from each search before fusion.
    candidates: int = 30
    #: Reciprocal-rank-fusion constant and the weight of each list.
    rrf_k: int = 60
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    #: At most this many passages from one document (each from a different section).
    per_document: int = 2
    #: A passage whose words are this similar (Jaccard) to one already chosen is a copy of the same
    #: content on another page (sites repeat themselves) and is skipped.
    duplicate_similarity: float = 0.8
    #: Small-to-big: a hit is widened with its neighbours in the same section up to this many
    #: characters, so the model reads the context around the matched sentences (0: off).
    expand_chars: int = 1400
    #: A lexical hit whose chunk holds this share of the question's (IDF-weighted) words is kept
    #: even when its cosine is under `min_score`: exact names beat a weak embedding match.
    lexical_keep_coverage: float = 0.6


@dataclass(frozen=True)
class SearchResult:
    """Passages best first, with the evidence the scope guard reads."""

    passages: list[Passage]
    #: Best cosine of any chunk (before `min_score` and fusion).
    top_dense: float
    evidence: TermEvidence


def effective_instruction(embedder: Embedder, side: str, override: str | None) -> str:
    """The instruction really applied on `side` ("document" or "query"): "" for models that
    ignore instructions, else the override or the embedder's default."""
    if not getattr(embedder, "uses_instructions", True):
        return ""
    return override or getattr(embedder, f"default_{side}_instruction", None) or ""


@dataclass
class _Corpus:
    """A collection's chunks in memory, for BM25 and section look-ups."""

    uid: str
    revision: str
    chunks: list[StoredChunk]
    lexical: LexicalIndex
    position: dict[str, int]
    checked_at: float = field(default_factory=time.monotonic)
    _sections: dict[tuple[str, str, object], list[int]] | None = None

    def widen(self, chunk_id: str, limit: int) -> str:
        """The chunk's text joined with its neighbours of the same section (nearest first, in
        reading order, overlaps removed) while the result stays within `limit` characters."""
        if self._sections is None:
            sections: dict[tuple[str, str, object], list[int]] = {}
            for i, chunk in enumerate(self.chunks):
                sections.setdefault(_section_key(chunk.metadata), []).append(i)
            for members in sections.values():
                members.sort(key=lambda i: _float(self.chunks[i].metadata.get("chunk_index")))
            self._sections = sections
        here = self.position[chunk_id]
        members = self._sections[_section_key(self.chunks[here].metadata)]
        at = members.index(here)
        lo = hi = at
        text = self.chunks[here].text
        while True:
            grown = False
            if hi + 1 < len(members):
                joined = _stitch(text, self.chunks[members[hi + 1]].text)
                if len(joined) <= limit:
                    text, hi, grown = joined, hi + 1, True
            if lo > 0:
                joined = _stitch(self.chunks[members[lo - 1]].text, text)
                if len(joined) <= limit:
                    text, lo, grown = joined, lo - 1, True
            if not grown:
                return text


class Retriever:
    """`search(bot, query, k, min_score)` over the bot's collection for this embedder's model.

    The chunk texts are cached per collection for BM25; the cache follows writes made through
    this process at once, and writes of other processes within `refresh_s`.
    """

    def __init__(
        self,
        store: ChromaStore,
        embedder: Embedder,
        settings: SearchSettings | None = None,
        *,
        refresh_s: float = 1.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or SearchSettings()
        self.refresh_s = refresh_s
        self._corpora: dict[str, _Corpus] = {}
        self._lock = threading.Lock()

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
        """Up to `k` passages, best first; [] if the bot has no index."""
        vector = self.embed_query(query, query_instruction)
        return self.hybrid_search(bot, query, vector, k, min_score).passages

    def hybrid_search(
        self, bot: str, query: str, vector: Sequence[float], k: int = 5, min_score: float = 0.0
    ) -> SearchResult:
        """Dense and lexical search fused, one passage per section, with the guard's evidence."""
        empty = SearchResult([], 0.0, TermEvidence(0.0, 0.0, (), 0))
        if k <= 0:
            return empty
        s = self.settings
        found = self._dense(bot, vector, s.candidates)
        if found is None:
            return empty
        index, hits = found
        hits = _latest_versions(hits)
        corpus = self._corpus(index)
        dense = {h.chunk_id: 1.0 - h.distance for h in hits}
        lexical = [
            (corpus.chunks[i].chunk_id, i) for i, _ in corpus.lexical.top(query, s.candidates)
        ]
        lexical = [(cid, i) for cid, i in lexical if _is_latest(corpus, cid)]
        fused: dict[str, float] = {}
        for rank, hit in enumerate(hits):
            fused[hit.chunk_id] = s.dense_weight / (s.rrf_k + rank + 1)
        for rank, (cid, _) in enumerate(lexical):
            fused[cid] = fused.get(cid, 0.0) + s.lexical_weight / (s.rrf_k + rank + 1)
        missing = [cid for cid, _ in lexical if cid not in dense]
        if missing:
            # Lexical-only candidates: their cosine from the stored vectors (absent = deleted).
            query_vec = np.asarray(vector, dtype=np.float32)
            for cid, emb in index.embeddings_of(missing).items():
                dense[cid] = float(np.dot(np.asarray(emb, dtype=np.float32), query_vec))
        texts = {h.chunk_id: StoredChunk(h.chunk_id, h.text, h.metadata) for h in hits}
        best_lexical = lexical[0][1] if lexical else None
        evidence = corpus.lexical.evidence(query, best_lexical)
        passages: list[Passage] = []
        sections: set[tuple[str, str, object]] = set()
        per_doc: dict[str, int] = {}
        chosen: list[int] = []
        for cid in sorted(fused, key=lambda c: -fused[c]):
            if cid not in dense:
                continue
            chunk = texts.get(cid) or corpus.chunks[corpus.position[cid]]
            meta = chunk.metadata
            cosine = min(1.0, max(0.0, dense[cid]))
            if cosine < min_score and not self._lexically_strong(corpus, query, cid):
                continue
            doc = str(meta.get("doc_id", ""))
            section = _section_key(meta)
            if section in sections or per_doc.get(doc, 0) >= s.per_document:
                continue
            here = corpus.position.get(cid)
            if here is not None and any(
                corpus.lexical.similarity(here, other) >= s.duplicate_similarity for other in chosen
            ):
                continue
            if here is not None:
                chosen.append(here)
            sections.add(section)
            per_doc[doc] = per_doc.get(doc, 0) + 1
            passage = _passage(chunk, cosine)
            if s.expand_chars and cid in corpus.position:
                passage = dataclasses.replace(passage, text=corpus.widen(cid, s.expand_chars))
            passages.append(passage)
            if len(passages) == k:
                break
        top_dense = max((1.0 - h.distance for h in hits), default=0.0)
        return SearchResult(passages, min(1.0, max(0.0, top_dense)), evidence)

    def search_by_vector(
        self, bot: str, vector: Sequence[float], k: int = 5, min_score: float = 0.0
    ) -> list[Passage]:
        """Dense search alone: up to `k` chunks with cosine >= `min_score`, best first."""
        if k <= 0:
            return []
        found = self._dense(bot, vector, k + max(2, k // 2))
        if found is None:
            return []
        passages = [
            _passage(StoredChunk(h.chunk_id, h.text, h.metadata), 1.0 - h.distance)
            for h in _latest_versions(found[1])
        ]
        return [p for p in passages if p.score >= min_score][:k]

    def invalidate(self, bot: str | None = None) -> None:
        """Forget cached chunk texts (of one bot, or all): the next search reloads them."""
        with self._lock:
            if bot is None:
                self._corpora.clear()
            else:
                self._corpora.pop(bot, None)

    def _dense(
        self, bot: str, vector: Sequence[float], n: int
    ) -> tuple[BotIndex, list[StoreHit]] | None:
        index = self._index(bot)
        if index is None:
            return None
        try:
            # Over-fetch a little: hits of a document's superseded version are dropped later.
            return index, index.query(vector, n)
        except NotFoundError:
            # The collection was dropped (and maybe recreated) elsewhere: look it up once more.
            self.store.forget(index.name)
            index = self._index(bot)
            if index is None:
                return None
            return index, index.query(vector, n)

    def _corpus(self, index: BotIndex) -> _Corpus:
        with self._lock:
            corpus = self._corpora.get(index.bot)
            now = time.monotonic()
            if (
                corpus is not None
                and corpus.uid == index.uid
                and now - corpus.checked_at < self.refresh_s
            ):
                return corpus
            fresh = self._fresh_index(index)
            revision = fresh.revision()
            if corpus is not None and corpus.uid == fresh.uid and corpus.revision == revision:
                corpus.checked_at = now
                return corpus
            chunks = _latest_chunks(list(fresh.iter_chunks()))
            texts = [_lexical_text(c) for c in chunks]
            corpus = _Corpus(
                fresh.uid,
                revision,
                chunks,
                LexicalIndex(texts),
                {c.chunk_id: i for i, c in enumerate(chunks)},
            )
            self._corpora[index.bot] = corpus
            return corpus

    def _fresh_index(self, index: BotIndex) -> BotIndex:
        # The collection's metadata (its revision) as stored now, not as cached in the handle.
        fresh = self.store.index(
            index.bot, index.model_id, index.dimension, create=False, cached=False
        )
        return fresh or index

    def _lexically_strong(self, corpus: _Corpus, query: str, chunk_id: str) -> bool:
        position = corpus.position.get(chunk_id)
        if position is None:
            return False
        coverage = corpus.lexical.evidence(query, position).best_chunk_coverage
        return coverage >= self.settings.lexical_keep_coverage

    def _index(self, bot: str) -> BotIndex | None:
        model = self.embedder
        return self.store.index(bot, model.model_id, model.dimension, create=False, cached=True)


def _section_key(meta: Mapping[str, MetadataValue]) -> tuple[str, str, object]:
    return (str(meta.get("doc_id", "")), str(meta.get("heading", "")), meta.get("page"))


def _stitch(first: str, second: str) -> str:
    """Join two consecutive chunks, dropping the overlap the chunker repeated at the start of
    the second one."""
    for size in range(min(len(first), len(second), 400), 10, -1):
        if first.endswith(second[:size]):
            return first + second[size:]
    return f"{first}\n\n{second}"


def _lexical_text(chunk: StoredChunk) -> str:
    # Title and headings count as words of the chunk: "warranty" in a heading matches.
    meta = chunk.metadata
    return f"{meta.get('title', '')}\n{meta.get('heading', '')}\n{chunk.text}"


def _is_latest(corpus: _Corpus, chunk_id: str) -> bool:
    return chunk_id in corpus.position


def _latest_versions(hits: list[StoreHit]) -> list[StoreHit]:
    # While a re-ingest replaces a document, old and new chunks coexist for a moment; showing
    # only the newest ingest of each document keeps the two versions from being mixed.
    newest = _newest_ingest(h.metadata for h in hits)
    return [h for h in hits if _ingested(h.metadata) >= newest[_doc(h.metadata)]]


def _latest_chunks(chunks: list[StoredChunk]) -> list[StoredChunk]:
    newest = _newest_ingest(c.metadata for c in chunks)
    return [c for c in chunks if _ingested(c.metadata) >= newest[_doc(c.metadata)]]


def _newest_ingest(metas: Iterable[Mapping[str, MetadataValue]]) -> dict[str, float]:
    newest: dict[str, float] = {}
    for meta in metas:
        newest[_doc(meta)] = max(newest.get(_doc(meta), 0.0), _ingested(meta))
    return newest


def _doc(meta: Mapping[str, MetadataValue]) -> str:
    return str(meta.get("doc_id", ""))


def _ingested(meta: Mapping[str, MetadataValue]) -> float:
    return _float(meta.get("ingested_at"))


def _passage(chunk: StoredChunk, score: float) -> Passage:
    meta = chunk.metadata
    page = meta.get("page")
    return Passage(
        chunk_id=chunk.chunk_id,
        doc_id=str(meta.get("doc_id", "")),
        text=chunk.text,
        score=min(1.0, max(0.0, score)),
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
