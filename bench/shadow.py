"""Shadowing's cost to clients: latency p50 / p99 and throughput with a candidate shadowing every
exchange vs no candidate, in the same run, through the same server.

One command: `python bench/shadow.py` (options: --requests, --concurrency, --rounds, --chunks).
Starts the instant-answer stub upstream and a real `shadowdesk serve` (backend=openai, SQLite in a
temporary data dir) like bench/gateway.py, with two identical bots: `bench-off` has no candidate,
`bench-on` has one (an adapter the stub serves), shadowing every exchange. Neither queues its live
answers for review, so `off` runs no background work at all and the difference is shadowing alone.
Phases alternate off/on/on/off (ABBA, `--rounds` times) so drift hits both sides alike; after each
`on` phase the shadow backlog is drained (and timed) so that it never spills into an `off` phase.
Prints on/off ratios. Goal: p99 within +2%.

Shadow jobs wait while the gateway is busy (api/jobs/headroom.py), so under this saturating load
they run in the drains; what remains in `on` is the job row written with each exchange. At one
request in flight, p99 is decided by a handful of multi-millisecond stalls (GIL hand-offs, SQLite
syncs) per phase: use many requests per phase and several rounds before reading much into it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select

from api.db import make_engine
from api.models import Job, ShadowAnswer
from api.settings import Settings
from bench.gateway import free_port, shadowdesk, stack_env, start_stack, stop_stack, wait_ready
from bench.loadgen import run_load

METRICS = ("rps", "p50_ms", "p99_ms")


async def admin_call(
    base: str, admin_key: str, method: str, path: str, body: dict[str, Any]
) -> None:
    async with (
        aiohttp.ClientSession(headers={"authorization": f"Bearer {admin_key}"}) as http,
        http.request(method, base + path, json=body) as r,
    ):
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {r.status} {await r.text()}")


def shadow_backlog(engine: Any) -> tuple[int, int]:
    """(shadow jobs not yet finished, shadow answers stored)."""
    with engine.connect() as conn:
        pending = conn.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == "shadow", Job.status.in_(("queued", "running")))
        )
        answers = conn.scalar(select(func.count()).select_from(ShadowAnswer))
    return int(pending or 0), int(answers or 0)


async def drain(engine: Any, timeout: float = 600.0) -> float:
    """Wait until every shadow job has finished; returns the seconds it took."""
    started = time.perf_counter()
    while (await asyncio.to_thread(shadow_backlog, engine))[0]:
        if time.perf_counter() - started > timeout:
            raise RuntimeError("the shadow backlog did not drain")
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(
        description="Client latency and throughput with shadowing on vs off."
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per setting")
    parser.add_argument("--chunks", type=int, default=16, help="word chunks per streamed answer")
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--sample-rate", type=float, default=1.0, help="bench-on's shadow_sample_rate"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    data_dir = tempfile.mkdtemp(prefix="shadowdesk-bench-shadow-")
    stub_port, gw_port = free_port(), free_port()
    admin_key = secrets.token_urlsafe(24)
    env = stack_env(data_dir, stub_port, SHADOWDESK_ADMIN_KEY=admin_key)
    for slug in ("bench-off", "bench-on"):
        shadowdesk(env, "bots", "create", slug, "--max-tokens", "64")
    key = shadowdesk(env, "keys", "create", "--bot", "bench-off", "--bot", "bench-on")
    engine = make_engine(Settings(_env_file=None, data_dir=Path(data_dir)))  # type: ignore[call-arg]
    procs = start_stack(env, stub_port, gw_port, args.chunks)
    try:
        await wait_ready(f"http://127.0.0.1:{stub_port}/v1/models")
        base = f"http://127.0.0.1:{gw_port}"
        await wait_ready(base + "/readyz")
        for slug in ("bench-off", "bench-on"):
            # Review off on both bots: the comparison isolates shadow work.
            policy = {"shadow_sample_rate": args.sample_rate, "review_enabled": False}
            await admin_call(base, admin_key, "PATCH", f"/api/bots/{slug}", {"policy": policy})
        await admin_call(
            base,
            admin_key,
            "POST",
            "/api/bots/bench-on/releases",
            {
                "adapter": "bench-candidate-v2",
                "adapter_path": "/adapters/bench-v2",
                "mode": "adapter",
                "candidate": True,
            },
        )

        rows = []
        for conc in args.concurrency:
            runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            drains: list[float] = []
            before = (await asyncio.to_thread(shadow_backlog, engine))[1]
            for phase in ["off", "on", "on", "off"] * args.rounds:
                result = await run_load(
                    base + "/v1",
                    key,
                    f"bench-{phase}",
                    conc,
                    args.requests,
                    args.stream,
                    warmup=max(50, conc * 4),
                )
                if result["errors"]:
                    raise RuntimeError(f"errors in {phase}: {result.get('first_error')}")
                runs[phase].append(result)
                if phase == "on":
                    drains.append(await drain(engine))
            answers = (await asyncio.to_thread(shadow_backlog, engine))[1] - before
            expected = args.requests * 2 * args.rounds * args.sample_rate
            warmups = max(50, conc * 4) * 2 * args.rounds
            if args.sample_rate == 1.0 and not expected <= answers <= expected + warmups:
                raise RuntimeError(
                    f"expected {expected} shadow answers (+ warm-up), found {answers}"
                )
            rows.append(
                (
                    conc,
                    {
                        p: {m: statistics.mean(r[m] for r in rs) for m in METRICS}
                        for p, rs in runs.items()
                    },
                    answers,
                    statistics.mean(drains),
                )
            )

        kind = "streamed" if args.stream else "plain"
        print(
            f"\nShadowing on vs off ({args.requests} {kind} requests per phase, {2 * args.rounds} phases each, "
            f"{args.chunks}-chunk answers; on = 1 candidate answering {args.sample_rate:.0%} of exchanges)"
        )
        print(
            f"{'conc':>5}{'off rps':>10}{'on rps':>9}{'ratio':>8}{'off p50':>11}{'on p50':>9}{'ratio':>8}"
            f"{'off p99':>11}{'on p99':>9}{'ratio':>8}{'shadow answers':>16}{'drain after phase':>19}"
        )
        for conc, m, answers, drain_s in rows:
            off, on = m["off"], m["on"]
            print(
                f"{conc:>5}{off['rps']:>10.0f}{on['rps']:>9.0f}{on['rps'] / off['rps']:>7.3f}x"
                f"{off['p50_ms']:>9.2f}ms{on['p50_ms']:>7.2f}ms{on['p50_ms'] / off['p50_ms']:>7.3f}x"
                f"{off['p99_ms']:>9.2f}ms{on['p99_ms']:>7.2f}ms{on['p99_ms'] / off['p99_ms']:>7.3f}x"
                f"{answers:>16}{drain_s:>17.1f} s"
            )
        print("goal: on/off p99 ratio <= 1.02")
        if load_before > 0.5:
            print(
                f"warning: the 1-minute load average was {load_before:.1f} before the run: other processes were "
                "using the CPU, so these numbers are not reliable"
            )
    finally:
        stop_stack(procs)
        engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
