"""Found by a security pass, each reproduced first: a logout that did not end the session, an admin
key that could revoke itself (and the last admin key), a login brake fooled by X-Forwarded-For, a
locked-out login that did not say so, unbounded listing offsets, and the API's map and metrics open
to anyone in production."""

from __future__ import annotations

import json
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import SessionDep
from api.services.access.staff_sessions import CSRF_HEADER, SESSION_COOKIE
from api.settings import Settings
from tests.api.conftest import Harness
from tests.api.review_fixtures import PASSWORD, staff
from tests.api.routes.test_admin import admin
from tests.api.routes.test_chat import assert_envelope
from tests.fakes import ScriptedBackend
from tests.support.servers import serve_app, wait_for


def test_a_logged_out_session_cookie_is_refused_when_replayed(harness: Harness) -> None:
    staff(harness, "rev@acme.test", bots=("acme",))
    c = harness.client
    r = c.post("/api/review/session", json={"email": "rev@acme.test", "password": PASSWORD})
    csrf = {CSRF_HEADER: r.json()["csrf_token"]}
    stolen = c.cookies[SESSION_COOKIE]
    assert c.get("/api/review/items").status_code == 200
    assert c.delete("/api/review/session", headers=csrf).status_code == 204
    c.cookies.clear()
    c.cookies.set(SESSION_COOKIE, stolen)  # a copy of the cookie, replayed after logout
    assert_envelope(c.get("/api/review/items"), 401, "not_logged_in")
    assert c.get("/review/queue", follow_redirects=False).status_code == 303  # to the login page
    # A new login works as before.
    r = c.post("/api/review/session", json={"email": "rev@acme.test", "password": PASSWORD})
    assert r.status_code == 200 and c.get("/api/review/items").status_code == 200


def test_an_admin_key_cannot_revoke_itself_or_the_last_admin_key(harness: Harness) -> None:
    c = harness.client
    first = c.post("/api/keys", headers=admin(harness), json={"admin": True}).json()
    mine = {"Authorization": f"Bearer {first['key']}"}
    assert_envelope(
        c.post(f"/api/keys/{first['id']}/revoke", headers=mine), 409, "cannot_revoke_own_key"
    )
    second = c.post("/api/keys", headers=mine, json={"admin": True}).json()
    assert c.post(f"/api/keys/{second['id']}/revoke", headers=mine).status_code == 200
    # With a bootstrap admin key in the settings, the stored one is not the last: it may go.
    assert c.post(f"/api/keys/{first['id']}/revoke", headers=admin(harness)).status_code == 200


def test_without_a_bootstrap_key_the_last_admin_key_stays(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, create_demo_bot=False)  # type: ignore[call-arg]
    from api.db import transaction
    from api.services.access.audit import SYSTEM_ACTOR
    from api.services.access.keys import create_key

    with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
        with transaction(c.app.state.sessions) as session:  # type: ignore[attr-defined]
            one, one_secret = create_key(session, bots=[], is_admin=True, actor=SYSTEM_ACTOR)
            two, two_secret = create_key(session, bots=[], is_admin=True, actor=SYSTEM_ACTOR)
        by_one = {"Authorization": f"Bearer {one_secret}"}
        assert c.post(f"/api/keys/{two.id}/revoke", headers=by_one).status_code == 200
        r = c.post(f"/api/keys/{one.id}/revoke", headers={"Authorization": f"Bearer {two_secret}"})
        assert r.status_code == 401  # revoked keys do nothing
        assert_envelope(c.post(f"/api/keys/{one.id}/revoke", headers=by_one), 409)


