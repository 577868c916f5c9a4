"""`shadowdesk chat`: a terminal conversation with streamed answers, against a running server
(`--url`) or with the model loaded in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import BotCreate, create_bot
from api.settings import Settings
from tests.fakes import ScriptedBackend
from tests.support.databases import open_sessions
from tests.support.servers import serve_app

runner = CliRunner()


def test_chat_with_a_running_server_keeps_one_conversation(tmp_path: Path) -> None:
    from api.cli import app as cli

    app = create_app(
        Settings(_env_file=None, data_dir=tmp_path, create_demo_bot=False),  # type: ignore[call-arg]
        backend=ScriptedBackend(),
    )
    with serve_app(app, lifespan="on") as url:
        with transaction(app.state.sessions) as session:
            key = create_key(
                session,
                bots=[
                    create_bot(
                        session,
                        BotCreate(slug="acme", name="A"),
                        base_model="x",
                        actor=SYSTEM_ACTOR,
                    )
                ],
                actor=SYSTEM_ACTOR,
            )[1]
        r = runner.invoke(
            cli, ["chat", "acme", "--url", url, "--key", key], input="hello\nand again\nexit\n"
        )
    assert r.exit_code == 0, r.output
    assert r.output.count("acme> Hello from the bot.") == 2
    with transaction(app.state.sessions) as session:
        rows = session.query(Exchange).order_by(Exchange.created_at).all()
    assert len(rows) == 2 and rows[0].conversation_id == rows[1].conversation_id
    assert rows[1].messages[-3:] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello from the bot."},
        {"role": "user", "content": "and again"},
    ]


def test_chat_reports_a_wrong_key_and_goes_on(tmp_path: Path) -> None:
    from api.cli import app as cli

    app = create_app(
        Settings(_env_file=None, data_dir=tmp_path, create_demo_bot=False),  # type: ignore[call-arg]
        backend=ScriptedBackend(),
    )
    with serve_app(app, lifespan="on") as url:
        r = runner.invoke(cli, ["chat", "acme", "--url", url, "--key", "nope"], input="hello\n")
    assert r.exit_code == 0
    assert "Invalid API key" in r.output


@pytest.mark.slow
def test_chat_in_process_streams_a_real_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.cli import app as cli

    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SHADOWDESK_TORCH_THREADS", "1")
    assert runner.invoke(cli, ["bots", "create", "geo", "--temperature", "0"]).exit_code == 0
    r = runner.invoke(cli, ["chat", "geo"], input="What is the capital of France?\n")
    assert r.exit_code == 0, r.output
    assert "geo> " in r.output and "Paris" in r.output

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    with open_sessions(settings) as sessions, transaction(sessions) as session:
        [row] = session.query(Exchange).all()
    assert "Paris" in row.answer and row.streamed and row.completion_tokens > 0


def test_chat_shows_sources_and_says_when_it_refused(tmp_path: Path) -> None:
    import httpx

    from api.cli import app as cli

    admin = {"Authorization": "Bearer sd-admin-chat"}
    app = create_app(
        Settings(
            _env_file=None, data_dir=tmp_path, admin_key="sd-admin-chat", create_demo_bot=False
        ),  # type: ignore[call-arg]
        backend=ScriptedBackend(),
    )
    manual = (
        b"# Zephyr manual\n\n## Charging\n\nThe Zephyr scooter charges in 4 hours with the "
        b"supplied charger.\n\n## Brakes\n\nAdjust the rear brake with the 5 mm hex key.\n"
    )
    with serve_app(app, lifespan="on") as url:
        body = {"slug": "zephyr", "name": "Zephyr", "scope": "Support for Zephyr scooters."}
        assert httpx.post(f"{url}/api/bots", headers=admin, json=body).status_code == 201
        r = httpx.post(
            f"{url}/api/bots/zephyr/documents",
            headers=admin,
            files=[("files", ("manual.md", manual))],
            timeout=120,
        )
        assert r.status_code == 200, r.text
        with transaction(app.state.sessions) as session:
            from api.services.bots.management import get_bot

            key = create_key(session, bots=[get_bot(session, "zephyr")], actor=SYSTEM_ACTOR)[1]
        r = runner.invoke(
            cli,
            ["chat", "zephyr", "--url", url, "--key", key],
            input="How long does the scooter take to charge?\nHow do I cook pasta al dente?\n",
        )
    assert r.exit_code == 0, r.output
    answered, refused = r.output.split("zephyr> ")[1:3]
    assert "[1] manual.md › Zephyr manual › Charging" in answered
    assert "(refused: outside this bot's scope)" in refused and "manual.md" not in refused
