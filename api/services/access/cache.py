"""Who may use which bot, answered from memory on the hot path.

Looking up a key and a bot costs two queries and a thread hop per request; the answers change
rarely. Both are cached for `settings.access_cache_ttl_s` seconds and dropped at once when this
process changes them (revoke, bot update). Other processes (replicas, the CLI) see a change within
the TTL. A cache miss also refreshes the key's `last_used_at`, so that write stays off the hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from threading import Lock

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.errors import AuthenticationFailed, PermissionDenied
from api.models import ApiKey, Bot, Release
from api.services.access.keys import authenticate, hash_secret, require_secret
from api.services.bots.management import get_bot
from api.services.bots.policy import BotPolicy, policy_of
from api.services.knowledge.config import KnowledgeConfig, knowledge_of
from api.services.knowledge.documents import count_documents


@dataclass(frozen=True)
class KeyGrant:
    """What an authenticated key may do."""

    id: str | None
    is_admin: bool
    bot_ids: frozenset[str]

    def allows(self, bot_id: str) -> bool:
        return self.is_admin or bot_id in self.bot_ids

    @classmethod
    def of(cls, key: ApiKey) -> KeyGrant:
        return cls(key.id, key.is_admin, frozenset(b.id for b in key.bots))


@dataclass(frozen=True)
class BotConfig:
    """A bot as the chat path needs it: settings, its live release, its candidates, its knowledge."""

    id: str
    slug: str
    system_prompt: str
    temperature: float
    top_p: float
    max_tokens: int
    release_id: str | None
    adapter: str | None
    mode: str = "rag"
    adapter_path: str | None = None
    holding_message: str | None = None
    refusal_message: str = ""
    name: str = ""
    scope: str = ""
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    policy: BotPolicy = field(default_factory=BotPolicy)
    has_documents: bool = False
    candidate_release_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, bot: Bot, session: Session | None = None) -> BotConfig:
        """Snapshot `bot`; with a session, also its candidates and whether it has documents."""
        release = bot.live_release
        prompt = (
            release.system_prompt
            if release and release.system_prompt is not None
            else bot.system_prompt
        )
        candidates: tuple[str, ...] = ()
        has_documents = False
        if session is not None:
            candidates = tuple(
                session.scalars(
                    select(Release.id)
                    .where(
                        Release.bot_id == bot.id,
                        Release.candidate.is_(True),
                        Release.id != bot.live_release_id,
                    )
                    .order_by(Release.version)
                )
            )
            has_documents = count_documents(session, bot.id) > 0
        return cls(
            id=bot.id,
            slug=bot.slug,
            system_prompt=prompt,
            temperature=bot.temperature,
            top_p=bot.top_p,
            max_tokens=bot.max_tokens,
            release_id=release.id if release else None,
            adapter=release.adapter if release else None,
            adapter_path=release.adapter_path if release else None,
            mode=release.mode if release else "rag",
            holding_message=release.holding_message if release else None,
            refusal_message=bot.refusal_message,
            name=bot.name,
            scope=bot.scope,
            knowledge=knowledge_of(bot.knowledge),
            policy=policy_of(bot.policy),
            has_documents=has_documents,
            candidate_release_ids=candidates,
        )


class AccessCache:
    def __init__(
        self, sessions: sessionmaker[Session], ttl_s: float, bootstrap_admin: str | None
    ) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.bootstrap_admin = bootstrap_admin
        self._keys: dict[str, tuple[float, KeyGrant | AuthenticationFailed]] = {}
        self._bots: dict[str, tuple[float, BotConfig]] = {}
        self._lock = Lock()

    def cached(self, secret: str | None, slug: str) -> tuple[KeyGrant, BotConfig] | None:
        """Both answers from memory, or None when either must be read from the database."""
        now = time.monotonic()
        key_hit = self._keys.get(hash_secret(require_secret(secret)))
        bot_hit = self._bots.get(slug)
        if key_hit is None or bot_hit is None or key_hit[0] < now or bot_hit[0] < now:
            return None
        grant = key_hit[1]
        if isinstance(grant, AuthenticationFailed):
            raise grant
        return grant, bot_hit[1]

    def resolve(self, secret: str | None, slug: str) -> tuple[KeyGrant, BotConfig]:
        """Authenticate and find the bot in the database (blocking; run off the event loop)."""
        hashed = hash_secret(require_secret(secret))
        expires = time.monotonic() + self.ttl_s
        with transaction(self.sessions) as session:
            try:
                grant = KeyGrant.of(
                    authenticate(session, secret, bootstrap_admin=self.bootstrap_admin)
                )
            except AuthenticationFailed as exc:
                # Remember refusals too, so a flood of bad keys does not become a flood of queries.
                self._remember_key(hashed, expires, exc)
                raise
            self._remember_key(hashed, expires, grant)
            bot = BotConfig.of(get_bot(session, slug), session)
        with self._lock:
            self._bots[slug] = (expires, bot)
        return grant, bot

    def bot(self, slug: str) -> BotConfig:
        """The bot alone, without a key (an operator's terminal; blocking)."""
        with transaction(self.sessions) as session:
            return BotConfig.of(get_bot(session, slug), session)

    def _remember_key(
        self, hashed: str, expires: float, value: KeyGrant | AuthenticationFailed
    ) -> None:
        if self.ttl_s > 0:
            with self._lock:
                self._keys[hashed] = (expires, value)

    def forget(self) -> None:
        """Drop everything (called after any change to keys or bots in this process)."""
        with self._lock:
            self._keys.clear()
            self._bots.clear()


def check_allowed(grant: KeyGrant, bot: BotConfig) -> None:
    if not grant.allows(bot.id):
        raise PermissionDenied(f"This API key may not use the model '{bot.slug}'.", param="model")
