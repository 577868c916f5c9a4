"""parse_document: structure kept for every supported format, and a clear reason for every file
that cannot be ingested."""

from __future__ import annotations

import io
import json
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from serving.knowledge.demo import DEMO_DIR
from serving.knowledge.parsers import DocumentError, ParseLimits, parse_document
from tests.serving.knowledge.doc_sites import build_mkdocs_site, build_sphinx_site

DOCS = DEMO_DIR / "docs"


def reason_of(data: bytes, filename: str, **kwargs: object) -> str:
    with pytest.raises(DocumentError) as info:
        parse_document(data, filename, **kwargs)  # type: ignore[arg-type]
    assert info.value.message.startswith(filename)  # every message names the file
    return info.value.reason


def make_pdf(pages: list[str]) -> bytes:
    pdf = FPDF()
    for text in pages:
        pdf.add_page()
        if text:
            pdf.set_font("Helvetica", size=12)
            pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


# --- Markdown -----------------------------------------------------------------------------------


def test_markdown_keeps_heading_paths_tables_and_code() -> None:
    doc = parse_document(DOCS / "getting-started.md")
    assert doc.format == "markdown"
    assert doc.title == "Getting started with Kestrel Glow"
    paths = [s.heading_path for s in doc.sections]
    assert (
        "Getting started with Kestrel Glow",
        "Set up the Perch hub",
        "Status ring colours",
    ) in paths
    table = next(b for s in doc.sections for b in s.blocks if b.kind == "table")
    assert table.text.count("\n") == 6  # header, rule and five rows in one block
    code = next(
        b
        for b in parse_document(DOCS / "troubleshooting.md").sections[-2].blocks
        if b.kind == "code"
    )
    assert code.text.startswith("```bash") and "perch diag" in code.text


def test_markdown_without_headings_uses_file_name_as_title() -> None:
    doc = parse_document(b"Just a note.\n\nSecond paragraph.", "release-note.md")
    assert doc.title == "release-note"
    assert [b.text for b in doc.sections[0].blocks] == ["Just a note.", "Second paragraph."]


# --- HTML ---------------------------------------------------------------------------------------


def test_html_strips_navigation_and_boilerplate() -> None:
    doc = parse_document(DOCS / "scenes-and-schedules.html")
    text = doc.text
    assert doc.title == "Scenes and schedules"
    for chrome in (
        "cookies",
        "Sign in",
        "In this section",
        "Was this article helpful",
        "dataLayer",
        "©",
    ):
        assert chrome not in text
    assert "2200 K (candle-warm) to 6500 K" in text
    assert ("Scenes and schedules", "Create a scene", "Colour and white") in [
        s.heading_path for s in doc.sections
    ]
    table = next(b for s in doc.sections for b in s.blocks if b.kind == "table")
    assert "| Nightlight | 2200 K | 5 % | Hallways at night |" in table.text


def test_html_wiki_export_drops_sidebar_toc_and_footer() -> None:
    doc = parse_document(DOCS / "firmware-updates.html")
    assert "Random page" not in doc.text and "Contents" not in doc.text
    assert "last edited" not in doc.text and "Categories" not in doc.text
    code = next(b for s in doc.sections for b in s.blocks if b.kind == "code")
    assert "perch update --hub 192.168.1.40 --all\nperch update" in code.text


def test_html_declared_legacy_charset_is_honoured() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>Café – 20 °C</p></body></html>'
    doc = parse_document(page.encode("cp1252"), "legacy.html")
    assert "Café – 20 °C" in doc.text


# --- PDF ----------------------------------------------------------------------------------------


def test_pdf_keeps_page_numbers_and_outline_headings() -> None:
    doc = parse_document(DOCS / "warranty-and-safety.pdf")
    assert doc.page_count == 3
    by_heading = {s.heading_path: s for s in doc.sections}
    warranty = by_heading[("Warranty", "Warranty period")]
    assert warranty.page == 2 and "two (2) years" in warranty.blocks[0].text
    assert by_heading[("Returns and specifications", "Technical specifications")].page == 3


