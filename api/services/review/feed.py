"""The review queue's intake: which answers staff should see, how urgently, and in which group.

An answer is queued when it is drawn at the bot's `review_sample_rate`, and always when it is a
priority case: a weak retrieval, a candidate that strongly disagrees with the live answer, a client
thumbs-down, or a question unlike anything staff have reviewed. Near-identical questions (to the
same release) share a `group_key`, so staff judge one answer per group.

Similarity is rapidfuzz on normalised text (lowercase, punctuation stripped), not embeddings: it
needs no model in the worker, costs microseconds per comparison, and is deterministic. Novelty uses
`token_set_ratio` (a question whose words all appear in a reviewed one is not new); grouping uses the
stricter `token_sort_ratio`, which does not treat "reset" as identical to "how do I reset my password".
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import Levenshtein
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.ids import new_id
from api.jobs.headroom import wait_for_headroom
from api.jobs.queue import job_row
from api.jobs.worker import JobContext
from api.models import Bot, Exchange, Release, ReviewItem
from api.runtime import Runtime
from api.services.bots.policy import BotPolicy, policy_of

# Priority = sum of the weights of the reasons, plus how far past its threshold each one is.
WEIGHTS = {
    # A client said the answer was wrong: in front of every other reason.
    "thumbs_down": 100.0,
    "disagreement": 2.0,
    "low_retrieval": 2.0,
    "novel": 1.0,
    "sampled": 0.0,
    # A reviewer asked for it (the live answer beside a candidate's).
    "requested": 0.0,
}
REVIEWED = ("approved", "corrected", "rejected")
# Questions compared against per decision: the most recent ones keep the cost flat as the queue grows.
RECENT_LIMIT = 500
MODEL_FREE_MODES = {"retrieval", "holding"}

_rng = random.Random()


def normalise(text: str) -> str:
    return " ".join(utils.default_process(text).split())


def answer_distance(a: str, b: str) -> float:
    """Normalised edit distance between two answers: 0 identical .. 1 nothing in common."""
    return Levenshtein.normalized_distance(normalise(a), normalise(b))


def question_of(messages: list[dict[str, Any]]) -> str:
    """The client's last question in a stored conversation."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def top_retrieval_score(exchange: Exchange) -> float | None:
    """The best passage score; 0 when retrieval ran and found nothing; None when it did not run."""
    scores = [
        float(p["score"])
        for p in exchange.passages or []
        if isinstance(p.get("score"), (int, float))
    ]
    if scores:
        return max(scores)
    flags = exchange.flags or []
    return 0.0 if "no_passages" in flags or "no_context" in flags else None


def apply_rating(session: Session, exchange: Exchange) -> None:
    """Bring the pending items of `exchange` in line with the client's current rating: a
    thumbs-down puts them first, a rating changed to thumbs-up takes that back."""
    down = exchange.feedback == -1
    for item in session.scalars(
        select(ReviewItem).where(
            ReviewItem.exchange_id == exchange.id, ReviewItem.status == "pending"
        )
    ):
        has = "thumbs_down" in item.reasons
        if down and not has:
            item.reasons = ["thumbs_down", *item.reasons]
            item.priority = round(item.priority + WEIGHTS["thumbs_down"], 4)
        elif has and not down:
            item.reasons = [r for r in item.reasons if r != "thumbs_down"]
            item.priority = round(max(0.0, item.priority - WEIGHTS["thumbs_down"]), 4)


def review_feed_job_row(exchange_id: str, bot_id: str) -> dict[str, Any]:
    """A `review_feed` job for an exchange of a bot without candidates (its live answer is reviewed)."""
    return job_row("review_feed", {"exchange_id": exchange_id}, bot_id=bot_id)


