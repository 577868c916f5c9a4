"""The demo bot every embedded install starts with (slug `demo`): support for Kestrel Lighting's
(fictional) Glow lamps, with a small documentation set, a scope and a refusal message."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from api.services.access.audit import SYSTEM_ACTOR
from api.services.bots.management import BotCreate, create_bot, find_bot
from serving.knowledge.demo import demo_documents, demo_scope

log = logging.getLogger(__name__)

DEMO_SLUG = "demo"


def demo_bot() -> BotCreate:
    scope = demo_scope()
    return BotCreate(
        slug=DEMO_SLUG,
        name="Kestrel Lighting support (demo)",
        system_prompt=(
            "You are the customer-support assistant of Kestrel Lighting (Glow smart lamps, the Perch hub and "
            "the Kestrel Home app). Answer briefly and only from the sources you are given."
        ),
        scope=scope.description,
        refusal_message=scope.refusal,
        temperature=0.2,
        max_tokens=200,
        knowledge={
            "topics": list(scope.topics),
            "example_questions": list(scope.example_questions),
            "out_of_scope_examples": list(scope.out_of_scope_examples),
        },
    )


def ensure_demo_bot(session: Session, *, base_model: str) -> str | None:
    """Create the demo bot if it is missing; returns its id when it was created."""
    if find_bot(session, DEMO_SLUG) is not None:
        return None
    return create_bot(session, demo_bot(), base_model=base_model, actor=SYSTEM_ACTOR).id


def ingest_demo_documents(runtime: Any, bot_id: str) -> None:
    """Put the demo's documentation into the demo bot's knowledge base (first start only)."""
    from api.services.knowledge.documents import IngestSource, ingest_sources

    sources = [IngestSource(p, p.name) for p in demo_documents()]
    results = ingest_sources(runtime.knowledge, runtime.sessions, bot_id, sources)
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("demo document %s was not ingested: %s", r.source, r.message)
    log.info(
        "demo knowledge base: %d documents, %d chunks",
        len(results) - len(failed),
        sum(r.chunk_count for r in results),
    )