def test_pdf_without_outline_has_one_section_per_page() -> None:
    doc = parse_document(make_pdf(["First page text.", "Second page text."]), "plain.pdf")
    assert [(s.page, s.blocks[0].text) for s in doc.sections] == [
        (1, "First page text."),
        (2, "Second page text."),
    ]


def test_password_protected_pdf_is_refused() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["secret plans"]))))
    writer.encrypt(user_password="hunter2", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert reason_of(buffer.getvalue(), "locked.pdf") == "encrypted"


def test_pdf_with_only_an_owner_password_is_read() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["readable by anyone"]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert "readable by anyone" in parse_document(buffer.getvalue(), "open.pdf").text


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n this is not really a pdf \x00\x01",
        (DOCS / "warranty-and-safety.pdf").read_bytes()[:900],  # truncated download
        b"<html>saved error page</html>",
    ],
    ids=["garbage", "truncated", "not-a-pdf"],
)
def test_corrupt_pdf_is_refused(data: bytes) -> None:
    assert reason_of(data, "broken.pdf") == "corrupt"


def test_pdf_without_text_layer_is_refused() -> None:
    assert reason_of(make_pdf(["", ""]), "scan.pdf") == "no_text"


# --- plain text and encodings -------------------------------------------------------------------


def test_plain_text_paragraphs() -> None:
    doc = parse_document(b"First paragraph\nstill first.\n\n\nSecond.", "notes.txt")
    assert doc.format == "text"
    assert [b.text for b in doc.sections[0].blocks] == ["First paragraph\nstill first.", "Second."]


@pytest.mark.parametrize(
    "data",
    [
        "\ufeffGrüße aus Köln".encode("utf-8"),
        "\ufeffGrüße aus Köln".encode("utf-16-le"),
        "\ufeffGrüße aus Köln".encode("utf-16-be"),
    ],
    ids=["utf-8-bom", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_byte_order_marks_select_the_encoding(data: bytes) -> None:
    assert parse_document(data, "greeting.txt").text == "Grüße aus Köln"


def test_wrong_encoding_is_reported_with_position() -> None:
    with pytest.raises(DocumentError) as info:
        parse_document("Grüße aus Köln".encode("latin-1"), "greeting.txt")
    assert info.value.reason == "encoding"
    assert "not valid UTF-8" in info.value.message and "offset 2" in info.value.message


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "diagram.md"),
        (b"PK\x03\x04" + b"\x00" * 64, "export.txt"),
        (b"ELF-ish\x00\x00\x00\x01\x02\x03" * 20, "notes.txt"),
        (bytes([1, 2, 3, 4, 5, 6, 7, 8, 11, 14, 15, 16]) * 50 + b"text", "log.txt"),
        ("hello".encode("utf-16-le"), "no-bom.txt"),
    ],
    ids=["png-as-md", "zip-as-txt", "nul-bytes", "control-chars", "utf16-without-bom"],
)
def test_binary_disguised_as_text_is_refused(data: bytes, filename: str) -> None:
    assert reason_of(data, filename) == "binary"


# --- DOCX ---------------------------------------------------------------------------------------