def enqueue_review(
    session: Session,
    *,
    bot_id: str,
    exchange_id: str,
    release_id: str | None,
    shadow_answer_id: str | None,
    question: str,
    answer: str,
    live_answer: str | None,
    top_retrieval_score: float | None,
    thumbs_down: bool,
    policy: BotPolicy,
    rng: random.Random,
    sample_rate: float | None = None,
    priority_cases: frozenset[str] | None = None,
) -> ReviewItem | None:
    """Queue the answer for review when it is sampled (at `sample_rate`, default the policy's
    `review_sample_rate`) or a priority case (any, or only those in `priority_cases`); None when it
    is not.

    Idempotent per (exchange, release): a second call returns the existing item, adding priority
    reasons that appeared since (a thumbs-down that came after the answer) while it is pending.
    """
    reasons = _priority_reasons(
        session, bot_id, question, answer, live_answer, top_retrieval_score, thumbs_down, policy
    )
    if priority_cases is not None:
        reasons = {r: v for r, v in reasons.items() if r in priority_cases}
    existing = session.scalar(
        select(ReviewItem).where(
            ReviewItem.exchange_id == exchange_id,
            ReviewItem.release_id.is_not_distinct_from(release_id),
        )
    )
    if existing is not None:
        if existing.status == "pending":
            merged = dict.fromkeys([*existing.reasons, *reasons])
            if len(merged) != len(existing.reasons):
                existing.reasons = list(merged)
                existing.priority = max(existing.priority, _priority(reasons))
        return existing
    if rng.random() < (policy.review_sample_rate if sample_rate is None else sample_rate):
        reasons["sampled"] = 0.0
    if not reasons:
        return None
    item = ReviewItem(
        id=new_id("rvw"),
        bot_id=bot_id,
        exchange_id=exchange_id,
        release_id=release_id,
        shadow_answer_id=shadow_answer_id,
        status="pending",
        priority=_priority(reasons),
        reasons=list(reasons),
        group_key=_group_key(session, bot_id, release_id, question, policy.group_similarity),
    )
    session.add(item)
    session.flush()
    return item


def _priority_reasons(
    session: Session,
    bot_id: str,
    question: str,
    answer: str,
    live_answer: str | None,
    top_score: float | None,
    thumbs_down: bool,
    policy: BotPolicy,
) -> dict[str, float]:
    """Each priority reason that applies, with how far past its threshold the answer is (0..1)."""
    reasons: dict[str, float] = {}
    if thumbs_down:
        reasons["thumbs_down"] = 0.0
    if live_answer is not None:
        distance = answer_distance(live_answer, answer)
        if distance > policy.disagreement_distance:
            reasons["disagreement"] = distance - policy.disagreement_distance
    if top_score is not None and top_score < policy.low_retrieval_score:
        reasons["low_retrieval"] = policy.low_retrieval_score - top_score
    similarity = _best_match(
        normalise(question), _reviewed_questions(session, bot_id), fuzz.token_set_ratio
    )[1]
    if similarity < policy.novelty_similarity:
        reasons["novel"] = policy.novelty_similarity - similarity
    return reasons


def _priority(reasons: dict[str, float]) -> float:
    return round(sum(WEIGHTS[r] + excess for r, excess in reasons.items()), 4)


def _reviewed_questions(session: Session, bot_id: str) -> list[str]:
    rows = session.scalars(
        select(Exchange.messages)
        .join(ReviewItem, ReviewItem.exchange_id == Exchange.id)
        .where(ReviewItem.bot_id == bot_id, ReviewItem.status.in_(REVIEWED))
        .order_by(ReviewItem.updated_at.desc())
        .limit(RECENT_LIMIT)
    )
    return [normalise(question_of(m)) for m in rows]


def _group_key(
    session: Session, bot_id: str, release_id: str | None, question: str, similarity: float
) -> str:
    """The group of a pending item of the same release with a near-identical question, else a new one."""
    pending = session.execute(
        select(ReviewItem.group_key, Exchange.messages)
        .join(Exchange, ReviewItem.exchange_id == Exchange.id)
        .where(
            ReviewItem.bot_id == bot_id,
            ReviewItem.status == "pending",
            ReviewItem.release_id.is_not_distinct_from(release_id),
            ReviewItem.group_key.is_not(None),
        )
        .order_by(ReviewItem.created_at.desc())
        .limit(RECENT_LIMIT)
    ).all()
    text = normalise(question)
    index, score = _best_match(
        text, [normalise(question_of(m)) for _, m in pending], fuzz.token_sort_ratio
    )
    if index is not None and score >= similarity:
        return str(pending[index][0])
    return new_id("grp")  # a new group, never one already reviewed


