"""Text features shared by the checks that compare rows: normalised text, word shingles, MinHash.

Two rows say "the same thing" to these checks when their words match once what a reader ignores is
normalised away: case, runs of whitespace, punctuation at the ends of a part. Near matches are found
with MinHash sketches of word shingles in an LSH index (datasketch), so no check compares every pair
of rows: a row is compared only with the earlier rows that share a band of its sketch.
"""

from __future__ import annotations

import hashlib
import re
import string
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
from datasketch import MinHash, MinHashLSH
from rapidfuzz import fuzz

from training.rows import Row

# Stripped at both ends of a part: "Yes." and "yes!" are the same answer; inner punctuation stays.
_EDGE = string.punctuation + "“”„‘’‚«»‹›…–—−¡¿·•◦ \t\n\r\f\v\u00a0"
_WORD = re.compile(r"\w+")
# Mixes word hashes into shingle hashes (a 32-bit odd multiplier: the golden-ratio constant).
_MIX = np.uint64(0x9E3779B1)
_LOW32 = np.uint64(0xFFFFFFFF)


def normalise(text: str) -> str:
    """`text` casefolded, whitespace runs made one space, punctuation at both ends removed."""
    return " ".join(text.casefold().split()).strip(_EDGE)


def words(text: str) -> list[str]:
    """The words of (normalised) `text`, inner punctuation dropped."""
    return _WORD.findall(text)


def digest(*parts: str) -> bytes:
    """A 16-byte fingerprint of `parts` (cheaper to keep for 100k rows than the texts)."""
    return hashlib.blake2b("\x1e".join(parts).encode(), digest_size=16).digest()


class Normalised(NamedTuple):
    """A row's parts as the comparing checks see them, each normalised once."""

    #: The earlier turns. The system prompt does not count: a bot's rows share it, and the same
    #: answer under two prompts still teaches it twice.
    history: str
    instruction: str
    input: str
    output: str

    @classmethod
    def of(cls, row: Row) -> Normalised:
        history = "\x1f".join(f"{t.role}:{normalise(t.content)}" for t in row.history)
        return cls(history, normalise(row.instruction), normalise(row.input), normalise(row.output))

    @property
    def exchange(self) -> str:
        """Instruction and answer as one text: what near-duplicates compare. The input is left
        out: rows made from one passage share it, and would all look alike."""
        return f"{self.instruction} {self.output}" if self.output else self.instruction

    def exact_key(self) -> bytes:
        """Equal for rows whose conversation, question, input and answer are the same."""
        return digest(*self)

    def question_key(self) -> bytes:
        """Equal for rows asking the same question, on the same input, in the same conversation."""
        return digest(self.history, self.instruction, self.input)


def same_setting(a: Normalised, b: Normalised, input_ratio: float = 90.0) -> bool:
    """Whether two rows are asked in the same setting: the same earlier turns and near-identical
    inputs (rapidfuzz ratio >= `input_ratio`). Alike questions in different conversations, or on
    different passages, are different questions."""
    if a.history != b.history:
        return False
    return a.input == b.input or fuzz.ratio(a.input, b.input) >= input_ratio


def shingles(text: str, size: int) -> np.ndarray:
    """Sorted distinct 32-bit hashes of the `size`-word shingles of `text` (a text shorter than
    `size` words is one shingle; an empty one has none)."""
    found = words(text)
    if not found:
        return np.empty(0, dtype=np.uint32)
    hashes = np.fromiter((zlib.crc32(w.encode()) for w in found), np.uint64, len(found))
    width = min(size, len(found))
    count = len(found) - width + 1
    mixed = hashes[:count].copy()
    for offset in range(1, width):
        mixed = (mixed * _MIX + hashes[offset : offset + count]) & _LOW32
    return np.unique(mixed.astype(np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two `shingles` results (1.0 for two empty ones)."""
    if not a.size and not b.size:
        return 1.0
    shared = np.intersect1d(a, b, assume_unique=True).size
    return shared / (a.size + b.size - shared)


def sketches(shingle_sets: Iterable[np.ndarray], num_perm: int) -> Iterator[MinHash]:
    """One MinHash per shingle set, streamed (`MinHash.generator` shares the permutations). The
    shingles are hashes already, so MinHash's own hash function is `int`: it only permutes them."""
    yield from MinHash.generator(
        (s.tolist() for s in shingle_sets), num_perm=num_perm, hashfunc=int
    )


def lsh_index(threshold: float, num_perm: int) -> MinHashLSH:
    """An empty LSH index that finds sketches of about `threshold` Jaccard similarity or more."""
    return MinHashLSH(threshold=threshold, num_perm=num_perm)
