"""Issue: a bot answers from the company's documents with citations and refuses what is out of
scope. Real MiniLM embeddings and real Chroma; a scripted backend records the prompts it gets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db import transaction
from api.models import Exchange
from api.services.access.audit import SYSTEM_ACTOR
from api.services.access.keys import create_key
from api.services.bots.management import BotCreate, create_bot
from api.settings import Settings
from serving.knowledge.demo import demo_documents
from tests.fakes import ScriptedBackend

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-for-tests-0123456789"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, ScriptedBackend, str]]:
    """One app with the demo bot (its documentation indexed on first start) for the whole module."""
    data = tmp_path_factory.mktemp("demo")
    backend = ScriptedBackend(words=["The", " ring", " blinks", " red", " [1]."])
    app = create_app(Settings(_env_file=None, data_dir=data, admin_key=ADMIN), backend=backend)  # type: ignore[call-arg]
    with TestClient(app) as client:
        with transaction(app.state.sessions) as session:
            from api.services.bots.management import get_bot

            key = create_key(session, bots=[get_bot(session, "demo")], actor=SYSTEM_ACTOR)[1]
        yield client, backend, key


def _rows(client: TestClient) -> list[Exchange]:
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        return list(session.query(Exchange).order_by(Exchange.created_at))


def test_demo_bot_starts_with_its_documentation(demo) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = demo
    docs = client.get("/api/bots/demo/documents", headers=_auth(ADMIN)).json()
    assert sorted(d["source"] for d in docs) == sorted(p.name for p in demo_documents())
    assert all(d["chunk_count"] > 0 for d in docs)
    pdf = next(d for d in docs if d["format"] == "pdf")
    assert pdf["page_count"] == 3


def test_in_scope_question_is_grounded_and_cited(demo) -> None:  # type: ignore[no-untyped-def]
    client, backend, key = demo
    r = client.post(
        "/v1/chat/completions",
        headers=_auth(key),
        json={
            "model": "demo",
            "messages": [{"role": "user", "content": "Why is the ring on my hub blinking red?"}],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    messages, _, _ = backend.calls[-1]
    system = messages[0]["content"]
    assert "Sources:" in system and "[1]" in system  # numbered sources in the prompt
    assert messages[-1] == {"role": "user", "content": "Why is the ring on my hub blinking red?"}
    citations = body["citations"]
    assert citations and citations[0]["marker"] == 1  # the answer cites [1]
    assert {"document", "heading_path", "page", "score"} <= set(citations[0])
    assert 0 < citations[0]["score"] <= 1
    row = next(x for x in _rows(client) if x.id == body["id"])
    assert row.citations == citations and row.passages and row.guard["verdict"] == "answer"
    assert row.passages[0]["text"] and row.status == "completed"


def test_out_of_scope_question_is_refused_without_a_model_call(demo) -> None:  # type: ignore[no-untyped-def]
    client, backend, key = demo
    calls = len(backend.calls)
    for stream in (False, True):
        r = client.post(
            "/v1/chat/completions",
            headers=_auth(key),
            json={
                "model": "demo",
                "stream": stream,
                "messages": [{"role": "user", "content": "Tell me a story about pirates."}],
            },
        )
        assert r.status_code == 200
        text = r.json()["choices"][0]["message"]["content"] if not stream else r.text
        assert "Kestrel" in text  # the bot's refusal message
    assert len(backend.calls) == calls
    refused = [x for x in _rows(client) if x.status == "refused"]
    assert len(refused) == 2 and refused[0].guard["verdict"] == "refuse"


def test_a_bot_with_documents_refuses_off_topic_questions_without_topics(demo) -> None:  # type: ignore[no-untyped-def]
    """A new user's bot: a name, a scope sentence and documents, no topics or examples."""
    client, backend, _ = demo
    r = client.post(
        "/api/bots",
        headers=_auth(ADMIN),
        json={
            "slug": "zephyr",
            "name": "Zephyr scooters",
            "scope": "Support for Zephyr electric scooters.",
            "refusal_message": "Sorry, I only know about Zephyr scooters.",
        },
    )
    assert r.status_code == 201
    manual = (
        b"# Zephyr manual\n\n## Charging\n\nThe Zephyr scooter charges in 4 hours with the "
        b"supplied charger.\n\n## Brakes\n\nAdjust the rear brake with the 5 mm hex key.\n"
    )
    assert (
        client.post(
            "/api/bots/zephyr/documents",
            headers=_auth(ADMIN),
            files=[("files", ("manual.md", manual))],
        ).status_code
        == 200
    )
    with transaction(client.app.state.sessions) as session:  # type: ignore[attr-defined]
        from api.services.bots.management import get_bot

        key = create_key(session, bots=[get_bot(session, "zephyr")], actor=SYSTEM_ACTOR)[1]
    calls = len(backend.calls)

    def ask(text: str) -> dict:  # type: ignore[type-arg]
        r = client.post(
            "/v1/chat/completions",
            headers=_auth(key),
            json={"model": "zephyr", "messages": [{"role": "user", "content": text}]},
        )
        assert r.status_code == 200, r.text
        return r.json()

    cooking = ask("How do I cook pasta al dente?")
    assert (
        cooking["refused"] is True
        and "only know about Zephyr" in cooking["choices"][0]["message"]["content"]
    )
    hello = ask("Hello, what can you help me with?")
    reply = hello["choices"][0]["message"]["content"]
    assert "refused" not in hello and "Zephyr scooters" in reply and "Support for Zephyr" in reply
    assert len(backend.calls) == calls  # neither needed the model
    ask("How long does the scooter take to charge?")
    assert len(backend.calls) == calls + 1
    rows = {x.id: x for x in _rows(client)}
    assert rows[hello["id"]].flags == ["smalltalk"] and rows[hello["id"]].status == "completed"
    assert rows[hello["id"]].guard["verdict"] == "smalltalk"
    assert rows[cooking["id"]].status == "refused"


