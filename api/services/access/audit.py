"""The audit log: who changed what, when, with the state before and after.

Written in the same transaction as the change it describes, so a change and its audit entry are
committed (or rolled back) together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.ids import new_id
from api.models import AuditEntry, utcnow


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
