"""Bytes → text for the text-based formats, refusing binary data and undecodable bytes clearly.

We accept UTF-8 (with or without BOM) and UTF-16/32 with a BOM. Anything else is reported rather
than guessed: a silently mis-decoded manual would be indexed as mojibake and cited to customers.
"""

from __future__ import annotations

import codecs

from serving.knowledge.parsers.document import DocumentError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Signatures of common binary formats that end up renamed to .txt/.md/.html.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a ZIP archive (e.g. DOCX/XLSX)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office (OLE) file"),
)

_ALLOWED_CONTROLS = frozenset("\t\n\r\f")


def decode_text(
    data: bytes, source: str, *, max_control_ratio: float = 0.05, fallback: str | None = None
) -> str:
    """Decode `data` as text or raise `DocumentError` ("binary" or "encoding").

    `fallback` is an encoding declared by the file itself (an HTML meta charset); it is tried only
    when UTF-8 fails, so a page saved as windows-1252 with a correct declaration still works.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise DocumentError(
                    "encoding",
                    f"{source}: starts with a {encoding} byte-order mark but {exc.reason}",
                ) from exc
            _reject_control_heavy(text, source, max_control_ratio)
            return text

    head = data[:16]
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DocumentError("binary", f"{source}: this is {what}, not text")
    if b"\x00" in data[:8192]:
        raise DocumentError(
            "binary",
            f"{source}: contains NUL bytes, so it is binary data or UTF-16 without a byte-order "
            "mark; save it as UTF-8",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback:
            try:
                text = data.decode(fallback)
            except (UnicodeDecodeError, LookupError):
                pass
            else:
                _reject_control_heavy(text, source, max_control_ratio)
                return text
        bad = data[exc.start : exc.start + 1].hex()
        raise DocumentError(
            "encoding",
            f"{source}: not valid UTF-8 (byte 0x{bad} at offset {exc.start}); "
            "re-save the file as UTF-8",
        ) from exc
    _reject_control_heavy(text, source, max_control_ratio)
    return text


def _reject_control_heavy(text: str, source: str, max_ratio: float) -> None:
    sample = text[:65536]
    if not sample:
        return
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in _ALLOWED_CONTROLS)
    if controls / len(sample) > max_ratio:
        raise DocumentError(
            "binary",
            f"{source}: {controls} control characters in the first {len(sample)}; binary data",
        )
