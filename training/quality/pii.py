"""Personal data in training rows: find it, flag the rows that hold it, or redact it.

Regular expressions plus validators, no library: none is installed (Presidio would bring spaCy and a
model for little gain on these kinds). Each kind is found by a pattern and kept only if it
validates, to keep false positives (dates, versions, order numbers) out:

- e-mail: local@domain.tld;
- payment card: 12-19 digits, whole or in groups of 3+ separated by spaces or dashes, with a card
  network's prefix and length (Visa 4, 13/16/19 digits; Amex 34/37, 15; ...) and a Luhn checksum;
- IBAN: country code, check digits and the country's registered length, mod-97 checksum;
- US SSN: ddd-dd-dddd with the dashes, outside the ranges never issued (000, 666, 9xx, ...);
- IPv4: public unicast addresses only. Private, loopback and documentation ranges (192.168.1.1,
  10.0.0.5, 203.0.113.7) name no one and fill support answers ("open 192.168.1.1"); networks
  ("30.1.0.0/16") and dotted quads after "version", "update", "section", ">=" are not addresses.
  Four-part version numbers with no such word nearby ("broken since 1.6.5.2") still match;
- phone: 7-15 digits in a phone's shape: international (+CC ..., 00CC ...), North American
  ((555) 123-4567, 555-123-4567), national with a trunk 0 (020 7946 0958, 01 23 45 67 89), or any
  digit run right after a word like "call" or "phone". Bare digit runs, dates (2024-05-01),
  decimals, versions (1.2.3), ZIP+4 codes, IPs and numbers after "order", "invoice", "version",
  "port", "#", ... are not phones.

A match the caller lists in `ignore` (the bot's own support address or hotline) is not personal.
Tried on 111 MB of documentation (READMEs, changelogs, API docs, AWS CLI examples): the one card,
phone or IBAN match that was not one was a hex dump written like a French number ("01 02 03 04
05"); IPv4 still takes some four-part version numbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from training.quality.findings import Finding
from training.rows import Flag, Row, Turn


class PiiKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD = "card"
    IBAN = "iban"
    SSN = "ssn"
    IP = "ip"

    @property
    def placeholder(self) -> str:
        """What `redact` writes in its place: "[EMAIL]", "[PHONE]", ..."""
        return f"[{self.value.upper()}]"


_LABELS = {
    PiiKind.EMAIL: "e-mail",
    PiiKind.PHONE: "phone",
    PiiKind.CARD: "card",
    PiiKind.IBAN: "IBAN",
    PiiKind.SSN: "SSN",
    PiiKind.IP: "IP address",
}


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: its kind and where it is (`text[start:end]` is `text`)."""

    kind: PiiKind
    start: int
    end: int
    text: str

    def masked(self) -> str:
        """The match with all but a hint hidden: "j***@example.com", "****1111", "GB***32"."""
        digits = re.sub(r"\D", "", self.text)
        if self.kind is PiiKind.EMAIL:
            local, _, domain = self.text.partition("@")
            return f"{local[:1]}***@{domain}"
        if self.kind is PiiKind.CARD:
            return f"****{digits[-4:]}"
        if self.kind is PiiKind.IBAN:
            compact = re.sub(r"\s", "", self.text).upper()
            return f"{compact[:2]}***{compact[-2:]}"
        if self.kind is PiiKind.IP:
            return f"{self.text.split('.')[0]}.*.*.*"
        return f"***{digits[-2:]}"


