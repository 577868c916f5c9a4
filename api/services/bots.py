"""Bots and their releases. A bot answers through its live release; every bot starts with one."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound
from api.ids import new_id
from api.models import Bot, Release
from api.services.knowledge import KnowledgeConfig
from api.services.policy import BotPolicy

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class BotFields(BaseModel):
    """What a bot is configured with; shared by the CLI, the admin API and the demo seed."""

    name: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field("", max_length=20_000, description="Instructions placed before every conversation.")
    scope: str = Field("", max_length=20_000, description="What the bot answers about (topics, examples).")
    refusal_message: str = Field(
        "Sorry, I can only help with questions about this product.", max_length=2_000
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=32_768)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig, description="Retrieval and scope guard.")
    policy: BotPolicy = Field(default_factory=BotPolicy, description="Shadow, review and promotion policy.")


class BotCreate(BotFields):
    slug: str = Field(description="URL-safe id clients pass as `model`: lowercase letters, digits, dashes.")

    @field_validator("slug")
    @classmethod
    def _valid_slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("slug must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit")
        return v


class BotUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    system_prompt: str | None = Field(None, max_length=20_000)
    scope: str | None = Field(None, max_length=20_000)
    refusal_message: str | None = Field(None, max_length=2_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    policy: BotPolicy | None = None


def create_bot(session: Session, data: BotCreate, *, base_model: str) -> Bot:
    """Create a bot and its first release (the base model, no adapter), made live."""
    if session.scalar(select(Bot.id).where(Bot.slug == data.slug)) is not None:
        raise Conflict(f"A bot with slug '{data.slug}' already exists.", param="slug")
    bot = Bot(id=new_id("bot"), **data.model_dump(mode="json"))
    session.add(bot)
    session.flush()
    release = Release(
        id=new_id("rel"), bot_id=bot.id, version=1, base_model=base_model)
    session.add(release)
    session.flush()
    bot.live_release_id = release.id
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same slug
        raise Conflict(f"A bot with slug '{data.slug}' already exists.", param="slug") from exc
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


def update_bot(session: Session, slug: str, data: BotUpdate) -> Bot:
    bot = get_bot(session, slug)
    changes: dict[str, Any] = data.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if "policy" in changes:  # a partial policy changes only the fields it names
        changes["policy"] = BotPolicy.model_validate({**(bot.policy or {}), **changes["policy"]}).model_dump()
    for field, value in changes.items():
        setattr(bot, field, value)
    session.flush()
    return bot


def delete_bot(session: Session, slug: str) -> None:
    bot = get_bot(session, slug)
    bot.live_release_id = None
    session.flush()
    session.delete(bot)


def next_release_version(session: Session, bot_id: str) -> int:
    current = session.scalar(select(func.max(Release.version)).where(Release.bot_id == bot_id))
    return (current or 0) + 1
