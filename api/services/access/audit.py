"""The audit log: who changed what, when, with the state before and after.

Written in the same transaction as the change it describes, so a change and its audit entry are
committed (or rolled back) together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.ids import new_id
from api.models import ApiKey, AuditEntry, utcnow


class AuditActor(Protocol):
    """Whoever made a change: a staff user, an API key, the CLI."""

    @property
    def id(self) -> str | None: ...

    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class NamedActor:
    id: str | None
    label: str


CLI_ACTOR = NamedActor(id=None, label="cli")
# Changes Shadowdesk makes itself (the demo seed, start-up).
SYSTEM_ACTOR = NamedActor(id=None, label="system")


def key_actor(key: ApiKey) -> NamedActor:
    """The actor for a change made with an API key: its name, or its prefix when unnamed."""
    return NamedActor(key.id, key.name or key.prefix)


def record(
    session: Session,
    actor: AuditActor,
    action: str,
    *,
    entity: str,
    entity_id: str,
    bot_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an audit entry to `session` (committed with the change it describes)."""
    entry = AuditEntry(
        id=new_id("aud"),
        actor_id=actor.id,
        actor=actor.label,
        action=action,
        entity=entity,
        entity_id=entity_id,
        bot_id=bot_id,
        before=before,
        after=after,
        created_at=at or utcnow(),
    )
    session.add(entry)
    return entry


def history(session: Session, entity: str, entity_id: str, *, limit: int = 100) -> list[AuditEntry]:
    """The entity's audit entries, oldest first."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.entity_id == entity_id)
        .order_by(AuditEntry.created_at, AuditEntry.id)
        .limit(limit)
    )
    return list(session.scalars(query))


class AuditFilter(BaseModel):
    """Which audit entries to read (every field optional; all given ones must hold)."""

    bot_id: str | None = None
    actor: str | None = Field(
        None, max_length=320, description="The actor's label (an email, a key, cli)."
    )
    action: str | None = Field(
        None, max_length=60, description="Exact, or a prefix ending in '.': review."
    )
    entity: str | None = Field(None, max_length=40)
    entity_id: str | None = Field(None, max_length=40)
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    session: Session, flt: AuditFilter, *, limit: int = 100, offset: int = 0
) -> list[AuditEntry]:
    """Matching audit entries, newest first."""
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.bot_id, flt.bot_id),
        (AuditEntry.actor, flt.actor),
        (AuditEntry.entity, flt.entity),
        (AuditEntry.entity_id, flt.entity_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if flt.action:
        query = query.where(
            AuditEntry.action.startswith(flt.action)
            if flt.action.endswith(".")
            else AuditEntry.action == flt.action
        )
    if flt.since is not None:
        query = query.where(AuditEntry.created_at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditEntry.created_at < flt.until)
    query = (
        query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))
