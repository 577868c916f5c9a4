"""Structure-aware chunking: chunks never cross a section (so each has one heading path and page),
prose is split at sentence boundaries with overlap, and tables, code and Q&A pairs are kept whole
unless a single one is larger than a chunk (then it is split by lines, tables repeating their header).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from serving.knowledge.parsers import Block, ParsedDocument

LengthFn = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")
_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut. `size` and `overlap` are counted in `unit` (characters, or tokens of
    the embedder's tokenizer, which keeps chunks within the model's input limit)."""

    size: int = 600
    overlap: int = 80
    unit: Literal["chars", "tokens"] = "chars"

    def __post_init__(self) -> None:
        if self.size < 50:
            raise ValueError(f"chunk size must be at least 50 {self.unit}, got {self.size}")
        if not 0 <= self.overlap < self.size // 2:
            raise ValueError(f"overlap must be in [0, size/2), got {self.overlap}")

    @property
    def signature(self) -> str:
        """Stable string stored with chunks: a changed config re-chunks unchanged files."""
        return f"{self.unit}:{self.size}:{self.overlap}"


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage with where it came from."""

    chunk_id: str
    doc_id: str
    index: int
    text: str
    heading_path: tuple[str, ...]
    page: int | None
    title: str
    block_kinds: tuple[str, ...]

    @property
    def embedding_text(self) -> str:
        """What is embedded: the heading context and the text, so a passage that says "press it
        for 5 s" is still found by a question about resetting the hub."""
        path = self.heading_path
        context = path if path and path[0] == self.title else (self.title, *path)
        return " > ".join(p for p in context if p) + _SEPARATOR + self.text

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.embedding_text.encode()).hexdigest()


@dataclass(frozen=True)
class _Piece:
    text: str
    length: int
    prose: bool
    #: Put before this piece when it follows another one in a chunk: a sentence continuing its
    #: paragraph joins with a space, a new block with a blank line.
    joiner: str = _SEPARATOR


def chunk_document(
    document: ParsedDocument,
    doc_id: str,
    config: ChunkingConfig = ChunkingConfig(),
    length: LengthFn | None = None,
) -> list[Chunk]:
    """Cut `document` into chunks with ids derived from `doc_id` and each chunk's content.

    `length` measures text in `config.unit`; it defaults to `len` (and is required for tokens).
    Identical content gives identical ids, so re-ingesting an edited file keeps the unchanged chunks.
    """
    if length is None:
        if config.unit == "tokens":
            raise ValueError("a token-length function is required for unit='tokens'")
        length = len
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for section in document.sections:
        for text, kinds in _pack(section.blocks, config, length):
            draft = Chunk(
                "",
                doc_id,
                len(chunks),
                text,
                section.heading_path,
                section.page,
                document.title,
                kinds,
            )
            # Repeated identical passages (boilerplate) still need distinct ids.
            key = f"{section.page}\x00{draft.embedding_text}"
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            digest = hashlib.sha256(f"{doc_id}\x00{key}\x00{occurrence}".encode()).hexdigest()[:24]
            chunks.append(dataclasses.replace(draft, chunk_id=f"{doc_id}:{digest}"))
    return chunks


def _pack(
    blocks: list[Block], config: ChunkingConfig, length: LengthFn
) -> Iterator[tuple[str, tuple[str, ...]]]:
    # Joiner lengths only count for characters; in tokens they are noise next to the limit.
    def cost(piece: _Piece, first: bool) -> int:
        return piece.length + (0 if first or config.unit == "tokens" else len(piece.joiner))

    current: list[_Piece] = []
    kinds: list[str] = []
    used = 0
    for block in blocks:
        for piece in _pieces(block, config.size, length):
            if current and used + cost(piece, False) > config.size:
                yield _join(current), tuple(dict.fromkeys(kinds))
                current, kinds = _overlap(current, config, length), []
                used = current[0].length if current else 0
                if current and used + cost(piece, False) > config.size:
                    current, used = [], 0
            used += cost(piece, not current)
            current.append(piece)
            kinds.append(block.kind)
    if current:
        yield _join(current), tuple(dict.fromkeys(kinds))


