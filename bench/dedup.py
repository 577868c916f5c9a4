"""Duplicate check: time and recall on synthetic rows with planted exact and near duplicates.

One command: `python bench/dedup.py` (options: --rows, --exact, --near, --threshold, --seed).
Builds N rows of random words (Zipf-distributed over a 5,000-word vocabulary, so common words are
shared as in real text), then plants copies of earlier rows: exact ones (case, spacing and end
punctuation changed) and near ones (one to three words substituted, inserted or deleted). Times
`find_duplicates` against the floor measured in the same run: exact-duplicate hashing alone over
the same rows. Reports recall of the planted duplicates (near ones also among those whose true
shingle Jaccard reaches the threshold, the ones the check promises to find) and rows flagged that
were not planted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.quality.duplicates import find_duplicates
from training.quality.similarity import Normalised, jaccard, shingles
from training.rows import Row

SHINGLE_WORDS = 2  # find_duplicates' default


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))))
    return sorted(words)


def sentence(rng: random.Random, vocab: list[str], weights: list[float], n: int) -> str:
    return " ".join(rng.choices(vocab, weights, k=n))


def exact_copy(rng: random.Random, row: Row) -> Row:
    """The same row as a reader sees it: case, spacing and end punctuation changed."""
    instruction = row.instruction.upper() if rng.random() < 0.5 else f"  {row.instruction}  "
    output = row.output.replace(" ", "  ", 3) + rng.choice(["", ".", "!", " ..."])
    return row.model_copy(update={"instruction": instruction, "output": output})


def near_copy(rng: random.Random, vocab: list[str], row: Row) -> Row:
    """The row with one to three words of its answer substituted, inserted or deleted."""
    words = row.output.split()
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(words))
        edit = rng.choice(["substitute", "insert", "delete"])
        if edit == "substitute":
            words[at] = rng.choice(vocab)
        elif edit == "insert":
            words.insert(at, rng.choice(vocab))
        elif len(words) > 1:
            del words[at]
    return row.model_copy(update={"output": " ".join(words)})


def build(
    n: int, exact: float, near: float, seed: int
) -> tuple[list[tuple[str, Row]], dict[str, tuple[str, str]]]:
    """N keyed rows and the planted duplicates: key -> (kind, key of the row it copies)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    rows: list[tuple[str, Row]] = []
    originals: list[int] = []
    planted: dict[str, tuple[str, str]] = {}
    for position in range(n):
        key = f"row_{position}"
        draw = rng.random()
        if originals and draw < exact + near:
            source = rng.choice(originals)
            source_key, source_row = rows[source]
            if draw < exact:
                planted[key] = ("exact", source_key)
                rows.append((key, exact_copy(rng, source_row)))
            else:
                planted[key] = ("near", source_key)
                rows.append((key, near_copy(rng, vocab, source_row)))
            continue
        row = Row(
            instruction=sentence(rng, vocab, weights, rng.randint(6, 14)).capitalize() + "?",
            output=sentence(rng, vocab, weights, rng.randint(15, 60)).capitalize() + ".",
        )
        originals.append(position)
        rows.append((key, row))
    return rows, planted


def exact_hashing(rows: list[tuple[str, Row]]) -> int:
    """The floor: normalise and hash every row, count exact repeats."""
    seen: set[bytes] = set()
    repeats = 0
    for _, row in rows:
        digest = Normalised.of(row).exact_key()
        repeats += digest in seen
        seen.add(digest)
    return repeats


def main() -> None:
    parser = argparse.ArgumentParser(description="Duplicate check: time and recall.")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--exact", type=float, default=0.05, help="share of exact copies")
    parser.add_argument("--near", type=float, default=0.05, help="share of near copies")
    parser.add_argument("--threshold", type=float, default=0.8, help="near-duplicate Jaccard")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rows, planted = build(args.rows, args.exact, args.near, args.seed)
    by_key = dict(rows)

    start = time.perf_counter()
    exact_repeats = exact_hashing(rows)
    floor_s = time.perf_counter() - start

    start = time.perf_counter()
    findings = find_duplicates(rows, threshold=args.threshold)
    check_s = time.perf_counter() - start

    flagged = {f.key: f.related for f in findings}
    print(f"\nDuplicate check over {len(rows)} synthetic rows (seed {args.seed})")
    print(f"{'':<28}{'seconds':>10}{'rows/s':>12}{'ratio':>9}")
    print(f"{'floor: exact hashing':<28}{floor_s:>10.2f}{len(rows) / floor_s:>12.0f}{1:>8.2f}x")
    print(
        f"{'find_duplicates':<28}{check_s:>10.2f}{len(rows) / check_s:>12.0f}"
        f"{check_s / floor_s:>8.2f}x"
    )
    print(f"\n{'planted':<28}{'rows':>10}{'flagged':>12}{'recall':>9}{'related ok':>12}")
    for kind in ("exact", "near"):
        keys = [k for k, (what, _) in planted.items() if what == kind]
        found = [k for k in keys if k in flagged]
        # A copy of a copy may name either; "related ok" counts the planted source.
        right = [k for k in found if flagged[k] == planted[k][1]]
        print(
            f"{kind:<28}{len(keys):>10}{len(found):>12}{len(found) / max(len(keys), 1):>9.1%}"
            f"{len(right) / max(len(found), 1):>12.1%}"
        )
        if kind == "near":
            reachable = [
                k
                for k in keys
                if jaccard(
                    shingles(Normalised.of(by_key[k]).exchange, SHINGLE_WORDS),
                    shingles(Normalised.of(by_key[planted[k][1]]).exchange, SHINGLE_WORDS),
                )
                >= args.threshold
            ]
            hit = [k for k in reachable if k in flagged]
            label = f"near, Jaccard >= {args.threshold}"
            print(
                f"{label:<28}{len(reachable):>10}{len(hit):>12}"
                f"{len(hit) / max(len(reachable), 1):>9.1%}"
            )
    unplanted = [k for k in flagged if k not in planted]
    print(f"flagged, not planted: {len(unplanted)} (exact repeats by hashing: {exact_repeats})")


if __name__ == "__main__":
    main()
