"""Shadow mode: candidates answer the live exchanges' prompts in the background, durably, exactly
once, and never at the client's expense; their answers feed the review queue."""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update

from api.db import transaction
from api.ids import new_id
from api.jobs.handlers import bind
from api.jobs.headroom import wait_for_headroom
from api.jobs.worker import JobContext, Worker
from api.models import Bot, Exchange, Job, ReviewItem, ShadowAnswer
from api.services.bots.policy import BotPolicy
from api.services.chat.exchange_writer import ExchangeWriter
from api.services.chat.exchanges import ExchangeRecord
from api.services.knowledge.passages import passage_dict, retrieval_answer
from api.services.releases.shadow import run_shadow_job, shadow_job_rows
from api.settings import Settings
from serving.knowledge import Passage, build_context
from serving.prompting import build_prompt
from tests.api.conftest import Harness, chat_body, harness_with
from tests.api.routes.test_releases import CandidateBackend, admin, new_release
from tests.support.servers import wait_for

T = TypeVar("T")
LIVE_WORDS = ["Reset", " it", " from", " the", " account", " page", "."]
OTHER_WORDS = ["Completely", " unrelated", " reply", " about", " lamps"]


@pytest.fixture
def shadow_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"shadow_timeout_s": 1.0})


@pytest.fixture
def h(shadow_settings: Settings) -> Iterator[Harness]:
    with harness_with(shadow_settings, CandidateBackend(LIVE_WORDS)) as harness:
        yield harness


def rows(h: Harness, model: type[T], *where: Any) -> list[T]:
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(model).where(*where)))  # type: ignore[call-overload]


def shadow_jobs_done(h: Harness, count: int) -> list[Job]:
    jobs = rows(h, Job, Job.kind == "shadow")
    return (
        jobs
        if len(jobs) == count and all(j.status in ("succeeded", "failed") for j in jobs)
        else []
    )


def bot_id(h: Harness, slug: str = "acme") -> str:
    return rows(h, Bot, Bot.slug == slug)[0].id


# -- sampling -----------------------------------------------------------------------------------


def test_shadow_job_rows_follow_the_bots_sample_rate() -> None:
    rng = random.Random(7)
    [a, b] = shadow_job_rows("exch_1", "bot_1", BotPolicy(), ["rel_a", "rel_b"], rng)
    assert (a["kind"], a["bot_id"], a["status"], a["attempts"]) == ("shadow", "bot_1", "queued", 0)
    assert [a["payload"], b["payload"]] == [
        {"exchange_id": "exch_1", "release_id": "rel_a"},
        {"exchange_id": "exch_1", "release_id": "rel_b"},
    ]
    assert a["id"] != b["id"] and a["id"].startswith("job_")
    assert (
        shadow_job_rows("exch_1", "bot_1", BotPolicy(shadow_sample_rate=0.0), ["rel_a"], rng) == []
    )
    assert shadow_job_rows("exch_1", "bot_1", BotPolicy(), [], rng) == []
    quarter = BotPolicy(shadow_sample_rate=0.25)
    drawn = [
        shadow_job_rows(f"exch_{i}", "bot_1", quarter, ["rel_a", "rel_b"], rng) for i in range(2000)
    ]
    sampled = [d for d in drawn if d]
    assert 400 <= len(sampled) <= 600
    assert all(len(d) == 2 for d in sampled)  # candidates are compared on the same exchanges


# -- end to end through the chat API --------------------------------------------------------------


