""" "Talk to a person": a widget visitor's conversation goes to the bot's webhook and/or e-mail
address. The request only records the handoff and queues a `handoff` job in the same commit; the job
delivers it (retried, each channel once), so a slow or failing destination never blocks the visitor
and no handoff is lost."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy.orm import Session

from api.db import transaction
from api.errors import Conflict
from api.ids import new_id
from api.jobs.queue import enqueue
from api.jobs.worker import JobContext, RetryLater
from api.models import Bot, Handoff
from api.runtime import Runtime
from api.services.widget.conversations import transcript
from api.services.widget.gate import WidgetGrant

MAX_ATTEMPTS = 5


def request_handoff(
    session: Session,
    grant: WidgetGrant,
    *,
    conversation_id: str,
    email: str | None,
    name: str | None,
    message: str,
    page_url: str | None,
) -> tuple[Handoff, str]:
    """Record the handoff and queue its delivery; returns it and what the visitor is told next."""
    config = grant.config
    if not config.handoff_enabled:
        raise Conflict(
            "This bot has no handoff destination (webhook or e-mail) configured.",
            code="handoff_unavailable",
        )
    transcript(session, grant.bot_id, conversation_id)  # 404 unless the conversation is this bot's
    handoff = Handoff(
        id=new_id("hand"),
        bot_id=grant.bot_id,
        conversation_id=conversation_id,
        email=email,
        name=name,
        message=message,
        page_url=page_url,
        status="pending",
        channels=[],
    )
    session.add(handoff)
    session.flush()
    enqueue(
        session,
        "handoff",
        {"handoff_id": handoff.id},
        bot_id=grant.bot_id,
        max_attempts=MAX_ATTEMPTS,
    )
    reply = config.handoff_reply.replace("{email}", email or "the address you gave")
    return handoff, reply


def handoff_payload(session: Session, handoff: Handoff) -> dict[str, Any]:
    bot = session.get(Bot, handoff.bot_id)
    assert bot is not None
    return {
        "type": "handoff",
        "id": handoff.id,
        "bot": bot.slug,
        "conversation_id": handoff.conversation_id,
        "contact": {"email": handoff.email, "name": handoff.name},
        "message": handoff.message,
        "page_url": handoff.page_url,
        "created_at": handoff.created_at.isoformat(),
        "transcript": [
            {k: turn[k] for k in ("question", "answer", "created_at")}
            for turn in transcript(session, handoff.bot_id, handoff.conversation_id)
        ],
    }


def run_handoff_job(ctx: JobContext, runtime: Runtime) -> dict[str, Any]:
    """Deliver a handoff to every configured channel not yet reached; raise (the job is retried)
    while one fails, and mark the handoff failed after the last attempt."""
    from api.services.widget.config import widget_of

    settings = runtime.settings
    handoff_id = ctx.payload["handoff_id"]
    with transaction(ctx.sessions) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            return {"skipped": "handoff deleted"}
        bot = session.get(Bot, handoff.bot_id)
        assert bot is not None
        config = widget_of(bot.widget)
        payload = handoff_payload(session, handoff)
        done = set(handoff.channels or [])
    targets = {"webhook": config.handoff_webhook_url, "email": config.handoff_email}
    errors: list[str] = []
    for channel, target in targets.items():
        if not target or channel in done:
            continue
        try:
            if channel == "webhook":
                _post(
                    target,
                    payload,
                    settings.handoff_timeout_s,
                    secret=config.handoff_webhook_secret,
                    delivery=handoff_id,
                )
            else:
                _mail(target, payload, runtime)
            done.add(channel)
        except (httpx.HTTPError, OSError, smtplib.SMTPException, ValueError) as exc:
            errors.append(f"{channel}: {type(exc).__name__}: {exc}")
    with transaction(ctx.sessions) as session:
        handoff = session.get(Handoff, handoff_id)
        if handoff is None:
            return {"skipped": "handoff deleted"}
        handoff.channels = sorted(done)
        handoff.error = "; ".join(errors) or None
        if not errors:
            handoff.status = "sent"
            handoff.sent_at = datetime.now(UTC)
        elif ctx.attempt >= MAX_ATTEMPTS:
            handoff.status = "failed"
    if errors:  # 10 s, 30 s, 90 s, 270 s between attempts
        raise RetryLater(
            "handoff not delivered: " + "; ".join(errors), 10.0 * 3 ** (ctx.attempt - 1)
        )
    return {"channels": sorted(done)}


SIGNATURE_HEADER = "X-Shadowdesk-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value: the time, and an HMAC-SHA256 of `<time>.<body>` (the time is
    signed too, so a receiver can refuse an old delivery replayed)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _post(
    url: str, payload: dict[str, Any], timeout: float, *, secret: str | None, delivery: str
) -> None:
    body = json.dumps(payload).encode()
    # The delivery id is the same on every retry: a receiver that saw it already can skip it.
    headers = {"Content-Type": "application/json", "X-Shadowdesk-Delivery": delivery}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
    reply = httpx.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
    if not reply.is_success:
        raise ValueError(f"the webhook answered {reply.status_code}")


def _mail(to: str, payload: dict[str, Any], runtime: Runtime) -> None:
    settings = runtime.settings
    if not settings.smtp_host:
        raise ValueError("no mail server: set SHADOWDESK_SMTP_HOST")
    contact = payload["contact"]["email"] or "a visitor"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    if payload["contact"]["email"]:
        message["Reply-To"] = payload["contact"]["email"]
    message["Subject"] = f"[{payload['bot']}] {contact} asks to talk to a person"
    lines = [
        f"{contact} asked to talk to a person on {payload['page_url'] or 'the support widget'}.",
        "",
        f"Their note: {payload['message']}" if payload["message"] else "They added no note.",
        "",
        "The conversation so far:",
    ]
    for turn in payload["transcript"]:
        lines += ["", f"Visitor: {turn['question']}", f"Bot: {turn['answer']}"]
    lines += ["", f"Handoff {payload['id']}, conversation {payload['conversation_id']}."]
    message.set_content("\n".join(lines))
    message.add_attachment(
        json.dumps(payload, indent=2).encode(),
        maintype="application",
        subtype="json",
        filename=f"{payload['id']}.json",
    )
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.handoff_timeout_s
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password is not None:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)
