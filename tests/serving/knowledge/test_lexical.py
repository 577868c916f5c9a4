"""The lexical index: stemmed content words, BM25 ranking, and which question words the documents
never use."""

from __future__ import annotations

from serving.knowledge.lexical import LexicalIndex, terms


def test_terms_are_stemmed_content_words_and_compounds_match_either_way() -> None:
    assert terms("How do I reset my hubs? Please help!") == ["reset", "hub"]
    assert terms("What's --keep-daily in file.txt") == [
        "keep-daili",
        "keep",
        "daili",
        "file.txt",
        "file",
        "txt",
    ]
    assert terms("don’t can’t") == []  # typographic apostrophes are clitics too


def test_bm25_finds_the_exact_name_the_embedding_misses() -> None:
    index = LexicalIndex(
        [
            "Warranty: Kestrel lamps are covered for two years.",
            "The Quillon Kettle warranty lasts five years.",
            "Resetting the hub takes ten seconds.",
        ]
    )
    assert [i for i, _ in index.top("How long is the warranty on the Quillon Kettle?", 2)] == [1, 0]
    assert index.top("nothing matches here", 3) == []


def test_evidence_names_the_words_the_documents_never_use() -> None:
    index = LexicalIndex(["Pair the lamp with the hub.", "Reset the hub with the button."])
    evidence = index.evidence("How do I pair my Philips Hue lamp?", best_position=0)
    assert set(evidence.unknown) == {"philip", "hue"} and evidence.term_count == 4
    assert 0 < evidence.corpus_coverage < 0.5  # the unknown words are the rare, heavy ones
    assert evidence.best_chunk_coverage == evidence.corpus_coverage
    assert index.evidence("reset the hub", best_position=1).corpus_coverage == 1.0


def test_similarity_spots_copies_of_the_same_text() -> None:
    index = LexicalIndex(
        [
            "Tokens expire after 90 days; rotate them with POST /tokens/rotate.",
            "Tokens expire after 90 days: rotate them with POST /tokens/rotate",
            "Lamps use 9 W.",
        ]
    )
    assert index.similarity(0, 1) == 1.0 and index.similarity(0, 2) == 0.0