def test_each_candidate_answers_the_same_conversation_in_the_background(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    backend.answers["acme-cand-v2"] = OTHER_WORDS
    cand_a = new_release(
        h, adapter="acme-cand-v2", adapter_path="/adapters/cand-v2", mode="adapter", candidate=True
    )
    cand_b = new_release(h, system_prompt="Candidate B: answer in one sentence.", candidate=True)
    conversation = [
        {"role": "user", "content": "My lamp will not connect."},
        {"role": "assistant", "content": "Is the hub online?"},
        {"role": "user", "content": "Yes, the hub is online. How do I reset my password?"},
    ]
    r = h.client.post(
        "/v1/chat/completions",
        headers=h.auth(),
        json={**chat_body(), "messages": conversation, "temperature": 0.2, "max_tokens": 32},
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "".join(
        LIVE_WORDS
    )
    exchange_id = r.headers["x-exchange-id"]

    jobs = wait_for(lambda: shadow_jobs_done(h, 2), what="both shadow jobs")
    assert all(
        j.status == "succeeded" and j.attempts == 1 and j.payload["exchange_id"] == exchange_id
        for j in jobs
    )
    answers = {a.release_id: a for a in rows(h, ShadowAnswer)}
    assert set(answers) == {cand_a["id"], cand_b["id"]}
    a, b = answers[cand_a["id"]], answers[cand_b["id"]]
    assert a.exchange_id == b.exchange_id == exchange_id
    assert (a.status, a.answer, a.finish_reason) == ("completed", "".join(OTHER_WORDS), "stop")
    assert b.answer == "".join(LIVE_WORDS)
    assert a.prompt_tokens > 0 and a.completion_tokens == len(OTHER_WORDS) and a.latency_ms > 0
    assert {j.result["shadow_answer_id"] for j in jobs if j.result} == {a.id, b.id}  # type: ignore[index]

    # Same history, same parameters; only each release's own system prompt and adapter differ.
    live, *shadow = backend.calls
    by_adapter = {call[2]: call for call in shadow}
    assert live[2] is None and live[0][0]["content"] == "You are Acme's bot."
    for messages, params, _ in shadow:
        assert messages[1:] == live[0][1:] and (params.temperature, params.max_tokens) == (0.2, 32)
    assert (
        by_adapter["acme-cand-v2"][0][0]["content"] == "You are Acme's bot."
    )  # no frozen prompt: the bot's
    assert by_adapter[None][0][0]["content"] == "Candidate B: answer in one sentence."

    items = {i.release_id: i for i in rows(h, ReviewItem) if i.shadow_answer_id is not None}
    assert set(items) == {cand_a["id"], cand_b["id"]}
    assert items[cand_a["id"]].shadow_answer_id == a.id and items[cand_a["id"]].status == "pending"
    assert (
        "disagreement" in items[cand_a["id"]].reasons
        and "disagreement" not in items[cand_b["id"]].reasons
    )
    assert items[cand_a["id"]].priority > items[cand_b["id"]].priority
    # The live answer is fed too, to be drawn at the live rate (tests/api/services/review/test_feed.py).
    assert [j.payload["exchange_id"] for j in rows(h, Job, Job.kind == "review_feed")] == [
        exchange_id
    ]


def test_sampling_and_detaching_decide_which_exchanges_are_shadowed(h: Harness) -> None:
    cand = new_release(h, system_prompt="Candidate.", candidate=True)
    r = h.client.patch(
        "/api/bots/acme", headers=admin(h), json={"policy": {"shadow_sample_rate": 0.0}}
    )
    assert r.status_code == 200, r.text
    h.client.post("/v1/chat/completions", headers=h.auth(), json=chat_body())
    assert rows(h, Job, Job.kind == "shadow") == []
    h.client.patch("/api/bots/acme", headers=admin(h), json={"policy": {"shadow_sample_rate": 1.0}})
    h.client.post("/v1/chat/completions", headers=h.auth(), json=chat_body())
    wait_for(lambda: shadow_jobs_done(h, 1), what="the shadow job")
    h.client.post(f"/api/bots/acme/releases/{cand['id']}/detach", headers=admin(h))
    h.client.post("/v1/chat/completions", headers=h.auth(), json=chat_body())
    assert len(rows(h, Job, Job.kind == "shadow")) == 1 and len(rows(h, ShadowAnswer)) == 1
    # Without candidates the live answer itself goes to the review feed.
    last = h.exchanges()[-1]
    wait_for(
        lambda: [
            j
            for j in rows(h, Job, Job.kind == "review_feed")
            if j.status == "succeeded" and j.payload["exchange_id"] == last.id
        ]
    )
    # (Earlier live answers may be drawn at the live rate too; this one is reviewed for sure.)
    [live_item] = [i for i in rows(h, ReviewItem) if i.exchange_id == last.id]
    assert live_item.release_id == last.release_id and live_item.shadow_answer_id is None


# -- isolation ----------------------------------------------------------------------------------


def timed_chat(h: Harness, content: str) -> tuple[float, str]:
    started = time.perf_counter()
    r = h.client.post("/v1/chat/completions", headers=h.auth(), json=chat_body(content))
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    return elapsed, r.json()["choices"][0]["message"]["content"]


def test_hanging_or_failing_candidates_leave_client_answers_and_latency_alone(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    backend.delay = 0.01  # a live answer takes ~70 ms of "generation"
    questions = [f"Question number {i} about my password?" for i in range(4)]
    baseline = [timed_chat(h, q) for q in questions]

    backend.misbehave = {"acme-hang-v2": "hang", "FAILING-CANDIDATE": "fail"}
    hang = new_release(
        h, adapter="acme-hang-v2", adapter_path="/adapters/hang", mode="adapter", candidate=True
    )
    fail = new_release(h, system_prompt="FAILING-CANDIDATE prompt", candidate=True)
    first = timed_chat(h, questions[0])
    # While the worker is stuck on the hanging candidate, clients keep getting answers at full speed.
    wait_for(
        lambda: any(call[2] == "acme-hang-v2" for call in backend.calls),
        what="the hanging candidate",
    )
    shadowed = [first] + [timed_chat(h, q) for q in questions[1:]]

    assert [a for _, a in shadowed] == [a for _, a in baseline] == ["".join(LIVE_WORDS)] * 4
    timeout = h.settings.shadow_timeout_s
    assert max(t for t, _ in shadowed) < timeout / 2  # never waited for a candidate
    assert (
        statistics.median(t for t, _ in shadowed)
        <= 2 * statistics.median(t for t, _ in baseline) + 0.05
    )
    stored = [e.latency_ms for e in h.exchanges()]
    assert max(stored[4:]) < timeout * 1000 / 2

    jobs = wait_for(lambda: shadow_jobs_done(h, 8), timeout=30, what="all shadow jobs")
    assert {j.status for j in jobs} == {
        "succeeded"
    }  # a broken candidate is a result, not a stuck job
    answers = rows(h, ShadowAnswer)
    assert len(answers) == 8 and {a.status for a in answers} == {"error"}
    hung = [a for a in answers if a.release_id == hang["id"]]
    assert {a.finish_reason for a in hung} == {"timeout"} and all(
        a.latency_ms >= timeout * 1000 for a in hung
    )
    failed = [a for a in answers if a.release_id == fail["id"]]
    assert all("candidate engine is down" in (a.error or "") for a in failed)
    # A failing backend is retried (it may be a blip) before its error is stored; a timeout is final.
    attempts = {j.payload["release_id"]: j.attempts for j in jobs}
    assert attempts == {hang["id"]: 1, fail["id"]: 3}
    assert (
        rows(h, ReviewItem, ReviewItem.shadow_answer_id.is_not(None)) == []
    )  # errors are not reviewed


def test_background_work_waits_while_the_process_is_busy_serving() -> None:
    async def waited(busy_cpu: float | None, max_defer_s: float) -> float:
        return await wait_for_headroom(busy_cpu, max_defer_s)

    assert asyncio.run(waited(None, 5.0)) == 0.0
    assert asyncio.run(waited(0.5, 5.0)) < 1.0  # an idle process: at once (one probe or a few)
    stop = threading.Event()

    def serve_hard() -> None:  # stands in for a saturated gateway: one core of pure Python
        while not stop.is_set():
            sum(range(1000))

    burner = threading.Thread(target=serve_hard)
    burner.start()
    try:
        held = asyncio.run(waited(0.5, 0.4))
    finally:
        stop.set()
        burner.join()
    assert held >= 0.4  # held for the whole bound, then released


# -- the same passages -----------------------------------------------------------------------------


def passages() -> list[Passage]:
    return [
        Passage(
            "c1",
            "d1",
            "Hold the reset button for ten seconds.",
            0.31,
            "manual.md",
            "Manual",
            ("Reset",),
            None,
        ),
        Passage(
            "c2",
            "d2",
            "The ring blinks red when offline.",
            0.22,
            "faq.pdf",
            "FAQ",
            ("Hub", "Lights"),
            3,
        ),
    ]


def store_exchange(
    h: Harness,
    *,
    candidates: list[str],
    answer: str,
    passages: list[dict[str, Any]],
    flags: list[str] | None = None,
) -> str:
    """An exchange written the way the chat path writes it: with its shadow jobs in one transaction."""
    exchange_id, bid = new_id("exch"), bot_id(h)
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        live = session.get(Bot, bid).live_release_id  # type: ignore[union-attr]
    record = ExchangeRecord(
        id=exchange_id,
        bot_id=bid,
        conversation_id="conv_1",
        release_id=live,
        api_key_id=None,
        messages=[
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": "Earlier answer"},
            {"role": "user", "content": "How do I reset the hub?"},
        ],
        params={"max_tokens": 40, "temperature": 0.0, "top_p": 1.0, "stop": [], "seed": 3},
        answer=answer,
        status="completed",
        finish_reason="stop",
        error=None,
        streamed=False,
        prompt_tokens=9,
        completion_tokens=5,
        latency_ms=12.0,
        ttft_ms=None,
        passages=passages,
        flags=flags or [],
    )
    jobs = shadow_job_rows(exchange_id, bid, BotPolicy(), candidates, random.Random())
    writer = ExchangeWriter(h.client.app.state.engine)  # type: ignore[attr-defined]
    try:
        asyncio.run(writer.write(record, jobs))
    finally:
        writer.stop()
    return exchange_id


def test_candidates_answer_from_the_passages_the_live_answer_had(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    rag = new_release(h, system_prompt="RAG candidate.", mode="rag", candidate=True)
    plain = new_release(
        h, adapter="acme-plain-v3", adapter_path="/adapters/v3", mode="adapter", candidate=True
    )
    retrieval = new_release(h, mode="retrieval", candidate=True)
    found = passages()
    exchange_id = store_exchange(
        h,
        candidates=[rag["id"], plain["id"], retrieval["id"]],
        answer="Hold the reset button [1].",
        passages=[passage_dict(p) for p in found],
    )
    wait_for(lambda: shadow_jobs_done(h, 3), what="three shadow jobs")

    history = [
        {"role": "user", "content": "Earlier question"},
        {"role": "assistant", "content": "Earlier answer"},
    ]
    conversation = [*history, {"role": "user", "content": "How do I reset the hub?"}]
    expected = build_prompt("RAG candidate.", conversation, build_context(found, max_chars=4000))
    calls = {adapter: (messages, params) for messages, params, adapter in backend.calls}
    assert calls[None][0] == expected  # the very prompt the live path builds from these passages
    assert (calls[None][1].temperature, calls[None][1].seed, calls[None][1].max_tokens) == (
        0.0,
        3,
        40,
    )
    # An adapter-only candidate gets the conversation without sources; a retrieval one needs no model.
    assert calls["acme-plain-v3"][0] == [
        {"role": "system", "content": "You are Acme's bot."},
        *history,
        {"role": "user", "content": "How do I reset the hub?"},
    ]
    assert len(backend.calls) == 2
    answers = {
        a.release_id: a for a in rows(h, ShadowAnswer, ShadowAnswer.exchange_id == exchange_id)
    }
    assert (
        answers[retrieval["id"]].answer == retrieval_answer(found)
        and answers[retrieval["id"]].status == "completed"
    )
    # Both passages scored under the bot's 0.40 threshold: a priority for review.
    assert all("low_retrieval" in i.reasons for i in rows(h, ReviewItem))


# -- exactly once ---------------------------------------------------------------------------------


def test_a_job_rerun_after_a_crash_stores_one_answer(shadow_settings: Settings) -> None:
    settings = shadow_settings.model_copy(update={"run_worker": False})
    with harness_with(settings, CandidateBackend(LIVE_WORDS)) as h:
        runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
        cand = new_release(h, system_prompt="Candidate.", candidate=True)
        exchange_id = store_exchange(
            h, candidates=[cand["id"]], answer="".join(LIVE_WORDS), passages=[]
        )
        sessions = runtime.sessions
        [job] = rows(h, Job, Job.kind == "shadow")

        async def crash_after_storing() -> None:
            # A worker claims the job, stores the answer, then dies before marking the job done.
            dead = Worker(sessions, bind(runtime), worker_id="dead-worker", lease_s=30)
            claimed = dead._claim()
            assert claimed is not None and claimed["id"] == job.id
            ctx = JobContext(
                job_id=job.id,
                kind="shadow",
                bot_id=job.bot_id,
                payload=job.payload,
                attempt=1,
                sessions=sessions,
                worker_id="dead-worker",
                lease_s=30,
            )
            await run_shadow_job(ctx, runtime)

        asyncio.run(crash_after_storing())
        assert len(rows(h, ShadowAnswer)) == 1 and rows(h, Job)[0].status == "running"
        with transaction(sessions) as session:  # its lease runs out
            session.execute(update(Job).where(Job.id == job.id).values(locked_until=Job.created_at))

        calls = len(h.backend.calls)
        survivor = Worker(sessions, bind(runtime), worker_id="survivor", lease_s=30)
        assert asyncio.run(survivor.run_once()) is True
        [done] = rows(h, Job)
        assert (done.status, done.attempts, done.locked_by) == ("succeeded", 2, "survivor")
        assert done.result is not None and done.result["duplicate"] is True
        assert len(h.backend.calls) == calls  # the answer was not generated twice
        [answer] = rows(h, ShadowAnswer)
        assert answer.exchange_id == exchange_id and done.result["shadow_answer_id"] == answer.id
        assert len(rows(h, ReviewItem)) == 1

        # Two workers that both got to generate (a lease lost mid-generation): one insert wins.
        from api.services.chat.events import Generation
        from api.services.releases.shadow import _load_task, _store

        other = store_exchange(h, candidates=[cand["id"]], answer="x", passages=[])
        [job2] = [j for j in rows(h, Job) if j.payload["exchange_id"] == other]
        ctx = JobContext(
            job_id=job2.id,
            kind="shadow",
            bot_id=job2.bot_id,
            payload=job2.payload,
            attempt=1,
            sessions=sessions,
            worker_id="w",
            lease_s=30,
        )
        task = _load_task(sessions, ctx)
        assert not isinstance(task, dict)
        first = _store(sessions, task, Generation(answer="one"))
        second = _store(sessions, task, Generation(answer="two"))
        assert second == {"shadow_answer_id": first["shadow_answer_id"], "duplicate": True}
        assert [a.answer for a in rows(h, ShadowAnswer, ShadowAnswer.exchange_id == other)] == [
            "one"
        ]


def test_a_deleted_exchange_or_release_ends_the_job_quietly(shadow_settings: Settings) -> None:
    settings = shadow_settings.model_copy(update={"run_worker": False})
    with harness_with(settings, CandidateBackend()) as h:
        runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
        cand = new_release(h, candidate=True)
        store_exchange(h, candidates=[cand["id"]], answer="a", passages=[])
        with transaction(runtime.sessions) as session:
            session.query(Exchange).delete()
        worker = Worker(runtime.sessions, bind(runtime), lease_s=30)
        asyncio.run(worker.run_once())
        [job] = rows(h, Job)
        assert job.status == "succeeded" and job.result == {
            "skipped": "exchange or release deleted"
        }
