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
    passages = kb.retriever.search_by_vector(DEMO_BOT, vector, k=5)
    return guard.assess(question, passages, question_vector=vector)


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
        passages = demo_kb.retriever.search_by_vector(DEMO_BOT, vector, k=5)
        decision = await guard.decide(question, passages, question_vector=vector)
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
    passages = demo_kb.retriever.search(DEMO_BOT, question, k=5)
    decision = await guard.decide(question, passages)
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
    refusal = bare.assess("Who won the 2014 World Cup?", [])
    assert refusal.verdict == "refuse" and refusal.signals.out_of_scope_similarity is None
    assert (
        refusal.refusal_message == "Sorry, I can only help with questions about Kestrel Glow lamps."
    )
