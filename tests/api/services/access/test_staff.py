"""Staff users: argon2 passwords, roles and bot access, signed sessions, the login brake, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import select
from typer.testing import CliRunner

from api.cli import app as cli
from api.db import transaction
from api.errors import AuthenticationFailed, Conflict, InvalidRequest
from api.models import AuditEntry, StaffUser
from api.services.access import staff
from api.services.access.audit import CLI_ACTOR
from api.services.access.staff import Actor, can_review
from api.services.access.staff_sessions import (
    LoginThrottle,
    SessionCodec,
    TooManyAttempts,
    resolve_session,
)
from api.services.bots.management import get_bot
from api.settings import Settings
from tests.api.conftest import Harness
from tests.api.review_fixtures import PASSWORD, db
from tests.support.databases import open_sessions

runner = CliRunner()


def test_users_passwords_roles_and_access(harness: Harness) -> None:
    with db(harness) as session:
        acme = get_bot(session, "acme")
        user = staff.create_user(
            session,
            CLI_ACTOR,
            email=" Rev@Acme.TEST ",
            password=PASSWORD,
            role="reviewer",
            bots=[acme],
        )
        assert user.email == "rev@acme.test" and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
        for bad in ({"email": "nope"}, {"password": "short"}, {"role": "owner"}):
            with pytest.raises(InvalidRequest):
                staff.create_user(
                    session,
                    CLI_ACTOR,
                    **{"email": "x@y.test", "password": PASSWORD, "role": "admin", **bad},
                )
        with pytest.raises(Conflict):
            staff.create_user(
                session, CLI_ACTOR, email="rev@acme.test", password=PASSWORD, role="reviewer"
            )
        assert can_review(user, acme.id) and not can_review(user, get_bot(session, "globex").id)
        admin = staff.create_user(
            session, CLI_ACTOR, email="boss@shadowdesk.test", password=PASSWORD, role="admin"
        )
        assert can_review(Actor.of_user(admin), get_bot(session, "globex").id)
    with db(harness) as session:
        assert (
            staff.authenticate_password(session, "REV@acme.test", PASSWORD).email == "rev@acme.test"
        )
        for email, password in (("rev@acme.test", PASSWORD + "x"), ("nobody@acme.test", PASSWORD)):
            with pytest.raises(AuthenticationFailed, match="Wrong email or password"):
                staff.authenticate_password(session, email, password)
        staff.grant(session, CLI_ACTOR, "rev@acme.test", [get_bot(session, "globex")])
        staff.deactivate(session, CLI_ACTOR, "rev@acme.test")
    with db(harness) as session:
        with pytest.raises(AuthenticationFailed):
            staff.authenticate_password(session, "rev@acme.test", PASSWORD)
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.entity == "staff_user")
        ).all()
        assert sorted(actions) == [
            "staff.create",
            "staff.create",
            "staff.deactivate",
            "staff.grant",
        ]
        grant = session.scalar(select(AuditEntry).where(AuditEntry.action == "staff.grant"))
        assert (
            grant is not None
            and grant.before["bots"] == ["acme"]
            and grant.after["bots"] == ["acme", "globex"]
        )


def test_sessions_expire_and_end_with_password_change_or_deactivation(harness: Harness) -> None:
    clock = [1_000_000.0]
    codec = SessionCodec("s" * 40, ttl_s=3600, clock=lambda: clock[0])
    with db(harness) as session:
        user = staff.create_user(
            session, CLI_ACTOR, email="rev@acme.test", password=PASSWORD, role="reviewer"
        )
        cookie, data = codec.issue(user)
        actor, read = resolve_session(session, codec, cookie)  # type: ignore[misc]
        assert actor.id == user.id and read.csrf == data.csrf
        assert codec.read(cookie[:-2] + "xx") is None  # tampered
        assert SessionCodec("t" * 40, ttl_s=3600).read(cookie) is None  # another secret
        forged = URLSafeSerializer("s" * 40, salt="other").dumps({"u": user.id})
        assert codec.read(forged) is None
        clock[0] += 3601
        assert codec.read(cookie) is None  # expired
        clock[0] -= 3601
        user.password_hash = staff.hash_password("a brand new password")
        session.flush()
        assert resolve_session(session, codec, cookie) is None  # the password changed
        cookie, _ = codec.issue(user)
        user.active = False
        session.flush()
        assert resolve_session(session, codec, cookie) is None  # deactivated


def test_login_brake_per_email_and_client() -> None:
    clock = [0.0]
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=lambda: clock[0])
    for _ in range(3):
        throttle.check("rev@acme.test", "10.0.0.1")
        throttle.failed("REV@acme.test", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as caught:
        throttle.check("rev@acme.test", "10.0.0.1")
    assert caught.value.status_code == 429
    throttle.check("rev@acme.test", "10.0.0.2")  # another client is not locked out
    clock[0] = 61
    throttle.check("rev@acme.test", "10.0.0.1")


def test_production_refuses_a_missing_session_secret(tmp_path: Path) -> None:
    base = {
        "_env_file": None,
        "environment": "production",
        "database_url": "postgresql+psycopg://x@y/z",
    }
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        Settings(**base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        Settings(**base, session_secret="short")  # type: ignore[arg-type]
    prod = Settings(**base, session_secret="x" * 40)  # type: ignore[arg-type]
    assert prod.secure_cookies
    local = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert local.session_secret is not None and len(local.session_secret.get_secret_value()) >= 32
    assert not local.secure_cookies


def test_staff_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SHADOWDESK_DATABASE_URL", raising=False)
    assert runner.invoke(cli, ["bots", "create", "acme"]).exit_code == 0
    assert runner.invoke(cli, ["bots", "create", "globex"]).exit_code == 0
    r = runner.invoke(
        cli,
        [
            "staff",
            "create",
            "--email",
            "rev@acme.test",
            "--name",
            "Rev",
            "--bot",
            "acme",
            "--password",
            PASSWORD,
        ],
    )
    assert r.exit_code == 0 and "created reviewer rev@acme.test" in r.output, r.output
    r = runner.invoke(
        cli,
        ["staff", "create", "--email", "boss@acme.test", "--role", "admin"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output  # the prompt hides it
    r = runner.invoke(cli, ["staff", "create", "--email", "rev@acme.test", "--password", PASSWORD])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(
        cli,
        ["staff", "create", "--email", "x@acme.test", "--bot", "nobody", "--password", PASSWORD],
    )
    assert r.exit_code == 1 and "does not exist" in r.output
    assert runner.invoke(cli, ["staff", "grant", "rev@acme.test", "--bot", "globex"]).exit_code == 0
    assert runner.invoke(cli, ["staff", "deactivate", "rev@acme.test"]).exit_code == 0
    listed = runner.invoke(cli, ["staff", "list"], env={"COLUMNS": "200"}).output
    assert "rev@acme.test" in listed and "acme, globex" in listed and "boss@acme.test" in listed
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    with open_sessions(settings) as sessions, transaction(sessions) as session:
        users = {u.email: u for u in session.scalars(select(StaffUser))}
        assert users["boss@acme.test"].role == "admin" and not users["rev@acme.test"].active
        assert staff.authenticate_password(session, "boss@acme.test", PASSWORD).role == "admin"
