"""Text PDFs via pypdf: one section per page (page numbers kept), heading path from the outline."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

from serving.knowledge.parsers.document import DocumentError, ParseLimits, Section, SectionBuilder

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def parse_pdf(
    data: bytes, source: str, fallback_title: str, limits: ParseLimits | None = None
) -> tuple[str, list[Section], int]:
    """Return (title, sections, page_count); raise `DocumentError` for corrupt, encrypted or
    image-only PDFs, and for more pages or text than `limits` allow (checked as it goes)."""
    limits = limits or ParseLimits()
    if not data.lstrip()[:5] == b"%PDF-":
        raise DocumentError("corrupt", f"{source}: not a PDF (no %PDF header)")
    # pypdf logs every recoverable oddity as a warning; a broken file surfaces as an exception below.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt_or_raise(reader, source)
        if len(reader.pages) > limits.max_pages:
            raise DocumentError(
                "too_many_pages",
                f"{source}: {len(reader.pages)} pages; the limit is {limits.max_pages}",
            )
        pages = list(reader.pages)
        outline = _outline_by_page(reader)
        builder = SectionBuilder()
        chars = 0
        for number, page in enumerate(pages, start=1):
            builder.new_page(number)
            text = page.extract_text() or ""
            chars += len(text)
            if chars > limits.max_chars:
                raise DocumentError(
                    "too_much_text",
                    f"{source}: more than {limits.max_chars} characters of text (by page {number})",
                )
            _add_page(builder, text, outline.get(number, []))
        sections = builder.finish()
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentError:
        raise
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DocumentError("corrupt", f"{source}: damaged PDF ({exc})") from exc
    if not sections:
        raise DocumentError(
            "no_text",
            f"{source}: no extractable text (a scanned or image-only PDF needs OCR first)",
        )
    return str(meta_title).strip() or fallback_title, sections, len(pages)


def _add_page(builder: SectionBuilder, text: str, entries: list[tuple[int, str]]) -> None:
    """Add a page's text, starting each outline entry's section at the line that shows its title
    (entries whose title is not found start at the top of the page)."""
    lines = text.splitlines()
    keys = [_key(line) for line in lines]
    placed: dict[int, tuple[int, str]] = {}
    cursor = 0
    for entry in entries:
        try:
            at = keys.index(_key(entry[1]), cursor)
        except ValueError:
            continue
        placed[at] = entry
        cursor = at + 1
    for level, title in (e for e in entries if e not in placed.values()):
        builder.heading(level, title)
    paragraph: list[str] = []

    def flush() -> None:
        for chunk in _PARAGRAPH_BREAK.split("\n".join(paragraph)):
            builder.block("text", _join_lines(chunk))
        paragraph.clear()

    for i, line in enumerate(lines):
        if i in placed:
            flush()
            builder.heading(*placed[i])
        else:
            paragraph.append(line)
    flush()


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _decrypt_or_raise(reader: PdfReader, source: str) -> None:
    # Many PDFs are "encrypted" only with an owner password (empty user password): readable as is.
    try:
        if reader.decrypt(""):
            return
    except (DependencyError, FileNotDecryptedError, NotImplementedError) as exc:
        raise DocumentError(
            "encrypted", f"{source}: the PDF is encrypted ({exc}); upload an unprotected copy"
        ) from exc
    raise DocumentError(
        "encrypted", f"{source}: the PDF is password-protected; upload an unprotected copy"
    )


def _outline_by_page(reader: PdfReader) -> dict[int, list[tuple[int, str]]]:
    """Map 1-based page number → outline entries (level, title) that start on it."""
    result: dict[int, list[tuple[int, str]]] = {}

    def visit(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                visit(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
            except (PdfReadError, KeyError, ValueError, TypeError, AttributeError):
                continue  # an outline entry pointing nowhere is not worth failing the file
            if page is not None and page >= 0:
                result.setdefault(page + 1, []).append((level, str(item.title)))

    try:
        visit(reader.outline, 1)
    except PdfReadError:
        return {}
    return result


def _join_lines(paragraph: str) -> str:
    # PDF text comes with hard line breaks at the layout width; rejoin them, keeping hyphenation.
    lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
    out = ""
    for line in lines:
        if out.endswith("-") and line[:1].islower():
            out = out[:-1] + line
        else:
            out = f"{out} {line}" if out else line
    return out
