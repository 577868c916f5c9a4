"""Retrieved passages as stored with an exchange (and read back, to rebuild a prompt later), and the
answer a retrieval-only release gives from them."""

from __future__ import annotations

from typing import Any

from serving.knowledge import Passage


def passage_dict(p: Passage) -> dict[str, Any]:
    return {
        "chunk_id": p.chunk_id,
        "doc_id": p.doc_id,
        "document": p.source,
        "title": p.title,
        "heading_path": list(p.heading_path),
        "page": p.page,
        "score": round(p.score, 4),
        "text": p.text,
    }


def passage_of(stored: dict[str, Any]) -> Passage:
    """A passage back from its stored form (`passage_dict`)."""
    return Passage(
        chunk_id=str(stored.get("chunk_id", "")),
        doc_id=str(stored.get("doc_id", "")),
        text=str(stored.get("text", "")),
        score=float(stored.get("score") or 0.0),
        source=str(stored.get("document") or stored.get("source") or ""),
        title=str(stored.get("title") or ""),
        heading_path=tuple(stored.get("heading_path") or ()),
        page=stored.get("page"),
    )


def retrieval_answer(passages: list[Passage], limit: int = 2) -> str:
    """A retrieval-only release answers with the best passages, quoted with their sources."""
    parts = []
    for p in passages[:limit]:
        where = " › ".join([p.source, *p.heading_path]) + (
            f", p. {p.page}" if p.page is not None else ""
        )
        parts.append(f"{p.text.strip()}\n(Source: {where})")
    return "\n\n".join(parts)
