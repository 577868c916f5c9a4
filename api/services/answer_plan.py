"""How a turn gets answered, decided before any generation: from an approved annotation, by the
bot's polite refusal (scope guard), from the retrieved passages (retrieval-only releases), with a
holding message, or by the model with a grounded prompt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.backend import ChatMessage
from serving.knowledge import ContextBlock, Passage

if TYPE_CHECKING:
    from api.runtime import Runtime
    from api.services.chat import ChatTurn

RAG_MODES = {"rag", "adapter+rag", "retrieval"}


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


def passage_dict(p: Passage) -> dict[str, Any]:
    return {
        "chunk_id": p.chunk_id, "doc_id": p.doc_id, "document": p.source, "title": p.title,
        "heading_path": list(p.heading_path), "page": p.page, "score": round(p.score, 4), "text": p.text,
    }


def passage_of(stored: dict[str, Any]) -> Passage:
    """A passage back from its stored form (`passage_dict`), e.g. to rebuild a prompt later."""
    return Passage(
        chunk_id=str(stored.get("chunk_id", "")), doc_id=str(stored.get("doc_id", "")),
        text=str(stored.get("text", "")), score=float(stored.get("score") or 0.0),
        source=str(stored.get("document") or stored.get("source") or ""), title=str(stored.get("title") or ""),
        heading_path=tuple(stored.get("heading_path") or ()), page=stored.get("page"),
    )


def plain_prompt(system_prompt: str, client_messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """The prompt without passages: the system prompt, then the conversation (`developer` is a system
    message to the model)."""
    prompt: list[ChatMessage] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for m in client_messages:
        role = "system" if m["role"] == "developer" else m["role"]
        prompt.append({"role": role, "content": str(m["content"])})  # type: ignore[typeddict-item]
    return prompt


def history_of(prompt: list[ChatMessage]) -> list[ChatMessage]:
    """The conversation before the last question, without system messages."""
    return [m for m in prompt if m["role"] != "system"][:-1]


def retrieval_answer(passages: list[Passage], limit: int = 2) -> str:
    """A retrieval-only release answers with the best passages, quoted with their sources."""
    parts = []
    for p in passages[:limit]:
        where = " › ".join([p.source, *p.heading_path]) + (f", p. {p.page}" if p.page is not None else "")
        parts.append(f"{p.text.strip()}\n(Source: {where})")
    return "\n\n".join(parts)


async def plan_answer(turn: ChatTurn, runtime: Runtime) -> AnswerPlan:
    """Decide how `turn` is answered; may replace `turn.prompt` with a grounded one."""
    bot = turn.bot
    plan = AnswerPlan()
    annotations = runtime.annotations
    # known_empty: most bots have no annotation most of the time; skip the thread hop then.
    if bot.policy.annotations_enabled and not annotations.known_empty(bot.id):
        match = await asyncio.to_thread(annotations.match, bot.id, turn.question, bot.policy.annotation_similarity)
        if match is not None:
            plan.direct_answer, plan.annotation_id = match.answer, match.id
            plan.flags.append("annotation")
            return plan
    if bot.mode == "holding":
        plan.direct_answer = bot.holding_message or bot.refusal_message
        plan.flags.append("holding")
        return plan
    if not bot.has_documents and bot.mode == "retrieval":
        plan.direct_answer = bot.holding_message or bot.refusal_message
        plan.flags.append("no_passages")
        return plan

    from api.services.knowledge import TurnBot, ground_turn

    use_passages = bot.mode in RAG_MODES
    grounding = await asyncio.to_thread(
        ground_turn, runtime.knowledge,
        TurnBot(bot.id, bot.name, bot.scope, bot.refusal_message, bot.system_prompt, bot.knowledge,
                bot.has_documents),
        history=history_of(turn.prompt), question=turn.question,
        use_passages=use_passages and bot.mode != "retrieval",
    )
    plan.flags += grounding.flags
    plan.passages = [passage_dict(p) for p in grounding.passages]
    plan.top_score = max((p.score for p in grounding.passages), default=None)
    if grounding.decision is not None:
        plan.guard = grounding.decision.as_log()
        if grounding.refused:
            plan.direct_answer = grounding.decision.refusal_message or bot.refusal_message
            plan.status = "refused"
            return plan
        if grounding.small_talk:
            plan.direct_answer = grounding.decision.reply
            plan.flags.append("smalltalk")
            return plan
    if bot.mode == "retrieval":
        plan.direct_answer = retrieval_answer(grounding.passages) or bot.holding_message or bot.refusal_message
        return plan
    if grounding.prompt is not None:
        turn.prompt = grounding.prompt
        plan.context = grounding.context
    return plan
