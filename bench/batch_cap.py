"""Time to first token of the in-process backend under load: a fixed batch cap of 8 against the cap
sized from the machine (`serving.batch_sizing`), at 8 and 16 concurrent streamed answers.

    python bench/batch_cap.py [--concurrency 8 16] [--max-tokens 80] [--threads 2]

With a cap of 8, the ninth request waits for a whole answer before its first token; the goal for
the automatic cap is a TTFT p50 at 16 concurrent within 2x of that at 8. Same model, same prompts,
same run; prints tokens/s and TTFT p50/p99 per cap and concurrency, and the 16-vs-8 TTFT ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batching import PROMPTS  # noqa: E402
from serving.backend import Finished, GenerationParams, TextDelta  # noqa: E402
from serving.transformers_backend import TransformersBackend  # noqa: E402


async def one(backend: TransformersBackend, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(seconds to the first text, completion tokens) of one streamed answer."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0.7, seed=len(prompt))
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async for event in backend.stream([{"role": "user", "content": prompt}], params):
        if isinstance(event, TextDelta) and first is None and event.text:
            first = time.perf_counter() - started
        elif isinstance(event, Finished):
            tokens = event.completion_tokens
    return (first if first is not None else time.perf_counter() - started), tokens


async def load(backend: TransformersBackend, concurrency: int, max_tokens: int) -> dict[str, float]:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(concurrency)]
    started = time.perf_counter()
    results = await asyncio.gather(*(one(backend, p, max_tokens) for p in prompts))
    seconds = time.perf_counter() - started
    ttfts = sorted(t for t, _ in results)
    return {
        "tokens_per_s": sum(n for _, n in results) / seconds,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p99": ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
    }


async def bench(args: argparse.Namespace) -> None:
    loaded = TransformersBackend("smollm2", cache_dir=args.cache_dir)
    await loaded.start()
    await loaded.close()
    print(f"{'cap':>10} {'conc.':>5} {'tok/s':>7} {'TTFT p50':>9} {'TTFT p99':>9}")
    for label, cap in (("fixed 8", 8), ("auto", None)):
        backend = TransformersBackend.from_loaded(
            loaded.model,
            loaded.tokenizer,
            model_name=loaded.model_name,
            max_batch_size=cap,
            torch_threads=args.threads,
        )
        await backend.start()
        await load(backend, 2, 4)  # warm-up
        p50: dict[int, float] = {}
        for concurrency in args.concurrency:
            r = await load(backend, concurrency, args.max_tokens)
            p50[concurrency] = r["ttft_p50"]
            name = f"{label} ({backend.max_batch_size})"
            print(
                f"{name:>10} {concurrency:>5} {r['tokens_per_s']:>7.1f} "
                f"{r['ttft_p50']:>8.2f}s {r['ttft_p99']:>8.2f}s",
                flush=True,
            )
        await backend.close()
        low, high = min(args.concurrency), max(args.concurrency)
        print(f"{label}: TTFT p50 at {high} / at {low} = {p50[high] / p50[low]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "shadowdesk-bench"
    )
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
