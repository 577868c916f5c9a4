"""The support widget in real headless Chromium: a page served from another origin embeds it with
one script tag; a visitor chats (the answer visibly streams, citations link to their passages),
rates an answer, reloads the page and finds the conversation, and hands it to a person; a page from
an origin that is not allowed gets nothing; keyboard-only use; a phone-sized screen; the service
unreachable; and the admin page's snippet and live preview.

Set REVIEW_UI_SCREENSHOTS=/some/dir to keep screenshots (the README's comes from here)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from api.app import create_app
from api.models import Exchange, Handoff, ReviewItem
from api.settings import Settings
from serving.backend import ChatMessage, GenerationParams, StreamEvent
from tests.review_ui.conftest import ADMIN_KEY, AnsweringBackend, Site
from tests.review_ui.test_browser import log_in_with_keyboard, snap
from tests.support.servers import free_port, serve_app, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUESTION = "How do I reset my Glow lamp?"
ANSWER = AnsweringBackend.ANSWERS["reset"]


class StreamingBackend(AnsweringBackend):
    """The scripted answers, one word every 80 ms: slow enough to watch an answer grow."""

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        import asyncio

        async for event in super().stream(messages, params, adapter):
            await asyncio.sleep(0.08)
            yield event


class Pages:
    """Web pages of a customer's site, served from an origin of its own."""

    def __init__(self, host: str) -> None:
        self.pages: dict[str, str] = {}
        self.hook: list[dict[str, Any]] = []
        pages, hook = self.pages, self.hook

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = pages.get(self.path.split("?")[0], "not found").encode()
                self.send_response(200 if self.path.split("?")[0] in pages else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - the handoff webhook
                hook.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, path: str, script: str) -> str:
        self.pages[path] = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            "<title>Kestrel shop</title></head><body style='font-family:serif;color:red'>"
            "<a href='#top'>Kestrel home</a><h1>Glow lamp</h1>"
            "<p>The warm light for every room.</p>" + script + "</body></html>"
        )
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("widget-site") / "data",
        auto_migrate=True,
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        torch_threads=1,
    )
    app = create_app(config, backend=StreamingBackend())
    with serve_app(app, lifespan="on", startup_timeout=120) as url:
        yield Site(url, app.state.sessions)


@pytest.fixture(scope="module")
def shop() -> Iterator[Pages]:
    pages = Pages("127.0.0.1")  # another origin than the Shadowdesk server (another port)
    yield pages
    pages.close()


@pytest.fixture(scope="module")
def stranger() -> Iterator[Pages]:
    pages = Pages("localhost")  # an origin nobody allowed
    yield pages
    pages.close()


