"""Background knowledge jobs: `ingest` (uploads too large to index before the reply) and `reembed`
(a bot switching embedding model)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from api.db import transaction
from api.services.knowledge.config import knowledge_of
from api.services.knowledge.documents import (
    IngestSource,
    bot_row,
    ingest_counts,
    ingest_sources,
    list_documents,
    originals_dir,
    result_dict,
)
from api.services.knowledge.registry import KnowledgeRegistry
from serving.knowledge import IngestResult


def run_ingest_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `ingest`: payload {"files": [{"path", "source"}], "force"}; files live in the job's upload
    folder and are removed once ingested."""
    files = [IngestSource(Path(f["path"]), f["source"]) for f in ctx.payload["files"]]
    done: list[dict[str, Any]] = list(
        ctx.progress.get("results") or ctx.payload.get("rejected", [])
    )
    finished = {r["source"] for r in done}
    todo = [f for f in files if f.source not in finished]  # resume after a crash where we stopped

    def report(result: IngestResult) -> None:
        done.append(result_dict(result))
        ctx.report(results=done, total=len(files), done=len(done))

    ingest_sources(
        runtime.knowledge,
        runtime.sessions,
        ctx.bot_id,
        todo,
        force=bool(ctx.payload.get("force")),
        on_result=report,
    )
    upload_dir = ctx.payload.get("upload_dir")
    if upload_dir:
        shutil.rmtree(upload_dir, ignore_errors=True)
    return {"results": done, **ingest_counts(done)}


def run_reembed_job(ctx: Any, runtime: Any) -> dict[str, Any]:
    """Job `reembed`: payload {"embedder": spec}. Builds the bot's collection for the new model from the
    kept originals, then switches the bot to it; until then chat keeps using the old model, so vectors
    of two models are never mixed."""
    new_spec: str = ctx.payload["embedder"]
    hub: KnowledgeRegistry = runtime.knowledge
    with transaction(runtime.sessions) as session:
        bot = bot_row(session, ctx.bot_id)
        config = knowledge_of(bot.knowledge)
        docs = [(d.id, d.source) for d in list_documents(session, ctx.bot_id)]
    old_spec = hub.spec(config)
    base = hub.base(new_spec)
    failed: list[dict[str, Any]] = []
    for i, (doc_id, source) in enumerate(docs):
        folder = originals_dir(runtime.settings, ctx.bot_id) / doc_id
        files = list(folder.iterdir()) if folder.exists() else []
        if not files:
            failed.append({"doc_id": doc_id, "source": source, "message": "original file missing"})
            continue
        result = base.ingest_file(
            ctx.bot_id, files[0], source=source, instructions=config.instructions(), force=True
        )
        if not result.ok:
            failed.append({"doc_id": doc_id, "source": source, "message": result.message})
        ctx.report(done=i + 1, total=len(docs))
    if failed:
        base.store.drop_index(ctx.bot_id, base.embedder.model_id)
        raise RuntimeError(
            f"re-embedding failed for {len(failed)} document(s); the bot keeps {old_spec}: {failed}"
        )
    with transaction(runtime.sessions) as session:
        bot = bot_row(session, ctx.bot_id)
        bot.knowledge = {**(bot.knowledge or {}), "embedder": new_spec}
        for row in list_documents(session, ctx.bot_id):
            row.embedder = new_spec
    if old_spec != new_spec:
        old = hub.base(old_spec)
        old.store.drop_index(ctx.bot_id, old.embedder.model_id)
    return {"embedder": new_spec, "documents": len(docs)}
