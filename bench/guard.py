"""Scope-guard refusal precision/recall and retrieval hit@k on the demo bot's labelled questions.

    python bench/guard.py [--llm] [--threads 1]

Ingests the demo documents (MiniLM, embedded Chroma in a temp dir), then for each labelled
question retrieves the top 5 and asks the guard. Refusal is the positive class: precision = share
of refusals that were out of scope, recall = share of out-of-scope questions refused. "Unsure"
decisions are reported, and scored both ways (as answered, as refused). With --llm, unsure
questions go to the packaged SmolLM2 through the transformers backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from cpu_contention import ContentionMeter

from serving.knowledge import ChromaStore, KnowledgeBase, load_embedder
from serving.knowledge.demo import DEMO_BOT, demo_documents, demo_questions, demo_scope
from serving.scope_guard import GuardDecision, ScopeGuard


def precision_recall(refused: list[bool], out_of_scope: list[bool]) -> tuple[float, float]:
    tp = sum(r and o for r, o in zip(refused, out_of_scope))
    return tp / max(1, sum(refused)), tp / max(1, sum(out_of_scope))


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    backend = None
    try:
        kb = KnowledgeBase(ChromaStore.open(work / "chroma"), load_embedder())
        results = kb.ingest_files(DEMO_BOT, demo_documents())
        assert all(r.ok for r in results), [r for r in results if not r.ok]
        if args.llm:
            from serving.transformers_backend import TransformersBackend

            backend = TransformersBackend("smollm2", torch_threads=args.threads)
            await backend.start()
        guard = ScopeGuard(demo_scope(), kb.embedder, backend=backend)

        questions = demo_questions()
        ranks: list[int | None] = []
        decisions: list[GuardDecision] = []
        for q in questions:
            vector = kb.retriever.embed_query(q.question)
            found = kb.retriever.hybrid_search(DEMO_BOT, q.question, vector, k=5)
            passages = found.passages
            decision = await guard.decide(q.question, found, question_vector=vector)
            decisions.append(decision)
            if q.in_scope:
                rank = next(
                    (i for i, p in enumerate(passages, 1) if p.source in q.expected_sources), None
                )
                ranks.append(rank)
            wrong = decision.verdict == ("refuse" if q.in_scope else "answer")
            marker = "  <-- wrong" if wrong else ""
            s = decision.signals
            print(
                f"{q.id} {'in ' if q.in_scope else 'out'} {decision.verdict:7} "
                f"retrieval={s.top_retrieval_score:.2f} support={s.support:.2f} "
                f"in={s.in_scope_similarity:.2f} out={s.out_of_scope_similarity:.2f} "
                f"llm={s.llm_verdict or '-':7} {q.question}{marker}"
            )

        out = [not q.in_scope for q in questions]
        verdicts = [d.verdict for d in decisions]
        n_in = sum(q.in_scope for q in questions)
        print(
            f"\n{len(questions)} questions: {n_in} in scope, {sum(out)} out of scope; "
            f"model calls: {sum(d.used_llm for d in decisions)}"
        )
        for label, scope in (("in scope", True), ("out of scope", False)):
            counts = Counter(v for v, q in zip(verdicts, questions) if q.in_scope == scope)
            print(
                f"  {label:13}: "
                + ", ".join(f"{k} {counts[k]}" for k in ("answer", "unsure", "refuse"))
            )
        for policy, unsure_refused in (("unsure -> answer", False), ("unsure -> refuse", True)):
            refused = [v == "refuse" or (unsure_refused and v == "unsure") for v in verdicts]
            p, r = precision_recall(refused, out)
            print(f"  refusal precision / recall ({policy}): {p:.2f} / {r:.2f}")
        hits = [r for r in ranks if r is not None]
        print(
            f"retrieval over {len(ranks)} in-scope questions: hit@1 {sum(r == 1 for r in hits) / len(ranks):.2f}, "
            f"hit@5 {len(hits) / len(ranks):.2f}, MRR {sum(1 / r for r in hits) / len(ranks):.2f}"
        )
    finally:
        if backend is not None:
            await backend.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--llm", action="store_true", help="resolve unsure questions with SmolLM2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with ContentionMeter() as meter:
        asyncio.run(run(args))
    print(meter.report())


if __name__ == "__main__":
    main()
