"""The scope guard on the demo bot's labelled questions (real MiniLM, real retrieval), and its
LLM fallback through a Backend, asked only when the embedding signals are unsure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import torch

from serving.backend import (
    Backend,
    BackendError,
    ChatMessage,
    Finished,
    GenerationParams,
    StreamEvent,
    TextDelta,
)
from serving.knowledge import ChromaStore, KnowledgeBase, load_embedder
from serving.knowledge.demo import DEMO_BOT, demo_documents, demo_questions, demo_scope
from serving.scope_guard import GuardDecision, Scope, ScopeGuard

pytestmark = pytest.mark.slow


class ScriptedBackend(Backend):
    """Answers every request with a fixed reply (or fails), counting calls."""

    kind = "scripted"

    def __init__(self, reply: str | Exception) -> None:
        self.reply = reply
        self.calls: list[Sequence[ChatMessage]] = []

    @property
    def model_name(self) -> str:
        return "scripted"

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        yield TextDelta(self.reply)
        yield Finished("stop", 10, 1)

    async def health(self) -> bool:
        return True


@pytest.fixture(scope="module")
def demo_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    torch.set_num_threads(1)
    kb = KnowledgeBase(ChromaStore.open(tmp_path_factory.mktemp("chroma")), load_embedder())
    assert all(r.ok for r in kb.ingest_files(DEMO_BOT, demo_documents()))
    return kb


def check(kb: KnowledgeBase, guard: ScopeGuard, question: str) -> GuardDecision:
    vector = kb.retriever.embed_query(question)
    found = kb.retriever.hybrid_search(DEMO_BOT, question, vector, k=5)
    return guard.assess(question, found, question_vector=vector)


def test_demo_set_in_scope_is_never_refused_and_out_of_scope_mostly_is(
    demo_kb: KnowledgeBase,
) -> None:
    guard = ScopeGuard(demo_scope(), demo_kb.embedder)
    decisions = {q.id: (q, check(demo_kb, guard, q.question)) for q in demo_questions()}
    in_scope = [d for q, d in decisions.values() if q.in_scope]
    out_scope = [d for q, d in decisions.values() if not q.in_scope]
    assert len(in_scope) >= 20 and len(out_scope) >= 10
    assert not [d for d in in_scope if d.verdict == "refuse"]
    assert sum(d.verdict == "answer" for d in in_scope) >= 0.8 * len(in_scope)
    assert not [d for d in out_scope if d.verdict == "answer"]
    assert sum(d.verdict == "refuse" for d in out_scope) >= 0.8 * len(out_scope)
    refused = next(d for d in out_scope if d.verdict == "refuse")
    assert refused.refusal_message == demo_scope().refusal and refused.reason


async def test_sure_decisions_make_no_model_call(demo_kb: KnowledgeBase) -> None:
    backend = ScriptedBackend("IN")
    guard = ScopeGuard(demo_scope(), demo_kb.embedder, backend=backend)
    for question, verdict in [
        ("Can you give me a recipe for banana bread?", "refuse"),
        ("How do I factory reset my Glow lamp?", "answer"),
    ]:
        vector = demo_kb.retriever.embed_query(question)
        found = demo_kb.retriever.hybrid_search(DEMO_BOT, question, vector, k=5)
        decision = await guard.decide(question, found, question_vector=vector)
        assert decision.verdict == verdict and not decision.used_llm
    assert backend.calls == []


@pytest.mark.parametrize(
    ("reply", "verdict", "llm"),
    [
        ("IN", "answer", "in"),
        ("OUT.", "refuse", "out"),
        ("Maybe?", "unsure", "unclear"),
        (BackendError("upstream down"), "unsure", "unclear"),
    ],
)
async def test_unsure_questions_go_to_the_model(
    demo_kb: KnowledgeBase, reply: str | Exception, verdict: str, llm: str
) -> None:
    backend = ScriptedBackend(reply)
    guard = ScopeGuard(demo_scope(), demo_kb.embedder, backend=backend)
    question = "What is the share price of Kestrel Lighting today?"
    assert check(demo_kb, ScopeGuard(demo_scope(), demo_kb.embedder), question).verdict == "unsure"
    vector = demo_kb.retriever.embed_query(question)
    found = demo_kb.retriever.hybrid_search(DEMO_BOT, question, vector, k=5)
    decision = await guard.decide(question, found)
    assert (decision.verdict, decision.signals.llm_verdict) == (verdict, llm)
    assert len(backend.calls) == 1
    system = backend.calls[0][0]["content"]
    assert "Kestrel Glow smart lamps" in system and "IN or OUT" in system
    assert backend.calls[0][-1] == {"role": "user", "content": question}
    log = decision.as_log()
    assert log["verdict"] == verdict and log["top_retrieval_score"] is not None


def test_guard_works_without_retrieval_or_examples(demo_kb: KnowledgeBase) -> None:
    guard = ScopeGuard(demo_scope(), demo_kb.embedder)
    decision = guard.assess("What does error E01 mean on my lamp?")  # retrieval not run
    assert decision.verdict == "answer" and decision.signals.top_retrieval_score is None
    bare = ScopeGuard(Scope(topics=("Kestrel Glow lamps",)), demo_kb.embedder)
    refusal = bare.assess("Who won the 2014 World Cup?")
    assert refusal.verdict == "refuse" and refusal.signals.out_of_scope_similarity is None
    assert (
        refusal.refusal_message == "Sorry, I can only help with questions about Kestrel Glow lamps."
    )


def bare_scope() -> Scope:
    """What a new user types: a name and a scope sentence, no topics, no examples."""
    return Scope(
        name="Kestrel Lighting",
        description="Customer support for Kestrel Glow smart lamps and the Perch hub.",
        refusal_message="Sorry, I can only help with Kestrel lamps.",
    )


@pytest.mark.parametrize(
    ("question", "verdict"),
    [
        ("Give me a recipe for banana bread that stays moist.", "refuse"),
        ("Who won the last FIFA World Cup?", "refuse"),
        # Near the field: another product of the same kind, which the documents never mention.
        ("How do I pair my Philips Hue bulbs with the Hue Bridge?", "refuse"),
        ("Why is the ring on my hub blinking red?", "answer"),
        ("How do I factory reset my Glow lamp?", "answer"),
    ],
)
def test_the_guard_is_on_from_the_documents_alone(
    demo_kb: KnowledgeBase, question: str, verdict: str
) -> None:
    decision = check(demo_kb, ScopeGuard(bare_scope(), demo_kb.embedder), question)
    assert decision.verdict == verdict, decision
    if verdict == "refuse":
        assert decision.reply == "Sorry, I can only help with Kestrel lamps."


def test_a_question_about_another_product_is_refused_for_what_it_is_about(
    demo_kb: KnowledgeBase,
) -> None:
    decision = check(
        demo_kb,
        ScopeGuard(bare_scope(), demo_kb.embedder),
        "How do I pair my Philips Hue bulbs with the Hue Bridge?",
    )
    assert "philip" in decision.signals.unknown_terms and (decision.signals.salience or 0) > 0.1
    assert "do not cover" in decision.reason


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Hello, what can you help me with?", "greeting"),
        ("hi there!", "greeting"),
        ("Are you a bot or a real person?", "greeting"),
        ("thanks, that worked!", "thanks"),
        ("Thank you so much", "thanks"),
        ("bye", "goodbye"),
    ],
)
def test_small_talk_gets_a_friendly_answer_that_says_what_the_bot_covers(
    demo_kb: KnowledgeBase, message: str, kind: str
) -> None:
    decision = check(demo_kb, ScopeGuard(bare_scope(), demo_kb.embedder), message)
    assert decision.verdict == "smalltalk" and decision.signals.small_talk == kind
    assert decision.refusal_message is None and decision.reply
    if kind == "greeting":
        assert "Kestrel Lighting" in decision.reply and "Perch hub" in decision.reply
    topics = ScopeGuard(demo_scope(), demo_kb.embedder)
    assert "Kestrel Glow smart lamps" in (check(demo_kb, topics, message).reply or "")


def test_a_question_that_starts_with_a_greeting_is_still_a_question(
    demo_kb: KnowledgeBase,
) -> None:
    decision = check(
        demo_kb, ScopeGuard(bare_scope(), demo_kb.embedder), "Hi! How do I factory reset my lamp?"
    )
    assert decision.verdict == "answer"


def test_with_no_documents_the_scope_text_decides(demo_kb: KnowledgeBase) -> None:
    guard = ScopeGuard(bare_scope(), demo_kb.embedder)
    assert guard.assess("How do I cook pasta al dente?").verdict == "refuse"
    assert guard.assess("My Kestrel Glow lamp does not connect to the hub").verdict != "refuse"
    nothing = ScopeGuard(Scope(), demo_kb.embedder)
    assert nothing.assess("How do I cook pasta al dente?").verdict == "answer"
