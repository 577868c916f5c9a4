"""What a short text claims, in forms that can be compared: quantities, yes or no, negation.

String similarity cannot tell a paraphrase from a contradiction ("refunds within 30 days" and
"refunds within 14 days" are 96% alike). These features can: two answers that give different
numbers, or one saying yes and the other no, disagree however alike their words are. They also tell
apart questions that look alike and ask different things ("enable" / "disable", "after 30 days" /
"after 14 days"). English only; the features are small and deliberately literal.
"""

from __future__ import annotations

import re
from functools import lru_cache

from training.quality.similarity import normalise, words

# A number (1,000 / 1.5 / 14:00), an optional currency before it, and the word after it.
_QUANTITY = re.compile(
    r"(?<![\w.,:])(?P<currency>[$€£¥])?\s?(?P<number>\d+(?:[.,:]\d+)*)"
    r"(?:[\s-]?(?P<unit>%|[^\W\d_]+(?:\.[^\W\d_]\.?)?)(?:[\s-](?P<unit2>days?))?)?"
)
# Unit spellings to one name; a word after a number that is not here is not its unit.
_UNITS = {
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], "second"),
    **dict.fromkeys(["min", "mins", "minute", "minutes"], "minute"),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "hour"),
    **dict.fromkeys(["d", "day", "days"], "day"),
    **dict.fromkeys(["wk", "wks", "week", "weeks"], "week"),
    **dict.fromkeys(["mo", "month", "months"], "month"),
    **dict.fromkeys(["y", "yr", "yrs", "year", "years"], "year"),
    **dict.fromkeys(["%", "percent", "pct"], "%"),
    **dict.fromkeys(["usd", "dollar", "dollars"], "$"),
    **dict.fromkeys(["eur", "euro", "euros"], "€"),
    **dict.fromkeys(["gbp", "pound", "pounds"], "£"),
    **{u: u for u in ["kb", "mb", "gb", "tb", "km", "kg", "times", "users", "seats", "devices"]},
    **dict.fromkeys(["x"], "times"),
}
_DAY_KINDS = {"business", "working", "calendar"}
_MERIDIEM = re.compile(r"^([ap])\.?m\.?$")
_DIGIT = re.compile(r"\d")
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+$")

