"""A chat request validated and resolved into a turn: the bot as the chat path needs it, the
conversation, the generation parameters and (after planning) how it will be answered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.errors import InvalidRequest
from api.ids import new_id
from api.schemas.openai import UNSUPPORTED_PARAMS, ChatCompletionRequest
from api.services.access.cache import BotConfig, KeyGrant, check_allowed
from api.settings import Settings
from serving.backend import ChatMessage, GenerationParams
from serving.knowledge import ContextBlock
from serving.prompting import build_prompt


@dataclass
class AnswerPlan:
    direct_answer: str | None = None  # set: answered without the model
    status: str = "completed"  # "refused" when the guard turned the question away
    passages: list[dict[str, Any]] = field(default_factory=list)
    context: ContextBlock | None = None
    guard: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    annotation_id: str | None = None
    top_score: float | None = None


@dataclass
class ChatTurn:
    """A validated request, detached from the database session, ready to generate."""

    exchange_id: str
    bot: BotConfig
    api_key_id: str | None
    conversation_id: str
    client_messages: list[dict[str, Any]]
    prompt: list[ChatMessage]
    params: GenerationParams
    stream: bool
    include_usage: bool
    started: float = field(default_factory=time.perf_counter)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    created: int = field(default_factory=lambda: int(time.time()))
    plan: AnswerPlan = field(default_factory=lambda: AnswerPlan())

    @property
    def bot_slug(self) -> str:
        return self.bot.slug

    @property
    def question(self) -> str:
        return str(self.client_messages[-1]["content"])


def validate_request(req: ChatCompletionRequest, settings: Settings) -> None:
    """Refuse what we cannot honour (400s), before anything is generated or stored."""
    for name in UNSUPPORTED_PARAMS:
        if getattr(req, name) is not None:
            raise InvalidRequest(
                f"The parameter '{name}' is not supported.",
                param=name,
                code="unsupported_parameter",
            )
    if req.n is not None and req.n != 1:
        raise InvalidRequest("Only n=1 is supported.", param="n", code="unsupported_parameter")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name) not in (None, 0, 0.0):
            raise InvalidRequest(
                f"The parameter '{name}' is not supported.",
                param=name,
                code="unsupported_parameter",
            )
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest(
            "stream_options is only allowed with stream=true.", param="stream_options"
        )
    if not req.messages:
        raise InvalidRequest(
            "messages must contain at least one message.", param="messages", code="empty_messages"
        )
    if len(req.messages) > settings.max_messages:
        raise InvalidRequest(
            f"Too many messages: {len(req.messages)} > {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    total = 0
    for i, msg in enumerate(req.messages):
        text = msg.text()
        if len(text) > settings.max_message_chars:
            raise InvalidRequest(
                f"Message {i} is too long: {len(text)} > {settings.max_message_chars} characters.",
                param=f"messages.{i}.content",
                code="message_too_long",
            )
        total += len(text)
    if total > settings.max_total_chars:
        raise InvalidRequest(
            f"The conversation is too long: {total} > {settings.max_total_chars} characters.",
            param="messages",
            code="conversation_too_long",
        )
    if req.messages[-1].role != "user":
        raise InvalidRequest(
            "The last message must come from the user.", param="messages", code="last_not_user"
        )
    if not req.messages[-1].text().strip():
        raise InvalidRequest(
            "The last user message is empty.",
            param=f"messages.{len(req.messages) - 1}.content",
            code="empty_message",
        )
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens is too large: {max_tokens} > {settings.max_tokens_limit}.",
            param="max_tokens",
            code="max_tokens_too_large",
        )


def build_turn(
    req: ChatCompletionRequest,
    *,
    grant: KeyGrant,
    bot: BotConfig,
    conversation_id: str | None,
    settings: Settings,
) -> ChatTurn:
    """Check the key may use the bot and assemble the prompt and parameters (bot defaults + request)."""
    check_allowed(grant, bot)
    client_messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    prompt = build_prompt(bot.system_prompt, client_messages)
    max_tokens = (
        req.max_completion_tokens
        or req.max_tokens
        or min(bot.max_tokens, settings.max_tokens_limit)
    )
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=bot.temperature if req.temperature is None else req.temperature,
        top_p=bot.top_p if req.top_p is None else req.top_p,
        stop=tuple(req.stop or ()),
        seed=req.seed,
    )
    return ChatTurn(
        exchange_id=new_id("exch"),
        bot=bot,
        api_key_id=grant.id,
        conversation_id=conversation_id or req.conversation_id or new_id("conv"),
        client_messages=client_messages,
        prompt=prompt,
        params=params,
        stream=req.stream,
        include_usage=bool(req.stream_options and req.stream_options.include_usage),
    )
