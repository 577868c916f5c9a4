"""The one prompt builder: a bot's system prompt, the conversation, and (for grounded answers) the
numbered sources with the grounding rules. Live answers and shadow answers are built here alike, so a
candidate sees exactly what the live release saw."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
            role = "system" if message["role"] == "developer" else message["role"]
            prompt.append({"role": role, "content": str(message["content"])})  # type: ignore[typeddict-item]
        return prompt
    system = f"{system_prompt.strip()}\n\n{GROUNDING_RULES}\n\nSources:\n{context.text}".strip()
    earlier = [
        {"role": m["role"], "content": str(m["content"])}
        for m in conversation[:-1]
        if m["role"] not in ("system", "developer")
    ]
    question = str(conversation[-1]["content"]) if conversation else ""
    return [
        {"role": "system", "content": system},
        *earlier,  # type: ignore[list-item]
        {"role": "user", "content": question},
    ]