def test_listing_offsets_are_bounded(harness: Harness) -> None:
    for path in ("/api/review/items", "/api/exchanges", "/api/bots/acme/datasets/x/rows"):
        r = harness.client.get(
            path, params={"offset": 18446744073709551616}, headers=admin(harness)
        )
        assert_envelope(r, 400, param="query.offset")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A real server on loopback, as `shadowdesk serve` runs it (no trusted proxies)."""
    settings = Settings(
        _env_file=None, data_dir=tmp_path, create_demo_bot=False, admin_key="a" * 32
    )  # type: ignore[call-arg]
    app = create_app(settings, backend=ScriptedBackend())
    from api.db import transaction
    from api.services.access.audit import CLI_ACTOR
    from api.services.access.staff import create_user

    with serve_app(app, lifespan="on") as url:
        with transaction(app.state.sessions) as session:
            create_user(session, CLI_ACTOR, email="rev@acme.test", password=PASSWORD, role="admin")
        yield url


def test_the_login_brake_ignores_forwarded_headers_from_untrusted_clients(site: str) -> None:
    for i in range(5):
        r = httpx.post(
            f"{site}/api/review/session",
            json={"email": "rev@acme.test", "password": "wrong"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},  # a new "client" every time
        )
        assert r.status_code == 401
    r = httpx.post(
        f"{site}/api/review/session",
        json={"email": "rev@acme.test", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert_envelope(r, 429, "too_many_login_attempts")
    # The login page says the same, with the same status.
    page = httpx.get(f"{site}/review/login")
    token = page.cookies["sd_login_csrf"]
    r = httpx.post(
        f"{site}/review/login",
        data={"email": "rev@acme.test", "password": PASSWORD, "csrf_token": token},
        cookies={"sd_login_csrf": token},
    )
    assert r.status_code == 429 and "Too many failed logins" in r.text


def test_api_map_and_metrics_are_closed_in_production(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="production",
        database_url=postgres_url,
        auto_migrate=True,
        data_dir=tmp_path,
        admin_key="p" * 32,
        session_secret="s" * 40,
        create_demo_bot=False,
    )
    with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
        assert_envelope(c.get("/metrics"), 401)
        r = c.get("/metrics", headers={"Authorization": f"Bearer {'p' * 32}"})
        assert r.status_code == 200 and "shadowdesk" in r.text
    local = Settings(_env_file=None, data_dir=tmp_path / "local", create_demo_bot=False)  # type: ignore[call-arg]
    with TestClient(create_app(local, backend=ScriptedBackend())) as c:
        assert c.get("/openapi.json").status_code == 200 and c.get("/metrics").status_code == 200


def _on_postgres(url: str, tmp_path: Path, **extra: Any) -> Settings:
    """An app's settings on a PostgreSQL database, with the admin key `p` * 32."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        auto_migrate=True,
        data_dir=tmp_path,
        admin_key="p" * 32,
        create_demo_bot=False,
        **extra,
    )


def test_a_database_gone_is_503_with_a_retry_hint(postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    from tests.support.databases import PG_ADMIN_URL

    settings = _on_postgres(postgres_url, tmp_path)
    with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
        admin_key = {"Authorization": f"Bearer {'p' * 32}"}
        assert (
            c.post("/api/bots", headers=admin_key, json={"slug": "acme", "name": "A"}).status_code
            == 201
        )
        key = c.post("/api/keys", headers=admin_key, json={"bots": ["acme"]}).json()["key"]
        name = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        body = {"model": "acme", "messages": [{"role": "user", "content": "hi"}]}
        for r in (
            c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}x"}, json=body),
            c.get("/api/bots", headers=admin_key),
        ):
            error = assert_envelope(r, 503, "database_unavailable")
            assert error["type"] == "service_unavailable" and r.headers["retry-after"] == "5"
        assert c.get("/readyz").status_code == 503
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # for the fixture's DROP
            conn.execute(f'CREATE DATABASE "{name}"')


