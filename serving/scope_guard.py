"""The scope guard: decide whether a bot should answer a question at all.

It runs for every bot. Its signals, from the bot's embedder and its documents:
- small talk: greetings, thanks and questions about the bot itself get a friendly reply that says
  what the bot covers, instead of a refusal;
- `support`: how well the documents answer the question — the best passage's cosine, lowered when
  the question's point is a word the documents never use (another product: "restic", "Veeam").
  That *salience* is measured with the embedder itself: how far the question's meaning moves when
  those words are taken out ("Home Depot" in a question about finding payments barely moves it;
  "restic" in "How do I set up restic …" moves it a lot);
- the scope's topics and example questions (and out-of-scope examples), which sharpen the decision;
  with no documents yet, the bot's name and scope text are the only signal;
- optionally an LLM's IN/OUT verdict through a `Backend`, asked only when the rest is unsure.

When the signals are clear the guard decides alone, so an off-topic question is refused without
any model call.
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
from serving.knowledge.lexical import terms
from serving.knowledge.retriever import SearchResult

log = logging.getLogger(__name__)

Verdict = Literal["answer", "refuse", "unsure", "smalltalk"]
SmallTalk = Literal["greeting", "thanks", "goodbye"]

DEFAULT_REFUSAL = "Sorry, I can only help with questions about {topics}."

#: Messages that are conversation, not questions about the product. Matched by meaning (the
#: embedder) and, for the shortest forms, by pattern.
SMALL_TALK: dict[SmallTalk, tuple[str, ...]] = {
    "greeting": (
        "Hello",
        "Hi there",
        "Hey, good morning",
        "Hello, what can you help me with?",
        "What can you do?",
        "Who are you?",
        "What are you?",
        "Are you a bot or a real person?",
        "Am I talking to a human?",
        "What kind of questions can I ask you?",
        "How does this chat work?",
    ),
    "thanks": (
        "Thanks!",
        "Thank you, that worked!",
        "Great, thanks for the help",
        "Perfect, that solved it",
        "Cheers, much appreciated",
    ),
    "goodbye": ("Bye", "Goodbye, have a nice day", "That's all, see you"),
}
_SHORT_TALK = re.compile(
    r"^\W*(?:(?P<greeting>hi+|hello+|hey+|hiya|howdy|good (?:morning|afternoon|evening)|greetings)"
    r"|(?P<thanks>thanks?(?: you)?(?: (?:so|very) much)?|thx|ty|cheers|much appreciated)"
    r"|(?P<goodbye>bye+|goodbye|see you|see ya|good night))"
    r"(?:\W+(?:there|all|everyone|again|a lot|bot|team|!)?)*\W*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Scope:
    """What a bot is for. `refusal_message` may contain `{topics}`."""

    topics: tuple[str, ...] = ()
    example_questions: tuple[str, ...] = ()
    out_of_scope_examples: tuple[str, ...] = ()
    refusal_message: str = DEFAULT_REFUSAL
    description: str = ""
    #: The bot's display name, used in greetings ("I'm the Acme assistant").
    name: str = ""
    #: Replaces the built greeting when set.
    greeting_message: str | None = None

    @property
    def subject(self) -> str:
        return ", ".join(self.topics) or self.name or "this product"

    @property
    def refusal(self) -> str:
        return self.refusal_message.replace("{topics}", self.subject)

    def small_talk_reply(self, kind: SmallTalk) -> str:
        """A friendly answer that says what the bot covers."""
        if kind == "thanks":
            return f"You're welcome! If you have another question about {self.subject}, just ask."
        if kind == "goodbye":
            return f"Goodbye! Come back any time you have a question about {self.subject}."
        if self.greeting_message:
            return self.greeting_message
        who = f"the {self.name} assistant" if self.name else "a support assistant"
        reply = f"Hello! I'm {who}. I can help with questions about {self.subject}."
        if self.description.strip():
            description = self.description.strip()
            reply += f" {description}" + ("" if description[-1] in ".!?" else ".")
        return reply + " What would you like to know?"

    @property
    def anchors(self) -> tuple[str, ...]:
        """What the question is compared with when there are no documents to search."""
        named = (
            f"{self.name}. {self.description}".strip(". ") if self.name or self.description else ""
        )
        return tuple(t for t in (named, *self.topics, *self.example_questions) if t)


@dataclass(frozen=True)
class GuardThresholds:
    """Cut-offs on cosine similarity. The defaults are calibrated for all-MiniLM-L6-v2 on the
    tuning doc sets of bench/retrieval_quality.py (never its held-out sets) and the demo set
    (bench/guard.py); other models (Instructor scores run higher) need their own."""

    #: support = best passage cosine - salience_weight * salience - unknown_weight * unknown share.
    #: At or above `answer_from` the documents cover the question; below `refuse_below` they do not.
    #: Set for precision (a wrong refusal costs a customer): 0.36 refused 3 of 155 in-scope
    #: questions on the tuning sets, 0.40 six.
    answer_from: float = 0.40
    refuse_below: float = 0.36
    salience_weight: float = 0.5
    unknown_weight: float = 0.15
    #: This close to an in-scope example or topic → answer; below `example_floor` with nothing
    #: else in favour → refuse.
    example_answer: float = 0.70
    example_floor: float = 0.40
    #: With no documents, the name-and-scope text alone: its similarities run lower.
    description_floor: float = 0.10
    #: This close to an out-of-scope example, and `margin` closer than to anything in scope → refuse.
    out_of_scope: float = 0.55
    margin: float = 0.05
    #: This close to a small-talk message (and not about the documents) → small talk.
    small_talk: float = 0.72
    small_talk_max_support: float = 0.45


@dataclass(frozen=True)
class GuardSignals:
    top_retrieval_score: float | None
    in_scope_similarity: float | None
    nearest_in_scope: str | None
    out_of_scope_similarity: float | None
    nearest_out_of_scope: str | None
    llm_verdict: Literal["in", "out", "unclear"] | None = None
    support: float | None = None
    #: Stemmed question words the documents never use, and how much they carry the question.
    unknown_terms: tuple[str, ...] = ()
    salience: float | None = None
    small_talk: SmallTalk | None = None
    small_talk_similarity: float | None = None


@dataclass(frozen=True)
class GuardDecision:
    """The verdict, why, and every signal used (log it with the exchange). `reply` is what the
    bot says instead of a model answer: the refusal, or the small-talk answer."""

    verdict: Verdict
    reason: str
    signals: GuardSignals
    refusal_message: str | None = None
    reply: str | None = None

    @property
    def used_llm(self) -> bool:
        return self.signals.llm_verdict is not None

    def as_log(self) -> dict[str, Any]:
        signals = asdict(self.signals)
        signals["unknown_terms"] = list(self.signals.unknown_terms)
        return {"verdict": self.verdict, "reason": self.reason, **signals}


@dataclass
class ScopeGuard:
    """Decides answer / refuse / unsure / small talk for a bot's scope.

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
        self._anchors: dict[str, np.ndarray] | None = None

    def assess(
        self,
        question: str,
        retrieval: SearchResult | None = None,
        *,
        question_vector: Sequence[float] | None = None,
    ) -> GuardDecision:
        """Decide from embedding signals only. `retrieval` is the search for the question in the
        bot's documents (None when the bot has none, so that signal is left out)."""
        t = self.thresholds
        vector = np.asarray(
            question_vector if question_vector is not None else self._embed_query(question),
            dtype=np.float32,
        )
        anchors = self._anchor_vectors()
        in_texts = list(self.scope.anchors)
        in_sim, in_best = _nearest(vector, anchors["in"], in_texts)
        out_sim, out_best = _nearest(vector, anchors["out"], list(self.scope.out_of_scope_examples))
        talk_sim, talk_kind = _nearest(vector, anchors["talk"], [k for k, _ in _TALK])
        support = salience = None
        unknown: tuple[str, ...] = ()
        top = None
        if retrieval is not None:
            top = retrieval.top_dense
            unknown = retrieval.evidence.unknown
            salience = self._salience(question, vector, unknown)
            share = len(unknown) / max(1, retrieval.evidence.term_count)
            support = top - t.salience_weight * salience - t.unknown_weight * share
        short = _short_talk(question)
        talk: SmallTalk | None = short
        if talk is None and talk_sim is not None and talk_sim >= t.small_talk:
            if support is None or support < t.small_talk_max_support:
                talk = next(kind for kind in SMALL_TALK if kind == talk_kind)
        signals = GuardSignals(
            top,
            in_sim,
            in_best,
            out_sim,
            out_best,
            None,
            support,
            unknown,
            salience,
            talk,
            talk_sim,
        )
        if talk is not None:
            return GuardDecision(
                "smalltalk",
                f"small talk ({talk})",
                signals,
                reply=self.scope.small_talk_reply(talk),
            )
        verdict, reason = _decide(signals, t, documents=retrieval is not None, scope=self.scope)
        return self._decision(verdict, reason, signals)

    async def decide(
        self,
        question: str,
        retrieval: SearchResult | None = None,
        *,
        question_vector: Sequence[float] | None = None,
    ) -> GuardDecision:
        """`assess`, then ask the LLM through the backend if the signals are unsure (and a backend
        is configured). The result stays "unsure" if the model's reply cannot be read."""
        # Embedding blocks for ~10 ms on a CPU: keep it off the event loop.
        decision = await asyncio.to_thread(
            self.assess, question, retrieval, question_vector=question_vector
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
        return GuardDecision(verdict, reason, signals, refusal, refusal)

    def _embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text, self.instruction)

    def _salience(self, question: str, vector: np.ndarray, unknown: Sequence[str]) -> float:
        """How much of the question's meaning rides on the words the documents never use."""
        if not unknown:
            return 0.0
        missing = set(unknown)
        words = question.split()
        kept = [w for w in words if not set(terms(w)) & missing]
        if len(kept) == len(words):
            return 0.0
        if not kept:
            return 1.0
        reduced = np.asarray(self._embed_query(" ".join(kept)), dtype=np.float32)
        return float(np.clip(1.0 - float(reduced @ vector), 0.0, 1.0))

    def _anchor_vectors(self) -> dict[str, np.ndarray]:
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

            self._anchors = {
                "in": embed(self.scope.anchors),
                "out": embed(self.scope.out_of_scope_examples),
                "talk": embed([text for _, text in _TALK]),
            }
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


