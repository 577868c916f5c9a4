"""What an uploaded file becomes is limited, not only what it weighs: a DOCX that is a
decompression bomb or a crowd of entries, a PDF of too many pages, a document of too much text, a
forum export of too many rows. And parsing runs in a child process with a time and memory budget."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from serving.knowledge.parse_worker import IsolatedParser
from serving.knowledge.parsers import DocumentError, ParseLimits, expanded_size, parse_document


def a_docx(text: str = "Returns are free for 30 days.") -> bytes:
    document = docx.Document()
    document.add_heading("Returns", level=1)
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def docx_bomb(expanded_mb: int = 24, words: int = 80) -> bytes:
    """A small DOCX whose word/document.xml expands to `expanded_mb` MB of one repeated paragraph
    of `words` words (fewer words: more paragraphs, a bigger document tree)."""
    source = zipfile.ZipFile(io.BytesIO(a_docx()))
    body = source.read("word/document.xml").decode()
    run = "<w:p><w:r><w:t>" + "lorem ipsum " * words + "</w:t></w:r></w:p>"
    filler = run * (expanded_mb * 1024 * 1024 // len(run))
    body = body.replace("<w:sectPr", filler + "<w:sectPr", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for item in source.infolist():
            data = body.encode() if item.filename == "word/document.xml" else source.read(item)
            bomb.writestr(item.filename, data)
    return out.getvalue()


def test_a_docx_bomb_is_refused_from_its_directory_in_a_blink() -> None:
    bomb = docx_bomb()
    assert len(bomb) < 200_000  # a "small" upload
    started = time.monotonic()
    with pytest.raises(DocumentError) as caught:
        parse_document(bomb, "manual.docx")
    assert caught.value.reason == "archive_bomb" and "expands" in caught.value.message
    assert time.monotonic() - started < 1.0
    # A plain expanded-size limit catches it too, whatever the ratio.
    with pytest.raises(DocumentError) as caught:
        parse_document(
            a_docx("x " * 200_000), "big.docx", limits=ParseLimits(max_expanded_bytes=100_000)
        )
    assert caught.value.reason == "archive_bomb"
    assert parse_document(a_docx(), "fine.docx").sections  # an ordinary file goes in


def test_a_docx_with_too_many_entries_is_refused() -> None:
    out = io.BytesIO()
    source = zipfile.ZipFile(io.BytesIO(a_docx()))
    with zipfile.ZipFile(out, "w") as crowded:
        for item in source.infolist():
            crowded.writestr(item.filename, source.read(item))
        for i in range(50):
            crowded.writestr(f"extra/part{i}.xml", "<x/>")
    with pytest.raises(DocumentError) as caught:
        parse_document(out.getvalue(), "crowded.docx", limits=ParseLimits(max_archive_entries=40))
    assert caught.value.reason == "too_many_entries"


def test_pdf_pages_and_extracted_characters_are_limited() -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in range(5):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {page + 1}. " + "Warranty terms apply. " * 40)
    data = bytes(pdf.output())
    with pytest.raises(DocumentError) as caught:
        parse_document(data, "long.pdf", limits=ParseLimits(max_pages=3))
    assert caught.value.reason == "too_many_pages" and "5 pages" in caught.value.message
    with pytest.raises(DocumentError) as caught:
        parse_document(data, "long.pdf", limits=ParseLimits(max_chars=1500))
    assert caught.value.reason == "too_much_text"
    assert parse_document(data, "long.pdf").page_count == 5


def test_text_formats_and_forum_exports_are_limited() -> None:
    limits = ParseLimits(max_chars=10_000, max_rows=10)
    for name in ("notes.md", "page.html", "notes.txt"):
        with pytest.raises(DocumentError) as caught:
            parse_document(("word " * 3000).encode(), name, limits=limits)
        assert caught.value.reason == "too_much_text", name
    rows = "thread_id,body\n" + "".join(f"{i},question {i}\n" for i in range(11))
    with pytest.raises(DocumentError) as caught:
        parse_document(rows.encode(), "forum.csv", limits=limits)
    assert caught.value.reason == "too_many_rows"
    threads = [
        {"title": f"t{i}", "posts": [{"body": "q"}, {"body": "a", "accepted": True}]}
        for i in range(6)
    ]
    with pytest.raises(DocumentError) as caught:
        parse_document(json.dumps(threads).encode(), "forum.json", limits=limits)
    assert caught.value.reason == "too_many_rows"
    with pytest.raises(DocumentError) as caught:
        parse_document(("[" * 100_000 + "]" * 100_000).encode(), "forum.json")
    assert caught.value.reason == "invalid_export"


def test_the_expanded_size_decides_sync_or_job(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    bomb.write_bytes(docx_bomb(8))
    assert expanded_size(bomb) > 8_000_000 > bomb.stat().st_size * 10
    text = tmp_path / "a.md"
    text.write_text("# A\n\nb")
    assert expanded_size(text) == text.stat().st_size


def test_isolated_parsing_has_a_time_and_a_memory_budget(tmp_path: Path) -> None:
    slow = ("# Title\n\n" + "A paragraph of words, " * 20 + "\n\n") * 20_000  # ~9 MB of Markdown
    path = tmp_path / "slow.md"
    path.write_text(slow)
    limits = ParseLimits(max_chars=50_000_000)
    parser = IsolatedParser(timeout_s=0.3, memory_mb=4096)
    try:
        assert parser.parse(a_docx(), "fine.docx", limits).sections  # warm, and it works
        started = time.monotonic()
        with pytest.raises(DocumentError) as caught:
            parser.parse(path, "slow.md", limits)
        assert caught.value.reason == "parse_timeout"
        assert time.monotonic() - started < 2
        assert parser.parse(a_docx(), "after.docx", limits).sections  # a fresh child took over
    finally:
        parser.close()
    parser = IsolatedParser(timeout_s=60, memory_mb=40)
    try:
        with pytest.raises(DocumentError) as caught:
            parser.parse(path, "slow.md", limits)
        assert caught.value.reason == "parse_memory"
        assert parser.parse(a_docx(), "after.docx", limits).sections
    finally:
        parser.close()
