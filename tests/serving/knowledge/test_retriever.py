"""Retriever.search: top-k passages above a score threshold, scores as cosine similarity, sources
ready to cite, and never a mix of two versions of one document."""

from __future__ import annotations

import pytest

from serving.knowledge import KnowledgeBase, Retriever, SentenceTransformerEmbedder
from serving.knowledge.demo import demo_documents
from serving.knowledge.store import ChromaStore, StoredChunk

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_kb(kb: KnowledgeBase) -> KnowledgeBase:
    assert all(r.ok for r in kb.ingest_files("demo", demo_documents()))
    return kb


def test_passages_carry_source_heading_path_page_and_score(demo_kb: KnowledgeBase) -> None:
    passages = demo_kb.retriever.search("demo", "What does error E03 mean?", k=5)
    assert len(passages) == 5
    top = passages[0]
    assert (top.source, top.title, top.heading_path) == (
        "troubleshooting.md",
        "Troubleshooting",
        ("Troubleshooting", "Error codes"),
    )
    assert "| E03 | Pairing timed out |" in top.text and top.page is None
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    pdf = demo_kb.retriever.search("demo", "How should I clean the lamp?", k=1)[0]
    assert (pdf.source, pdf.page, pdf.heading_path) == (
        "warranty-and-safety.pdf",
        1,
        ("Safety", "Cleaning"),
    )


def test_score_is_one_minus_cosine_distance(demo_kb: KnowledgeBase) -> None:
    question = "Can a schedule turn the lights on at sunset?"
    vector = demo_kb.retriever.embed_query(question)
    index = demo_kb.store.index(
        "demo", demo_kb.embedder.model_id, demo_kb.embedder.dimension, create=False
    )
    assert index is not None
    raw = index.collection.query(query_embeddings=[vector], n_results=3, include=["distances"])
    passages = demo_kb.retriever.search("demo", question, k=3)
    assert [p.chunk_id for p in passages] == raw["ids"][0]
    for passage, distance in zip(passages, raw["distances"][0]):
        assert passage.score == pytest.approx(1 - distance, abs=1e-6)


def test_min_score_and_k_limit_the_passages(demo_kb: KnowledgeBase) -> None:
    question = "Does Glow work with Apple Home?"
    everything = demo_kb.retriever.search("demo", question, k=100)
    assert len(everything) == sum(d.chunk_count for d in demo_kb.list_documents("demo"))
    threshold = everything[2].score
    above = demo_kb.retriever.search("demo", question, k=100, min_score=threshold)
    assert len(above) == 3 and all(p.score >= threshold for p in above)
    assert (
        demo_kb.retriever.search("demo", "What is the capital of Australia?", k=5, min_score=0.5)
        == []
    )
    assert demo_kb.retriever.search("demo", question, k=0) == []


def test_a_superseded_version_is_hidden_while_both_exist(
    store: ChromaStore, minilm: object
) -> None:
    retriever = Retriever(store, minilm)  # type: ignore[arg-type]
    index = store.index("acme", retriever.embedder.model_id, retriever.embedder.dimension)
    assert index is not None
    text_old, text_new = (
        "Reset: hold the button for 10 seconds.",
        "Reset: hold the button for 20 seconds.",
    )
    # The moment between writing a new version and deleting the old one.
    vectors = retriever.embedder.embed_documents([text_old, text_new])
    index.collection.upsert(
        ids=["d:old", "d:new"],
        embeddings=vectors,
        documents=[text_old, text_new],
        metadatas=[{"doc_id": "d", "ingested_at": 1.0}, {"doc_id": "d", "ingested_at": 2.0}],
    )
    assert [p.text for p in retriever.search("acme", "how long to hold reset", k=5)] == [text_new]


def test_stored_chunk_metadata_round_trips(store: ChromaStore, minilm: object) -> None:
    retriever = Retriever(store, minilm)  # type: ignore[arg-type]
    index = store.index("acme", retriever.embedder.model_id, retriever.embedder.dimension)
    assert index is not None
    chunk = StoredChunk(
        "d:1",
        "Lamps use 9 W.",
        {
            "doc_id": "d",
            "source": "specs.pdf",
            "title": "Specs",
            "heading_path": '["Power", "Usage ›"]',
            "page": 4,
            "ingested_at": 1.0,
        },
    )
    index.replace_document("d", [chunk], retriever.embedder.embed_documents([chunk.text]))
    passage = retriever.search("acme", "power use", k=1)[0]
    assert (passage.source, passage.title, passage.heading_path, passage.page) == (
        "specs.pdf",
        "Specs",
        ("Power", "Usage ›"),
        4,
    )


def test_search_follows_an_index_dropped_and_rebuilt_elsewhere(
    chroma_server: str, minilm: SentenceTransformerEmbedder
) -> None:
    reader = KnowledgeBase(ChromaStore.open(chroma_server), minilm)
    writer = KnowledgeBase(ChromaStore.open(chroma_server), minilm)  # e.g. the worker process
    writer.ingest_bytes("rebuilt", b"The hub reset takes 10 seconds.", "old.txt")
    assert [p.source for p in reader.retriever.search("rebuilt", "hub reset")] == ["old.txt"]
    writer.drop_bot("rebuilt")
    writer.ingest_bytes("rebuilt", b"The hub reset takes 20 seconds.", "new.txt")
    assert [p.source for p in reader.retriever.search("rebuilt", "hub reset")] == ["new.txt"]
