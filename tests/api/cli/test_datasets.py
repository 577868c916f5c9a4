"""`shadowdesk datasets …` and `shadowdesk plan` as a new user runs them: generate from documents with
the packaged model, review, snapshot, export and import back identical, bad files reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli

MANUAL = """# Zephyr router

## Reset

To reset your Zephyr router, hold the reset button on the back for ten seconds until the light
blinks orange. The router then restarts with its factory settings.
"""

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHADOWDESK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHADOWDESK_TORCH_THREADS", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def ok(*args: str) -> str:
    r = runner.invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_generate_with_the_packaged_model_review_snapshot_and_plan(data_dir: Path) -> None:
    (data_dir / "manual.md").write_text(MANUAL)
    ok("bots", "create", "zephyr", "--scope", "Zephyr routers")
    ok("ingest", "zephyr", str(data_dir / "manual.md"))
    out = ok(
        "datasets",
        "generate",
        "zephyr",
        "faq",
        "--max-chunks",
        "1",
        "--pairs",
        "2",
        "--max-tokens",
        "160",
    )
    # SmolLM2-135M writes what it writes: the summary counts rows, drops and tokens either way.
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("faq: ") and " rows from 1 chunks " in summary and "rows/s" in summary
    assert "completion tokens" in summary
    shown = ok("datasets", "show", "zephyr", "faq")
    assert "generated: " in shown and "from 1 chunks" in shown
    # Interrupted or not, a second run generates no chunk twice.
    again = ok("datasets", "generate", "zephyr", "faq", "--max-chunks", "1")
    assert "0 rows from 0 chunks" in again.strip().splitlines()[-1]

    listed = ok("datasets", "rows", "zephyr", "faq", "--source", "generated", "--limit", "100")
    assert "pending" in listed
    ok("datasets", "bulk", "zephyr", "faq", "approve", "--category", "refusal")
    row_id = next(line.split()[1] for line in listed.splitlines() if line.startswith("│ row_"))
    ok("datasets", "review", "zephyr", "faq", row_id, "edit", "--output", "Hold reset for 10 s.")
    out = ok("datasets", "snapshot", "zephyr", "faq")
    assert "created v1" in out and "(estimated)" not in out  # tokens from the model's tokenizer
    assert "unchanged since v1" in ok("datasets", "snapshot", "zephyr", "faq")
    out = ok("plan", "zephyr", "--dataset", "faq", "--gpu-memory", "0")
    assert "Recommended: lora" in out and "CPU only" in out and "Sources:" in out

    # Trained into an immutable, versioned adapter with its manifest; the next run is v2.
    out = ok("train", "zephyr", "--dataset", "faq", "--max-steps", "2", "--gate-rows", "0")
    assert any(line.startswith("zephyr-v1: 2 steps, loss ") for line in out.splitlines())
    assert "gate: not run" in out
    manifest = json.loads(
        (data_dir / "data" / "adapters" / "zephyr-v1" / "manifest.json").read_text()
    )
    assert manifest["method"] == "lora" and manifest["dataset"]["snapshot_version"] == 1
    assert Path(manifest["artifact"], "adapter_model.safetensors").exists()
    bad = data_dir / "bad.yaml"
    bad.write_text("method: magic\n")
    r = runner.invoke(cli, ["train", "zephyr", "--dataset", "faq", "--config", str(bad)])
    assert r.exit_code == 2 and "method" in r.output


def test_import_export_round_trip_and_bad_lines(data_dir: Path) -> None:
    ok("bots", "create", "acme")
    rows = [
        {"instruction": "How do I reset it?", "input": "", "output": "Hold reset, 10 s."},
        {
            "instruction": "Is it waterproof?",
            "input": "Spec sheet: IP44.",
            "output": 'Splash-proof only, "IP44".',
        },
        {
            "instruction": "And the warranty?",
            "input": "",
            "output": "Two years.",
            "system": "Be brief.",
            "history": [["Hi", "Hello! How can I help?"]],
        },
    ]
    source = data_dir / "alpaca.json"
    source.write_text(json.dumps(rows, indent=2))
    out = ok("datasets", "import", "acme", "curated", str(source), "--approve")
    assert "curated: 3 rows imported" in out
    for fmt, kind in (("alpaca", "jsonl"), ("sharegpt", "jsonl"), ("alpaca", "csv")):
        first = data_dir / f"out.{fmt}.{kind}"
        ok("datasets", "export", "acme", "curated", str(first), "--format", fmt)
        name = f"copy-{fmt}-{kind}"
        ok("datasets", "import", "acme", name, str(first), "--approve")
        second = data_dir / f"again.{fmt}.{kind}"
        ok("datasets", "export", "acme", name, str(second), "--format", fmt)
        assert second.read_bytes() == first.read_bytes()
    back = [json.loads(line) for line in (data_dir / "out.alpaca.jsonl").read_text().splitlines()]
    assert back == [{k: v for k, v in r.items()} for r in rows]

    # Dolly cannot carry a system prompt or earlier turns: that row is named, the rest written.
    r = runner.invoke(
        cli,
        ["datasets", "export", "acme", "curated", str(data_dir / "d.jsonl"), "--format", "dolly"],
    )
    assert r.exit_code == 0 and "1 rows not written" in r.output and "wrote 2 rows" in r.output

    bad = data_dir / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{oops\n" + json.dumps({"instruction": "x"}) + "\n")
    r = runner.invoke(cli, ["datasets", "import", "acme", "messy", str(bad)])
    assert r.exit_code == 1
    assert f"{bad}:2: invalid JSON" in r.output and f"{bad}:3: missing 'output'" in r.output
    assert "messy: 1 rows imported, 2 bad lines" in r.output
    r = runner.invoke(cli, ["datasets", "import", "acme", "messy", str(bad), "--format", "nope"])
    assert r.exit_code == 2 and "Invalid --format" in r.output
    (data_dir / "odd.jsonl").write_text(json.dumps({"colour": "blue"}) + "\n")
    r = runner.invoke(cli, ["datasets", "import", "acme", "messy", str(data_dir / "odd.jsonl")])
    assert r.exit_code == 1 and "Error:" in r.output
    r = runner.invoke(cli, ["datasets", "snapshot", "acme", "messy"])
    assert r.exit_code == 1 and "no approved or edited rows" in r.output
