"""Shadow answers: each candidate release answers a live exchange's prompt in the background.

The jobs are rows inserted with the exchange, in its transaction (`shadow_job_rows`), so a shadow
answer is owed exactly when the exchange exists. The worker runs `run_shadow_job`: it rebuilds the
prompt the candidate would have seen (same history, same stored passages, the candidate's system
prompt and mode), generates under a per-process concurrency cap and a timeout, and stores one
`ShadowAnswer` with its review-queue decision in one transaction. The unique (exchange, release)
constraint makes that exactly-once: a job re-run after a crash finds the answer and stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.ids import new_id
from api.jobs.headroom import wait_for_headroom
from api.jobs.queue import job_row
from api.jobs.worker import JobContext
from api.models import Bot, Exchange, Job, Release, ShadowAnswer
from api.runtime import Runtime
from api.services.bots.policy import BotPolicy, policy_of
from api.services.chat.events import Generation
from api.services.knowledge.config import knowledge_of
from api.services.knowledge.passages import passage_of, retrieval_answer
from api.services.releases.modes import RAG_MODES
from api.services.review.feed import (
    enqueue_review,
    live_answer_to_compare,
    question_of,
    top_retrieval_score,
)
from serving.backend import AdapterMissing, ChatMessage, GenerationParams
from serving.knowledge import build_context
from serving.prompting import build_prompt

log = logging.getLogger(__name__)

_rng = random.Random()


def shadow_job_rows(
    exchange_id: str,
    bot_id: str,
    policy: BotPolicy,
    candidate_release_ids: Sequence[str],
    rng: random.Random,
) -> list[dict[str, Any]]:
    """`jobs` rows (kind "shadow") for the candidates that should answer this exchange: all of them
    when the exchange is drawn at the bot's `shadow_sample_rate` (so candidates are compared on the
    same exchanges), none otherwise."""
    if not candidate_release_ids or rng.random() >= policy.shadow_sample_rate:
        return []
    return [
        job_row("shadow", {"exchange_id": exchange_id, "release_id": r}, bot_id=bot_id)
        for r in candidate_release_ids
    ]


@dataclass
class ShadowTask:
    """What a candidate must answer, read from the database before generating."""

    exchange_id: str
    release_id: str
    bot_id: str
    question: str
    prompt: list[ChatMessage]
    params: GenerationParams
    adapter: str | None
    adapter_path: str | None
    direct_answer: str | None  # retrieval / holding candidates answer without a model
    live_answer: str | None
    top_score: float | None
    thumbs_down: bool
    policy: BotPolicy
    last_attempt: bool


class ShadowRetry(Exception):
    """The candidate's backend failed; the job goes back to the queue (attempts remain)."""


async def run_shadow_job(ctx: JobContext, runtime: Runtime) -> dict[str, Any]:
    """Job `shadow`, payload {"exchange_id", "release_id"}: generate and store one shadow answer."""
    settings = runtime.settings
    await wait_for_headroom(settings.shadow_busy_cpu, settings.shadow_max_defer_s)
    task = await asyncio.to_thread(_load_task, runtime.sessions, ctx)
    if isinstance(task, dict):
        return task
    if task.direct_answer is not None:
        result = Generation(answer=task.direct_answer, finish_reason="stop")
    else:
        async with _slots(settings.shadow_concurrency):
            result = await _generate(runtime, task)
        if result.status == "error" and result.finish_reason != "timeout" and not task.last_attempt:
            raise ShadowRetry(result.error)
    return await asyncio.to_thread(_store, runtime.sessions, task, result)


def candidate_prompt(release: Release, bot: Bot, exchange: Exchange) -> list[ChatMessage]:
    """The prompt the candidate would have been given for this exchange: its system prompt (or the
    bot's), the same conversation, and, for RAG modes, the same passages the live answer got."""
    system_prompt = (
        release.system_prompt if release.system_prompt is not None else bot.system_prompt
    )
    context = None
    if release.mode in RAG_MODES and exchange.passages:
        config = knowledge_of(bot.knowledge)
        context = build_context(
            [passage_of(p) for p in exchange.passages], max_chars=config.max_context_chars
        )
    return build_prompt(system_prompt, exchange.messages, context)


