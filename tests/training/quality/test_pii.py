"""Personal data: e-mails, phones, valid cards and IBANs, SSNs and public IPs are found; dates,
versions, ports, order numbers and invalid checksums are not; findings mask the values and `redact`
leaves nothing to find."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.quality.pii import PiiKind, find_personal_data, find_pii, redact, redact_text
from training.rows import Flag, Row, Turn


def _found(text: str) -> list[tuple[PiiKind, str]]:
    return [(m.kind, m.text) for m in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Write to jane.doe+shop@example.com today", PiiKind.EMAIL, "jane.doe+shop@example.com"),
        ("Call +44 20 7946 0958.", PiiKind.PHONE, "+44 20 7946 0958"),
        ("my number is (555) 123-4567", PiiKind.PHONE, "(555) 123-4567"),
        ("ring 555-123-4567 or", PiiKind.PHONE, "555-123-4567"),
        ("London office: 020 7946 0958", PiiKind.PHONE, "020 7946 0958"),
        ("+33 1 23 45 67 89 is the desk", PiiKind.PHONE, "+33 1 23 45 67 89"),
        ("call me on 5551234567", PiiKind.PHONE, "5551234567"),
        ("my number: 020 7946 0958", PiiKind.PHONE, "020 7946 0958"),
        ("Paris 01 23 45 67 89", PiiKind.PHONE, "01 23 45 67 89"),
        ("card 4111 1111 1111 1111 exp 12/27", PiiKind.CARD, "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004", PiiKind.CARD, "5500-0000-0000-0004"),
        ("amex 378282246310005", PiiKind.CARD, "378282246310005"),
        ("IBAN GB82 WEST 1234 5698 7654 32, thanks", PiiKind.IBAN, "GB82 WEST 1234 5698 7654 32"),
        ("pay to DE89370400440532013000.", PiiKind.IBAN, "DE89370400440532013000"),
        ("SSN 123-45-6789", PiiKind.SSN, "123-45-6789"),
        ("logged in from 81.2.69.160", PiiKind.IP, "81.2.69.160"),
    ],
)
def test_personal_data_is_found(text: str, kind: PiiKind, value: str) -> None:
    assert _found(text) == [(kind, value)]
    [match] = find_pii(text)
    assert text[match.start : match.end] == value


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "IBAN GB82 WEST 1234 5698 7654 33",  # fails mod-97
        "Upgrade to version 1.2.3 or 10.0.19041.1234",
        "Released 2024-05-01, due 01.05.2024, at 10:30",
        "Listen on port 8080 or 443",
        "Your order 12345 shipped; order 1234567890 too",
        "Invoice #20240501123 is attached; invoice no. 4111111111111111",
        "Order number 0123 4567 890",
        "ZIP 02110-1301, decimals 0.000070 and 1.4901161193847656e-08, hex 31 20 33 30 31 20 34 35",
        "Range 1614-1620 in cell.rs; CIDR 30.1.0.0/16; brotli>=1.2.0.0; update V8 to 4.4.63.30",
        "ISBN 978-3-16-148410-0",
        "Open 192.168.1.1 or 10.0.0.5; docs use 203.0.113.7 and 127.0.0.1",
        "We served 1500000 users between 2020 and 2024; timestamp 1714567890",
        "Prices: 1 234 567 EUR",
        "Steps 1-2-3, ratio 16:9, score 3-1",
        "SSN-shaped but never issued: 000-12-3456, 666-12-3456",
    ],
)
def test_numbers_that_are_not_personal_are_left_alone(text: str) -> None:
    assert find_pii(text) == []


def test_ignored_values_are_not_personal() -> None:
    text = "Write to support@acme.example or call +44 20 7946 0958 (jane@example.com)"
    ignore = ["Support@Acme.example", "+44 (0)20 7946 0958"[:3] + "20 7946 0958"]
    assert _found(text) != []
    assert [m.kind for m in find_pii(text, ignore=ignore)] == [PiiKind.EMAIL]


def test_findings_name_part_and_kind_and_mask_the_value() -> None:
    row = Row(
        history=(
            Turn(role="user", content="I'm jane.doe@example.com"),
            Turn(role="assistant", content="Thanks."),
        ),
        instruction="Charge 4111 1111 1111 1111",
        output="Done; we will call +44 20 7946 0958.",
    )
    clean = Row(instruction="What is the refund window?", output="30 days, order 12345.")
    [finding] = find_personal_data([("a", row), ("b", clean)])
    assert finding.key == "a" and finding.flag is Flag.PII and finding.related is None
    assert finding.detail == (
        "history turn 1: e-mail j***@example.com; instruction: card ****1111; output: phone ***58"
    )
    for secret in ("jane.doe", "4111 1111 1111 1111", "7946"):
        assert secret not in finding.detail


def test_redact_replaces_each_match_with_a_placeholder() -> None:
    row = Row(
        system="Escalate to ops@example.com.",
        history=(
            Turn(role="user", content="Card 4111-1111-1111-1111 failed"),
            Turn(role="assistant", content="Sorry!"),
        ),
        instruction="Refund to GB82 WEST 1234 5698 7654 32 please, I'm at (555) 123-4567",
        input="SSN 123-45-6789, IP 81.2.69.160",
        output="Done, version 1.2.3.",
    )
    redacted = redact(row)
    assert redacted.system == "Escalate to [EMAIL]."
    assert redacted.history[0].content == "Card [CARD] failed"
    assert redacted.history[1] == row.history[1]
    assert redacted.instruction == "Refund to [IBAN] please, I'm at [PHONE]"
    assert redacted.input == "SSN [SSN], IP [IP]"
    assert redacted.output == row.output
    assert row.instruction.startswith("Refund to GB82")  # the original is untouched


_pii_pieces = st.sampled_from(
    [
        "jane@example.com",
        "a.b@c.io",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "4111 1111 1111 1111",
        "GB82 WEST 1234 5698 7654 32",
        "123-45-6789",
        "81.2.69.160",
        "@",
        ".",
        "-",
        " ",
        "0",
        "5",
    ]
)
_mixed_text = st.lists(st.one_of(_pii_pieces, st.text(max_size=12)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(_mixed_text)
def test_redacted_text_holds_no_detectable_pii(text: str) -> None:
    assert find_pii(redact_text(text)) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_find_pii_never_crashes_and_spans_match(text: str) -> None:
    previous_end = 0
    for match in find_pii(text):
        assert text[match.start : match.end] == match.text
        assert match.start >= previous_end
        previous_end = match.end
