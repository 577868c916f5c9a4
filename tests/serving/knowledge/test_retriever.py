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
    raw = index.collection.query(query_embeddings=[vector], n_results=40, include=["distances"])
    cosine = {cid: 1 - d for cid, d in zip(raw["ids"][0], raw["distances"][0])}
    dense = demo_kb.retriever.search_by_vector("demo", vector, k=3)
    assert [p.chunk_id for p in dense] == raw["ids"][0][:3]
    # The hybrid search ranks differently, but its scores are the same cosines.
    for passage in demo_kb.retriever.search("demo", question, k=5) + dense:
        assert passage.score == pytest.approx(cosine[passage.chunk_id], abs=1e-5)


def test_min_score_and_k_limit_the_passages(demo_kb: KnowledgeBase) -> None:
    question = "Does Glow work with Apple Home?"
    vector = demo_kb.retriever.embed_query(question)
    everything = demo_kb.retriever.search_by_vector("demo", vector, k=100)
    assert len(everything) == sum(d.chunk_count for d in demo_kb.list_documents("demo"))
    threshold = everything[2].score
    above = demo_kb.retriever.search_by_vector("demo", vector, k=100, min_score=threshold)
    assert len(above) == 3 and all(p.score >= threshold for p in above)
    assert len(demo_kb.retriever.search("demo", question, k=2)) == 2
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


def test_an_exact_product_name_is_found_next_to_similar_documents(demo_kb: KnowledgeBase) -> None:
    page = (
        "# Quillon Kettle\n\n## Warranty\n\nThe Quillon Kettle comes with a five-year warranty "
        "on the heating element.\n\n## Descaling\n\nDescale it every month with citric acid.\n"
    )
    assert demo_kb.ingest_bytes("demo", page.encode(), "quillon-kettle.md").ok
    passages = demo_kb.retriever.search(
        "demo", "How long is the warranty on the Quillon Kettle?", k=3
    )
    assert passages[0].source == "quillon-kettle.md"
    assert passages[0].heading_path == ("Quillon Kettle", "Warranty")
    assert "five-year warranty" in passages[0].text


def test_passages_are_distinct_places_at_most_two_per_document(demo_kb: KnowledgeBase) -> None:
    passages = demo_kb.retriever.search("demo", "hub blinking red error codes", k=8)
    places = [(p.doc_id, p.heading_path, p.page) for p in passages]
    assert len(places) == len(set(places)) == 8
    per_doc = {d: sum(p.doc_id == d for p in passages) for d in {p.doc_id for p in passages}}
    assert max(per_doc.values()) <= 2


def test_a_hit_is_widened_with_its_section_neighbours(kb: KnowledgeBase) -> None:
    sentences = [f"Step {i}: turn dial number {i} clockwise until it clicks." for i in range(1, 41)]
    page = "# Assembly\n\n## Dials\n\n" + " ".join(sentences) + "\n\n## Other\n\nUnrelated words."
    result = kb.ingest_bytes("acme", page.encode(), "assembly.md")
    assert result.chunk_count > 4
    top = kb.retriever.search("acme", "turn dial number 20 clockwise", k=1)[0]
    assert "dial number 20 " in top.text and 900 < len(top.text) <= 1400
    assert top.text.count("Step 20:") == 1  # overlaps between chunks are not repeated
    assert "Unrelated" not in top.text  # never past its section


def test_a_write_by_another_process_reaches_the_lexical_index(
    store: ChromaStore, minilm: SentenceTransformerEmbedder
) -> None:
    reader = KnowledgeBase(store, minilm)
    writer = KnowledgeBase(ChromaStore(store.client), minilm)
    writer.ingest_bytes("acme", b"The Zorblat adapter needs firmware 2.", "a.txt")
    assert [p.source for p in reader.retriever.search("acme", "Zorblat")] == ["a.txt"]
    writer.ingest_bytes("acme", b"The Quexo cable is sold separately.", "b.txt")
    reader.retriever.refresh_s = 0.0  # as if a second had passed
    vector = reader.retriever.embed_query("Quexo")
    found = reader.retriever.hybrid_search("acme", "Quexo", vector, k=1)
    assert found.passages[0].source == "b.txt" and "quexo" not in found.evidence.unknown