def _best_match(text: str, choices: list[str], scorer: Any) -> tuple[int | None, float]:
    """Index of the most similar choice and its similarity in 0..1 ((None, 0.0) when there are none)."""
    found = process.extractOne(text, choices, scorer=scorer, processor=None) if choices else None
    if found is None:
        return None, 0.0
    return found[2], found[1] / 100


# -- job ------------------------------------------------------------------------------------------


async def run_review_feed_job(ctx: JobContext, runtime: Runtime) -> dict[str, Any]:
    """Job `review_feed`, payload {"exchange_id"}: consider a live answer (a bot without candidates)."""
    settings = runtime.settings
    await wait_for_headroom(settings.shadow_busy_cpu, settings.shadow_max_defer_s)
    return await asyncio.to_thread(review_live_answer, runtime.sessions, ctx.payload["exchange_id"])


def review_live_answer(sessions: sessionmaker[Session], exchange_id: str) -> dict[str, Any]:
    """Queue a live answer for review if the policy says so (idempotent)."""
    with transaction(sessions) as session:
        exchange = session.get(Exchange, exchange_id)
        if exchange is None:
            return {"skipped": "exchange_deleted"}
        bot = session.get(Bot, exchange.bot_id)
        assert bot is not None  # the exchange goes with its bot
        policy = policy_of(bot.policy)
        rate, priority_cases = live_sampling(session, bot, exchange, policy)
        item = enqueue_review(
            session,
            bot_id=bot.id,
            exchange_id=exchange.id,
            release_id=exchange.release_id,
            shadow_answer_id=None,
            question=question_of(exchange.messages),
            answer=exchange.answer,
            live_answer=None,
            top_retrieval_score=top_retrieval_score(exchange),
            thumbs_down=exchange.feedback == -1,
            policy=policy,
            rng=_rng,
            sample_rate=rate,
            priority_cases=priority_cases,
        )
        return {
            "review_item_id": item.id if item else None,
            "reasons": list(item.reasons) if item else [],
        }


# What still queues a sampled-only live answer outside its sample: the client said it was wrong.
CLIENT_SIGNALS = frozenset({"thumbs_down"})


def live_sampling(
    session: Session, bot: Bot, exchange: Exchange, policy: BotPolicy
) -> tuple[float, frozenset[str] | None]:
    """How often the live answer is drawn for review, and which priority cases still queue it.

    Refusals are drawn at their own rate; answers at the live rate while candidates shadow (the
    candidates' answers carry the priority cases then, so a novel question is not queued twice),
    else at the main rate with every priority case. A thumbs-down always queues the live answer:
    it is the one the client saw."""
    if exchange.status == "refused":
        return policy.refusal_review_sample_rate, CLIENT_SIGNALS
    shadowing = session.scalar(
        select(Release.id)
        .where(
            Release.bot_id == bot.id,
            Release.candidate.is_(True),
            Release.id != bot.live_release_id,
        )
        .limit(1)
    )
    if shadowing is not None:
        return policy.live_review_sample_rate, CLIENT_SIGNALS
    return policy.review_sample_rate, None


def live_answer_to_compare(session: Session, exchange: Exchange) -> str | None:
    """The live answer a candidate is compared with; None when the live release answered without a
    model (passages or a holding message: any model answer would "disagree")."""
    if exchange.status != "completed":
        return None
    release = session.get(Release, exchange.release_id) if exchange.release_id else None
    if release is not None and release.mode in MODEL_FREE_MODES:
        return None
    return exchange.answer