def test_a_hung_database_is_a_prompt_503_not_a_hang(postgres_url: str, tmp_path: Path) -> None:
    """The database server stops answering (a real PostgreSQL behind a proxy that freezes, as a
    stopped or cut-off server does): every request is a 503 within seconds, not a hang, and the
    service is back as soon as the server is."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.freezable_proxy import freezable_proxy

    with freezable_proxy(("127.0.0.1", 5432)) as proxy:
        settings = _on_postgres(
            postgres_url.replace(":5432/", f":{proxy.port}/"),
            tmp_path,
            database_timeout_s=1.0,
            access_cache_ttl_s=0,
            run_worker=False,
        )
        admin_key = {"Authorization": f"Bearer {'p' * 32}"}
        with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
            body = {"slug": "acme", "name": "A"}
            assert c.post("/api/bots", headers=admin_key, json=body).status_code == 201
            key = c.post("/api/keys", headers=admin_key, json={"bots": ["acme"]}).json()["key"]
            auth = {"Authorization": f"Bearer {key}"}
            chat = {"model": "acme", "messages": [{"role": "user", "content": "hi"}]}
            assert c.post("/v1/chat/completions", headers=auth, json=chat).status_code == 200

            proxy.freeze()
            try:
                # While a chat waits on the silent database, the server still serves the rest.
                with ThreadPoolExecutor(1) as pool:
                    waiting = pool.submit(
                        lambda: c.post("/v1/chat/completions", headers=auth, json=chat)
                    )
                    time.sleep(0.5)
                    started = time.monotonic()
                    assert c.get("/healthz").status_code == 200
                    assert time.monotonic() - started < 1
                    assert_envelope(waiting.result(timeout=30), 503, "database_unavailable")
                for call in (
                    lambda: c.post("/v1/chat/completions", headers=auth, json=chat),
                    lambda: c.get("/api/bots", headers=admin_key),
                ):
                    started = time.monotonic()
                    error = assert_envelope(call(), 503, "database_unavailable")
                    assert error["type"] == "service_unavailable"
                    assert time.monotonic() - started < 15  # connect (5 s) + a silent command (2 s)
                started = time.monotonic()
                ready = c.get("/readyz")
                assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
                assert time.monotonic() - started < 6
            finally:
                proxy.thaw()
            r = wait_for(
                lambda: (
                    (r := c.post("/v1/chat/completions", headers=auth, json=chat)).status_code
                    == 200
                    and r
                ),
                timeout=30,
                what="chat back after the database",
            )
            assert r.json()["choices"][0]["message"]["content"]
            exchanges = c.get("/api/exchanges", headers=admin_key, params={"bot": "acme"}).json()
            assert len(exchanges) >= 2  # before the hang and after it, both stored


def test_a_command_the_database_never_answers_fails_and_drops_its_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    """Mid-transaction, the server goes silent: the waiting command fails within the timeout plus
    its grace, the connection is dropped, and the engine works again once the server does."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from api.db import make_engine
    from tests.support.freezable_proxy import freezable_proxy

    with freezable_proxy(("127.0.0.1", 5432)) as proxy:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=postgres_url.replace(":5432/", f":{proxy.port}/"),
            database_timeout_s=1.0,
            data_dir=tmp_path,
        )
        engine = make_engine(settings)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
                proxy.freeze()
                started = time.monotonic()
                with pytest.raises(OperationalError):
                    conn.execute(text("SELECT 2"))
                assert time.monotonic() - started < 5  # 1 s timeout + 1 s grace, sampled
            proxy.thaw()
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 3")).scalar() == 3
            assert engine.pool.checkedout() == 0
        finally:
            proxy.thaw()
            engine.dispose()


