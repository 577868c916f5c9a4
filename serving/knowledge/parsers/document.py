"""What a parser produces: a document as ordered sections, each with its heading path and blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["text", "list", "table", "code", "qa"]

#: Reason codes a caller can rely on (they show up in ingest reports and API errors).
ReasonCode = Literal[
    "unsupported_type",
    "unreadable",
    "empty",
    "too_large",
    "binary",
    "encoding",
    "corrupt",
    "encrypted",
    "no_text",
    "invalid_export",
    # What a file becomes, past the limits (a decompression bomb, a huge export):
    "archive_bomb",
    "too_many_entries",
    "too_many_pages",
    "too_much_text",
    "too_many_rows",
    # The parser ran out of its time or memory budget (isolated parsing).
    "parse_timeout",
    "parse_memory",
    # Not a failure: a page of links only (a table of contents, an index), skipped on purpose.
    "navigation_only",
]

#: Reasons that mean "nothing to index here" rather than "this file is broken".
SKIP_REASONS: frozenset[str] = frozenset({"navigation_only"})


class DocumentError(Exception):
    """A file that cannot be ingested, with a stable `reason` code and a message for people."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(message)
        self.reason: ReasonCode = reason
        self.message = message

    def __repr__(self) -> str:
        return f"DocumentError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class Block:
    """One unit of content. Tables, code and Q&A pairs are atomic: the chunker avoids cutting them."""

    kind: BlockKind
    text: str

    @property
    def atomic(self) -> bool:
        return self.kind in ("table", "code", "qa")


@dataclass
class Section:
    """Content under one heading path (e.g. ("Setup", "Wi-Fi")), on one page where pages exist."""

    heading_path: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)
    page: int | None = None


@dataclass
class ParsedDocument:
    """A parsed file. `content_hash` is the sha256 of the raw bytes, so unchanged files can be skipped."""

    source: str
    format: str
    title: str
    sections: list[Section]
    content_hash: str
    size_bytes: int
    page_count: int | None = None

    @property
    def text(self) -> str:
        """All block texts in order, for previews and tests."""
        return "\n\n".join(b.text for s in self.sections for b in s.blocks)


@dataclass(frozen=True)
class ParseLimits:
    """Guards applied before a file is parsed."""

    max_bytes: int = 20 * 1024 * 1024
    #: Share of control characters (other than tab/newline/CR/FF) above which text counts as binary.
    max_control_ratio: float = 0.05
    #: ZIP-based formats (DOCX): what the archive's entries add up to, uncompressed.
    max_expanded_bytes: int = 64 * 1024 * 1024
    #: ... how many entries it may have,
    max_archive_entries: int = 2000
    #: ... and how much any entry over 1 MiB may expand (XML compresses ~10-20x; a bomb, 1000x).
    max_compression_ratio: float = 100.0
    #: PDF pages.
    max_pages: int = 2000
    #: Characters of text a document may yield (any format).
    max_chars: int = 5_000_000
    #: Rows (posts) of a forum export.
    max_rows: int = 200_000


class SectionBuilder:
    """Collects blocks under the current heading path; parsers feed it headings and blocks in order."""

    def __init__(self, page: int | None = None) -> None:
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._current = Section(heading_path=(), page=page)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._path)

    def heading(self, level: int, title: str) -> None:
        """Start a new section; deeper levels nest under the nearest shallower heading."""
        title = " ".join(title.split())
        if not title:
            return
        self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))
        self._current = Section(heading_path=self.path, page=self._current.page)

    def block(self, kind: BlockKind, text: str) -> None:
        text = text.strip("\n") if kind in ("code", "table") else text.strip()
        if text.strip():
            self._current.blocks.append(Block(kind, text))

    def new_page(self, page: int) -> None:
        self._flush()
        self._current = Section(heading_path=self.path, page=page)

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections

    def _flush(self) -> None:
        if self._current.blocks:
            self.sections.append(self._current)
        self._current = Section(heading_path=self.path, page=self._current.page)
