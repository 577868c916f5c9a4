"""A training row: what a fine-tune learns from, independent of any file format or table.

A row is one supervised example: an optional system prompt, earlier turns (for multi-turn rows), the
instruction with an optional input / context, and the output the model should give. Where it came
from (`Provenance`) travels with it so that quality checks can tell, say, that its source document
changed since it was generated.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator


class Source(StrEnum):
    """How a row came to exist."""

    GENERATED = "generated"  # written by a model from a knowledge chunk
    CORRECTION = "correction"  # a staff verdict on a shadow answer (approved or corrected)
    IMPORTED = "imported"  # read from a file
    MANUAL = "manual"  # written by hand


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # reviewed, unchanged
    EDITED = "edited"  # reviewed, output corrected
    REJECTED = "rejected"  # reviewed, not fit to train on


# Reviewed and fit to train on: what a snapshot takes.
TRAINABLE = frozenset({Status.APPROVED, Status.EDITED})


class Flag(StrEnum):
    """What a quality check found. A flag asks for review; it never deletes a row."""

    DUPLICATE = "duplicate"  # same (or nearly the same) instruction and output as an earlier row
    CONTRADICTION = "contradiction"  # a similar question answered materially differently
    PII = "pii"  # personal data: e-mail, phone, card, IBAN, ...
    OUTDATED = "outdated"  # the source document changed since the row was generated
    EMPTY = "empty"  # no output
    TRUNCATED = "truncated"  # the output stops mid-sentence
    UNSUPPORTED = "unsupported"  # the output says things its source chunk does not


def _without_nul(text: str) -> str:
    # No database stores it in text (PostgreSQL refuses it) and no trainer wants it.
    if "\x00" in text:
        raise ValueError("the text contains a NUL character")
    return text


class Turn(BaseModel):
    """One earlier message of a multi-turn row."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        return _without_nul(v)


class Row(BaseModel):
    """The content of one training example; equal content means equal `content_hash`."""

    model_config = ConfigDict(frozen=True)

    system: str = ""
    history: tuple[Turn, ...] = Field(
        default=(), description="Earlier turns, user first, alternating, before the instruction."
    )
    instruction: str = Field(min_length=1)
    input: str = Field("", description="Context for the instruction (a passage, a document).")
    output: str = ""
    category: str = Field("", description="Task kind: closed_qa, open_qa, refusal, ...")

    @field_validator("system", "instruction", "input", "output", "category")
    @classmethod
    def _no_nul(cls, v: str) -> str:
        return _without_nul(v)

    @field_validator("instruction")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the instruction is empty")
        return v

    @field_validator("history")
    @classmethod
    def _alternating(cls, v: tuple[Turn, ...]) -> tuple[Turn, ...]:
        for i, turn in enumerate(v):
            expected = "user" if i % 2 == 0 else "assistant"
            if turn.role != expected:
                raise ValueError(
                    f"history turn {i + 1} is from {turn.role}; turns alternate, user first"
                )
        if len(v) % 2:
            raise ValueError("history ends with a user turn; its answer is missing")
        return v

    def user_message(self) -> str:
        """The instruction and its input as one user message (how chat formats carry them)."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    def messages(self) -> list[dict[str, str]]:
        """The row as the chat messages a trainer sees."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages += [{"role": t.role, "content": t.content} for t in self.history]
        messages.append({"role": "user", "content": self.user_message()})
        messages.append({"role": "assistant", "content": self.output})
        return messages

    @property
    def content_hash(self) -> str:
        """SHA-256 of the row's content (category included): identical rows share it."""
        return hashlib.sha256(
            orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()


class Provenance(BaseModel):
    """Where a row came from; every field optional, the ones that apply are set."""

    source: Source = Source.MANUAL
    style: str = Field("", description="Generation style: alpaca, dolly, orca, sharegpt, refusal.")
    chunk_id: str | None = None
    document_id: str | None = None
    document: str | None = Field(None, description="The source document's name.")
    document_revision: str | None = Field(
        None, description="The source document's content hash when the row was made."
    )
    exchange_id: str | None = None
    file: str | None = None
    line: int | None = None
    model: str | None = Field(None, description="The model that generated the row.")
