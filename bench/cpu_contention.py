"""How much CPU other processes used while a benchmark ran (this machine is shared, and a busy
neighbour slows the encoder more than anything we measure)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Self


def _busy_cpu_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


@dataclass
class ContentionMeter:
    """Use as a context manager; `report()` says how many cores others kept busy on average."""

    _start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __enter__(self) -> Self:
        self._start = (time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = (time.monotonic(), _busy_cpu_seconds(), _own_cpu_seconds())

    def report(self) -> str:
        wall = self._end[0] - self._start[0]
        busy = self._end[1] - self._start[1]
        own = self._end[2] - self._start[2]
        others = max(0.0, busy - own)
        return (
            f"CPU contention: other processes used {others:.0f} CPU-s in {wall:.0f} s "
            f"({others / max(wall, 1e-9):.2f} of {os.cpu_count()} cores on average)"
        )
