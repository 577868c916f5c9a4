"""Who may use the support widget, answered on every widget request: the publishable key (active,
its bot's widget enabled), the page's origin (one of the bot's allowed origins), and the rate limits
per key and per visitor address.

Keys and their bots' widget settings are cached like API keys (`access_cache_ttl_s`, dropped at once
when this process changes keys or bots). Rate limits use the `limits` library: in memory by default,
or a shared store (`SHADOWDESK_RATE_LIMIT_STORAGE=redis://…`) when several replicas serve one site.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from threading import Lock

from limits import RateLimitItemPerMinute, storage, strategies
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.errors import ApiError, AuthenticationFailed, PermissionDenied
from api.services.access.keys import PUBLISHABLE_PREFIX, authenticate, hash_secret
from api.services.widget.config import WidgetConfig, normalise_origin, origin_allowed, widget_of


def service_origin(public_url: str | None, scheme: str, netloc: str) -> str:
    """Where sites load widget.js from: `public_url` when set, else the address a request came to."""
    return public_url.rstrip("/") if public_url else f"{scheme}://{netloc}"


class RateLimited(ApiError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class OriginRefused(PermissionDenied):
    code = "origin_not_allowed"


@dataclass(frozen=True)
class WidgetGrant:
    """What a publishable key opens: one bot's widget."""

    key_id: str
    bot_id: str
    bot_slug: str
    config: WidgetConfig


class WidgetGate:
    def __init__(self, sessions: sessionmaker[Session], ttl_s: float, storage_uri: str) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._grants: dict[str, tuple[float, WidgetGrant | ApiError]] = {}
        self._lock = Lock()
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))

    def grant(self, key: str) -> WidgetGrant:
        """The grant of a publishable key, or the error that refuses it (blocking on a cache miss;
        call off the event loop)."""
        if not key.startswith(PUBLISHABLE_PREFIX) or len(key) > 100:
            raise AuthenticationFailed("Invalid publishable key.")
        hashed = hash_secret(key)
        now = time.monotonic()
        hit = self._grants.get(hashed)
        if hit is not None and hit[0] >= now:
            if isinstance(hit[1], ApiError):
                raise hit[1]
            return hit[1]
        result: WidgetGrant | ApiError
        try:
            result = self._load(key)
        except ApiError as exc:
            result = exc
        if self.ttl_s > 0:
            with self._lock:
                if len(self._grants) > 10_000:  # a flood of made-up keys must not grow memory
                    self._grants.clear()
                self._grants[hashed] = (now + self.ttl_s, result)
        if isinstance(result, ApiError):
            raise result
        return result

    def _load(self, key: str) -> WidgetGrant:
        with transaction(self.sessions) as session:
            row = authenticate(session, key, publishable=True)
            bot = row.bots[0]
            config = widget_of(bot.widget)
            if not config.enabled:
                raise PermissionDenied(
                    "The support widget is switched off for this bot.", code="widget_disabled"
                )
            assert row.id is not None
            return WidgetGrant(row.id, bot.id, bot.slug, config)

    def check_origin(
        self, grant: WidgetGrant, origin: str | None, own_origin: str, fetch_site: str | None
    ) -> str:
        """The page's origin, when the bot allows it (or it is this server's own, for the admin
        preview); the origin echoed in CORS headers. A request without an Origin is refused, except a
        same-origin one that the browser marked so."""
        if origin is None:
            if fetch_site == "same-origin":
                return own_origin
            raise OriginRefused("The support widget answers only web pages (no Origin header).")
        if origin_allowed(origin, grant.config.allowed_origins) or _same(origin, own_origin):
            return origin
        raise OriginRefused(
            f"The origin {origin[:200]} may not use this bot's support widget: add it to the "
            "widget's allowed origins."
        )

    def hit(self, grant: WidgetGrant, client: str) -> None:
        """Count one request against the key's and the visitor's limits (429 past either)."""
        checks = (
            (RateLimitItemPerMinute(grant.config.rate_per_key_per_minute), ("key", grant.key_id)),
            (
                RateLimitItemPerMinute(grant.config.rate_per_ip_per_minute),
                ("ip", grant.key_id, client),
            ),
        )
        for item, identifiers in checks:
            if not self._limiter.hit(item, *identifiers):
                reset = self._limiter.get_window_stats(item, *identifiers).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                who = "this site" if identifiers[0] == "key" else "you"
                raise RateLimited(
                    f"Too many requests from {who}; try again in {wait} s.", retry_after=wait
                )

    def forget(self) -> None:
        with self._lock:
            self._grants.clear()


def _same(origin: str, own: str) -> bool:
    try:
        return normalise_origin(origin) == normalise_origin(own)
    except ValueError:
        return False
