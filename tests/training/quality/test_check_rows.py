"""`check_rows`: runs the chosen checks over one set of rows and groups the findings by row."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.quality import QualityOptions, check_rows
from training.rows import Flag, Provenance, Row

ROWS = [
    ("a", Row(instruction="What is your refund policy?", output="Refunds within 30 days.")),
    ("b", Row(instruction="What is your refund policy?", output="Refunds within 14 days.")),
    ("c", Row(instruction="What is your refund policy?", output="Refunds within 30 days!")),
    ("d", Row(instruction="Who can I e-mail?", output="Write to jane@example.com")),
    ("e", Row(instruction="How do I export?", output="")),
    ("f", Row(instruction="How do I export?", output="Open Settings and click the")),
]
PROVENANCE = {"d": Provenance(document_id="doc_1", document_revision="r1")}


def test_all_checks_group_findings_by_row_in_input_order() -> None:
    grouped = check_rows(ROWS, provenance=PROVENANCE, current_revisions={"doc_1": "r2"})
    assert list(grouped) == ["a", "b", "c", "d", "e", "f"]
    assert {key: [f.flag for f in found] for key, found in grouped.items()} == {
        "a": [Flag.CONTRADICTION],
        "b": [Flag.CONTRADICTION],
        "c": [Flag.DUPLICATE],
        "d": [Flag.PII, Flag.OUTDATED],
        "e": [Flag.EMPTY],
        "f": [Flag.TRUNCATED],
    }
    assert all(f.key == key for key, found in grouped.items() for f in found)


def test_only_the_chosen_checks_run() -> None:
    grouped = check_rows(ROWS, checks={Flag.TRUNCATED, Flag.PII})
    assert {key: [f.flag for f in found] for key, found in grouped.items()} == {
        "d": [Flag.PII],
        "f": [Flag.TRUNCATED],
    }
    assert (
        check_rows(
            ROWS, checks={Flag.PII}, options=QualityOptions(pii_ignore=("jane@example.com",))
        )
        == {}
    )


def test_outdated_runs_only_with_revisions_and_unknown_checks_are_refused() -> None:
    assert "d" in check_rows(ROWS)  # PII, without OUTDATED
    assert [f.flag for f in check_rows(ROWS)["d"]] == [Flag.PII]
    with pytest.raises(ValueError, match="current_revisions"):
        check_rows(ROWS, checks={Flag.OUTDATED})
    with pytest.raises(ValueError, match="unsupported"):
        check_rows(ROWS, checks={Flag.UNSUPPORTED})
    with pytest.raises(ValueError, match="unique"):
        check_rows([ROWS[0], ROWS[0]])


_texts = st.sampled_from(
    [
        "Refunds within 30 days.",
        "Refunds within 14 days",
        "Yes",
        "No, never.",
        "Call (555) 123-4567 and",
        "",
        "What is your refund policy?",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_texts.filter(bool), _texts), max_size=8))
def test_findings_name_input_rows_and_never_the_row_itself(pairs: list[tuple[str, str]]) -> None:
    rows = [(f"k{n}", Row(instruction=q, output=a)) for n, (q, a) in enumerate(pairs)]
    keys = {key for key, _ in rows}
    for key, found in check_rows(rows).items():
        assert key in keys
        for finding in found:
            assert finding.key == key and finding.related != key
            assert finding.related is None or finding.related in keys
