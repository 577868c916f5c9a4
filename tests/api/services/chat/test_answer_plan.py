"""How a turn is answered tells the truth: a grounded bot does not guess when nothing in its
documents matches (it refuses, or answers flagged `no_context` for review when it may), and streamed
and plain answers carry the same extensions in every release mode. Real MiniLM and Chroma."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import get_bot
from api.settings import Settings
from tests.fakes import ScriptedBackend
from tests.support.servers import wait_for

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-for-tests-0123456789"
MANUAL = (
    b"# Zephyr manual\n\n## Charging\n\nThe Zephyr scooter charges in 4 hours with the supplied "
    b"charger.\n\n## Brakes\n\nAdjust the rear brake with the 5 mm hex key.\n"
)


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, ScriptedBackend, str]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("data"),
        admin_key=ADMIN,
        create_demo_bot=False,
    )
    backend = ScriptedBackend(words=["Guessing", " an", " answer."])
    with TestClient(create_app(settings, backend=backend)) as client:
        for slug, knowledge in (
            ("strict", {"guard": False, "min_score": 0.99}),
            ("lenient", {"guard": False, "min_score": 0.99, "answer_without_context": True}),
            ("zephyr", {}),
        ):
            r = client.post(
                "/api/bots",
                headers=admin(),
                json={
                    "slug": slug,
                    "name": "Zephyr scooters",
                    "scope": "Zephyr electric scooters",
                    "refusal_message": "Sorry, I only know about Zephyr scooters.",
                    "knowledge": knowledge,
                },
            )
            assert r.status_code == 201, r.text
            r = client.post(
                f"/api/bots/{slug}/documents",
                headers=admin(),
                files=[("files", ("manual.md", MANUAL))],
            )
            assert r.status_code == 200, r.text
        r = client.post("/api/bots/zephyr/releases", headers=admin(), json={"mode": "retrieval"})
        assert (
            client.post(
                f"/api/bots/zephyr/releases/{r.json()['id']}/promote",
                headers=admin(),
                json={"force": True},
            ).status_code
            == 200
        )
        with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
            key = create_key(
                session,
                bots=[get_bot(session, s) for s in ("strict", "lenient", "zephyr")],
                actor=SYSTEM_ACTOR,
            )[1]
        yield client, backend, key


def ask(client: TestClient, key: str, bot: str, text: str, *, stream: bool) -> dict[str, Any]:
    """The answer's text and extensions, read the same way from a plain body or a stream."""
    body = {"model": bot, "messages": [{"role": "user", "content": text}], "stream": stream}
    r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert r.status_code == 200, r.text
    if not stream:
        data = r.json()
        return {
            "id": data["id"],
            "text": data["choices"][0]["message"]["content"],
            **{k: data[k] for k in ("citations", "refused") if k in data},
        }
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    out: dict[str, Any] = {
        "id": chunks[0]["id"],
        "text": "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        ),
    }
    for chunk in chunks:
        out.update({k: chunk[k] for k in ("citations", "refused") if k in chunk})
    return out


def row(client: TestClient, exchange_id: str) -> Exchange:
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        found = session.get(Exchange, exchange_id)
        assert found is not None
        return found


@pytest.mark.parametrize("stream", [False, True])
def test_with_no_matching_passage_a_grounded_bot_refuses_instead_of_guessing(
    app, stream: bool
) -> None:  # type: ignore[no-untyped-def]
    client, backend, key = app
    calls = len(backend.calls)
    answer = ask(client, key, "strict", "Who won the 2018 World Cup?", stream=stream)
    assert (
        answer["refused"] is True and answer["text"] == "Sorry, I only know about Zephyr scooters."
    )
    assert "citations" not in answer and len(backend.calls) == calls  # no model call, nothing cited
    stored = row(client, answer["id"])
    assert (
        stored.status == "refused"
        and stored.guard is not None
        and stored.guard["verdict"] == "refuse"
    )


def test_a_bot_allowed_to_answer_without_context_is_flagged_for_review(app) -> None:  # type: ignore[no-untyped-def]
    client, backend, key = app
    answer = ask(client, key, "lenient", "Who won the 2018 World Cup?", stream=False)
    assert answer["text"] == "Guessing an answer." and "refused" not in answer
    assert "no_context" in row(client, answer["id"]).flags

    def queued() -> list[dict[str, Any]]:
        with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
            from api.models import ReviewItem

            items = session.query(ReviewItem).filter(ReviewItem.exchange_id == answer["id"]).all()
            return [{"reasons": i.reasons} for i in items]

    [item] = wait_for(queued, timeout=30, what="the flagged answer in the review queue")
    assert "low_retrieval" in item["reasons"]  # in front of reviewers, whatever the sample rate


@pytest.mark.parametrize("stream", [False, True])
def test_a_retrieval_release_cites_the_passages_it_answers_with(app, stream: bool) -> None:  # type: ignore[no-untyped-def]
    client, _, key = app
    answer = ask(client, key, "zephyr", "How long does the scooter take to charge?", stream=stream)
    assert "charges in 4 hours" in answer["text"]
    assert answer["citations"] and answer["citations"][0]["document"] == "manual.md"
    assert answer["citations"][0]["heading_path"] == ["Zephyr manual", "Charging"]
    assert row(client, answer["id"]).citations == answer["citations"]


def test_streamed_and_plain_refusals_carry_the_same_extensions(app) -> None:  # type: ignore[no-untyped-def]
    client, _, key = app
    plain = ask(client, key, "zephyr", "Give me a recipe for banana bread.", stream=False)
    streamed = ask(client, key, "zephyr", "Give me a recipe for banana bread.", stream=True)
    assert plain["refused"] is streamed["refused"] is True
    assert {k for k in plain if k != "id"} == {k for k in streamed if k != "id"}
