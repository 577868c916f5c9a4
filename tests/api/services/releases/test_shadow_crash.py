"""Crash test: a real `shadowdesk serve` is SIGKILLed with shadow jobs pending (one of them running)
while clients are still chatting, then restarted. Every shadow job completes exactly once and no
exchange whose answer a client received is lost.

Real processes throughout: the server (SQLite in a temporary data dir, backend=openai) in front of
the stub upstream, where the candidate's adapter is named `stub-slow` so each shadow answer takes
half a second and the queue is still busy when the server dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.models import Exchange, Job, ShadowAnswer
from tests.support.servers import ROOT, answers, free_port, stub_upstream_process, wait_for

pytestmark = pytest.mark.slow


def shadowdesk(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def upstream() -> Iterator[str]:
    with stub_upstream_process(chunks=8) as url:
        yield url


class Server:
    """`shadowdesk serve` as a child process that can be killed without warning and started again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=self.env,
            cwd=ROOT,
        )
        wait_for(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is not None or answers(self.url + "/readyz"))
            ),
            timeout=60,
            what="the server",
        )
        assert self.proc.poll() is None, "the server exited during startup"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def job_states(sessions: sessionmaker[Session]) -> dict[str, int]:
    with transaction(sessions) as session:
        rows = session.execute(
            select(Job.status, func.count()).where(Job.kind == "shadow").group_by(Job.status)
        )
        return {status: count for status, count in rows}


def just_started(sessions: sessionmaker[Session]) -> bool:
    """A shadow job was claimed in the last 0.2 s: it has most of its 0.5 s generation ahead."""
    with transaction(sessions) as session:
        started = session.scalar(
            select(Job.started_at).where(Job.kind == "shadow", Job.status == "running")
        )
    if started is None:
        return False
    return datetime.now(UTC) - started.replace(tzinfo=UTC) < timedelta(seconds=0.2)


def test_sigkill_with_shadow_jobs_pending_loses_nothing_and_finishes_each_job_once(
    tmp_path: Path, upstream: str, data_dir_sessions: sessionmaker[Session]
) -> None:
    env = {
        **os.environ,
        "SHADOWDESK_DATA_DIR": str(tmp_path),
        "SHADOWDESK_BACKEND": "openai",
        "SHADOWDESK_UPSTREAM_URL": upstream,
        "SHADOWDESK_MODEL": "stub-model",
        "SHADOWDESK_CREATE_DEMO_BOT": "false",
        "SHADOWDESK_JOB_LEASE_S": "2",  # a dead worker's job comes back after 2 s, not a minute
        "SHADOWDESK_SHADOW_TIMEOUT_S": "10",
    }
    env.pop("SHADOWDESK_DATABASE_URL", None)
    shadowdesk(env, "bots", "create", "acme", "--max-tokens", "16")
    key = shadowdesk(env, "keys", "create", "--bot", "acme")
    # The stub answers the model name `stub-slow` after 0.5 s: a slow candidate.
    shadowdesk(
        env,
        "releases",
        "create",
        "acme",
        "--adapter",
        "stub-slow",
        "--adapter-path",
        "/adapters/slow",
        "--mode",
        "adapter",
        "--candidate",
    )
    sessions = data_dir_sessions

    server = Server(env)
    answered: list[str] = []
    stop_chatting = threading.Event()

    def chat_until_killed() -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            i = 0
            while not stop_chatting.is_set():
                i += 1
                try:
                    r = client.post(
                        "/v1/chat/completions",
                        json={
                            "model": "acme",
                            "messages": [{"role": "user", "content": f"Question {i}: my lamp?"}],
                        },
                    )
                except httpx.HTTPError:
                    return  # the server died under us
                assert r.status_code == 200, r.text
                answered.append(r.headers["x-exchange-id"])

    try:
        server.start()
        clients = threading.Thread(target=chat_until_killed)
        clients.start()
        # Kill once the worker is early in a (half-second) job with more waiting behind it.
        wait_for(
            lambda: job_states(sessions).get("queued", 0) >= 5 and just_started(sessions),
            timeout=60,
            what="a freshly started shadow job with a backlog",
        )
        server.kill()
        stop_chatting.set()
        clients.join(15)

        before = job_states(sessions)
        assert before.get("queued", 0) >= 5 and before.get("running") == 1, before
        with transaction(sessions) as session:
            stored = set(session.scalars(select(Exchange.id)))
            # Every answer a client received was durable first; every stored exchange owes a job.
            assert set(answered) <= stored and len(answered) >= 5
            assert session.scalar(
                select(func.count()).select_from(Job).where(Job.kind == "shadow")
            ) == len(stored)
            killed_job = session.scalar(select(Job.id).where(Job.status == "running"))

        server.start()
        wait_for(
            lambda: set(job_states(sessions)) == {"succeeded"},
            timeout=90,
            what="every shadow job to finish",
        )

        with transaction(sessions) as session:
            jobs = list(session.scalars(select(Job).where(Job.kind == "shadow")))
            answers = list(session.scalars(select(ShadowAnswer)))
            assert (
                set(session.scalars(select(Exchange.id))) == stored
            )  # nothing lost, nothing invented
        assert len(jobs) == len(stored) and all(
            j.status == "succeeded" and j.attempts >= 1 for j in jobs
        )
        # Exactly once: one answer per (exchange, candidate), each the stub's full answer.
        assert sorted(a.exchange_id for a in answers) == sorted(stored)
        assert {a.status for a in answers} == {"completed"} and all(
            a.completion_tokens == 8 for a in answers
        )
        assert all(a.latency_ms >= 500 for a in answers)  # really generated by the slow candidate
        # The job that was running when the server died was claimed again after its lease ran out.
        [resumed] = [j for j in jobs if j.id == killed_job]
        assert resumed.attempts == 2 and resumed.result is not None
        assert {j.result["shadow_answer_id"] for j in jobs if j.result} <= {a.id for a in answers}
    finally:
        stop_chatting.set()
        server.stop()
