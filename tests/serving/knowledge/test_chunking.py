"""The chunker: bounded sizes, nothing lost, heading path and page on every chunk, tables and code
kept whole when they fit, stable ids."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.knowledge.chunking import ChunkingConfig, chunk_document
from serving.knowledge.demo import DEMO_DIR
from serving.knowledge.parsers import Block, ParsedDocument, Section, parse_document

words = st.text(alphabet="abcdefghij", min_size=1, max_size=12)
sentences = st.lists(words, min_size=1, max_size=25).map(lambda ws: " ".join(ws) + ".")
paragraphs = st.lists(sentences, min_size=1, max_size=12).map(" ".join)
table_rows = st.lists(st.tuples(words, words), min_size=1, max_size=40)


def table(rows: list[tuple[str, str]]) -> str:
    return "| key | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


@st.composite
def documents(draw: st.DrawFn) -> ParsedDocument:
    sections = []
    for i in range(draw(st.integers(1, 4))):
        blocks = []
        for _ in range(draw(st.integers(1, 5))):
            if draw(st.booleans()):
                blocks.append(Block("text", draw(paragraphs)))
            else:
                blocks.append(Block("table", table(draw(table_rows))))
        sections.append(Section(heading_path=("Doc", f"Part {i}"), blocks=blocks, page=i + 1))
    return ParsedDocument("doc.md", "markdown", "Doc", sections, "hash", 0)


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-j]+", text)


@settings(max_examples=60, deadline=None, database=None)
@given(documents(), st.integers(120, 600), st.integers(0, 50))
def test_chunks_fit_cover_everything_and_keep_their_section(
    doc: ParsedDocument, size: int, overlap: int
) -> None:
    config = ChunkingConfig(size=size, overlap=overlap)
    chunks = chunk_document(doc, "doc_1", config)
    assert all(len(c.text) <= size for c in chunks)
    for section in doc.sections:
        own = [c for c in chunks if c.heading_path == section.heading_path]
        assert own and all(c.page == section.page for c in own)
        # Every word of the section appears, in order, in its chunks (overlap only repeats).
        joined = " ".join(c.text for c in own)
        expected = words_of(" ".join(b.text for b in section.blocks))
        it = iter(words_of(joined))
        assert all(any(w == got for got in it) for w in expected)
        for block in section.blocks:
            if block.kind == "table" and len(block.text) <= size:
                assert any(block.text in c.text for c in own), "a table that fits is never cut"
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_overlap_repeats_the_previous_sentences() -> None:
    text = " ".join(f"Sentence {i} says something." for i in range(40))
    doc = ParsedDocument("a.md", "markdown", "A", [Section(("A",), [Block("text", text)])], "h", 0)
    chunks = chunk_document(doc, "d", ChunkingConfig(size=200, overlap=60))
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        last_sentence = re.findall(r"Sentence \d+ says something\.", before.text)[-1]
        assert after.text.startswith(
            tuple(re.findall(r"Sentence \d+ says something\.", before.text))
        )
        assert last_sentence in after.text


def test_big_table_is_split_by_rows_with_its_header_repeated() -> None:
    rows = [(f"row{i}", f"value{i}") for i in range(60)]
    doc = ParsedDocument(
        "t.md", "markdown", "T", [Section(("T",), [Block("table", table(rows))])], "h", 0
    )
    chunks = chunk_document(doc, "d", ChunkingConfig(size=300, overlap=50))
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("| key | value |\n|---|---|\n")
        assert all(line.startswith("|") and line.endswith("|") for line in chunk.text.splitlines())
    assert sum(c.text.count("| row") for c in chunks) == 60  # no row lost or repeated


def test_big_code_block_keeps_its_fences_in_every_part() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(120)) + "\n```"
    doc = ParsedDocument("c.md", "markdown", "C", [Section(("C",), [Block("code", code)])], "h", 0)
    chunks = chunk_document(doc, "d", ChunkingConfig(size=250, overlap=40))
    assert len(chunks) > 1
    assert all(c.text.startswith("```python\n") and c.text.endswith("\n```") for c in chunks)


def test_ids_are_stable_and_change_only_with_content() -> None:
    path = DEMO_DIR / "docs" / "troubleshooting.md"
    original = path.read_text()
    first = chunk_document(parse_document(path), "doc_t")
    again = chunk_document(parse_document(path), "doc_t")
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    edited_text = original.replace("Channels 1, 6 or 11", "Channels 1 or 6")
    edited = chunk_document(parse_document(edited_text.encode(), "troubleshooting.md"), "doc_t")
    changed = {c.chunk_id for c in edited} - {c.chunk_id for c in first}
    assert len(changed) == 1  # only the edited section's chunk gets a new id
    other_doc = chunk_document(parse_document(path), "doc_other")
    assert not {c.chunk_id for c in other_doc} & {c.chunk_id for c in first}


def test_repeated_identical_passages_get_distinct_ids() -> None:
    section = Section(("FAQ",), [Block("text", "Contact support.")])
    doc = ParsedDocument("f.md", "markdown", "F", [section, section], "h", 0)
    ids = [c.chunk_id for c in chunk_document(doc, "d")]
    assert len(set(ids)) == 2


def test_embedding_text_carries_title_and_heading_path() -> None:
    chunks = chunk_document(parse_document(DEMO_DIR / "docs" / "warranty-and-safety.pdf"), "d")
    cleaning = next(c for c in chunks if c.heading_path[-1:] == ("Cleaning",))
    assert cleaning.embedding_text.startswith(
        "Kestrel Glow - Warranty and safety > Safety > Cleaning\n\n"
    )
    assert cleaning.page == 1


def test_token_sized_chunks_use_the_given_length() -> None:
    text = " ".join(f"word{i}" for i in range(500))
    doc = ParsedDocument("a.txt", "text", "A", [Section((), [Block("text", text)])], "h", 0)

    def count_words(s: str) -> int:
        return len(s.split())

    chunks = chunk_document(
        doc, "d", ChunkingConfig(size=100, overlap=10, unit="tokens"), count_words
    )
    assert all(count_words(c.text) <= 100 for c in chunks) and len(chunks) >= 5
    with pytest.raises(ValueError, match="token-length"):
        chunk_document(doc, "d", ChunkingConfig(size=100, overlap=10, unit="tokens"))


@pytest.mark.parametrize(("size", "overlap"), [(10, 0), (200, 100), (200, -1)])
def test_invalid_configs_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(size=size, overlap=overlap)
