"""Empty and truncated answers: blank outputs and outputs cut off mid-sentence are flagged; short
factual answers and answers ending without a full stop are not."""

from __future__ import annotations

import pytest

from training.quality.completeness import Vocabulary, find_incomplete, truncation
from training.rows import Flag, Row


def _rows(*outputs: str) -> list[tuple[str, Row]]:
    return [(f"r{n}", Row(instruction="Question?", output=o)) for n, o in enumerate(outputs)]


def test_blank_outputs_are_empty() -> None:
    findings = find_incomplete(_rows("", "  \n\t", "Yes"))
    assert [(f.key, f.flag) for f in findings] == [("r0", Flag.EMPTY), ("r1", Flag.EMPTY)]


@pytest.mark.parametrize(
    "output",
    [
        "Yes",
        "No.",
        "Settings › Backup",
        "30 days",
        "Open Settings and switch Dark mode on",
        "Click the button labelled Install",
        "Steps:\n1. Open Settings\n2. Click Backup",
        "Run it like this:\n```bash\nbackup --keep-daily 7\n```",
        "It works with every plan (see the pricing page).",
        "Great question :) It takes two minutes",
        "Use `foo(` in the shell, then press Enter",
        "Our hours are 9-5",
        "Sign in with the account you signed up with",
    ],
)
def test_finished_answers_are_not_truncated(output: str) -> None:
    assert find_incomplete(_rows(output)) == []


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("Run this:\n```bash\nbackup --keep-daily", "a code block is not closed"),
        ("Use the keep option (for example `--keep-daily 7`", "ends inside an unclosed '('"),
        ("You can pay by card, by transfer,", "ends on ','"),
        ("To export your data, do the following:", "ends on ':'"),
        ("Open Settings, then click the", "ends on 'the'"),
        ("Refunds take five days and", "ends on 'and'"),
        ("Here is how:\n1. Open Settings\n2.", "ends on an empty list item"),
    ],
)
def test_cut_off_answers_are_truncated(output: str, reason: str) -> None:
    [finding] = find_incomplete(_rows(output))
    assert finding.flag is Flag.TRUNCATED and finding.detail == reason


def test_a_word_cut_in_half_is_truncated_when_other_rows_know_the_word() -> None:
    rows = _rows(
        "Edit the configuration file, then restart.",
        "The configuration lives in /etc/app.",
        "Open the file and change the configur",
        "Back up first, then open backups",
    )
    findings = find_incomplete(rows)
    assert [(f.key, f.detail) for f in findings] == [
        ("r2", "ends mid-word ('configur', as in 'configuration')")
    ]


def test_short_answers_are_judged_only_by_code_fences() -> None:
    assert truncation("Yes, and", Vocabulary([])) is None
    assert truncation("```", None) == "a code block is not closed"
    assert truncation("Yes, and", None, min_words=2) == "ends on 'and'"
