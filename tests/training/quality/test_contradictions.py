"""Contradictions: the same question answered with other numbers, yes against no, a negation or
nothing in common is flagged on both rows; paraphrases, different questions and exact copies are
not."""

from __future__ import annotations

from training.quality.contradictions import find_contradictions
from training.rows import Flag, Row


def _row(question: str, answer: str) -> Row:
    return Row(instruction=question, output=answer)


def test_other_numbers_are_flagged_both_ways() -> None:
    rows = [
        ("a", _row("What is your refund policy?", "Refunds are accepted within 30 days.")),
        ("b", _row("What's your refund policy?", "Refunds are accepted within 14 days.")),
    ]
    findings = find_contradictions(rows)
    assert [(f.key, f.flag, f.related) for f in findings] == [
        ("a", Flag.CONTRADICTION, "b"),
        ("b", Flag.CONTRADICTION, "a"),
    ]
    assert "30 day here, 14 day there" in findings[0].detail
    assert "14 day here, 30 day there" in findings[1].detail


def test_yes_against_no_and_a_negation_are_flagged() -> None:
    yes_no = [
        ("a", _row("Can I change my plan at any time?", "Yes, from the Billing page.")),
        ("b", _row("Can I change my plan at any time?", "No, plans are fixed for a year.")),
    ]
    assert {f.key for f in find_contradictions(yes_no)} == {"a", "b"}
    negated = [
        ("a", _row("Can I pause my subscription?", "You can pause it from the Billing page.")),
        ("b", _row("Can I pause my subscription?", "You cannot pause it from the Billing page.")),
    ]
    [first, _] = find_contradictions(negated)
    assert first.detail.endswith("one answer negates the other")


def test_answers_with_nothing_in_common_are_flagged() -> None:
    rows = [
        ("a", _row("How do I export my data?", "Go to Settings > Export and click Download.")),
        ("b", _row("How do I export my data?", "E-mail support; they will send an archive.")),
    ]
    assert {f.key for f in find_contradictions(rows)} == {"a", "b"}


def test_paraphrased_answers_are_not_contradictions() -> None:
    rows = [
        (
            "a",
            _row("What is your refund policy?", "You can get a refund within 30 days of purchase."),
        ),
        (
            "b",
            _row("What is your refund policy?", "Refunds are available for 30 days after you buy."),
        ),
        (
            "c",
            _row("What is your refund policy?", "Within thirty days of purchase, a full refund."),
        ),
        ("d", _row("When do backups run?", "Backups run every night at 2am.")),
        ("e", _row("When do backups run?", "Nightly, at 02:00.")),
        ("f", _row("How do I export my data?", "Go to Settings > Export and click Download.")),
        (
            "g",
            _row("How do I export my data?", "Open Settings, choose Export, then press Download."),
        ),
        ("h", _row("Can I change my plan?", "Yes, any time.")),
        ("i", _row("Can I change my plan?", "Sure, from the Billing page.")),
    ]
    assert find_contradictions(rows) == []


def test_questions_that_ask_different_things_are_not_compared() -> None:
    rows = [
        ("a", _row("How do I enable dark mode?", "Switch Dark mode on in Settings.")),
        ("b", _row("How do I disable dark mode?", "Switch Dark mode off in Settings.")),
        ("c", _row("Can I get a refund after 30 days?", "No.")),
        ("d", _row("Can I get a refund after 14 days?", "Yes.")),
        ("e", _row("Do you ship to Canada?", "Yes, in 5 business days.")),
        ("f", _row("How do I reset my password?", "Use the link in the e-mail, within 24 hours.")),
    ]
    assert find_contradictions(rows) == []


def test_exact_copies_and_empty_answers_are_left_to_other_checks() -> None:
    thirty = _row("What is your refund policy?", "Refunds are accepted within 30 days.")
    fourteen = _row("What is your refund policy?", "Refunds are accepted within 14 days.")
    rows = [
        ("a", thirty),
        ("b", thirty),
        ("c", fourteen),
        ("d", _row("What is your refund policy?", " ")),
    ]
    # The copy "b" is the duplicate check's; only the first of identical rows is compared.
    assert {(f.key, f.related) for f in find_contradictions(rows)} == {("a", "c"), ("c", "a")}


def test_the_same_question_about_other_passages_or_one_passage_is_not_compared() -> None:
    lamp = "The Kestrel lamp ships with a two-year warranty and a 30-day return window."
    kettle = "The Quillon kettle ships with a five-year warranty and a 14-day return window."
    rows = [
        ("a", Row(instruction="How long can I return it?", input=lamp, output="30 days.")),
        ("b", Row(instruction="How long can I return it?", input=kettle, output="14 days.")),
        ("c", Row(instruction="How long is the warranty?", input=lamp, output="2 years.")),
        ("d", Row(instruction="How long can I return it?", input=lamp, output="Within 14 days.")),
    ]
    assert {(f.key, f.related) for f in find_contradictions(rows)} == {("a", "d"), ("d", "a")}
