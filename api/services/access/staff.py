"""Staff users (admins and reviewers), their passwords, and who may review which bot.

Passwords are argon2id hashes (argon2-cffi's defaults); an unknown email costs a hash check too, so
response times do not tell which emails exist. An admin reviews every bot; a reviewer only the bots
granted to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, PermissionDenied
from api.ids import new_id
from api.models import ApiKey, Bot, StaffUser
from api.services.access import audit
from api.services.access.audit import AuditActor

ROLES = ("admin", "reviewer")
MIN_PASSWORD_CHARS = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Actor:
    """Who is acting through the review surfaces: a staff user (session) or an admin API key."""

    id: str
    label: str
    role: str
    bot_ids: frozenset[str]
    staff_user_id: str | None = None
    name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @classmethod
    def of_user(cls, user: StaffUser) -> Actor:
        return cls(
            id=user.id,
            label=user.email,
            role=user.role,
            bot_ids=frozenset(b.id for b in user.bots),
            staff_user_id=user.id,
            name=user.name,
        )

    @classmethod
    def of_key(cls, key: ApiKey) -> Actor:
        """An admin API key acting for an integration (it may review every bot)."""
        return cls(
            id=key.id or "bootstrap-admin-key",
            label=f"api key {key.prefix}…",
            role="admin",
            bot_ids=frozenset(),
            name="API client",
        )


def can_review(actor: Actor | StaffUser, bot_id: str) -> bool:
    """Whether `actor` may see and review `bot_id`'s items, metrics and annotations."""
    if isinstance(actor, StaffUser):
        if not actor.active:
            return False
        actor = Actor.of_user(actor)
    return actor.is_admin or bot_id in actor.bot_ids


def require_bot(actor: Actor, bot: Bot) -> Bot:
    """`bot`, or PermissionDenied when `actor` does not review it."""
    if not can_review(actor, bot.id):
        raise PermissionDenied(
            f"You do not review the bot '{bot.slug}'.", param="bot", code="bot_not_allowed"
        )
    return bot


def require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise PermissionDenied("Only admins may do this.", code="admin_only")


def reviewable_bots(session: Session, actor: Actor) -> list[Bot]:
    """The bots `actor` may review, by slug."""
    query = select(Bot).order_by(Bot.slug)
    if not actor.is_admin:
        query = query.where(Bot.id.in_(actor.bot_ids))
    return list(session.scalars(query))


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidRequest("Give a valid email address.", param="email")
    return email


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidRequest(
            f"A password needs at least {MIN_PASSWORD_CHARS} characters.", param="password"
        )
    return _hasher.hash(password)


def create_user(
    session: Session,
    actor: AuditActor,
    *,
    email: str,
    password: str,
    role: str,
    name: str = "",
    bots: Iterable[Bot] = (),
) -> StaffUser:
    """Create an active staff user; a reviewer gets `bots`, an admin reviews every bot anyway."""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}.", param="role")
    email = normalize_email(email)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
        raise Conflict(f"A staff user with email '{email}' already exists.", param="email")
    user = StaffUser(
        id=new_id("stf"),
        email=email,
        name=name.strip(),
        password_hash=hash_password(password),
        role=role,
        bots=list(bots),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same email
        raise Conflict(f"A staff user with email '{email}' already exists.", param="email") from exc
    audit.record(
        session,
        actor,
        "staff.create",
        entity="staff_user",
        entity_id=user.id,
        after=_snapshot(user),
    )
    return user


def get_user(session: Session, email: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No staff user with email '{email}'.", param="email")
    return user


def list_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.email)))


def grant(session: Session, actor: AuditActor, email: str, bots: Iterable[Bot]) -> StaffUser:
    """Let the user review `bots` too."""
    user = get_user(session, email)
    before = _snapshot(user)
    have = {b.id for b in user.bots}
    user.bots.extend(b for b in bots if b.id not in have)
    session.flush()
    audit.record(
        session,
        actor,
        "staff.grant",
        entity="staff_user",
        entity_id=user.id,
        before=before,
        after=_snapshot(user),
    )
    return user


def deactivate(session: Session, actor: AuditActor, email: str) -> StaffUser:
    """Stop the user from logging in; their open sessions stop working on the next request."""
    user = get_user(session, email)
    if user.active:
        before = _snapshot(user)
        user.active = False
        session.flush()
        audit.record(
            session,
            actor,
            "staff.deactivate",
            entity="staff_user",
            entity_id=user.id,
            before=before,
            after=_snapshot(user),
        )
    return user


def authenticate_password(session: Session, email: str, password: str) -> StaffUser:
    """The active user with this email and password, or AuthenticationFailed (one message for all cases)."""
    failed = AuthenticationFailed("Wrong email or password.", code="invalid_credentials")
    user = session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if user is None or not user.active:
        _verify(
            _dummy_hash(), password
        )  # as slow as a wrong password: timing tells no emails apart
        raise failed
    if not _verify(user.password_hash, password):
        raise failed
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


@cache
def _dummy_hash() -> str:
    return _hasher.hash("shadowdesk-no-such-user")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _snapshot(user: StaffUser) -> dict[str, object]:
    return {
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "active": user.active,
        "bots": sorted(b.slug for b in user.bots),
    }
