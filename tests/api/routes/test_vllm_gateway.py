"""The gateway in front of a real vLLM server (the CPU build, in its own virtual environment, started
and supervised by the gateway): chat through the gateway, bots on different LoRA adapters of one
base model, adapters hot-loaded and retired while requests run, client disconnects, errors in our
envelope, and vLLM killed mid-stream (a clean error, then recovery with its adapters back)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.app import create_app
from api.db import transaction
from api.models import Bot, Exchange
from api.runtime import default_vllm_python
from api.settings import Settings
from serving.vllm_backend import VLLMBackend
from tests.support.lora import random_adapters
from tests.support.servers import serve_app, wait_for

pytestmark = pytest.mark.slow

ADMIN = "vllm-admin-key-0123456789abcdef"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG_QUESTION = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]


@pytest.fixture(scope="module")
def adapters(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three LoRA adapters with random weights strong enough to change every answer (alpha 128)."""
    return random_adapters(
        hf_folder,
        ["shop-v1", "bank-v1", "bank-v2"],
        tmp_path_factory,
        alpha=128,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
    )


@dataclass
class Gateway:
    app: Any
    url: str
    keys: dict[str, str]
    # One client per bot, closed with the gateway: a client left to the garbage collector leaves
    # an open socket behind (a ResourceWarning, an error in this suite).
    clients: dict[str, openai.OpenAI] = field(default_factory=dict)

    @property
    def backend(self) -> VLLMBackend:
        backend = self.app.state.backend
        assert isinstance(backend, VLLMBackend)
        return backend

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.url + path, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60, **kw
        )

    def client(self, bot: str) -> openai.OpenAI:
        if bot not in self.clients:
            self.clients[bot] = openai.OpenAI(
                base_url=self.url + "/v1", api_key=self.keys[bot], max_retries=0
            )
        return self.clients[bot]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def ask(self, bot: str, messages: list[dict[str, str]] = QUESTION, max_tokens: int = 16) -> str:
        reply = self.client(bot).chat.completions.create(
            model=bot,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,  # type: ignore[arg-type]
        )
        return reply.choices[0].message.content or ""

    def direct(self, model: str, max_tokens: int = 16, system: str = "") -> str:
        """The same question straight to vLLM (what the gateway must pass through unchanged)."""
        messages = ([{"role": "system", "content": system}] if system else []) + QUESTION
        reply = httpx.post(
            self.backend.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {self.vllm_key}"},
            json={"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["choices"][0]["message"]["content"])

    @property
    def vllm_key(self) -> str:
        assert self.backend.server is not None
        return self.backend.server.api_key

    def listed(self) -> set[str]:
        reply = httpx.get(
            self.backend.base_url + "/models",
            headers={"authorization": f"Bearer {self.vllm_key}"},
            timeout=10,
        )
        return {m["id"] for m in reply.json()["data"] if m.get("parent")}

    def release(self, bot: str, adapter: str, path: Path, **extra: Any) -> str:
        r = self.admin(
            "POST",
            f"/api/bots/{bot}/releases",
            json={"adapter": adapter, "adapter_path": str(path), "mode": "adapter", **extra},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def promote(self, bot: str, release_id: str) -> None:
        r = self.admin(
            "POST", f"/api/bots/{bot}/releases/{release_id}/promote", json={"force": True}
        )
        assert r.status_code == 200, r.text

    def chat_request(self, bot: str, **body: Any) -> dict[str, Any]:
        """Arguments for httpx.post / httpx.stream: a raw chat request to the gateway."""
        return {
            "method": "POST",
            "url": self.url + "/v1/chat/completions",
            "headers": {"authorization": f"Bearer {self.keys[bot]}"},
            "json": {"model": bot, **body},
            "timeout": 60,
        }

    def rows(self, bot: str) -> list[Exchange]:
        with transaction(self.app.state.sessions) as session:
            query = session.query(Exchange).join(Bot, Bot.id == Exchange.bot_id)
            return list(query.filter(Bot.slug == bot).order_by(Exchange.created_at))


@pytest.fixture(scope="module")
def gateway(
    hf_folder: Path, adapters: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    python = default_vllm_python()
    if not python.is_file():  # `make test` installs it (`make vllm`); missing is a broken setup
        pytest.fail(f"vLLM is not installed at {python}; run `make vllm`")
    data = tmp_path_factory.mktemp("vllm-gateway")
    settings = Settings(
        _env_file=None,
        data_dir=data,
        backend="vllm",
        model=str(hf_folder),
        admin_key=ADMIN,
        create_demo_bot=False,
        vllm_max_model_len=1024,
        vllm_max_lora_rank=8,
        vllm_max_loras=2,
        vllm_kv_cache_gib=1,
        adapter_reconcile_s=1.0,
        backend_timeout_s=60,
    )  # type: ignore[call-arg]
    app = create_app(settings)
    with serve_app(app, lifespan="on", startup_timeout=600) as url:
        gw = Gateway(app, url, {})
        for slug in ("plain", "shop", "bank"):
            r = gw.admin("POST", "/api/bots", json={"slug": slug, "name": slug, "temperature": 0})
            assert r.status_code == 201, r.text
            r = gw.admin("POST", "/api/keys", json={"bots": [slug], "name": slug})
            assert r.status_code == 201, r.text
            gw.keys[slug] = r.json()["key"]
        try:
            yield gw
        finally:
            gw.close()


def test_chat_through_the_gateway_streams_token_by_token(gateway: Gateway) -> None:
    whole = gateway.ask("plain", max_tokens=12)
    # What vLLM itself answers to the same prompt, passed through unchanged (what a 135M model
    # says about France varies with the CPU's kernels; that it arrives intact does not).
    system = _system_prompt(gateway, "plain")
    assert whole and whole == gateway.direct(gateway.backend.model_name, 12, system=system)
    pieces: list[str] = []
    usage = None
    stream = gateway.client("plain").chat.completions.create(
        model="plain",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        usage = chunk.usage or usage
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(pieces) == whole and len(pieces) > 3  # passed through piece by piece
    assert usage is not None and len(pieces) <= usage.completion_tokens <= 12  # (+ end token)
    rows = gateway.rows("plain")
    assert [r.status for r in rows] == ["completed", "completed"] and rows[1].streamed


def test_two_bots_on_different_adapters_of_one_base_model(
    gateway: Gateway, adapters: dict[str, Path]
) -> None:
    gateway.promote("shop", gateway.release("shop", "shop-v1", adapters["shop-v1"]))
    gateway.promote("bank", gateway.release("bank", "bank-v1", adapters["bank-v1"]))
    assert gateway.listed() == {"shop-v1", "bank-v1"}
    plain, shop, bank = gateway.ask("plain"), gateway.ask("shop"), gateway.ask("bank")
    assert len({plain, shop, bank}) == 3  # each bot answers with its own weights
    assert [r.status for r in gateway.rows("shop") + gateway.rows("bank")] == ["completed"] * 2
    # The gateway passes vLLM's answer for that adapter through unchanged.
    assert gateway.direct("shop-v1", system=_system_prompt(gateway, "shop")) == shop


def test_an_adapter_hot_loaded_while_requests_are_in_flight(
    gateway: Gateway, adapters: dict[str, Path]
) -> None:
    before = gateway.ask("bank")
    answering: list[str] = []  # bots whose stream has its first token

    def stream(bot: str) -> str:
        out = gateway.client(bot).chat.completions.create(
            model=bot,
            messages=LONG_QUESTION,  # type: ignore[arg-type]
            max_tokens=120,
            temperature=0,
            stream=True,
        )
        text: list[str] = []
        for chunk in out:
            for choice in chunk.choices:
                if choice.delta.content:
                    if not text:
                        answering.append(bot)
                    text.append(choice.delta.content)
        return "".join(text)

    with ThreadPoolExecutor(6) as pool:
        running = [pool.submit(stream, bot) for bot in ("plain", "shop", "bank") * 2]

        def generating() -> bool:
            for future in running:  # a stream that failed says why, instead of a timeout
                if future.done() and future.exception() is not None:
                    raise AssertionError(f"a stream failed: {future.exception()!r}")
            return len(answering) >= 3

        wait_for(generating, 180, "three streams to be generating")
        v2 = gateway.release("bank", "bank-v2", adapters["bank-v2"], candidate=True)
        assert "bank-v2" in gateway.listed()  # loaded while the others generate
        answers = [f.result(timeout=120) for f in running]
    assert all(answers)
    assert all(
        r.status == "completed" for bot in ("plain", "shop", "bank") for r in gateway.rows(bot)
    )
    gateway.promote("bank", v2)
    after = gateway.ask("bank")
    assert after != before and after == gateway.ask("bank")
    assert gateway.listed() == {"shop-v1", "bank-v2"}  # bank-v1 retired: unloaded


def test_promote_and_roll_back_under_load_fail_no_request(gateway: Gateway) -> None:
    v2 = _live_release(gateway, "bank")
    stop = threading.Event()
    outcomes: list[str] = []

    def load(bot: str) -> None:
        while not stop.is_set():
            try:
                outcomes.append(gateway.ask(bot, max_tokens=8) and "ok")
            except openai.APIError as exc:  # pragma: no cover - the assertion below reports it
                outcomes.append(f"failed: {exc}")

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load, bot) for bot in ("bank", "bank", "shop", "plain")]
        wait_for(lambda: len(outcomes) >= 4, 60, "first answers")
        for step in ("rollback", "promote", "rollback"):
            if step == "rollback":
                r = gateway.admin("POST", "/api/bots/bank/releases/rollback")
                assert r.status_code == 200, r.text
            else:
                gateway.promote("bank", v2)
            count = len(outcomes)
            wait_for(lambda: len(outcomes) >= count + 4, 60, f"answers after the {step}")
        stop.set()
        for w in workers:
            w.result(timeout=60)
    assert outcomes and all(o == "ok" for o in outcomes), [o for o in outcomes if o != "ok"]
    # bank-v1 is live again; bank-v2 is its candidate again (a rollback restores both).
    assert {"shop-v1", "bank-v1"} <= gateway.listed()


def test_an_adapter_the_server_lost_is_loaded_again_and_the_request_retried(
    gateway: Gateway,
) -> None:
    expected = gateway.ask("shop")
    r = httpx.post(
        gateway.backend.base_url + "/unload_lora_adapter",
        headers={"authorization": f"Bearer {gateway.vllm_key}"},
        json={"lora_name": "shop-v1"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    # (The reconciliation pass may put it back first; either way the request must not fail.)
    again = gateway.ask("shop")  # 404 from vLLM -> reload -> answered, no error
    assert again and "shop-v1" in gateway.listed()
    assert gateway.rows("shop")[-1].status == "completed"
    # The same weights again: the same answer, but for a near-tie that another LoRA slot's
    # arithmetic may break (random weights make this adapter's text degenerate).
    assert _similarity(again, expected) > 0.8, (again, expected)


def test_a_client_that_disconnects_aborts_its_vllm_request(gateway: Gateway) -> None:
    generated = _metric(gateway, "vllm:generation_tokens_total")
    request = gateway.chat_request("plain", messages=LONG_QUESTION, max_tokens=900, stream=True)
    with httpx.stream(**request) as resp:
        lines = resp.iter_lines()
        for _ in range(5):
            next(lines)
    # vLLM stops generating for nobody: the request ends long before its 900 tokens.
    wait_for(lambda: _running_requests(gateway) == 0, 20, "vLLM to drop the request")
    assert _metric(gateway, "vllm:generation_tokens_total") - generated < 300
    row = wait_for(
        lambda: (last := gateway.rows("plain")[-1]).status == "interrupted" and last, 20, "the row"
    )
    assert row.answer and row.finish_reason == "interrupted"


def test_vllm_errors_come_back_in_the_envelope(gateway: Gateway) -> None:
    before = len(gateway.rows("plain"))
    # More than the 1024 tokens of context vLLM was started with.
    r = httpx.request(**gateway.chat_request("plain", messages=QUESTION, max_tokens=2000))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert len(gateway.rows("plain")) == before  # bad input: nothing stored


def test_vllm_killed_mid_stream_gives_a_clean_error_then_recovers(gateway: Gateway) -> None:
    server = gateway.backend.server
    assert server is not None and server.pid is not None
    shop_answer = gateway.ask("shop")
    events: list[dict[str, Any]] = []
    request = gateway.chat_request("shop", messages=LONG_QUESTION, max_tokens=600, stream=True)
    with httpx.stream(**request) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[6:]))
            if len(events) == 3:
                os.killpg(server.pid, signal.SIGKILL)
    assert "error" in events[-1], events[-1]  # the stream ends with an error in the envelope
    assert events[-1]["error"]["type"] == "upstream_error"
    assert gateway.rows("shop")[-1].status == "error"
    # While vLLM is down: a prompt 502 in the envelope, not a hang.
    started = time.monotonic()
    r = httpx.request(**gateway.chat_request("plain", messages=QUESTION, max_tokens=8))
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
    assert time.monotonic() - started < 5
    # The supervisor starts vLLM again; the gateway loads the live and candidate adapters back.
    wait_for(lambda: server.restarts == 1, 300, "vLLM to be restarted")
    wait_for(lambda: {"shop-v1", "bank-v1", "bank-v2"} <= gateway.listed(), 30, "adapters back")
    assert gateway.ask("shop") == shop_answer
    log = server.config.log_path.read_text()
    assert log.count("===== shadowdesk: starting vLLM") == 2


def _similarity(a: str, b: str) -> float:
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b).ratio()


def _live_release(gateway: Gateway, bot: str) -> str:
    r = gateway.admin("GET", f"/api/bots/{bot}/releases")
    return next(str(v["id"]) for v in r.json() if v["status"] == "live")


def _system_prompt(gateway: Gateway, bot: str) -> str:
    r = gateway.admin("GET", f"/api/bots/{bot}")
    return str(r.json()["system_prompt"])


def _metrics(gateway: Gateway) -> str:
    return httpx.get(gateway.backend.base_url.removesuffix("/v1") + "/metrics", timeout=10).text


def _metric(gateway: Gateway, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in _metrics(gateway).splitlines()
        if line.startswith(prefix)
    )


def _running_requests(gateway: Gateway) -> float:
    return _metric(gateway, "vllm:num_requests_running")