@pytest.fixture(scope="module")
def widget_key(site: Site, shop: Pages) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.put(
        f"{site.url}/api/bots/demo/widget",
        headers=admin,
        json={
            "allowed_origins": [shop.origin],
            "title": "Kestrel help",
            "greeting": "Hi! Ask me about your Kestrel lamp or hub.",
            "accent_color": "#0f766e",
            "handoff_webhook_url": shop.origin + "/hook",
        },
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{site.url}/api/keys", headers=admin, json={"bots": ["demo"], "publishable": True}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def tag(site: Site, key: str, **data: str) -> str:
    extra = "".join(f' data-{k}="{v}"' for k, v in data.items())
    return f'<script src="{site.url}/widget.js" data-key="{key}"{extra} async></script>'


def rows(site: Site) -> list[Exchange]:
    with site.db() as session:
        return list(session.scalars(select(Exchange).order_by(Exchange.created_at)))


def test_a_visitor_chats_rates_reloads_and_hands_off(
    site: Site, shop: Pages, widget_key: str, browser: Any
) -> None:
    url = shop.add("/lamp", tag(site, widget_key))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    launcher = page.get_by_role("button", name="Chat with us")
    expect(launcher).to_be_visible()
    # Isolated styles: the page's red serif text does not reach the widget.
    assert "serif" not in launcher.evaluate("e => getComputedStyle(e).fontFamily").split(",")[0]
    assert launcher.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(15, 118, 110)"
    launcher.click()
    dialog = page.get_by_role("dialog", name="Kestrel help")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".m.b").first).to_have_text("Hi! Ask me about your Kestrel lamp or hub.")

    box = page.get_by_role("textbox", name="Type your question…")
    box.fill(QUESTION)
    box.press("Enter")
    answer = dialog.locator(".m.b").nth(1).locator(".t")
    # The answer grows on screen while it is generated.
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = answer.inner_text()
        if not seen or text != seen[-1]:
            seen.append(text)
        if text == ANSWER:
            break
        time.sleep(0.03)
    partial = [t for t in seen if t and t != ANSWER and ANSWER.startswith(t)]
    assert seen[-1] == ANSWER and len(partial) >= 3, seen

    # Citations link to the passages the answer was given.
    links = dialog.locator(".m.b").nth(1).locator(".src a")
    expect(links.first).to_be_visible()
    href = links.first.get_attribute("href") or ""
    assert href.startswith(site.url + "/v1/widget/") and "/sources/" in href
    assert links.first.get_attribute("target") == "_blank"
    source = httpx.get(href, timeout=10)
    assert source.status_code == 200 and "<blockquote>" in source.text

    # Thumbs down: stored with the exchange, and the answer goes to the front of the review queue.
    down = dialog.get_by_role("button", name="Not helpful")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(dialog.get_by_text("Thanks for the feedback.")).to_be_visible()
    exchange = rows(site)[-1]
    assert exchange.feedback == -1 and exchange.messages[-1]["content"] == QUESTION

    def priority() -> float:
        with site.db() as session:
            items = session.scalars(select(ReviewItem).where(ReviewItem.exchange_id == exchange.id))
            return max((i.priority for i in items), default=0.0)

    assert wait_for(priority, 30, "the thumbs-down to reach the review queue") > 0

    # A reload in the same tab shows the conversation again, continued on the server.
    page.reload()
    page.get_by_role("button", name="Chat with us").click()
    dialog = page.get_by_role("dialog", name="Kestrel help")
    expect(dialog.locator(".m.u")).to_have_text([QUESTION])
    expect(dialog.locator(".m.b").nth(1).locator(".t")).to_have_text(ANSWER)
    expect(dialog.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    box = page.get_by_role("textbox", name="Type your question…")
    box.fill("Is the Perch hub covered by the warranty?")
    box.press("Enter")
    expect(dialog.locator(".m.b").nth(2).locator(".t")).to_have_text(
        AnsweringBackend.ANSWERS["warranty"], timeout=30_000
    )
    first, second = rows(site)[-2:]
    assert first.conversation_id == second.conversation_id
    assert [m["content"] for m in second.messages] == [
        QUESTION,
        ANSWER,
        "Is the Perch hub covered by the warranty?",
    ]
    snap(page, "widget")

    # Talk to a person: the conversation goes to the site's webhook; the visitor is told what next.
    dialog.get_by_role("button", name="Talk to a person").click()
    email = dialog.get_by_role("textbox", name="Your e-mail")
    expect(email).to_be_focused()
    email.fill("ann@customer.example")
    dialog.get_by_role("textbox", name="Anything to add? (optional)").fill("My lamp is still red.")
    dialog.get_by_role("button", name="Send to our team").click()
    expect(dialog.locator(".m.b.note")).to_contain_text("ann@customer.example")
    wait_for(lambda: shop.hook, 30, "the webhook to receive the handoff")
    handoff = shop.hook[0]
    assert handoff["contact"]["email"] == "ann@customer.example"
    assert handoff["message"] == "My lamp is still red."
    assert handoff["page_url"] == url
    assert [t["question"] for t in handoff["transcript"]] == [
        QUESTION,
        "Is the Perch hub covered by the warranty?",
    ]

    def status() -> str:  # written once the webhook has answered
        with site.db() as session:
            return session.scalars(select(Handoff)).one().status

    wait_for(lambda: status() == "sent", 30, "the handoff to be marked sent")
    context.close()


def test_a_page_from_an_origin_not_allowed_gets_nothing(
    site: Site, stranger: Pages, widget_key: str, browser: Any
) -> None:
    url = stranger.add("/copy", tag(site, widget_key))
    context = browser.new_context()
    page = context.new_page()
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(url)
    before = len(rows(site))
    page.get_by_role("button", name="Chat with us").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("alert")).to_contain_text("can't reach the support service")
    box = page.get_by_role("textbox")
    box.fill(QUESTION)
    box.press("Enter")
    expect(dialog.locator(".m.b.err")).to_be_visible()
    assert len(rows(site)) == before  # refused server-side: nothing was answered or stored
    assert any("allowed origins" in w for w in warnings)
    # The browser itself cannot read the API from this origin (no CORS grant).
    outcome = page.evaluate(
        """async (url) => { try { await fetch(url); return "read"; }
                             catch (e) { return "blocked"; } }""",
        f"{site.url}/v1/widget/{widget_key}/config",
    )
    assert outcome == "blocked"
    context.close()


