"""DOCX via python-docx: "Heading N"/"Title" styles give the section path, tables stay whole."""

from __future__ import annotations

import io
import zipfile

import docx
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from serving.knowledge.parsers.document import (
    DocumentError,
    ParseLimits,
    Section,
    SectionBuilder,
)


def check_archive(data: bytes, source: str, limits: ParseLimits) -> int:
    """The archive's expanded size, read from its directory (nothing is decompressed); raises
    `DocumentError` for an archive over the limits. The sizes in the directory are what zipfile
    lets an entry expand to (it stops at the declared size), so they are safe to trust."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise DocumentError("corrupt", f"{source}: not a readable DOCX file ({exc})") from exc
    if len(entries) > limits.max_archive_entries:
        raise DocumentError(
            "too_many_entries",
            f"{source}: {len(entries)} entries in the archive; the limit is "
            f"{limits.max_archive_entries}",
        )
    expanded = sum(e.file_size for e in entries)
    if expanded > limits.max_expanded_bytes:
        raise DocumentError(
            "archive_bomb",
            f"{source}: expands to {expanded / 1_048_576:.1f} MiB; the limit is "
            f"{limits.max_expanded_bytes / 1_048_576:.1f} MiB",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > 1_048_576 and ratio > limits.max_compression_ratio:
            raise DocumentError(
                "archive_bomb",
                f"{source}: {entry.filename} expands {ratio:.0f}x "
                f"({entry.compress_size} bytes to {entry.file_size / 1_048_576:.1f} MiB): "
                "a decompression bomb",
            )
    return expanded


def parse_docx(
    data: bytes, source: str, fallback_title: str, limits: ParseLimits | None = None
) -> tuple[str, list[Section]]:
    """Return (title, sections) for a Word document (its archive checked against `limits` first)."""
    check_archive(data, source, limits or ParseLimits())
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
