"""Data-parallel training: two processes under `torchrun` (gloo on the CPU; on GPUs the same code
runs under `accelerate launch` with the configs in docker/accelerate) train the same adapter as one
process that accumulates the same micro-batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serving.packaged_model import cached_hf_folder, packaged_gguf_path
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    {"instruction": f"What is fact number {i}?", "output": f"Fact {i} is that owls glow {i} times."}
    for i in range(16)
]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_train_what_one_process_accumulating_their_batches_trains(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    cache = getattr(pytestconfig, "cache", None)
    models = cache.mkdir("smollm2-hf") if cache is not None else tmp_path / "hf"
    base = cached_hf_folder(packaged_gguf_path(), models)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in ROWS))
    common = (
        "method: lora\nmax_steps: 2\nmax_length: 64\nbatch_tokens: 64\nlearning_rate: 0.001\n"
        "lora_dropout: 0.0\nwarmup_ratio: 0.0\ngradient_checkpointing: false\ntorch_threads: 1\n"
    )
    (tmp_path / "one.yaml").write_text(common + "gradient_accumulation: 2\n")
    (tmp_path / "two.yaml").write_text(common + "gradient_accumulation: 1\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    training = ["-m", "training", "--rows", str(rows), "--base-model", str(base)]

    one = run(
        [
            sys.executable,
            *training,
            "--output",
            str(tmp_path / "one"),
            "--config",
            str(tmp_path / "one.yaml"),
        ],
        env,
    )
    assert one.returncode == 0, one.stderr
    two = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),  # a fixed port could be held by anything on the machine
            *training,
            "--output",
            str(tmp_path / "two"),
            "--config",
            str(tmp_path / "two.yaml"),
        ],
        env,
    )
    assert two.returncode == 0, two.stderr
    [summary] = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    single = json.loads(one.stdout.strip().splitlines()[-1])
    # The same micro-batches made each step: the same tokens and (averaged) the same loss...
    assert summary["steps"] == single["steps"] == 2
    assert summary["tokens"] == single["tokens"]
    assert summary["final_loss"] == pytest.approx(single["final_loss"], rel=1e-3)
    # ...and the same weights.
    a = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-5)