def test_docx_headings_lists_and_tables(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Installer guide", level=0)
    document.add_heading("Wiring", level=1)
    document.add_paragraph("Switch the breaker off first.")
    document.add_paragraph("Neutral is blue", style="List Bullet")
    document.add_paragraph("Live is brown", style="List Bullet")
    document.add_heading("Torque", level=2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Screw", "Nm"
    table.cell(1, 0).text, table.cell(1, 1).text = "M4", "1.2"
    path = tmp_path / "guide.docx"
    document.save(str(path))

    doc = parse_document(path)
    assert doc.title == "Installer guide"
    sections = {s.heading_path: [(b.kind, b.text) for b in s.blocks] for s in doc.sections}
    assert sections[("Installer guide", "Wiring")] == [
        ("text", "Switch the breaker off first."),
        ("list", "- Neutral is blue\n- Live is brown"),
    ]
    assert sections[("Installer guide", "Wiring", "Torque")] == [
        ("table", "| Screw | Nm |\n|---|---|\n| M4 | 1.2 |")
    ]


def test_corrupt_docx_is_refused() -> None:
    assert reason_of(b"PK\x03\x04 definitely not a complete zip", "report.docx") == "corrupt"


# --- forum exports ------------------------------------------------------------------------------


def test_forum_json_keeps_question_with_accepted_or_staff_answer() -> None:
    doc = parse_document(DOCS / "community-forum.json")
    assert doc.title == "Kestrel Community"
    blocks = {s.heading_path[0]: s.blocks[0] for s in doc.sections}
    # Unanswered threads and threads with only member replies carry no knowledge.
    assert "Favourite colour scenes?" not in blocks
    assert "Which bulb base does Glow have? Will it fit my old lamp?" not in blocks
    dst = blocks["Schedules run one hour late since the clocks changed"]
    assert dst.kind == "qa"
    assert "summer time" in dst.text and "Accepted answer: Two things fixed it" in dst.text
    assert "Re-creating the schedule did not help" not in dst.text  # other replies are dropped
    outdoor = blocks["Can I use a Glow lamp outdoors or in the bathroom?"]
    assert "Staff answer: Please don't. Glow is rated IP20" in outdoor.text
    dimmer = blocks["Glow buzzing on my dimmer switch"]  # accepted via accepted_answer_id
    assert "Accepted answer: It's not faulty" in dimmer.text


def test_forum_csv_groups_rows_by_thread() -> None:
    csv_text = (
        "thread_id,title,post_type,author_role,is_accepted,body\n"
        "7,Hub LED stays amber,question,member,,My hub ring is amber all day.\n"
        "7,,answer,member,,Have you tried turning it off and on?\n"
        "7,,answer,staff,,Amber means no internet; check the router.\n"
        "9,Lamp colours,question,member,,Can it do purple?\n"
        '9,,answer,member,yes,"Yes, any of 16 million colours."\n'
    )
    doc = parse_document(csv_text.encode(), "forum.csv")
    texts = {s.heading_path: s.blocks[0].text for s in doc.sections}
    assert texts[("Hub LED stays amber",)].endswith(
        "Staff answer: Amber means no internet; check the router."
    )
    assert texts[("Lamp colours",)].endswith("Accepted answer: Yes, any of 16 million colours.")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"threads": [ {"title": "x", ', "invalid_export"),
        (json.dumps({"users": []}).encode(), "invalid_export"),
        (json.dumps([{"title": "Q?", "question": "anyone?", "posts": []}]).encode(), "empty"),
    ],
    ids=["broken-json", "no-thread-list", "no-answers"],
)
def test_bad_forum_exports_are_refused(payload: bytes, reason: str) -> None:
    assert reason_of(payload, "forum.json") == reason


def test_forum_csv_without_thread_column_is_refused() -> None:
    assert reason_of(b"name,comment\nann,hi\n", "forum.csv") == "invalid_export"


# --- documentation sites -----------------------------------------------------------------------


def test_sphinx_page_keeps_content_without_its_chrome(tmp_path: Path) -> None:
    site = build_sphinx_site(tmp_path / "html")
    doc = parse_document(site / "quickstart.html")
    assert doc.title == "Quick start"  # no "¶" anchors in titles or heading paths
    assert ("Quick start", "Your first backup") in [s.heading_path for s in doc.sections]
    for chrome in ("Quick search", "Navigation", "Table of Contents", "Created using Sphinx", "¶"):
        assert chrome not in doc.text
    assert "later runs store only what changed" in doc.text


def test_a_table_of_contents_page_is_navigation_only(tmp_path: Path) -> None:
    site = build_sphinx_site(tmp_path / "html")
    assert reason_of((site / "index.html").read_bytes(), "index.html") == "navigation_only"


def test_mkdocs_page_drops_header_sidebar_and_footer(tmp_path: Path) -> None:
    site = build_mkdocs_site(tmp_path / "site")
    doc = parse_document(site / "tokens" / "index.html")
    assert doc.title == "Tokens" and "Made with Material" not in doc.text
    assert "Search" not in doc.text and "Previous: Home" not in doc.text
    assert "Tokens expire after 90 days." in doc.text


def test_docbook_admonitions_read_as_paragraphs() -> None:
    page = (
        '<html><head><meta name="generator" content="DocBook XSL Stylesheets Vsnapshot"></head>'
        '<body><div class="navheader"><table><tr><td><a href="a.html">Prev</a></td></tr></table></div>'
        '<div class="sect1"><h2 class="title">5.8. Reconciling</h2><p>Match each transaction.</p>'
        '<div class="tip"><table border="0"><tr><td rowspan="2"><img src="tip.png"></td>'
        '<th align="left">Tip</th></tr><tr><td colspan="2"><p>Press Ctrl+P to postpone.</p></td></tr>'
        '</table></div></div><div class="navfooter"><table><tr><td>Up</td><td>Home</td></tr></table>'
        "</div></body></html>"
    )
    doc = parse_document(page.encode(), "acct-reconcile.html")
    blocks = [b for s in doc.sections for b in s.blocks]
    assert [b.kind for b in blocks] == ["text", "text"]
    assert blocks[1].text == "Tip: Press Ctrl+P to postpone."
    assert "Prev" not in doc.text and "Home" not in doc.text


RST = """Pruning archives
================

Use :ref:`prune <borg_prune>` with :option:`--keep-daily` to keep recent archives.

.. note::
   Pruning never touches the newest archive.

Examples
--------

.. code-block:: bash

   quillon prune --keep-daily 7 /srv/repo

.. versionadded:: 1.2
   The ``--keep-within`` option.

.. toctree::
   :maxdepth: 2

   usage/create

+--------+---------+
| Option | Meaning |
+========+=========+
| -d     | daily   |
+--------+---------+
"""


@pytest.mark.parametrize("filename", ["prune.rst", "prune.rst.txt"])
def test_restructuredtext_with_sphinx_roles_and_directives(filename: str) -> None:
    doc = parse_document(RST.encode(), filename)
    assert (doc.format, doc.title) == ("rst", "Pruning archives")
    assert "Use prune with --keep-daily to keep recent archives." in doc.text
    assert "Note: Pruning never touches the newest archive." in doc.text
    assert "Version added 1.2" in doc.text and "usage/create" not in doc.text
    examples = next(s for s in doc.sections if s.heading_path == ("Pruning archives", "Examples"))
    kinds = [b.kind for b in examples.blocks]
    assert kinds[0] == "code" and "quillon prune --keep-daily 7" in examples.blocks[0].text
    assert "| Option | Meaning |" in next(b.text for b in examples.blocks if b.kind == "table")
    for error in ("Unknown", "ERROR", "System Message"):
        assert error not in doc.text


def test_restructuredtext_never_reads_other_files() -> None:
    doc = parse_document(b"Title\n=====\n\n.. include:: /etc/passwd\n\nBody text.\n", "x.rst")
    assert "root:" not in doc.text and "Body text." in doc.text


# --- limits and types ---------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["setup.exe", "sheet.xlsx", "README"])
def test_unsupported_types_are_refused(filename: str) -> None:
    assert reason_of(b"whatever", filename) == "unsupported_type"


@pytest.mark.parametrize("data", [b"", b"   \n\t\n"], ids=["zero-bytes", "whitespace"])
def test_empty_files_are_refused(data: bytes) -> None:
    assert reason_of(data, "empty.md") == "empty"


def test_markdown_with_only_markup_is_empty() -> None:
    assert reason_of(b"# \n\n---\n", "blank.md") == "empty"


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2048)
    with pytest.raises(DocumentError) as info:
        parse_document(big, limits=ParseLimits(max_bytes=1024))
    assert info.value.reason == "too_large" and "over the" in info.value.message


def test_content_hash_identifies_the_bytes() -> None:
    a = parse_document(b"same text", "a.txt")
    b = parse_document(b"same text", "b.txt")
    c = parse_document(b"other text", "a.txt")
    assert a.content_hash == b.content_hash != c.content_hash


def test_missing_file_is_reported_as_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as info:
        parse_document(tmp_path / "gone.md")
    assert info.value.reason == "unreadable"