def _load_task(sessions: sessionmaker[Session], ctx: JobContext) -> ShadowTask | dict[str, Any]:
    exchange_id, release_id = ctx.payload["exchange_id"], ctx.payload["release_id"]
    with transaction(sessions) as session:
        done = session.scalar(
            select(ShadowAnswer.id).where(
                ShadowAnswer.exchange_id == exchange_id, ShadowAnswer.release_id == release_id
            )
        )
        if done is not None:  # stored by an earlier attempt that died before finishing the job
            return {"shadow_answer_id": done, "duplicate": True}
        exchange = session.get(Exchange, exchange_id)
        release = session.get(Release, release_id)
        if exchange is None or release is None:
            return {"skipped": "exchange or release deleted"}
        bot = session.get(Bot, exchange.bot_id)
        assert bot is not None  # exchanges and releases go with their bot
        max_attempts = session.scalar(select(Job.max_attempts).where(Job.id == ctx.job_id)) or 1
        return ShadowTask(
            exchange_id=exchange.id,
            release_id=release.id,
            bot_id=bot.id,
            question=question_of(exchange.messages),
            prompt=candidate_prompt(release, bot, exchange),
            params=GenerationParams.from_dict(
                exchange.params or {},
                GenerationParams(
                    max_tokens=bot.max_tokens, temperature=bot.temperature, top_p=bot.top_p
                ),
            ),
            adapter=release.adapter,
            adapter_path=release.adapter_path,
            direct_answer=_direct_answer(release, bot, exchange),
            live_answer=live_answer_to_compare(session, exchange),
            top_score=top_retrieval_score(exchange),
            thumbs_down=exchange.feedback == -1,
            policy=policy_of(bot.policy),
            last_attempt=ctx.attempt >= max_attempts,
        )


def _direct_answer(release: Release, bot: Bot, exchange: Exchange) -> str | None:
    if release.mode == "holding":
        return release.holding_message or bot.refusal_message
    if release.mode == "retrieval":
        passages = [passage_of(p) for p in exchange.passages or []]
        return retrieval_answer(passages) or release.holding_message or bot.refusal_message
    return None


async def _generate(runtime: Runtime, task: ShadowTask) -> Generation:
    timeout = runtime.settings.shadow_timeout_s
    started = time.perf_counter()
    result = Generation()
    try:
        async with asyncio.timeout(timeout):
            if task.adapter is not None and task.adapter_path is not None:
                await runtime.ensure_adapter(task.adapter, task.adapter_path)
            try:
                completion = await runtime.backend.complete(task.prompt, task.params, task.adapter)
            except AdapterMissing:
                # The backend lost it (a vLLM restart); nothing was generated: load, then retry.
                if task.adapter is None or task.adapter_path is None:
                    raise
                await runtime.reload_adapter(task.adapter, task.adapter_path)
                completion = await runtime.backend.complete(task.prompt, task.params, task.adapter)
    except TimeoutError:
        result.status, result.finish_reason, result.error = (
            "error",
            "timeout",
            f"no answer within {timeout:g} s",
        )
    except Exception as exc:  # noqa: BLE001 - any failure of the candidate is its result, never the worker's
        result.status, result.finish_reason, result.error = (
            "error",
            "error",
            f"{type(exc).__name__}: {exc}",
        )
    else:
        result.answer, result.finish_reason = completion.text, completion.finish_reason
        result.prompt_tokens, result.completion_tokens = (
            completion.prompt_tokens,
            completion.completion_tokens,
        )
        if completion.finish_reason == "error":
            result.status, result.error = "error", "the backend reported an error while generating"
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result


def _store(sessions: sessionmaker[Session], task: ShadowTask, result: Generation) -> dict[str, Any]:
    """Insert the answer and its review decision together; a duplicate means another attempt won."""
    try:
        with transaction(sessions) as session:
            answer = ShadowAnswer(
                id=new_id("shadow"),
                exchange_id=task.exchange_id,
                release_id=task.release_id,
                answer=result.answer,
                status=result.status,
                finish_reason=result.finish_reason,
                error=result.error,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                latency_ms=round(result.latency_ms, 3),
            )
            session.add(answer)
            session.flush()
            item = None
            if result.status == "completed":
                item = enqueue_review(
                    session,
                    bot_id=task.bot_id,
                    exchange_id=task.exchange_id,
                    release_id=task.release_id,
                    shadow_answer_id=answer.id,
                    question=task.question,
                    answer=result.answer,
                    live_answer=task.live_answer,
                    top_retrieval_score=task.top_score,
                    thumbs_down=task.thumbs_down,
                    policy=task.policy,
                    rng=_rng,
                )
            return {
                "shadow_answer_id": answer.id,
                "status": result.status,
                "latency_ms": answer.latency_ms,
                "review_item_id": item.id if item else None,
            }
    except IntegrityError:
        with transaction(sessions) as session:
            done = session.scalar(
                select(ShadowAnswer.id).where(
                    ShadowAnswer.exchange_id == task.exchange_id,
                    ShadowAnswer.release_id == task.release_id,
                )
            )
        if done is None:  # not a duplicate: the exchange or release was deleted meanwhile
            return {"skipped": "exchange or release deleted"}
        return {"shadow_answer_id": done, "duplicate": True}


# One cap per event loop (= per process in the server): asyncio primitives belong to one loop.
_semaphores: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = WeakKeyDictionary()


def _slots(limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    semaphore = _semaphores.get(loop)
    if semaphore is None:
        semaphore = _semaphores[loop] = asyncio.Semaphore(limit)
    return semaphore
