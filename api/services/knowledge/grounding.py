"""Grounding a chat turn: retrieval (dense + lexical), the scope guard's decision, and the prompt
with numbered sources."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from api.errors import Unavailable
from api.services.knowledge.config import KnowledgeConfig
from api.services.knowledge.registry import KnowledgeRegistry
from serving.backend import ChatMessage
from serving.knowledge import ContextBlock, Passage, build_context
from serving.prompting import build_prompt
from serving.scope_guard import GuardDecision

log = logging.getLogger(__name__)


@dataclass
class Grounding:
    """What retrieval and the scope guard decided for one question."""

    prompt: list[ChatMessage] | None = None  # None: keep the plain prompt
    passages: list[Passage] = field(default_factory=list)
    context: ContextBlock | None = None
    decision: GuardDecision | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.decision is not None and self.decision.verdict == "refuse"

    @property
    def small_talk(self) -> bool:
        return self.decision is not None and self.decision.verdict == "smalltalk"


@dataclass(frozen=True)
class TurnBot:
    """The parts of a bot that grounding reads."""

    id: str
    name: str
    scope: str
    refusal: str
    system_prompt: str
    config: KnowledgeConfig
    has_documents: bool


def ground_turn(
    hub: KnowledgeRegistry,
    bot: TurnBot,
    *,
    conversation: Sequence[Mapping[str, str]],
    use_passages: bool,
) -> Grounding:
    """Retrieve passages for `question` (dense + lexical), let the guard decide, and build the
    grounded prompt. The guard runs for every bot with documents or a scope text; a bot with
    neither has nothing to judge by. Blocking (embedding, vector search): call from a thread."""
    grounding = Grounding()
    config = bot.config
    question = str(conversation[-1]["content"])
    guarded = config.guard and (
        bot.has_documents or bool(bot.scope.strip() or config.topics or config.example_questions)
    )
    if not bot.has_documents and not guarded:
        return grounding
    found = None
    try:
        base = hub.base(hub.spec(config))
        vector = base.retriever.embed_query(question, config.query_instruction)
        if bot.has_documents:
            found = base.retriever.hybrid_search(
                bot.id, question, vector, config.top_k, config.min_score
            )
    except Exception as exc:  # noqa: BLE001 - the store being down must not look like "no passages"
        if hub.healthy():
            raise
        if not config.answer_without_context:
            raise Unavailable(
                "The knowledge base is unreachable; try again shortly.",
                code="knowledge_unavailable",
            ) from exc
        log.warning("vector store unreachable; answering without context")
        grounding.flags.append("no_context")
        return grounding
    if found is not None:
        grounding.passages = found.passages
    if guarded:
        guard = hub.guard(bot.id, config, bot.refusal, bot.name, bot.scope)
        grounding.decision = guard.assess(question, found, question_vector=vector)
        if grounding.refused or grounding.small_talk:
            return grounding
    if use_passages and grounding.passages:
        grounding.context = build_context(grounding.passages, max_chars=config.max_context_chars)
        grounding.prompt = build_prompt(bot.system_prompt, conversation, grounding.context)
    elif use_passages and bot.has_documents:
        grounding.flags.append("no_passages")
    return grounding
