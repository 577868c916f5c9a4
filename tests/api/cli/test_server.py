"""`shadowdesk worker` starts like the server: a real worker process, in front of an upstream that
has never seen the candidate's adapter, loads it and answers shadow jobs with it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import transaction
from api.ids import new_id
from api.models import Bot, Release, ShadowAnswer
from api.services.bots.policy import BotPolicy
from api.services.chat.exchange_writer import ExchangeWriter
from api.services.chat.exchanges import ExchangeRecord
from api.services.releases.shadow import shadow_job_rows
from tests.support.servers import ROOT, stub_upstream_process, wait_for

pytestmark = pytest.mark.slow


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli(env: dict[str, str], *args: str) -> str:
    out = run_cli(env, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_worker_process_serves_a_candidate_with_its_adapter(
    tmp_path: Path, data_dir_sessions: sessionmaker[Session]
) -> None:
    env = {
        **os.environ,
        "SHADOWDESK_DATA_DIR": str(tmp_path),
        "SHADOWDESK_BACKEND": "openai",
        "SHADOWDESK_MODEL": "stub-model",
        "SHADOWDESK_CREATE_DEMO_BOT": "false",
    }
    env.pop("SHADOWDESK_DATABASE_URL", None)
    with stub_upstream_process() as setup:
        cli(
            {**env, "SHADOWDESK_UPSTREAM_URL": setup},
            "bots",
            "create",
            "acme",
            "--scope",
            "Acme routers",
        )
        # stub-echo answers with the request it got: the shadow answer shows which model served it.
        cli(
            {**env, "SHADOWDESK_UPSTREAM_URL": setup},
            "releases",
            "create",
            "acme",
            "--adapter",
            "stub-echo",
            "--adapter-path",
            "/adapters/echo",
            "--mode",
            "adapter",
            "--candidate",
        )
    sessions = data_dir_sessions
    with transaction(sessions) as session:
        bot = session.scalar(select(Bot).where(Bot.slug == "acme"))
        assert bot is not None
        candidate = session.scalar(
            select(Release.id).where(Release.bot_id == bot.id, Release.candidate.is_(True))
        )
        bot_id, live = bot.id, bot.live_release_id
    assert candidate is not None
    exchange_id = new_id("exch")
    record = ExchangeRecord(
        id=exchange_id,
        bot_id=bot_id,
        conversation_id="conv_1",
        release_id=live,
        api_key_id=None,
        messages=[{"role": "user", "content": "How do I reset my router?"}],
        params={"max_tokens": 20},
        answer="Hold the button.",
        status="completed",
        finish_reason="stop",
        error=None,
        streamed=False,
        prompt_tokens=5,
        completion_tokens=3,
        latency_ms=10.0,
        ttft_ms=None,
        passages=[],
        flags=[],
    )
    writer = ExchangeWriter(sessions.kw["bind"])
    try:
        asyncio.run(
            writer.write(
                record,
                shadow_job_rows(exchange_id, bot_id, BotPolicy(), [candidate], random.Random()),
            )
        )
    finally:
        writer.stop()

    with stub_upstream_process() as fresh:  # an upstream that (re)started and knows no adapter
        worker = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker", "--kind", "shadow"],
            env={**env, "SHADOWDESK_UPSTREAM_URL": fresh},
            cwd=ROOT,
        )
        try:

            def answered() -> ShadowAnswer | None:
                with transaction(sessions) as session:
                    return session.scalar(
                        select(ShadowAnswer).where(ShadowAnswer.exchange_id == exchange_id)
                    )

            shadow = wait_for(answered, timeout=90, what="the worker's shadow answer")
            assert shadow.status == "completed", shadow.error
            assert (
                json.loads(shadow.answer)["body"]["model"] == "stub-echo"
            )  # served with the adapter
            listed = httpx.get(fresh + "/models").json()["data"]
            assert {"id": "stub-echo", "root": "/adapters/echo"}.items() <= next(
                m for m in listed if m["id"] == "stub-echo"
            ).items()
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0  # a clean stop: running jobs finish, nothing is cut


def test_serve_with_vllm_but_no_vllm_environment_says_what_to_do(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SHADOWDESK_DATA_DIR": str(tmp_path),
        "SHADOWDESK_VLLM_PYTHON": str(tmp_path / "no-vllm" / "python"),
    }
    out = run_cli(env, "serve", "--backend", "vllm")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "make vllm" in out.stderr and "--vllm-url" in out.stderr
