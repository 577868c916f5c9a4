"""The train / validation split: a function of a row's question and the dataset's share."""

from __future__ import annotations

from api.services.datasets.rows import split_of


def test_the_same_question_is_always_in_the_same_split() -> None:
    questions = [f"How do I reset model {n}?" for n in range(200)]
    first = [split_of(q, 0.3) for q in questions]
    assert [split_of(q, 0.3) for q in questions] == first  # the same every time
    # Case and spacing aside, a question asked again is held out (or trained on) with the first.
    assert [split_of("  " + q.upper().replace(" ", "   "), 0.3) for q in questions] == first
    held_out = first.count("validation")
    assert 40 <= held_out <= 80  # about 30% of 200


def test_a_larger_share_only_adds_questions_to_validation() -> None:
    questions = [f"Question {n}" for n in range(300)]
    small = {q for q in questions if split_of(q, 0.1) == "validation"}
    large = {q for q in questions if split_of(q, 0.3) == "validation"}
    assert small < large
    assert all(split_of(q, 0.0) == "train" for q in questions)
    assert all(split_of(q, 1.0) == "validation" for q in questions)
