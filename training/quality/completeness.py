"""Whether each answer is there and whole: EMPTY when the output is blank, TRUNCATED when it stops
where a finished answer does not.

Short answers are often complete without a full stop ("Yes", "Settings › Backup", "30 days"), and
so are many chat answers, so a missing full stop alone never flags a row. An output is TRUNCATED
when it ends:

- inside a code block (an odd number of ``` or ~~~ fence lines), at any length;
- and, from `min_words` words on, when its last line, outside code, ends
  - inside a bracket it opened, without a sentence-ending mark ("(for example `--keep 7");
  - on a comma, semicolon, colon, dash, "&", "/", "+", "=" or "\\" ("Do the following:"), unless
    the last word is a link or a path, the mark is doubled ("C++") or the line is only marks (a
    rule, "---");
  - on a word a sentence never ends on: an article, a conjunction, "of", "than", "your", ...;
  - on a bare list marker ("3." or "-" with nothing after it);
  - mid-word: the last word (4 letters or more) occurs nowhere else in the rows checked and begins
    a longer word that occurs at least twice, and not as a mere inflection ("...in the configur"
    while "configuration" is common; "backup" next to "backups" is fine). Without a dictionary this
    needs other rows' words: the more rows checked together, the more it finds.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Sequence

from training.quality.findings import Finding
from training.rows import Flag, Row

_FENCE = re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE)
_FENCED_BLOCK = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_WORD = re.compile(r"[^\W\d_]+")
_LAST_WORD = re.compile(r"(?:^|\s)([^\W\d_]+)$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])$")
_SENTENCE_END = ".!?…"
_URL_OR_PATH = re.compile(r"(?:^|\s)(?:\S*://|www\.|/)\S*$")
_DANGLING_MARKS = ",;:-–—&/+=\\"
_OPENERS, _CLOSERS = "([{", ")]}"
# Words a finished English sentence does not end on. Prepositions that double as particles ("turn
# it on", "sign in", "the plan you signed up with") are not here.
_DANGLING_WORDS = frozenset(
    "a an the and or but nor because although whereas of than via your my our their its whose such "
    "very".split()
)
# Endings that turn a word into another word: "backup" is whole though "backups" exists.
_INFLECTIONS = frozenset("s es ed d ing er ers est ly y ies".split())


def find_incomplete(rows: Sequence[tuple[str, Row]], *, min_words: int = 4) -> list[Finding]:
    """EMPTY and TRUNCATED findings, in input order. `min_words`: outputs shorter than this are
    judged only by an unclosed code block (short answers end in too many ways)."""
    vocabulary = Vocabulary(rows)
    findings = []
    for key, row in rows:
        if not row.output.strip():
            findings.append(Finding(key, Flag.EMPTY, "the output is empty"))
            continue
        reason = truncation(row.output, vocabulary, min_words=min_words)
        if reason is not None:
            findings.append(Finding(key, Flag.TRUNCATED, reason))
    return findings


class Vocabulary:
    """The words of a set of rows (all parts) and how often each occurs: what tells a cut-off word
    from a whole one."""

    def __init__(self, rows: Sequence[tuple[str, Row]]) -> None:
        self.counts: Counter[str] = Counter()
        for _, row in rows:
            parts = [row.system, row.instruction, row.input, row.output]
            for text in [*parts, *(t.content for t in row.history)]:
                self.counts.update(w.casefold() for w in _WORD.findall(text))
        self._sorted = sorted(self.counts)

    def completion(self, fragment: str) -> str | None:
        """A word of at least two occurrences that `fragment` begins and that is more than an
        inflection of it ("configur" -> "configuration"; "backup" -> "backups" does not count)."""
        at = bisect.bisect_right(self._sorted, fragment)
        while at < len(self._sorted) and self._sorted[at].startswith(fragment):
            word = self._sorted[at]
            if self.counts[word] >= 2 and word[len(fragment) :] not in _INFLECTIONS:
                return word
            at += 1
        return None


def truncation(
    text: str, vocabulary: Vocabulary | None = None, *, min_words: int = 4
) -> str | None:
    """Why `text` looks cut off, or None when it looks finished (see the module docstring)."""
    if len(_FENCE.findall(text)) % 2:
        return "a code block is not closed"
    if len(text.split()) < min_words:
        return None
    prose = _INLINE_CODE.sub("code", _FENCED_BLOCK.sub("code.", text)).rstrip()
    final = prose.rsplit("\n", 1)[-1].strip()
    if _LIST_MARKER.match(final):
        return "ends on an empty list item"
    last_line = final.rstrip("*_~ \t")  # closing emphasis
    if not last_line or last_line.endswith(tuple(_SENTENCE_END)):
        return None
    if not any(c.isalnum() for c in last_line) or _URL_OR_PATH.search(last_line):
        return None  # a rule ("---"), a heading underline, a link: they end as they like
    opened = _unclosed(prose)
    if opened:
        return f"ends inside an unclosed '{opened}'"
    if last_line[-1] in _DANGLING_MARKS and last_line[-2:-1] != last_line[-1]:  # not "C++"
        return f"ends on '{last_line[-1]}'"
    last = _LAST_WORD.search(last_line)
    if last is None:
        return None
    word = last.group(1).casefold()
    if word in _DANGLING_WORDS:
        return f"ends on '{last.group(1)}'"
    if vocabulary is not None and len(word) >= 4 and vocabulary.counts[word] <= 1:
        whole = vocabulary.completion(word)
        if whole is not None:
            return f"ends mid-word ('{last.group(1)}', as in '{whole}')"
    return None


def _unclosed(text: str) -> str | None:
    """The innermost bracket left open at the end of `text`. Any closer closes the innermost
    opener ("(0, 100]" is an interval); stray closers (":)", "1)") are ignored."""
    stack: list[str] = []
    for char in text:
        if char in _OPENERS:
            stack.append(char)
        elif char in _CLOSERS and stack:
            stack.pop()
    return stack[-1] if stack else None
