"""The vLLM supervisor's own logic, fast, against a stand-in server: a small Python HTTP server started
the way vLLM is (same command line, same environment), so that restarts, logs, start-up failures and
stopping the whole process group are checked in seconds. The real vLLM goes through the same code in
tests/api/routes/test_vllm_gateway.py (start-up, kill mid-stream, restart, adapters back)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from serving.vllm_server import VLLMServer, VLLMServerConfig, VLLMStartError, default_dtype

# Serves /health on the --port it is given (like vLLM), writes its argv and the variables vLLM
# reads to the log, and starts a child process of its own (vLLM's engine) that must die with it.
STAND_IN = textwrap.dedent(
    """
    import http.server, os, subprocess, sys
    args = sys.argv[1:]
    print("argv", " ".join(args), flush=True)
    print("env", os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING"),
          os.environ.get("VLLM_CPU_KVCACHE_SPACE"), flush=True)
    if os.environ.get("STAND_IN_FAIL"):
        print("RuntimeError: no model here", flush=True)
        sys.exit(3)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    port = int(args[args.index("--port") + 1])

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


@pytest.fixture
def python(tmp_path: Path) -> Path:
    """An 'interpreter' that runs the stand-in whatever module it is asked for."""
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    launcher = tmp_path / "python"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    launcher.chmod(0o755)
    return launcher


def config(python: Path, tmp_path: Path, **extra: object) -> VLLMServerConfig:
    return VLLMServerConfig(
        python=python,
        model=lambda: tmp_path / "model",
        served_name="smollm2",
        log_path=tmp_path / "logs" / "vllm.log",
        max_loras=3,
        max_lora_rank=32,
        max_cpu_loras=12,
        cpu_kv_cache_gib=1.5,
        health_interval_s=0.1,
        start_timeout_s=20,
        **extra,  # type: ignore[arg-type]
    )


def child_pid(log: str, nth: int = 0) -> int:
    return [int(line.split()[1]) for line in log.splitlines() if line.startswith("child ")][nth]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (it only waits for its parent to collect it).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def wait_until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_starts_with_lora_limits_and_restarts_after_a_crash(python: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        server = VLLMServer(config(python, tmp_path))
        restarted: list[int] = []

        async def listener() -> None:
            restarted.append(server.restarts)

        server.on_restart(listener)
        url = server.url
        await server.start()
        try:
            assert await server.healthy()
            log = server.log_tail()
            argv = next(line for line in log.splitlines() if line.startswith("argv "))
            assert "-m vllm.entrypoints.openai.api_server" in argv
            for expected in (
                f"--model {tmp_path / 'model'}",
                "--served-model-name smollm2",
                "--enable-lora",
                "--max-loras 3",
                "--max-lora-rank 32",
                "--max-cpu-loras 12",
                "--enforce-eager",
                f"--api-key {server.api_key}",
            ):
                assert expected in argv
            assert "env True 1.5" in log  # runtime LoRA loading on, KV cache sized
            assert server.api_key not in log.split("argv")[0]  # the banner hides the key

            pid = server.pid
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)  # vLLM dies
            await wait_until(lambda: server.restarts == 1 and restarted == [1])
            assert server.url == url and await server.healthy() and server.pid != pid
            assert server.log_tail(100_000).count("===== shadowdesk: starting vLLM") == 2
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_stop_ends_the_server_and_the_processes_it_started(python: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        server = VLLMServer(config(python, tmp_path))
        await server.start()
        await wait_until(lambda: "child " in server.log_tail())
        child = child_pid(server.log_tail())
        assert alive(child)
        await server.stop()
        assert server.pid is None and not await server.healthy(timeout=0.5)
        await wait_until(lambda: not alive(child), 10)

    asyncio.run(scenario())


def test_a_server_that_dies_while_starting_fails_with_its_log(
    python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    server = VLLMServer(config(python, tmp_path))
    with pytest.raises(VLLMStartError, match="exited with code 3") as info:
        asyncio.run(server.start())
    assert "RuntimeError: no model here" in str(info.value)


def test_a_missing_vllm_environment_says_how_to_install_it(tmp_path: Path) -> None:
    server = VLLMServer(config(tmp_path / "no-such-python", tmp_path))
    with pytest.raises(VLLMStartError, match="make vllm"):
        asyncio.run(server.start())


def test_bfloat16_only_where_the_cpu_computes_it(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert default_dtype(cpuinfo) == "bfloat16"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 amx_bf16 amx_tile\n")
    assert default_dtype(cpuinfo) == "bfloat16"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 fma\n")  # emulated bfloat16 is 4x slower
    assert default_dtype(cpuinfo) == "float32"
