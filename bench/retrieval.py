"""Retrieval latency at 10k and 100k chunks, and the retriever's overhead over a raw Chroma query.

    python bench/retrieval.py [--sizes 10000 100000] [--queries 200] [--threads 1]

Seeds: real MiniLM embeddings of a few hundred real documentation chunks (standard-library
docstrings). The store is filled with "random-ish" vectors around those seeds (seed + Gaussian
noise, cosine ~0.85 to its seed) with real texts and the metadata real ingests write, so
the HNSW graph sees clustered data rather than uniform noise. Queries are real questions,
embedded for real. For each size, per query (p50 / p95):
- embed: `embed_query` alone;
- raw: `collection.query` with the precomputed vector (top 5, documents + metadata + distances);
- retriever: `Retriever.search_by_vector` (same vector, top 5: over-fetch, version filter, Passage);
- hybrid: `Retriever.hybrid_search` (same vector, plus BM25 over the chunk texts, fusion, one passage
  per section, small-to-big context) — what the chat path runs; the one-off load of the chunk texts
  into the BM25 index is timed apart;
- end to end: `Retriever.search` (hybrid, embedding included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from cpu_contention import ContentionMeter
from kb_corpus import write_corpus

from serving.knowledge import ChromaStore, KnowledgeBase, load_embedder, parse_document
from serving.knowledge.demo import demo_questions
from serving.knowledge.ingestion import stored_chunk
from serving.knowledge.knowledge_base import document_id

BOT = "bench"
CHUNKS_PER_DOC = 20


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--seed-chars", type=int, default=150_000, help="corpus size for the seed chunks"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with ContentionMeter() as meter:
        run(args)
    print(meter.report())


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        embedder = load_embedder()
        kb = KnowledgeBase(ChromaStore.open(work / "chroma"), embedder)
        docs = [parse_document(p) for p in write_corpus(work / "corpus", args.seed_chars)]
        seeds = [(doc, c) for doc in docs for c in kb.chunk(doc, "seed")]
        t0 = time.perf_counter()
        seed_vectors = np.asarray(
            embedder.embed_documents([c.embedding_text for _, c in seeds]), dtype=np.float32
        )
        print(
            f"{len(seeds)} seed chunks embedded in {time.perf_counter() - t0:.1f} s; torch threads {args.threads}"
        )

        questions = [q.question for q in demo_questions()]
        questions += [
            f"What does {c.heading_path[-1]} do in {doc.title}?"
            for doc, c in seeds
            if len(c.heading_path) > 1
        ]
        questions = (questions * (args.queries // len(questions) + 1))[: args.queries]
        query_vectors = [embedder.embed_query(q) for q in questions[:20]]  # warm-up

        index = kb.store.index(BOT, embedder.model_id, embedder.dimension)
        assert index is not None
        at = datetime.now(UTC)
        filled = 0
        print(
            f"{'chunks':>8} | {'embed p50/p95':>14} | {'raw Chroma p50/p95':>18} | {'retriever p50/p95':>17} | "
            f"{'overhead':>8} | {'hybrid p50/p95 (vs raw, BM25 load)':>36} | {'end-to-end p50/p95':>18} | "
            "add time"
        )
        for size in sorted(args.sizes):
            t0 = time.perf_counter()
            while filled < size:
                n = min(index._max_batch, size - filled)
                pick = np.arange(filled, filled + n) % len(seeds)
                noise = rng.normal(0, 0.0316, (n, embedder.dimension)).astype(np.float32)
                vectors = seed_vectors[pick] + noise
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                stored = []
                for offset, seed_index in enumerate(pick):
                    doc, chunk = seeds[seed_index]
                    i = filled + offset
                    item = stored_chunk(chunk, doc, at, "bench")
                    meta = {**item.metadata, "doc_id": document_id(f"doc-{i // CHUNKS_PER_DOC}")}
                    stored.append((f"c{i}", item.text, meta))
                index.collection.add(
                    ids=[s[0] for s in stored],
                    documents=[s[1] for s in stored],
                    metadatas=[s[2] for s in stored],
                    embeddings=vectors.tolist(),
                )
                filled += n
            add_s = time.perf_counter() - t0
            assert index.count() == size

            query_vectors = [embedder.embed_query(q) for q in questions]
            kb.retriever.search_by_vector(
                BOT, query_vectors[0], k=5
            )  # first query loads the segment
            embed_ms = [t for q in questions for t in timed(lambda q=q: embedder.embed_query(q), 1)]
            raw_ms = [
                t
                for v in query_vectors
                for t in timed(
                    lambda v=v: index.collection.query(
                        query_embeddings=[v],
                        n_results=5,
                        include=["documents", "metadatas", "distances"],
                    ),
                    1,
                )
            ]
            ret_ms = [
                t
                for v in query_vectors
                for t in timed(lambda v=v: kb.retriever.search_by_vector(BOT, v, k=5), 1)
            ]
            t0 = time.perf_counter()
            kb.retriever.hybrid_search(BOT, questions[0], query_vectors[0], k=5)
            load_s = time.perf_counter() - t0
            hyb_ms = [
                t
                for q, v in zip(questions, query_vectors)
                for t in timed(lambda q=q, v=v: kb.retriever.hybrid_search(BOT, q, v, k=5), 1)
            ]
            e2e_ms = [
                t for q in questions for t in timed(lambda q=q: kb.retriever.search(BOT, q, k=5), 1)
            ]
            (e50, e95), (r50, r95), (t50, t95), (h50, h95), (x50, x95) = map(
                percentiles, (embed_ms, raw_ms, ret_ms, hyb_ms, e2e_ms)
            )
            print(
                f"{size:>8} | {e50:6.1f} / {e95:5.1f} | {r50:8.2f} / {r95:6.2f}  | {t50:7.2f} / {t95:6.2f} | "
                f"{t50 / r50:7.2f}x | {h50:7.2f} / {h95:6.2f} ({h50 / r50:5.2f}x, load {load_s:.1f} s) | "
                f"{x50:8.1f} / {x95:6.1f}  | {add_s:.0f} s"
            )
        print("\nlatencies in ms; overhead = retriever p50 / raw Chroma p50 (same vectors, top 5).")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
