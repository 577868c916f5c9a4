"""What a quality check reports: one `Finding` per row and reason, never a change to the row."""

from __future__ import annotations

from dataclasses import dataclass

from training.rows import Flag


@dataclass(frozen=True)
class Finding:
    """A reason to review one row: `key` is the row's id in the caller's table; `related` is the key
    of the other row involved (the original of a duplicate, the other side of a contradiction)."""

    key: str
    flag: Flag
    detail: str
    related: str | None = None
