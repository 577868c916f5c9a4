"""Turning a growing list of token ids into safe text deltas.

Pure logic, no model: `IncrementalDecoder` never emits half a UTF-8 character, and `StopMatcher`
holds back text that could still become a stop string, so nothing after a stop string ever leaks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: What a byte-level tokenizer decodes an incomplete UTF-8 sequence to.
REPLACEMENT_CHAR = "\ufffd"


class IncrementalDecoder:
    """Decode tokens one at a time into text deltas whose concatenation is the decoded answer.

    Decoding token by token would split multi-byte characters and drop the leading spaces some
    tokenizers strip at the start of a decode, so each step decodes a short window that starts a few
    tokens back (the scheme used by TGI and vLLM) and emits only what the new token added, waiting
    while the text ends in an incomplete character.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the context window
        self._read_offset = 0  # everything before this has been emitted

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (often "", e.g. mid-character)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return new_text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        """Return whatever is still held back (a truncated character decodes to U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]


class StopMatcher:
    """Cut streamed text at the first stop string, holding back anything that could start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return the part that is safe to emit. Sets `stopped` once a stop string is
        seen, after which the stop string and everything after it are dropped."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buffer[: min(hits)]
        keep = self._held_back_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """Return the held-back text once generation ends without a stop string."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _held_back_length(self, buffer: str) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of some stop string."""
        for size in range(min(len(buffer), self._longest - 1), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
