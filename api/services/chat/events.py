"""What answering a turn produces, as domain events: the route encodes them (SSE or one JSON
body), `shadowdesk chat` prints them. `Generation` is the outcome of one generation, live or shadow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.errors import ApiError


@dataclass
class Generation:
    """One answer as it came out: text, status, why it ended, token counts and timings."""

    answer: str = ""
    #: completed | refused | interrupted | error
    status: str = "completed"
    finish_reason: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    latency_ms: float = 0.0

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class AnswerText:
    """The next piece of the answer."""

    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The answer is complete and stored: why it ended, its usage, and what grounded it."""

    finish_reason: str | None
    usage: Usage
    citations: list[dict[str, Any]] | None = None
    refused: bool = False
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnswerFailed:
    """Generation failed after it started; the exchange is stored with the error."""

    error: ApiError


ChatEvent = AnswerText | AnswerDone | AnswerFailed