def test_upload_reports_each_bad_file_and_ingests_the_rest(demo) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = demo
    r = client.post("/api/bots", headers=_auth(ADMIN), json={"slug": "uploads", "name": "Uploads"})
    assert r.status_code == 201
    files = [
        (
            "files",
            (
                "guide.md",
                b"# Guide\n\n## Charging\n\nThe Zephyr scooter charges in 4 hours.\n",
                "text/markdown",
            ),
        ),
        ("files", ("empty.txt", b"", "text/plain")),
        ("files", ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "text/plain")),
        ("files", ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf")),
        ("files", ("data.bin", b"abc", "application/octet-stream")),
        ("files", ("latin1.txt", "Caf\xe9 cr\xe8me".encode("latin-1"), "text/plain")),
    ]
    r = client.post("/api/bots/uploads/documents", headers=_auth(ADMIN), files=files)
    assert r.status_code == 200, r.text
    results = {x["source"]: x for x in r.json()["results"]}
    assert results["guide.md"]["status"] == "ingested" and results["guide.md"]["chunk_count"] >= 1
    assert results["empty.txt"]["reason"] == "empty"
    assert results["photo.txt"]["reason"] == "binary"
    assert results["broken.pdf"]["reason"] == "corrupt"
    assert results["data.bin"]["reason"] == "unsupported_type"
    assert results["latin1.txt"]["reason"] == "encoding"
    assert all(x["message"] for x in r.json()["results"] if x["status"] == "error")
    docs = client.get("/api/bots/uploads/documents", headers=_auth(ADMIN)).json()
    assert [d["source"] for d in docs] == ["guide.md"]


def test_reingest_replaces_and_delete_removes(demo) -> None:  # type: ignore[no-untyped-def]
    client, backend, _ = demo
    client.post(
        "/api/bots",
        headers=_auth(ADMIN),
        json={"slug": "scooter", "name": "Scooter", "knowledge": {"guard": False}},
    )
    key = client.post("/api/keys", headers=_auth(ADMIN), json={"bots": ["scooter"]}).json()["key"]
    v1 = b"# Zephyr manual\n\n## Battery\n\nThe Zephyr battery lasts 30 km per charge.\n"
    v2 = b"# Zephyr manual\n\n## Battery\n\nThe Zephyr battery lasts 45 km per charge since firmware 2.\n"
    for content in (v1, v1, v2):
        r = client.post(
            "/api/bots/scooter/documents",
            headers=_auth(ADMIN),
            files=[("files", ("manual.md", content))],
        )
        assert r.status_code == 200
    assert r.json()["results"][0]["status"] == "ingested"
    [doc] = client.get("/api/bots/scooter/documents", headers=_auth(ADMIN)).json()
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    base = runtime.knowledge.base("minilm")
    passages = base.retriever.search(
        doc_id_bot(client, "scooter"), "How far does the battery last?", k=10
    )
    assert len(passages) == doc["chunk_count"]  # no duplicates, no stale chunks
    assert all("45 km" in p.text for p in passages)

    chat = {
        "model": "scooter",
        "messages": [{"role": "user", "content": "How far does the battery last?"}],
    }
    assert client.post("/v1/chat/completions", headers=_auth(key), json=chat).json()["citations"]
    r = client.delete(f"/api/bots/scooter/documents/{doc['doc_id']}", headers=_auth(ADMIN))
    assert r.json()["chunks_removed"] == doc["chunk_count"]
    assert client.get("/api/bots/scooter/documents", headers=_auth(ADMIN)).json() == []
    assert base.retriever.search(doc_id_bot(client, "scooter"), "battery", k=5) == []
    r = client.post("/v1/chat/completions", headers=_auth(key), json=chat)
    assert "citations" not in r.json()  # no knowledge left: a plain answer
    assert (
        client.delete(
            f"/api/bots/scooter/documents/{doc['doc_id']}", headers=_auth(ADMIN)
        ).status_code
        == 404
    )


