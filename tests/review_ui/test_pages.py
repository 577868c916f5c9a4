"""Staff pages over plain HTTP: login (with its CSRF token), sessions, CSRF on every form and htmx
post, safe redirects, security headers, the lock heartbeat and the vendored assets."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.services.access.staff_sessions import CSRF_HEADER, LOGIN_CSRF_COOKIE, SESSION_COOKIE
from api.settings import Settings
from tests.api.conftest import Harness
from tests.api.review_fixtures import PASSWORD, ask, queue, staff, stop_review_feed


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def log_in(client: TestClient, email: str, next_url: str = "/review/queue") -> str:
    """Log in through the form; the CSRF token of the page it lands on."""
    token = csrf_of(client.get("/review/login").text)
    r = client.post(
        "/review/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert (
        f"{SESSION_COOKIE}=" in cookie
        and "HttpOnly" in cookie
        and "SameSite=lax" in cookie
        and "Path=/" in cookie
    )
    return csrf_of(client.get(r.headers["location"]).text)


def test_login_logout_and_safe_redirects(harness: Harness) -> None:
    staff(harness, "rev@acme.test", bots=("acme",))
    c = harness.client
    r = c.get("/review/queue?bot=acme", follow_redirects=False)
    assert (
        r.status_code == 303
        and r.headers["location"] == "/review/login?next=%2Freview%2Fqueue%3Fbot%3Dacme"
    )
    page = c.get("/review/login")
    assert LOGIN_CSRF_COOKIE in page.headers["set-cookie"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    form = {"email": "rev@acme.test", "password": PASSWORD, "next": "/review/queue"}
    forged = c.post("/review/login", data={**form, "csrf_token": "forged"})  # login CSRF
    assert forged.status_code == 400 and "expired" in forged.text
    r = c.post(
        "/review/login",
        data={**form, "password": "wrong password", "csrf_token": csrf_of(forged.text)},
    )
    assert r.status_code == 401 and "Wrong email or password" in r.text
    token = csrf_of(c.get("/review/login").text)
    r = c.post(
        "/review/login",
        data={**form, "csrf_token": token, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/review/queue"  # never off-site after login
    csrf = csrf_of(c.get("/review/queue").text)
    assert (
        c.post("/review/logout", data={}, follow_redirects=False).status_code == 403
    )  # no token: refused
    r = c.post("/review/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
    assert c.get("/review/queue", follow_redirects=False).status_code == 303
    r = c.post(
        "/review/items/x/lock", headers={"HX-Request": "true"}
    )  # htmx is sent to the login page too
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/review/login")


def test_forms_and_htmx_posts_need_the_session_token(harness: Harness) -> None:
    stop_review_feed(harness, "acme")
    staff(harness, "rev@acme.test", bots=("acme",))
    item_id = queue(harness, ask(harness, "Where is my order?"))
    c = harness.client
    csrf = log_in(c, "rev@acme.test")
    r = c.get(f"/review/items/{item_id}")
    assert (
        r.status_code == 200 and "You hold this item" in r.text and "Where is my order?" in r.text
    )
    forged = c.post(
        f"/review/items/{item_id}/review", data={"action": "approved", "csrf_token": "nope"}
    )
    assert forged.status_code == 403 and "Form expired" in forged.text
    heartbeat = c.post(f"/review/items/{item_id}/lock", headers={CSRF_HEADER: csrf})
    assert heartbeat.status_code == 200 and 'hx-trigger="every 60s"' in heartbeat.text
    diff = c.post(
        f"/review/items/{item_id}/diff",
        data={"corrected_text": "Hello from a bot."},
        headers={CSRF_HEADER: csrf},
    )
    assert "<del>the</del><ins>a</ins>" in diff.text
    r = c.post(
        f"/review/items/{item_id}/review",
        data={"action": "rejected:unsafe", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/review/next?prev=")
    assert "Nothing left" in c.get(r.headers["location"]).text
    bad = c.post(
        f"/review/items/{item_id}/review", data={"action": "rejected:rude", "csrf_token": csrf}
    )
    assert bad.status_code == 400 and "needs a reason" in bad.text  # errors on pages are pages


def test_assets_are_vendored(harness: Harness) -> None:
    htmx = harness.client.get("/review/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:200] and len(htmx.text) > 40_000
    assert "data-key" in harness.client.get("/review/static/review.js").text
    assert harness.client.get("/review/static/review.css").status_code == 200


def test_admins_read_the_audit_log_and_reviewers_cannot(harness: Harness) -> None:
    staff(harness, "boss@acme.test", role="admin")
    staff(harness, "rev@acme.test", bots=("acme",))
    admin_key = {"Authorization": f"Bearer {harness.settings.admin_key.get_secret_value()}"}  # type: ignore[union-attr]
    c = harness.client
    release = c.post(
        "/api/bots/acme/releases", headers=admin_key, json={"mode": "retrieval"}
    ).json()
    assert (
        c.post(f"/api/bots/acme/releases/{release['id']}/attach", headers=admin_key).status_code
        == 200
    )

    entries = c.get(
        "/api/audit", headers=admin_key, params={"bot": "acme", "action": "release."}
    ).json()
    assert [e["action"] for e in entries] == ["release.attach", "release.create"]  # newest first
    assert entries[0]["after"] == {"candidate": True} and entries[0]["entity_id"] == release["id"]
    staff_entries = c.get("/api/audit", headers=admin_key, params={"entity": "staff_user"}).json()
    assert {e["action"] for e in staff_entries} >= {"staff.create"}
    assert c.get("/api/audit", headers=harness.auth()).status_code == 403  # a bot key is no admin

    log_in(c, "boss@acme.test")
    page = c.get("/review/audit", params={"bot": "acme"})
    assert page.status_code == 200 and "release.attach" in page.text and "Audit log" in page.text
    c.cookies.clear()
    log_in(c, "rev@acme.test")
    assert c.get("/review/audit").status_code == 403
    assert "Audit log" not in c.get("/review/queue").text  # not offered to reviewers


def test_admins_promote_from_the_metrics_page_only_with_the_decision_or_a_confirmation(
    harness: Harness,
) -> None:
    staff(harness, "boss@acme.test", role="admin")
    staff(harness, "rev@acme.test", bots=("acme",))
    admin_key = {"Authorization": f"Bearer {harness.settings.admin_key.get_secret_value()}"}  # type: ignore[union-attr]
    c = harness.client
    live_before = c.get("/api/bots/acme/releases", headers=admin_key).json()
    [old_live] = [r["id"] for r in live_before if r["status"] == "live"]
    release = c.post(
        "/api/bots/acme/releases", headers=admin_key, json={"mode": "retrieval"}
    ).json()
    c.post(f"/api/bots/acme/releases/{release['id']}/attach", headers=admin_key)

    token = log_in(c, "boss@acme.test")
    page = c.get("/review/metrics", params={"bot": "acme"}).text
    # No reviews yet: the card offers promotion only behind an explicit confirmation.
    assert f"/releases/{release['id']}/promote" in page
    assert 'name="force" value="true" required' in page
    url = f"/review/bots/acme/releases/{release['id']}/promote"
    refused = c.post(url, data={"csrf_token": token})
    assert refused.status_code == 409 and "promote it anyway" in refused.text
    assert [
        r["id"]
        for r in c.get("/api/bots/acme/releases", headers=admin_key).json()
        if r["status"] == "live"
    ] == [old_live]

    moved = c.post(url, data={"csrf_token": token, "force": "true"}, follow_redirects=False)
    assert moved.status_code == 303
    releases = c.get("/api/bots/acme/releases", headers=admin_key).json()
    assert [r["id"] for r in releases if r["status"] == "live"] == [release["id"]]
    [entry] = c.get("/api/audit", headers=admin_key, params={"action": "release.promote"}).json()
    assert entry["actor"] == "boss@acme.test" and entry["after"]["forced"] is True

    back = c.post("/review/bots/acme/rollback", data={"csrf_token": token}, follow_redirects=False)
    assert back.status_code == 303
    releases = c.get("/api/bots/acme/releases", headers=admin_key).json()
    assert [r["id"] for r in releases if r["status"] == "live"] == [old_live]
    assert [r["id"] for r in releases if r["candidate"]] == [release["id"]]  # shadows again

    c.cookies.clear()
    token = log_in(c, "rev@acme.test")
    assert f"/releases/{release['id']}/promote" not in c.get("/review/metrics?bot=acme").text
    assert c.post(url, data={"csrf_token": token, "force": "true"}).status_code == 403


def test_training_pages_show_runs_with_loss_chart_and_gate_and_admins_start_and_cancel(
    settings: Settings,
) -> None:
    from api.db import transaction
    from api.models import Bot, TrainingRun
    from tests.api.conftest import harness_with
    from tests.fakes import ScriptedBackend

    # No worker here: a queued run stays queued, so the page can show it and cancel it.
    with harness_with(settings.model_copy(update={"run_worker": False}), ScriptedBackend()) as h:
        staff(h, "boss@acme.test", role="admin")
        staff(h, "rev@acme.test", bots=("acme",))
        gate = {
            "passed": True,
            "against": "live release v1 (base model, rag)",
            "rows": 1,
            "reasons": ["similarity to the references: candidate 0.700 vs live 0.300"],
            "live": {"similarity": 0.3, "cosine": 0.4, "rouge_l": 0.2, "refusal_accuracy": None},
            "candidate": {
                "similarity": 0.7,
                "cosine": 0.8,
                "rouge_l": 0.6,
                "refusal_accuracy": 1.0,
            },
            "questions": [
                {
                    "question": "How long does the battery last?",
                    "reference": "41 hours.",
                    "live": "It depends.",
                    "candidate": "41 hours on warm.",
                    "live_cosine": 0.3,
                    "candidate_cosine": 0.9,
                    "live_rouge_l": 0.0,
                    "candidate_rouge_l": 0.5,
                    "should_refuse": False,
                    "live_refused": False,
                    "candidate_refused": False,
                }
            ],
        }
        with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
            bot = session.query(Bot).filter_by(slug="acme").one()
            session.add(
                TrainingRun(
                    id="run_done",
                    bot_id=bot.id,
                    name="acme-v1",
                    method="lora",
                    status="succeeded",
                    config={},
                    snapshot={"dataset": "learning", "snapshot_version": 1, "train_rows": 9},
                    metrics={"steps": 3, "tokens_per_s": 180.0},
                    losses=[3.1, 1.2, 0.4],
                    gate=gate,
                )
            )
        c = h.client
        log_in(c, "rev@acme.test", "/review/training")
        listing = c.get("/review/training").text
        assert "acme-v1" in listing and "passed" in listing
        assert (
            'action="/review/bots/acme/training-runs"' not in listing
        )  # reviewers do not start runs
        page = c.get("/review/bots/acme/training-runs/run_done").text
        assert '<svg class="chart"' in page and "<polyline" in page  # the loss chart
        assert 'id="gate-verdict"' in page and "How long does the battery last?" in page
        assert "41 hours on warm." in page and "0.700" in page

        c.post("/review/logout", data={"csrf_token": csrf_of(page)})
        token = log_in(c, "boss@acme.test", "/review/training")
        r = c.post(
            "/review/bots/acme/training-runs",
            data={"csrf_token": token, "dataset": "learning", "method": "lora", "max_steps": "2"},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        run_page = c.get(r.headers["location"]).text
        assert 'id="run-status">queued' in run_page and 'http-equiv="refresh"' in run_page
        run_id = r.headers["location"].rsplit("/", 1)[-1]
        r = c.post(
            f"/review/bots/acme/training-runs/{run_id}/cancel",
            data={"csrf_token": csrf_of(run_page)},
        )
        assert 'id="run-status">cancelled' in r.text
