"""Releases: immutable versions, candidates, promotion and rollback through the admin API and the CLI,
with adapters hot-loaded before anything points at them and no request failing while the alias moves."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app as cli
from api.db import transaction
from api.errors import Conflict
from api.models import AuditEntry, Bot, Exchange, Release
from api.services.access.audit import CLI_ACTOR
from api.services.bots.management import get_bot
from api.services.releases.lifecycle import load_active_adapters, promote
from api.settings import Settings
from serving.backend import (
    BackendError,
    ChatMessage,
    Finished,
    GenerationParams,
    StreamEvent,
    TextDelta,
)
from tests.api.conftest import Harness, chat_body, harness_with
from tests.api.routes.test_chat import assert_envelope
from tests.fakes import ScriptedBackend
from tests.support.databases import open_sessions
from tests.support.servers import serve_app
from tests.support.stub_upstream import create_app as create_stub


class CandidateBackend(ScriptedBackend):
    """A scripted engine that can load adapters and misbehave for one adapter or system prompt only:
    live answers and candidate answers go through the same backend, as in production."""

    kind = "candidate-test"

    def __init__(self, words: Sequence[str] = ("Hello", " from", " the", " bot", ".")) -> None:
        super().__init__(words)
        self.loaded: dict[str, str] = {}
        self.unloadable: set[str] = set()
        # adapter name or system-prompt marker -> "hang" | "fail" | "slow"
        self.misbehave: dict[str, str] = {}
        self.answers: dict[str, list[str]] = {}  # adapter -> its words

    async def load_adapter(self, name: str, path: str) -> None:
        if name in self.unloadable:
            raise BackendError(f"no adapter weights at {path}")
        self.loaded[name] = path

    async def unload_adapter(self, name: str) -> None:
        self.loaded.pop(name, None)

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        behaviour = next(
            (b for key, b in self.misbehave.items() if key == adapter or key in system), None
        )
        if behaviour is None and adapter not in self.answers:
            return super().stream(messages, params, adapter)
        return self._special(behaviour, list(messages), params, adapter)

    async def _special(
        self,
        behaviour: str | None,
        messages: list[ChatMessage],
        params: GenerationParams,
        adapter: str | None,
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append((messages, params, adapter))
        if behaviour == "hang":
            await asyncio.Event().wait()
        if behaviour == "fail":
            raise BackendError("candidate engine is down")
        if behaviour == "slow":
            await asyncio.sleep(0.3)
        words = self.answers.get(adapter or "", self.words)[: params.max_tokens]
        for word in words:
            yield TextDelta(word)
        yield Finished("stop", sum(len(m["content"].split()) for m in messages), len(words))


@pytest.fixture
def h(settings: Settings) -> Iterator[Harness]:
    with harness_with(settings, CandidateBackend()) as harness:
        yield harness


def admin(h: Harness) -> dict[str, str]:
    return h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]


def new_release(h: Harness, slug: str = "acme", **fields: Any) -> dict[str, Any]:
    r = h.client.post(f"/api/bots/{slug}/releases", headers=admin(h), json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def post(h: Harness, path: str, body: dict[str, Any] | None = None) -> Any:
    # Promotions here test the alias itself; the review decision has tests of its own.
    if body is None and path.endswith("/promote"):
        body = {"force": True}
    return h.client.post(f"/api/bots/acme/releases{path}", headers=admin(h), json=body)


def audit(h: Harness, action: str) -> list[AuditEntry]:
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == action)
                .order_by(AuditEntry.created_at)
            )
        )


def live_release_id(h: Harness) -> str:
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        bot = session.scalar(select(Bot).where(Bot.slug == "acme"))
        assert bot is not None and bot.live_release_id is not None
        return bot.live_release_id


def chat(h: Harness, content: str = "How do I reset my password?") -> Any:
    r = h.client.post("/v1/chat/completions", json=chat_body(content), headers=h.auth())
    assert r.status_code == 200, r.text
    return r


# -- create / list ------------------------------------------------------------------------------


def test_releases_are_versioned_and_never_change(h: Harness) -> None:
    [v1] = h.client.get("/api/bots/acme/releases", headers=admin(h)).json()
    assert v1["version"] == 1 and v1["status"] == "live" and v1["base_model"] == "scripted-model"

    v2 = new_release(
        h,
        adapter="acme-support-v2",
        adapter_path="/adapters/v2",
        mode="adapter+rag",
        system_prompt="You are Acme's tuned bot.",
        notes="first tune",
    )
    assert v2["version"] == 2 and v2["status"] == "retired" and v2["base_model"] == "scripted-model"
    assert v2["id"].startswith("rel_") and v2["candidate"] is False
    # A change is a new release: based_on copies the rest, the original stays as it was.
    v3 = new_release(h, based_on=v2["id"], system_prompt="Shorter answers.")
    assert (v3["version"], v3["adapter"], v3["mode"], v3["system_prompt"]) == (
        3,
        "acme-support-v2",
        "adapter+rag",
        "Shorter answers.",
    )
    v4 = new_release(
        h, based_on="v3", adapter=None, mode="rag"
    )  # by version, and an explicit removal
    assert (
        v4["adapter"] is None
        and v4["adapter_path"] is None
        and v4["system_prompt"] == "Shorter answers."
    )

    listed = h.client.get("/api/bots/acme/releases", headers=admin(h)).json()
    assert [r["version"] for r in listed] == [4, 3, 2, 1]
    assert h.client.get(f"/api/bots/acme/releases/{v2['id']}", headers=admin(h)).json() == {**v2}
    assert h.client.get("/api/bots/acme/releases/v2", headers=admin(h)).json()["id"] == v2["id"]
    # No way to edit one.
    assert_envelope(
        h.client.patch(f"/api/bots/acme/releases/{v2['id']}", headers=admin(h), json={}), 405
    )
    [created] = [a for a in audit(h, "release.create") if a.entity_id == v2["id"]]
    assert created.after is not None and created.after["adapter"] == "acme-support-v2"


def test_release_validation_uses_the_error_envelope(h: Harness) -> None:
    url = "/api/bots/acme/releases"
    assert_envelope(
        h.client.post(url, headers=admin(h), json={"mode": "adapter"}), 400, param="adapter"
    )
    assert_envelope(
        h.client.post(url, headers=admin(h), json={"mode": "holding", "adapter": "x-v1"}),
        400,
        param="adapter",
    )
    assert_envelope(
        h.client.post(url, headers=admin(h), json={"adapter_path": "/a"}), 400, param="adapter"
    )
    assert_envelope(h.client.post(url, headers=admin(h), json={"mode": "nonsense"}), 400)
    assert_envelope(h.client.post(url, headers=admin(h), json={"adapter": "bad name!"}), 400)
    new_release(h, adapter="acme-v2", adapter_path="/adapters/one")
    # The same adapter name for other weights would make "nothing is reloaded in place" a lie.
    assert_envelope(
        h.client.post(
            url, headers=admin(h), json={"adapter": "acme-v2", "adapter_path": "/adapters/two"}
        ),
        409,
        code="adapter_name_taken",
    )
    assert_envelope(h.client.post("/api/bots/nobody/releases", headers=admin(h), json={}), 404)
    assert_envelope(h.client.get("/api/bots/acme/releases/rel_missing", headers=admin(h)), 404)
    assert_envelope(h.client.get("/api/bots/acme/releases/v99", headers=admin(h)), 404)
    # Another bot's release is not reachable through this bot.
    other = new_release(h, slug="globex")
    assert_envelope(post(h, f"/{other['id']}/promote"), 404)
    # Admin only.
    assert_envelope(h.client.get(url, headers=h.auth()), 403)
    assert_envelope(h.client.post(url, headers=h.auth(), json={}), 403)
    assert_envelope(h.client.get(url), 401)


# -- candidates ---------------------------------------------------------------------------------


def test_attach_loads_the_adapter_first_and_the_next_request_shadows(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    v2 = new_release(h, adapter="acme-support-v2", adapter_path="/adapters/v2")
    r = post(h, f"/{v2['id']}/attach")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "candidate" and backend.loaded == {
        "acme-support-v2": "/adapters/v2"
    }
    # The change applies at once (cached bot lookups were dropped), not after the cache TTL.
    exchange_id = chat(h).headers["x-exchange-id"]
    with transaction(h.client.app.state.sessions) as session:  # type: ignore[attr-defined]
        from api.models import Job

        jobs = list(session.scalars(select(Job).where(Job.kind == "shadow")))
        assert [j.payload for j in jobs] == [{"exchange_id": exchange_id, "release_id": v2["id"]}]

    r = post(h, f"/{v2['id']}/detach")
    assert r.json()["status"] == "retired"
    assert [a.action for a in audit(h, "release.attach") + audit(h, "release.detach")] == [
        "release.attach",
        "release.detach",
    ]
    # The live release cannot be a candidate of itself.
    assert_envelope(post(h, f"/{live_release_id(h)}/attach"), 409, code="release_is_live")


def test_attach_refuses_an_adapter_the_backend_cannot_serve(settings: Settings) -> None:
    # The plain scripted backend, like the transformers one, cannot load adapters.
    with harness_with(settings, ScriptedBackend()) as h:
        v2 = new_release(h, adapter="acme-support-v2", adapter_path="/adapters/v2")
        body = assert_envelope(
            post(h, f"/{v2['id']}/attach"), 400, code="adapter_load_failed", param="adapter"
        )
        assert "cannot load adapters" in body["message"]
        v3 = new_release(
            h, adapter="preloaded-v3"
        )  # no path: only a backend serving adapters can have it
        assert_envelope(post(h, f"/{v3['id']}/attach"), 400, code="adapter_unsupported")
        assert_envelope(
            h.client.post(
                "/api/bots/acme/releases",
                headers=admin(h),
                json={"adapter": "acme-v4", "adapter_path": "/a/v4", "candidate": True},
            ),
            400,
            code="adapter_load_failed",
        )
        statuses = {
            r["version"]: r["status"]
            for r in h.client.get("/api/bots/acme/releases", headers=admin(h)).json()
        }
        assert statuses == {
            1: "live",
            2: "retired",
            3: "retired",
        }  # nothing attached, v4 never stored
        # A release without an adapter attaches on any backend.
        v5 = new_release(h, system_prompt="Try this prompt.", candidate=True)
        assert v5["status"] == "candidate"


def test_failed_adapter_load_leaves_the_alias_where_it_was(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    backend.unloadable.add("acme-broken-v2")
    before = live_release_id(h)
    v2 = new_release(h, adapter="acme-broken-v2", adapter_path="/adapters/broken", mode="adapter")
    body = assert_envelope(post(h, f"/{v2['id']}/promote"), 400, code="adapter_load_failed")
    assert "/adapters/broken" in body["message"]
    assert live_release_id(h) == before and audit(h, "release.promote") == []
    chat(h)  # still answering


# -- promote / rollback -------------------------------------------------------------------------


def test_promote_moves_the_alias_at_once_and_audits_it(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    v1 = live_release_id(h)
    chat(h)
    v2 = new_release(
        h,
        adapter="acme-support-v2",
        adapter_path="/adapters/v2",
        system_prompt="Tuned prompt.",
        candidate=True,
    )
    r = post(h, f"/{v2['id']}/promote")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "bot": "acme",
        "action": "release.promote",
        "before": v1,
        "after": v2["id"],
        "candidates": [],
        "decision": "collecting",
        "decision_reason": "0 of 20 reviews needed for a decision",
        "forced": True,
    }
    assert live_release_id(h) == v2["id"] and backend.loaded == {"acme-support-v2": "/adapters/v2"}

    chat(h)
    messages, _, adapter = backend.calls[-1]
    assert adapter == "acme-support-v2" and messages[0]["content"] == "Tuned prompt."
    assert [e.release_id for e in h.exchanges()] == [v1, v2["id"]]

    [entry] = audit(h, "release.promote")
    assert entry.before == {"live_release_id": v1, "candidates": [v2["id"]]}
    assert entry.after == {
        "live_release_id": v2["id"],
        "version": 2,
        "candidates": [],
        "decision": "collecting",
        "decision_reason": "0 of 20 reviews needed for a decision",
        "forced": True,
    }
    assert (entry.actor, entry.actor_id) == ("bootstrap admin", None)
    listed = {
        r["version"]: r for r in h.client.get("/api/bots/acme/releases", headers=admin(h)).json()
    }
    assert (listed[1]["status"], listed[2]["status"], listed[2]["candidate"]) == (
        "retired",
        "live",
        False,
    )
    assert_envelope(post(h, f"/{v2['id']}/promote"), 409, code="already_live")


def test_rollback_walks_back_through_promotions(h: Harness) -> None:
    v1 = live_release_id(h)
    v2, v3 = new_release(h, notes="two"), new_release(h, notes="three")
    assert_envelope(post(h, "/rollback"), 409, code="nothing_to_roll_back")
    post(h, f"/{v2['id']}/promote")
    post(h, f"/{v3['id']}/promote")
    assert post(h, "/rollback").json() == {
        "bot": "acme",
        "action": "release.rollback",
        "before": v3["id"],
        "after": v2["id"],
        "candidates": [],
        "decision": None,
        "decision_reason": None,
        "forced": False,
    }
    assert live_release_id(h) == v2["id"]
    chat(h)
    assert h.exchanges()[-1].release_id == v2["id"]
    assert post(h, "/rollback").json()["after"] == v1
    assert_envelope(post(h, "/rollback"), 409, code="nothing_to_roll_back")
    # Promoting again starts a new history: rollback undoes exactly that promotion.
    post(h, f"/{v3['id']}/promote")
    assert post(h, "/rollback").json()["after"] == v1
    [last] = audit(h, "release.rollback")[-1:]
    assert last.before == {"live_release_id": v3["id"], "candidates": []} and last.after == {
        "live_release_id": v1,
        "version": 1,
        "candidates": [],
    }


def test_retired_adapters_are_unloaded_and_a_rollback_loads_them_again(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    v2 = new_release(h, adapter="acme-v2", adapter_path="/adapters/v2")
    v3 = new_release(h, adapter="acme-v3", adapter_path="/adapters/v3", candidate=True)
    post(h, f"/{v2['id']}/promote")
    assert set(backend.loaded) == {"acme-v2", "acme-v3"}  # live and candidate
    post(h, f"/{v3['id']}/promote")
    assert backend.loaded == {"acme-v3": "/adapters/v3"}  # v2 retired: unloaded
    post(h, "/rollback")  # v2 live again, v3 its candidate again: loaded from its folder
    assert set(backend.loaded) == {"acme-v2", "acme-v3"}
    chat(h)
    assert h.exchanges()[-1].release_id == v2["id"]
    assert any(call[2] == "acme-v2" for call in backend.calls)  # the live answer used it
    post(h, f"/{v3['id']}/detach")
    assert backend.loaded == {"acme-v2": "/adapters/v2"}


def test_an_adapter_promoted_by_another_process_is_loaded_on_first_use(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    v2 = new_release(h, adapter="acme-v2", adapter_path="/adapters/v2")
    post(h, f"/{v2['id']}/promote")
    backend.loaded.clear()  # this process's backend restarted (or another process promoted)
    h.client.app.state.runtime.forget_adapters()  # type: ignore[attr-defined]
    chat(h)
    assert backend.loaded == {"acme-v2": "/adapters/v2"}
    assert backend.calls[-1][2] == "acme-v2"


def test_requests_in_flight_finish_on_the_release_they_started_with(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    v1 = live_release_id(h)
    v2 = new_release(h, adapter="acme-support-v2", adapter_path="/adapters/v2", mode="adapter")
    backend.delay = 0.1  # 5 words: a half-second answer
    results: list[Any] = []

    def slow_request() -> None:
        results.append(
            h.client.post("/v1/chat/completions", json=chat_body(stream=True), headers=h.auth())
        )

    thread = threading.Thread(target=slow_request)
    thread.start()
    deadline = time.monotonic() + 5
    while not backend.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.calls, "the request never reached the backend"
    assert post(h, f"/{v2['id']}/promote").status_code == 200
    thread.join(10)
    backend.delay = 0.0
    [r] = results
    assert r.status_code == 200 and "data: [DONE]" in r.text
    assert backend.calls[0][2] is None  # generated without the new adapter
    chat(h)
    assert backend.calls[-1][2] == "acme-support-v2"
    assert [(e.release_id, e.status) for e in h.exchanges()] == [
        (v1, "completed"),
        (v2["id"], "completed"),
    ]


def test_concurrent_promotions_cannot_both_win(h: Harness) -> None:
    v2, v3 = new_release(h), new_release(h)
    sessions = h.client.app.state.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as stale:
        stale_bot = get_bot(stale, "acme")  # read before the other promotion commits
        with transaction(sessions) as other:
            promote(other, "acme", v2["id"], actor=CLI_ACTOR, force=True)
        with pytest.raises(Conflict):
            from api.services.releases.lifecycle import _move_alias

            release = stale.get(Release, v3["id"])
            assert release is not None
            _move_alias(stale, stale_bot, release, "release.promote", CLI_ACTOR, [])
    assert live_release_id(h) == v2["id"] and len(audit(h, "release.promote")) == 1


def test_a_bot_without_a_trusted_model_goes_live_with_a_holding_release(h: Harness) -> None:
    backend: CandidateBackend = h.backend  # type: ignore[assignment]
    holding = new_release(
        h, mode="holding", holding_message="A person will answer you by email shortly."
    )
    post(h, f"/{holding['id']}/promote")
    calls = len(backend.calls)
    r = chat(h)
    assert (
        r.json()["choices"][0]["message"]["content"] == "A person will answer you by email shortly."
    )
    assert len(backend.calls) == calls  # no model involved


def test_a_restarted_server_reloads_the_adapters_it_answers_with(h: Harness) -> None:
    live = new_release(h, adapter="acme-live-v2", adapter_path="/adapters/live")
    post(h, f"/{live['id']}/promote")
    new_release(h, adapter="acme-cand-v3", adapter_path="/adapters/cand", candidate=True)
    new_release(h, adapter="acme-old-v4", adapter_path="/adapters/old")  # retired: not needed
    fresh = CandidateBackend()  # an upstream that restarted and forgot every adapter
    runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
    asyncio.run(load_active_adapters(replace(runtime, _backend=fresh)))
    assert fresh.loaded == {"acme-live-v2": "/adapters/live", "acme-cand-v3": "/adapters/cand"}


# -- CLI ----------------------------------------------------------------------------------------


def test_releases_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    stub = create_stub(chunks=4)
    with serve_app(stub) as upstream:
        monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SHADOWDESK_BACKEND", "openai")
        monkeypatch.setenv("SHADOWDESK_UPSTREAM_URL", upstream + "/v1")
        monkeypatch.setenv("SHADOWDESK_MODEL", "stub-model")
        monkeypatch.setenv("SHADOWDESK_CREATE_DEMO_BOT", "false")
        monkeypatch.delenv("SHADOWDESK_DATABASE_URL", raising=False)
        monkeypatch.setenv("COLUMNS", "200")  # rich tables fit the terminal
        assert runner.invoke(cli, ["bots", "create", "acme"]).exit_code == 0

        r = runner.invoke(
            cli,
            [
                "releases",
                "create",
                "acme",
                "--adapter",
                "acme-support-v2",
                "--adapter-path",
                "/adapters/v2",
                "--mode",
                "adapter+rag",
            ],
        )
        assert r.exit_code == 0, r.output
        assert "v2" in r.output and "retired" in r.output
        r = runner.invoke(cli, ["releases", "attach", "acme", "v2"])
        assert r.exit_code == 0 and "candidate" in r.output, r.output
        assert stub.adapters == {
            "acme-support-v2": "/adapters/v2"
        }  # loaded into the shared upstream
        r = runner.invoke(cli, ["releases", "promote", "acme", "2"])
        assert r.exit_code == 1 and "decision for v2 is COLLECTING" in r.output, r.output
        r = runner.invoke(cli, ["releases", "promote", "acme", "2", "--force"])
        assert r.exit_code == 0 and "promoted" in r.output, r.output
        assert "review decision: collecting" in r.output and "forced" in r.output
        listed = runner.invoke(cli, ["releases", "list", "acme"]).output
        assert "live" in listed and "acme-support-v2" in listed
        r = runner.invoke(cli, ["releases", "rollback", "acme"])
        assert r.exit_code == 0 and "rolled back" in r.output, r.output
        r = runner.invoke(cli, ["releases", "rollback", "acme"])
        assert r.exit_code == 1 and "no earlier release" in r.output
        r = runner.invoke(
            cli,
            [
                "releases",
                "create",
                "acme",
                "--adapter",
                "acme-broken-v3",
                "--adapter-path",
                "/missing/v3",
                "--candidate",
            ],
        )
        assert r.exit_code == 1 and "Could not load adapter" in r.output
        r = runner.invoke(cli, ["releases", "create", "acme", "--mode", "nonsense"])
        assert r.exit_code == 2 and "mode" in r.output

        settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
        with open_sessions(settings) as sessions, transaction(sessions) as session:
            bot = get_bot(session, "acme")
            assert bot.live_release is not None and bot.live_release.version == 1
            actors = {a.actor for a in session.scalars(select(AuditEntry))}
            assert actors == {"cli"}
            assert session.scalar(select(Exchange.id)) is None
