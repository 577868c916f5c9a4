"""Edit distance and word diff between an answer and its correction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.services.review.answer_edits import edit_distance, word_diff


def test_edit_distance_is_normalised() -> None:
    assert edit_distance("same", "same") == 0.0
    assert edit_distance("abcd", "wxyz") == 1.0
    assert edit_distance("Hello", "Hallo") == 0.2
    assert edit_distance("", "") == 0.0


def test_word_diff_marks_replaced_words() -> None:
    spans = word_diff("Reset it in Settings > Account.", "Reset it under Settings > Security.")
    assert [(s.op, s.text) for s in spans] == [
        ("equal", "Reset it "),
        ("delete", "in"),
        ("insert", "under"),
        ("equal", " Settings > "),
        ("delete", "Account"),
        ("insert", "Security"),
        ("equal", "."),
    ]


def test_word_diff_joins_neighbouring_changes() -> None:
    spans = word_diff("Candidate says: hold it.", "Kestrel support: hold it.")
    assert [(s.op, s.text) for s in spans] == [
        ("delete", "Candidate says"),
        ("insert", "Kestrel support"),
        ("equal", ": hold it."),
    ]


@given(st.text(max_size=80), st.text(max_size=80))
def test_word_diff_rebuilds_both_texts(original: str, revised: str) -> None:
    spans = word_diff(original, revised)
    assert "".join(s.text for s in spans if s.op != "insert") == original
    assert "".join(s.text for s in spans if s.op != "delete") == revised
