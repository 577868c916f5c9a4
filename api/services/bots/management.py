"""Bots and their releases. A bot answers through its live release; every bot starts with one."""

from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import BaseModel, Field, create_model, field_validator
from pydantic.fields import FieldInfo
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound
from api.ids import new_id
from api.models import Bot, Release
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.services.bots.policy import BotPolicy
from api.services.knowledge.config import KnowledgeConfig, check_knowledge
from api.unit_of_work import ACCESS, changed

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class BotFields(BaseModel):
    """What a bot is configured with; shared by the CLI, the admin API and the demo seed."""

    name: str = Field(min_length=1, max_length=200, description="Display name.")
    system_prompt: str = Field(
        "", max_length=20_000, description="Instructions placed before every conversation."
    )
    scope: str = Field(
        "",
        max_length=20_000,
        description="What the bot answers about, in a sentence or two; "
        "off-topic questions are refused.",
    )
    refusal_message: str = Field(
        "Sorry, I can only help with questions about this product.",
        max_length=2_000,
        description="What the bot says to off-topic questions ({topics} is replaced by its topics).",
    )
    temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="Sampling temperature, 0 (greedy) to 2."
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling: above 0, at most 1.")
    max_tokens: int = Field(
        256, ge=1, le=32_768, description="Longest answer in tokens, unless a request asks less."
    )
    knowledge: KnowledgeConfig = Field(
        default_factory=KnowledgeConfig, description="Retrieval and scope guard."
    )
    policy: BotPolicy = Field(
        default_factory=BotPolicy, description="Shadow, review and promotion policy."
    )


class BotCreate(BotFields):
    slug: str = Field(
        description="URL-safe id clients pass as `model`: lowercase letters, digits, dashes."
    )

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(
                "slug must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit"
            )
        return v


def _all_optional(
    model: type[BaseModel], name: str, *, leave_out: tuple[str, ...]
) -> type[BaseModel]:
    """`model` with every field optional (None: unchanged) and the same limits and help: a partial
    update can never accept what a create refuses."""
    fields: dict[str, Any] = {
        field: (
            Optional[info.annotation],
            FieldInfo.merge_field_infos(info, default=None, default_factory=None),
        )
        for field, info in model.model_fields.items()
        if field not in leave_out
    }
    return create_model(name, **fields)


# mypy cannot see through a class built at run time; the fields are BotFields', all optional.
class BotUpdate(_all_optional(BotFields, "BotUpdateFields", leave_out=("knowledge",))):  # type: ignore[misc]
    """A partial update of a bot's settings (knowledge settings have their own endpoint)."""


def settings_of(bot: Bot) -> dict[str, Any]:
    """The bot's configuration as the audit log records it (its fields, no secrets)."""
    return {"slug": bot.slug, **{field: getattr(bot, field) for field in BotFields.model_fields}}


def create_bot(session: Session, data: BotCreate, *, base_model: str, actor: AuditActor) -> Bot:
    """Create a bot and its first release (the base model, no adapter), made live."""
    if session.scalar(select(Bot.id).where(Bot.slug == data.slug)) is not None:
        raise Conflict(f"A bot with slug '{data.slug}' already exists.", param="slug")
    check_knowledge(data.knowledge)
    bot = Bot(id=new_id("bot"), **data.model_dump(mode="json"))
    session.add(bot)
    session.flush()
    release = Release(id=new_id("rel"), bot_id=bot.id, version=1, base_model=base_model)
    session.add(release)
    session.flush()
    bot.live_release_id = release.id
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same slug
        raise Conflict(f"A bot with slug '{data.slug}' already exists.", param="slug") from exc
    audit.record(
        session,
        actor,
        "bot.create",
        entity="bot",
        entity_id=bot.id,
        bot_id=bot.id,
        after=settings_of(bot),
    )
    changed(session, ACCESS)
    return bot


def get_bot(session: Session, slug: str) -> Bot:
    bot = session.scalar(select(Bot).where(Bot.slug == slug))
    if bot is None:
        raise NotFound(f"The model '{slug}' does not exist.", param="model", code="model_not_found")
    return bot


def find_bot(session: Session, slug: str) -> Bot | None:
    return session.scalar(select(Bot).where(Bot.slug == slug))


def list_bots(session: Session) -> list[Bot]:
    return list(session.scalars(select(Bot).order_by(Bot.slug)))


def update_bot(session: Session, slug: str, data: BotUpdate, *, actor: AuditActor) -> Bot:
    bot = get_bot(session, slug)
    before = settings_of(bot)
    changes: dict[str, Any] = data.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if "policy" in changes:  # a partial policy changes only the fields it names
        changes["policy"] = BotPolicy.model_validate(
            {**(bot.policy or {}), **changes["policy"]}
        ).model_dump()
    for field, value in changes.items():
        setattr(bot, field, value)
    session.flush()
    after = settings_of(bot)
    if after != before:  # only what changed, so the log reads as a diff
        audit.record(
            session,
            actor,
            "bot.update",
            entity="bot",
            entity_id=bot.id,
            bot_id=bot.id,
            before={k: v for k, v in before.items() if after[k] != v},
            after={k: v for k, v in after.items() if before[k] != v},
        )
    changed(session, ACCESS)
    return bot


def delete_bot(session: Session, slug: str, *, actor: AuditActor) -> None:
    bot = get_bot(session, slug)
    # The entry outlives the bot: audit_log has no foreign keys.
    audit.record(
        session,
        actor,
        "bot.delete",
        entity="bot",
        entity_id=bot.id,
        bot_id=bot.id,
        before=settings_of(bot),
    )
    bot.live_release_id = None
    session.flush()
    session.delete(bot)
    changed(session, ACCESS)


def next_release_version(session: Session, bot_id: str) -> int:
    current = session.scalar(select(func.max(Release.version)).where(Release.bot_id == bot_id))
    return (current or 0) + 1
