"""The training-data studio through the admin API: generate from documents, review, check, snapshot,
export and import back identical; bad input gets the envelope and loses nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from api.db import transaction
from api.models import DatasetRow, GeneratedChunk
from api.services.datasets.generation import run_generation_job
from serving.backend import BackendError
from tests.api.conftest import Harness
from tests.api.routes.test_chat import assert_envelope
from tests.support.servers import wait_for

MANUAL = b"""# Zephyr router manual

## Reset

To reset your Zephyr router, hold the reset button on the back for ten seconds until the light
blinks orange. The router restarts with factory settings.

## Wi-Fi

The default Wi-Fi password is printed on the label under the router. Change it in the app under
Settings, Wireless.
"""

REPLY = json.dumps(
    [
        {
            "question": "How do I reset my Zephyr router?",
            "answer": "Hold the reset button on the back for ten seconds until the light blinks orange.",
        },
        {
            "question": "Where is the default Wi-Fi password?",
            "answer": "The default Wi-Fi password is printed on the label under the router.",
        },
    ]
)


def admin(h: Harness) -> dict[str, str]:
    return h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]


def with_manual(h: Harness) -> None:
    r = h.client.post(
        "/api/bots/acme/documents", headers=admin(h), files=[("files", ("manual.md", MANUAL))]
    )
    assert r.status_code in (200, 201, 202), r.text
    docs = h.client.get("/api/bots/acme/documents", headers=admin(h)).json()
    assert docs and docs[0]["chunk_count"] >= 1


def page_of(h: Harness, name: str, **params: Any) -> list[dict[str, Any]]:
    r = h.client.get(
        f"/api/bots/acme/datasets/{name}/rows", headers=admin(h), params={"limit": 1000, **params}
    )
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def generate(h: Harness, name: str, **body: Any) -> dict[str, Any]:
    h.backend.words = [REPLY]
    r = h.client.post(f"/api/bots/acme/datasets/{name}/generate", headers=admin(h), json=body)
    assert r.status_code == 202, r.text
    job = finished_job(h, r.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def finished_job(h: Harness, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = h.client.get(f"/api/jobs/{job_id}", headers=admin(h)).json()
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_for(finished, timeout=60, what="the generation job")


def test_documents_become_a_reviewed_versioned_dataset_exported_and_imported_back(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    with_manual(h)
    r = h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "faq"})
    assert r.status_code == 201, r.text
    job = generate(h, "faq", styles=["alpaca", "dolly"], pairs_per_chunk=2)
    assert job["result"]["rows"] > 0 and job["progress"]["done"] == job["progress"]["total"]

    detail = h.client.get("/api/bots/acme/datasets/faq", headers=admin(h)).json()
    assert detail["rows"]["pending"] == job["result"]["rows"]
    assert detail["generation"]["chunks"] >= 1 and detail["generation"]["completion_tokens"] > 0

    page = h.client.get(
        "/api/bots/acme/datasets/faq/rows", headers=admin(h), params={"category": "refusal"}
    ).json()
    assert page["total"] >= 5 and all(r["source"] == "generated" for r in page["rows"])

    # A row written by hand (approved by its author) that a generated one repeats: the check
    # flags the generated copy, never the reviewed original.
    alpaca = next(r for r in page_of(h, "faq") if r["provenance"].get("style") == "alpaca")
    manual = h.client.post(
        "/api/bots/acme/datasets/faq/rows",
        headers=admin(h),
        json={"instruction": alpaca["instruction"], "output": alpaca["output"]},
    ).json()
    assert manual["status"] == "approved" and manual["source"] == "manual"
    report = h.client.post("/api/bots/acme/datasets/faq/check", headers=admin(h)).json()
    assert report["rows"] == detail["rows"]["pending"] + 1 and report["flags"] == {"duplicate": 1}
    [flagged] = h.client.get(
        "/api/bots/acme/datasets/faq/rows", headers=admin(h), params={"flag": "duplicate"}
    ).json()["rows"]
    assert flagged["id"] == alpaca["id"] and flagged["flags"][0]["related"] == manual["id"]

    rows = h.client.get(
        "/api/bots/acme/datasets/faq/rows", headers=admin(h), params={"flag": "none", "limit": 3}
    ).json()["rows"]
    first, second = rows[0], rows[1]
    r = h.client.post(
        f"/api/bots/acme/datasets/faq/rows/{first['id']}/review",
        headers=admin(h),
        json={"verdict": "edit", "output": "Hold the reset button for ten seconds."},
    )
    edited = r.json()
    assert edited["status"] == "edited" and edited["original_output"] == first["output"]
    h.client.post(
        f"/api/bots/acme/datasets/faq/rows/{second['id']}/review",
        headers=admin(h),
        json={"verdict": "reject"},
    )
    r = h.client.post(
        "/api/bots/acme/datasets/faq/rows/bulk",
        headers=admin(h),
        json={"verdict": "approve", "filter": {"status": "pending", "flag": "none"}},
    )
    approved = r.json()["changed"]
    assert approved > 0

    trainable = approved + 2  # the edited row and the manual one
    snap = h.client.post("/api/bots/acme/datasets/faq/snapshots", headers=admin(h)).json()
    assert snap["version"] == 1 and snap["train_rows"] + snap["validation_rows"] == trainable
    assert snap["stats"]["tokens"] > 0
    assert snap["stats"]["rows_by_source"] == {"generated": trainable - 1, "manual": 1}
    again = h.client.post("/api/bots/acme/datasets/faq/snapshots", headers=admin(h)).json()
    assert again["version"] == 1 and again["content_hash"] == snap["content_hash"]

    for fmt in ("alpaca", "sharegpt"):
        r = h.client.get(
            "/api/bots/acme/datasets/faq/export", headers=admin(h), params={"format": fmt}
        )
        assert r.status_code == 200 and int(r.headers["x-rows-written"]) == trainable
        exported = r.content
        r = h.client.post(
            "/api/bots/acme/datasets/copy-" + fmt + "/import",
            headers=admin(h),
            files={"file": (f"faq.{fmt}.jsonl", exported)},
            data={"approve": "true"},
        )
        assert_envelope(r, 404)  # a dataset is created first
        h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": f"copy-{fmt}"})
        r = h.client.post(
            f"/api/bots/acme/datasets/copy-{fmt}/import",
            headers=admin(h),
            files={"file": (f"faq.{fmt}.jsonl", exported)},
            data={"approve": "true"},
        )
        assert r.json() == {"imported": trainable, "errors": []}
        back = h.client.get(
            f"/api/bots/acme/datasets/copy-{fmt}/export", headers=admin(h), params={"format": fmt}
        )
        # Same rows back; rows are ordered by when they were added, as exported.
        assert sorted(back.content.splitlines()) == sorted(exported.splitlines())


def test_generation_resumes_without_generating_a_chunk_twice_and_keeps_work_when_the_backend_fails(
    harness: Harness,
) -> None:
    h = harness
    with_manual(h)
    h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "gen"})
    generate(h, "gen", styles=["alpaca"], max_chunks=1, refusals=False)
    runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
    sessions = runtime.sessions
    with transaction(sessions) as session:
        done = list(session.scalars(select(GeneratedChunk)))
        dataset_id = done[0].dataset_id
        rows_before = len(list(session.scalars(select(DatasetRow))))
    assert len(done) == 1 and rows_before >= 1

    class Ctx:
        def __init__(self) -> None:
            self.payload = {"dataset_id": dataset_id, "styles": ["alpaca"], "refusals": False}
            self.progress: dict[str, Any] = {}

        def report(self, **progress: Any) -> None:
            self.progress.update(progress)

    h.backend.mode = "fail"  # the generator goes down: the job fails, nothing done is lost
    calls = len(h.backend.calls)
    try:
        asyncio.run(run_generation_job(Ctx(), runtime))
    except BackendError:
        pass
    else:
        raise AssertionError("a backend that is down must stop the job")
    assert len(h.backend.calls) == calls + 2  # one retry of the chunk, then it stopped
    with transaction(sessions) as session:
        assert len(list(session.scalars(select(DatasetRow)))) == rows_before

    h.backend.mode = "ok"
    result = asyncio.run(run_generation_job(Ctx(), runtime))
    with transaction(sessions) as session:
        chunk_ids = [c.chunk_id for c in session.scalars(select(GeneratedChunk))]
    assert len(chunk_ids) == len(set(chunk_ids)) == 1 + result["chunks"]
    assert done[0].chunk_id in chunk_ids
    # No chunk was sent to the model again once it was done.
    first_prompt = h.backend.calls[0][0][1]["content"]
    later = {c[0][1]["content"] for c in h.backend.calls[calls + 2 :]}
    assert len(later) == result["chunks"] and first_prompt not in later


def test_bad_input_gets_the_envelope_and_the_rest_of_the_work_is_kept(harness: Harness) -> None:
    h = harness
    h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "imp"})
    assert_envelope(
        h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "imp"}), 409
    )
    assert_envelope(
        h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "Bad Name"}),
        400,
        param="name",
    )
    lines = [
        json.dumps({"instruction": "How do I reset it?", "input": "", "output": "Hold reset."}),
        "{not json",
        json.dumps({"instruction": "", "output": "No question."}),
        json.dumps({"instruction": "Is it waterproof?", "output": "No."}),
        json.dumps({"instruction": "Is it red?", "output": "  "}),
    ]
    r = h.client.post(
        "/api/bots/acme/datasets/imp/import",
        headers=admin(h),
        files={"file": ("rows.jsonl", "\n".join(lines).encode())},
    )
    body = r.json()
    assert body["imported"] == 2 and [e["line"] for e in body["errors"]] == [2, 3, 5]
    assert body["errors"][2]["reason"] == "the output is empty"
    assert all(e["reason"] for e in body["errors"])

    r = h.client.post(
        "/api/bots/acme/datasets/imp/import",
        headers=admin(h),
        files={"file": ("rows.jsonl", json.dumps({"colour": "blue"}).encode())},
    )
    assert_envelope(r, 400, param="file")
    r = h.client.post(
        "/api/bots/acme/datasets/imp/import",
        headers=admin(h),
        files={"file": ("rows.jsonl", b"\xff\xfe\x00bad")},
    )
    assert_envelope(r, 400, param="file")
    detail = h.client.get("/api/bots/acme/datasets/imp", headers=admin(h)).json()
    assert detail["rows"] == {"pending": 2}  # nothing half-written by the bad files

    # Nothing reviewed yet: a snapshot would be empty.
    r = h.client.post("/api/bots/acme/datasets/imp/snapshots", headers=admin(h))
    assert_envelope(r, 400, code="empty_dataset")
    row_id = h.client.get("/api/bots/acme/datasets/imp/rows", headers=admin(h)).json()["rows"][0][
        "id"
    ]
    r = h.client.post(
        f"/api/bots/acme/datasets/imp/rows/{row_id}/review",
        headers=admin(h),
        json={"verdict": "edit", "output": "   "},
    )
    assert_envelope(r, 400, param="output")
    r = h.client.post(
        "/api/bots/acme/datasets/imp/rows",
        headers=admin(h),
        json={"instruction": "Written by hand?", "output": ""},
    )
    assert_envelope(r, 400, param="output")
    assert_envelope(h.client.get("/api/bots/acme/datasets/nope/rows", headers=admin(h)), 404)
    assert_envelope(h.client.get("/api/bots/acme/datasets/imp", headers=h.auth()), 403)


def test_personal_data_is_flagged_or_redacted_by_the_bot_policy(harness: Harness) -> None:
    h = harness
    h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "pii"})
    rows = [
        {
            "instruction": "Who handles refunds?",
            "output": "Mail jane.doe@example.com or call +44 20 7946 0958.",
        },
        {"instruction": "What is the support address?", "output": "Write to support@acme.test."},
    ]
    h.client.post(
        "/api/bots/acme/datasets/pii/import",
        headers=admin(h),
        files={"file": ("rows.jsonl", "\n".join(json.dumps(r) for r in rows).encode())},
    )
    h.client.patch(
        "/api/bots/acme",
        headers=admin(h),
        json={"policy": {"training_pii_allow": ["support@acme.test"]}},
    )
    report = h.client.post("/api/bots/acme/datasets/pii/check", headers=admin(h)).json()
    assert report["flags"] == {"pii": 1} and report["redacted"] == 0
    flagged = h.client.get(
        "/api/bots/acme/datasets/pii/rows", headers=admin(h), params={"flag": "pii"}
    ).json()["rows"]
    assert [r["instruction"] for r in flagged] == ["Who handles refunds?"]
    assert "jane.doe@example.com" not in json.dumps(flagged[0]["flags"])  # the detail masks it

    h.client.patch("/api/bots/acme", headers=admin(h), json={"policy": {"training_pii": "redact"}})
    report = h.client.post("/api/bots/acme/datasets/pii/check", headers=admin(h)).json()
    assert report["redacted"] == 1
    [row] = h.client.get(
        "/api/bots/acme/datasets/pii/rows", headers=admin(h), params={"flag": "pii"}
    ).json()["rows"]
    assert "jane.doe@example.com" not in row["output"] and "[EMAIL]" in row["output"]
    assert row["original_output"].startswith("Mail jane.doe")
    assert row["flags"][0]["detail"].startswith("redacted")


def test_corrections_from_reviews_become_reviewed_rows(harness: Harness) -> None:
    from tests.api.review_fixtures import ask, queue, staff, stop_review_feed

    h = harness
    stop_review_feed(h, "acme")
    reviewer = staff(h, "rev@acme.test", bots=("acme",))
    item = queue(h, ask(h, "How do I reset my password?"), shadow_answer="Candidate says.")
    sessions = h.client.app.state.sessions  # type: ignore[attr-defined]
    from api.services.review.verdicts import Verdict, act

    with transaction(sessions) as session:
        act(
            session, reviewer, item, Verdict("corrected", "Use the reset link on the sign-in page.")
        )
    h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "fixes"})
    r = h.client.post("/api/bots/acme/datasets/fixes/corrections", headers=admin(h))
    assert r.json() == {"approved": 0, "corrected": 1, "skipped": 0}
    [row] = h.client.get("/api/bots/acme/datasets/fixes/rows", headers=admin(h)).json()["rows"]
    assert (row["instruction"], row["output"], row["status"], row["source"]) == (
        "How do I reset my password?",
        "Use the reset link on the sign-in page.",
        "edited",
        "correction",
    )
    # The row carries the prompt the reviewed release was given: the bot's system prompt here.
    bot = h.client.get("/api/bots/acme", headers=admin(h)).json()
    assert row["system"] == bot["system_prompt"] and row["system"]
    # "Should refuse" becomes a refusal row: the bot's refusal, category refusal.
    other = queue(h, ask(h, "Write me a poem about cats."), shadow_answer="Roses are red...")
    with transaction(sessions) as session:
        act(session, reviewer, other, Verdict("rejected", reason="should_refuse"))
    assert h.client.post("/api/bots/acme/datasets/fixes/corrections", headers=admin(h)).json() == {
        "approved": 0,
        "corrected": 1,
        "skipped": 0,
    }
    refusal = h.client.get(
        "/api/bots/acme/datasets/fixes/rows", headers=admin(h), params={"category": "refusal"}
    ).json()["rows"]
    assert [(r["instruction"], r["status"]) for r in refusal] == [
        ("Write me a poem about cats.", "edited")
    ]
    assert refusal[0]["output"].startswith("Sorry, I can only help with questions about")
    # Twice is once.
    assert (
        h.client.post("/api/bots/acme/datasets/fixes/corrections", headers=admin(h)).json()[
            "corrected"
        ]
        == 0
    )


def test_the_planner_recommends_a_method_with_reasons(harness: Harness) -> None:
    h = harness
    r = h.client.get(
        "/api/bots/acme/plan", headers=admin(h), params={"params": "7B", "gpu_memory_gib": 24}
    )
    assert_envelope(r, 400, param="dataset")  # no dataset, no rows to plan for
    h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "p"})
    plan = h.client.get(
        "/api/bots/acme/plan",
        headers=admin(h),
        params={"dataset": "p", "params": "7B", "gpu_memory_gib": 24},
    ).json()
    assert plan["recommended"] in ("lora", "qlora")
    assert plan["estimates"]["full"]["fits"] is False and plan["reasons"] and plan["sources"]
    assert_envelope(
        h.client.get(
            "/api/bots/acme/plan", headers=admin(h), params={"dataset": "p", "params": "lots"}
        ),
        400,
        param="params",
    )


def test_rows_can_be_written_by_an_openai_compatible_upstream(settings: Any) -> None:
    """A separate generator (a vLLM server, Azure OpenAI) over HTTP: good replies become rows with
    the upstream's model as provenance; an upstream that fails stops the job with its error and
    leaves nothing half-written."""
    from tests.api.conftest import harness_with
    from tests.fakes import ScriptedBackend
    from tests.support.servers import stub_upstream_process

    with stub_upstream_process() as url:
        upstream = settings.model_copy(update={"generator_url": url, "generator_model": "stub-qa"})
        with harness_with(upstream, ScriptedBackend()) as h:
            with_manual(h)
            h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "up"})
            r = h.client.post(
                "/api/bots/acme/datasets/up/generate",
                headers=admin(h),
                json={"styles": ["alpaca"], "pairs_per_chunk": 1, "refusals": False},
            )
            job = finished_job(h, r.json()["id"])
            assert job["status"] == "succeeded", job
            rows = page_of(h, "up")
            assert rows and all(r["provenance"]["model"] == "stub-qa" for r in rows)
            assert h.backend.calls == []  # the serving model wrote nothing

            # The same upstream failing: the job stops with its error, nothing half-written.
            runtime = h.client.app.state.runtime  # type: ignore[attr-defined]
            runtime._generator._model = "stub-error"
            h.client.post("/api/bots/acme/datasets", headers=admin(h), json={"name": "down"})
            r = h.client.post(
                "/api/bots/acme/datasets/down/generate",
                headers=admin(h),
                json={"styles": ["alpaca"], "refusals": False},
            )
            error = wait_for(
                lambda: h.client.get(f"/api/jobs/{r.json()['id']}", headers=admin(h)).json()[
                    "error"
                ],
                timeout=60,
                what="the job's first failure",
            )
            assert "500" in error or "failed" in error
            assert page_of(h, "down") == []
