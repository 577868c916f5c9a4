"""Throughput of the transformers backend with continuous batching vs one request at a time.

    python bench/batching.py [--threads 1 2] [--concurrency 1 4 8] [--max-tokens 48] [--dtype ...]

Loads the packaged SmolLM2 once per dtype, then for each torch thread count and each concurrency
level sends that many support-style prompts at once (greedy) to a batching backend and to one
limited to one request at a time (`max_batch_size=1`), and prints total completion tokens/s and
the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.backend import GenerationParams
from serving.transformers_backend import TransformersBackend

PROMPTS = [
    "How do I reset my password?",
    "My order hasn't arrived yet, what should I do?",
    "Can I get a refund for a damaged item?",
    "How do I change my shipping address?",
    "What payment methods do you accept?",
    "How can I contact customer support?",
    "Is there a warranty on your products?",
    "Can I cancel my subscription at any time?",
]


@dataclass
class Run:
    tokens: int
    seconds: float
    max_batch: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


async def measure(backend: TransformersBackend, concurrency: int, max_tokens: int) -> Run:
    """Send `concurrency` prompts at once and time until the last answer is complete."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(concurrency)]
    start = time.perf_counter()
    results = await asyncio.gather(
        *(backend.complete([{"role": "user", "content": p}], params) for p in prompts)
    )
    seconds = time.perf_counter() - start
    return Run(sum(r.completion_tokens for r in results), seconds, backend.stats.max_batch_seen)


async def bench(args: argparse.Namespace) -> None:
    print(
        f"{'dtype':<8} {'threads':>7} {'conc.':>5} {'mode':<14} {'tokens':>6} {'seconds':>7} "
        f"{'tok/s':>6} {'max batch':>9} {'vs one-at-a-time':>16}"
    )
    for dtype in args.dtype:
        loaded = TransformersBackend("smollm2", cache_dir=args.cache_dir, dtype=dtype)
        await loaded.start()  # loads the model; the runs below share it through from_loaded
        await loaded.close()
        for threads in args.threads:
            for concurrency in args.concurrency:
                runs: dict[str, Run] = {}
                for mode, size in (("one-at-a-time", 1), ("batched", args.max_batch_size)):
                    backend = TransformersBackend.from_loaded(
                        loaded.model,
                        loaded.tokenizer,
                        model_name=loaded.model_name,
                        max_batch_size=size,
                        torch_threads=threads,
                    )
                    await backend.start()
                    await measure(backend, 1, 4)  # warm-up: first forwards allocate and dispatch
                    runs[mode] = run = await measure(backend, concurrency, args.max_tokens)
                    await backend.close()
                    ratio = run.tokens_per_s / runs["one-at-a-time"].tokens_per_s
                    print(
                        f"{dtype:<8} {threads:>7} {concurrency:>5} {mode:<14} {run.tokens:>6} "
                        f"{run.seconds:>7.2f} {run.tokens_per_s:>6.1f} {run.max_batch:>9} "
                        f"{ratio:>15.2f}x",
                        flush=True,
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to try"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="numbers of simultaneous requests",
    )
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per answer")
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["float32"],
        help="model dtypes to try (bfloat16 pays off on CPUs with AVX512-BF16)",
    )
    parser.add_argument("--max-batch-size", type=int, default=8, help="batching backend's limit")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="convert the GGUF to an HF folder here once (faster later loads)",
    )
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
