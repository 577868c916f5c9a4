"""Lexical search over a bot's chunks: BM25 (bm25s) on stemmed words, next to the dense vectors.

Dense embeddings find paraphrases; they miss exact names ("Quillon Kettle", `--keep-daily`,
`OWNCLOUD_CHUNK_SIZE`) that a small embedding model has never seen. BM25 finds those. The index also
answers a question the scope guard needs: which of a question's distinctive words the documents
contain at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import bm25s
import numpy as np
import Stemmer

_CLITIC = re.compile(r"'(s|t|re|ve|ll|d|m)$")
_WORD = re.compile(r"[^\W_]+(?:[-_.'][^\W_]+)*")
# Chat filler on top of the usual English stop words: it says nothing about the topic.
_CHAT_WORDS = frozenset(
    "please hi hello hey thanks thank anyone somebody someone get got want wanted need needs know "
    "tell help way ok okay also would could like use using used really still even thing things "
    "something anything everything since already actually maybe possible able".split()
)
STOP_WORDS = frozenset(bm25s.stopwords.STOPWORDS_EN_PLUS) | _CHAT_WORDS


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Stemmed content words of `text`, in order. Compound tokens (`keep-daily`, `file.txt`) also
    yield their parts, so either spelling matches."""
    stem = _stemmer().stemWord
    out: list[str] = []
    for match in _WORD.finditer(text.lower().replace("’", "'")):
        word = _CLITIC.sub("", match.group(0))
        parts = re.split(r"[-_.']", word)
        for token in [word] if len(parts) == 1 else [word.replace("'", ""), *parts]:
            if len(token) > 1 and token not in STOP_WORDS:
                out.append(stem(token))
    return out


@dataclass(frozen=True)
class TermEvidence:
    """How much of a question's vocabulary the documents contain, weighted by rarity (IDF)."""

    #: Share (by IDF weight) of the question's terms that occur anywhere in the documents.
    corpus_coverage: float
    #: The same share within the single best-matching chunk.
    best_chunk_coverage: float
    #: Question terms the documents never use (a product or tool they do not cover, often).
    unknown: tuple[str, ...]
    #: Number of distinct content terms in the question.
    term_count: int


class LexicalIndex:
    """BM25 over a fixed list of texts; rebuilt, not updated, when the texts change."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.size = len(texts)
        tokenized = [terms(t) for t in texts]
        self._bm25 = bm25s.BM25()
        # bm25s needs at least one token per document to build its matrix.
        self._bm25.index([t or ["\x00"] for t in tokenized] or [["\x00"]], show_progress=False)
        self._doc_freq: dict[str, int] = {}
        self._chunk_terms = [frozenset(t) for t in tokenized]
        for unique in self._chunk_terms:
            for term in unique:
                self._doc_freq[term] = self._doc_freq.get(term, 0) + 1

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for `query` (zeros when no term matches)."""
        query_terms = [t for t in dict.fromkeys(terms(query)) if t in self._doc_freq]
        if not query_terms or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(query_terms), dtype=np.float32)[: self.size]

    def top(self, query: str, n: int) -> list[tuple[int, float]]:
        """The `n` best (position, score) pairs with a positive score, best first."""
        scores = self.scores(query)
        if not scores.size:
            return []
        n = min(n, scores.size)
        best = np.argpartition(-scores, n - 1)[:n]
        ranked = sorted(best.tolist(), key=lambda i: -scores[i])
        return [(i, float(scores[i])) for i in ranked if scores[i] > 0]

    def similarity(self, a: int, b: int) -> float:
        """Jaccard similarity of two texts' word sets (1.0: the same words)."""
        first, second = self._chunk_terms[a], self._chunk_terms[b]
        union = len(first | second)
        return len(first & second) / union if union else 1.0

    def idf(self, term: str) -> float:
        """Rarity of a (stemmed) term; unseen terms get the highest value."""
        df = self._doc_freq.get(term, 0)
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def evidence(self, query: str, best_position: int | None) -> TermEvidence:
        """How well the documents (and the chunk at `best_position`) cover the question's terms."""
        query_terms = list(dict.fromkeys(terms(query)))
        if not query_terms:
            return TermEvidence(0.0, 0.0, (), 0)
        weights = {t: self.idf(t) for t in query_terms}
        total = sum(weights.values()) or 1.0
        known = sum(w for t, w in weights.items() if t in self._doc_freq)
        best = self._chunk_terms[best_position] if best_position is not None else frozenset()
        in_best = sum(w for t, w in weights.items() if t in best)
        unknown = tuple(t for t in query_terms if t not in self._doc_freq)
        return TermEvidence(known / total, in_best / total, unknown, len(query_terms))