def test_keyboard_only(site: Site, shop: Pages, widget_key: str, browser: Any) -> None:
    url = shop.add("/keys", tag(site, widget_key))
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    launcher = page.get_by_role("button", name="Chat with us")
    expect(launcher).to_be_visible()
    page.keyboard.press("Tab")  # the page's own link first
    page.keyboard.press("Tab")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Type your question…")
    expect(box).to_be_focused()  # focus moves into the chat
    page.keyboard.type("My lamp keeps blinking red, what does it mean?")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Kestrel help")
    expect(dialog.locator(".m.b").last.locator(".t")).to_have_text(
        AnsweringBackend.ANSWERS["blinking"], timeout=30_000
    )
    helpful = dialog.get_by_role("button", name="Helpful", exact=True).last
    for _ in range(12):  # Shift+Tab back from the text box to the rating buttons
        page.keyboard.press("Shift+Tab")
        if helpful.evaluate("e => e.getRootNode().activeElement === e"):
            break
    expect(helpful).to_be_focused()
    page.keyboard.press("Space")
    expect(helpful).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Escape")  # closes, and focus returns to the launcher
    expect(dialog).to_be_hidden()
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    context.close()


def test_on_a_phone_the_panel_fills_the_screen(
    site: Site, shop: Pages, widget_key: str, browser: Any
) -> None:
    url = shop.add("/phone", tag(site, widget_key))
    context = browser.new_context(viewport={"width": 375, "height": 667}, has_touch=True)
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Chat with us").tap()
    dialog = page.get_by_role("dialog", name="Kestrel help")
    expect(dialog).to_be_visible()
    bounds = dialog.bounding_box()
    assert bounds is not None and bounds["width"] == 375 and bounds["height"] == 667
    expect(page.get_by_role("textbox", name="Type your question…")).to_be_in_viewport()
    context.close()


def test_the_service_unreachable_is_a_clear_state(
    site: Site, shop: Pages, widget_key: str, browser: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    url = shop.add("/down", tag(site, widget_key, api=dead))
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Chat with us").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("We can't reach the support service right now.")
    expect(alert.get_by_role("button", name="Try again")).to_be_visible()
    context.close()


def test_the_admin_page_gives_the_snippet_and_a_live_preview(
    site: Site, widget_key: str, browser: Any
) -> None:
    site.staff("owner@kestrel.test", role="admin")
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    log_in_with_keyboard(page, site.url, "owner@kestrel.test", "/review/bots/demo/widget")
    snippet = page.locator("#snippet")
    expect(snippet).to_contain_text(f'{site.url}/widget.js" data-key="{widget_key}"')
    preview = page.frame_locator("#widget-preview")
    expect(preview.get_by_role("dialog", name="Kestrel help")).to_be_visible(timeout=15_000)
    page.get_by_label("Title").fill("Lamp support")  # unsaved: the preview follows the form
    expect(preview.get_by_role("dialog", name="Lamp support")).to_be_visible(timeout=15_000)
    snap(page, "widget-admin")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("Saved")
    r = httpx.get(
        f"{site.url}/api/bots/demo/widget", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.json()["title"] == "Lamp support"
    # A key revoked here stops working at once.
    page.get_by_role("button", name="Create a publishable key").click()
    page.locator(f'tr[data-key-id] >> text="{widget_key}"').wait_for()
    row = page.locator("tr[data-key-id]", has_text=widget_key)
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("tr[data-key-id]", has_text=widget_key)).to_contain_text("revoked")
    r = httpx.get(
        f"{site.url}/v1/widget/{widget_key}/config", headers={"Origin": "http://127.0.0.1"}
    )
    assert r.status_code == 401
    context.close()
