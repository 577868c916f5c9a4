"""Staff login sessions: a signed cookie, a CSRF token bound to it, and a brake on password guessing.

The cookie is stateless (itsdangerous-signed JSON: user id, issue time, CSRF token, a fingerprint of
the password hash), so any replica with the same `SHADOWDESK_SESSION_SECRET` accepts it. Every
request re-reads the user: deactivating a user or changing their password ends their sessions at
once; otherwise a session ends `session_ttl_s` after login, or at logout: the session is recorded
as revoked, so a copy of the cookie replayed later is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete
from sqlalchemy.orm import Session

from api.errors import ApiError, AuthenticationFailed
from api.models import RevokedSession, StaffUser
from api.services.access.staff import Actor, authenticate_password
from api.settings import Settings

SESSION_COOKIE = "sd_session"
LOGIN_CSRF_COOKIE = "sd_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class StaffSession:
    user_id: str
    issued_at: float
    csrf: str
    fingerprint: str


class SessionCodec:
    """Issues and reads signed session cookies that expire `ttl_s` seconds after login."""

    def __init__(self, secret: str, ttl_s: int, *, clock: Callable[[], float] = time.time) -> None:
        self._serializer = URLSafeSerializer(secret, salt="shadowdesk.staff-session")
        self.ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionCodec:
        assert settings.session_secret is not None  # the settings validator fills or requires it
        return cls(settings.session_secret.get_secret_value(), settings.session_ttl_s)

    def issue(self, user: StaffUser) -> tuple[str, StaffSession]:
        """A fresh session for `user`: the cookie value and what it holds."""
        data = StaffSession(
            user.id, self._clock(), secrets.token_urlsafe(24), password_fingerprint(user)
        )
        payload = {"u": data.user_id, "t": data.issued_at, "c": data.csrf, "h": data.fingerprint}
        return self._serializer.dumps(payload), data

    def read(self, cookie: str | None) -> StaffSession | None:
        """The session in `cookie`, or None when it is missing, tampered with or expired."""
        if not cookie:
            return None
        try:
            raw = self._serializer.loads(cookie)
            data = StaffSession(str(raw["u"]), float(raw["t"]), str(raw["c"]), str(raw["h"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not 0 <= self._clock() - data.issued_at <= self.ttl_s:
            return None
        return data


def password_fingerprint(user: StaffUser) -> str:
    """Changes whenever the password does, which ends sessions opened with the old one."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def resolve_session(
    session: Session, codec: SessionCodec, cookie: str | None
) -> tuple[Actor, StaffSession] | None:
    """The acting staff user and their session, or None when not (or no longer) logged in."""
    data = codec.read(cookie)
    if data is None or session.get(RevokedSession, session_id(data)) is not None:
        return None
    user = session.get(StaffUser, data.user_id)
    if (
        user is None
        or not user.active
        or not hmac.compare_digest(password_fingerprint(user), data.fingerprint)
    ):
        return None
    return Actor.of_user(user), data


def session_id(data: StaffSession) -> str:
    """Identifies a session without storing anything that could open it (its CSRF token is random
    per login)."""
    return hashlib.sha256(data.csrf.encode()).hexdigest()


def log_out(session: Session, codec: SessionCodec, cookie: str | None) -> None:
    """End the session in `cookie` on the server (and forget sessions that expired anyway)."""
    data = codec.read(cookie)
    if data is None:
        return
    now = datetime.now(UTC)
    session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    if session.get(RevokedSession, session_id(data)) is None:
        expires = datetime.fromtimestamp(data.issued_at + codec.ttl_s, UTC)
        session.add(RevokedSession(id=session_id(data), expires_at=expires))


def csrf_ok(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())


class TooManyAttempts(ApiError):
    status_code = 429
    type = "rate_limit_error"
    code = "too_many_login_attempts"


class LoginThrottle:
    """Refuses logins for an (email, client) pair after `max_failures` failures within `window_s`.

    In memory, per process: it slows guessing down (each guess also costs an argon2 check) without
    letting a stranger lock a reviewer out from everywhere.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def check(self, email: str, client: str) -> None:
        """Raise TooManyAttempts while the pair is throttled."""
        with self._lock:
            recent = self._recent((email.strip().lower(), client))
        if len(recent) >= self.max_failures:
            wait = int(self.window_s - (self._clock() - recent[0])) + 1
            raise TooManyAttempts(f"Too many failed logins; try again in {wait} s.")

    def failed(self, email: str, client: str) -> None:
        with self._lock:
            key = (email.strip().lower(), client)
            self._failures[key] = [*self._recent(key), self._clock()]
            if (
                len(self._failures) > 10_000
            ):  # forget the stalest pairs rather than grow without bound
                for stale in list(self._failures)[:5_000]:
                    del self._failures[stale]

    def succeeded(self, email: str, client: str) -> None:
        with self._lock:
            self._failures.pop((email.strip().lower(), client), None)

    def _recent(self, key: tuple[str, str]) -> list[float]:
        horizon = self._clock() - self.window_s
        return [t for t in self._failures.get(key, []) if t > horizon]


def login_throttle(holder: Any) -> LoginThrottle:
    """The throttle kept on `holder` (the app's state), made on first use."""
    throttle = getattr(holder, "staff_login_throttle", None)
    if throttle is None:
        throttle = holder.staff_login_throttle = LoginThrottle()
    return throttle


def log_in(
    session: Session,
    codec: SessionCodec,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    client: str,
) -> tuple[str, StaffSession, Actor]:
    """Check the password (throttled per email and client); the new session's cookie, data and actor."""
    throttle.check(email, client)
    try:
        user = authenticate_password(session, email, password)
    except AuthenticationFailed:
        throttle.failed(email, client)
        raise
    throttle.succeeded(email, client)
    cookie, data = codec.issue(user)
    return cookie, data, Actor.of_user(user)
