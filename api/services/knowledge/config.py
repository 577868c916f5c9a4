"""Per-bot knowledge settings: the bot's `knowledge` JSON, validated."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.errors import InvalidRequest
from api.jobs.queue import enqueue
from api.models import Bot, Job
from api.unit_of_work import ACCESS, changed
from serving.knowledge import Instructions


class KnowledgeConfig(BaseModel):
    """Per-bot knowledge settings (the bot's `knowledge` JSON)."""

    embedder: str | None = Field(
        None, description="Embedding model spec (None: SHADOWDESK_EMBEDDER)."
    )
    top_k: int = Field(4, ge=1, le=50, description="Passages put into the prompt at most.")
    min_score: float = Field(
        0.35, ge=0.0, le=1.0, description="Passages scoring below this are left out."
    )
    max_context_chars: int = Field(4000, ge=200, le=100_000)
    document_instruction: str | None = None
    query_instruction: str | None = None
    guard: bool = Field(
        True, description="Refuse questions outside the bot's scope (and answer small talk)."
    )
    llm_guard: bool = Field(
        False, description="Ask the model when the embedding signals are unsure."
    )
    answer_without_context: bool = Field(
        False,
        description="When nothing in the documents matches a question (or the vector store is "
        "unreachable), let the model answer anyway, flagged no_context and put in front of "
        "reviewers, instead of refusing (or answering 503).",
    )
    topics: list[str] = Field(
        default_factory=list,
        description="What the bot covers, in a few words each (sharpens the guard).",
    )
    example_questions: list[str] = Field(
        default_factory=list, description="Questions it should answer (sharpens the guard)."
    )
    out_of_scope_examples: list[str] = Field(
        default_factory=list, description="Questions it should refuse (sharpens the guard)."
    )
    greeting_message: str | None = Field(
        None,
        description="What the bot answers to a greeting (default: says what it covers, from its name, "
        "topics and scope).",
    )

    def instructions(self) -> Instructions:
        return Instructions(document=self.document_instruction, query=self.query_instruction)


def check_knowledge(config: KnowledgeConfig) -> None:
    """Refuse (400) an embedding model this machine cannot load, before any bot uses it: found at
    upload time, it would fail every document."""
    if config.embedder is None:
        return
    from serving.knowledge.embedders import EmbedderError, check_embedder

    try:
        check_embedder(config.embedder)
    except EmbedderError as exc:
        raise InvalidRequest(str(exc), param="knowledge.embedder", code="unknown_embedder") from exc


def knowledge_of(raw: dict[str, Any] | None) -> KnowledgeConfig:
    return KnowledgeConfig.model_validate(raw or {})


def update_knowledge(
    session: Session, bot: Bot, config: KnowledgeConfig, *, default_embedder: str
) -> tuple[dict[str, Any], Job | None]:
    """Replace the bot's knowledge settings. A new embedding model is not switched to here: a
    `reembed` job re-embeds every document and switches when done (so two models' vectors are
    never mixed); returns the stored settings and that job, if any."""
    check_knowledge(config)
    current = knowledge_of(bot.knowledge)
    wanted = config.model_dump()
    job = None
    if (config.embedder or default_embedder) != (current.embedder or default_embedder):
        wanted["embedder"] = current.embedder  # switched by the job when done
        job = enqueue(
            session, "reembed", {"embedder": config.embedder or default_embedder}, bot_id=bot.id
        )
    bot.knowledge = wanted
    changed(session, ACCESS)
    return wanted, job
