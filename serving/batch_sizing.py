"""How many sequences the in-process engine runs in one batch, from the model and the machine.

A request beyond the cap waits for a whole answer to finish before its first token, so the cap sets
the time-to-first-token under load. Two things bound it: memory (each running row holds a KV cache
that grows with its tokens) and compute (each decode step costs about one model pass per row, and a
newcomer waits for the step in progress). On a CPU, decode is memory-bandwidth bound: a step over 16
rows costs little more than over 8, so the cap should be as large as those bounds allow.
"""

from __future__ import annotations

import os
from typing import Any

#: Share of the memory available at start that the running rows' KV caches may use.
KV_MEMORY_SHARE = 0.25
#: Tokens a row is budgeted for (prompt with retrieved passages, plus the answer).
ROW_TOKENS = 2048
#: Rows per CPU core before one decode step gets slow enough to hurt time-to-first-token.
ROWS_PER_CORE = 16
FLOOR, CEILING = 8, 64


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Keys and values of every layer for one token."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * int(config.num_hidden_layers) * int(heads) * int(head_dim) * dtype_bytes


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable; physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def auto_batch_size(
    config: Any,
    *,
    dtype_bytes: int,
    memory: int | None = None,
    cores: int | None = None,
) -> int:
    """The batch cap for this model here: as many rows as the KV memory share holds at
    `ROW_TOKENS` each, and `ROWS_PER_CORE` per core, within [FLOOR, CEILING]."""
    memory = available_memory() if memory is None else memory
    cores = (os.cpu_count() or 1) if cores is None else cores
    by_memory = int(memory * KV_MEMORY_SHARE) // (
        kv_bytes_per_token(config, dtype_bytes) * ROW_TOKENS
    )
    by_compute = cores * ROWS_PER_CORE
    return max(FLOOR, min(CEILING, by_memory, by_compute))