_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-](?:[\w.%+-]{0,62}[\w%+-])?@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])"
)
# Numbers are ASCII digits (re.ASCII): other scripts' digits are not what these validators check.
# Not part of a word, a path, a longer number, a decimal ("1.4901161193847656e-08").
_CARD = re.compile(
    r"(?<![\w+.,/-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d|[.,]\d|[eE][+-]?\d)", re.ASCII
)
# Issuer prefixes and the lengths their cards have: a Luhn-valid number outside them is an id.
_CARD_NETWORKS = [
    (re.compile(r"4"), {13, 16, 19}),  # Visa
    (re.compile(r"5[1-5]|2(?:22[1-9]|2[3-9]|[3-6]|7[01]|720)"), {16}),  # Mastercard
    (re.compile(r"3[47]"), {15}),  # American Express
    (re.compile(r"6(?:011|5|4[4-9])"), {16, 17, 18, 19}),  # Discover
    (re.compile(r"3(?:0[0-5]|[689])"), {14, 15, 16, 17, 18, 19}),  # Diners Club
    (re.compile(r"35(?:2[89]|[3-8])"), {16, 17, 18, 19}),  # JCB
    (re.compile(r"62"), {16, 17, 18, 19}),  # UnionPay
    (re.compile(r"50(?:18|20|38)|5893|6304|67(?:59|6[1-3])"), set(range(12, 20))),  # Maestro
]
_IBAN_START = re.compile(r"(?<![^\W_])[A-Za-z]{2}\d{2}", re.ASCII)
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])", re.ASCII)
# Not after a version requirement (">=1.2.0.0") nor before "/16" (a network, not a host).
_IPV4 = re.compile(r"(?<![\w.=<>~^])(?:\d{1,3}\.){3}\d{1,3}(?![\w/-]|\.\d)", re.ASCII)
# A dotted quad after one of these words on its line is a version ("update V8 to 4.4.63.30").
_VERSION_NEARBY = re.compile(
    r"(?:\b(?:v\d*|version|ver|release[ds]?|build|updated?|upgraded?|downgraded?|patch|bumped|"
    r"section|rfc|oid)\b|§)[^\n]{0,30}$",
    re.IGNORECASE,
)
# Anything phone-shaped; `_is_phone` decides.
_PHONE = re.compile(
    r"(?<![\w+.,:/@#-])\+?(?:\(\d{1,5}\)|\d)(?:[ .-]?(?:\(\d{1,5}\)|\d)){6,20}(?![\w@]|[.,:-]\d)",
    re.ASCII,
)
# North American: (555) 123-4567, or three groups with one separator (not "252.227-7014").
_NANP = re.compile(
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}(?P<sep>[ .-])\d{3}(?P=sep)\d{4})", re.ASCII
)
# National with a trunk 0: 020 7946 0958, (030) 1234567, 06-12345678, 01 23 45 67 89.
_NATIONAL = re.compile(r"(?:\(0[1-9]\d{0,3}\)|0[1-9]\d{0,3})(?:[ -]\d{2,8})+", re.ASCII)
_NOT_PHONE_SHAPES = [
    re.compile(r"\d{3}-\d{2}-\d{4}"),  # an SSN, even one outside the issued ranges
    re.compile(r"\d{5}-\d{4}"),  # a US ZIP+4 code (02110-1301)
    re.compile(r"\d+\.\d+"),  # a decimal (0.000070)
]
_DATE = re.compile(r"\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}", re.ASCII)
_PHONE_CONTEXT = re.compile(
    r"(?<![\w./-])(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|ring|dial)(?![\w./-])",
    re.IGNORECASE,
)
# The words right before a number that make it an identifier ("order 0123 456 789", "invoice no.
# 4111111111111111", "#5551234567"), not a phone or a card.
_ID_BEFORE = re.compile(
    r"\b(?:version|ver|v|build|release|order|invoice|ticket|ref|reference|id|account|acct|"
    r"tracking|serial|port|isbn|sku|part|model|case|session)(?:\s+(?:number|no|nr|id))?\W{0,3}$"
    r"|#\s?$",
    re.IGNORECASE,
)

# Registered IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FK", "FO", "GL", "NL", "SD"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "OM", "SO", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["LY", "PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "NI", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU", "YE"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
    **dict.fromkeys(["RU"], 33),
}


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_card(text: str, start: int, candidate: str) -> bool:
    # Cards are written whole or in groups of 4 (Amex 4-6-5): never in pairs like a hex dump.
    if any(len(group) < 3 for group in re.split(r"[ -]", candidate)):
        return False
    digits = re.sub(r"\D", "", candidate)
    if not any(
        prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS
    ):
        return False
    return _luhn(digits) and not _ID_BEFORE.search(text, max(0, start - 20), start)


def _cards(text: str) -> list[PiiMatch]:
    return [
        PiiMatch(PiiKind.CARD, m.start(), m.end(), m.group())
        for m in _CARD.finditer(text)
        if _is_card(text, m.start(), m.group())
    ]


def _ibans(text: str) -> list[PiiMatch]:
    found = []
    for m in _IBAN_START.finditer(text):
        length = _IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None:
            continue
        # Walk on from the check digits: alphanumerics, single spaces between groups allowed.
        chars, end = list(m.group()), m.end()
        while len(chars) < length and end < len(text):
            if text[end].isascii() and text[end].isalnum():
                chars.append(text[end])
                end += 1
            elif text[end] == " " and end + 1 < len(text) and text[end + 1].isalnum():
                end += 1
            else:
                break
        if len(chars) < length or (end < len(text) and text[end].isalnum()):
            continue
        compact = "".join(chars).upper()
        rearranged = compact[4:] + compact[:4]
        if rearranged.isalnum() and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1:
            found.append(PiiMatch(PiiKind.IBAN, m.start(), end, text[m.start() : end]))
    return found


def _ips(text: str) -> list[PiiMatch]:
    found = []
    for m in _IPV4.finditer(text):
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        before = text[max(0, m.start() - 60) : m.start()]
        if address.is_global and not address.is_multicast and not _VERSION_NEARBY.search(before):
            found.append(PiiMatch(PiiKind.IP, m.start(), m.end(), m.group()))
    return found


