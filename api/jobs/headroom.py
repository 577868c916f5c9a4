"""Live traffic first: background jobs wait for a moment when the process is not busy serving.

The signal is this process's own CPU use, sampled while the waiting job does nothing, and how late
the event loop wakes the sampler (a congested loop, or a machine short of CPU). A model on
another machine (vLLM, an OpenAI-compatible API) leaves the gateway mostly idle, so background work
runs at once; a saturated gateway defers it to its quieter moments instead of taking CPU (and the
GIL) from live requests. A bounded wait keeps a server that is always busy making progress.
"""

from __future__ import annotations

import asyncio
import time

PROBE_S = 0.02
LATE_S = 0.005


async def wait_for_headroom(
    busy_cpu: float | None, max_defer_s: float, probe_s: float = PROBE_S
) -> float:
    """Return once the process uses less than `busy_cpu` of a core (None: at once), or after
    `max_defer_s`; returns the seconds waited."""
    started = time.monotonic()
    if busy_cpu is None:
        return 0.0
    while True:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(probe_s)
        elapsed = time.perf_counter() - wall
        cpu_share = (time.process_time() - cpu) / elapsed
        # A late wake-up means the loop is congested or the process is short of CPU (other processes).
        late = elapsed - probe_s > LATE_S
        waited = time.monotonic() - started
        if (cpu_share < busy_cpu and not late) or waited >= max_defer_s:
            return waited
