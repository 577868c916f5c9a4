"""Admin JSON API under `/api/`: bots, API keys and stored exchanges. Needs an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.deps import AdminKey, SessionDep
from api.errors import InvalidRequest
from api.models import ApiKey, Bot
from api.services.access import audit
from api.services.access import keys as key_service
from api.services.bots import management as bot_service
from api.services.bots.policy import policy_of
from api.services.chat import exchanges as exchange_service
from api.services.chat.exchanges import ExchangeView
from api.services.knowledge.config import knowledge_of
from api.services.widget.config import WidgetConfig, update_widget, widget_of

router = APIRouter(prefix="/api")


class BotOut(BaseModel):
    id: str
    slug: str
    name: str
    system_prompt: str
    scope: str
    refusal_message: str
    temperature: float
    top_p: float
    max_tokens: int
    live_release_id: str | None
    knowledge: dict[str, Any]
    policy: dict[str, Any]
    widget: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, bot: Bot) -> BotOut:
        out = cls.model_validate(bot, from_attributes=True)
        # Effective settings: stored values over the documented defaults.
        out.knowledge = knowledge_of(bot.knowledge).model_dump()
        out.policy = policy_of(bot.policy).model_dump()
        out.widget = widget_of(bot.widget).model_dump()
        return out


class KeyCreate(BaseModel):
    name: str = Field("", max_length=200)
    bots: list[str] = Field(default_factory=list, description="Slugs of the bots the key may use.")
    admin: bool = False
    publishable: bool = Field(
        False,
        description="A publishable key (pk-…) for one bot's support widget: usable from web pages "
        "of its allowed origins, for chat and feedback only.",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    admin: bool
    kind: str
    publishable_key: str | None = Field(
        None,
        description="A publishable key in full (it is public by design: it sits in web pages).",
    )
    bots: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            admin=key.is_admin,
            kind=key.kind,
            publishable_key=key.publishable_value,
            bots=[b.slug for b in key.bots],
            created_at=key.created_at,
            revoked_at=key.revoked_at,
            last_used_at=key.last_used_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown this once; only its hash is stored.")


@router.post("/bots", status_code=201)
def create_bot(
    data: bot_service.BotCreate, key: AdminKey, session: SessionDep, request: Request
) -> BotOut:
    bot = bot_service.create_bot(
        session, data, base_model=request.app.state.settings.model, actor=audit.key_actor(key)
    )
    return BotOut.of(bot)


@router.get("/bots")
def list_bots(_: AdminKey, session: SessionDep) -> list[BotOut]:
    return [BotOut.of(b) for b in bot_service.list_bots(session)]


@router.get("/bots/{slug}")
def get_bot(slug: str, _: AdminKey, session: SessionDep) -> BotOut:
    return BotOut.of(bot_service.get_bot(session, slug))


@router.patch("/bots/{slug}")
def update_bot(
    slug: str, data: bot_service.BotUpdate, key: AdminKey, session: SessionDep
) -> BotOut:
    return BotOut.of(bot_service.update_bot(session, slug, data, actor=audit.key_actor(key)))


@router.delete("/bots/{slug}", status_code=204)
def delete_bot(slug: str, key: AdminKey, session: SessionDep) -> Response:
    bot_service.delete_bot(session, slug, actor=audit.key_actor(key))
    return Response(status_code=204)


@router.get("/bots/{slug}/widget")
def get_widget(slug: str, _: AdminKey, session: SessionDep) -> WidgetConfig:
    """The bot's support-widget settings (defaults filled in)."""
    return widget_of(bot_service.get_bot(session, slug).widget)


@router.put("/bots/{slug}/widget")
def put_widget(slug: str, data: WidgetConfig, key: AdminKey, session: SessionDep) -> WidgetConfig:
    """Replace the bot's support-widget settings: allowed origins, theme, strings, handoff."""
    bot = bot_service.get_bot(session, slug)
    update_widget(session, bot, data, actor=audit.key_actor(key))
    return widget_of(bot.widget)