def _is_phone(text: str, start: int, candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15 or len(set(digits)) == 1:
        return False
    if candidate.count("(") != candidate.count(")") or _DATE.fullmatch(candidate):
        return False
    if any(shape.fullmatch(candidate) for shape in _NOT_PHONE_SHAPES):
        return False
    before = text[max(0, start - 30) : start]
    context = bool(_PHONE_CONTEXT.search(before))
    if _ID_BEFORE.search(before) and not context:
        return False
    if _NANP.fullmatch(candidate):
        return True
    if candidate.count(".") >= 2:  # versions, IP addresses, build numbers
        return False
    if candidate.startswith("+"):  # international, also unspaced (E.164: +12065550100)
        return len(digits) >= 8
    if candidate.startswith("00") and not candidate.isdigit():  # international, 00 for +
        return len(digits) >= 10
    if _NATIONAL.fullmatch(candidate) and 9 <= len(digits) <= 12:
        groups = re.split(r"[ -]+", candidate.replace("(", "").replace(")", ""))
        # The last group of a national number has 3+ digits, unless it is written in pairs (FR).
        if len(groups[-1]) >= 3 or (len(groups) == 5 and all(len(g) == 2 for g in groups)):
            return True
    return context


def _phones(text: str) -> list[PiiMatch]:
    return [
        PiiMatch(PiiKind.PHONE, m.start(), m.end(), m.group())
        for m in _PHONE.finditer(text)
        if _is_phone(text, m.start(), m.group())
    ]


def _ignored(match: PiiMatch, ignore: Collection[str]) -> bool:
    if match.kind is PiiKind.EMAIL:
        return match.text.casefold() in {value.casefold() for value in ignore}
    digits = re.sub(r"\D", "", match.text)
    return any(digits and re.sub(r"\D", "", value) == digits for value in ignore)


def find_pii(text: str, *, ignore: Collection[str] = ()) -> list[PiiMatch]:
    """The personal data in `text`, in order and not overlapping (where two kinds claim the same
    characters, the more specific wins: e-mail, IBAN, card, SSN, IP address, phone). Values in
    `ignore` (compared by digits for numbers, case-insensitively for e-mails) are left out."""
    candidates = [
        *(PiiMatch(PiiKind.EMAIL, m.start(), m.end(), m.group()) for m in _EMAIL.finditer(text)),
        *_ibans(text),
        *_cards(text),
        *(PiiMatch(PiiKind.SSN, m.start(), m.end(), m.group()) for m in _SSN.finditer(text)),
        *_ips(text),
        *_phones(text),
    ]
    taken: list[PiiMatch] = []
    for match in candidates:  # in order of precedence
        if not any(match.start < t.end and t.start < match.end for t in taken):
            taken.append(match)
    return sorted((m for m in taken if not _ignored(m, ignore)), key=lambda m: m.start)


def _fields(row: Row) -> list[tuple[str, str]]:
    turns = [(f"history turn {n}", turn.content) for n, turn in enumerate(row.history, start=1)]
    named = [("system", row.system), *turns, ("instruction", row.instruction)]
    return [*named, ("input", row.input), ("output", row.output)]


def find_personal_data(
    rows: Sequence[tuple[str, Row]], *, ignore: Collection[str] = ()
) -> list[Finding]:
    """A PII finding for each row holding personal data in any part, naming the parts and the kinds
    with masked values: "output: e-mail j***@example.com, phone ***58"."""
    findings = []
    for key, row in rows:
        parts = []
        for name, text in _fields(row):
            matches = find_pii(text, ignore=ignore)
            if matches:
                listed = ", ".join(f"{_LABELS[m.kind]} {m.masked()}" for m in matches)
                parts.append(f"{name}: {listed}")
        if parts:
            findings.append(Finding(key, Flag.PII, "; ".join(parts)))
    return findings


def redact_text(text: str, *, ignore: Collection[str] = ()) -> str:
    """`text` with each piece of personal data replaced by its kind's placeholder ("[EMAIL]")."""
    # Repeated until nothing is found: a replacement can join what surrounded it into a new match.
    # Each pass removes at least one digit or "@" and placeholders have none, so this ends.
    matches = find_pii(text, ignore=ignore)
    while matches:
        for m in reversed(matches):
            text = text[: m.start] + m.kind.placeholder + text[m.end :]
        matches = find_pii(text, ignore=ignore)
    return text


def redact(row: Row, *, ignore: Collection[str] = ()) -> Row:
    """A copy of `row` with the personal data in every part replaced by placeholders."""
    return row.model_copy(
        update={
            "system": redact_text(row.system, ignore=ignore),
            "history": tuple(
                Turn(role=t.role, content=redact_text(t.content, ignore=ignore))
                for t in row.history
            ),
            "instruction": redact_text(row.instruction, ignore=ignore),
            "input": redact_text(row.input, ignore=ignore),
            "output": redact_text(row.output, ignore=ignore),
        }
    )
