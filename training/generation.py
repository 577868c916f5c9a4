"""Training rows generated from knowledge chunks through any `Backend`.

A model reads one chunk and writes question/answer pairs in one of the styles practitioners use:
Alpaca (instruction → output), Dolly (with the chunk as context), Orca (context plus a system prompt
per task category) and ShareGPT (a short multi-turn conversation). Refusal rows come from the bot's
scope instead: an off-topic question answered with the bot's polite refusal.

Real models misbehave, small ones especially: prose around the JSON, code fences, trailing commas,
keys named differently, the same question twice, answers the chunk does not support. Each output is
parsed leniently; what cannot be used is dropped with a recorded reason, a reply with nothing usable
is retried with a stricter reminder, and a bad reply never raises. Only a backend failure
(`BackendError`) propagates, so the caller can stop, keep what is done and resume later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from serving.backend import Backend, ChatMessage, GenerationParams
from training.rows import Provenance, Row, Source, Turn


class Style(StrEnum):
    ALPACA = "alpaca"  # instruction → output: the knowledge goes into the weights
    DOLLY = "dolly"  # instruction + the chunk as context → response (closed QA)
    ORCA = "orca"  # as dolly, with a system prompt for the task category
    SHAREGPT = "sharegpt"  # a short multi-turn conversation grounded in the chunk


# Orca-style system prompts, one per task category (Mukherjee et al. 2023 give each task family its
# own system instruction; a support bot needs few families).
CATEGORY_SYSTEM_PROMPTS: dict[str, str] = {
    "closed_qa": (
        "You are a customer-support assistant. Answer the question using only the passage given. "
        "If the passage does not contain the answer, say you do not know."
    ),
    "open_qa": "You are a customer-support assistant. Answer the customer's question briefly.",
    "refusal": (
        "You are a customer-support assistant. Politely decline questions outside the product."
    ),
}

# Generic off-topic questions: every support bot should decline them, whatever its product.
GENERIC_OFF_TOPIC: tuple[str, ...] = (
    "What will the weather be like tomorrow?",
    "Who won the football world cup in 2018?",
    "Can you give me a recipe for chocolate cake?",
    "Write me a poem about the sea.",
    "What is the capital of Australia?",
    "Which stocks should I buy this year?",
    "Can you help me with my maths homework?",
    "What do you think about the election?",
)


@dataclass(frozen=True)
class Chunk:
    """A knowledge chunk to generate from, with what provenance needs."""

    chunk_id: str
    text: str
    document_id: str | None = None
    document: str | None = None
    document_revision: str | None = None
    heading: str = ""


@dataclass(frozen=True)
class GenerationOptions:
    pairs_per_chunk: int = 3
    # A reply with nothing usable is asked again this many times in all (the first ask included).
    max_attempts: int = 2
    params: GenerationParams = GenerationParams(max_tokens=512, temperature=0.3)
    # Share of an answer's content words that must occur in the chunk; below it the answer is
    # dropped as unsupported (a model adding facts the documentation does not state).
    min_support: float = 0.6
    # The chunk text given to the model is cut to this many characters (small models, small context).
    max_chunk_chars: int = 2400


@dataclass(frozen=True)
class Dropped:
    """A generated item that did not become a row, and why."""

    reason: str
    text: str


@dataclass
class ChunkResult:
    chunk_id: str
    style: Style
    rows: list[tuple[Row, Provenance]] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0


# ---------------------------------------------------------------------------------------------------
# prompts


def generation_messages(
    chunk: Chunk, style: Style, options: GenerationOptions
) -> list[ChatMessage]:
    """What the model is asked for one chunk in one style."""
    passage = chunk.text[: options.max_chunk_chars]
    where = f" (from {chunk.document}{' › ' + chunk.heading if chunk.heading else ''})"
    if style is Style.SHAREGPT:
        task = (
            "Write one short conversation between a customer and a support assistant about this "
            "passage: the customer asks, the assistant answers from the passage, the customer asks "
            "a follow-up question, the assistant answers it from the passage.\n"
            'Reply with JSON only, in this shape: {"turns": [{"user": "...", "assistant": "..."}, '
            '{"user": "...", "assistant": "..."}]}'
        )
    else:
        task = (
            f"Write {options.pairs_per_chunk} different questions a customer could ask that this "
            "passage answers, each with a short answer that uses only facts from the passage.\n"
            'Reply with JSON only, in this shape: [{"question": "...", "answer": "..."}]'
        )
    return [
        {
            "role": "system",
            "content": "You write training data for a customer-support assistant. "
            "You reply with JSON only, no other text.",
        },
        {
            "role": "user",
            "content": f'Passage{where if chunk.document else ""}:\n"""\n{passage}\n"""\n\n{task}',
        },
    ]


REMINDER = (
    "That reply could not be used. Reply again with the JSON only: no explanation, no code fence, "
    "every question with its answer taken from the passage."
)


# ---------------------------------------------------------------------------------------------------
# parsing


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_QA_LINES = re.compile(
    r"(?:^|\n)\s*(?:\d+[.)]\s*)?(?:Q(?:uestion)?\s*\d*\s*[:.-])\s*(?P<q>.+?)\s*\n+\s*"
    r"(?:A(?:nswer)?|Response|Reply)\s*\d*\s*[:.-]\s*(?P<a>.+?)"
    r"(?=\n\s*(?:\d+[.)]\s*)?Q(?:uestion)?\s*\d*\s*[:.-]|\Z)",
    re.DOTALL | re.IGNORECASE,
)
# Filler small models put before an answer: "The answer is:".
_FILLER = re.compile(
    r"^(?:\s*(?:the\s+)?(?:answer|response|solution)\s+is\s*:?\s*)+", re.IGNORECASE
)
_QUESTION_KEYS = ("question", "q", "instruction", "prompt", "user", "human", "customer")
_ANSWER_KEYS = ("answer", "a", "response", "output", "assistant", "gpt", "reply")


def _json_values(text: str) -> list[Any]:
    """Every JSON value found in `text`: the whole text, fenced blocks, or values among prose."""
    candidates = [text, *(m.group(1) for m in _FENCE.finditer(text))]
    for candidate in candidates:
        for variant in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                return [json.loads(variant)]
            except ValueError:
                pass
    decoder = json.JSONDecoder()
    values: list[Any] = []
    cleaned = _TRAILING_COMMA.sub(r"\1", text)
    i = 0
    while i < len(cleaned):
        start = min((p for p in (cleaned.find("[", i), cleaned.find("{", i)) if p >= 0), default=-1)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(cleaned, start)
        except ValueError:
            i = start + 1
            continue
        values.append(value)
        i = end
    return values


def _pick(item: dict[str, Any], keys: Sequence[str]) -> str | None:
    lowered = {str(k).lower(): v for k, v in item.items()}
    for key in keys:
        value = lowered.get(key)
        if isinstance(value, str | int | float) and str(value).strip():
            return str(value).strip()
    return None


def _objects(value: Any) -> Iterable[dict[str, Any]]:
    """The objects in a parsed value: a list of them, or one wrapping a list (`{"pairs": [...]}`)."""
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if lists and _pick(value, _QUESTION_KEYS) is None:
            for inner in lists:
                yield from _objects(inner)
        else:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from a model reply, however it was wrapped."""
    pairs: list[tuple[str, str]] = []
    for value in _json_values(text):
        for item in _objects(value):
            question, answer = _pick(item, _QUESTION_KEYS), _pick(item, _ANSWER_KEYS)
            if question is not None or answer is not None:
                pairs.append((question or "", answer or ""))
    if not pairs:  # no JSON at all: "Q: … A: …" lines are the next most common shape
        pairs = [(m.group("q").strip(), m.group("a").strip()) for m in _QA_LINES.finditer(text)]
    return [(q, _FILLER.sub("", a).strip()) for q, a in pairs]


