"""A bot's support-widget settings: the bot's `widget` JSON, validated (allowed origins, theme, UI
strings, handoff channels, rate limits)."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from api.models import Bot
from api.services.access import audit
from api.services.access.audit import AuditActor
from api.unit_of_work import ACCESS, changed

_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def normalise_origin(value: str) -> str:
    """`scheme://host[:port]` in lower case, the default port dropped; `https://*.example.com`
    allows every subdomain. Raises ValueError for anything else (paths, credentials, other schemes)."""
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an origin like https://www.example.com")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"'{value}' is not an origin: give scheme://host[:port] only")
    host = parts.hostname.lower()
    if "*" in host and not (host.startswith("*.") and "*" not in host[2:] and "." in host[2:]):
        raise ValueError(f"'{value}': a wildcard may only be the first label, as *.example.com")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"'{value}' has an invalid port") from exc
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def origin_allowed(origin: str, allowed: list[str]) -> bool:
    try:
        origin = normalise_origin(origin)
    except ValueError:
        return False
    scheme, _, host = origin.partition("://")
    for pattern in allowed:
        p_scheme, _, p_host = pattern.partition("://")
        if p_scheme != scheme:
            continue
        if p_host == host or (p_host.startswith("*.") and host.endswith(p_host[1:])):
            return True
    return False


class WidgetStrings(BaseModel):
    """Every text the widget shows, so a bot can speak its site's language."""

    model_config = ConfigDict(extra="forbid")

    launcher: str = Field("Chat with us", max_length=60)
    placeholder: str = Field("Type your question…", max_length=100)
    send: str = Field("Send", max_length=30)
    close: str = Field("Close chat", max_length=30)
    thinking: str = Field("Thinking…", max_length=60)
    sources: str = Field("Sources", max_length=40)
    helpful: str = Field("Helpful", max_length=40)
    not_helpful: str = Field("Not helpful", max_length=40)
    thanks_for_feedback: str = Field("Thanks for the feedback.", max_length=100)
    talk_to_human: str = Field("Talk to a person", max_length=60)
    handoff_intro: str = Field(
        "Leave your e-mail address and we will pass this conversation to our team.",
        max_length=300,
    )
    email_label: str = Field("Your e-mail", max_length=60)
    handoff_note_label: str = Field("Anything to add? (optional)", max_length=100)
    handoff_submit: str = Field("Send to our team", max_length=60)
    handoff_cancel: str = Field("Back to the chat", max_length=60)
    unavailable: str = Field(
        "We can't reach the support service right now. Please try again in a moment.",
        max_length=300,
    )
    retry: str = Field("Try again", max_length=30)
    new_conversation: str = Field("New conversation", max_length=60)


class WidgetConfig(BaseModel):
    """Per-bot widget settings (the bot's `widget` JSON)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Off: publishable keys of this bot are refused.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Sites that may embed the widget, as https://www.example.com (or "
        "https://*.example.com). The widget works nowhere else.",
    )
    title: str = Field("Support", max_length=80)
    greeting: str = Field("Hi! Ask me anything about our products.", max_length=500)
    accent_color: str = Field("#2563eb", description="Launcher, header and your messages.")
    text_color: str = Field("#ffffff", description="Text on the accent colour.")
    position: Literal["right", "left"] = "right"
    strings: WidgetStrings = Field(default_factory=WidgetStrings)
    handoff_webhook_url: str | None = Field(
        None, max_length=2000, description="POSTed a JSON handoff (conversation and contact)."
    )
    handoff_webhook_secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Signs each webhook delivery (header X-Shadowdesk-Signature: "
        "t=<unix time>,v1=<hex HMAC-SHA256 of '<t>.<body>'>), so the receiver can tell it came "
        "from this service.",
    )
    handoff_email: str | None = Field(
        None, max_length=320, description="Sent the handoff by e-mail (needs SHADOWDESK_SMTP_HOST)."
    )
    handoff_reply: str = Field(
        "Thanks! A member of our team now has this conversation and will write to you at "
        "{email}, usually within one business day.",
        max_length=500,
        description="What the visitor is told after a handoff ({email} is their address).",
    )
    rate_per_key_per_minute: int = Field(
        600, ge=1, le=100_000, description="Chat and feedback requests, all visitors together."
    )
    rate_per_ip_per_minute: int = Field(
        20, ge=1, le=10_000, description="Chat and feedback requests from one visitor's address."
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(normalise_origin(v) for v in values))

    @field_validator("accent_color", "text_color")
    @classmethod
    def _colour(cls, value: str) -> str:
        if not _COLOUR.match(value):
            raise ValueError("a colour is #rgb or #rrggbb")
        return value.lower()

    @field_validator("handoff_webhook_url")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the webhook must be an http(s) URL")
        return value

    @field_validator("handoff_webhook_secret", mode="before")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return None if value == "" else value

    @field_validator("handoff_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("not an e-mail address")
        return value

    @property
    def handoff_enabled(self) -> bool:
        return bool(self.handoff_webhook_url or self.handoff_email)

    def public(self) -> dict[str, Any]:
        """What the widget in a visitor's browser is told: theme and strings, never the handoff
        destinations or the origin list."""
        return {
            "title": self.title,
            "greeting": self.greeting,
            "accent_color": self.accent_color,
            "text_color": self.text_color,
            "position": self.position,
            "strings": self.strings.model_dump(),
            "handoff": self.handoff_enabled,
        }


def widget_of(raw: dict[str, Any] | None) -> WidgetConfig:
    return WidgetConfig.model_validate(raw or {})


def update_widget(session: Session, bot: Bot, config: WidgetConfig, *, actor: AuditActor) -> None:
    before = widget_of(bot.widget).model_dump()
    bot.widget = config.model_dump()
    audit.record(
        session,
        actor,
        "bot.widget",
        entity="bot",
        entity_id=bot.id,
        bot_id=bot.id,
        before=before,
        after=bot.widget,
    )
    changed(session, ACCESS)
