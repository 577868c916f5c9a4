"""The one prompt builder: a bot's system prompt, the conversation, and (for grounded answers) the
numbered sources with the grounding rules. Live answers and shadow answers are built here alike, so a
candidate sees exactly what the live release saw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from serving.backend import ChatMessage
from serving.knowledge.context import GROUNDING_RULES, ContextBlock


def build_prompt(
    system_prompt: str,
    conversation: Sequence[Mapping[str, str]],
    context: ContextBlock | None = None,
) -> list[ChatMessage]:
    """Chat messages for the model. `conversation` is the client's messages, the question last
    (`developer` messages count as system messages). With a `context`, the system message carries
    the grounding rules and the sources, and the client's own system messages give way to it."""
    if context is None:
        prompt: list[ChatMessage] = (
            [{"role": "system", "content": system_prompt}] if system_prompt else []
        )
        for message in conversation:
            prompt.append({"role": _role(message["role"]), "content": str(message["content"])})
        return prompt
    system = f"{system_prompt.strip()}\n\n{GROUNDING_RULES}\n\nSources:\n{context.text}".strip()
    earlier: list[ChatMessage] = [
        {"role": _role(m["role"]), "content": str(m["content"])}
        for m in conversation[:-1]
        if m["role"] not in ("system", "developer")
    ]
    question = str(conversation[-1]["content"]) if conversation else ""
    return [
        {"role": "system", "content": system},
        *earlier,
        {"role": "user", "content": question},
    ]


def _role(role: str) -> Literal["system", "user", "assistant"]:
    """The model's role for a client's message role (`developer` is a system message)."""
    if role in ("system", "developer"):
        return "system"
    if role == "assistant":
        return "assistant"
    return "user"
