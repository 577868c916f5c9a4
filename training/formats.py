"""Training rows in and out of the file formats trainers read (LLaMA-Factory, Axolotl, OpenAI).

This module owns the mapping between a `Row` and one record of each format, and the three file
types a record lives in: `jsonl` (one object per line), `json` (one array of objects) and `csv` (a
header row; nested fields are JSON text in their column). Import reads a file as a stream, reports
each bad line with its number and reason and keeps the rest; a problem with the whole file raises
`FormatError`. Export refuses, with a reason, a row its format cannot carry rather than dropping
part of it, and replaces the target file atomically.

What each format cannot carry is listed in `FORMATS`. In short: `alpaca` carries everything;
`dolly` has no system prompt or earlier turns (such rows are refused); the four others (`orca`,
`sharegpt`, `openai`, `prompt_completion`) fold the input into the user message (as
`Row.user_message` does, so an import gives back the same `messages()`) and have no place for the
category, which is metadata a trainer never sees: it is left out. `orca` and `prompt_completion`
hold one exchange (earlier turns are refused), `prompt_completion` has no system prompt (refused).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from pydantic import ValidationError

from training.rows import Row, Turn


class Format(StrEnum):
    ALPACA = "alpaca"
    DOLLY = "dolly"
    ORCA = "orca"
    SHAREGPT = "sharegpt"
    OPENAI = "openai"
    PROMPT_COMPLETION = "prompt_completion"


FORMATS: dict[Format, str] = {
    Format.ALPACA: (
        '{"instruction", "input", "output"} plus "system", "history" ([[user, assistant], ...]) '
        'and "category" when set (LLaMA-Factory alpaca). Carries every field of a row.'
    ),
    Format.DOLLY: (
        '{"instruction", "context", "response", "category"} (databricks-dolly-15k). The input is the '
        "context. No system prompt, no earlier turns: rows with either are refused on export."
    ),
    Format.ORCA: (
        '{"system_prompt", "question", "response"} (OpenOrca; an "id" is ignored). The question is '
        "the instruction and input joined by a blank line. No earlier turns (refused), no category "
        "(left out)."
    ),
    Format.SHAREGPT: (
        '{"conversations": [{"from": "system"|"human"|"gpt", "value"}]} (LLaMA-Factory / Axolotl '
        'sharegpt). Export writes the system prompt as a first "system" turn (both trainers read '
        'it); import also takes a top-level "system" and "user"/"assistant" turns. The last human '
        "turn is the instruction and input joined by a blank line. No category (left out)."
    ),
    Format.OPENAI: (
        '{"messages": [{"role": "system"|"user"|"assistant", "content"}]} (OpenAI chat '
        "fine-tuning). The last user message is the instruction and input joined by a blank line. "
        "No category (left out)."
    ),
    Format.PROMPT_COMPLETION: (
        '{"prompt", "completion"}: the user message (instruction and input joined by a blank line) '
        "and the output. No system prompt, no earlier turns (refused), no category (left out)."
    ),
}

FILE_TYPES = ("jsonl", "json", "csv")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}

# Format detection from a record's keys (or a csv header): the first signature whose keys are all
# present wins, so the chat shapes, which are unambiguous, are tried first.
_SIGNATURES: tuple[tuple[frozenset[str], Format], ...] = (
    (frozenset({"conversations"}), Format.SHAREGPT),
    (frozenset({"messages"}), Format.OPENAI),
    (frozenset({"system_prompt", "question"}), Format.ORCA),
    (frozenset({"question", "response"}), Format.ORCA),
    (frozenset({"instruction", "response"}), Format.DOLLY),
    (frozenset({"prompt", "completion"}), Format.PROMPT_COMPLETION),
    (frozenset({"instruction", "output"}), Format.ALPACA),
)
_KNOWN_SHAPES = (
    "alpaca (instruction, output), dolly (instruction, response), orca (question, response), "
    "sharegpt (conversations), openai (messages), prompt_completion (prompt, completion)"
)

# The columns of a csv file per format, in order (export writes them all, empty cells included).
_CSV_COLUMNS: dict[Format, tuple[str, ...]] = {
    Format.ALPACA: ("instruction", "input", "output", "system", "history", "category"),
    Format.DOLLY: ("instruction", "context", "response", "category"),
    Format.ORCA: ("system_prompt", "question", "response"),
    Format.SHAREGPT: ("conversations",),
    Format.OPENAI: ("messages",),
    Format.PROMPT_COMPLETION: ("prompt", "completion"),
}
# The columns import needs when the format is given (a detected format has them by definition).
_CSV_REQUIRED: dict[Format, tuple[str, ...]] = {
    Format.ALPACA: ("instruction", "output"),
    Format.DOLLY: ("instruction", "response"),
    Format.ORCA: ("question", "response"),
    Format.SHAREGPT: ("conversations",),
    Format.OPENAI: ("messages",),
    Format.PROMPT_COMPLETION: ("prompt", "completion"),
}
# The csv column each format holds as JSON text.
_CSV_NESTED = {
    Format.ALPACA: "history",
    Format.SHAREGPT: "conversations",
    Format.OPENAI: "messages",
}
# A passage in a csv cell can exceed the csv module's default 128 KiB field limit; 2**31 - 1 is the
# largest value every platform's C long takes.
_CSV_FIELD_LIMIT = 2**31 - 1

_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
}
_SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}
_OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}


class FormatError(ValueError):
    """A whole file cannot be read as asked, or a row cannot be written in a format."""


@dataclass(frozen=True)
class LineError:
    """A record that was not imported: `line` is the 1-based line in a jsonl or csv file (for csv,
    the line the record starts on; the header is line 1), or the 1-based element of a json array."""

    line: int
    reason: str


@dataclass(frozen=True)
class Refusal:
    """A row that was not exported: `index` is its 0-based position in the rows given."""

    index: int
    reason: str


@dataclass
class ImportResult:
    """What `read_rows` got: each row with its line, each line that held none, and what the file
    was read as."""

    rows: list[tuple[int, Row]]
    errors: list[LineError]
    format: Format
    file_type: str


@dataclass
class WriteResult:
    """What `write_rows` wrote: the count, and each row it refused with the reason."""

    written: int
    refused: list[Refusal]
    format: Format
    file_type: str


# --- records <-> rows ---------------------------------------------------------------------------


def detect_format(keys: Iterable[str]) -> Format:
    """The format whose required keys are all among `keys` (a record's keys or a csv header)."""
    present = frozenset(keys)
    for signature, fmt in _SIGNATURES:
        if signature <= present:
            return fmt
    raise FormatError(
        f"cannot tell the format from the keys {sorted(present)}; known formats: {_KNOWN_SHAPES}; "
        "or give the format"
    )


def record_of(row: Row, format: Format) -> dict[str, Any]:
    """`row` as one record of `format`; `FormatError` (with the reason) when the format cannot
    carry it."""
    fmt = Format(format)
    if fmt is Format.ALPACA:
        record: dict[str, Any] = {
            "instruction": row.instruction,
            "input": row.input,
            "output": row.output,
        }
        if row.system:
            record["system"] = row.system
        if row.history:
            turns = row.history
            record["history"] = [
                [turns[i].content, turns[i + 1].content] for i in range(0, len(turns), 2)
            ]
        if row.category:
            record["category"] = row.category
        return record
    if fmt is Format.SHAREGPT:
        return {
            "conversations": [
                {"from": _SHAREGPT_NAMES[m["role"]], "value": m["content"]} for m in row.messages()
            ]
        }
    if fmt is Format.OPENAI:
        return {"messages": row.messages()}
    # The remaining formats hold one exchange, and only orca has a system prompt.
    cannot = [f"{len(row.history)} earlier turns"] if row.history else []
    if row.system and fmt is not Format.ORCA:
        cannot.insert(0, "a system prompt")
    if cannot:
        others = "alpaca, sharegpt or openai" if row.history else "alpaca, orca, sharegpt or openai"
        raise FormatError(
            f"{fmt} cannot carry {' and '.join(cannot)}, which this row has; export it as {others}"
        )
    if fmt is Format.ORCA:
        return {"system_prompt": row.system, "question": row.user_message(), "response": row.output}
    if fmt is Format.DOLLY:
        return {
            "instruction": row.instruction,
            "context": row.input,
            "response": row.output,
            "category": row.category,
        }
    return {"prompt": row.user_message(), "completion": row.output}


def row_of(record: Mapping[str, Any], format: Format) -> Row:
    """The row one record of `format` holds; `ValueError` with a readable reason when it holds
    none (a missing key, a wrong type, an empty instruction, a broken conversation)."""
    try:
        return _PARSERS[Format(format)](record)
    except ValidationError as e:  # a subclass of ValueError: re-raised with a readable message
        raise ValueError(
            "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
                for err in e.errors()
            )
        ) from None


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _text(record: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    """A string field; an optional one may be missing or null (read as empty)."""
    value = record.get(key)
    if isinstance(value, str):
        return value
    if value is None:
        if not required:
            return ""
        raise ValueError(f"{key!r} has no value" if key in record else f"missing {key!r}")
    raise ValueError(f"{key!r} must be a string, got {_kind(value)}")


def _not_blank(text: str, what: str) -> str:
    if not text.strip():
        raise ValueError(f"{what} is empty")
    return text


def _pairs(value: Any) -> tuple[Turn, ...]:
    """LLaMA-Factory's alpaca history: [[user, assistant], ...]."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"'history' must be a list of [user, assistant] pairs, got {_kind(value)}")
    turns: list[Turn] = []
    for i, pair in enumerate(value, 1):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)
        ):
            raise ValueError(f"history item {i} must be a [user, assistant] pair of strings")
        # The shape is checked just above: constructing without validation is safe and cheaper.
        turns.append(Turn.model_construct(role="user", content=pair[0]))
        turns.append(Turn.model_construct(role="assistant", content=pair[1]))
    return tuple(turns)


def _alpaca(record: Mapping[str, Any]) -> Row:
    return Row(
        system=_text(record, "system"),
        history=_pairs(record.get("history")),
        instruction=_not_blank(_text(record, "instruction", required=True), "'instruction'"),
        input=_text(record, "input"),
        output=_text(record, "output", required=True),
        category=_text(record, "category"),
    )


def _dolly(record: Mapping[str, Any]) -> Row:
    return Row(
        instruction=_not_blank(_text(record, "instruction", required=True), "'instruction'"),
        input=_text(record, "context"),
        output=_text(record, "response", required=True),
        category=_text(record, "category"),
    )


def _orca(record: Mapping[str, Any]) -> Row:
    return Row(
        system=_text(record, "system_prompt"),
        instruction=_not_blank(_text(record, "question", required=True), "'question'"),
        output=_text(record, "response", required=True),
    )


def _prompt_completion(record: Mapping[str, Any]) -> Row:
    if isinstance(record.get("prompt"), list):
        raise ValueError(
            "'prompt' is a list of messages (conversational prompt/completion); "
            "convert it to the openai format"
        )
    return Row(
        instruction=_not_blank(_text(record, "prompt", required=True), "'prompt'"),
        output=_text(record, "completion", required=True),
    )


def _conversation(
    record: Mapping[str, Any],
    key: str,
    role_key: str,
    content_key: str,
    roles: Mapping[str, str],
    names: tuple[str, str],
    system: str = "",
) -> Row:
    """A chat record: an optional leading system turn (or a `system` given from elsewhere in the
    record), then user and assistant turns alternating, ending with the assistant's answer."""
    items = record.get(key)
    if not isinstance(items, list):
        if items is None:
            raise ValueError(f"{key!r} has no value" if key in record else f"missing {key!r}")
        raise ValueError(f"{key!r} must be a list of turns, got {_kind(items)}")
    user, assistant = names  # what the format calls the two sides, for messages
    turns: list[str] = []  # the contents; the roles alternate, user first
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{key} item {i} must be an object, got {_kind(item)}")
        name = item.get(role_key)
        role = roles.get(name) if isinstance(name, str) else None
        if role is None:
            raise ValueError(
                f"{key} item {i} has {role_key} {name!r}; expected one of {', '.join(roles)}"
            )
        content = item.get(content_key)
        if not isinstance(content, str):
            raise ValueError(
                f"{key} item {i}: {content_key!r} must be a string, got {_kind(content)}"
            )
        if role == "system":
            if i != 1:
                raise ValueError(f"{key} item {i} is a system turn; only the first turn may be one")
            if system and content != system:
                raise ValueError(
                    "two different system prompts: a top-level 'system' and a system turn"
                )
            system = content
            continue
        expected = "user" if len(turns) % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"{key} item {i} is from {name}; turns must alternate, {user} first")
        turns.append(content)
    if not turns:
        raise ValueError(f"{key!r} holds no {user} turn")
    if len(turns) % 2:
        raise ValueError(f"{key!r} ends with a {user} turn; the {assistant} answer is missing")
    # Roles were checked turn by turn above: constructing without validation is safe.
    history = tuple(
        Turn.model_construct(role="user" if i % 2 == 0 else "assistant", content=content)
        for i, content in enumerate(turns[:-2])
    )
    return Row(
        system=system,
        history=history,
        instruction=_not_blank(turns[-2], f"the last {user} turn"),
        output=turns[-1],
    )


