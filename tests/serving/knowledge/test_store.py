"""The Chroma store, embedded and through a real `chroma run` server: one collection per bot and
model, all-or-nothing document replacement, deletion, isolation between bots."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from serving.knowledge.store import (
    BotIndex,
    ChromaStore,
    IndexMismatchError,
    StoredChunk,
    StoreError,
    collection_name,
)

DIM = 4


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.slow)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ChromaStore:
    if request.param == "embedded":
        return ChromaStore.open(tmp_path / "chroma")
    return ChromaStore.open(request.getfixturevalue("chroma_server"))


@pytest.fixture
def bot() -> str:
    # The server is shared by the session: each test gets its own bot.
    return f"bot-{uuid.uuid4().hex[:8]}"


def chunk(doc: str, n: int, text: str | None = None) -> StoredChunk:
    return StoredChunk(
        f"{doc}:{n}", text or f"{doc} chunk {n}", {"doc_id": doc, "ingested_at": float(n)}
    )


def vec(n: int) -> list[float]:
    v = [0.1] * DIM
    v[n % DIM] = 1.0
    return v


def ids_of(index: BotIndex) -> set[str]:
    return set(index.collection.get(include=[])["ids"])


def test_collection_names_are_valid_and_unique() -> None:
    names = {
        collection_name("acme", "sentence-transformers/all-MiniLM-L6-v2"),
        collection_name("ACME", "sentence-transformers/all-MiniLM-L6-v2"),  # same slug, other bot
        collection_name("acme", "hkunlp/instructor-large"),
        collection_name("a" * 300 + "!", "/models/x" * 40),
        collection_name("ü", "m"),
    }
    assert len(names) == 5
    for name in names:
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name), name


def test_replace_keeps_only_the_new_chunks(any_store: ChromaStore, bot: str) -> None:
    index = any_store.index(bot, "model-a", DIM)
    assert index is not None
    first = index.replace_document(
        "doc1", [chunk("doc1", i) for i in range(5)], [vec(i) for i in range(5)]
    )
    assert (first.added, first.kept, first.removed) == (5, 0, 0)
    new = [chunk("doc1", i) for i in range(3, 8)]  # 3, 4 kept; 0-2 stale; 5-7 new
    stats = index.replace_document("doc1", new, [vec(i) for i in range(3, 8)])
    assert (stats.added, stats.kept, stats.removed) == (3, 2, 3)
    assert ids_of(index) == {f"doc1:{i}" for i in range(3, 8)}
    # Replacing again with the same chunks changes nothing and creates no duplicates.
    index.replace_document("doc1", new, [vec(i) for i in range(3, 8)])
    assert index.count() == 5 == index.count("doc1")


def test_delete_document_removes_only_its_chunks(any_store: ChromaStore, bot: str) -> None:
    index = any_store.index(bot, "model-a", DIM)
    assert index is not None
    index.replace_document("doc1", [chunk("doc1", i) for i in range(3)], [vec(i) for i in range(3)])
    index.replace_document("doc2", [chunk("doc2", i) for i in range(2)], [vec(i) for i in range(2)])
    assert index.delete_document("doc1") == 3
    assert ids_of(index) == {"doc2:0", "doc2:1"}
    assert index.delete_document("doc1") == 0


def test_a_bot_never_sees_another_bots_chunks(any_store: ChromaStore, bot: str) -> None:
    other = bot + "-other"
    mine = any_store.index(bot, "model-a", DIM)
    theirs = any_store.index(other, "model-a", DIM)
    assert mine is not None and theirs is not None
    theirs.replace_document("secret", [chunk("secret", 0, "their pricing sheet")], [vec(0)])
    mine.replace_document("manual", [chunk("manual", 1, "our manual")], [vec(1)])
    hits = mine.query(vec(0), k=10)  # exactly the other bot's vector
    assert [h.chunk_id for h in hits] == ["manual:1"]
    assert mine.name != theirs.name


def test_vectors_of_two_models_are_kept_apart(any_store: ChromaStore, bot: str) -> None:
    a = any_store.index(bot, "model-a", DIM)
    b = any_store.index(bot, "model-b", 8)
    assert a is not None and b is not None and a.name != b.name
    a.replace_document("d", [chunk("d", 0)], [vec(0)])
    assert b.count() == 0
    with pytest.raises(ValueError, match="dimension"):
        a.replace_document("d", [chunk("d", 0)], [[1.0] * 8])


def test_reopening_with_another_dimension_is_refused(tmp_path: Path) -> None:
    store = ChromaStore.open(tmp_path / "chroma")
    store.index("acme", "model-a", DIM)
    with pytest.raises(IndexMismatchError, match="dimension"):
        ChromaStore.open(tmp_path / "chroma").index("acme", "model-a", 8)


def test_document_instruction_cannot_change_under_existing_vectors(store: ChromaStore) -> None:
    index = store.index("acme", "instructor", DIM, document_instruction="Represent the manual: ")
    assert index is not None
    index.replace_document("d", [chunk("d", 0)], [vec(0)])
    assert store.index("acme", "instructor", DIM, document_instruction="Represent the manual: ")
    assert store.index("acme", "instructor", DIM)  # searching does not check it
    with pytest.raises(IndexMismatchError, match="re-ingest"):
        store.index("acme", "instructor", DIM, document_instruction="Represent the FAQ: ")


def test_missing_index_is_not_created_for_reading(store: ChromaStore) -> None:
    assert store.index("ghost", "model-a", DIM, create=False) is None
    assert not store.drop_index("ghost", "model-a")


def snapshot(index: BotIndex) -> dict[str, Any]:
    got = index.collection.get(include=["metadatas", "documents"])
    return {
        cid: (doc, meta) for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])
    }


def test_failed_delete_of_stale_chunks_rolls_the_document_back(
    any_store: ChromaStore, bot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = any_store.index(bot, "model-a", DIM)
    assert index is not None
    index.replace_document("doc1", [chunk("doc1", i) for i in range(4)], [vec(i) for i in range(4)])
    before = snapshot(index)
    real_delete = index.collection.delete

    def failing_delete(ids: list[str] | None = None, **kwargs: Any) -> None:
        if ids and "doc1:0" in ids:  # the stale-chunk cleanup
            raise RuntimeError("disk full")
        real_delete(ids=ids, **kwargs)

    monkeypatch.setattr(index.collection, "delete", failing_delete)
    new = [
        StoredChunk(f"doc1:{i}", f"doc1 chunk {i}", {"doc_id": "doc1", "ingested_at": 99.0})
        for i in range(2, 6)
    ]
    with pytest.raises(StoreError, match="disk full"):
        index.replace_document("doc1", new, [vec(i) for i in range(2, 6)])
    assert snapshot(index) == before  # no new chunk, kept chunks have their old metadata


def test_failed_write_midway_leaves_nothing_behind(
    any_store: ChromaStore, bot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = any_store.index(bot, "model-a", DIM)
    assert index is not None
    index.replace_document("doc1", [chunk("doc1", 0)], [vec(0)])
    before = snapshot(index)
    index._max_batch = 2  # force several upsert batches
    real_upsert = index.collection.upsert
    calls = {"n": 0}

    def flaky_upsert(**kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection reset")
        real_upsert(**kwargs)

    monkeypatch.setattr(index.collection, "upsert", flaky_upsert)
    with pytest.raises(StoreError):
        index.replace_document(
            "doc1", [chunk("doc1", i) for i in range(6)], [vec(i) for i in range(6)]
        )
    assert snapshot(index) == before


def test_query_returns_nearest_with_cosine_distance(store: ChromaStore) -> None:
    index = store.index("acme", "model-a", DIM)
    assert index is not None
    index.replace_document("d", [chunk("d", i) for i in range(4)], [vec(i) for i in range(4)])
    hits = index.query(vec(2), k=2)
    assert hits[0].chunk_id == "d:2" and hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert hits[1].distance > hits[0].distance
