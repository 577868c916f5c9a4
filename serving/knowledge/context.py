"""Passages → the context block the model sees (with source markers [1], [2], …) and the citations
the answer carries back to the client."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from serving.knowledge.retriever import Passage

_MARKER = re.compile(r"\[(\d{1,3})\]")

GROUNDING_RULES = (
    "Answer using only the sources below. After each statement, cite its source with the marker "
    "in square brackets, like [1]. If the sources do not contain the answer, say so instead of "
    "guessing."
)


@dataclass(frozen=True)
class Citation:
    """Where a cited passage came from: document, heading path, page and retrieval score."""

    marker: int
    chunk_id: str
    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    page: int | None
    score: float

    @property
    def label(self) -> str:
        """Human-readable location, e.g. "manual.pdf › Safety › Cleaning, p. 3"."""
        parts = [self.source or self.title, *self.heading_path]
        text = " › ".join(p for p in parts if p)
        return f"{text}, p. {self.page}" if self.page is not None else text


@dataclass(frozen=True)
class ContextBlock:
    text: str
    citations: tuple[Citation, ...]

    def cited_in(self, answer: str) -> list[Citation]:
        """The citations whose markers appear in `answer`, in marker order (unknown markers are
        ignored, since a model may invent them)."""
        used = {int(m) for m in _MARKER.findall(answer)}
        return [c for c in self.citations if c.marker in used]


def build_context(passages: Sequence[Passage], *, max_chars: int = 6000) -> ContextBlock:
    """Number the passages [1]..[n] in the given order (best first) until `max_chars` is reached;
    the first passage is always included, shortened if it alone is too long."""
    parts: list[str] = []
    citations: list[Citation] = []
    used = 0
    for passage in passages:
        marker = len(citations) + 1
        citation = Citation(
            marker,
            passage.chunk_id,
            passage.doc_id,
            passage.source,
            passage.title,
            passage.heading_path,
            passage.page,
            round(passage.score, 4),
        )
        header = f"[{marker}] {citation.label}"
        entry = f"{header}\n{passage.text.strip()}"
        if parts and used + len(entry) > max_chars:
            break
        if not parts and len(entry) > max_chars:
            entry = entry[:max_chars]
        parts.append(entry)
        citations.append(citation)
        used += len(entry) + 2
    return ContextBlock("\n\n".join(parts), tuple(citations))
