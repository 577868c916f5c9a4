"""DOCX via python-docx: "Heading N"/"Title" styles give the section path, tables stay whole."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from serving.knowledge.parsers.document import DocumentError, Section, SectionBuilder


def parse_docx(data: bytes, source: str, fallback_title: str) -> tuple[str, list[Section]]:
    """Return (title, sections) for a Word document."""
    try:
        document: DocxDocument = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        raise DocumentError("corrupt", f"{source}: not a readable DOCX file ({exc})") from exc
    builder = SectionBuilder()
    title = (document.core_properties.title or "").strip()
    list_items: list[str] = []

    def flush_list() -> None:
        if list_items:
            builder.block("list", "\n".join(f"- {item}" for item in list_items))
            list_items.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            flush_list()
            builder.block("table", _table(item))
            continue
        assert isinstance(item, Paragraph)
        style = (item.style.name if item.style is not None else "") or ""
        text = item.text.strip()
        if not text:
            continue
        level = _heading_level(style)
        if level is not None:
            flush_list()
            builder.heading(level, text)
            title = title or (text if level <= 1 else "")
        elif style.startswith("List"):
            list_items.append(text)
        else:
            flush_list()
            builder.block("code" if "code" in style.lower() else "text", text)
    flush_list()
    return title or fallback_title, builder.finish()


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 0  # so "Heading 1" sections nest under the document title
    if style.startswith("Heading"):
        number = style.removeprefix("Heading").strip()
        return int(number) if number.isdigit() else 1
    return None


def _table(table: Table) -> str:
    rows: list[str] = []
    for i, row in enumerate(table.rows):
        cells = [" ".join(cell.text.split()).replace("|", "\\|") for cell in row.cells]
        rows.append("| " + " | ".join(cells) + " |")
        if i == 0:
            rows.append("|" + "---|" * len(cells))
    return "\n".join(rows)
