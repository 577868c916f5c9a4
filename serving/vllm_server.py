"""`VLLMServer`: a local vLLM OpenAI-compatible server run and watched by the gateway.

vLLM lives in its own virtual environment (it pins its own torch and transformers), so it is started
as a subprocess with that environment's interpreter. The supervisor:

- starts it with LoRA serving on (runtime loading allowed) and the LoRA limits it is given;
- waits until `/health` answers, failing with the tail of vLLM's log when it exits or takes too long;
- watches it: a process that exits, or stops answering `/health` for `unhealthy_after` checks in a
  row, is killed and started again (backing off 1 s, 2 s, 4 s … up to 60 s between failed starts);
- appends everything vLLM prints to one log file (rotated once past `log_max_bytes`);
- tells its listeners after every restart, because a restarted vLLM has forgotten its adapters.

The process runs in its own session, so stopping it also stops the engine processes vLLM spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)

#: The API server module; the `vllm` command of the CPU repackaging cannot find its own version.
_ENTRYPOINT = "vllm.entrypoints.openai.api_server"
_LOG_TAIL_BYTES = 4000


class VLLMStartError(RuntimeError):
    """vLLM could not be started (missing interpreter, exited during start-up, start-up timeout)."""


@dataclass(frozen=True)
class VLLMServerConfig:
    """How to run vLLM. `python` is the interpreter of the environment vLLM is installed in."""

    python: Path
    #: An HF model folder (or hub id), or a function that prepares one (run once, off the loop).
    model: Path | str | Callable[[], Path]
    served_name: str
    log_path: Path
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port, chosen once and kept across restarts
    dtype: str = "auto"  # see `default_dtype`
    max_model_len: int | None = None  # None: the model's own context length
    #: Adapters that can run in one batch, the largest LoRA rank, adapters cached in memory.
    max_loras: int = 4
    max_lora_rank: int = 16
    max_cpu_loras: int = 16
    #: GiB of memory for the KV cache on CPU builds (VLLM_CPU_KVCACHE_SPACE).
    cpu_kv_cache_gib: float | None = 2.0
    #: Skip torch.compile warm-up: start-up ~40 s instead of ~140 s on CPU, similar throughput.
    enforce_eager: bool = True
    extra_args: Sequence[str] = ()
    start_timeout_s: float = 600.0
    health_interval_s: float = 5.0
    unhealthy_after: int = 3
    log_max_bytes: int = 50 * 1024 * 1024


@dataclass
class VLLMServer:
    """One supervised vLLM process (see the module docstring)."""

    config: VLLMServerConfig
    #: vLLM's own key, so that nothing else on the host uses the server (it guards `/v1` only).
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    restarts: int = 0
    _port: int = 0
    _model: str | None = None
    _process: asyncio.subprocess.Process | None = None
    _watch: asyncio.Task[None] | None = None
    _listeners: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _stopping: bool = False

    def __post_init__(self) -> None:
        # Chosen once, so the URL the gateway talks to survives restarts.
        self._port = self.config.port or _free_port(self.config.host)

    @property
    def url(self) -> str:
        """Base URL of the server (without `/v1`)."""
        return f"http://{self.config.host}:{self._port}"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def on_restart(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Call `listener` once vLLM answers again after a restart."""
        self._listeners.append(listener)

    def command(self) -> list[str]:
        c = self.config
        args = [
            str(c.python),
            "-m",
            _ENTRYPOINT,
            "--model",
            str(self._model or c.model),
            "--served-model-name",
            c.served_name,
            "--host",
            c.host,
            "--port",
            str(self._port),
            "--disable-uvicorn-access-log",
            "--dtype",
            c.dtype,
            "--api-key",
            self.api_key,
            "--enable-lora",
            "--max-loras",
            str(c.max_loras),
            "--max-lora-rank",
            str(c.max_lora_rank),
            "--max-cpu-loras",
            str(max(c.max_cpu_loras, c.max_loras)),
        ]
        if c.max_model_len is not None:
            args += ["--max-model-len", str(c.max_model_len)]
        if c.enforce_eager:
            args.append("--enforce-eager")
        return args + list(c.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Adapters come and go at run time through /v1/load_lora_adapter.
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.config.cpu_kv_cache_gib is not None:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.config.cpu_kv_cache_gib:g}")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")  # a self-hosted server phones nowhere
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        # The gateway's own virtual environment must not leak into vLLM's.
        for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
            env.pop(name, None)
        return env

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start vLLM and wait until it answers; then watch it. Raises `VLLMStartError`."""
        if not Path(self.config.python).is_file():
            raise VLLMStartError(
                f"no Python interpreter at {self.config.python} for vLLM; install vLLM in its own "
                "virtual environment (`make vllm`) or point the gateway at a running vLLM server"
            )
        self._stopping = False
        if self._model is None:
            model = self.config.model
            self._model = str(await asyncio.to_thread(model) if callable(model) else model)
        await self._launch()
        self._watch = asyncio.create_task(self._supervise(), name="vllm-supervisor")

    async def stop(self) -> None:
        """Stop watching, then stop vLLM and the processes it spawned (SIGTERM, SIGKILL after 20 s)."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._terminate()

    async def healthy(self, timeout: float = 2.0) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
                http.get(self.url + "/health") as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        try:
            with open(self.config.log_path, "rb") as file:
                file.seek(0, os.SEEK_END)
                file.seek(max(0, file.tell() - limit))
                return file.read().decode(errors="replace")
        except OSError:
            return ""

    # -- internals --------------------------------------------------------------------------------
    async def _launch(self) -> None:
        log_path = self.config.log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if log_path.exists() and log_path.stat().st_size > self.config.log_max_bytes:
            log_path.replace(log_path.with_suffix(log_path.suffix + ".1"))
        started = time.monotonic()
        with open(log_path, "ab") as out:
            banner = f"\n===== shadowdesk: starting vLLM at {time.strftime('%Y-%m-%d %H:%M:%S')}"
            out.write(f"{banner}: {' '.join(self._redacted(self.command()))}\n".encode())
            out.flush()
            self._process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # its own process group: stop() reaches the engine too
            )
        log.info("vLLM starting (pid %s, log %s)", self._process.pid, log_path)
        deadline = started + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise VLLMStartError(
                    f"vLLM exited with code {self._process.returncode} while starting; "
                    f"the end of {log_path}:\n{self.log_tail()}"
                )
            if await self.healthy():
                log.info("vLLM ready at %s in %.1f s", self.url, time.monotonic() - started)
                return
            await asyncio.sleep(0.5)
        await self._terminate()
        raise VLLMStartError(
            f"vLLM did not answer within {self.config.start_timeout_s:g} s; "
            f"the end of {log_path}:\n{self.log_tail()}"
        )

    async def _supervise(self) -> None:
        failures = 0
        backoff = 1.0
        while not self._stopping:
            await asyncio.sleep(self.config.health_interval_s)
            process = self._process
            if process is not None and process.returncode is None:
                if await self.healthy():
                    failures = 0
                    continue
                failures += 1
                if failures < self.config.unhealthy_after:
                    continue
                log.error("vLLM stopped answering /health; restarting it")
            else:
                code = process.returncode if process is not None else None
                log.error("vLLM exited (code %s); restarting it", code)
            failures = 0
            await self._terminate()
            while not self._stopping:
                try:
                    await self._launch()
                except VLLMStartError as exc:
                    log.error("vLLM restart failed, next try in %.0f s: %s", backoff, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                backoff = 1.0
                self.restarts += 1
                for listener in list(self._listeners):
                    try:
                        await listener()
                    except Exception:
                        log.exception("a vLLM restart listener failed")
                break

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), wait)
                break
            except TimeoutError:
                continue
        # Engine processes that outlived the server would hold the port and the memory.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def _redacted(self, args: list[str]) -> list[str]:
        return ["***" if a == self.api_key else a for a in args]


def default_dtype(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX), else float32: on an
    AVX2-only CPU vLLM's bfloat16 emulation made the first token 4x slower (0.85 s vs 0.2 s) and
    halved tokens/s at 8 concurrent (22 vs 41) in our measurements. GPU servers set their dtype."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return "bfloat16"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
