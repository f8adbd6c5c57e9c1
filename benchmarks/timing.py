"""How every phase of the benchmark times its work: warm-up, GC settling, interleaved runs, and
the statistics reported (p50, nearest-rank p90, min)."""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter

WARMUP = 5  # untimed queries before every timed phase


def settle() -> None:
    """Collect, then freeze what survived (set-up data, as a server freezes after start-up) so
    full collections during timing scan only what the measured work allocates."""
    gc.collect()
    gc.freeze()


async def time_interleaved(
    runs: Mapping[str, Callable[[], Awaitable[object]]], iterations: int
) -> dict[str, list[float]]:
    """Round-robin the variants so drift in machine load hits all of them alike."""
    settle()
    for _ in range(WARMUP):
        for run in runs.values():
            await run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iterations):
        for name, run in runs.items():
            start = perf_counter()
            await run()
            seconds[name].append(perf_counter() - start)
    return seconds


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Stats:
    p50: float
    p90: float
    best: float  # least disturbed by other load on the machine

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(statistics.median(values), percentile(values, 0.9), min(values))


def machine_line() -> str:
    """What every benchmark prints first: the figures only mean something next to this."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.machine()} {platform.system()} {platform.release()}, nproc {cpus}, "
        f"python {platform.python_version()}, load average {load}"
    )