def _sharegpt(record: Mapping[str, Any]) -> Row:
    return _conversation(
        record,
        "conversations",
        "from",
        "value",
        _SHAREGPT_ROLES,
        ("human", "gpt"),
        system=_text(record, "system"),  # LLaMA-Factory's top-level system prompt
    )


def _openai(record: Mapping[str, Any]) -> Row:
    return _conversation(
        record, "messages", "role", "content", _OPENAI_ROLES, ("user", "assistant")
    )


_PARSERS: dict[Format, Callable[[Mapping[str, Any]], Row]] = {
    Format.ALPACA: _alpaca,
    Format.DOLLY: _dolly,
    Format.ORCA: _orca,
    Format.SHAREGPT: _sharegpt,
    Format.OPENAI: _openai,
    Format.PROMPT_COMPLETION: _prompt_completion,
}


# --- files --------------------------------------------------------------------------------------

_Parsed = tuple[int, Row] | LineError
_Record = tuple[int, dict[str, Any]] | LineError


def read_rows(
    path: Path, *, format: Format | str | None = None, file_type: str | None = None
) -> ImportResult:
    """Every row of the file at `path` with its line, and every line that holds none with the
    reason. The format is detected from the first record's keys (a csv file's header) and the file
    type from the extension unless given. `FormatError` when the file as a whole is unreadable."""
    kind = _file_type(path, file_type)
    rows: list[tuple[int, Row]] = []
    errors: list[LineError] = []
    detected: Format | None = None  # the first item _scan yields
    for item in _scan(path, format, kind):
        if isinstance(item, Format):
            detected = item
        elif isinstance(item, LineError):
            errors.append(item)
        else:
            rows.append(item)
    assert detected is not None
    return ImportResult(rows=rows, errors=errors, format=detected, file_type=kind)


