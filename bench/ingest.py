"""Ingest throughput of the knowledge pipeline vs the raw encoder, in the same run.

    python bench/ingest.py [--chars 300000] [--threads 1] [--repeats 2]

Builds a Markdown corpus from the standard library's docstrings, then alternates:
- raw: `SentenceTransformer.encode` on exactly the texts the pipeline embeds (same model, batch 32);
- pipeline: `KnowledgeBase.ingest_files` (parse → chunk → embed → Chroma replace) into a fresh
  embedded Chroma.
Each is timed `--repeats` times, interleaved so background load hits both alike; the best run of
each is compared. Also prints the non-encoder stages timed alone (parse+chunk, Chroma writes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from cpu_contention import ContentionMeter
from kb_corpus import write_corpus

from serving.knowledge import ChromaStore, KnowledgeBase, load_embedder, parse_document
from serving.knowledge.ingestion import stored_chunk
from serving.knowledge.knowledge_base import document_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chars", type=int, default=300_000, help="corpus size in characters")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with ContentionMeter() as meter:
        run(args)
    print(meter.report())


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        paths = write_corpus(work / "corpus", args.chars)
        embedder = load_embedder()
        probe = KnowledgeBase(ChromaStore.open(work / "probe"), embedder)

        t0 = time.perf_counter()
        chunks = [c for p in paths for c in probe.chunk(parse_document(p), document_id(p.name))]
        parse_chunk_s = time.perf_counter() - t0
        texts = [c.embedding_text for c in chunks]
        corpus_bytes = sum(p.stat().st_size for p in paths)
        print(
            f"corpus: {len(paths)} Markdown files, {corpus_bytes / 1e3:.0f} kB, {len(chunks)} chunks "
            f"(mean {sum(map(len, texts)) / len(texts):.0f} chars embedded); torch threads {args.threads}"
        )
        embedder.embed_documents(texts[:64])  # warm-up

        raw_runs: list[float] = []
        pipe_runs: list[float] = []
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            embedder._model.encode(
                texts,
                batch_size=embedder.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            raw_runs.append(time.perf_counter() - t0)
            kb = KnowledgeBase(ChromaStore.open(work / f"db{rep}"), embedder)
            t0 = time.perf_counter()
            results = kb.ingest_files("bench", paths)
            pipe_runs.append(time.perf_counter() - t0)
            assert all(r.status == "ingested" for r in results), [r for r in results if not r.ok]
            assert sum(r.chunk_count for r in results) == len(chunks)
            print(
                f"  run {rep + 1}: raw encoder {raw_runs[-1]:.1f} s, pipeline {pipe_runs[-1]:.1f} s"
            )

        # The Chroma writes alone: same chunks, precomputed vectors, into a fresh store.
        vectors = embedder.embed_documents(texts)
        kb = KnowledgeBase(ChromaStore.open(work / "store-only"), embedder)
        index = kb.store.index("bench", embedder.model_id, embedder.dimension)
        assert index is not None
        docs = {p.name: parse_document(p) for p in paths}
        t0 = time.perf_counter()
        start = 0
        for name, doc in docs.items():
            doc_chunks = [c for c in chunks if c.doc_id == document_id(name)]
            stored = [stored_chunk(c, doc, datetime.now(UTC), "x") for c in doc_chunks]
            index.replace_document(
                document_id(name), stored, vectors[start : start + len(doc_chunks)]
            )
            start += len(doc_chunks)
        store_s = time.perf_counter() - t0

        raw, pipe = min(raw_runs), min(pipe_runs)
        n = len(chunks)
        print()
        print(f"raw encoder      {raw:7.2f} s  {n / raw:6.1f} chunks/s")
        print(f"full pipeline    {pipe:7.2f} s  {n / pipe:6.1f} chunks/s")
        print(
            f"pipeline overhead over the raw encoder: {100 * (pipe - raw) / raw:+.1f} %  (target <= 10 %)"
        )
        print(
            f"  of which, timed alone: parse+chunk {parse_chunk_s:.2f} s ({100 * parse_chunk_s / raw:.1f} %), "
            f"Chroma writes {store_s:.2f} s ({100 * store_s / raw:.1f} %)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
