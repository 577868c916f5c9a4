"""Duplicates: exact and near copies are flagged with the row they repeat, the first copy stays
unflagged, and rows that only look alike (or give other numbers) are left alone."""

from __future__ import annotations

import random

from training.quality.duplicates import find_duplicates
from training.rows import Flag, Row, Turn

REFUND = Row(
    instruction="How long do I have to ask for a refund?",
    output="You can ask for a refund within 30 days of purchase from the Orders page of your "
    "account; the money reaches your card within five business days.",
)
RESET = Row(
    instruction="How do I reset my password?",
    output="Click 'Forgot password' on the sign-in page and follow the link we e-mail you.",
)


def test_exact_copies_name_the_first_and_leave_it_unflagged() -> None:
    copy = REFUND.model_copy(
        update={
            "instruction": "  HOW LONG do I have to ask for a refund  ",
            "output": REFUND.output.replace(" ", "   ") + "!",
        }
    )
    findings = find_duplicates([("a", REFUND), ("b", RESET), ("c", copy), ("d", REFUND)])
    assert [(f.key, f.flag, f.related, f.detail) for f in findings] == [
        ("c", Flag.DUPLICATE, "a", "same as row a"),
        ("d", Flag.DUPLICATE, "a", "same as row a"),
    ]


def test_near_copies_are_flagged_with_their_similarity() -> None:
    edited = Row(
        instruction="How long do I have to ask for my refund?",
        output=REFUND.output.replace("account;", "account, and"),
    )
    findings = find_duplicates([("a", REFUND), ("b", edited)])
    assert len(findings) == 1
    assert findings[0].key == "b" and findings[0].related == "a"
    assert findings[0].detail.endswith("% similar to row a")
    assert 80 <= int(findings[0].detail.split("%")[0]) < 100


def test_the_same_question_with_a_near_identical_answer_is_a_duplicate() -> None:
    first = Row(
        instruction="What is the refund window?", output="Refunds are accepted for 30 days."
    )
    second = Row(
        instruction="what is the refund window", output="Refunds are accepted for 30 days, yes."
    )
    [finding] = find_duplicates([("a", first), ("b", second)])
    assert finding.key == "b" and finding.related == "a"
    assert finding.detail.startswith("same question as row a, answer ")


def test_unrelated_rows_and_different_numbers_are_not_duplicates() -> None:
    fourteen = REFUND.model_copy(update={"output": REFUND.output.replace("30 days", "14 days")})
    other = Row(instruction="Do you ship to Canada?", output="Yes, in 5 to 7 business days.")
    assert find_duplicates([("a", REFUND), ("b", RESET), ("c", fourteen), ("d", other)]) == []


def test_rows_in_different_conversations_are_not_duplicates() -> None:
    history = (
        Turn(role="user", content="I bought a lamp."),
        Turn(role="assistant", content="Thanks! How can I help?"),
    )
    in_conversation = REFUND.model_copy(update={"history": history})
    assert find_duplicates([("a", REFUND), ("b", in_conversation)]) == []


def test_a_copy_of_a_copy_names_a_row_that_stays() -> None:
    rng = random.Random(3)
    words = REFUND.output.split()
    rows = [("orig", REFUND)]
    wording = [i for i, w in enumerate(words) if w not in {"30", "days"}]  # not the facts
    for n in range(20):  # each copy changes one word of the original
        changed = list(words)
        changed[rng.choice(wording)] = f"word{n}"
        rows.append((f"copy{n}", REFUND.model_copy(update={"output": " ".join(changed)})))
    findings = find_duplicates(rows)
    flagged = {f.key for f in findings}
    assert "orig" not in flagged and len(findings) == 20
    assert all(f.related not in flagged for f in findings)


def test_many_rows_only_flag_the_planted_copies() -> None:
    rng = random.Random(1)
    vocabulary = [f"w{n}" for n in range(3000)]
    rows = [
        (
            f"r{n}",
            Row(
                instruction=" ".join(rng.choices(vocabulary, k=8)),
                output=" ".join(rng.choices(vocabulary, k=30)),
            ),
        )
        for n in range(2000)
    ]
    rows.append(
        ("copy", rows[500][1].model_copy(update={"instruction": "Q: " + rows[500][1].instruction}))
    )
    assert [(f.key, f.related) for f in find_duplicates(rows)] == [("copy", "r500")]


PASSAGE = (
    "The Kestrel lamp ships with a two-year warranty. Refunds are accepted within 30 days of "
    "delivery if the lamp is unused and in its original box. To reset the lamp, hold the power "
    "button for ten seconds until the light blinks twice. The lamp pairs with the Acme hub over "
    "Zigbee; pairing mode starts when the lamp is switched on three times in a row."
)


def test_rows_made_from_one_passage_are_compared_on_question_and_answer() -> None:
    rows = [
        ("a", Row(instruction="How long is the warranty?", input=PASSAGE, output="Two years.")),
        ("b", Row(instruction="How do I reset the lamp?", input=PASSAGE, output="Hold power.")),
        ("c", Row(instruction="How do I pair the lamp?", input=PASSAGE, output="Switch it on.")),
        (
            "d",
            Row(instruction="How do I reset the lamp?", input=PASSAGE + " ", output="Hold power"),
        ),
    ]
    assert [(f.key, f.related) for f in find_duplicates(rows)] == [("d", "b")]
