"""Admin JSON API: bots, keys, exchanges; only admin keys get in."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import select

from api.db import transaction
from api.models import ApiKey
from api.services.access.keys import hash_secret
from tests.api.conftest import Harness, chat_body
from tests.api.routes.test_chat import assert_envelope


def admin(h: Harness) -> dict[str, str]:
    return h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]


def test_admin_creates_a_bot_and_a_key_that_chats(harness: Harness) -> None:
    r = harness.client.post(
        "/api/bots",
        headers=admin(harness),
        json={
            "slug": "umbrella",
            "name": "Umbrella",
            "system_prompt": "Be brief.",
            "scope": "TPS reports",
            "refusal_message": "Only TPS reports.",
            "temperature": 0.1,
            "max_tokens": 32,
        },
    )
    assert r.status_code == 201, r.text
    bot = r.json()
    assert bot["slug"] == "umbrella" and bot["live_release_id"].startswith("rel_")

    r = harness.client.post(
        "/api/keys", headers=admin(harness), json={"bots": ["umbrella"], "name": "web"}
    )
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith("sd-") and created["bots"] == ["umbrella"]

    # Only the hash is stored.
    with transaction(harness.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        row = session.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
        assert row is not None and row.secret_hash == hash_secret(created["key"])
        assert created["key"] not in (row.prefix + row.secret_hash + row.name)
        assert row.last_used_at is None

    question = {"role": "user", "content": "Where do I send my TPS report when it is done?"}
    r = harness.client.post(
        "/v1/chat/completions",
        headers=harness.auth(created["key"]),
        json={**chat_body(), "model": "umbrella", "messages": [question]},
    )
    assert r.status_code == 200
    messages, params, _ = harness.backend.calls[-1]
    assert (
        messages[0]["content"] == "Be brief."
        and params.temperature == 0.1
        and params.max_tokens == 32
    )

    listed = {k["id"]: k for k in harness.client.get("/api/keys", headers=admin(harness)).json()}
    assert listed[created["id"]]["last_used_at"] is not None
    assert "key" not in listed[created["id"]]


def test_admin_updates_and_deletes_a_bot(harness: Harness) -> None:
    r = harness.client.patch(
        "/api/bots/acme", headers=admin(harness), json={"system_prompt": "New prompt."}
    )
    assert r.json()["system_prompt"] == "New prompt."
    harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    assert harness.backend.calls[-1][0][0]["content"] == "New prompt."
    assert harness.client.delete("/api/bots/acme", headers=admin(harness)).status_code == 204
    assert_envelope(harness.client.get("/api/bots/acme", headers=admin(harness)), 404)
    assert harness.exchange_count() == 0  # the bot's exchanges went with it


def test_bot_and_key_changes_are_audited_without_secrets(harness: Harness) -> None:
    bot = harness.client.post(
        "/api/bots", headers=admin(harness), json={"slug": "umbrella", "name": "Umbrella"}
    ).json()
    harness.client.patch(
        "/api/bots/umbrella", headers=admin(harness), json={"temperature": 0.2, "name": "Umbrella"}
    )
    key = harness.client.post(
        "/api/keys", headers=admin(harness), json={"bots": ["umbrella"], "name": "web"}
    ).json()
    harness.client.post(f"/api/keys/{key['id']}/revoke", headers=admin(harness))
    harness.client.post(f"/api/keys/{key['id']}/revoke", headers=admin(harness))  # no-op
    harness.client.delete("/api/bots/umbrella", headers=admin(harness))

    def entries(**params: str) -> list[dict[str, object]]:
        r = harness.client.get("/api/audit", headers=admin(harness), params=params)
        assert r.status_code == 200, r.text
        return list(reversed(r.json()))  # oldest first

    on_bot = entries(entity="bot", entity_id=bot["id"])
    assert [e["action"] for e in on_bot] == ["bot.create", "bot.update", "bot.delete"]
    assert {e["actor"] for e in on_bot} == {"bootstrap admin"}
    created, updated, deleted = on_bot
    assert created["after"]["slug"] == "umbrella" and created["before"] is None  # type: ignore[index]
    # An update records only what changed: the unchanged name is not there.
    assert updated["before"] == {"temperature": 0.7} and updated["after"] == {"temperature": 0.2}
    assert deleted["before"]["temperature"] == 0.2 and deleted["after"] is None  # type: ignore[index]

    on_key = entries(entity="api_key", entity_id=key["id"])
    assert [e["action"] for e in on_key] == ["key.create", "key.revoke"]
    assert on_key[0]["after"] == {
        "name": "web",
        "prefix": key["prefix"],
        "admin": False,
        "kind": "secret",
        "bots": ["umbrella"],
        "revoked": False,
    }
    assert on_key[1]["after"]["revoked"] is True  # type: ignore[index]
    assert key["key"] not in json.dumps(entries())  # the secret is never logged
    by_admin = entries(action="key.", actor="bootstrap admin")
    assert [e["action"] for e in by_admin] == ["key.create", "key.revoke"]


def test_admin_validation_and_conflicts(harness: Harness) -> None:
    assert_envelope(
        harness.client.post(
            "/api/bots", headers=admin(harness), json={"slug": "Bad Slug", "name": "x"}
        ),
        400,
        param="slug",
    )
    assert_envelope(
        harness.client.post(
            "/api/bots", headers=admin(harness), json={"slug": "acme", "name": "x"}
        ),
        409,
        "conflict",
        "slug",
    )
    assert_envelope(
        harness.client.post("/api/keys", headers=admin(harness), json={"bots": []}),
        400,
        param="bots",
    )
    assert_envelope(
        harness.client.post("/api/keys", headers=admin(harness), json={"bots": ["nobody"]}), 404
    )
    assert_envelope(harness.client.post("/api/keys/key_nope/revoke", headers=admin(harness)), 404)


def test_bot_keys_cannot_use_the_admin_api(harness: Harness) -> None:
    for method, path in [("GET", "/api/bots"), ("POST", "/api/keys"), ("GET", "/api/exchanges")]:
        r = harness.client.request(method, path, headers=harness.auth(), json={})
        assert_envelope(r, 403, "forbidden")
    assert_envelope(harness.client.get("/api/bots"), 401)


def test_created_admin_key_works(harness: Harness) -> None:
    created = harness.client.post("/api/keys", headers=admin(harness), json={"admin": True}).json()
    assert harness.client.get("/api/bots", headers=harness.auth(created["key"])).status_code == 200


def test_exchanges_are_listed_by_bot_and_conversation(harness: Harness) -> None:
    harness.client.post(
        "/v1/chat/completions",
        json=chat_body(),
        headers={**harness.auth(), "X-Conversation-Id": "c1"},
    )
    harness.client.post(
        "/v1/chat/completions", json={**chat_body(), "model": "initech"}, headers=harness.auth()
    )
    rows = harness.client.get("/api/exchanges?bot=acme", headers=admin(harness)).json()
    assert [r["conversation_id"] for r in rows] == ["c1"]
    assert rows[0]["answer"] == "Hello from the bot." and rows[0]["status"] == "completed"
    assert len(harness.client.get("/api/exchanges", headers=admin(harness)).json()) == 2
    one = harness.client.get(f"/api/exchanges/{rows[0]['id']}", headers=admin(harness)).json()
    assert one["messages"] == [{"role": "user", "content": "How do I reset my password?"}]


def test_bot_policy_is_validated_and_applied(harness: Harness) -> None:
    r = harness.client.patch(
        "/api/bots/acme", headers=admin(harness), json={"policy": {"review_enabled": False}}
    )
    assert r.status_code == 200 and r.json()["policy"]["review_enabled"] is False
    assert r.json()["policy"]["promote_threshold"] == 0.2  # defaults kept for the rest
    assert_envelope(
        harness.client.patch(
            "/api/bots/acme", headers=admin(harness), json={"policy": {"review_sample_rate": 3}}
        ),
        400,
    )
    harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    from api.models import Job

    with harness.client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        assert session.query(Job).count() == 0  # review off: no review-feed job


def test_exchanges_show_everything_stored_filter_and_export(harness: Harness) -> None:
    h = harness
    c = h.client
    for question in ("How do I reset my password?", "Where is my parcel?"):
        assert (
            c.post("/v1/chat/completions", json=chat_body(question), headers=h.auth()).status_code
            == 200
        )
    first = h.exchanges()[0].id
    c.post(
        f"/v1/exchanges/{first}/feedback",
        json={"rating": "down", "comment": "Too vague."},
        headers=h.auth(),
    )
    listed = c.get("/api/exchanges", headers=admin(h), params={"bot": "acme"}).json()
    assert len(listed) == 2
    row = next(r for r in listed if r["id"] == first)
    for field in (
        "citations",
        "passages",
        "guard",
        "flags",
        "annotation_id",
        "feedback",
        "feedback_comment",
        "api_key_id",
    ):
        assert field in row
    assert row["feedback"] == -1 and row["feedback_comment"] == "Too vague."

    def ids(**params: str) -> list[str]:
        r = c.get("/api/exchanges", headers=admin(h), params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()]

    assert ids(rating="down") == [first]
    assert ids(rating="none") == [x["id"] for x in listed if x["id"] != first]
    assert ids(text="PARCEL") == [x["id"] for x in listed if x["id"] != first]
    assert ids(status="refused") == []
    assert ids(since="2999-01-01T00:00:00Z") == []
    assert len(ids(limit="1")) == 1 and ids(limit="1", offset="1") != ids(limit="1")
    assert c.get("/api/exchanges", headers=admin(h), params={"rating": "meh"}).status_code == 400

    jsonl = c.get("/api/exchanges/export", headers=admin(h), params={"bot": "acme"})
    assert jsonl.status_code == 200 and jsonl.headers["content-type"].startswith(
        "application/x-ndjson"
    )
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {x["id"] for x in lines} == {x["id"] for x in listed}
    assert next(x for x in lines if x["id"] == first)["feedback_comment"] == "Too vague."
    table = c.get(
        "/api/exchanges/export", headers=admin(h), params={"format": "csv", "rating": "down"}
    )
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["id"] for r in rows] == [first]
    assert rows[0]["question"] == "How do I reset my password?" and rows[0]["rating"] == "down"
    assert c.get("/api/exchanges/export", params={"format": "csv"}).status_code == 401
