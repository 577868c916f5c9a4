"""The review UI in real headless Chromium against a real server: log in, work the queue with the
keyboard only, edit and reject answers, watch the metrics change; locks between reviewers; tenant
isolation by page and by API; admins tuning thresholds and switching annotations off.

Set REVIEW_UI_SCREENSHOTS=/some/dir to keep screenshots of the pages."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.review_ui.conftest import ADMIN_KEY, CANDIDATE_MARK, PASSWORD, Site

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEMO_QUESTIONS = (
    "How do I reset my Glow lamp?",
    "how do I reset my glow lamp",
    "Is the Perch hub covered by the warranty?",
    "My lamp keeps blinking red, what does it mean?",
)


def snap(page: Any, name: str) -> None:
    folder = os.environ.get("REVIEW_UI_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"review-{name}.png"), full_page=True)


def log_in_with_keyboard(page: Any, url: str, email: str, path: str = "/review/queue") -> None:
    page.goto(url + path)
    assert "/review/login" in page.url
    page.wait_for_function(
        "document.activeElement && document.activeElement.name === 'email'"
    )  # autofocus
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(path.split("?")[0])))


def key(page: Any, name: str, *, navigates: bool = True) -> None:
    """Press a key; wait for the page it leads to."""
    if navigates:
        with page.expect_navigation():
            page.keyboard.press(name)
    else:
        page.keyboard.press(name)


def stat(page: Any, name: str, release: str | None = None) -> str:
    scope = f'tr[data-release="{release}"] ' if release else ""
    return page.locator(f'{scope}[data-stat="{name}"]').first.inner_text().strip()


def test_a_reviewer_works_the_queue_with_the_keyboard_only(site: Site, browser: Any) -> None:
    chat_key = site.bot(
        "demo", candidate_prompt=f"{CANDIDATE_MARK} You are Kestrel's new assistant."
    )
    site.staff("rev@kestrel.test", bots=("demo",))
    site.ask(chat_key, "demo", *DEMO_QUESTIONS)
    site.wait_for_items("demo", 4)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()

    log_in_with_keyboard(page, site.url, "rev@kestrel.test", "/review/metrics?bot=demo")
    candidate = page.locator(".decision").first.get_attribute("data-release")
    assert stat(page, "reviewed", candidate) == "0"
    assert page.locator(".decision").first.locator(".verdict").inner_text().lower() == "collecting"
    key(page, "q")
    assert page.locator('[data-status="pending"]').inner_text() == "4"
    assert page.locator("tr[data-row]").count() == 3  # the two reset questions are one group
    assert page.locator(".chip.group", has_text="×2").count() == 1
    for shortcut in ("n", "j / k", "m"):
        assert page.locator("#shortcuts kbd", has_text=shortcut).count() >= 1
    snap(page, "queue")

    key(page, "n")  # the most urgent item, locked for this reviewer
    assert "/review/items/" in page.url
    assert page.locator("#lock").inner_text().startswith("You hold this item")
    for shortcut in ("a", "e", "r", "s", "j / k", "Ctrl+Enter"):
        assert page.locator("#shortcuts kbd", has_text=shortcut).count() >= 1
    assert page.locator("#reviewed-answer").inner_text().startswith("Candidate says:")
    assert page.locator(".answer.live").count() == 1  # the live answer shown beside the candidate's
    assert page.locator("details.passage").count() >= 1  # retrieved passages with their sources
    assert re.search(
        r"\.(md|pdf|html|json)",
        page.locator("details.passage .src").first.inner_text()
        + page.locator("details.passage").first.inner_text(),
    )
    snap(page, "item")
    first = page.url
    toggle = page.locator(".group-toggle input")
    assert toggle.count() == 1 and not toggle.is_checked()  # settling the group is a choice
    key(page, "g", navigates=False)  # ... made here, deliberately
    assert toggle.is_checked()
    key(page, "a")  # approve
    assert page.url != first
    assert "Previous item approved" in page.locator(".notice").inner_text()

    key(page, "e", navigates=False)  # edit: the textarea opens with the answer, focused
    editor = page.locator("#corrected-text")
    assert editor.is_visible() and editor.evaluate("el => el === document.activeElement")
    original = editor.input_value()
    assert original.startswith("Candidate says:")
    page.keyboard.press("Control+a")
    page.keyboard.type("Kestrel support: " + original.removeprefix("Candidate says: "))
    expect(page.locator("#diff-preview ins")).to_have_text("Kestrel support")  # follows the typing
    expect(page.locator("#diff-preview del")).to_have_text("Candidate says")
    snap(page, "edit")
    second = page.url
    key(page, "Control+Enter")  # save the edit
    assert page.url != second and "Previous item corrected" in page.locator(".notice").inner_text()

    key(page, "k")  # back to the corrected item: its review and the diff are there
    assert page.locator("#item-status").inner_text().lower() == "corrected"
    assert "Kestrel support" in page.locator("#correction-diff ins").inner_text()
    key(page, "j")  # on from a reviewed item: the next pending one

    key(page, "r", navigates=False)  # reject: the reasons appear, the first one focused
    assert page.locator("#reject-panel").is_visible()
    assert page.locator("input[name=reject_reason]").first.evaluate(
        "el => el === document.activeElement"
    )
    key(page, "2", navigates=False)  # picks "should refuse" and moves on to the comment
    assert page.locator("input[name=reject_reason][value=should_refuse]").is_checked()
    assert page.locator("#reject-comment").evaluate("el => el === document.activeElement")
    page.keyboard.type("It should say this is out of scope.")
    key(page, "Control+Enter")  # saves the rejection with its reason and comment
    assert (
        "/review/queue" in page.url
        and "Nothing left to review" in page.locator(".notice").inner_text()
    )
    assert page.locator('[data-status="pending"]').inner_text() == "0"
    assert (
        page.locator('[data-status="approved"]').inner_text() == "2"
    )  # the group went with its verdict

    key(page, "m")  # metrics changed
    assert stat(page, "reviewed", candidate) == "3"
    assert stat(page, "approved", candidate).startswith("33%")
    assert stat(page, "corrected", candidate).startswith("33%")
    assert stat(page, "rejected", candidate).startswith("33%")
    assert float(stat(page, "edit_distance", candidate)) > 0
    assert page.locator("svg.chart circle.dot").count() == 1
    assert page.locator("#annotation-summary [data-stat=annotations_enabled]").inner_text() == "2"
    snap(page, "metrics")
    context.close()


def test_two_reviewers_never_hold_the_same_item(site: Site, browser: Any) -> None:
    chat_key = site.bot("east")
    site.staff("one@east.test", bots=("east",))
    site.staff("two@east.test", bots=("east",))
    site.ask(chat_key, "east", "Where is my parcel?", "Can I pay by invoice?")
    site.wait_for_items("east", 2)
    one, two = browser.new_context(), browser.new_context()
    first, second = one.new_page(), two.new_page()
    log_in_with_keyboard(first, site.url, "one@east.test")
    log_in_with_keyboard(second, site.url, "two@east.test")
    key(first, "n")
    held = first.url
    second.goto(held)
    assert "one@east.test is reviewing this item" in second.locator("#lock").inner_text()
    assert second.locator("button[data-key=a]").is_disabled()
    snap(second, "locked")
    second.keyboard.press("a")  # a disabled action does nothing
    second.wait_for_timeout(300)
    assert second.url == held
    second.goto(site.url + "/review/queue?bot=east")
    assert second.locator(".chip.locked", has_text="one@east.test").count() == 1
    key(second, "n")  # the next item nobody holds
    assert second.url.split("?")[0] != held.split("?")[0]
    key(first, "q")  # leaving gives the item back at once
    second.goto(held)
    assert second.locator("#lock").inner_text().startswith("You hold this item")
    one.close()
    two.close()


def test_a_reviewer_of_one_bot_cannot_open_another_bots_items(site: Site, browser: Any) -> None:
    north, south = site.bot("north"), site.bot("south")
    site.staff("rev@north.test", bots=("north",))
    site.ask(north, "north", "Do you deliver on Sundays?")
    site.ask(south, "south", "Is the south store open?")
    site.wait_for_items("north", 1)
    [theirs] = site.wait_for_items("south", 1)
    context = browser.new_context()
    page = context.new_page()
    log_in_with_keyboard(page, site.url, "rev@north.test")
    assert "Sundays" in page.locator("table.queue").inner_text()
    assert "south store" not in page.locator("table.queue").inner_text()
    assert [o.inner_text() for o in page.locator("select[name=bot] option").all()] == [
        "All my bots",
        "north",
    ]
    response = page.goto(f"{site.url}/review/items/{theirs}")
    assert response.status == 404 and "Not found" in page.locator("h1").inner_text()
    response = page.goto(f"{site.url}/review/queue?bot=south")
    assert response.status == 403
    response = page.goto(f"{site.url}/review/metrics?bot=south")
    assert response.status == 403
    api = page.request.get(f"{site.url}/api/review/items/{theirs}")  # the browser's own session
    assert api.status == 404 and api.json()["error"]["code"] == "not_found"
    api = page.request.get(f"{site.url}/api/review/items?bot=south")
    assert api.status == 403 and api.json()["error"]["code"] == "bot_not_allowed"
    api = page.request.post(
        f"{site.url}/api/review/items/{theirs}/review", data={"verdict": "approved"}
    )
    assert api.status == 403 and api.json()["error"]["code"] == "csrf_failed"  # and no token either
    context.close()


def test_an_admin_tunes_thresholds_and_switches_an_annotation_off(site: Site, browser: Any) -> None:
    chat_key = site.bot("west")
    site.staff("boss@shadowdesk.test", "admin")
    site.ask(chat_key, "west", "Can I change my delivery address?")
    [item_id] = site.wait_for_items("west", 1)
    import httpx

    r = httpx.post(
        f"{site.url}/api/review/items/{item_id}/review",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"verdict": "approved"},
    )
    assert r.status_code == 200, r.text
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    log_in_with_keyboard(page, site.url, "boss@shadowdesk.test", "/review/metrics?bot=west")
    assert page.locator(".decision .verdict").first.inner_text().lower() == "collecting"
    page.fill("input[name=min_reviews]", "1")
    page.fill("input[name=promote_threshold]", "10")
    with page.expect_navigation():
        page.click("text=Save thresholds")
    assert (
        page.locator(".decision .verdict").first.inner_text().lower() == "keep"
    )  # live release, 0 % modified
    assert page.locator("input[name=promote_threshold]").input_value() == "10.0"
    page.fill("input[name=promote_threshold]", "80")  # above retrain (50 %): refused with a message
    page.click("text=Save thresholds")
    assert "must not exceed" in page.locator("#thresholds .alert").inner_text()
    row = page.locator("table.annotations tbody tr").first
    assert "delivery address" in row.inner_text()
    row.locator("button", has_text="Switch off").click()  # htmx swaps the row in place
    page.locator("table.annotations tr.disabled button", has_text="Switch on").wait_for()
    page.reload()
    assert page.locator("#annotation-summary [data-stat=annotations_enabled]").inner_text() == "0"
    snap(page, "metrics-admin")
    context.close()


def test_a_reviewer_works_a_generated_dataset_with_the_keyboard(site: Site, browser: Any) -> None:
    import httpx

    site.bot("demo")
    site.staff("data@kestrel.test", bots=("demo",))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=site.url, headers=admin, timeout=30) as api:
        assert api.post("/api/bots/demo/datasets", json={"name": "studio"}).status_code == 201
        job = api.post(
            "/api/bots/demo/datasets/studio/generate",
            json={"styles": ["alpaca"], "max_chunks": 3, "pairs_per_chunk": 1},
        ).json()
        deadline = time.monotonic() + 60
        while api.get(f"/api/jobs/{job['id']}").json()["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the generation job did not finish"
            time.sleep(0.2)
        generated = api.get(
            "/api/bots/demo/datasets/studio/rows",
            params={"source": "generated", "category": "open_qa"},
        ).json()
        assert generated["total"] == 3

        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        path = "/review/bots/demo/datasets/studio?status=pending&category=open_qa"
        log_in_with_keyboard(page, site.url, "data@kestrel.test", path)
        assert page.locator("tr[data-row]").count() == 3
        page.keyboard.press("j")
        key(page, "o")
        # The row beside the chunk it was written from.
        first = generated["rows"][0]
        expect(page.locator("#row-instruction")).to_have_text(first["instruction"])
        expect(page.locator("#source-chunk")).to_contain_text(first["output"])
        snap(page, "dataset-row")
        key(page, "a")  # approve: on to the next row of the selection
        expect(page.locator("#row-instruction")).to_have_text(generated["rows"][1]["instruction"])
        key(page, "e", navigates=False)
        editor = page.locator("#row-edit")
        assert editor.evaluate("el => el === document.activeElement")
        editor.fill("Reviewed: " + generated["rows"][1]["output"])
        key(page, "Control+Enter")
        expect(page.locator("#row-instruction")).to_have_text(generated["rows"][2]["instruction"])
        key(page, "x")  # flag invalid: the last row, so back to the dataset
        assert page.url.endswith(path)
        expect(page.locator("tr[data-row]")).to_have_count(0)

        rows = {
            r["id"]: r
            for r in api.get(
                "/api/bots/demo/datasets/studio/rows", params={"category": "open_qa"}
            ).json()["rows"]
        }
        ids = [r["id"] for r in generated["rows"]]
        assert [rows[i]["status"] for i in ids] == ["approved", "edited", "rejected"]
        assert rows[ids[1]]["output"].startswith("Reviewed: ")
        assert rows[ids[1]]["original_output"] == generated["rows"][1]["output"]

        # Bulk: every pending refusal row approved in one go.
        page.goto(site.url + "/review/bots/demo/datasets/studio?status=pending&category=refusal")
        pending = page.locator("tr[data-row]").count()
        assert pending >= 5
        with page.expect_navigation():
            page.locator("#bulk button[value=approve]").click()
        expect(page.locator("#bulk-done")).to_have_text(f"{pending} rows changed.")
        counts = api.get("/api/bots/demo/datasets/studio").json()["rows"]
        assert counts["approved"] == pending + 1 and "pending" not in counts
        context.close()
