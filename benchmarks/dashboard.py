"""Clinician dashboard benchmark: upstream round trips, latency amplification, server overhead.

    .venv/bin/python benchmarks/dashboard.py [--latency-ms 50] [--iterations 40] [--patients 20]
    .venv/bin/python benchmarks/dashboard.py --only overhead   # figure 3 alone, about 15 s

Everything runs on 127.0.0.1 and every figure comes from this one run (see benchmarks/README.md
for the method and what each figure means). Not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/dashboard.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import platform
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib.metadata import version

import graphql
import httpx

from app.demo.generator import UPSTREAMS
from benchmarks.overhead import Overhead, measure_overhead
from benchmarks.served_api import (
    LatencyRun,
    RequestCount,
    count_requests,
    http_runs,
    latency_runs,
    running_api,
)
from benchmarks.timing import WARMUP, Stats, machine_line
from benchmarks.upstreams import DEMO_POPULATION, upstream_process

# --- report -------------------------------------------------------------------------------------


def print_machine() -> None:
    print(machine_line())
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"strawberry {version('strawberry-graphql')}, graphql-core {graphql.__version__}"
    )


def print_counts(counts: Mapping[int, Mapping[str, RequestCount]]) -> None:
    print("\n1. Upstream requests per dashboard query (from the upstreams' own request logs)")
    print(f"   {'patients':>8}  {'upstream':<9} {'total':>5} {'first':>5} {'next':>5}  by type")
    for first, per_upstream in counts.items():
        for name, count in per_upstream.items():
            kinds = sorted(set(count.first_pages) | set(count.follow_ups))
            detail = ", ".join(
                f"{k} {count.first_pages[k]}"
                + (f"+{count.follow_ups[k]}" if count.follow_ups[k] else "")
                for k in kinds
            )
            print(
                f"   {first:>8}  {name:<9} {count.total:>5} "
                f"{sum(count.first_pages.values()):>5} {sum(count.follow_ups.values()):>5}  "
                f"{detail}"
            )
    print(
        "   first = searches without a paging offset; next = follow-up `Bundle.link[next]`"
        " pages (+n in the detail)"
    )


def print_latency(runs: Sequence[LatencyRun], latency: float, first: int) -> None:
    wall = Stats.of([r.wall for r in runs])
    slowest = Stats.of([r.slowest for r in runs])
    by_slowest = Stats.of([r.wall / r.slowest for r in runs])
    rounds = Counter(r.rounds for r in runs)
    print(
        f"\n2. Latency with {latency * 1000:.0f} ms injected per upstream request "
        f"({first} patients, {len(runs)} queries)"
    )
    print(
        f"   query wall time             p50 {wall.p50 * 1000:7.1f} ms   p90 "
        f"{wall.p90 * 1000:7.1f} ms"
    )
    print(
        f"   slowest upstream request    p50 {slowest.p50 * 1000:7.1f} ms   p90 "
        f"{slowest.p90 * 1000:7.1f} ms  (as the API's client saw it, same query)"
    )
    print(
        f"   wall ÷ slowest request      p50 {by_slowest.p50:7.2f}      p90 {by_slowest.p90:7.2f}"
    )
    print(
        f"   wall ÷ injected latency     p50 {wall.p50 / latency:7.2f}      p90 "
        f"{wall.p90 / latency:7.2f}"
    )
    print(
        "   sequential upstream round trips on the critical path: "
        + ", ".join(f"{k} in {v} queries" for k, v in sorted(rounds.items()))
    )


OVERHEAD_ROWS = (
    ("graphql-core", "bare graphql-core: parse, validate, execute"),
    ("graphql-core parsed", "bare graphql-core: execute (parsed once)"),
    ("memory", "PatientGraph, in-memory sources + index"),
    ("sqlite", "PatientGraph, in-memory sources, SQLite index"),
)
PORTAL_ROWS = (
    ("portal graphql-core", "bare graphql-core: parse, validate, execute"),
    ("portal graphql-core parsed", "bare graphql-core: execute (parsed once)"),
    ("portal memory", "PatientGraph, in-memory sources + index"),
)


def print_overhead(
    overhead: Overhead, e2e: Sequence[float] | None, cpu: float | None, first: int
) -> dict[str, float]:
    fields = overhead.fields["dashboard"]
    seconds = dict(overhead.seconds)
    if e2e is not None:
        seconds["http"] = list(e2e)
    us = {
        name: statistics.median(s)
        / overhead.fields["portal" if "portal" in name else "dashboard"]
        * 1e6
        for name, s in seconds.items()
    }
    print(
        f"\n3. Server overhead: dashboard for {first} patients = {fields} resolved fields "
        f"(every key of every object in `data`, list items included)"
    )
    installed = "installed" if overhead.fast_paths else "NOT installed by build_schema()"
    print(f"   schema fast paths (schema/fast_paths.py): {installed}")
    same = "identical" if overhead.same_data["dashboard"] else "DIFFERENT (not like for like)"
    print(f"   PatientGraph and graphql-core returned {same} `data`")
    rows = [*OVERHEAD_ROWS, *((("http", "HTTP end to end, 0 ms injected"),) if e2e else ())]
    print_rows(rows, seconds, us)
    if cpu is not None:
        print(
            f"   CPU of this process per HTTP query (API + its client): {cpu * 1000:.1f} ms; the"
            " rest of the wall time is waiting (upstream processes, a busy machine's scheduler)"
        )
    same = "identical" if overhead.same_data["portal"] else "DIFFERENT (not like for like)"
    print(
        f"   portal query (`me`, patient token) = {overhead.fields['portal']} resolved fields, "
        f"{same} `data`"
    )
    print_rows(PORTAL_ROWS, seconds, us)
    return us


def print_rows(
    rows: Sequence[tuple[str, str]], seconds: Mapping[str, Sequence[float]], us: Mapping[str, float]
) -> None:
    print(f"   {'':<46} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'µs/field (p50)':>15}")
    for name, label in rows:
        stats = Stats.of(seconds[name])
        print(
            f"   {label:<46} {stats.p50 * 1000:8.2f} {stats.p90 * 1000:8.2f} "
            f"{stats.best * 1000:8.2f} {us[name]:15.1f}"
        )


def print_ratios(
    counts: Mapping[int, Mapping[str, RequestCount]],
    runs: Sequence[LatencyRun],
    latency: float,
    us: Mapping[str, float],
) -> None:
    print("\nRatios measured in this run")
    totals = {n: sum(c.total for c in per.values()) for n, per in counts.items()}
    firsts = {
        n: sum(sum(c.first_pages.values()) for c in per.values()) for n, per in counts.items()
    }
    if totals and min(totals) != max(totals):
        low, high = min(totals), max(totals)
        label = f"upstream requests, {high} ÷ {low} patients"
        print(
            f"   {label:<39}{totals[high] / totals[low]:6.2f}"
            f"   (first pages only: {firsts[high] / firsts[low]:.2f})"
        )
    if runs:
        wall = statistics.median(r.wall for r in runs)
        print(
            f"   wall ÷ slowest upstream request (p50)  "
            f"{statistics.median(r.wall / r.slowest for r in runs):6.2f}"
        )
        print(f"   wall ÷ injected latency (p50)          {wall / latency:6.2f}")
    parsed, full = us["graphql-core parsed"], us["graphql-core"]
    http = f"; HTTP end to end {us['http'] / parsed:.2f}" if "http" in us else ""
    print(
        f"   PatientGraph ÷ graphql-core per field  {us['memory'] / parsed:6.2f}"
        f"   (with SQLite index {us['sqlite'] / parsed:.2f}{http}; graphql-core parsing once,"
        " as PatientGraph does)"
    )
    print(
        f"   PatientGraph ÷ graphql-core per field  {us['memory'] / full:6.2f}"
        f"   (with SQLite index {us['sqlite'] / full:.2f}; graphql-core parsing and validating"
        " every query)"
    )
    portal = us["portal graphql-core parsed"]
    print(
        f"   portal: PatientGraph ÷ graphql-core    {us['portal memory'] / portal:6.2f}"
        f"   ({us['portal memory'] / us['portal graphql-core']:.2f} against parsing every query)"
    )


# --- orchestration ------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> None:
    print_machine()
    latency = args.latency_ms / 1000
    population = max(DEMO_POPULATION, args.patients, args.compare_patients)
    print(
        f"demo population {population} patients in {len(UPSTREAMS)} upstream processes; "
        f"dashboard first={args.patients}; {args.iterations} timed iterations after {WARMUP} "
        "warm-up"
    )
    only_overhead = args.only == "overhead"
    async with contextlib.AsyncExitStack() as stack:
        control = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        upstreams = [
            await stack.enter_async_context(upstream_process(n, population, control))
            for n in UPSTREAMS
        ]
        api = await stack.enter_async_context(running_api(upstreams))
        await api.dashboard(population)  # links every patient in the index, fills the pools
        counts: dict[int, dict[str, RequestCount]] = {}
        runs: list[LatencyRun] = []
        if not only_overhead:
            counts = {
                n: await count_requests(api, upstreams, n)
                for n in sorted({args.compare_patients, args.patients})
            }
            for upstream in upstreams:
                await upstream.set_delay(latency)
            runs = await latency_runs(api, args.patients, args.iterations)
            for upstream in upstreams:
                await upstream.set_delay(0.0)
        e2e, cpu = await http_runs(api, args.patients, args.iterations)
        overhead = await measure_overhead(api.settings, api.workdir, args.patients, args.iterations)
    if not only_overhead:
        print_counts(counts)
        print_latency(runs, latency, args.patients)
    us = print_overhead(overhead, e2e, cpu, args.patients)
    print_ratios(counts, runs, latency, us)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="latency injected before every upstream answer (default 50)",
    )
    parser.add_argument(
        "--iterations", type=int, default=40, help="timed queries per measurement (default 40)"
    )
    parser.add_argument("--patients", type=int, default=20, help="dashboard page size")
    parser.add_argument(
        "--only",
        choices=["overhead"],
        help="run one figure only: `overhead` = figure 3 (server overhead per field)",
    )
    parser.add_argument(
        "--compare-patients",
        type=int,
        default=5,
        help="second page size for the request count (default 5)",
    )
    args = parser.parse_args()
    if not (1 <= args.patients <= 100 and 1 <= args.compare_patients <= 100):
        parser.error("page sizes must be between 1 and 100 (the API's max_page_size)")
    if args.latency_ms <= 0 or args.iterations < 1:
        parser.error("--latency-ms must be positive and --iterations at least 1")
    return args


def main() -> None:
    asyncio.run(benchmark(parse_args()))


if __name__ == "__main__":
    main()
