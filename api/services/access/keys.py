"""API keys: random secrets shown once, stored as SHA-256 hashes, scoped to bots or admin, revocable.

SHA-256 (not argon2) is right here: the secrets carry 256 bits of randomness, so a slow hash adds
nothing but latency to every request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from api.ids import new_id
from api.models import ApiKey, Bot
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.unit_of_work import ACCESS, changed

KEY_PREFIX = "sd-"
# Publishable keys sit in web pages (the support widget): one bot, its allowed origins, chat and
# feedback only. The prefix lets a request be told apart before any lookup.
PUBLISHABLE_PREFIX = "pk-"
# last_used_at is written at most this often per key, to keep writes off the hot path.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def summary_of(key: ApiKey) -> dict[str, Any]:
    """The key as the audit log records it: never the secret or its hash."""
    return {
        "name": key.name,
        "prefix": key.prefix,
        "admin": key.is_admin,
        "kind": key.kind,
        "bots": sorted(b.slug for b in key.bots),
        "revoked": key.revoked_at is not None,
    }


def create_key(
    session: Session,
    *,
    bots: list[Bot],
    actor: AuditActor,
    is_admin: bool = False,
    name: str = "",
    publishable: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret (for a secret key, the only time it exists in
    clear). A publishable key serves one bot's widget and is never an admin key."""
    if not is_admin and not bots:
        raise InvalidRequest("a key needs at least one bot, or must be an admin key", param="bots")
    if publishable and (is_admin or len(bots) != 1):
        raise InvalidRequest("a publishable key serves exactly one bot's widget", param="bots")
    secret = (PUBLISHABLE_PREFIX if publishable else KEY_PREFIX) + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        name=name,
        prefix=secret[:10],
        secret_hash=hash_secret(secret),
        is_admin=is_admin,
        kind="publishable" if publishable else "secret",
        publishable_value=secret if publishable else None,
        bots=list(bots),
    )
    session.add(key)
    session.flush()
    audit.record(
        session, actor, "key.create", entity="api_key", entity_id=key.id, after=summary_of(key)
    )
    changed(session, ACCESS)
    return key, secret


def require_secret(secret: str | None) -> str:
    if not secret:
        raise AuthenticationFailed(
            "Missing API key: send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    return secret


def authenticate(
    session: Session,
    secret: str | None,
    *,
    bootstrap_admin: str | None = None,
    now: datetime | None = None,
    publishable: bool = False,
) -> ApiKey:
    """The active key for `secret`, or AuthenticationFailed (missing, unknown or revoked).

    `bootstrap_admin` is the admin key from settings: it authenticates as a transient admin key.
    Publishable keys authenticate only where `publishable` (the widget's endpoints), and only they
    do there.
    """
    secret = require_secret(secret)
    if (
        bootstrap_admin
        and not publishable
        and secrets.compare_digest(secret.encode(), bootstrap_admin.encode())
    ):
        return ApiKey(id=None, name="bootstrap admin", prefix=secret[:10], is_admin=True, bots=[])
    key = session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
    if key is None:
        raise AuthenticationFailed("Invalid API key.")
    if key.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
    if (key.kind == "publishable") != publishable:
        raise AuthenticationFailed(
            "A publishable key works only for the support widget."
            if key.kind == "publishable"
            else "The support widget needs a publishable key (pk-…), never a secret one.",
            code="wrong_key_kind",
        )
    now = now or datetime.now(UTC)
    last = key.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    if last is None or now - last >= LAST_USED_RESOLUTION:
        key.last_used_at = now
    return key


def publishable_keys(session: Session, bot: Bot) -> list[ApiKey]:
    """The bot's widget keys, oldest first (revoked ones included)."""
    return [k for k in list_keys(session) if k.kind == "publishable" and bot in k.bots]


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(
    session: Session,
    key_id: str,
    *,
    actor: AuditActor,
    by: ApiKey | None = None,
    keep_an_admin: bool = False,
) -> ApiKey:
    """Revoke a key. `by`: the key making the request, which may not revoke itself;
    `keep_an_admin`: refuse to revoke the last active admin key (nobody could administer the API)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key with id '{key_id}'.", param="key_id")
    if by is not None and by.id == key.id and key.revoked_at is None:
        raise Conflict(
            "An admin key cannot revoke itself: revoke it with another admin key.",
            param="key_id",
            code="cannot_revoke_own_key",
        )
    if keep_an_admin and key.is_admin and key.revoked_at is None:
        others = session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.is_admin.is_(True), ApiKey.revoked_at.is_(None), ApiKey.id != key.id)
        )
        if not others:
            raise Conflict(
                "This is the last admin key: create another one before revoking it.",
                param="key_id",
                code="last_admin_key",
            )
    if key.revoked_at is None:
        before = summary_of(key)
        key.revoked_at = datetime.now(UTC)
        audit.record(
            session,
            actor,
            "key.revoke",
            entity="api_key",
            entity_id=key.id,
            before=before,
            after=summary_of(key),
        )
        changed(session, ACCESS)
    return key
