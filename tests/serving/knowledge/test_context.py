"""Prompt assembly: numbered source markers in the context, citations carried back."""

from __future__ import annotations

from serving.knowledge.context import build_context
from serving.knowledge.retriever import Passage


def passage(
    n: int, text: str, page: int | None = None, path: tuple[str, ...] = ("Setup",)
) -> Passage:
    return Passage(
        f"doc{n}:c", f"doc{n}", text, 0.9 - n / 10, f"file{n}.md", f"File {n}", path, page
    )


def test_context_numbers_sources_and_returns_citations() -> None:
    context = build_context(
        [passage(1, "Hold 10 s."), passage(2, "Rated IP20.", page=3, path=("Safety", "Where"))]
    )
    assert (
        context.text
        == "[1] file1.md › Setup\nHold 10 s.\n\n[2] file2.md › Safety › Where, p. 3\nRated IP20."
    )
    first, second = context.citations
    assert (first.marker, first.doc_id, first.heading_path, first.page, first.score) == (
        1,
        "doc1",
        ("Setup",),
        None,
        0.8,
    )
    assert (second.marker, second.source, second.page, second.label) == (
        2,
        "file2.md",
        3,
        "file2.md › Safety › Where, p. 3",
    )


def test_answer_keeps_only_the_citations_it_uses() -> None:
    context = build_context([passage(1, "a"), passage(2, "b"), passage(3, "c")])
    used = context.cited_in("Hold it for 10 s [3]. It is indoor-only [1][7].")
    assert [c.marker for c in used] == [1, 3]
    assert context.cited_in("No markers here.") == []


def test_context_stops_at_the_character_budget() -> None:
    passages = [passage(i, "x" * 400) for i in range(1, 6)]
    context = build_context(passages, max_chars=1000)
    assert len(context.citations) == 2 and len(context.text) <= 1000
    lone = build_context([passage(1, "y" * 5000)], max_chars=300)
    assert len(lone.citations) == 1 and len(lone.text) == 300