def doc_id_bot(client: TestClient, slug: str) -> str:
    return client.get(f"/api/bots/{slug}", headers=_auth(ADMIN)).json()["id"]


def test_a_bot_never_retrieves_another_bots_chunks(demo) -> None:  # type: ignore[no-untyped-def]
    client, backend, _ = demo
    client.post(
        "/api/bots",
        headers=_auth(ADMIN),
        json={"slug": "secretive", "name": "S", "knowledge": {"guard": False}},
    )
    client.post(
        "/api/bots/secretive/documents",
        headers=_auth(ADMIN),
        files=[
            (
                "files",
                (
                    "secret.md",
                    b"# Secret\n\nThe Perch hub ring blinks red when the vault code is 4711.\n",
                ),
            )
        ],
    )
    key = create_key_for(client, "demo")
    r = client.post(
        "/v1/chat/completions",
        headers=_auth(key),
        json={
            "model": "demo",
            "messages": [{"role": "user", "content": "Why does the Perch hub ring blink red?"}],
        },
    )
    assert all(c["document"] != "secret.md" for c in r.json()["citations"])
    assert "4711" not in backend.calls[-1][0][0]["content"]


def create_key_for(client: TestClient, slug: str) -> str:
    return client.post("/api/keys", headers=_auth(ADMIN), json={"bots": [slug]}).json()["key"]


def test_large_upload_runs_as_a_job(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        admin_key=ADMIN,
        create_demo_bot=False,  # type: ignore[call-arg]
        sync_ingest_bytes=100,
    )
    app = create_app(settings, backend=ScriptedBackend())
    with TestClient(app) as client:
        client.post("/api/bots", headers=_auth(ADMIN), json={"slug": "big", "name": "Big"})
        files = [("files", (p.name, p.read_bytes())) for p in demo_documents()] + [
            ("files", ("bad.xyz", b"??"))
        ]
        r = client.post("/api/bots/big/documents", headers=_auth(ADMIN), files=files)
        assert r.status_code == 202
        job_url = r.headers["Location"]
        deadline = time.monotonic() + 120
        while (job := client.get(job_url, headers=_auth(ADMIN)).json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        assert job["result"]["ingested"] == len(demo_documents()) and job["result"]["failed"] == 1
        assert len(client.get("/api/bots/big/documents", headers=_auth(ADMIN)).json()) == len(
            demo_documents()
        )


def test_vector_store_down_gives_503_and_readyz_fails(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        admin_key=ADMIN,
        create_demo_bot=False,  # type: ignore[call-arg]
        chroma_url="http://127.0.0.1:9",
    )
    app = create_app(settings, backend=ScriptedBackend())
    with TestClient(app) as client:
        with transaction(app.state.sessions) as session:
            a = create_bot(
                session, BotCreate(slug="a", name="a"), base_model="x", actor=SYSTEM_ACTOR
            )
            b = create_bot(
                session,
                BotCreate(slug="b", name="b", knowledge={"answer_without_context": True}),
                base_model="x",
                actor=SYSTEM_ACTOR,
            )
            key = create_key(session, bots=[a, b], actor=SYSTEM_ACTOR)[1]
            from api.models import Document

            for bot in (a, b):  # as if documents had been ingested while the store was up
                session.add(
                    Document(
                        id="doc_x", bot_id=bot.id, source="x.md", content_hash="h", chunk_count=1
                    )
                )
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["vector_store"] == "unreachable"
        chat = {"messages": [{"role": "user", "content": "hello?"}]}
        r = client.post("/v1/chat/completions", headers=_auth(key), json={"model": "a", **chat})
        assert r.status_code == 503 and r.json()["error"]["code"] == "knowledge_unavailable"
        r = client.post("/v1/chat/completions", headers=_auth(key), json={"model": "b", **chat})
        assert r.status_code == 200
        [row] = _rows(client)
        assert row.flags == ["no_context"]


def test_cli_ingest_reports_bad_files_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli import app as cli

    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\nAlpha widgets are blue.\n")
    (folder / "sub" / "a.md").write_text("# A again\n\nBeta widgets are red.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    runner = CliRunner()
    assert runner.invoke(cli, ["bots", "create", "w"]).exit_code == 0
    r = runner.invoke(cli, ["ingest", "w", str(folder)])
    assert r.exit_code == 1, r.output
    assert "w: 2 ingested, 0 unchanged, 0 skipped, 1 failed" in r.output
    listed = runner.invoke(cli, ["documents", "list", "w"]).output
    assert "a.md" in listed and "sub/a.md" in listed  # same file name, different documents
    r = runner.invoke(cli, ["ingest", "w", str(folder / "*.md")])
    assert r.exit_code == 0 and "w: 0 ingested, 1 unchanged" in r.output
    # Deleting says what it did and nothing else: no model-loading bars or warnings.
    wide = runner.invoke(cli, ["documents", "list", "w"], env={"COLUMNS": "200"}).output
    doc_id = next(line.split()[1] for line in wide.splitlines() if " sub/a.md " in line)
    r = runner.invoke(cli, ["documents", "delete", "w", doc_id])
    assert r.exit_code == 0 and r.output.strip().splitlines() == [f"deleted {doc_id} (1 chunks)"]
    assert "sub/a.md" not in runner.invoke(cli, ["documents", "list", "w"]).output


def test_cli_ingests_a_documentation_site_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli import app as cli
    from tests.serving.knowledge.doc_sites import build_sphinx_site

    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path / "data"))
    site = build_sphinx_site(tmp_path / "html")
    runner = CliRunner()
    assert runner.invoke(cli, ["bots", "create", "q"]).exit_code == 0
    r = runner.invoke(cli, ["ingest", "q", str(site)])
    assert r.exit_code == 0, r.output  # assets and boilerplate are not failures
    assert "a sphinx site" in r.output
    summary = r.output.strip().splitlines()[-1]
    assert summary.startswith(
        "q: 3 ingested, 0 unchanged, 14 skipped (1 hidden, 1 navigation only, "
        "12 site boilerplate), 0 failed · "
    )
    assert "chunks/s" in summary and "✗" not in r.output
    listed = runner.invoke(cli, ["documents", "list", "q"], env={"COLUMNS": "200"}).output
    assert "usage/prune.html" in listed and "_sources" not in listed and "genindex" not in listed
    r = runner.invoke(
        cli, ["ingest", "q", str(site), "--exclude", "usage/*", "--include", "*.html"]
    )
    assert r.exit_code == 0 and "q: 0 ingested, 2 unchanged" in r.output


