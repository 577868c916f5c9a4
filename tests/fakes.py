"""A scripted backend for fast tests of the API's logic. The real backends have their own tests on
the real model and a real upstream; this one only lets a test choose what the engine does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from serving.backend import (
    Backend,
    BackendError,
    ChatMessage,
    Finished,
    GenerationParams,
    PromptTooLong,
    StreamEvent,
    TextDelta,
)


class ScriptedBackend(Backend):
    """Answers with `words`, one delta each. `mode`: ok | fail | fail_midway | hang | slow | too_long."""

    kind = "scripted"

    def __init__(self, words: Sequence[str] = ("Hello", " from", " the", " bot", ".")) -> None:
        self.words = list(words)
        self.mode = "ok"
        self.delay = 0.0
        self.calls: list[tuple[list[ChatMessage], GenerationParams, str | None]] = []
        self.cancelled = 0
        self.healthy = True

    @property
    def model_name(self) -> str:
        return "scripted-model"

    async def health(self) -> bool:
        return self.healthy

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append((list(messages), params, adapter))
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        if self.mode == "fail":
            raise BackendError("upstream exploded")
        if self.mode == "too_long":
            raise PromptTooLong("the prompt does not fit the context")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        words = self.words[: params.max_tokens]
        try:
            for i, word in enumerate(words):
                if self.mode == "fail_midway" and i == 2:
                    raise BackendError("upstream died mid-answer")
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield TextDelta(word)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        reason = "length" if len(words) < len(self.words) else "stop"
        yield Finished(reason, prompt_tokens, len(words))
