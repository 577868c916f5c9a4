"""How a turn gets answered, decided before any generation: from an approved annotation, by the
bot's polite refusal or small-talk reply (scope guard), from the retrieved passages (retrieval-only
releases), with a holding message, or by the model with a grounded prompt."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from api.services.chat.turn import AnswerPlan, ChatTurn
from api.services.knowledge.grounding import TurnBot, ground_turn
from api.services.knowledge.passages import passage_dict, retrieval_answer
from api.services.releases.modes import RAG_MODES
from serving.knowledge import build_context

if TYPE_CHECKING:
    from api.runtime import Runtime


async def plan_answer(turn: ChatTurn, runtime: Runtime) -> AnswerPlan:
    """Decide how `turn` is answered; may replace `turn.prompt` with a grounded one."""
    bot = turn.bot
    plan = AnswerPlan()
    annotations = runtime.annotations
    # known_empty: most bots have no annotation most of the time; skip the thread hop then.
    if bot.policy.annotations_enabled and not annotations.known_empty(bot.id):
        match = await asyncio.to_thread(
            annotations.match, bot.id, turn.question, bot.policy.annotation_similarity
        )
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

    use_passages = bot.mode in RAG_MODES
    grounding = await asyncio.to_thread(
        ground_turn,
        runtime.knowledge,
        TurnBot(
            bot.id,
            bot.name,
            bot.scope,
            bot.refusal_message,
            bot.system_prompt,
            bot.knowledge,
            bot.has_documents,
        ),
        conversation=turn.client_messages,
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
        # Answered with the passages themselves, which are also its citations.
        plan.direct_answer = (
            retrieval_answer(grounding.passages) or bot.holding_message or bot.refusal_message
        )
        if grounding.passages:
            plan.context = build_context(grounding.passages[:2])
        return plan
    if (
        use_passages
        and bot.has_documents
        and not grounding.passages
        and "no_context" not in plan.flags
    ):
        # Nothing in the documents answers it: a grounded bot does not guess.
        if bot.knowledge.answer_without_context:
            plan.flags.append("no_context")
        else:
            subject = ", ".join(bot.knowledge.topics) or bot.name or "this product"
            plan.direct_answer = bot.refusal_message.replace("{topics}", subject)
            plan.status = "refused"
            plan.guard = {
                **(plan.guard or {}),
                "verdict": "refuse",
                "reason": "no passage of the documents matches the question",
            }
            return plan
    if grounding.prompt is not None:
        turn.prompt = grounding.prompt
        plan.context = grounding.context
    return plan
