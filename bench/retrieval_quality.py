"""Retrieval quality and refusals on real documentation sets, against a naive pipeline, same run.

    python bench/retrieval_quality.py [--sets borgbackup,gnucash] [--threads 2] [--fresh]

For each set (bench/retrieval_sets/*.json, documentation from Debian `*-doc` packages):
- Shadowdesk: the site folder ingested as a user would (`select_files` + `KnowledgeBase`), then the
  chat path's search (hybrid, distinct sections) with the default knowledge settings;
- the naive baseline: each page's whole text in 200-word windows, MiniLM, Chroma, top 5 windows;
- hit@1 / hit@5 / MRR@10 on questions written in users' words (a hit: a passage from a page that
  answers the question), and the scope guard on in-scope, near and far off-topic questions and
  greetings (refusal is the positive class).
Sets used to choose settings are marked "tune"; the rest are held out and reported apart.
Indexes are cached under ~/.cache/shadowdesk-bench (keyed by the ingest code), so a second run only
searches; --fresh rebuilds them (and times the ingest).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: I001
from cpu_contention import ContentionMeter
from doc_sets import DEFAULT_CACHE, DocSet, available_sets, load_set
from selectolax.lexbor import LexborHTMLParser

from api.settings import Settings
from serving.knowledge import ChromaStore, ChunkingConfig, KnowledgeBase, load_embedder
from serving.knowledge.embedders import SentenceTransformerEmbedder
from serving.knowledge.site_files import select_files
from serving.scope_guard import GuardThresholds, Scope, ScopeGuard

BOT = "eval"
# Code whose change invalidates a cached index.
_INGEST_CODE = (
    "serving/knowledge/parsers",
    "serving/knowledge/chunking.py",
    "serving/knowledge/site_files.py",
    "serving/knowledge/ingestion.py",
)


@dataclass
class RankStats:
    ranks: list[int | None] = field(default_factory=list)

    def add(self, pages: Sequence[str], answers: Sequence[str]) -> None:
        self.ranks.append(next((i for i, p in enumerate(pages, 1) if p in answers), None))

    def row(self) -> tuple[float, float, float]:
        n = len(self.ranks) or 1
        hits = [r for r in self.ranks if r is not None]
        return (
            sum(r == 1 for r in hits) / n,
            sum(r <= 5 for r in hits) / n,
            sum(1 / r for r in hits) / n,
        )


@dataclass
class IngestStats:
    files: int
    skipped: int
    chunks: int
    seconds: float | None  # None: loaded from the cache


def code_signature(embedder_id: str) -> str:
    digest = hashlib.sha256(embedder_id.encode())
    for entry in _INGEST_CODE:
        path = ROOT / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def shadowdesk_index(
    doc_set: DocSet,
    embedder: SentenceTransformerEmbedder,
    cache: Path,
    fresh: bool,
    chunking: ChunkingConfig,
) -> tuple[KnowledgeBase, IngestStats]:
    signature = code_signature(embedder.model_id + chunking.signature)
    folder = cache / "index" / f"{doc_set.name}-{signature}"
    selection = select_files([doc_set.root])
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    kb = KnowledgeBase(ChromaStore.open(folder / "chroma"), embedder, chunking=chunking)
    if (folder / ".complete").exists():
        chunks = sum(d.chunk_count for d in kb.list_documents(BOT))
        return kb, IngestStats(len(selection.files), len(selection.skipped), chunks, None)
    started = time.perf_counter()
    results = kb.ingest_paths(BOT, [(f.path, f.source) for f in selection.files])
    seconds = time.perf_counter() - started
    failed = [r for r in results if r.status == "error"]
    for r in failed:
        print(f"  ingest failure: {r.source}: {r.reason} {r.message}")
    (folder / ".complete").touch()
    return kb, IngestStats(
        len(selection.files), len(selection.skipped), sum(r.chunk_count for r in results), seconds
    )


def naive_index(
    doc_set: DocSet, embedder: SentenceTransformerEmbedder, cache: Path, fresh: bool
) -> tuple[Callable[[str, int], list[str]], IngestStats]:
    """Whole page text (tags stripped, nothing else) in 200-word windows; pages of the top windows."""
    folder = cache / "index" / f"{doc_set.name}-naive-{embedder.model_id.replace('/', '_')}"
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    store = ChromaStore.open(folder / "chroma")
    collection = store.client.get_or_create_collection(
        "naive",
        configuration={"hnsw": {"space": "cosine"}},
        embedding_function=None,  # type: ignore[arg-type]
    )
    selection = select_files([doc_set.root])
    seconds = None
    if not (folder / ".complete").exists():
        started = time.perf_counter()
        ids, texts, metas = [], [], []
        for f in selection.files:
            body = LexborHTMLParser(f.path.read_text(errors="replace")).body
            words = (body.text(separator=" ") if body is not None else "").split()
            for i in range(0, len(words), 200):
                ids.append(f"{f.source}:{i}")
                texts.append(" ".join(words[i : i + 200]))
                metas.append({"page": f.source})
        vectors = embedder.embed_documents(texts)
        for start in range(0, len(ids), 5000):
            collection.add(
                ids=ids[start : start + 5000],
                embeddings=vectors[start : start + 5000],
                documents=texts[start : start + 5000],
                metadatas=metas[start : start + 5000],
            )
        seconds = time.perf_counter() - started
        (folder / ".complete").touch()

    def search(question: str, k: int) -> list[str]:
        found = collection.query(
            query_embeddings=[embedder.embed_query(question)], n_results=k, include=["metadatas"]
        )
        return [str(m["page"]) for m in (found["metadatas"] or [[]])[0]]

    return search, IngestStats(
        len(selection.files), len(selection.skipped), collection.count(), seconds
    )


def evaluate(
    doc_set: DocSet, embedder: SentenceTransformerEmbedder, args: argparse.Namespace
) -> dict[str, object]:
    from api.services.knowledge.config import KnowledgeConfig

    config = KnowledgeConfig()
    chunking = ChunkingConfig(size=args.chunk_size, overlap=args.chunk_overlap)
    kb, ours_ingest = shadowdesk_index(doc_set, embedder, args.cache, args.fresh, chunking)
    if args.search:
        overrides = {
            k: type(getattr(kb.retriever.settings, k))(v)
            for k, v in (item.split("=") for item in args.search.split(","))
        }
        kb.retriever.settings = dataclasses.replace(kb.retriever.settings, **overrides)
    naive_search, naive_ingest = naive_index(doc_set, embedder, args.cache, args.fresh)
    ours, naive = RankStats(), RankStats()
    misses: list[str] = []
    for q in doc_set.in_scope:
        vector = kb.retriever.embed_query(q.text)
        found = kb.retriever.hybrid_search(BOT, q.text, vector, k=10, min_score=config.min_score)
        pages = [p.source for p in found.passages]
        ours.add(pages[:5] + pages[5:], q.pages)
        if ours.ranks[-1] is None or ours.ranks[-1] > 5:
            misses.append(f"    miss: {q.text[:90]!r} want {list(q.pages)[:2]} got {pages[:3]}")
        naive_pages = naive_search(q.text, 10)
        naive.add(naive_pages, q.pages)
        if naive.ranks[-1] is not None and naive.ranks[-1] <= 5 and (ours.ranks[-1] or 99) > 5:
            misses.append(f"      (naive found it: {naive_pages[:3]})")
    thresholds = GuardThresholds()
    if args.guard:
        thresholds = dataclasses.replace(
            thresholds,
            **{k: float(v) for k, v in (item.split("=") for item in args.guard.split(","))},
        )
    guard = ScopeGuard(
        Scope(name=doc_set.bot_name, description=doc_set.scope), kb.embedder, thresholds
    )
    verdicts: dict[str, list[str]] = {}
    for kind, questions in (
        ("in", [q.text for q in doc_set.in_scope]),
        ("near", doc_set.near),
        ("far", doc_set.far),
        ("greeting", doc_set.greetings),
    ):
        for text in questions:
            vector = kb.retriever.embed_query(text)
            found = kb.retriever.hybrid_search(
                BOT, text, vector, k=config.top_k, min_score=config.min_score
            )
            decision = guard.assess(text, found, question_vector=vector)
            verdicts.setdefault(kind, []).append(decision.verdict)
            wrong = (decision.verdict == "refuse") != (kind in ("near", "far")) or (
                kind == "greeting"
            ) != (decision.verdict == "smalltalk")
            if wrong and args.show_misses and not doc_set.held_out:
                sig = decision.signals
                misses.append(
                    f"    guard {kind}: {decision.verdict} support={sig.support} "
                    f"sal={sig.salience} unk={sig.unknown_terms} {text[:70]!r}"
                )
    if args.show_misses:
        print("\n".join(misses))
    return {
        "set": doc_set,
        "ours": ours,
        "naive": naive,
        "ours_ingest": ours_ingest,
        "naive_ingest": naive_ingest,
        "verdicts": verdicts,
    }


def report(results: list[dict[str, object]]) -> None:
    print("\nretrieval (hit@1 / hit@5 / MRR@10), Shadowdesk vs the naive pipeline, same run:")
    print(f"{'set':22} {'role':8} {'gen':8} {'q':>3}  {'naive':>18}  {'shadowdesk':>18}")
    for group, label in ((False, "tune"), (True, "held-out")):
        merged_ours, merged_naive = RankStats(), RankStats()
        rows = [r for r in results if r["set"].held_out == group]  # type: ignore[attr-defined]
        for r in rows:
            s: DocSet = r["set"]  # type: ignore[assignment]
            ours: RankStats = r["ours"]  # type: ignore[assignment]
            naive: RankStats = r["naive"]  # type: ignore[assignment]
            merged_ours.ranks += ours.ranks
            merged_naive.ranks += naive.ranks
            print(
                f"{s.name:22} {label:8} {s.generator:8} {len(ours.ranks):3}  "
                f"{_fmt(naive.row())}  {_fmt(ours.row())}"
            )
        if len(rows) > 1:
            print(
                f"{'  all ' + label:22} {'':8} {'':8} {len(merged_ours.ranks):3}  "
                f"{_fmt(merged_naive.row())}  {_fmt(merged_ours.row())}"
            )
    print("\nscope guard (refusal is the positive class; far + near off-topic together):")
    print(
        f"{'set':22} {'role':8} {'precision':>9} {'recall':>6} {'far':>5} {'near':>5} "
        f"{'in refused':>10} {'greetings':>9}"
    )
    for group, label in ((False, "tune"), (True, "held-out")):
        merged: dict[str, list[str]] = {}
        rows = [r for r in results if r["set"].held_out == group]  # type: ignore[attr-defined]
        for r in rows:
            v: dict[str, list[str]] = r["verdicts"]  # type: ignore[assignment]
            for kind, items in v.items():
                merged.setdefault(kind, []).extend(items)
            print(f"{r['set'].name:22} {label:8} {_guard_row(v)}")  # type: ignore[attr-defined]
        if len(rows) > 1:
            print(f"{'  all ' + label:22} {'':8} {_guard_row(merged)}")
    print("\ningest (chunks, seconds, chunks/s; '-' = cached index, run with --fresh to time it):")
    for r in results:
        s = r["set"]
        for label, st in (("shadowdesk", r["ours_ingest"]), ("naive", r["naive_ingest"])):
            secs = st.seconds  # type: ignore[union-attr]
            rate = f"{st.chunks / secs:6.1f}" if secs else "     -"  # type: ignore[union-attr]
            print(
                f"  {s.name:22} {label:10} files {st.files:4} skipped {st.skipped:4} "  # type: ignore[union-attr]
                f"chunks {st.chunks:5} {secs or 0:7.1f} s {rate} chunks/s"
            )  # type: ignore[union-attr]


def _guard_row(v: dict[str, list[str]]) -> str:
    off = v.get("near", []) + v.get("far", [])
    refused_off = sum(x == "refuse" for x in off)
    refused_in = sum(x == "refuse" for x in v.get("in", []))
    precision = refused_off / max(1, refused_off + refused_in)
    recall = refused_off / max(1, len(off))

    def share(kind: str, verdict: str) -> str:
        items = v.get(kind, [])
        return f"{sum(x == verdict for x in items)}/{len(items)}"

    return (
        f"{precision:9.2f} {recall:6.2f} {share('far', 'refuse'):>5} {share('near', 'refuse'):>5} "
        f"{share('in', 'refuse'):>10} {share('greeting', 'smalltalk'):>9}"
    )


def _fmt(row: tuple[float, float, float]) -> str:
    return f"{row[0]:.2f} / {row[1]:.2f} / {row[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sets", default=",".join(available_sets()), help="comma-separated set names"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="packages and indexes")
    parser.add_argument("--fresh", action="store_true", help="rebuild (and time) the indexes")
    parser.add_argument("--show-misses", action="store_true", help="list the questions missed at 5")
    parser.add_argument("--chunk-size", type=int, default=Settings().chunk_size)
    parser.add_argument("--chunk-overlap", type=int, default=Settings().chunk_overlap)
    parser.add_argument(
        "--guard", default="", help="GuardThresholds overrides, e.g. refuse_below=0.38"
    )
    parser.add_argument(
        "--search", default="", help="SearchSettings overrides, e.g. per_document=2,rrf_k=30"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    embedder = load_embedder()
    with ContentionMeter() as meter:
        results = [
            evaluate(load_set(name, args.cache), embedder, args) for name in args.sets.split(",")
        ]
    report(results)
    print(meter.report())


if __name__ == "__main__":
    main()
