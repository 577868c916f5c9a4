"""The support widget's admin pages: per bot, its settings (allowed origins, theme, strings,
handoff), its publishable keys, the snippet to paste into a site, and a live preview of the widget
with the settings as they are being edited. Admins only."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import SessionDep
from api.errors import NotFound
from api.models import Bot
from api.services.access import keys as key_service
from api.services.access.staff import require_admin
from api.services.bots.management import get_bot, list_bots
from api.services.widget.config import WidgetConfig, WidgetStrings, update_widget, widget_of
from api.services.widget.gate import service_origin
from review_ui.auth import ViewerDep
from review_ui.rendering import render

router = APIRouter(prefix="/review", include_in_schema=False)

STRING_FIELDS = list(WidgetStrings.model_fields)


@router.get("/widget")
def widget_index(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    require_admin(viewer.actor)
    bots = [
        (bot, widget_of(bot.widget), key_service.publishable_keys(session, bot))
        for bot in list_bots(session)
    ]
    return render(
        request,
        "widgets.html",
        {"title": "Support widget", "viewer": viewer, "nav": "widget", "bots": bots},
    )


def _page(
    request: Request,
    viewer: Any,
    session: Any,
    bot: Bot,
    config: WidgetConfig,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    keys = key_service.publishable_keys(session, bot)
    active = next((k for k in reversed(keys) if k.revoked_at is None), None)
    api = service_origin(
        request.app.state.settings.public_url, request.url.scheme, request.url.netloc
    )
    snippet = (
        f'<script src="{api}/widget.js" data-key="{active.publishable_value}" async></script>'
        if active
        else ""
    )
    preview = json.dumps({"config": {"bot": bot.slug, **config.public()}})
    return render(
        request,
        "widget.html",
        {
            "title": f"Widget · {bot.slug}",
            "viewer": viewer,
            "nav": "widget",
            "bot": bot,
            "config": config,
            "string_fields": STRING_FIELDS,
            "keys": keys,
            "active_key": active,
            "snippet": snippet,
            "api": api,
            "preview": preview,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/bots/{slug}/widget")
def widget_page(request: Request, viewer: ViewerDep, session: SessionDep, slug: str) -> Response:
    require_admin(viewer.actor)
    bot = get_bot(session, slug)
    return _page(request, viewer, session, bot, widget_of(bot.widget))


def config_from_form(form: Any) -> dict[str, Any]:
    """The form's fields as the widget settings' JSON (validated by the caller)."""

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    origins = [line.strip() for line in text("allowed_origins").splitlines() if line.strip()]
    strings = {name: text(f"strings.{name}") for name in STRING_FIELDS if text(f"strings.{name}")}
    return {
        "enabled": form.get("enabled") == "on",
        "allowed_origins": origins,
        "title": text("title"),
        "greeting": text("greeting"),
        "accent_color": text("accent_color"),
        "text_color": text("text_color"),
        "position": text("position") or "right",
        "strings": strings,
        "handoff_webhook_url": text("handoff_webhook_url") or None,
        "handoff_webhook_secret": text("handoff_webhook_secret") or None,
        "handoff_email": text("handoff_email") or None,
        "handoff_reply": text("handoff_reply")
        or WidgetConfig.model_fields["handoff_reply"].default,
        "rate_per_key_per_minute": text("rate_per_key_per_minute") or 600,
        "rate_per_ip_per_minute": text("rate_per_ip_per_minute") or 20,
    }


@router.post("/bots/{slug}/widget")
async def save_widget(
    request: Request, viewer: ViewerDep, session: SessionDep, slug: str
) -> Response:
    require_admin(viewer.actor)
    bot = get_bot(session, slug)
    raw = config_from_form(await request.form())
    try:
        config = WidgetConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        shown = WidgetConfig.model_construct(**{**widget_of(bot.widget).model_dump(), **raw})
        shown.strings = WidgetStrings(**{**WidgetStrings().model_dump(), **raw["strings"]})
        return _page(
            request, viewer, session, bot, shown, error=f"Not saved: {problems}", status_code=400
        )
    update_widget(session, bot, config, actor=viewer.actor)
    return RedirectResponse(f"/review/bots/{slug}/widget?saved=1", status_code=303)


@router.post("/bots/{slug}/widget/keys")
def create_publishable_key(viewer: ViewerDep, session: SessionDep, slug: str) -> Response:
    require_admin(viewer.actor)
    bot = get_bot(session, slug)
    key_service.create_key(
        session, bots=[bot], publishable=True, name=f"{slug} widget", actor=viewer.actor
    )
    return RedirectResponse(f"/review/bots/{slug}/widget#keys", status_code=303)


@router.post("/bots/{slug}/widget/keys/{key_id}/revoke")
def revoke_publishable_key(
    viewer: ViewerDep, session: SessionDep, slug: str, key_id: str
) -> Response:
    require_admin(viewer.actor)
    bot = get_bot(session, slug)
    if not any(k.id == key_id for k in key_service.publishable_keys(session, bot)):
        raise NotFound("No such publishable key for this bot.")
    key_service.revoke_key(session, key_id, actor=viewer.actor)
    return RedirectResponse(f"/review/bots/{slug}/widget#keys", status_code=303)
