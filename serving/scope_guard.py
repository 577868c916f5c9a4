"""The scope guard: decide whether a bot should answer a question at all.

Signals, all cosine similarities in [0, 1] from the bot's embedder:
- `top_retrieval_score`: how well the bot's documents match the question;
- `in_scope_similarity`: nearest of the scope's topics and example questions;
- `out_of_scope_similarity`: nearest of the scope's out-of-scope examples;
- optionally an LLM's IN/OUT verdict through a `Backend`, asked only when the rest is unsure.

When the embedding signals are clear the guard decides alone, so an obviously out-of-scope
question is refused without any model call.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from serving.backend import Backend, BackendError, ChatMessage, GenerationParams
from serving.knowledge.embedders import Embedder
from serving.knowledge.retriever import Passage

log = logging.getLogger(__name__)

Verdict = Literal["answer", "refuse", "unsure"]

DEFAULT_REFUSAL = "Sorry, I can only help with questions about {topics}."


@dataclass(frozen=True)
class Scope:
    """What a bot is for. `refusal_message` may contain `{topics}`."""

    topics: tuple[str, ...] = ()
    example_questions: tuple[str, ...] = ()
    out_of_scope_examples: tuple[str, ...] = ()
    refusal_message: str = DEFAULT_REFUSAL
    description: str = ""

    @property
    def refusal(self) -> str:
        topics = ", ".join(self.topics) or "this product"
        return self.refusal_message.replace("{topics}", topics)


@dataclass(frozen=True)
class GuardThresholds:
    """Cut-offs on cosine similarity. The defaults are calibrated for all-MiniLM-L6-v2 on the demo
    set (bench/guard.py); other models (Instructor scores run higher) need their own."""

    #: A passage this similar means the documents cover the question → answer.
    retrieval_answer: float = 0.55
    #: Below this (and below `example_floor`) nothing supports the question → refuse.
    retrieval_floor: float = 0.30
    #: This close to an in-scope example or topic → answer.
    example_answer: float = 0.70
    example_floor: float = 0.40
    #: This close to an out-of-scope example, and `margin` closer than to anything in scope → refuse.
    out_of_scope: float = 0.55
    margin: float = 0.05


@dataclass(frozen=True)
class GuardSignals:
    top_retrieval_score: float | None
    in_scope_similarity: float | None
    nearest_in_scope: str | None
    out_of_scope_similarity: float | None
    nearest_out_of_scope: str | None
    llm_verdict: Literal["in", "out", "unclear"] | None = None


@dataclass(frozen=True)
class GuardDecision:
    """The verdict, why, and every signal used (log it with the exchange)."""

    verdict: Verdict
    reason: str
    signals: GuardSignals
    refusal_message: str | None = None

    @property
    def used_llm(self) -> bool:
        return self.signals.llm_verdict is not None

    def as_log(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, **asdict(self.signals)}


@dataclass
class ScopeGuard:
    """Decides answer / refuse / unsure for a bot's scope.

    `instruction` is the query-side instruction used to embed questions and examples alike
    (None: the embedder's default query instruction). A `question_vector` passed to `assess`
    must have been made with the same instruction, e.g. the vector the retriever just used.
    """

    scope: Scope
    embedder: Embedder
    thresholds: GuardThresholds = field(default_factory=GuardThresholds)
    backend: Backend | None = None
    instruction: str | None = None
    adapter: str | None = None

    def __post_init__(self) -> None:
        self._anchors: tuple[np.ndarray, np.ndarray] | None = None

    def assess(
        self,
        question: str,
        passages: Sequence[Passage] | None = None,
        *,
        question_vector: Sequence[float] | None = None,
    ) -> GuardDecision:
        """Decide from embedding signals only. `passages` are the retrieval results for the
        question (None if retrieval did not run, so that signal is left out)."""
        vector = np.asarray(
            question_vector
            if question_vector is not None
            else self.embedder.embed_query(question, self.instruction),
            dtype=np.float32,
        )
        in_vecs, out_vecs = self._anchor_vectors()
        in_texts = [*self.scope.topics, *self.scope.example_questions]
        in_sim, in_best = _nearest(vector, in_vecs, in_texts)
        out_sim, out_best = _nearest(vector, out_vecs, list(self.scope.out_of_scope_examples))
        retrieval = None if passages is None else max((p.score for p in passages), default=0.0)
        signals = GuardSignals(retrieval, in_sim, in_best, out_sim, out_best)
        verdict, reason = _decide(signals, self.thresholds)
        return self._decision(verdict, reason, signals)

    async def decide(
        self,
        question: str,
        passages: Sequence[Passage] | None = None,
        *,
        question_vector: Sequence[float] | None = None,
    ) -> GuardDecision:
        """`assess`, then ask the LLM through the backend if the signals are unsure (and a backend
        is configured). The result stays "unsure" if the model's reply cannot be read."""
        # Embedding blocks for ~10 ms on a CPU: keep it off the event loop.
        decision = await asyncio.to_thread(
            self.assess, question, passages, question_vector=question_vector
        )
        if decision.verdict != "unsure" or self.backend is None:
            return decision
        llm = await self._ask_llm(question)
        signals = GuardSignals(**{**asdict(decision.signals), "llm_verdict": llm})
        if llm == "in":
            return self._decision("answer", "the model judged the question in scope", signals)
        if llm == "out":
            return self._decision("refuse", "the model judged the question out of scope", signals)
        return self._decision(
            "unsure", decision.reason + "; the model's check was inconclusive", signals
        )

    def _decision(self, verdict: Verdict, reason: str, signals: GuardSignals) -> GuardDecision:
        refusal = self.scope.refusal if verdict == "refuse" else None
        return GuardDecision(verdict, reason, signals, refusal)

    def _anchor_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._anchors is None:

            def embed(texts: Sequence[str]) -> np.ndarray:
                if not texts:
                    return np.zeros((0, self.embedder.dimension), dtype=np.float32)
                # One batch, with the query-side instruction: examples are questions too.
                instruction = self.instruction or getattr(
                    self.embedder, "default_query_instruction", None
                )
                return np.asarray(
                    self.embedder.embed_documents(list(texts), instruction),
                    dtype=np.float32,
                )

            self._anchors = (
                embed([*self.scope.topics, *self.scope.example_questions]),
                embed(self.scope.out_of_scope_examples),
            )
        return self._anchors

    async def _ask_llm(self, question: str) -> Literal["in", "out", "unclear"]:
        assert self.backend is not None
        try:
            completion = await self.backend.complete(
                _llm_messages(self.scope, question),
                GenerationParams(max_tokens=4, temperature=0.0),
                adapter=self.adapter,
            )
        except BackendError as exc:
            log.warning("scope check through the backend failed: %s", exc)
            return "unclear"
        word = re.sub(r"[^A-Z]", " ", completion.text.upper()).split()
        first = word[0] if word else ""
        if first in ("IN", "YES"):
            return "in"
        if first in ("OUT", "NO"):
            return "out"
        return "unclear"


def _decide(s: GuardSignals, t: GuardThresholds) -> tuple[Verdict, str]:
    support = max(s.top_retrieval_score or 0.0, s.in_scope_similarity or 0.0)
    if (
        s.out_of_scope_similarity is not None
        and s.out_of_scope_similarity >= t.out_of_scope
        and s.out_of_scope_similarity - support >= t.margin
    ):
        return "refuse", f"close to the out-of-scope example {s.nearest_out_of_scope!r}"
    outscored = s.out_of_scope_similarity is not None and s.out_of_scope_similarity >= support
    if not outscored:
        if s.top_retrieval_score is not None and s.top_retrieval_score >= t.retrieval_answer:
            return "answer", "the documents cover the question"
        if s.in_scope_similarity is not None and s.in_scope_similarity >= t.example_answer:
            return "answer", f"close to the in-scope example {s.nearest_in_scope!r}"
    weak_docs = s.top_retrieval_score is None or s.top_retrieval_score < t.retrieval_floor
    weak_examples = s.in_scope_similarity is None or s.in_scope_similarity < t.example_floor
    if weak_docs and weak_examples:
        return "refuse", "neither the documents nor the scope's examples relate to the question"
    return "unsure", "the signals are between the thresholds"


def _nearest(
    vector: np.ndarray, matrix: np.ndarray, texts: list[str]
) -> tuple[float | None, str | None]:
    if matrix.shape[0] == 0:
        return None, None
    sims = matrix @ vector
    best = int(np.argmax(sims))
    return float(np.clip(sims[best], 0.0, 1.0)), texts[best]


def _llm_messages(scope: Scope, question: str) -> list[ChatMessage]:
    examples = "\n".join(f"- {q}" for q in scope.example_questions[:8])
    counter = "\n".join(f"- {q}" for q in scope.out_of_scope_examples[:8])
    system = (
        "You decide whether a customer's question is within the scope of a support assistant.\n"
        f"Scope: {scope.description or ', '.join(scope.topics)}\n"
        f"Topics: {', '.join(scope.topics)}\n"
        f"In-scope examples:\n{examples}\n"
        f"Out-of-scope examples:\n{counter}\n"
        "Reply with exactly one word: IN or OUT."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
