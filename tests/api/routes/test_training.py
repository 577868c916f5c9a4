"""Training runs through the admin API on the packaged SmolLM2: a run trains in the worker with
progress, is gated on the validation rows, and can be cancelled between steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Harness
from tests.api.routes.test_chat import assert_envelope
from tests.support.servers import wait_for

pytestmark = pytest.mark.slow

FACTS = [
    ("How long does the Glimmerbox battery last?", "41 hours on the warm setting."),
    ("How do I pair the Glimmerbox?", "Hold the owl button for five seconds."),
    ("What colour is the owl light when charging?", "Amber while charging."),
    ("Is the Glimmerbox waterproof?", "No, it is splash-proof only."),
    ("Where is the serial number?", "On the label under the base."),
    ("Can I dim the Glimmerbox?", "Yes, turn the owl's head to dim it."),
]


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """One database (production's): a run takes a minute, and what differs between the two
    databases is covered by the rest of the suite."""
    return postgres_url


def admin(h: Harness) -> dict[str, str]:
    return h.auth(h.settings.admin_key.get_secret_value())  # type: ignore[union-attr]


def run_of(h: Harness, run_id: str) -> dict[str, Any]:
    r = h.client.get(f"/api/bots/acme/training-runs/{run_id}", headers=admin(h))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_run_trains_in_the_background_is_gated_and_can_be_cancelled(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    h.client.post(
        "/api/bots/acme/datasets", headers=admin(h), json={"name": "faq", "validation_share": 0.5}
    )
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FACTS * 3]
    r = h.client.post(
        "/api/bots/acme/datasets/faq/import",
        headers=admin(h),
        files={"file": ("faq.jsonl", "\n".join(json.dumps(x) for x in rows).encode())},
        data={"approve": "true"},
    )
    assert r.json()["imported"] == 18
    config = {"method": "lora", "max_steps": 3, "max_length": 256, "batch_tokens": 512}
    r = h.client.post(
        "/api/bots/acme/training-runs",
        headers=admin(h),
        json={"dataset": "faq", "config": config, "gate_rows": 2},
    )
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["status"] == "queued" and run["job_id"]
    # One run at a time per bot.
    again = h.client.post(
        "/api/bots/acme/training-runs", headers=admin(h), json={"dataset": "faq", "config": config}
    )
    assert_envelope(again, 409, code="run_in_progress")

    done = wait_for(
        lambda: (r := run_of(h, run["id"]))["status"] in ("succeeded", "failed") and r,
        timeout=300,
        what="the training run",
    )
    assert done["status"] == "succeeded", done["error"]
    assert done["name"] == "acme-v1" and done["metrics"]["steps"] == 3
    assert done["losses"] and done["snapshot"]["snapshot_version"] == 1
    assert Path(done["artifact_path"], "adapter_model.safetensors").exists()
    gate = done["gate"]
    assert done["snapshot"]["validation_rows"] >= 1, "the split gave no held-out row"
    assert gate["rows"] >= 1 and len(gate["questions"]) == gate["rows"]
    assert {"similarity", "cosine", "rouge_l"} <= set(gate["candidate"]) and gate["reasons"]
    # The worker commits the job's own status just after the run's.
    job = wait_for(
        lambda: (
            (j := h.client.get(f"/api/jobs/{run['job_id']}", headers=admin(h)).json())["status"]
            != "running"
            and j
        ),
        timeout=30,
        what="the job to finish",
    )
    assert job["status"] == "succeeded" and job["progress"]["step"] == 3

    # A long run, cancelled once it is under way: it stops after its current step.
    long = h.client.post(
        "/api/bots/acme/training-runs",
        headers=admin(h),
        json={"dataset": "faq", "config": {**config, "max_steps": 500}, "gate_rows": 0},
    ).json()
    wait_for(lambda: run_of(h, long["id"])["metrics"].get("step"), timeout=300, what="a step")
    r = h.client.post(f"/api/bots/acme/training-runs/{long['id']}/cancel", headers=admin(h))
    assert r.json()["status"] == "cancelling"
    stopped = wait_for(
        lambda: (r := run_of(h, long["id"]))["status"] == "cancelled" and r,
        timeout=120,
        what="the cancellation",
    )
    assert stopped["error"].startswith("stopped at step") and stopped["name"] == "acme-v2"
    assert_envelope(
        h.client.post(f"/api/bots/acme/training-runs/{long['id']}/cancel", headers=admin(h)),
        409,
        code="run_ended",
    )
    listed = h.client.get("/api/bots/acme/training-runs", headers=admin(h)).json()
    assert [x["id"] for x in listed] == [long["id"], run["id"]]


def test_runs_refuse_what_cannot_be_an_adapter_and_default_to_the_learning_dataset(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    r = h.client.post(
        "/api/bots/acme/training-runs", headers=admin(h), json={"adapter_path": str(tmp_path)}
    )
    assert_envelope(r, 400, param="adapter_path")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    r = h.client.post(
        "/api/bots/acme/training-runs", headers=admin(h), json={"adapter_path": str(tmp_path)}
    )
    assert_envelope(r, 400, param="adapter_path")
    assert "only LoRA" in r.json()["error"]["message"]
    assert_envelope(
        h.client.post(
            "/api/bots/acme/training-runs", headers=admin(h), json={"dataset": "no-such"}
        ),
        404,
        param="dataset",
    )
    # No dataset named: the bot's 'learning' dataset, made on first use.
    assert h.client.get("/api/bots/acme/datasets/learning", headers=admin(h)).status_code == 404
    r = h.client.post("/api/bots/acme/training-runs", headers=admin(h), json={"gate_rows": 0})
    assert r.status_code == 202, r.text
    assert r.json()["config"]["include_corrections"] is True
    assert h.client.get("/api/bots/acme/datasets/learning", headers=admin(h)).status_code == 200
    # Nothing reviewed yet: the run fails with the reason instead of staying queued.
    failed = wait_for(
        lambda: (x := run_of(h, r.json()["id"]))["status"] == "failed" and x,
        timeout=60,
        what="the run to fail",
    )
    assert "no approved or edited rows" in failed["error"]