_TALK: tuple[tuple[SmallTalk, str], ...] = tuple(
    (kind, text) for kind, texts in SMALL_TALK.items() for text in texts
)


def _short_talk(question: str) -> SmallTalk | None:
    match = _SHORT_TALK.match(question.strip())
    if match is None:
        return None
    kinds: tuple[SmallTalk, ...] = ("greeting", "thanks", "goodbye")
    return next(kind for kind in kinds if match.group(kind))


def _decide(
    s: GuardSignals, t: GuardThresholds, *, documents: bool, scope: Scope
) -> tuple[Verdict, str]:
    support = max(s.support if s.support is not None else 0.0, s.in_scope_similarity or 0.0)
    if (
        s.out_of_scope_similarity is not None
        and s.out_of_scope_similarity >= t.out_of_scope
        and s.out_of_scope_similarity - support >= t.margin
    ):
        return "refuse", f"close to the out-of-scope example {s.nearest_out_of_scope!r}"
    outscored = s.out_of_scope_similarity is not None and s.out_of_scope_similarity >= support
    examples = bool(scope.topics or scope.example_questions)
    if not outscored and examples and (s.in_scope_similarity or 0.0) >= t.example_answer:
        return "answer", f"close to the in-scope example {s.nearest_in_scope!r}"
    if documents and s.support is not None:
        if s.support >= t.answer_from and not outscored:
            return "answer", "the documents cover the question"
        near_example = examples and (s.in_scope_similarity or 0.0) >= t.example_floor
        if s.support < t.refuse_below and not near_example:
            if s.unknown_terms and (s.salience or 0.0) > 0.1:
                words = ", ".join(s.unknown_terms[:3])
                return "refuse", f"the documents do not cover what the question is about ({words})"
            return "refuse", "the documents do not cover the question"
        return "unsure", "the documents cover the question only partly"
    if not scope.anchors:
        return "answer", "no documents and no scope to judge by"
    floor = t.example_floor if examples else t.description_floor
    if s.in_scope_similarity is None or s.in_scope_similarity < floor:
        return "refuse", "the question is unrelated to the bot's scope"
    if examples and s.in_scope_similarity >= t.example_answer:
        return "answer", f"close to the in-scope example {s.nearest_in_scope!r}"
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
