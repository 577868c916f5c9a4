"""Which engine on a CPU server, and what the gateway costs in front of vLLM: one run, same load.

    python bench/engines.py [--concurrency 1 8 16 32] [--max-tokens 80] [--rounds 2]
                            [--adapters 1 4 8] [--no-transformers]

1. vLLM (the CPU build from `make vllm`, started by `serving.vllm_server`) direct, and the same vLLM
   behind a real `shadowdesk serve --backend vllm` process (SQLite, every exchange stored): streamed
   answers at each concurrency, rounds interleaved (direct first, then the gateway first) so that
   drift on this noisy machine hits both alike. Same messages (the bot's system prompt is sent to
   vLLM direct too), same sampling seed per request, so both produce the same tokens.
2. vLLM direct with requests spread over 1, 4 and 8 distinct LoRA adapters vs the base model alone.
3. The in-process transformers backend behind `shadowdesk serve` (vLLM stopped first).

Prints tokens/s and time to first token (first non-empty content, not the first byte: vLLM sends an
empty role chunk first) p50/p99 for each, and the gateway/direct ratios. Goal: the gateway keeps
>= 99% of vLLM's tokens/s and adds <= 5 ms to TTFT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from api.runtime import default_vllm_python  # noqa: E402
from bench.batching import PROMPTS  # noqa: E402
from bench.gateway import shadowdesk, wait_ready  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from serving.packaged_model import cached_hf_folder, packaged_gguf_path  # noqa: E402
from serving.vllm_server import VLLMServer, VLLMServerConfig, default_dtype  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

CACHE = Path.home() / ".cache" / "shadowdesk-bench"
SEEDED = os.environ.get("BENCH_SEEDED", "1") == "1"
SYSTEM = "You are the support assistant of an online shop. Answer helpfully."


@dataclass
class Load:
    tokens: int = 0
    seconds: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    by_request: dict[int, float] = field(default_factory=dict)  # request index -> TTFT
    errors: list[str] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


async def stream_load(
    url: str,
    key: str,
    models: list[str],
    concurrency: int,
    requests: int,
    max_tokens: int,
    system: str | None,
) -> Load:
    """`requests` streamed answers, `concurrency` in flight; request i asks PROMPTS[i] of
    models[i % len(models)] with seed i."""
    out = Load()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    queue = list(range(requests))

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        body = {
            "model": models[i % len(models)],
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "top_p": 1.0,
            **({"seed": i} if SEEDED else {}),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        first: float | None = None
        usage = 0
        async with http.post(url + "/chat/completions", data=orjson.dumps(body)) as resp:
            if resp.status != 200:
                out.errors.append(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
                return
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                if first is None and b'"content":"' in line and b'"content":""' not in line:
                    first = time.perf_counter() - started
                if b'"completion_tokens":' in line:
                    chunk = orjson.loads(line[6:])
                    if chunk.get("usage"):
                        usage = int(chunk["usage"]["completion_tokens"])
        out.tokens += usage
        if first is not None:
            out.ttfts.append(first)
            out.by_request[i] = first

    async def worker(http: aiohttp.ClientSession) -> None:
        while queue:
            await one(http, queue.pop(0))

    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=600)
    ) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        out.seconds = time.perf_counter() - started
    return out


def summary(loads: list[Load]) -> dict[str, float]:
    ttfts = [t for load in loads for t in load.ttfts]
    return {
        "tok_s": statistics.median(load.tok_s for load in loads),
        "ttft_p50": statistics.median(percentile(load.ttfts, 50) for load in loads) * 1000,
        "ttft_p99": percentile(ttfts, 99) * 1000,
        "errors": sum(len(load.errors) for load in loads),
    }


def added_ttft_ms(direct: list[Load], via: list[Load]) -> float:
    """Median over requests of (TTFT through the gateway - TTFT direct), pairing the same request
    (same prompt and seed) of the same round: far less noisy than a difference of medians."""
    diffs = [
        (g.by_request[i] - d.by_request[i]) * 1000
        for d, g in zip(direct, via, strict=True)
        for i in d.by_request.keys() & g.by_request.keys()
    ]
    return statistics.median(diffs) if diffs else float("nan")


def make_adapters(base: Path, count: int) -> dict[str, Path]:
    """`count` LoRA adapters with random weights (cached between runs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    made = {}
    for i in range(1, count + 1):
        folder = CACHE / "adapters" / f"bench-lora-{i}"
        if not (folder / "adapter_config.json").is_file():
            torch.manual_seed(i)
            model = get_peft_model(
                AutoModelForCausalLM.from_pretrained(base),
                LoraConfig(
                    r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
                ),
            )
            model.save_pretrained(folder)
        made[f"bench-lora-{i}"] = folder
    return made


def start_gateway(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
        + ["--log-level", "warning", "--no-access-log"],
        env=env,
        cwd=ROOT,
    )


def gateway_env(data_dir: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SHADOWDESK_DATA_DIR": data_dir,
        "SHADOWDESK_CREATE_DEMO_BOT": "false",
        **extra,
    }
    env.pop("SHADOWDESK_DATABASE_URL", None)
    return env


def provision(env: dict[str, str]) -> str:
    shadowdesk(
        env,
        "bots",
        "create",
        "bench",
        "--system-prompt",
        SYSTEM,
        "--policy",
        '{"review_enabled": false}',  # the client path alone
    )
    return shadowdesk(env, "keys", "create", "--bot", "bench")


def row(label: str, conc: int, s: dict[str, float], extra: str = "") -> None:
    print(
        f"{label:<22}{conc:>5}{s['tok_s']:>9.1f}{s['ttft_p50']:>11.0f}{s['ttft_p99']:>11.0f}"
        f"{int(s['errors']):>7}  {extra}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--max-tokens", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--adapters", type=int, nargs="*", default=[1, 4, 8], help="none: skip this part"
    )
    parser.add_argument("--adapter-concurrency", type=int, default=16)
    parser.add_argument("--transformers", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    base = cached_hf_folder(packaged_gguf_path(), CACHE / "models")
    adapters = make_adapters(base, max(args.adapters, default=0))
    server = VLLMServer(
        VLLMServerConfig(
            python=default_vllm_python(),
            model=base,
            served_name="smollm2",
            log_path=CACHE / "vllm-bench.log",
            dtype=default_dtype(),
            max_loras=max([*args.adapters, 1]),
            max_lora_rank=8,
            max_model_len=2048,
        )
    )
    started = time.perf_counter()
    await server.start()
    print(
        f"vLLM ({server.config.dtype}) ready in {time.perf_counter() - started:.0f} s "
        f"(log {server.config.log_path})"
    )
    data_dir = tempfile.mkdtemp(prefix="shadowdesk-bench-engines-")
    env = gateway_env(
        data_dir,
        SHADOWDESK_BACKEND="vllm",
        SHADOWDESK_VLLM_URL=server.url + "/v1",
        SHADOWDESK_VLLM_API_KEY=server.api_key,
        SHADOWDESK_MODEL="smollm2",
    )
    key = provision(env)
    port = free_port()
    gateway = start_gateway(env, port)
    direct_url, gw_url = server.url + "/v1", f"http://127.0.0.1:{port}/v1"
    results: dict[tuple[str, int], dict[str, float]] = {}
    adapter_results: dict[int, dict[str, float]] = {}
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=120)
        # Warm both paths (first requests pay for connection set-up and lazy imports).
        await stream_load(direct_url, server.api_key, ["smollm2"], 2, 4, 16, SYSTEM)
        await stream_load(gw_url, key, ["bench"], 2, 4, 16, None)
        for conc in args.concurrency:
            requests = max(2 * conc, 8)
            direct, via = [], []
            for r in range(args.rounds):
                order = ["direct", "gateway"] if r % 2 == 0 else ["gateway", "direct"]
                for path in order:
                    if path == "direct":
                        direct.append(
                            await stream_load(
                                direct_url, server.api_key, ["smollm2"], conc, requests,
                                args.max_tokens, SYSTEM,
                            )
                        )  # fmt: skip
                    else:
                        via.append(
                            await stream_load(
                                gw_url, key, ["bench"], conc, requests, args.max_tokens, None
                            )
                        )
            results[("vllm direct", conc)] = summary(direct)
            results[("vllm via gateway", conc)] = summary(via) | {
                "added_ttft": added_ttft_ms(direct, via)
            }
            print(f"  measured vLLM at {conc} concurrent", flush=True)
        for name, path in adapters.items():
            async with (
                aiohttp.ClientSession(
                    headers={"authorization": f"Bearer {server.api_key}"}
                ) as http,
                http.post(
                    direct_url + "/load_lora_adapter",
                    json={"lora_name": name, "lora_path": str(path)},
                ) as resp,
            ):
                if resp.status != 200 and b"already" not in await resp.read():
                    raise RuntimeError(f"could not load {name}: HTTP {resp.status}")
        conc = args.adapter_concurrency
        names = list(adapters)
        sets = {0: ["smollm2"], **{n: names[:n] for n in args.adapters}} if args.adapters else {}
        loads: dict[int, list[Load]] = {n: [] for n in sets}
        for r in range(args.rounds):
            for n in sets if r % 2 == 0 else reversed(list(sets)):
                loads[n].append(
                    await stream_load(
                        direct_url, server.api_key, sets[n], conc, 2 * conc, args.max_tokens, SYSTEM
                    )
                )
        adapter_results = {n: summary(v) for n, v in loads.items() if v}
    finally:
        gateway.terminate()
        gateway.wait(15)
        await server.stop()

    if args.transformers:
        data_dir = tempfile.mkdtemp(prefix="shadowdesk-bench-engines-tf-")
        env = gateway_env(data_dir, SHADOWDESK_BACKEND="transformers")
        key = provision(env)
        port = free_port()
        gateway = start_gateway(env, port)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            await wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=300)
            await stream_load(url, key, ["bench"], 2, 4, 16, None)
            for conc in args.concurrency:
                runs = [
                    await stream_load(
                        url, key, ["bench"], conc, max(2 * conc, 4), args.max_tokens, None
                    )
                    for _ in range(args.rounds)
                ]
                results[("transformers (gateway)", conc)] = summary(runs)
                print(f"  measured transformers at {conc} concurrent", flush=True)
        finally:
            gateway.terminate()
            gateway.wait(15)

    print(
        f"\nStreamed answers of up to {args.max_tokens} tokens, {args.rounds} interleaved rounds "
        f"(median tok/s and TTFT p50 over rounds; p99 pooled), {os.cpu_count()} cores"
    )
    print(
        f"{'engine / path':<22}{'conc':>5}{'tok/s':>9}{'TTFT p50':>11}{'TTFT p99':>11}{'errors':>7}"
    )
    for conc in args.concurrency:
        d, g = results[("vllm direct", conc)], results[("vllm via gateway", conc)]
        row("vllm direct", conc, d, "ms")
        row(
            "vllm via gateway",
            conc,
            g,
            f"{g['tok_s'] / d['tok_s'] * 100:.1f}% of direct tok/s, "
            f"TTFT added {g['added_ttft']:+.1f} ms (median of paired requests)",
        )
        if ("transformers (gateway)", conc) in results:
            t = results[("transformers (gateway)", conc)]
            row(
                "transformers (gateway)",
                conc,
                t,
                f"{t['tok_s'] / g['tok_s']:.2f}x vLLM-via-gateway tok/s",
            )
    if adapter_results:
        base_s = adapter_results[0]
        print(
            f"\nvLLM direct, {args.adapter_concurrency} concurrent, requests spread over adapters"
        )
        print(f"{'adapters':<22}{'tok/s':>9}{'TTFT p50':>11}{'vs base':>9}")
        for n, s in adapter_results.items():
            print(
                f"{'base only' if n == 0 else n:<22}{s['tok_s']:>9.1f}{s['ttft_p50']:>11.0f}"
                f"{s['tok_s'] / base_s['tok_s']:>8.2f}x"
            )
    print("goal: via gateway >= 99% of direct tok/s and TTFT +<= 5 ms")


if __name__ == "__main__":
    asyncio.run(main())
