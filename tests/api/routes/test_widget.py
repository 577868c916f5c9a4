"""The support widget's API: publishable keys (one bot, allowed origins only, chat / feedback /
handoff only, revocable), CORS for allowed origins only, secret keys refused from web pages, rate
limits per key and per visitor, conversations continued on the server, and handoffs delivered to a
real webhook and a real SMTP server. (The widget itself runs in Chromium: tests/review_ui.)"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from api.db import transaction
from api.models import Exchange, Handoff, Job
from tests.api.conftest import Harness
from tests.support.servers import free_port, wait_for

ADMIN = {"Authorization": "Bearer admin-secret-for-tests-0123456789"}
SITE = "https://shop.example.com"


def publishable(h: Harness, bot: str = "acme", **widget: Any) -> str:
    r = h.client.put(
        f"/api/bots/{bot}/widget", headers=ADMIN, json={"allowed_origins": [SITE], **widget}
    )
    assert r.status_code == 200, r.text
    r = h.client.post("/api/keys", headers=ADMIN, json={"bots": [bot], "publishable": True})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "publishable" and body["key"] == body["publishable_key"]
    assert body["key"].startswith("pk-")
    return str(body["key"])


def chat(h: Harness, key: str, message: str, origin: str = SITE, **extra: Any) -> Any:
    return h.client.post(
        f"/v1/widget/{key}/chat",
        headers={"Origin": origin},
        json={"message": message, **extra},
    )


def events(response: Any) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def answer_text(response: Any) -> str:
    return "".join(
        c["delta"].get("content") or "" for e in events(response) for c in e.get("choices", [])
    )


def test_a_publishable_key_serves_one_bot_from_its_allowed_origins(harness: Harness) -> None:
    key = publishable(
        harness, title="Acme help", greeting="Hello!", handoff_webhook_secret="whsec-" + "s" * 20
    )
    r = harness.client.get(f"/v1/widget/{key}/config", headers={"Origin": SITE})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SITE
    assert "Origin" in r.headers["vary"]
    config = r.json()
    assert config["title"] == "Acme help" and config["greeting"] == "Hello!"
    assert config["bot"] == "acme" and config["handoff"] is False
    # What only the operator should know stays on the server.
    assert "allowed_origins" not in config and "handoff_webhook_url" not in config
    assert "whsec-" not in r.text

    for origin in ("https://evil.example.com", "http://shop.example.com", "null"):
        r = harness.client.get(f"/v1/widget/{key}/config", headers={"Origin": origin})
        assert r.status_code == 403, origin
        assert r.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in r.headers  # the page cannot read anything
    r = harness.client.get(f"/v1/widget/{key}/config")  # no Origin: not a web page
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    before = harness.exchange_count()
    assert chat(harness, key, "Hi", origin="https://evil.example.com").status_code == 403
    assert harness.exchange_count() == before  # refused before anything ran


def test_preflight_answers_only_allowed_origins(harness: Harness) -> None:
    key = publishable(harness)
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    r = harness.client.options(f"/v1/widget/{key}/chat", headers={"Origin": SITE, **headers})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == SITE
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"]
    r = harness.client.options(
        f"/v1/widget/{key}/chat", headers={"Origin": "https://evil.example.com", **headers}
    )
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_wildcard_origins_and_origin_validation(harness: Harness) -> None:
    r = harness.client.put(
        "/api/bots/acme/widget",
        headers=ADMIN,
        json={"allowed_origins": ["https://*.example.com", "HTTPS://Shop.Example.com:443/"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["allowed_origins"] == ["https://*.example.com", "https://shop.example.com"]
    key = publishable(harness, allowed_origins=["https://*.example.com"])
    ok = harness.client.get(f"/v1/widget/{key}/config", headers={"Origin": "https://a.example.com"})
    assert ok.status_code == 200
    for origin in ("https://example.com.evil.io", "https://badexample.com"):
        r = harness.client.get(f"/v1/widget/{key}/config", headers={"Origin": origin})
        assert r.status_code == 403, origin
    for bad in (
        "https://shop.example.com/path",
        "ftp://x.example.com",
        "https://*",
        "*.example.com",
    ):
        r = harness.client.put(
            "/api/bots/acme/widget", headers=ADMIN, json={"allowed_origins": [bad]}
        )
        assert r.status_code == 400, bad
        assert r.json()["error"]["param"].startswith("allowed_origins")


def test_widget_chat_streams_and_continues_the_conversation_on_the_server(
    harness: Harness,
) -> None:
    key = publishable(harness)
    first = chat(harness, key, "How do I reset my password?")
    assert first.status_code == 200 and first.headers["content-type"].startswith(
        "text/event-stream"
    )
    assert first.headers["access-control-allow-origin"] == SITE
    assert "X-Conversation-Id" in first.headers["access-control-expose-headers"]
    conversation = first.headers["x-conversation-id"]
    assert answer_text(first) == "Hello from the bot."
    assert len([e for e in events(first) if e.get("choices")]) > 3  # streamed piece by piece

    second = chat(harness, key, "And my e-mail?", conversation_id=conversation)
    assert second.headers["x-conversation-id"] == conversation
    # The model saw the earlier turn, rebuilt from what was stored (not from the browser).
    messages, _, _ = harness.backend.calls[-1]
    said = [(m["role"], m["content"]) for m in messages if m["role"] != "system"]
    assert said == [
        ("user", "How do I reset my password?"),
        ("assistant", "Hello from the bot."),
        ("user", "And my e-mail?"),
    ]
    rows = [e for e in harness.exchanges() if e.conversation_id == conversation]
    assert [r.status for r in rows] == ["completed", "completed"]
    assert rows[0].api_key_id is not None and rows[0].api_key_id == rows[1].api_key_id

    # A page reload shows the conversation again.
    r = harness.client.get(
        f"/v1/widget/{key}/conversations/{conversation}", headers={"Origin": SITE}
    )
    assert r.status_code == 200
    turns = r.json()["turns"]
    assert [t["question"] for t in turns] == ["How do I reset my password?", "And my e-mail?"]
    assert turns[0]["answer"] == "Hello from the bot." and turns[0]["feedback"] is None

    # An id this bot does not know starts a new conversation; another bot's is not readable.
    fresh = chat(harness, key, "Hello?", conversation_id="conv_made_up")
    assert fresh.headers["x-conversation-id"] not in ("conv_made_up", conversation)
    other = publishable(harness, "globex")
    r = harness.client.get(
        f"/v1/widget/{other}/conversations/{conversation}", headers={"Origin": SITE}
    )
    assert r.status_code == 404


def test_bad_widget_input_is_refused_and_stores_nothing(harness: Harness) -> None:
    key = publishable(harness)
    before = harness.exchange_count()
    for body in (
        {"message": ""},
        {"message": 5},
        {"message": "hi", "conversation_id": "a\r\nX-Injected: 1"},
        {"message": "hi", "conversation_id": "ü" * 10},
        {"message": "hi", "extra": True},
        {"message": "x" * 9000},
    ):
        r = harness.client.post(f"/v1/widget/{key}/chat", headers={"Origin": SITE}, json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert harness.exchange_count() == before


def test_secret_keys_never_work_from_a_web_page(harness: Harness) -> None:
    body = {"model": "acme", "messages": [{"role": "user", "content": "Hi"}]}
    r = harness.client.post(
        "/v1/chat/completions", headers={**harness.auth(), "Origin": SITE}, json=body
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "key_from_browser"
    r = harness.client.get("/api/bots", headers={**ADMIN, "Origin": "http://testserver"})
    assert r.status_code == 403
    # Nor as a widget key, even from an allowed origin.
    publishable(harness)
    r = harness.client.get(f"/v1/widget/{harness.key}/config", headers={"Origin": SITE})
    assert r.status_code == 401
    # And a publishable key is nothing but a widget key.
    key = publishable(harness)
    r = harness.client.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "wrong_key_kind"
    r = harness.client.get("/api/bots", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    assert harness.client.get("/api/bots", headers=ADMIN).status_code == 200


def test_publishable_keys_are_revocable_and_follow_the_widget_switch(harness: Harness) -> None:
    key = publishable(harness)
    keys = harness.client.get("/api/keys", headers=ADMIN).json()
    key_id = next(k["id"] for k in keys if k.get("publishable_key") == key)
    assert chat(harness, key, "Hi").status_code == 200
    r = harness.client.post(f"/api/keys/{key_id}/revoke", headers=ADMIN)
    assert r.status_code == 200
    r = chat(harness, key, "Hi")
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"

    key = publishable(harness)
    r = harness.client.put(
        "/api/bots/acme/widget", headers=ADMIN, json={"allowed_origins": [SITE], "enabled": False}
    )
    assert r.status_code == 200
    r = chat(harness, key, "Hi")
    assert r.status_code == 403 and r.json()["error"]["code"] == "widget_disabled"
    for bad in ({"bots": ["acme", "globex"]}, {"bots": [], "admin": True}):
        r = harness.client.post("/api/keys", headers=ADMIN, json={**bad, "publishable": True})
        assert r.status_code == 400, bad


def test_rate_limits_per_visitor_and_per_key(harness: Harness) -> None:
    key = publishable(harness, rate_per_ip_per_minute=2)
    assert chat(harness, key, "one").status_code == 200
    assert chat(harness, key, "two").status_code == 200
    before = harness.exchange_count()
    r = chat(harness, key, "three")
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error" and "you" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["access-control-allow-origin"] == SITE  # the widget can read why
    assert harness.exchange_count() == before
    # The limit is the key's own: another bot's widget is not slowed down.
    other = publishable(harness, "globex", rate_per_key_per_minute=1, rate_per_ip_per_minute=50)
    assert chat(harness, other, "one").status_code == 200
    r = chat(harness, other, "two")
    assert r.status_code == 429 and "this site" in r.json()["error"]["message"]


def test_thumbs_down_from_the_widget_puts_the_answer_in_front_of_reviewers(
    harness: Harness,
) -> None:
    key = publishable(harness)
    first = chat(harness, key, "How do I reset my password?")
    exchange = first.headers["x-exchange-id"]
    r = harness.client.post(
        f"/v1/widget/{key}/exchanges/{exchange}/feedback",
        headers={"Origin": SITE},
        json={"rating": "down"},
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == SITE
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        assert session.get(Exchange, exchange).feedback == -1
    conversation = first.headers["x-conversation-id"]
    turns = harness.client.get(
        f"/v1/widget/{key}/conversations/{conversation}", headers={"Origin": SITE}
    ).json()["turns"]
    assert turns[0]["feedback"] == "down"
    # Another bot's widget cannot rate this answer.
    other = publishable(harness, "globex")
    r = harness.client.post(
        f"/v1/widget/{other}/exchanges/{exchange}/feedback",
        headers={"Origin": SITE},
        json={"rating": "up"},
    )
    assert r.status_code == 404


def test_a_cited_source_opens_as_an_escaped_page(harness: Harness) -> None:
    key = publishable(harness)
    exchange = chat(harness, key, "Where is it?").headers["x-exchange-id"]
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        row = session.get(Exchange, exchange)
        row.passages = [
            {
                "chunk_id": "c1",
                "document": "manual.md",
                "title": "Manual",
                "heading_path": ["Setup"],
                "page": 3,
                "score": 0.9,
                "text": "Hold <b>reset</b> <script>alert(1)</script>",
            }
        ]
    r = harness.client.get(f"/v1/widget/{key}/exchanges/{exchange}/sources/c1")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>" not in r.text
    assert "Manual" in r.text and "page 3" in r.text
    assert (
        harness.client.get(f"/v1/widget/{key}/exchanges/{exchange}/sources/nope").status_code == 404
    )


# -- handoff to a person ------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    deliveries: list[tuple[dict[str, str], bytes]] = []  # headers and the raw body
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["content-length"])
        body = self.rfile.read(length)
        type(self).received.append(json.loads(body))
        type(self).deliveries.append((dict(self.headers.items()), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[type[_Hook]]:
    hook = type("Hook", (_Hook,), {"received": [], "deliveries": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/handoff"  # type: ignore[attr-defined]
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _handoffs(h: Harness) -> list[Handoff]:
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        return list(session.scalars(select(Handoff).order_by(Handoff.created_at)))


def test_handoff_sends_the_conversation_to_the_webhook_and_by_e_mail(
    harness: Harness, webhook: Any, mailbox: tuple[_Mailbox, int]
) -> None:
    box, port = mailbox
    harness.settings.smtp_host = "127.0.0.1"
    harness.settings.smtp_port = port
    secret = "whsec-0123456789abcdef"
    key = publishable(
        harness,
        handoff_webhook_url=webhook.url,
        handoff_webhook_secret=secret,
        handoff_email="support@acme.example",
    )
    config = harness.client.get(f"/v1/widget/{key}/config", headers={"Origin": SITE}).json()
    assert config["handoff"] is True
    conversation = chat(harness, key, "My order never came").headers["x-conversation-id"]
    r = harness.client.post(
        f"/v1/widget/{key}/handoff",
        headers={"Origin": SITE},
        json={
            "conversation_id": conversation,
            "email": "ann@customer.example",
            "message": "Order 1234",
            "page_url": "https://shop.example.com/orders",
        },
    )
    assert r.status_code == 202, r.text
    assert "ann@customer.example" in r.json()["message"]  # what happens next, in the bot's words
    wait_for(lambda: _handoffs(harness)[0].status == "sent", 30, "the handoff to be delivered")
    handoff = _handoffs(harness)[0]
    assert handoff.channels == ["email", "webhook"] and handoff.error is None
    payload = webhook.received[0]
    assert payload["conversation_id"] == conversation and payload["bot"] == "acme"
    assert (
        payload["contact"]["email"] == "ann@customer.example" and payload["message"] == "Order 1234"
    )
    assert [t["question"] for t in payload["transcript"]] == ["My order never came"]
    # Signed as the README tells receivers to check it: HMAC-SHA256 of "<t>.<raw body>".
    headers, raw = webhook.deliveries[0]
    fields = dict(part.split("=", 1) for part in headers["X-Shadowdesk-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + raw, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())
    assert abs(time.time() - int(fields["t"])) < 60
    assert headers["X-Shadowdesk-Delivery"] == handoff.id
    assert payload["transcript"][0]["answer"] == "Hello from the bot."
    ((to, mail),) = box.messages
    assert to == ["support@acme.example"] and mail["Reply-To"] == "ann@customer.example"
    text = next(p for p in mail.walk() if p.get_content_type() == "text/plain").get_payload(
        decode=True
    )
    assert b"My order never came" in text and b"Order 1234" in text


def test_a_failing_webhook_is_retried_and_nothing_is_lost(harness: Harness, webhook: Any) -> None:
    webhook.status = 500
    key = publishable(harness, handoff_webhook_url=webhook.url)
    conversation = chat(harness, key, "Help").headers["x-conversation-id"]
    body = {"conversation_id": conversation, "email": "bo@customer.example"}
    r = harness.client.post(f"/v1/widget/{key}/handoff", headers={"Origin": SITE}, json=body)
    assert r.status_code == 202
    wait_for(lambda: _handoffs(harness)[0].error, 30, "a failed attempt")
    assert (
        "500" in (_handoffs(harness)[0].error or "") and _handoffs(harness)[0].status == "pending"
    )
    webhook.status = 200
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        job = session.scalars(select(Job).where(Job.kind == "handoff")).one()
        assert job.status == "queued" and job.locked_until is not None  # waiting to retry
        job.locked_until = None  # no waiting out the delay in a test
    wait_for(lambda: _handoffs(harness)[0].status == "sent", 60, "the retry to deliver it")
    assert len(webhook.received) >= 2
    # One delivery id for every attempt (a receiver can skip what it already has); no secret set,
    # no signature.
    assert {h["X-Shadowdesk-Delivery"] for h, _ in webhook.deliveries} == {_handoffs(harness)[0].id}
    assert all("X-Shadowdesk-Signature" not in h for h, _ in webhook.deliveries)


def test_handoff_needs_a_destination_and_a_conversation_of_this_bot(harness: Harness) -> None:
    key = publishable(harness)
    conversation = chat(harness, key, "Help").headers["x-conversation-id"]
    body = {"conversation_id": conversation, "email": "bo@customer.example"}
    r = harness.client.post(f"/v1/widget/{key}/handoff", headers={"Origin": SITE}, json=body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "handoff_unavailable"
    key = publishable(harness, handoff_email="support@acme.example")
    for bad in ({**body, "conversation_id": "conv_unknown"}, {**body, "email": "not an address"}):
        r = harness.client.post(f"/v1/widget/{key}/handoff", headers={"Origin": SITE}, json=bad)
        assert r.status_code in (400, 404), bad
    assert _handoffs(harness) == []


def test_replicas_share_the_rate_limits_through_redis() -> None:
    """Two gateways (two gates) on one Redis count one visitor's requests together."""
    from api.ids import new_id
    from api.services.widget.config import WidgetConfig
    from api.services.widget.gate import RateLimited, WidgetGate, WidgetGrant

    grant = WidgetGrant(new_id("key"), "bot_x", "x", WidgetConfig(rate_per_ip_per_minute=3))
    first, second = (WidgetGate(None, 0, "redis://127.0.0.1:6379") for _ in range(2))  # type: ignore[arg-type]
    first.hit(grant, "203.0.113.7")
    second.hit(grant, "203.0.113.7")
    first.hit(grant, "203.0.113.7")
    with pytest.raises(RateLimited):
        second.hit(grant, "203.0.113.7")
    second.hit(grant, "203.0.113.8")  # another visitor is not held back


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("https://shop.example.com", ["https://shop.example.com"], True),
        ("https://SHOP.example.com:443", ["https://shop.example.com"], True),
        ("https://shop.example.com:8443", ["https://shop.example.com"], False),
        ("https://a.b.example.com", ["https://*.example.com"], True),
        ("https://example.com", ["https://*.example.com"], False),
        ("http://a.example.com", ["https://*.example.com"], False),
        ("null", ["https://shop.example.com"], False),
    ],
)
def test_origin_matching(origin: str, allowed: list[str], expected: bool) -> None:
    from api.services.widget.config import origin_allowed

    assert origin_allowed(origin, allowed) is expected
