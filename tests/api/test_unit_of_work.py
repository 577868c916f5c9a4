"""Side effects after commit: recorded changes reach the hook once the transaction commits, never
for one that rolls back; and through the runtime, a change made in one request is visible to the
next one at once (the cached access lookups are dropped on commit)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from api.db import transaction
from api.unit_of_work import ACCESS, JOBS, annotations_of, changed, install_after_commit, pending
from tests.api.conftest import Harness, chat_body


def test_changes_fire_once_after_commit_and_never_after_a_rollback() -> None:
    sessions = sessionmaker(create_engine("sqlite://"))
    heard: list[set[object]] = []
    install_after_commit(sessions, lambda changes: heard.append(set(changes)))
    with transaction(sessions) as session:
        changed(session, ACCESS, annotations_of("bot_1"))
        changed(session, ACCESS)
        assert pending(session) == {ACCESS, ("annotations", "bot_1")}
        assert heard == []  # nothing before the commit
    assert heard == [{ACCESS, ("annotations", "bot_1")}]
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        changed(session, JOBS)
        session.execute(text("select 1"))
        raise RuntimeError("the work failed")
    with transaction(sessions) as session:
        session.execute(text("select 1"))  # a later commit does not replay the rolled-back change
    assert heard == [{ACCESS, ("annotations", "bot_1")}]


def test_a_revoked_key_stops_working_on_the_very_next_request(harness: Harness) -> None:
    admin = harness.auth(harness.settings.admin_key.get_secret_value())  # type: ignore[union-attr]
    created = harness.client.post("/api/keys", headers=admin, json={"bots": ["acme"]}).json()
    key = harness.auth(created["key"])
    assert (
        harness.client.post("/v1/chat/completions", headers=key, json=chat_body()).status_code
        == 200
    )
    assert (
        harness.client.post(f"/api/keys/{created['id']}/revoke", headers=admin).status_code == 200
    )
    r = harness.client.post("/v1/chat/completions", headers=key, json=chat_body())
    assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"
