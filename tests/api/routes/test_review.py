"""The review JSON API: staff sessions (with CSRF) or admin keys, the same operations as the UI,
tenant isolation, and every error in the envelope."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.services.access.staff_sessions import CSRF_HEADER, SESSION_COOKIE
from tests.api.conftest import Harness
from tests.api.review_fixtures import PASSWORD, ask, item, queue, staff, stop_review_feed
from tests.api.routes.test_admin import admin
from tests.api.routes.test_chat import assert_envelope


def log_in(client: TestClient, email: str) -> dict[str, str]:
    """Log in on `client` (its cookie jar keeps the session); the CSRF header for unsafe calls."""
    r = client.post("/api/review/session", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert (
        "httponly" in r.headers["set-cookie"].lower()
        and "samesite=lax" in r.headers["set-cookie"].lower()
    )
    return {CSRF_HEADER: r.json()["csrf_token"]}


def test_authentication_and_csrf(harness: Harness) -> None:
    staff(harness, "rev@acme.test", bots=("acme",))
    c = harness.client
    assert_envelope(c.get("/api/review/items"), 401, "not_logged_in")
    assert_envelope(
        c.get("/api/review/items", headers=harness.auth()), 403, "forbidden"
    )  # a bot key
    assert_envelope(
        c.post("/api/review/session", json={"email": "rev@acme.test", "password": "nope"}),
        401,
        "invalid_credentials",
    )
    assert_envelope(
        c.post("/api/review/session", json={"email": "rev@acme.test"}), 400, param="password"
    )
    csrf = log_in(c, "rev@acme.test")
    me = c.get("/api/review/me").json()
    assert (me["email"], me["role"], me["bots"]) == ("rev@acme.test", "reviewer", ["acme"])
    assert c.get("/api/review/items").status_code == 200
    assert_envelope(c.post("/api/review/next"), 403, "csrf_failed")
    assert_envelope(c.post("/api/review/next", headers={CSRF_HEADER: "forged"}), 403, "csrf_failed")
    assert c.post("/api/review/next", headers=csrf).json() == {"item": None}
    tampered = c.cookies[SESSION_COOKIE][:-3] + "abc"
    c.cookies.clear()
    c.cookies.set(SESSION_COOKIE, tampered)
    assert_envelope(c.get("/api/review/items"), 401, "not_logged_in")
    csrf = log_in(c, "rev@acme.test")
    assert c.delete("/api/review/session", headers=csrf).status_code == 204
    assert_envelope(c.get("/api/review/items"), 401, "not_logged_in")
    me = c.get("/api/review/me", headers=admin(harness)).json()
    assert me["role"] == "admin" and me["csrf_token"] is None and "globex" in me["bots"]


def test_review_flow_for_an_integration(harness: Harness) -> None:
    stop_review_feed(harness, "acme")
    first = queue(harness, ask(harness, "How do I reset my password?"), group="pw", priority=2.0)
    second = queue(harness, ask(harness, "how do I reset my password"), group="pw")
    c, key = harness.client, admin(harness)
    listed = c.get("/api/review/items?bot=acme", headers=key).json()
    assert [(i["id"], i["group_size"]) for i in listed["items"]] == [(first, 2)]
    assert listed["counts"]["pending"] == {"items": 2, "groups": 1}
    nxt = c.post("/api/review/next?bot=acme", headers=key).json()["item"]
    assert (
        nxt["id"] == first
        and nxt["lock"]["mine"]
        and nxt["question"] == "How do I reset my password?"
    )
    assert nxt["conversation"] == [{"role": "user", "content": "How do I reset my password?"}]
    assert nxt["reviewed_answer"] == nxt["live_answer"] == "Hello from the bot."
    r = c.post(
        f"/api/review/items/{first}/review",
        headers=key,
        json={
            "verdict": "corrected",
            "corrected_text": "Hello from the better bot.",
            "apply_to_group": True,
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "corrected" and out["settled"] == [second] and out["annotation_id"]
    assert out["diff"] == [
        {"op": "equal", "text": "Hello from the "},
        {"op": "insert", "text": "better "},
        {"op": "equal", "text": "bot."},
    ]
    assert out["review"]["edit_distance"] > 0
    detail = c.get(f"/api/review/items/{first}", headers=key).json()
    assert [r["verdict"] for r in detail["reviews"]] == ["corrected"] and detail["lock"] is None
    metrics = c.get("/api/review/bots/acme/metrics?days=7", headers=key).json()
    [live] = metrics["releases"]
    assert (live["reviewed"], live["corrected"], live["corrected_share"]) == (1, 1, 1.0)
    assert live["decision"]["action"] == "collecting" and len(live["series"]) == 7
    assert metrics["thresholds"]["min_reviews"] == {
        "value": 20,
        "default": 20,
        "description": "Reviews of a release needed before a decision.",
    }
    r = c.patch("/api/review/bots/acme/thresholds", headers=key, json={"min_reviews": 1})
    assert r.status_code == 200 and r.json()["min_reviews"]["value"] == 1
    metrics = c.get("/api/review/bots/acme/metrics", headers=key).json()
    assert metrics["releases"][0]["decision"]["action"] == "redo"  # 100 % modified
    assert c.delete(f"/api/review/items/{first}/lock", headers=key).status_code == 204


def test_reviewers_of_one_bot_reach_nothing_of_another(harness: Harness) -> None:
    stop_review_feed(harness, "acme", "globex")
    staff(harness, "rev@acme.test", bots=("acme",))
    theirs = queue(harness, ask(harness, "Globex question?", bot="globex", key=harness.other_key))
    mine = queue(harness, ask(harness, "Acme question?"))
    c = harness.client
    csrf = log_in(c, "rev@acme.test")
    assert [i["id"] for i in c.get("/api/review/items").json()["items"]] == [mine]
    assert_envelope(c.get("/api/review/items?bot=globex"), 403, "bot_not_allowed", "bot")
    assert_envelope(c.get(f"/api/review/items/{theirs}"), 404, "not_found", "item_id")
    assert_envelope(c.post(f"/api/review/items/{theirs}/lock", headers=csrf), 404)
    assert_envelope(
        c.post(f"/api/review/items/{theirs}/review", headers=csrf, json={"verdict": "approved"}),
        404,
    )
    assert_envelope(c.get("/api/review/bots/globex/metrics"), 403, "bot_not_allowed")
    assert_envelope(c.get("/api/review/bots/globex/annotations"), 403, "bot_not_allowed")
    assert_envelope(
        c.patch("/api/review/bots/acme/thresholds", headers=csrf, json={"min_reviews": 1}),
        403,
        "admin_only",
    )
    assert [b["slug"] for b in c.get("/api/review/bots").json()] == ["acme"]
    assert item(harness, theirs).status == "pending"


def test_errors_use_the_envelope(harness: Harness) -> None:
    stop_review_feed(harness, "acme")
    staff(harness, "alice@acme.test", bots=("acme",))
    item_id = queue(harness, ask(harness, "Where is my order?"))
    c, key = harness.client, admin(harness)
    review = f"/api/review/items/{item_id}/review"
    assert_envelope(c.post(review, headers=key, json={"verdict": "maybe"}), 400, param="verdict")
    assert_envelope(c.post(review, headers=key, json={"verdict": "rejected"}), 400, param="reason")
    assert_envelope(
        c.post(review, headers=key, json={"verdict": "corrected", "corrected_text": " "}),
        400,
        param="corrected_text",
    )
    assert_envelope(c.post(review, headers=key, json={}), 400, "invalid_value", "verdict")
    assert_envelope(
        c.post(review, headers={**key, "Content-Type": "application/json"}, content=b"{nope"), 400
    )
    assert_envelope(c.get("/api/review/items?status=done", headers=key), 400, param="status")
    assert_envelope(c.get("/api/review/items?bot=nobody", headers=key), 404, param="bot")
    assert_envelope(c.get("/api/review/items/rvw_nope", headers=key), 404, "not_found")
    assert_envelope(
        c.patch("/api/review/bots/acme/thresholds", headers=key, json={"promote_threshold": 2}), 400
    )
    assert_envelope(
        c.patch(
            "/api/review/bots/acme/thresholds",
            headers=key,
            json={"promote_threshold": 0.9, "retrain_threshold": 0.5},
        ),
        400,
        param="promote_threshold",
    )
    assert_envelope(
        c.patch("/api/review/annotations/ann_nope", headers=key, json={"enabled": False}), 404
    )
    alice = TestClient(
        c.app
    )  # another reviewer (own cookies; the app is already started) holds the item
    csrf = log_in(alice, "alice@acme.test")
    assert alice.post(f"/api/review/items/{item_id}/lock", headers=csrf).status_code == 200
    error = assert_envelope(
        c.post(review, headers=key, json={"verdict": "approved"}), 409, "item_locked", "item_id"
    )
    assert "alice@acme.test" in error["message"]
    assert_envelope(c.post(f"/api/review/items/{item_id}/lock", headers=key), 409, "item_locked")
    for _ in range(5):
        c.post(
            "/api/review/session", json={"email": "alice@acme.test", "password": "wrong password"}
        )
    assert_envelope(
        c.post("/api/review/session", json={"email": "alice@acme.test", "password": PASSWORD}),
        429,
        "too_many_login_attempts",
    )
