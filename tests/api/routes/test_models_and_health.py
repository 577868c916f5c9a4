"""/v1/models, /healthz, /readyz and /metrics."""

from __future__ import annotations

from tests.api.conftest import Harness, chat_body
from tests.api.routes.test_chat import assert_envelope


def test_models_lists_only_the_bots_the_key_may_use(harness: Harness) -> None:
    r = harness.client.get("/v1/models", headers=harness.auth())
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == ["acme", "initech"]
    assert all(m["object"] == "model" for m in body["data"])
    other = harness.client.get("/v1/models", headers=harness.auth(harness.other_key)).json()
    assert [m["id"] for m in other["data"]] == ["globex"]
    assert_envelope(harness.client.get("/v1/models"), 401)


def test_health_and_readiness(harness: Harness) -> None:
    assert harness.client.get("/healthz").json() == {"status": "ok"}
    r = harness.client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "model": "ok"}
    harness.backend.healthy = False
    r = harness.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["model"] == "not loaded"


def test_readiness_fails_when_the_database_is_gone(harness: Harness) -> None:
    from sqlalchemy import create_engine

    state = harness.client.app.state  # type: ignore[attr-defined]
    unreachable = (
        f"sqlite:///{harness.settings.data_dir}/missing-dir/db.sqlite"
        if harness.settings.is_sqlite
        else "postgresql+psycopg://postgres@127.0.0.1:1/none"
    )
    state.engine = create_engine(unreachable)
    r = harness.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["database"].startswith("error")


def test_metrics_count_requests_tokens_and_errors_by_bot(harness: Harness) -> None:
    harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    harness.backend.mode = "fail"
    harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    text = harness.client.get("/metrics").text
    assert 'shadowdesk_chat_requests_total{bot="acme",status="completed"} 1.0' in text
    assert 'shadowdesk_chat_requests_total{bot="acme",status="error"} 1.0' in text
    assert 'shadowdesk_tokens_total{bot="acme",kind="completion"} 5.0' in text
    assert 'shadowdesk_chat_errors_total{bot="acme",type="backend_error"} 1.0' in text
    assert 'shadowdesk_chat_latency_seconds_count{bot="acme"} 2.0' in text