# ---------------------------------------------------------------------------------------------------
# checks

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could do does for from had has have how i if in into is "
    "it its may might more most must no not of on or our shall should so some such than that the "
    "their them then there these they this those to too use used using very was we were what when "
    "where which while who why will with would yes you your also only just about after before over "
    "under between each other any all both same".split()
)


def _content_words(text: str) -> list[str]:
    return [w for w in (m.group().casefold() for m in _WORD.finditer(text)) if w not in _STOPWORDS]


def support(answer: str, passage: str) -> float:
    """Share of the answer's content words that the passage contains (prefix match for inflections)."""
    words = _content_words(answer)
    if not words:
        return 0.0
    known = set(_content_words(passage))
    stems = {w[:5] for w in known if len(w) >= 5}
    hits = sum(1 for w in words if w in known or (len(w) >= 5 and w[:5] in stems))
    return hits / len(words)


def _normalised(text: str) -> str:
    return " ".join(_content_words(text))


def _check_pair(
    question: str, answer: str, passage: str, seen: set[str], options: GenerationOptions
) -> str | None:
    """Why a pair cannot become a row, or None."""
    if not question:
        return "no question"
    if not answer:
        return "no answer"
    if len(_WORD.findall(question)) < 3:
        return "question too short"
    key = _normalised(question)
    if key in seen:
        return "duplicate question"
    share = support(answer, passage)
    if share < options.min_support:
        return f"unsupported by the passage ({share:.0%} of its words are in it)"
    seen.add(key)
    return None


