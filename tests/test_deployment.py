"""The scaled-out deployment in docker/ is a valid compose file whose parts fit together: every
service that reads or writes adapters sees them at the same path, the GPU parts ask for a GPU, and
the gateway waits for a healthy vLLM. (`docker-compose config` needs no Docker engine.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_compose_file_is_valid_and_its_parts_fit_together() -> None:
    env = {
        **os.environ,
        "SHADOWDESK_ADMIN_KEY": "a-long-random-admin-key-for-the-check",
        "SHADOWDESK_SESSION_SECRET": "a-long-random-session-secret",
        "SHADOWDESK_VLLM_API_KEY": "a-long-random-key-for-vllm",
        "TORCH_INDEX_URL": "https://example.invalid/cpu",
    }
    done = subprocess.run(
        ["docker-compose", "-f", "docker/compose.yaml", "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert {"postgres", "chroma", "vllm", "migrate", "gateway", "worker", "trainer"} <= set(
        services
    )

    def mount(service: str, volume: str) -> str:
        for entry in services[service]["volumes"]:
            # docker-compose 1.x prints "source:target:mode", 2.x a mapping.
            source, target = (
                entry.split(":")[:2]
                if isinstance(entry, str)
                else (entry["source"], entry["target"])
            )
            if source == volume:
                return str(target)
        raise AssertionError(f"{service} does not mount {volume}")

    # Adapters are written by the trainer and loaded by vLLM from the path the database records.
    assert mount("trainer", "data") == mount("gateway", "data") == mount("vllm", "data") == "/data"
    assert mount("trainer", "models") == mount("vllm", "models") == "/models"
    for service in ("gateway", "worker", "trainer"):
        assert services[service]["environment"]["SHADOWDESK_MODEL"] == "/models/base"
    for gpu in ("vllm", "trainer"):
        devices = services[gpu]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert services["gateway"]["depends_on"]["vllm"]["condition"] == "service_healthy"
    # The gateways serve through vLLM with its key; vLLM publishes no port to clients.
    gw_env = services["gateway"]["environment"]
    assert (gw_env["SHADOWDESK_BACKEND"], gw_env["SHADOWDESK_VLLM_URL"]) == (
        "vllm",
        "http://vllm:8000/v1",
    )
    assert gw_env["SHADOWDESK_VLLM_API_KEY"] == services["vllm"]["environment"]["VLLM_API_KEY"]
    assert "ports" not in services["vllm"]
    assert "healthcheck" in services["gateway"] and "healthcheck" in services["vllm"]
    # The CPU workers leave training runs to the GPU worker.
    assert "training" not in services["worker"]["command"]
    assert services["trainer"]["build"]["dockerfile"].endswith("trainer.Dockerfile")
