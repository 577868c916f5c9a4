"""Dataset import / export speed: rows/s of `training.formats` vs the floor of any JSONL I/O.

One command: `python bench/dataset_io.py` (options: --rows, --repeat).
Builds N synthetic rows (a quarter with a system prompt, a fifth multi-turn, half with an input,
unicode, quotes, commas and newlines), then times `write_rows` and `read_rows` for jsonl (alpaca and
sharegpt) and csv (alpaca). The floor, measured in the same run on the same records, is plain
`orjson.dumps` per line to a file and `orjson.loads` per line back: what any JSONL reader or writer
must at least do. Ratios are the floor's time over ours (1.00x = as fast as the floor).
Goal: 100k rows import and export in a few seconds each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.formats import Format, read_rows, record_of, write_rows
from training.rows import Row, Turn


def synthetic_rows(n: int) -> list[Row]:
    rows = []
    for i in range(n):
        history: tuple[Turn, ...] = ()
        if i % 5 == 0:
            history = (
                Turn(role="user", content=f"Hallo, mein Gerät Nr. {i} startet nicht."),
                Turn(role="assistant", content='Haben Sie "Reset" 5 s lang gedrückt?'),
            )
        rows.append(
            Row(
                system="You are the support assistant of Acme, Inc." if i % 4 == 0 else "",
                history=history,
                instruction=f"How do I reset the hub, model {i % 97}?",
                input=f"Manual, p. {i % 300}:\nHold the button, then wait." if i % 2 else "",
                output=f"Press and hold the reset button for 5 s, then wait {i % 60} s; done.",
                category=("closed_qa", "open_qa", "refusal")[i % 3],
            )
        )
    return rows


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def floor_times(records: list[dict[str, object]], path: Path, repeat: int) -> tuple[float, float]:
    """Plain orjson per line: the export and import times no JSONL code can beat."""

    def export() -> None:
        with path.open("wb") as f:
            for record in records:
                f.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def import_() -> None:
        with path.open("rb") as f:
            loaded = [orjson.loads(line) for line in f]
        assert len(loaded) == len(records)

    export()
    return best(repeat, export), best(repeat, import_)


def main() -> None:
    parser = argparse.ArgumentParser(description="Dataset import/export rows/s vs plain orjson.")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args()
    n = args.rows
    rows = synthetic_rows(n)

    results = []
    with tempfile.TemporaryDirectory(prefix="shadowdesk-bench-") as tmp:
        floors: dict[Format, tuple[float, float]] = {}
        for fmt in (Format.ALPACA, Format.SHAREGPT):
            records = [record_of(row, fmt) for row in rows]
            floors[fmt] = floor_times(records, Path(tmp) / f"floor-{fmt}.jsonl", args.repeat)
        for fmt, file_type in (
            (Format.ALPACA, "jsonl"),
            (Format.SHAREGPT, "jsonl"),
            (Format.ALPACA, "csv"),
        ):
            path = Path(tmp) / f"{fmt}.{file_type}"
            export_s = best(args.repeat, lambda: write_rows(rows, path, format=fmt))
            imported = read_rows(path)
            if len(imported.rows) != n or imported.errors:
                raise RuntimeError(f"{fmt} {file_type}: read back {len(imported.rows)} of {n} rows")
            import_s = best(args.repeat, lambda: read_rows(path, format=fmt))
            size_mb = path.stat().st_size / 1e6
            results.append((f"{file_type} {fmt}", size_mb, export_s, import_s, floors[fmt]))

    print(f"\nDataset I/O, {n} rows (best of {args.repeat}); floor = orjson per line, same records")
    print(
        f"{'case':<16}{'MB':>7}{'export rows/s':>15}{'floor':>11}{'ratio':>8}"
        f"{'import rows/s':>15}{'floor':>11}{'ratio':>8}"
    )
    for case, size_mb, export_s, import_s, (floor_export, floor_import) in results:
        print(
            f"{case:<16}{size_mb:>7.1f}{n / export_s:>15,.0f}{n / floor_export:>11,.0f}"
            f"{floor_export / export_s:>7.2f}x{n / import_s:>15,.0f}{n / floor_import:>11,.0f}"
            f"{floor_import / import_s:>7.2f}x"
        )
    print(
        "csv is compared with the alpaca JSONL floor. Import builds and validates a Row per record; "
        "export writes atomically (temp file, fsync, rename)."
    )


if __name__ == "__main__":
    main()