# ---------------------------------------------------------------------------------------------------
# generation


def _rows_for(
    style: Style, chunk: Chunk, pairs: list[tuple[str, str]], options: GenerationOptions
) -> list[Row]:
    passage = chunk.text[: options.max_chunk_chars]
    if style is Style.SHAREGPT:
        history = tuple(
            Turn(role=role, content=content)
            for question, answer in pairs[:-1]
            for role, content in (("user", question), ("assistant", answer))
        )
        question, answer = pairs[-1]
        return [Row(history=history, instruction=question, output=answer, category="open_qa")]
    rows = []
    for question, answer in pairs:
        if style is Style.ALPACA:
            rows.append(Row(instruction=question, output=answer, category="open_qa"))
        elif style is Style.DOLLY:
            rows.append(
                Row(instruction=question, input=passage, output=answer, category="closed_qa")
            )
        else:
            rows.append(
                Row(
                    system=CATEGORY_SYSTEM_PROMPTS["closed_qa"],
                    instruction=question,
                    input=passage,
                    output=answer,
                    category="closed_qa",
                )
            )
    return rows


async def generate_from_chunk(
    backend: Backend, chunk: Chunk, style: Style, options: GenerationOptions | None = None
) -> ChunkResult:
    """Rows of `style` from one chunk. Raises only `BackendError` (the engine failed)."""
    options = options or GenerationOptions()
    result = ChunkResult(chunk.chunk_id, style)
    messages = generation_messages(chunk, style, options)
    provenance = Provenance(
        source=Source.GENERATED,
        style=style.value,
        chunk_id=chunk.chunk_id,
        document_id=chunk.document_id,
        document=chunk.document,
        document_revision=chunk.document_revision,
        model=backend.model_name,
    )
    for attempt in range(1, options.max_attempts + 1):
        result.attempts = attempt
        completion = await backend.complete(messages, options.params)
        result.prompt_tokens += completion.prompt_tokens
        result.completion_tokens += completion.completion_tokens
        pairs = parse_pairs(completion.text)
        if not pairs:
            result.dropped.append(
                Dropped("no question/answer pairs in the reply", completion.text[:500])
            )
        kept: list[tuple[str, str]] = []
        seen = {_normalised(row.instruction) for row, _ in result.rows}
        for question, answer in pairs:
            reason = _check_pair(question, answer, chunk.text, seen, options)
            if reason is None and completion.finish_reason == "length" and answer == pairs[-1][1]:
                reason = "reply cut off at the token limit"
            if reason is None:
                kept.append((question, answer))
            else:
                result.dropped.append(Dropped(reason, f"Q: {question}\nA: {answer}"[:500]))
        if style is Style.SHAREGPT and len(kept) != len(pairs):
            # A conversation with a bad turn is dropped whole: its later turns lean on that one.
            if kept:
                result.dropped.append(
                    Dropped("conversation with an unusable turn", completion.text[:500])
                )
            kept = []
        try:
            rows = _rows_for(style, chunk, kept, options) if kept else []
        except ValidationError as exc:
            result.dropped.append(
                Dropped(f"invalid row: {exc.errors()[0]['msg']}", completion.text[:500])
            )
            rows = []
        result.rows += [(row, provenance) for row in rows]
        if result.rows:  # asked again only when nothing was usable
            break
        messages = [
            *messages,
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": REMINDER},
        ]
    if style is not Style.SHAREGPT:
        result.rows = result.rows[: options.pairs_per_chunk]
    return result


def refusal_rows(
    refusal: str,
    *,
    out_of_scope_questions: Iterable[str] = (),
    generic: bool = True,
) -> list[tuple[Row, Provenance]]:
    """Off-topic questions answered with the bot's refusal: the bot learns to decline politely."""
    questions = dict.fromkeys(
        q.strip()
        for q in (*out_of_scope_questions, *(GENERIC_OFF_TOPIC if generic else ()))
        if q.strip()
    )
    provenance = Provenance(source=Source.GENERATED, style="refusal")
    return [(Row(instruction=q, output=refusal, category="refusal"), provenance) for q in questions]
