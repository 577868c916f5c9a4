"""The `shadowdesk` CLI: bots and keys on the embedded database, keys that then work over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.db import transaction
from api.settings import Settings
from tests.fakes import ScriptedBackend
from tests.support.databases import open_sessions

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SHADOWDESK_DATABASE_URL", raising=False)
    return tmp_path


def test_bots_and_keys_from_the_cli(data_dir: Path) -> None:
    r = runner.invoke(
        cli,
        [
            "bots",
            "create",
            "acme",
            "--name",
            "Acme",
            "--system-prompt",
            "Be kind.",
            "--temperature",
            "0.2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "acme has no scope and no documents yet" in r.output  # it would answer anything
    scoped = runner.invoke(
        cli, ["bots", "create", "lamps", "--scope", "Kestrel lamps and the Perch hub"]
    )
    assert scoped.exit_code == 0 and "no scope" not in scoped.output
    r = runner.invoke(cli, ["bots", "list"])
    assert "acme" in r.output and "Acme" in r.output
    r = runner.invoke(cli, ["keys", "create", "--bot", "acme", "--name", "site"])
    assert r.exit_code == 0, r.output
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("sd-")

    app = create_app(
        Settings(_env_file=None, data_dir=data_dir, create_demo_bot=False),
        backend=ScriptedBackend(),
    )  # type: ignore[call-arg]
    with TestClient(app) as client:
        body = {"model": "acme", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            client.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )
        listed = runner.invoke(cli, ["keys", "list"]).output
        assert "sd-" in listed and key not in listed  # only the prefix is ever shown


def test_cli_errors_are_clear(data_dir: Path) -> None:
    assert runner.invoke(cli, ["bots", "create", "acme"]).exit_code == 0
    r = runner.invoke(cli, ["bots", "create", "acme"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(cli, ["bots", "create", "Not A Slug"])
    assert r.exit_code == 2 and "slug" in r.output
    r = runner.invoke(cli, ["keys", "create", "--bot", "nobody"])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = runner.invoke(cli, ["keys", "create"])
    assert r.exit_code == 2


def test_a_publishable_key_from_the_cli(data_dir: Path) -> None:
    runner.invoke(cli, ["bots", "create", "acme"])
    r = runner.invoke(cli, ["keys", "create", "--bot", "acme", "--publishable"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("pk-")
    assert runner.invoke(cli, ["keys", "list"]).exit_code == 0
    runner.invoke(cli, ["bots", "create", "other"])
    r = runner.invoke(cli, ["keys", "create", "--bot", "acme", "--bot", "other", "--publishable"])
    assert r.exit_code == 1 and "exactly one bot" in r.output


def test_revoked_key_stops_working(data_dir: Path) -> None:
    runner.invoke(cli, ["bots", "create", "acme"])
    key = runner.invoke(cli, ["keys", "create", "--bot", "acme"]).stdout.strip().splitlines()[-1]
    from api.services.access.keys import list_keys

    settings = Settings(_env_file=None, data_dir=data_dir, create_demo_bot=False)  # type: ignore[call-arg]
    with open_sessions(settings) as sessions, transaction(sessions) as session:
        [row] = list_keys(session)
    assert runner.invoke(cli, ["keys", "revoke", row.id]).exit_code == 0
    app = create_app(settings, backend=ScriptedBackend())
    with TestClient(app) as client:
        body = {"model": "acme", "messages": [{"role": "user", "content": "hi"}]}
        r = client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "revoked_api_key"


def test_db_upgrade_and_current(data_dir: Path) -> None:
    r = runner.invoke(cli, ["db", "upgrade"])
    assert r.exit_code == 0 and "database at 0007" in r.output
    assert runner.invoke(cli, ["db", "current"]).exit_code == 0


def test_bots_take_their_knowledge_settings_with_the_api_models_limits(data_dir: Path) -> None:
    r = runner.invoke(
        cli,
        [
            "bots",
            "create",
            "lamps",
            "--scope",
            "Kestrel lamps",
            "--topic",
            "Glow lamps",
            "--topic",
            "the Perch hub",
            "--example-question",
            "How do I pair a lamp?",
            "--out-of-scope-example",
            "Tell me a joke",
            "--top-k",
            "6",
            "--min-score",
            "0.3",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["bots", "update", "lamps", "--top-k", "3", "--topic", "Glow lamps only"]
    )
    assert r.exit_code == 0, r.output
    from api.services.bots.management import get_bot
    from api.services.knowledge.config import knowledge_of

    settings = Settings(_env_file=None, data_dir=data_dir)  # type: ignore[call-arg]
    with open_sessions(settings) as sessions, transaction(sessions) as session:
        knowledge = knowledge_of(get_bot(session, "lamps").knowledge)
    assert (knowledge.top_k, knowledge.min_score, knowledge.topics) == (3, 0.3, ["Glow lamps only"])
    assert knowledge.example_questions == ["How do I pair a lamp?"]  # untouched by the update
    assert knowledge.out_of_scope_examples == ["Tell me a joke"]
    # The limits are the API's: no drift between the CLI and the models.
    r = runner.invoke(cli, ["bots", "update", "lamps", "--top-k", "0"])
    assert r.exit_code == 2 and "--top-k" in r.output
    r = runner.invoke(cli, ["bots", "create", "zero", "--top-p", "0"])
    assert r.exit_code == 2 and "--top-p" in r.output and "greater than 0" in r.output


def test_tables_never_cut_ids_on_a_narrow_terminal(data_dir: Path) -> None:
    runner.invoke(cli, ["bots", "create", "a-rather-long-bot-slug", "--scope", "x"])
    runner.invoke(
        cli, ["keys", "create", "--bot", "a-rather-long-bot-slug", "--name", "a long key name"]
    )
    r = runner.invoke(cli, ["bots", "list"], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "a-rather-long-bot-slug" in r.output, r.output
    for command in (["keys", "list"], ["releases", "list", "a-rather-long-bot-slug"]):
        r = runner.invoke(cli, command, env={"COLUMNS": "80"})
        assert r.exit_code == 0, r.output
        # whole ids on one line, never "rel_01a2…" or folded over two lines
        assert re.search(r"\b(?:rel|key)_[0-9a-f]{32}\b", r.output), r.output
