"""Rows from chunks: lenient parsing of what real models reply, checks with recorded reasons,
retries, styles, refusals; and the packaged SmolLM2 end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from serving.backend import (
    Backend,
    BackendError,
    ChatMessage,
    Finished,
    GenerationParams,
    StreamEvent,
    TextDelta,
)
from serving.transformers_backend import TransformersBackend
from training.generation import (
    Chunk,
    GenerationOptions,
    Style,
    generate_from_chunk,
    parse_pairs,
    refusal_rows,
    support,
)
from training.rows import Source

PASSAGE = (
    "To reset your Zephyr router, hold the reset button on the back for ten seconds until the "
    "light blinks orange. The router restarts with factory settings. The default Wi-Fi password "
    "is printed on the label under the router."
)
CHUNK = Chunk(
    "chk_1",
    PASSAGE,
    document_id="doc_1",
    document="manual.md",
    document_revision="rev1",
    heading="Reset",
)


class Replies(Backend):
    """Replies with the given texts in turn (the last one repeats); `down` raises BackendError."""

    kind = "replies"

    def __init__(self, *replies: str, down: bool = False) -> None:
        self.replies, self.down = list(replies), down
        self.calls: list[list[ChatMessage]] = []

    @property
    def model_name(self) -> str:
        return "replies"

    async def health(self) -> bool:
        return not self.down

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append(list(messages))
        if self.down:
            raise BackendError("connection refused")
        text = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        yield TextDelta(text)
        yield Finished("stop", 100, len(text.split()))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


GOOD = (
    '[{"question": "How do I reset my Zephyr router?", "answer": "Hold the reset button on the '
    'back for ten seconds until the light blinks orange."}, {"question": "Where is the default '
    'Wi-Fi password?", "answer": "It is printed on the label under the router."}]'
)


@pytest.mark.parametrize(
    "reply",
    [
        GOOD,
        f"Sure! Here are the pairs:\n```json\n{GOOD}\n```\nLet me know if you need more.",
        GOOD.replace("}]", "},]"),  # a trailing comma
        '{"pairs": ' + GOOD + "}",  # wrapped in an object
        "Q: How do I reset my Zephyr router?\nA: Hold the reset button on the back for ten "
        "seconds until the light blinks orange.\nQ: Where is the default Wi-Fi password?\nA: It "
        "is printed on the label under the router.",
        # What SmolLM2-135M writes: "Response:" and filler before the answer.
        "Question: How do I reset my Zephyr router?\n\nResponse:\nThe answer is:\nHold the reset "
        "button on the back for ten seconds until the light blinks orange.\n\nQuestion: Where is "
        "the default Wi-Fi password?\nAnswer: It is printed on the label under the router.",
    ],
    ids=["json", "fenced-with-prose", "trailing-comma", "wrapped", "q-a-lines", "small-model"],
)
def test_what_real_models_reply_is_parsed(reply: str) -> None:
    pairs = parse_pairs(reply)
    assert [q for q, _ in pairs] == [
        "How do I reset my Zephyr router?",
        "Where is the default Wi-Fi password?",
    ]
    assert pairs[1][1] == "It is printed on the label under the router."


def test_each_style_makes_its_rows_with_provenance() -> None:
    options = GenerationOptions(pairs_per_chunk=2)
    alpaca = run(generate_from_chunk(Replies(GOOD), CHUNK, Style.ALPACA, options))
    assert len(alpaca.rows) == 2 and alpaca.dropped == [] and alpaca.attempts == 1
    row, provenance = alpaca.rows[0]
    assert row.instruction == "How do I reset my Zephyr router?" and row.input == ""
    assert (provenance.source, provenance.style, provenance.chunk_id) == (
        Source.GENERATED,
        "alpaca",
        "chk_1",
    )
    assert (provenance.document, provenance.document_revision) == ("manual.md", "rev1")
    assert alpaca.prompt_tokens == 100 and alpaca.completion_tokens > 0

    dolly = run(generate_from_chunk(Replies(GOOD), CHUNK, Style.DOLLY, options)).rows[0][0]
    assert dolly.input == PASSAGE and dolly.category == "closed_qa" and dolly.system == ""
    orca = run(generate_from_chunk(Replies(GOOD), CHUNK, Style.ORCA, options)).rows[0][0]
    assert orca.system.startswith("You are a customer-support assistant") and orca.input == PASSAGE

    turns = (
        '{"turns": [{"user": "How do I reset my Zephyr router?", "assistant": "Hold the reset '
        'button for ten seconds."}, {"user": "What happens to my settings then?", "assistant": '
        '"The router restarts with factory settings."}]}'
    )
    [(chat, _)] = run(generate_from_chunk(Replies(turns), CHUNK, Style.SHAREGPT, options)).rows
    assert [t.role for t in chat.history] == ["user", "assistant"]
    assert chat.instruction == "What happens to my settings then?"
    assert chat.output == "The router restarts with factory settings."


def test_unusable_items_are_dropped_with_a_reason_and_nothing_stops_the_chunk() -> None:
    reply = (
        '[{"question": "How do I reset my Zephyr router?", "answer": "Hold the reset button for '
        'ten seconds."}, {"question": "How do I reset my Zephyr router?", "answer": "Hold the '
        'reset button."}, {"question": "What is the warranty?", "answer": "Two years from '
        'purchase, covering accidental damage worldwide."}, {"question": "Why?", "answer": "x"},'
        ' {"question": "Where is the Wi-Fi password printed?"}]'
    )
    result = run(
        generate_from_chunk(
            Replies(reply), CHUNK, Style.ALPACA, GenerationOptions(pairs_per_chunk=1)
        )
    )
    assert [r.instruction for r, _ in result.rows] == ["How do I reset my Zephyr router?"]
    reasons = [d.reason for d in result.dropped]
    assert "duplicate question" in reasons and "question too short" in reasons
    assert "no answer" in reasons
    assert any(r.startswith("unsupported by the passage") for r in reasons)
    assert all(d.text for d in result.dropped)  # what was dropped is kept for the record


def test_a_reply_with_nothing_usable_is_asked_again_then_given_up() -> None:
    backend = Replies("I cannot help with that.", GOOD)
    result = run(
        generate_from_chunk(backend, CHUNK, Style.ALPACA, GenerationOptions(pairs_per_chunk=2))
    )
    assert result.attempts == 2 and len(result.rows) == 2
    assert result.dropped[0].reason == "no question/answer pairs in the reply"
    assert backend.calls[1][-1]["content"].startswith("That reply could not be used")

    hopeless = Replies("Lorem ipsum.")
    result = run(generate_from_chunk(hopeless, CHUNK, Style.ALPACA))
    assert result.rows == [] and result.attempts == 2 and len(hopeless.calls) == 2


def test_a_backend_that_is_down_raises_for_the_caller_to_stop_and_resume() -> None:
    with pytest.raises(BackendError):
        run(generate_from_chunk(Replies(GOOD, down=True), CHUNK, Style.ALPACA))


def test_refusal_rows_come_from_the_scope_and_generic_off_topic_questions() -> None:
    rows = refusal_rows("Sorry, only Zephyr routers.", out_of_scope_questions=["Fix my car?"])
    questions = [r.instruction for r, _ in rows]
    assert questions[0] == "Fix my car?" and len(questions) == len(set(questions)) > 5
    assert all(
        r.output == "Sorry, only Zephyr routers." and r.category == "refusal" for r, _ in rows
    )


def test_support_counts_the_answer_words_the_passage_has() -> None:
    assert support("Hold the reset button for ten seconds.", PASSAGE) == 1.0
    assert support("Call our hotline in Berlin on Sundays.", PASSAGE) < 0.3


def test_the_packaged_model_generates_rows_or_says_why_not(
    smollm2_backend: TransformersBackend,
) -> None:
    """SmolLM2-135M is a weak writer: whatever it replies, the chunk ends with checked rows and a
    reason for everything dropped, and the tokens are counted."""
    options = GenerationOptions(
        pairs_per_chunk=2, params=GenerationParams(max_tokens=160, temperature=0.0)
    )
    result = run(generate_from_chunk(smollm2_backend, CHUNK, Style.ALPACA, options))
    assert result.prompt_tokens > 100 and result.completion_tokens > 0
    assert 1 <= result.attempts <= 2
    assert result.rows or result.dropped
    for row, provenance in result.rows:
        assert support(row.output, PASSAGE) >= options.min_support
        assert provenance.model == smollm2_backend.model_name
    assert all(d.reason for d in result.dropped)