@router.post("/keys", status_code=201)
def create_key(data: KeyCreate, admin: AdminKey, session: SessionDep) -> KeyCreated:
    bots = [bot_service.get_bot(session, slug) for slug in data.bots]
    if not bots and not data.admin:
        raise InvalidRequest("Give at least one bot, or admin=true.", param="bots")
    key, secret = key_service.create_key(
        session,
        bots=bots,
        is_admin=data.admin,
        name=data.name,
        publishable=data.publishable,
        actor=audit.key_actor(admin),
    )
    return KeyCreated(**KeyOut.of(key).model_dump(), key=secret)


@router.get("/keys")
def list_keys(_: AdminKey, session: SessionDep) -> list[KeyOut]:
    return [KeyOut.of(k) for k in key_service.list_keys(session)]


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: str, key: AdminKey, session: SessionDep, request: Request) -> KeyOut:
    # The bootstrap admin key (settings) always remains, so only a stored key can be the last one.
    keep = request.app.state.settings.admin_key is None
    return KeyOut.of(
        key_service.revoke_key(
            session, key_id, actor=audit.key_actor(key), by=key, keep_an_admin=keep
        )
    )


def _exchange_filter(
    session: SessionDep,
    bot: str | None = None,
    conversation_id: str | None = None,
    release_id: str | None = None,
    status: Literal["completed", "refused", "interrupted", "error"] | None = None,
    rating: Literal["up", "down", "none"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = Query(None, max_length=200),
) -> exchange_service.ExchangeFilter:
    bot_id = bot_service.get_bot(session, bot).id if bot else None
    return exchange_service.ExchangeFilter(
        bot_id=bot_id,
        conversation_id=conversation_id,
        release_id=release_id,
        status=status,
        rating=rating,
        since=since,
        until=until,
        text=text,
    )


ExchangeFilterDep = Annotated[exchange_service.ExchangeFilter, Depends(_exchange_filter)]


@router.get("/exchanges")
def list_exchanges(
    _: AdminKey,
    session: SessionDep,
    flt: ExchangeFilterDep,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> list[ExchangeView]:
    """Stored exchanges, newest first, with everything kept: passages, citations, the guard's
    decision, flags, the client's feedback and the annotation that answered."""
    rows = exchange_service.list_exchanges(session, flt, limit=limit, offset=offset)
    return [ExchangeView.of(r) for r in rows]


@router.get("/exchanges/export", response_class=StreamingResponse)
def export_exchanges(
    _: AdminKey, flt: ExchangeFilterDep, request: Request, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """Every matching exchange as JSON lines or CSV (same filters as the listing)."""
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(
        exchange_service.export_exchanges(request.app.state.sessions, flt, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="exchanges.{format}"'},
    )


@router.get("/exchanges/{exchange_id}")
def get_exchange(exchange_id: str, _: AdminKey, session: SessionDep) -> ExchangeView:
    return ExchangeView.of(exchange_service.get_exchange(session, exchange_id))


class AuditEntryOut(BaseModel):
    id: str
    created_at: datetime
    actor: str
    actor_id: str | None
    action: str
    entity: str
    entity_id: str
    bot_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@router.get("/audit")
def list_audit(
    _: AdminKey,
    session: SessionDep,
    bot: str | None = None,
    actor: str | None = Query(None, max_length=320),
    action: str | None = Query(
        None, max_length=60, description="Exact, or a prefix ending in '.'."
    ),
    entity: str | None = Query(None, max_length=40),
    entity_id: str | None = Query(None, max_length=40),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> list[AuditEntryOut]:
    """Who changed what and when (releases, reviews, annotations, staff, thresholds), newest first."""
    flt = audit.AuditFilter(
        bot_id=bot_service.get_bot(session, bot).id if bot else None,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        since=since,
        until=until,
    )
    return [
        AuditEntryOut.model_validate(e, from_attributes=True)
        for e in audit.list_entries(session, flt, limit=limit, offset=offset)
    ]