_YES = frozenset("yes yep yeah yup sure correct absolutely definitely certainly".split())
_NO = frozenset("no nope nah".split())
# "No problem, ..." and "No worries" open a yes.
_NO_FALSE_START = frozenset("problem problems worries worry".split())
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none|nothing|neither|nor)\b|n['’]t\b")

# Words that turn a question into its opposite when swapped ("enable" / "disable").
_OPPOSITES = [
    ("enable", "disable"),
    ("add", "remove"),
    ("increase", "decrease"),
    ("upgrade", "downgrade"),
    ("on", "off"),
    ("in", "out"),
    ("open", "close"),
    ("start", "stop"),
    ("show", "hide"),
    ("include", "exclude"),
    ("import", "export"),
    ("upload", "download"),
    ("before", "after"),
    ("more", "less"),
    ("minimum", "maximum"),
    ("min", "max"),
    ("first", "last"),
    ("buy", "sell"),
    ("send", "receive"),
    ("accept", "reject"),
    ("free", "paid"),
    ("public", "private"),
    ("create", "delete"),
    ("join", "leave"),
]
_NEGATING_PREFIXES = ("un", "dis", "de", "non", "in", "im")

# Words that say little about what an answer is about (for the "share nothing" test).
STOP_WORDS = frozenset(
    """a an the and or but if then so to of in on at by for with from into onto as is are was were
    be been being do does did have has had will would can could should may might must shall it its
    this that these those there here you your yours we our us they them their i me my he she his her
    what which who whom whose when where why how all any some each every no not yes also just only
    than too very about up out over under again further once please thanks thank""".split()
)


def _number(text: str) -> str:
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if text.count(".") > 1 or "," in text or ":" in text:
        return text  # a version, a list or a time: compared as written
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def quantities(text: str) -> frozenset[str]:
    """The numbers in `text` with their units, in one spelling: "14 days" and "14-day" -> "14 day",
    "2pm" and "14:00" -> "14:00", "$30" and "30 USD" -> "30 $", "1,000" -> "1000"."""
    found: set[str] = set()
    if not _DIGIT.search(text):
        return frozenset()
    for m in _QUANTITY.finditer(text.casefold()):
        number, unit = m.group("number"), (m.group("unit") or "")
        meridiem = _MERIDIEM.match(unit)
        if meridiem and re.fullmatch(r"\d{1,2}(?::\d{2})?", number):
            hour, _, minute = number.partition(":")
            hour_24 = int(hour) % 12 + (12 if meridiem.group(1) == "p" else 0)
            found.add(f"{hour_24:02d}:{minute or '00'}")
            continue
        if re.fullmatch(r"\d{1,2}:\d{2}", number):
            hour, minute = number.split(":")
            found.add(f"{int(hour):02d}:{minute}")
            continue
        if unit in _DAY_KINDS and m.group("unit2"):
            name = f"{unit} day"
        else:
            name = _UNITS.get(unit, "")
        if m.group("currency"):
            name = m.group("currency")
        found.add(f"{_number(number)} {name}".strip())
    return frozenset(found)


def conflicting_quantities(a: str, b: str) -> tuple[list[str], list[str]] | None:
    """The quantities each text gives that the other does not, when both give some of their own
    ("30 days" / "14 days"); None when one text's quantities include the other's (one just says
    more) or either has none."""
    first, second = quantities(a), quantities(b)
    only_first, only_second = first - second, second - first
    if only_first and only_second:
        return sorted(only_first), sorted(only_second)
    return None


def polarity(text: str) -> str | None:
    """ "yes" or "no" when `text` opens with one ("Yes, ...", "No." / "Nope"), else None."""
    opening = words(normalise(text))[:2]
    if not opening:
        return None
    if opening[0] in _YES:
        return "yes"
    if opening[0] in _NO and not (len(opening) > 1 and opening[1] in _NO_FALSE_START):
        return "no"
    return None


def negations(text: str) -> int:
    """How many negations (not, never, can't, ...) `text` has."""
    return len(_NEGATION.findall(text.casefold()))


@lru_cache(maxsize=65536)
def _sides(word: str) -> frozenset[int]:
    """Which `_OPPOSITES` entries `word` is (+i: the left word of entry i, -i: the right one)."""
    found: set[int] = set()
    for i, pair in enumerate(_OPPOSITES, start=1):
        for sign, base in zip((1, -1), pair):
            # "enabled" / "disables" are "enable" / "disable": longer bases match by their stem.
            if word == base or (
                len(base) >= 5 and word.startswith(base[:-1]) and len(word) <= len(base) + 3
            ):
                found.add(sign * i)
    return frozenset(found)


def opposite_words(a: str, b: str) -> tuple[str, str] | None:
    """A pair of opposite words, one only in `a` and the other only in `b` ("enable" / "disable",
    "install" / "uninstall"), or None."""
    first, second = set(words(normalise(a))), set(words(normalise(b)))
    only_first, only_second = first - second, second - first
    sides = {w: _sides(w) for w in only_second}
    for x in only_first:
        opposite = {-i for i in _sides(x)}
        for y, y_sides in sides.items():
            if opposite & y_sides:
                return x, y
    for shorter, longer, flip in (
        (only_first, only_second, False),
        (only_second, only_first, True),
    ):
        for word in shorter:
            if len(word) < 4:
                continue
            for prefix in _NEGATING_PREFIXES:
                if prefix + word in longer:
                    return (prefix + word, word) if flip else (word, prefix + word)
    return None


def content_stems(text: str) -> frozenset[str]:
    """Crude stems (first four letters) of the words of `text` that are not stop words; crude on
    purpose: "refund" / "refunds", "ship" / "shipping" must meet."""
    return frozenset(w[:4] for w in words(normalise(text)) if w not in STOP_WORDS)
