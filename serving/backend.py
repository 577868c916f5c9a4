"""The one small interface in front of every model engine.

Everything that generates text (chat, shadow answers, dataset generation, evaluation) goes through a
`Backend`, so an engine can be swapped by configuration alone.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

FinishReason = Literal["stop", "length", "error", "interrupted"]


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one request. `temperature == 0` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with an exchange; `from_dict` reads it back)."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], defaults: GenerationParams) -> GenerationParams:
        """Parameters stored by `to_dict`; what is missing comes from `defaults`."""
        return cls(
            max_tokens=int(data.get("max_tokens") or defaults.max_tokens),
            temperature=float(data.get("temperature", defaults.temperature)),
            top_p=float(data.get("top_p", defaults.top_p)),
            stop=tuple(data.get("stop") or defaults.stop),
            seed=data.get("seed", defaults.seed),
        )


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, in order; concatenating all deltas gives the answer."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The last event of every stream: why generation ended and the token counts."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


StreamEvent = TextDelta | Finished


@dataclass
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    deltas: list[str] = field(default_factory=list)


class BackendError(Exception):
    """The engine failed to produce an answer (upstream down, bad upstream reply, model error)."""


class BackendTimeout(BackendError):
    """The engine did not answer in time."""


class BackendRejected(BackendError):
    """The engine refused the request itself as invalid (e.g. longer than the model's context):
    the caller's input is at fault, retrying it cannot help."""

    def __init__(self, message: str, *, context_length: bool = False) -> None:
        super().__init__(message)
        self.context_length = context_length


class AdapterMissing(BackendError):
    """The engine does not hold the adapter a request named (it restarted, or another process
    unloaded it). Nothing was generated, so loading it again and retrying is safe."""


class Backend(abc.ABC):
    """An engine that turns chat messages into text.

    Implementations must be safe to call concurrently from one event loop; long computations run off
    the loop. `stream` yields `TextDelta`s and ends with exactly one `Finished`.
    """

    #: Short name shown in releases and logs, e.g. "transformers" or "openai".
    kind: str = "abstract"
    #: True when the backend itself bounds every wait of a stream (e.g. a per-read timeout on an
    #: upstream connection); callers may then skip their own per-chunk timer.
    bounds_waits: bool = False

    async def start(self) -> None:
        """Load models / open connections. Called once before the first request."""

    async def close(self) -> None:
        """Release models / connections."""

    @property
    @abc.abstractmethod
    def model_name(self) -> str:
        """Identifier of the base model this backend serves (recorded on releases)."""

    @abc.abstractmethod
    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Generate an answer, yielding text as it is produced, then one `Finished`."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        adapter: str | None = None,
    ) -> Completion:
        """Generate a whole answer (drains `stream`)."""
        deltas: list[str] = []
        async for event in self.stream(messages, params, adapter):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            else:
                return Completion(
                    "".join(deltas),
                    event.finish_reason,
                    event.prompt_tokens,
                    event.completion_tokens,
                    deltas,
                )
        raise BackendError("stream ended without a Finished event")

    async def load_adapter(self, name: str, path: str) -> None:
        """Make a LoRA adapter available under `name` without a restart."""
        raise BackendError(f"the {self.kind} backend cannot load adapters")

    async def unload_adapter(self, name: str) -> None:
        raise BackendError(f"the {self.kind} backend cannot unload adapters")

    async def listed_adapters(self) -> dict[str, str] | None:
        """The adapters the engine holds now (name -> folder), or None when it cannot tell."""
        return None

    @abc.abstractmethod
    async def health(self) -> bool:
        """True when the engine can answer now (model loaded / upstream reachable)."""


class PromptTooLong(ValueError):
    """The prompt plus the requested answer length does not fit the model's context (bad input)."""
