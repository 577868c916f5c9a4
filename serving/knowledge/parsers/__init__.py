"""`parse_document`: any supported file → `ParsedDocument`, or a `DocumentError` with a reason code.

Supported: Markdown, HTML, reStructuredText, PDF, plain text, DOCX, and support-forum exports
(JSON / CSV).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path, PurePath

from serving.knowledge.parsers.document import (
    SKIP_REASONS,
    Block,
    BlockKind,
    DocumentError,
    ParsedDocument,
    ParseLimits,
    ReasonCode,
    Section,
)
from serving.knowledge.parsers.docx import parse_docx
from serving.knowledge.parsers.forum import parse_forum_csv, parse_forum_json
from serving.knowledge.parsers.html import declared_charset, parse_html
from serving.knowledge.parsers.markdown import parse_markdown
from serving.knowledge.parsers.pdf import parse_pdf
from serving.knowledge.parsers.rst import parse_rst
from serving.knowledge.parsers.text_decoding import decode_text

__all__ = [
    "SUPPORTED_FORMATS",
    "Block",
    "BlockKind",
    "DocumentError",
    "ParseLimits",
    "ParsedDocument",
    "ReasonCode",
    "SKIP_REASONS",
    "Section",
    "detect_format",
    "document_suffix",
    "expanded_size",
    "parse_document",
]

#: File extension → format name.
SUPPORTED_FORMATS: dict[str, str] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".rst": "rst",
    # Sphinx copies each page's source next to the HTML under this name.
    ".rst.txt": "rst",
    ".pdf": "pdf",
    ".txt": "text",
    ".text": "text",
    ".docx": "docx",
    ".json": "forum_json",
    ".csv": "forum_csv",
}

_DOUBLE_SUFFIXES = tuple(s for s in SUPPORTED_FORMATS if s.count(".") > 1)
DEFAULT_LIMITS = ParseLimits()
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def document_suffix(filename: str) -> str:
    """The extension that decides the format, lower-cased; two-part ones (`.rst.txt`) whole."""
    name = PurePath(filename).name.lower()
    for double in _DOUBLE_SUFFIXES:
        if name.endswith(double) and len(name) > len(double):
            return double
    return PurePath(name).suffix


def detect_format(filename: str) -> str:
    """The format for `filename`, from its extension; `DocumentError("unsupported_type")` if none."""
    suffix = document_suffix(filename)
    fmt = SUPPORTED_FORMATS.get(suffix)
    if fmt is None:
        supported = ", ".join(sorted(SUPPORTED_FORMATS))
        raise DocumentError(
            "unsupported_type",
            f"{filename}: unsupported file type {suffix or '(no extension)'!r}; supported: {supported}",
        )
    return fmt


def expanded_size(path: Path) -> int:
    """What parsing a file will handle: a ZIP-based file's uncompressed size (from its directory,
    nothing decompressed), else its size on disk."""
    size = path.stat().st_size
    if document_suffix(path.name) != ".docx":
        return size
    try:
        with zipfile.ZipFile(path) as archive:
            return max(size, sum(entry.file_size for entry in archive.infolist()))
    except (zipfile.BadZipFile, OSError):
        return size  # the parser says what is wrong with it


def parse_document(
    source: str | Path | bytes,
    filename: str | None = None,
    *,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> ParsedDocument:
    """Parse a file from a path or from bytes (then `filename` names it and picks the format).

    Raises `DocumentError` with a reason code for every file that cannot be ingested: unsupported
    type, too large, empty, binary, wrong encoding, corrupt/encrypted PDF, bad forum export.
    """
    if isinstance(source, bytes):
        if not filename:
            raise ValueError("filename is required when parsing bytes")
        name = filename
        fmt = detect_format(name)
        data = source
    else:
        path = Path(source)
        name = filename or path.name
        fmt = detect_format(name)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DocumentError("unreadable", f"{name}: cannot be read ({exc.strerror})") from exc
        _check_size(size, name, limits)
        data = path.read_bytes()
    _check_size(len(data), name, limits)
    if not data.strip():
        raise DocumentError("empty", f"{name}: the file is empty")

    stem = PurePath(name).name[: -len(document_suffix(name)) or None]
    page_count: int | None = None
    if fmt == "pdf":
        title, sections, page_count = parse_pdf(data, name, stem, limits)
    elif fmt == "docx":
        title, sections = parse_docx(data, name, stem, limits)
    else:
        fallback = declared_charset(data) if fmt == "html" else None
        text = decode_text(
            data, name, max_control_ratio=limits.max_control_ratio, fallback=fallback
        )
        if len(text) > limits.max_chars:
            raise DocumentError(
                "too_much_text",
                f"{name}: {len(text)} characters; the limit is {limits.max_chars}",
            )
        try:
            title, sections = _parse_text_format(fmt, text, name, stem, limits)
        except DocumentError as exc:
            raise DocumentError(exc.reason, exc.message.replace(stem, name, 1)) from None
    if not any(section.blocks for section in sections):
        raise DocumentError("empty", f"{name}: no text content after parsing")
    chars = sum(len(b.text) for section in sections for b in section.blocks)
    if chars > limits.max_chars:
        raise DocumentError(
            "too_much_text", f"{name}: {chars} characters of text; the limit is {limits.max_chars}"
        )
    return ParsedDocument(
        source=name,
        format=fmt,
        title=title,
        sections=sections,
        content_hash=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        page_count=page_count,
    )


def _parse_text_format(
    fmt: str, text: str, name: str, stem: str, limits: ParseLimits
) -> tuple[str, list[Section]]:
    if fmt == "markdown":
        return parse_markdown(text, stem)
    if fmt == "html":
        return parse_html(text, stem)
    if fmt == "rst":
        return parse_rst(text, stem)
    if fmt == "forum_json":
        forum, sections = parse_forum_json(text, name, limits.max_rows)
        return forum or stem, sections
    if fmt == "forum_csv":
        return stem, parse_forum_csv(text, name, limits.max_rows)
    blocks = [Block("text", p.strip()) for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    return stem, [Section(heading_path=(), blocks=blocks)] if blocks else []


def _check_size(size: int, name: str, limits: ParseLimits) -> None:
    if size > limits.max_bytes:
        raise DocumentError(
            "too_large",
            f"{name}: {size / 1_048_576:.1f} MiB is over the {limits.max_bytes / 1_048_576:.1f} MiB limit",
        )
