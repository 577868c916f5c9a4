"""Rows/s generated from documents with the local model (the packaged SmolLM2 on this machine's CPU).

One command: `python bench/generation.py` (options: --chunks, --pairs, --max-tokens, --concurrency).
Chunks come from the demo bot's documents. Two measurements in the same run, on the same chunks and
prompts:
- baseline: the model alone — each generation prompt completed once, nothing parsed or checked;
- shadowdesk: `training.generation.generate_from_chunk` — the same prompts, replies parsed,
  checked against the chunk, retried once when nothing was usable, rows built.
Prints rows/s, what was dropped and why, and the time ratio against the baseline (the share of the
time that is the model's). --concurrency N generates N chunks at once (the backend batches them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.backend import GenerationParams
from serving.knowledge.chunking import ChunkingConfig, chunk_document
from serving.knowledge.demo import demo_documents
from serving.knowledge.parsers import parse_document
from serving.transformers_backend import TransformersBackend
from training.generation import (
    Chunk,
    ChunkResult,
    GenerationOptions,
    Style,
    generate_from_chunk,
    generation_messages,
)


def demo_chunks(limit: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for path in demo_documents():
        document = parse_document(path, path.name)
        for c in chunk_document(document, path.name, ChunkingConfig(size=600, overlap=80)):
            if len(c.text) > 200:  # skip headings-only scraps: real generation skips nothing, but
                chunks.append(Chunk(c.chunk_id, c.text, document=path.name))  # they time little
    # Spread over the documents, not the first few sections of one.
    step = max(1, len(chunks) // limit)
    return chunks[::step][:limit]


async def gather_limited(n: int, coros: list) -> list:  # type: ignore[type-arg]
    semaphore = asyncio.Semaphore(n)

    async def one(coro):  # type: ignore[no-untyped-def]
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def main(args: argparse.Namespace) -> None:
    backend = TransformersBackend(
        "smollm2", torch_threads=args.threads, cache_dir=Path.home() / ".cache" / "shadowdesk-bench"
    )
    await backend.start()
    chunks = demo_chunks(args.chunks)
    options = GenerationOptions(
        pairs_per_chunk=args.pairs,
        params=GenerationParams(max_tokens=args.max_tokens, temperature=0.0),
    )
    try:
        await backend.complete(
            generation_messages(chunks[0], Style.ALPACA, options), options.params
        )
        started = time.perf_counter()
        plain = await gather_limited(
            args.concurrency,
            [
                backend.complete(generation_messages(c, Style.ALPACA, options), options.params)
                for c in chunks
            ],
        )
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        results: list[ChunkResult] = await gather_limited(
            args.concurrency,
            [generate_from_chunk(backend, c, Style.ALPACA, options) for c in chunks],
        )
        ours = time.perf_counter() - started
    finally:
        await backend.close()
    rows = sum(len(r.rows) for r in results)
    dropped = Counter(d.reason.split(" (")[0] for r in results for d in r.dropped)
    tokens = sum(r.completion_tokens for r in results)
    attempts = sum(r.attempts for r in results)
    print(
        f"Generation from {len(chunks)} demo chunks, SmolLM2-135M on CPU ({args.threads} threads), "
        f"{args.pairs} pairs/chunk, max {args.max_tokens} tokens, concurrency {args.concurrency}"
    )
    print(
        f"baseline   model only: {baseline:7.1f} s  "
        f"{sum(p.completion_tokens for p in plain) / baseline:6.1f} tokens/s"
    )
    print(
        f"shadowdesk generate:   {ours:7.1f} s  {tokens / ours:6.1f} tokens/s  "
        f"{rows} rows = {rows / ours:.3f} rows/s  ({attempts} model calls)"
    )
    print(f"ratio (shadowdesk / baseline time): {ours / baseline:.2f}x")
    print("dropped: " + (", ".join(f"{n} {r}" for r, n in dropped.most_common()) or "nothing"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
