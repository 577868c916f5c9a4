"""POST /v1/chat/completions: answers, streaming, stored exchanges and every bad-input path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Harness, chat_body


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.strip().split("\n\n"):
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def assert_envelope(
    response: Any, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


def test_completion_answers_and_stores_the_exchange(harness: Harness) -> None:
    r = harness.client.post(
        "/v1/chat/completions",
        json=chat_body(temperature=0.1, top_p=0.9, seed=7, stop=["zz"]),
        headers=harness.auth(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "acme"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the bot."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    conversation = r.headers["X-Conversation-Id"]
    assert conversation.startswith("conv_")

    # The bot's system prompt leads the prompt; request parameters reach the backend.
    messages, params, _ = harness.backend.calls[-1]
    assert messages[0] == {"role": "system", "content": "You are Acme's bot."}
    assert (params.temperature, params.top_p, params.seed, params.stop) == (0.1, 0.9, 7, ("zz",))

    [row] = harness.exchanges()
    assert row.id == body["id"] == r.headers["X-Exchange-Id"]
    assert row.conversation_id == conversation
    assert row.answer == "Hello from the bot."
    assert row.status == "completed" and row.finish_reason == "stop"
    assert row.messages == [{"role": "user", "content": "How do I reset my password?"}]
    assert row.release_id is not None and row.release_id.startswith("rel_")
    assert row.completion_tokens == 5 and row.prompt_tokens == body["usage"]["prompt_tokens"]
    assert row.latency_ms > 0
    assert row.streamed is False


def test_bot_defaults_apply_when_the_request_is_silent(harness: Harness) -> None:
    harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    _, params, _ = harness.backend.calls[-1]
    assert (params.temperature, params.top_p) == (0.7, 1.0)
    assert params.max_tokens == 64  # bot default 256, capped by the configured limit


def test_max_tokens_gives_length(harness: Harness) -> None:
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2), headers=harness.auth()
    )
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["choices"][0]["message"]["content"] == "Hello from"


def test_client_conversation_id_is_kept(harness: Harness) -> None:
    for _ in range(2):
        r = harness.client.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={**harness.auth(), "X-Conversation-Id": "ticket-42"},
        )
        assert r.headers["X-Conversation-Id"] == "ticket-42"
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(conversation_id="ticket-43"), headers=harness.auth()
    )
    assert r.headers["X-Conversation-Id"] == "ticket-43"
    assert [row.conversation_id for row in harness.exchanges()] == [
        "ticket-42",
        "ticket-42",
        "ticket-43",
    ]


def test_streaming_sends_openai_chunks_and_stores_before_the_end(harness: Harness) -> None:
    with harness.client.stream(
        "POST",
        "/v1/chat/completions",
        headers=harness.auth(),
        json=chat_body(stream=True, stream_options={"include_usage": True}),
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "Hello from the bot."
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [f["choices"][0]["finish_reason"] for f in finals] == ["stop"]
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    [row] = harness.exchanges()
    assert row.streamed and row.answer == content and row.status == "completed"
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


def test_streaming_without_usage_option_has_no_usage_chunk(harness: Harness) -> None:
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers=harness.auth()
    )
    events = sse_events(r.text)
    assert all("usage" not in e for e in events[:-1])


# -- bad input: the right 4xx, the envelope, and no row ---------------------------------------------

BAD_BODIES: list[tuple[str, Any, int, str | None, str | None]] = [
    ("not json", "{not json", 400, "invalid_json", None),
    ("json array", "[1, 2]", 400, "invalid_json", None),
    ("missing messages", {"model": "acme"}, 400, None, "messages"),
    ("missing model", {"messages": [{"role": "user", "content": "hi"}]}, 400, None, "model"),
    ("wrong type", chat_body(temperature="hot"), 400, None, "temperature"),
    ("temperature out of range", chat_body(temperature=3), 400, None, "temperature"),
    (
        "bad role",
        {"model": "acme", "messages": [{"role": "wizard", "content": "hi"}]},
        400,
        None,
        None,
    ),
    ("empty messages", {"model": "acme", "messages": []}, 400, "empty_messages", "messages"),
    ("empty content", chat_body("   "), 400, "empty_message", "messages.0.content"),
    ("message too long", chat_body("x" * 501), 400, "message_too_long", "messages.0.content"),
    (
        "too many messages",
        {"model": "acme", "messages": [{"role": "user", "content": "hi"}] * 9},
        400,
        "too_many_messages",
        "messages",
    ),
    (
        "conversation too long",
        {"model": "acme", "messages": [{"role": "user", "content": "x" * 400}] * 5},
        400,
        "conversation_too_long",
        "messages",
    ),
    (
        "last not user",
        {"model": "acme", "messages": [{"role": "assistant", "content": "hi"}]},
        400,
        "last_not_user",
        "messages",
    ),
    ("max_tokens over limit", chat_body(max_tokens=65), 400, "max_tokens_too_large", "max_tokens"),
    ("n > 1", chat_body(n=2), 400, "unsupported_parameter", "n"),
    (
        "tools",
        chat_body(tools=[{"type": "function", "function": {"name": "f"}}]),
        400,
        "unsupported_parameter",
        "tools",
    ),
    ("logprobs", chat_body(logprobs=True), 400, "unsupported_parameter", "logprobs"),
    ("penalty", chat_body(presence_penalty=1.0), 400, "unsupported_parameter", "presence_penalty"),
    ("unknown field", chat_body(temprature=0.5), 400, None, "temprature"),
    ("too many stops", chat_body(stop=["a", "b", "c", "d", "e"]), 400, None, "stop"),
    (
        "stream_options without stream",
        chat_body(stream_options={"include_usage": True}),
        400,
        None,
        "stream_options",
    ),
    (
        "unknown bot",
        {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]},
        404,
        "model_not_found",
        "model",
    ),
    # Found by a security pass: each was a 5xx (or stored something) before.
    (
        "lone surrogate",
        '{"model": "acme", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
        400,
        "invalid_value",
        None,
    ),
    (
        "100,000 nested arrays",
        '{"model": "acme", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}",
        400,
        "invalid_json",
        None,
    ),
    (
        "5,000-digit integer",
        '{"model": "acme", "messages": [{"role": "user", "content": "hi"}], "seed": '
        + "9" * 5000
        + "}",
        400,
        "invalid_json",
        None,
    ),
    ("seed past 64 bits", chat_body(seed=2**80), 400, None, "seed"),
    ("long stop", chat_body(stop=["x" * 101]), 400, None, "stop"),
    ("max_tokens as a string", chat_body(max_tokens="5"), 400, None, "max_tokens"),
    ("stream as a string", chat_body(stream="yes"), 400, None, "stream"),
    (
        "conversation id with CRLF",
        chat_body(conversation_id="a\r\nX-Injected: 1"),
        400,
        None,
        "conversation_id",
    ),
    ("conversation id with NUL", chat_body(conversation_id="a\x00b"), 400, None, "conversation_id"),
    ("conversation id not ASCII", chat_body(conversation_id="ça-va"), 400, None, "conversation_id"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code", "param"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_input_gets_an_envelope_and_stores_nothing(
    harness: Harness, case: str, body: Any, status: int, code: str | None, param: str | None
) -> None:
    kwargs = (
        {"content": body, "headers": {**harness.auth(), "Content-Type": "application/json"}}
        if isinstance(body, str)
        else {"json": body, "headers": harness.auth()}
    )
    r = harness.client.post("/v1/chat/completions", **kwargs)
    error = assert_envelope(r, status, code, param)
    assert error["type"] in {"invalid_request_error", "not_found_error"}
    assert harness.exchange_count() == 0
    assert harness.backend.calls == []


@pytest.mark.parametrize("value", [b"\xc3\xbc-conversation", b"a b", b"x" * 201])
def test_a_bad_conversation_header_is_refused_before_anything_runs(
    harness: Harness, value: bytes
) -> None:
    headers = {**harness.auth(), "X-Conversation-Id": value}
    r = harness.client.post("/v1/chat/completions", json=chat_body(), headers=headers)  # type: ignore[arg-type]
    assert_envelope(r, 400, "invalid_conversation_id", "X-Conversation-Id")
    assert harness.exchange_count() == 0 and harness.backend.calls == []


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer wrong-key"])
def test_missing_or_wrong_key_is_401(harness: Harness, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    r = harness.client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    error = assert_envelope(r, 401)
    assert error["type"] == "authentication_error"
    assert harness.exchange_count() == 0


def test_revoked_key_is_401(harness: Harness) -> None:
    admin = harness.auth(harness.settings.admin_key.get_secret_value())  # type: ignore[union-attr]
    created = harness.client.post("/api/keys", json={"bots": ["acme"]}, headers=admin).json()
    assert (
        harness.client.post(
            "/v1/chat/completions", json=chat_body(), headers=harness.auth(created["key"])
        ).status_code
        == 200
    )
    harness.client.post(f"/api/keys/{created['id']}/revoke", headers=admin).raise_for_status()
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(), headers=harness.auth(created["key"])
    )
    assert assert_envelope(r, 401, "revoked_api_key")
    assert harness.exchange_count() == 1


def test_key_for_another_bot_is_403(harness: Harness) -> None:
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(), headers=harness.auth(harness.other_key)
    )
    assert assert_envelope(r, 403, "forbidden", "model")["type"] == "permission_error"
    assert harness.exchange_count() == 0


def test_prompt_that_does_not_fit_is_400_and_not_stored(harness: Harness) -> None:
    harness.backend.mode = "too_long"
    for stream in (False, True):
        r = harness.client.post(
            "/v1/chat/completions", json=chat_body(stream=stream), headers=harness.auth()
        )
        assert_envelope(r, 400, "context_length_exceeded", "messages")
    assert harness.exchange_count() == 0


# -- backend failures: 502 / 504, and the exchange stored with its error -----------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_backend_failure_is_502_and_stored(harness: Harness, stream: bool) -> None:
    harness.backend.mode = "fail"
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(stream=stream), headers=harness.auth()
    )
    assert assert_envelope(r, 502, "backend_error")["type"] == "upstream_error"
    [row] = harness.exchanges()
    assert row.status == "error" and "backend failed" in (row.error or "")


@pytest.mark.parametrize("stream", [False, True])
def test_backend_timeout_is_504_and_stored(harness: Harness, stream: bool) -> None:
    harness.backend.mode = "hang"
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(stream=stream), headers=harness.auth()
    )
    assert_envelope(r, 504, "backend_timeout")
    [row] = harness.exchanges()
    assert row.status == "error" and "did not answer" in (row.error or "")


def test_backend_failing_mid_stream_ends_with_an_error_event(harness: Harness) -> None:
    harness.backend.mode = "fail_midway"
    r = harness.client.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers=harness.auth()
    )
    assert r.status_code == 200  # headers were already sent
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "backend_error"
    [row] = harness.exchanges()
    assert row.status == "error" and row.answer == "Hello from"


def test_every_error_path_uses_the_envelope(harness: Harness) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("DELETE", "/v1/chat/completions"),
        ("GET", "/api/bots"),
    ]:
        r = harness.client.request(method, path, headers=harness.auth())
        assert_envelope(r, r.status_code)
        assert r.status_code in {403, 404, 405}


def test_client_feedback_is_stored_and_thumbs_down_feeds_review(harness: Harness) -> None:
    r = harness.client.post("/v1/chat/completions", json=chat_body(), headers=harness.auth())
    exchange_id = r.json()["id"]
    url = f"/v1/exchanges/{exchange_id}/feedback"
    assert (
        harness.client.post(url, json={"rating": "up"}, headers=harness.auth()).status_code == 200
    )
    assert harness.exchanges()[0].feedback == 1
    assert (
        harness.client.post(url, json={"rating": "down"}, headers=harness.auth()).status_code == 200
    )
    assert harness.exchanges()[0].feedback == -1
    assert_envelope(
        harness.client.post(url, json={"rating": "meh"}, headers=harness.auth()),
        400,
        param="rating",
    )
    assert_envelope(
        harness.client.post(url, json={"rating": "down"}, headers=harness.auth(harness.other_key)),
        404,
    )
    assert_envelope(harness.client.post(url, json={"rating": "down"}), 401)
    from api.models import Job

    with harness.client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        kinds = [
            j.kind
            for j in session.query(Job).filter(
                Job.payload["exchange_id"].as_string() == exchange_id
            )
        ]
    assert kinds.count("review_feed") == 2  # one with the answer, one for the thumbs-down