def test_changing_the_embedding_model_reembeds_as_a_job(tmp_path: Path) -> None:
    from tests.serving.knowledge.tiny_instructor import build_tiny_instructor

    model_dir = build_tiny_instructor(tmp_path / "tiny-instructor")
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        admin_key=ADMIN,  # type: ignore[call-arg]
        create_demo_bot=False,
    )
    app = create_app(settings, backend=ScriptedBackend())
    with TestClient(app) as client:
        client.post(
            "/api/bots",
            headers=_auth(ADMIN),
            json={"slug": "re", "name": "Re", "knowledge": {"guard": False}},
        )
        files = [("files", (p.name, p.read_bytes())) for p in demo_documents()[:2]]
        assert (
            client.post("/api/bots/re/documents", headers=_auth(ADMIN), files=files).status_code
            == 200
        )
        bot_id = doc_id_bot(client, "re")
        new_spec = f"instructor:{model_dir}"
        config = client.get("/api/bots/re/knowledge", headers=_auth(ADMIN)).json()
        r = client.put(
            "/api/bots/re/knowledge",
            headers=_auth(ADMIN),
            json={
                **config,
                "embedder": new_spec,
                "document_instruction": "Represent the lamp manual for retrieval:",
                "query_instruction": "Represent the customer question for retrieving manuals:",
            },
        )
        assert r.status_code == 202
        assert (
            r.json()["knowledge"]["embedder"] is None
        )  # not switched until every document is re-embedded
        job_url = f"/api/jobs/{r.json()['job']['id']}"
        deadline = time.monotonic() + 120
        while (job := client.get(job_url, headers=_auth(ADMIN)).json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        assert (
            client.get("/api/bots/re/knowledge", headers=_auth(ADMIN)).json()["embedder"]
            == new_spec
        )
        docs = client.get("/api/bots/re/documents", headers=_auth(ADMIN)).json()
        assert {d["embedder"] for d in docs} == {new_spec}
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        new_base = runtime.knowledge.base(new_spec)
        old_base = runtime.knowledge.base("minilm")
        assert new_base.retriever.search(bot_id, "pair a lamp", k=3)  # the new collection answers
        assert old_base.retriever.search(bot_id, "pair a lamp", k=3) == []  # the old one is gone
        key = create_key_for(client, "re")
        r = client.post(
            "/v1/chat/completions",
            headers=_auth(key),
            json={
                "model": "re",
                "messages": [{"role": "user", "content": "How do I pair a lamp?"}],
            },
        )
        assert r.status_code == 200 and r.json()["citations"]