def _join(pieces: list[_Piece]) -> str:
    return pieces[0].text + "".join(p.joiner + p.text for p in pieces[1:])


def _pieces(block: Block, size: int, length: LengthFn) -> list[_Piece]:
    """A block as pieces that each fit in `size`: whole when possible, else prose by sentence and
    tables/code/lists by line."""
    n = length(block.text)
    prose = not block.atomic and block.kind != "list"
    if n <= size:
        return [_Piece(block.text, n, prose)]
    if block.kind == "table":
        return _split_lines(block.text.split("\n"), size, length, header=block.text.split("\n")[:2])
    if block.kind in ("code", "list"):
        return _split_lines(block.text.split("\n"), size, length, header=[])
    sentences = [s for s in _SENTENCE_END.split(block.text) if s.strip()]
    parts = [
        part
        for s in sentences
        for part in (_hard_split(s, size, length) if length(s) > size else [s])
    ]
    return [_Piece(t, length(t), True, _SEPARATOR if i == 0 else " ") for i, t in enumerate(parts)]


def _split_lines(lines: list[str], size: int, length: LengthFn, header: list[str]) -> list[_Piece]:
    fence = lines[0] if lines and lines[0].startswith("```") else None
    body = lines[1:-1] if fence and lines[-1].startswith("```") else lines
    if header:
        body = lines[len(header) :]
    prefix = header or ([fence] if fence else [])
    suffix = ["```"] if fence else []
    budget = size - length("\n".join(prefix + suffix)) - 2
    parts = _greedy(body, max(budget, size // 2), length, "\n")
    return [_piece("\n".join(prefix + [p] + suffix), length) for p in parts]


def _piece(text: str, length: LengthFn) -> _Piece:
    return _Piece(text, length(text), False)


def _greedy(units: list[str], size: int, length: LengthFn, joiner: str) -> list[str]:
    """Join consecutive units up to `size`; a unit longer than `size` is cut by words."""
    out: list[str] = []
    buf: list[str] = []
    used = 0
    for unit in units:
        n = length(unit)
        if n > size:
            if buf:
                out.append(joiner.join(buf))
                buf, used = [], 0
            out.extend(_hard_split(unit, size, length))
            continue
        if buf and used + len(joiner) + n > size:
            out.append(joiner.join(buf))
            buf, used = [], 0
        buf.append(unit)
        used += (len(joiner) if used else 0) + n
    if buf:
        out.append(joiner.join(buf))
    return out


def _hard_split(text: str, size: int, length: LengthFn) -> list[str]:
    words = text.split(" ")
    out: list[str] = []
    buf = ""
    for word in words:
        candidate = f"{buf} {word}" if buf else word
        if buf and length(candidate) > size:
            out.append(buf)
            buf = word
        else:
            buf = candidate
        while length(buf) > size:  # a single "word" longer than a chunk (a URL, base64)
            cut = max(1, len(buf) * size // max(length(buf), 1))
            out.append(buf[:cut])
            buf = buf[cut:]
    if buf:
        out.append(buf)
    return out


def _overlap(previous: list[_Piece], config: ChunkingConfig, length: LengthFn) -> list[_Piece]:
    """The tail of the previous chunk to repeat at the start of the next one: trailing sentences
    of prose only (repeating half a table would mislead more than help)."""
    if config.overlap == 0:
        return []
    tail: list[str] = []
    used = 0
    for piece in reversed(previous):
        if not piece.prose:
            break
        for sentence in reversed([s for s in _SENTENCE_END.split(piece.text) if s.strip()]):
            n = length(sentence)
            if used + n > config.overlap:
                break
            tail.insert(0, sentence)
            used += n + 1
        else:
            continue
        break
    if not tail and previous[-1].prose:
        # The last sentence alone is longer than the overlap: repeat its last words instead.
        words = previous[-1].text.split(" ")
        while words and length(" ".join([words[-1], *tail])) <= config.overlap:
            tail.insert(0, words.pop())
    text = " ".join(tail)
    return [_Piece(text, length(text), True)] if text else []


def heading_path_json(path: tuple[str, ...]) -> str:
    """Heading paths are stored as JSON in Chroma metadata (which has no list values)."""
    return json.dumps(list(path), ensure_ascii=False)
