"""A DOCX decompression bomb, parsed without the archive limits (what happened before they
existed) and with them (the defaults), each in a fresh process: wall time and peak RSS.

    python bench/document_bomb.py [--mb 24] [--words 2]

`--mb` is what word/document.xml expands to (the bomb reported in the security pass: 24 MB from a
36 KB file). Without limits the parse takes minutes at 24 MB; try `--mb 4` first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from serving.knowledge.parsers import DocumentError, ParseLimits, parse_document
limits = ParseLimits(max_bytes=10**12, max_expanded_bytes=10**12, max_compression_ratio=1e12,
                     max_chars=10**12) if sys.argv[2] == "before" else ParseLimits()
data = open(sys.argv[1], "rb").read()
started = time.perf_counter()
try:
    parse_document(data, "bomb.docx", limits=limits)
    outcome = "parsed"
except DocumentError as exc:
    outcome = exc.reason
print(json.dumps({{"s": time.perf_counter() - started, "outcome": outcome,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=4, help="expanded size of document.xml")
    parser.add_argument(
        "--words", type=int, default=2, help="words per paragraph (fewer: a bigger tree)"
    )
    args = parser.parse_args()
    from tests.serving.knowledge.test_parse_limits import docx_bomb

    with tempfile.TemporaryDirectory() as folder:
        bomb = Path(folder) / "bomb.docx"
        bomb.write_bytes(docx_bomb(args.mb, args.words))
        print(
            f"bomb: {bomb.stat().st_size / 1024:.0f} KB on disk, {args.mb} MB expanded "
            f"({args.words} words a paragraph)"
        )
        code = CHILD.format(root=str(ROOT))
        results = {}
        for mode in ("before", "after"):
            out = subprocess.run(
                [sys.executable, "-c", code, str(bomb), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[mode]
            print(
                f"{mode:>6}: {r['outcome']:>13} in {r['s']:8.3f} s, peak RSS {r['rss_mb']:7.0f} MB"
            )
        before, after = results["before"], results["after"]
        print(
            f"after/before: time {after['s'] / before['s']:.4f}x, "
            f"peak RSS {after['rss_mb'] / before['rss_mb']:.2f}x"
        )


if __name__ == "__main__":
    main()
