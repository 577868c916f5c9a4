"""KnowledgeBase end to end with the real MiniLM embedder and Chroma: batches with bad files,
re-ingest without duplicates or stale chunks, unchanged files skipped, delete, isolation,
all-or-nothing on failure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from serving.knowledge import (
    ChromaStore,
    ChunkingConfig,
    Instructions,
    KnowledgeBase,
    ParseLimits,
    SentenceTransformerEmbedder,
    document_id,
    load_embedder,
)
from serving.knowledge.demo import DEMO_DIR, demo_documents

pytestmark = pytest.mark.slow

MANUAL = """# Hub manual

## Reset
Hold the button for 10 seconds to reset the hub.

## Ports
The hub has one USB-C port. It also has one Ethernet port.
"""


class FailingEmbedder:
    """Wraps a real embedder; document embedding fails (a model crash mid-ingest)."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.uses_instructions = False

    def embed_documents(
        self, texts: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        raise RuntimeError("out of memory")

    def embed_query(self, text: str, instruction: str | None = None) -> list[float]:
        return self.inner.embed_query(text)


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_batch_reports_bad_files_and_ingests_the_rest(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.limits = ParseLimits(max_bytes=64 * 1024)
    bad = {
        "broken.pdf": (b"%PDF-1.4\n garbage", "corrupt"),
        "empty.md": (b"", "empty"),
        "photo.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        "sheet.xlsx": (b"PK\x03\x04", "unsupported_type"),
        "huge.txt": (b"word " * 20_000, "too_large"),
        "latin1.md": ("Café crème".encode("latin-1"), "encoding"),
    }
    paths = [write(tmp_path, name, data) for name, (data, _) in bad.items()]
    results = kb.ingest_files("demo", [*demo_documents(), *paths])

    by_source = {r.source: r for r in results}
    for name, (_, reason) in bad.items():
        assert by_source[name].status == "error" and by_source[name].reason == reason
        assert by_source[name].message and name in by_source[name].message
    good = [by_source[p.name] for p in demo_documents()]
    assert all(r.status == "ingested" and r.chunk_count > 0 for r in good)

    listed = {d.source: d for d in kb.list_documents("demo")}
    assert set(listed) == {p.name for p in demo_documents()}
    for result in good:
        doc = listed[result.source]
        assert doc.chunk_count == result.chunk_count and doc.content_hash == result.content_hash
        assert doc.ingested_at == result.ingested_at
    assert listed["warranty-and-safety.pdf"].page_count == 3


def test_reingesting_a_changed_document_replaces_its_chunks(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = write(tmp_path, "hub.md", MANUAL)
    first = kb.ingest_file("acme", path)
    assert first.chunk_count == 2
    path.write_text(
        MANUAL.replace("10 seconds", "20 seconds") + "\n## Mounting\nScrew it to the wall.\n"
    )
    second = kb.ingest_file("acme", path)

    assert second.status == "ingested" and second.doc_id == first.doc_id
    assert (second.chunk_count, second.embedded, second.reused, second.removed) == (3, 2, 1, 1)
    vector = kb.retriever.embed_query("how long to hold the reset button")
    texts = [p.text for p in kb.retriever.search_by_vector("acme", vector, k=10)]
    assert len(texts) == 3 and len(set(texts)) == 3  # no duplicates
    assert any("20 seconds" in t for t in texts) and not any("10 seconds" in t for t in texts)
    assert [d.chunk_count for d in kb.list_documents("acme")] == [3]


def test_unchanged_document_is_skipped_unless_forced_or_rechunked(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    path = write(tmp_path, "hub.md", MANUAL)
    first = kb.ingest_file("acme", path)
    again = kb.ingest_file("acme", path)
    assert again.status == "unchanged" and again.chunk_count == 2
    assert again.ingested_at == first.ingested_at and again.content_hash == first.content_hash
    forced = kb.ingest_file("acme", path, force=True)
    assert forced.status == "ingested" and forced.reused == 2 and forced.embedded == 0
    kb.chunking = ChunkingConfig(size=50, overlap=0)  # the Ports sentence no longer fits one chunk
    rechunked = kb.ingest_file("acme", path)
    assert rechunked.status == "ingested" and rechunked.chunk_count == 3
    assert kb.list_documents("acme")[0].chunk_count == 3


def test_delete_document_removes_it_from_search_and_listing(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb.ingest_file("acme", write(tmp_path, "hub.md", MANUAL))
    kb.ingest_bytes("acme", b"Lamps use 9 W of power.", "specs.txt")
    assert kb.delete_document("acme", document_id("hub.md")) == 2
    assert [d.source for d in kb.list_documents("acme")] == ["specs.txt"]
    sources = {p.source for p in kb.retriever.search("acme", "reset the hub", k=10)}
    assert sources == {"specs.txt"}
    assert kb.delete_document("acme", document_id("hub.md")) == 0
    assert kb.delete_document("nobody", "doc_x") == 0


def test_failed_embedding_leaves_the_previous_version_intact(
    store: ChromaStore, minilm: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    good = KnowledgeBase(store, minilm)
    path = write(tmp_path, "hub.md", MANUAL)
    before = good.ingest_file("acme", path)
    path.write_text(MANUAL + "\n## Colours\nThe ring can be green or amber.\n")
    failed = KnowledgeBase(store, FailingEmbedder(minilm)).ingest_file("acme", path)  # type: ignore[arg-type]
    assert failed.status == "error" and failed.reason == "embedding_failed"
    docs = good.list_documents("acme")
    assert [(d.content_hash, d.chunk_count) for d in docs] == [(before.content_hash, 2)]
    fresh = KnowledgeBase(store, FailingEmbedder(minilm)).ingest_bytes(
        "acme", b"New doc.", "new.txt"
    )  # type: ignore[arg-type]
    assert fresh.reason == "embedding_failed"
    assert {d.source for d in good.list_documents("acme")} == {"hub.md"}  # nothing half-indexed


class PoisonEmbedder(FailingEmbedder):
    """Fails on any batch that contains a poisoned text (a model crash on one file's input)."""

    def embed_documents(
        self, texts: Sequence[str], instruction: str | None = None
    ) -> list[list[float]]:
        if any("POISON" in t for t in texts):
            raise RuntimeError("tokenizer crashed")
        return self.inner.embed_documents(texts)


def test_embedding_failure_of_one_file_spares_the_rest_of_the_batch(
    store: ChromaStore, minilm: SentenceTransformerEmbedder
) -> None:
    kb = KnowledgeBase(store, PoisonEmbedder(minilm))  # type: ignore[arg-type]
    results = kb.ingest_uploads(
        "acme",
        [
            ("good.md", MANUAL.encode()),
            ("bad.txt", b"POISON pill"),
            ("good.md", b"same name again"),
        ],
    )
    assert [(r.source, r.status, r.reason) for r in results] == [
        ("good.md", "ingested", None),
        ("bad.txt", "error", "embedding_failed"),
        ("good.md", "error", "duplicate"),
    ]
    assert [d.source for d in kb.list_documents("acme")] == ["good.md"]


def test_questions_to_one_bot_never_retrieve_another_bots_chunks(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb.ingest_files("demo", demo_documents())
    kb.ingest_bytes("rival", b"Our secret: the Perch hub reset takes 10 seconds.", "secret.txt")
    question = "How do I reset the Perch hub? Our secret"
    demo_hits = kb.retriever.search("demo", question, k=50)
    assert demo_hits and all(p.source != "secret.txt" for p in demo_hits)
    assert {p.source for p in kb.retriever.search("rival", question, k=50)} == {"secret.txt"}
    assert kb.retriever.search("nobody", question) == []


@pytest.mark.parametrize("where", ["embedded", "server"])
def test_end_to_end_on_embedded_and_server_chroma(
    where: str, minilm: SentenceTransformerEmbedder, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = (
        tmp_path / "chroma" if where == "embedded" else request.getfixturevalue("chroma_server")
    )
    kb = KnowledgeBase(ChromaStore.open(location), minilm)
    bot = f"e2e-{where}-{tmp_path.name[-6:]}"
    results = kb.ingest_files(bot, [DEMO_DIR / "docs" / "warranty-and-safety.pdf"])
    assert results[0].status == "ingested"
    top = kb.retriever.search(bot, "How long is the warranty?", k=3)[0]
    assert (top.source, top.heading_path, top.page) == (
        "warranty-and-safety.pdf",
        ("Warranty", "Warranty period"),
        2,
    )
    assert 0.4 < top.score <= 1.0


def test_per_bot_instructions_are_recorded_and_enforced(
    store: ChromaStore, tiny_instructor_dir: Path
) -> None:
    kb = KnowledgeBase(store, load_embedder(f"instructor:{tiny_instructor_dir}"))
    manual = Instructions(document="Represent the lamp manual for retrieval: ")
    assert (
        kb.ingest_bytes("acme", MANUAL.encode(), "hub.md", instructions=manual).status == "ingested"
    )
    changed = kb.ingest_bytes(
        "acme",
        b"Other text.",
        "other.md",
        instructions=Instructions(document="Represent the FAQ for retrieval: "),
    )
    assert changed.status == "error" and changed.reason == "index_mismatch"
    assert kb.drop_bot("acme")
    assert kb.ingest_bytes(
        "acme",
        b"Other text.",
        "other.md",
        instructions=Instructions(document="Represent the FAQ for retrieval: "),
    ).ok
