"""A real Shadowdesk server (uvicorn on loopback, the demo bot with its documents, a scripted model)
and real headless Chromium driven by Playwright, for the review UI's browser tests."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.db import transaction
from api.services.access.audit import CLI_ACTOR, SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.access.staff import Actor, create_user
from api.services.bots.management import BotCreate, create_bot, find_bot, get_bot
from api.services.review.queue import QueueFilter, list_queue
from api.settings import Settings
from serving.backend import ChatMessage, Finished, GenerationParams, StreamEvent, TextDelta

# The API tests' app harness (SQLite and PostgreSQL) serves the plain-HTTP page tests.
from tests.api.conftest import harness  # noqa: F401 - the API fixtures, for the review pages too
from tests.fakes import ScriptedBackend
from tests.support.servers import serve_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
ADMIN_KEY = "admin-secret-for-browser-tests-0123456789"
CANDIDATE_MARK = "[candidate]"


class AnsweringBackend(ScriptedBackend):
    """The scripted backend with an answer per question (first matching keyword); a candidate
    release (its system prompt carries CANDIDATE_MARK) words its answers differently."""

    ANSWERS: ClassVar[dict[str, str]] = {
        "reset": "Hold the power button for ten seconds until the lamp blinks twice.",
        "warranty": "The Perch hub has a two-year warranty from the date of purchase.",
        "blinking": "A red blink means the lamp lost its Wi-Fi connection.",
    }

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[StreamEvent]:
        self.calls.append((list(messages), params, adapter))
        if any("training data" in m["content"] for m in messages if m["role"] == "system"):
            # Dataset generation: one pair whose answer is the passage's first sentence.
            passage = messages[-1]["content"].split('"""')[1].strip()
            first = re.split(r"(?<=[.!?])\s", passage, maxsplit=1)[0]
            words = first.split()
            pair = {"question": f"What should I know about {' '.join(words[:6])}?", "answer": first}
            yield TextDelta(json.dumps([pair]))
            yield Finished("stop", 100, len(words))
            return
        question = next(
            (m["content"] for m in reversed(messages) if m["role"] == "user"), ""
        ).lower()
        text = next((a for k, a in self.ANSWERS.items() if k in question), "Hello from the bot.")
        if any(CANDIDATE_MARK in m["content"] for m in messages if m["role"] == "system"):
            text = "Candidate says: " + text
        words = re.findall(r"\S+\s*", text)
        for word in words:
            yield TextDelta(word)
        yield Finished("stop", sum(len(m["content"].split()) for m in messages), len(words))


@dataclass
class Site:
    url: str
    sessions: sessionmaker[Session]

    def db(self) -> Any:
        return transaction(self.sessions)

    def bot(self, slug: str, *, candidate_prompt: str | None = None) -> str:
        """A bot (created unless it exists, e.g. the demo) with a chat key; returns the key."""
        with self.db() as session:
            bot = find_bot(session, slug) or create_bot(
                session,
                BotCreate(slug=slug, name=slug.capitalize()),
                base_model="scripted-model",
                actor=SYSTEM_ACTOR,
            )
            # No random draws of live answers and refusals: the pages show exactly the items the
            # test made (tests/api/services/review/test_feed.py covers the sampling).
            bot.policy = {
                **(bot.policy or {}),
                "live_review_sample_rate": 0.0,
                "refusal_review_sample_rate": 0.0,
            }
            if candidate_prompt is not None:
                from api.services.releases.lifecycle import ReleaseCreate, create_release

                create_release(
                    session,
                    slug,
                    ReleaseCreate(system_prompt=candidate_prompt, candidate=True),
                    default_base_model="scripted-model",
                    actor=CLI_ACTOR,
                )
            _, key = create_key(session, bots=[bot], name=f"{slug} site", actor=SYSTEM_ACTOR)
            return key

    def staff(self, email: str, role: str = "reviewer", bots: tuple[str, ...] = ()) -> None:
        with self.db() as session:
            create_user(
                session,
                CLI_ACTOR,
                email=email,
                password=PASSWORD,
                role=role,
                bots=[get_bot(session, s) for s in bots],
            )

    def ask(self, key: str, bot: str, *questions: str) -> None:
        """Clients chat through the real endpoint; the worker then queues their answers for review."""
        for question in questions:
            r = httpx.post(
                f"{self.url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": bot, "messages": [{"role": "user", "content": question}]},
                timeout=30,
            )
            assert r.status_code == 200, r.text

    def wait_for_items(self, bot: str, count: int, timeout: float = 30.0) -> list[str]:
        """Wait until the review feed has queued `count` items for `bot`; the representatives' ids."""
        admin = Actor(id="test", label="test", role="admin", bot_ids=frozenset())
        deadline = time.monotonic() + timeout
        while True:
            with self.db() as session:
                page = list_queue(session, admin, QueueFilter(bot_id=get_bot(session, bot).id))
                if page.counts["pending"][0] >= count:
                    return [e.item.id for e in page.entries]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {page.counts['pending'][0]} of {count} review items for {bot}"
                )
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the module (it indexes the demo bot's documents once); each test makes its own
    bots and staff, so tests do not see each other's items."""
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path_factory.mktemp("site") / "data",
        auto_migrate=True,
        admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        torch_threads=1,
        review_lock_s=120,
    )
    app = create_app(config, backend=AnsweringBackend())
    with serve_app(app, lifespan="on", startup_timeout=120) as url:
        yield Site(url, app.state.sessions)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