def test_a_command_past_the_database_timeout_is_cancelled(
    postgres_url: str, tmp_path: Path
) -> None:
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from api.db import make_engine

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=postgres_url, database_timeout_s=0.5, data_dir=tmp_path
    )
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(10)"))
            assert time.monotonic() - started < 5
        with engine.connect() as conn:  # the connection is fine afterwards
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_nul_characters_are_a_400_on_either_database_and_nothing_is_stored(
    harness: Harness,
) -> None:
    """PostgreSQL stores no NUL in text and SQLite does: one rule for both, at the door."""
    c, stored = harness.client, harness.exchange_count()
    chat = {"model": "acme", "messages": [{"role": "user", "content": "a\x00b"}]}
    error = assert_envelope(
        c.post("/v1/chat/completions", headers=harness.auth(), json=chat), 400, "nul_character"
    )
    assert "NUL" in error["message"] and error["param"] == "messages.0.content"
    assert harness.exchange_count() == stored
    assert_envelope(
        c.post("/api/bots", headers=admin(harness), json={"slug": "nul", "name": "a\x00"}),
        400,
        "nul_character",
    )
    assert "nul" not in [b["slug"] for b in c.get("/api/bots", headers=admin(harness)).json()]
    r = c.get("/api/bots/acme/datasets/x/rows?text=a%00", headers=admin(harness))
    assert assert_envelope(r, 400, "nul_character")["param"] == "text"
    assert_envelope(c.get("/api/bots/ac%00me", headers=admin(harness)), 400, "nul_character")
    form = c.post(
        "/review/login",
        content=b"email=a%00&password=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_envelope(form, 400, "nul_character")
    # The six characters `\u0000` are text like any other.
    chat["messages"][0]["content"] = "a\\u0000"
    assert c.post("/v1/chat/completions", headers=harness.auth(), json=chat).status_code == 200

    # In a file of rows, a NUL fails its own line; the file's other rows go in.
    assert (
        c.post("/api/bots/acme/datasets", headers=admin(harness), json={"name": "n"}).status_code
        == 201
    )
    lines = [
        json.dumps({"instruction": "Is it red?", "output": "Yes."}),
        json.dumps({"instruction": "Is it \x00 blue?", "output": "No."}),
    ]
    r = c.post(
        "/api/bots/acme/datasets/n/import",
        headers=admin(harness),
        files={"file": ("rows.jsonl", "\n".join(lines).encode())},
    )
    assert r.json() == {
        "imported": 1,
        "errors": [{"line": 2, "reason": "instruction: the text contains a NUL character"}],
    }
    # A file refused whole is named as the client named it, not by the server's temporary path.
    r = c.post(
        "/api/bots/acme/datasets/n/import",
        headers=admin(harness),
        files={"file": ("deep.json", b"[" * 100_000)},
    )
    message = assert_envelope(r, 400, "bad_file")["message"]
    assert (
        message.startswith("deep.json is not one JSON document")
        and tempfile.gettempdir() not in message
    )


def test_a_value_the_database_refuses_is_a_400_and_rolls_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """The last line behind the door's checks: whatever PostgreSQL refuses to store (here a NUL
    that reached a route some other way) is a 400 in the envelope, with the transaction undone."""
    from api.models import Bot

    settings = _on_postgres(postgres_url, tmp_path)
    app = create_app(settings, backend=ScriptedBackend())

    @app.post("/test-only/store")
    def store(session: SessionDep) -> None:
        session.add(Bot(id="bot_first", slug="first", name="fine"))
        session.flush()
        session.add(Bot(id="bot_second", slug="second", name=bytes([97, 0]).decode()))
        session.flush()

    with TestClient(app) as c:
        r = c.post("/test-only/store")
        assert assert_envelope(r, 400, "unstorable_value")["message"].startswith(
            "A value cannot be stored: PostgreSQL text fields cannot contain NUL"
        )
        slugs = [
            b["slug"]
            for b in c.get("/api/bots", headers={"Authorization": f"Bearer {'p' * 32}"}).json()
        ]
        assert "first" not in slugs


def test_a_bot_with_an_unknown_embedding_model_is_refused_at_creation(harness: Harness) -> None:
    c = harness.client
    for embedder in ("no/such-model", "instructor:", "/nonexistent/model/dir"):
        body = {"slug": "nova", "name": "Nova", "knowledge": {"embedder": embedder}}
        r = c.post("/api/bots", headers=admin(harness), json=body)
        assert_envelope(r, 400, "unknown_embedder", "knowledge.embedder")
        r = c.put("/api/bots/acme/knowledge", headers=admin(harness), json={"embedder": embedder})
        assert_envelope(r, 400, "unknown_embedder", "knowledge.embedder")
    assert c.get("/api/bots/nova", headers=admin(harness)).status_code == 404
    body = {"slug": "nova", "name": "Nova", "knowledge": {"embedder": "default"}}
    assert c.post("/api/bots", headers=admin(harness), json=body).status_code == 201


def _multipart(names: list[str]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written by hand: clients encode odd names (httpx sends NUL as %00), an
    attacker does not."""
    boundary = "shadowdesk-boundary"
    body = b""
    for name in names:
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: text/markdown\r\n\r\n'
        ).encode() + b"# Returns\n\nReturns are free for 30 days.\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_bad_upload_names_fail_alone_and_leave_nothing_behind(harness: Harness) -> None:
    bad = ["..", ".", "a" * 256 + ".md", "bad\x00name.md", "dir/../.."]
    body, headers = _multipart([*bad, "good.md"])
    r = harness.client.post(
        "/api/bots/acme/documents", headers={**admin(harness), **headers}, content=body
    )
    results = r.json()["results"]
    assert r.status_code == 200, results
    assert [x["reason"] for x in results if x["status"] == "error"] == ["bad_name"] * 5, results
    assert [x["source"] for x in results if x["status"] != "error"] == ["good.md"]
    docs = harness.client.get("/api/bots/acme/documents", headers=admin(harness)).json()
    assert [d["source"] for d in docs] == ["good.md"]
    uploads = harness.settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # no staging folder left
    body, headers = _multipart(bad[:2])
    r = harness.client.post(
        "/api/bots/acme/documents", headers={**admin(harness), **headers}, content=body
    )
    # Every file refused: 422, as for any batch where nothing went in.
    assert r.status_code == 422 and all(x["reason"] == "bad_name" for x in r.json()["results"])
    assert not uploads.exists() or not any(uploads.iterdir())


def test_bodies_over_the_limit_get_413_before_they_are_parsed(harness: Harness) -> None:
    big = '{"model": "acme", "messages": [{"role": "user", "content": "' + "x" * 2_000_000 + '"}]}'
    headers = {**harness.auth(), "Content-Type": "application/json"}
    r = harness.client.post("/v1/chat/completions", headers=headers, content=big)
    assert_envelope(r, 413, "request_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield big[:1000].encode()
        for i in range(1000, len(big), 65536):
            yield big[i : i + 65536].encode()

    r = harness.client.post("/v1/chat/completions", headers=headers, content=chunks())
    assert_envelope(r, 413, "request_too_large")
    r = harness.client.put(
        "/api/bots/acme/widget",
        headers={**admin(harness), "Content-Type": "application/json"},
        content=b'{"title": "' + b"t" * 1_100_000 + b'"}',
    )
    assert_envelope(r, 413, "request_too_large")
    assert harness.exchange_count() == 0
    # Uploads have their own, larger limit.
    body, multipart = _multipart(["notes.md"])
    r = harness.client.post(
        "/api/bots/acme/documents", headers={**admin(harness), **multipart}, content=body
    )
    assert r.status_code == 200


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real `chroma run` server of this test's own (it will be stopped with SIGSTOP)."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    from tests.support.servers import free_port

    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "run",
            "--path",
            str(tmp_path / "chroma"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "chroma did not start"
        time.sleep(0.2)
    try:
        yield url, proc.pid
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=20)


def test_a_hung_vector_store_is_a_prompt_503_not_a_hang(
    chroma: tuple[str, int], tmp_path: Path
) -> None:
    import os
    import time

    url, pid = chroma
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        admin_key="p" * 32,
        create_demo_bot=False,
        chroma_url=url,
        knowledge_timeout_s=2.0,
    )
    auth = {"Authorization": f"Bearer {'p' * 32}"}
    with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
        for slug, knowledge in (("strict", {}), ("lenient", {"answer_without_context": True})):
            body = {"slug": slug, "name": slug, "knowledge": {"guard": False, **knowledge}}
            assert c.post("/api/bots", headers=auth, json=body).status_code == 201
            upload, multipart = _multipart(["returns.md"])
            r = c.post(f"/api/bots/{slug}/documents", headers={**auth, **multipart}, content=upload)
            assert r.status_code == 200, r.text
        key = c.post("/api/keys", headers=auth, json={"bots": ["strict", "lenient"]}).json()["key"]

        def ask(bot: str) -> Any:
            body = {"model": bot, "messages": [{"role": "user", "content": "Can I return it?"}]}
            return c.post(
                "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
            )

        assert ask("strict").status_code == 200
        os.kill(pid, signal.SIGSTOP)  # the store hangs: it accepts connections, answers nothing
        try:
            started = time.monotonic()
            assert_envelope(ask("strict"), 503, "knowledge_unavailable")
            r = ask("lenient")
            assert r.status_code == 200
            assert time.monotonic() - started < 15  # bounded by the timeouts, not by the client
            started = time.monotonic()
            ready = c.get("/readyz")
            assert (
                ready.status_code == 503 and ready.json()["checks"]["vector_store"] == "unreachable"
            )
            assert time.monotonic() - started < 6
        finally:
            os.kill(pid, signal.SIGCONT)
        assert ask("strict").status_code == 200  # back as soon as the store is
        flags = [
            e["flags"]
            for e in c.get("/api/exchanges", headers=auth, params={"bot": "lenient"}).json()
        ]
        assert ["no_context"] in flags


def _rss_peak_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_a_docx_bomb_upload_is_refused_at_once_and_the_rest_goes_in(harness: Harness) -> None:
    import time

    from tests.serving.knowledge.test_parse_limits import a_docx, docx_bomb

    bomb = docx_bomb(24)  # ~100 KB that expands to 24 MB of XML
    peak = _rss_peak_kb()
    started = time.monotonic()
    r = harness.client.post(
        "/api/bots/acme/documents",
        headers=admin(harness),
        files=[
            ("files", ("manual.docx", bomb, "application/octet-stream")),
            ("files", ("returns.docx", a_docx(), "application/octet-stream")),
        ],
    )
    # What it expands to decides: 24 MB is past the synchronous budget, so it is a job.
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]

    def finished() -> dict[str, Any] | None:
        job = harness.client.get(f"/api/jobs/{job_id}", headers=admin(harness)).json()
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_for(finished, 60, "the ingest job")
    elapsed = time.monotonic() - started
    by_source = {x["source"]: x for x in job["result"]["results"]}
    assert by_source["manual.docx"]["reason"] == "archive_bomb"
    assert by_source["returns.docx"]["status"] == "ingested"
    assert elapsed < 10  # the embedding model loads for this first upload; the bomb: < 1 s
    assert _rss_peak_kb() - peak < 150_000  # no 24 MB document tree was ever built


def test_document_limits_are_settings(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        admin_key="p" * 32,
        create_demo_bot=False,
        max_document_chars=5_000,
        max_export_rows=3,
    )
    auth = {"Authorization": f"Bearer {'p' * 32}"}
    with TestClient(create_app(settings, backend=ScriptedBackend())) as c:
        assert c.post("/api/bots", headers=auth, json={"slug": "a", "name": "A"}).status_code == 201
        rows = "thread_id,body\n" + "".join(f"{i},question {i}\n" for i in range(5))
        r = c.post(
            "/api/bots/a/documents",
            headers=auth,
            files=[
                ("files", ("long.md", ("word " * 2000).encode(), "text/markdown")),
                ("files", ("forum.csv", rows.encode(), "text/csv")),
                ("files", ("ok.md", b"# Hours\n\nOpen 9 to 5.", "text/markdown")),
            ],
        )
        reasons = {x["source"]: x.get("reason") or x["status"] for x in r.json()["results"]}
        assert reasons == {
            "long.md": "too_much_text",
            "forum.csv": "too_many_rows",
            "ok.md": "ingested",
        }
