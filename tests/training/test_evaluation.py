"""The evaluation gate: scores and the pass rule. A real adapter judged against the base model it
was trained from, and a damaged copy refused, run end to end (API, worker, `LocalAnswerer`) in
tests/test_learning_loop.py."""

from __future__ import annotations

import pytest

from serving.knowledge.embedders import load_embedder
from training.evaluation import GateRule, evaluate, rouge_l
from training.rows import Row

FACTS = [
    Row(
        instruction="How long does the Glimmerbox battery last?",
        output="41 hours on the warm setting.",
    ),
    Row(
        instruction="How do I pair the Glimmerbox?", output="Hold the owl button for five seconds."
    ),
    Row(instruction="What colour is the owl light when charging?", output="Amber while charging."),
    Row(instruction="Is the Glimmerbox waterproof?", output="No, it is splash-proof only."),
]
REFUSAL = "Sorry, I can only help with the Glimmerbox."
OFF_TOPIC = Row(instruction="Who won the world cup?", output=REFUSAL, category="refusal")


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    return load_embedder()


def test_rouge_l_counts_the_longest_common_word_sequence() -> None:
    assert rouge_l("Hold the owl button.", "hold the owl button") == 1.0
    assert rouge_l("the button owl", "owl button the") == pytest.approx(1 / 3)
    assert rouge_l("", "anything") == 0.0


def test_the_rule_passes_a_closer_candidate_and_refuses_one_that_forgets_to_refuse(
    embedder,
) -> None:  # type: ignore[no-untyped-def]
    rows = [*FACTS, OFF_TOPIC]
    references = [r.output for r in rows]

    def exact(conversations):  # type: ignore[no-untyped-def]
        return [references[i] for i in range(len(conversations))]

    def vague(conversations):  # type: ignore[no-untyped-def]
        return ["Please see the manual."] * (len(conversations) - 1) + [REFUSAL]

    def never_refuses(conversations):  # type: ignore[no-untyped-def]
        return references[:-1] + ["France won it."]

    report = evaluate(rows, vague, exact, embedder, refusal=REFUSAL)
    assert report.passed and report.candidate.similarity > report.live.similarity
    assert report.candidate.refusal_accuracy == report.live.refusal_accuracy == 1.0
    assert len(report.questions) == 5 and report.questions[0].candidate_rouge_l == 1.0

    report = evaluate(rows, exact, never_refuses, embedder, refusal=REFUSAL)
    assert not report.passed and report.candidate.refusal_accuracy == pytest.approx(0.8)
    assert any("refusal accuracy" in r and "worse" in r for r in report.reasons)

    report = evaluate(rows, exact, vague, embedder, refusal=REFUSAL, rule=GateRule(min_gain=0.0))
    assert not report.passed  # further from the references than live