def iter_rows(
    path: Path, *, format: Format | str | None = None, file_type: str | None = None
) -> Iterator[_Parsed]:
    """`read_rows` as a stream, in file order, so a large file is never held whole (except a
    `json` file, which is one document). `FormatError` is raised when iteration reaches it."""
    for item in _scan(path, format, _file_type(path, file_type)):
        if not isinstance(item, Format):
            yield item


def write_rows(
    rows: Iterable[Row], path: Path, *, format: Format | str, file_type: str | None = None
) -> WriteResult:
    """Write `rows` to `path` as `format`, refusing (with the reason) each row the format cannot
    carry. The file is written beside its target and moved into place only when complete, so a
    failed export leaves no partial file (and an existing one untouched). A replaced file keeps its
    permissions; a new one is readable by its owner only, as the rows may hold customer data."""
    fmt = _format(format)
    kind = _file_type(path, file_type)
    refused: list[Refusal] = []
    written = 0
    encode = _encoder(kind, fmt)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if kind == "csv":
                f.write(_csv_encoder()(_CSV_COLUMNS[fmt]))
            elif kind == "json":
                f.write(b"[")
            for index, row in enumerate(rows):
                try:
                    data = encode(record_of(row, fmt))
                except FormatError as e:
                    refused.append(Refusal(index, str(e)))
                    continue
                except (orjson.JSONEncodeError, UnicodeEncodeError) as e:
                    # A lone surrogate in a string: no UTF-8 file can hold it.
                    refused.append(Refusal(index, f"the row's text is not valid Unicode ({e})"))
                    continue
                if kind == "json":
                    # One element per line: element n is on line n + 1.
                    f.write(b"\n" if written == 0 else b",\n")
                f.write(data)
                written += 1
            if kind == "json":
                f.write(b"\n]\n" if written else b"]\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return WriteResult(written=written, refused=refused, format=fmt, file_type=kind)


def _format(value: Format | str) -> Format:
    try:
        return Format(value)
    except ValueError:
        known = ", ".join(Format)
        raise FormatError(f"unknown format {value!r}; known formats: {known}") from None


def _file_type(path: Path, given: str | None) -> str:
    if given is not None:
        if given not in FILE_TYPES:
            raise FormatError(f"unknown file type {given!r}; known: {', '.join(FILE_TYPES)}")
        return given
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise FormatError(
            f"{path}: cannot tell the file type from the extension {path.suffix!r}; use "
            f"{', '.join(_EXTENSIONS)} or give the file type ({', '.join(FILE_TYPES)})"
        )
    return kind


def _scan(path: Path, format: Format | str | None, kind: str) -> Iterator[Format | _Parsed]:
    """The format first (given or detected), then each row or line error in file order."""
    fmt = None if format is None else _format(format)
    if kind == "csv":
        yield from _scan_csv(path, fmt)
        return
    with path.open("rb") as f:
        records = _jsonl_records(f, path) if kind == "jsonl" else _json_records(f, path)
        # Detection needs the first record; the line errors before it are held back meanwhile.
        held: list[LineError] = []
        first: tuple[int, dict[str, Any]] | None = None
        if fmt is None:
            for item in records:
                if isinstance(item, LineError):
                    held.append(item)
                else:
                    first = item
                    break
            if first is None:
                if not held:
                    raise FormatError(f"{path} holds no records")
                raise FormatError(
                    f"{path}: no valid record to tell the format from "
                    f"(line {held[0].line}: {held[0].reason})"
                )
            try:
                fmt = detect_format(first[1])
            except FormatError as e:
                raise FormatError(f"{path} (line {first[0]}): {e}") from None
        yield fmt
        yield from held
        if first is not None:
            yield _parsed(first, fmt)
        for item in records:
            yield item if isinstance(item, LineError) else _parsed(item, fmt)


def _parsed(item: tuple[int, dict[str, Any]], fmt: Format) -> _Parsed:
    line, record = item
    try:
        return line, row_of(record, fmt)
    except ValueError as e:
        return LineError(line, str(e))


def _utf8_error(path: Path, data: bytes, line: int | None = None) -> FormatError | None:
    """The error to raise when `data` (a line, or the whole file) is not UTF-8, else None."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"line {line}, " if line is not None else ""
        return FormatError(
            f"{path} is not UTF-8 text ({where}byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        )
    return None


def _jsonl_records(f: BinaryIO, path: Path) -> Iterator[_Record]:
    seen = False
    for line, raw in enumerate(f, 1):
        if line == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        if not raw.strip():
            continue
        seen = True
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            # orjson refuses bytes that are not UTF-8: then the file, not the line, is wrong.
            if (error := _utf8_error(path, raw, line)) is not None:
                raise error from None
            yield LineError(line, f"invalid JSON: {e}")
            continue
        if isinstance(value, dict):
            yield line, value
        else:
            yield LineError(line, f"expected a JSON object, got {_kind(value)}")
    if not seen:
        raise FormatError(f"{path} is empty")


def _json_records(f: BinaryIO, path: Path) -> Iterator[_Record]:
    data = f.read().removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        raise FormatError(f"{path} is empty")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if (error := _utf8_error(path, data)) is not None:
            raise error from None
        raise FormatError(
            f"{path} is not one JSON document ({e}); a .json file holds one array of objects "
            "(for one object per line, use .jsonl or file type jsonl)"
        ) from None
    if not isinstance(value, list):
        raise FormatError(f"{path} holds a JSON {_kind(value)}; expected an array of objects")
    for index, element in enumerate(value, 1):
        if isinstance(element, dict):
            yield index, element
        else:
            yield LineError(index, f"expected a JSON object, got {_kind(element)}")


def _scan_csv(path: Path, fmt: Format | None) -> Iterator[Format | _Parsed]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    # utf-8-sig: a spreadsheet's byte-order mark is not part of the first column's name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        end = 0  # the last physical line read so far
        try:
            for fields in reader:
                start, end = end + 1, reader.line_num
                if not fields:
                    continue  # a blank line
                if header is None:
                    header = [name.strip() for name in fields]
                    fmt = _csv_format(path, header, fmt)
                    yield fmt
                    continue
                assert fmt is not None
                if len(fields) != len(header):
                    yield LineError(
                        start, f"has {len(fields)} fields; the header has {len(header)}"
                    )
                    continue
                record: dict[str, Any] = dict(zip(header, fields))
                nested = _CSV_NESTED.get(fmt)
                if nested is not None and nested in record:
                    cell = record[nested]
                    try:
                        record[nested] = orjson.loads(cell) if cell.strip() else None
                    except orjson.JSONDecodeError as e:
                        yield LineError(start, f"column {nested!r} is not valid JSON: {e}")
                        continue
                yield _parsed((start, record), fmt)
        except UnicodeDecodeError as e:
            raise FormatError(
                f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} near line {end + 1}); "
                "save it as UTF-8"
            ) from None
        except csv.Error as e:
            raise FormatError(f"{path}: broken csv near line {end + 1}: {e}") from None
    if header is None:
        raise FormatError(f"{path} is empty")


def _csv_format(path: Path, header: list[str], fmt: Format | None) -> Format:
    if fmt is None:
        try:
            return detect_format(header)
        except FormatError as e:
            raise FormatError(f"{path} (csv header): {e}") from None
    missing = [c for c in _CSV_REQUIRED[fmt] if c not in header]
    if missing:
        raise FormatError(
            f"{path}: the csv header lacks {', '.join(missing)}, needed by {fmt}; "
            f"it has {', '.join(header)}"
        )
    return fmt


def _encoder(kind: str, fmt: Format) -> Callable[[dict[str, Any]], bytes]:
    """How one record becomes bytes in a file of `kind` (a json array's separators aside)."""
    if kind == "jsonl":
        return lambda record: orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    if kind == "json":
        return orjson.dumps
    line = _csv_encoder()
    columns = _CSV_COLUMNS[fmt]

    def encode(record: dict[str, Any]) -> bytes:
        cells = [record.get(column, "") for column in columns]
        return line([c if isinstance(c, str) else orjson.dumps(c).decode() for c in cells])

    return encode


class _Line:
    """A write target for `csv.writer` that keeps the one line written, so that each row is
    encoded (and refused if it cannot be) on its own."""

    text = ""

    def write(self, text: str) -> int:
        self.text = text
        return len(text)


def _csv_encoder() -> Callable[[Iterable[str]], bytes]:
    """One csv line as UTF-8 bytes (CRLF-terminated, as RFC 4180 and spreadsheets have it)."""
    line = _Line()
    writer = csv.writer(line)

    def encode(cells: Iterable[str]) -> bytes:
        writer.writerow(cells)
        return line.text.encode()

    return encode
