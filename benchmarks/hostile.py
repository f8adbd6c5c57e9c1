"""Hostile documents against the API in its own process: how fast each bomb is refused, how
`/healthz` answers while bombs keep arriving, and what the document limits cost a normal
dashboard query, each against the same server with the limits lifted, in one run.

    .venv/bin/python benchmarks/hostile.py [--seconds 5] [--attackers 2] [--repeats 10]

Upstreams: the two demo FHIR servers (each in its own process); nothing is cached, so every
dashboard query is computed. Not a test: it prints what it measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.demo.serving import child_process
from app.web.examples import DASHBOARD_QUERY
from benchmarks.harness import SERVERS, World, demo_world
from benchmarks.timing import machine_line, percentile

UNLIMITED = {
    "max_chars": 10**9,
    "max_tokens": 10**9,
    "max_comments": 10**9,
    "max_depth": 10**6,
    "max_aliases": 10**6,
    "max_root_fields": 10**6,
    "max_directives": 10**6,
    "max_fragments": 10**6,
    "max_field_repeats": 10**6,
}
BOMBS = {
    "1 MB token bomb (90,000 __typename)": "{ " + "__typename " * 90_000 + "}",
    "200 aliased collections": "{ patients(first: 1) { nodes { "
    + " ".join(f'o{i}: observations(code: "c{i}") {{ totalCount }}' for i in range(200))
    + " } } }",
    "150 collections under one alias": "{ patients(first: 1) { nodes { "
    + " ".join(f'o: observations(code: "c{i}") {{ totalCount }}' for i in range(150))
    + " } } }",
    "5,000 directives": "{ patients(first: 1) { totalCount"
    + " @include(if: true)" * 5_000
    + " } }",
    "2,000-token document (the token limit)": "{ " + "__typename " * 2_100 + "}",
}


@contextlib.asynccontextmanager
async def api(world: World, name: str, graphql: dict[str, Any]) -> AsyncIterator[str]:
    data = {**world.settings, "graphql": {**world.settings["graphql"], **graphql}}
    data["cache"] = {**data["cache"], "response_ttl_seconds": 0, "source_ttl_seconds": 0}
    path = world.work / f"{name}.json"
    path.write_text(json.dumps(data))
    async with child_process(SERVERS, "api", str(path)) as child:
        yield child.base


async def post(client: httpx.AsyncClient, url: str, query: str, auth: dict[str, str]) -> float:
    start = time.perf_counter()
    await client.post(f"{url}/graphql", json={"query": query}, headers=auth)
    return time.perf_counter() - start


async def reject_times(world: World, base: str, repeats: int) -> dict[str, float]:
    """Median seconds per bomb, one at a time."""
    out = {}
    for name, query in BOMBS.items():
        times = sorted([await post(world.client, base, query, world.auth) for _ in range(repeats)])
        out[name] = times[len(times) // 2]
    return out


async def health_under_attack(
    world: World, base: str, seconds: float, attackers: int
) -> tuple[float, float, int]:
    """/healthz p50 and p99 (seconds) while `attackers` keep sending the token bomb, and how
    many bombs they sent."""
    bomb = BOMBS["1 MB token bomb (90,000 __typename)"]
    stop = time.monotonic() + seconds
    sent = 0

    async def attack() -> None:
        nonlocal sent
        async with httpx.AsyncClient(timeout=120) as client:
            while time.monotonic() < stop:
                await post(client, base, bomb, world.auth)
                sent += 1

    async def probe() -> list[float]:
        times = []
        async with httpx.AsyncClient(timeout=120) as client:
            while time.monotonic() < stop:
                start = time.perf_counter()
                await client.get(f"{base}/healthz")
                times.append(time.perf_counter() - start)
                await asyncio.sleep(0.01)
        return times

    probing = asyncio.create_task(probe())
    await asyncio.gather(*(attack() for _ in range(attackers)))
    times = await probing
    return percentile(times, 0.5), percentile(times, 0.99), sent


async def dashboard_p50(world: World, base: str, repeats: int) -> float:
    query = DASHBOARD_QUERY  # 20 patients by default
    await post(world.client, base, query, world.auth)  # links known, pools open
    times = [await post(world.client, base, query, world.auth) for _ in range(repeats)]
    return percentile(times, 0.5)


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    async with demo_world() as world:
        figures: dict[str, dict[str, Any]] = {}
        for name, graphql in (("limits", {}), ("no limits", UNLIMITED)):
            async with api(world, name.replace(" ", "-"), graphql) as base:
                rejects = await reject_times(world, base, args.repeats)
                quiet = await health_under_attack(world, base, 0.5, 0)
                attacked = await health_under_attack(world, base, args.seconds, args.attackers)
                dashboard = await dashboard_p50(world, base, args.repeats * 2)
                figures[name] = {
                    "rejects": rejects,
                    "quiet": quiet,
                    "attacked": attacked,
                    "dashboard": dashboard,
                }
    report(figures, args)


def report(figures: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    on, off = figures["limits"], figures["no limits"]
    print("\n1. Time to answer one hostile document (median), limits on vs lifted")
    for name in BOMBS:
        a, b = on["rejects"][name], off["rejects"][name]
        print(f"   {name:<38} {a * 1000:>9.1f} ms  {b * 1000:>9.1f} ms  ({b / a:,.0f}x)")
    print(
        f"\n2. /healthz while {args.attackers} clients send 1 MB token bombs for {args.seconds} s"
    )
    print(f"   {'':<24} {'p50':>9} {'p99':>9} {'bombs sent':>11}")
    for label, key in (("quiet, limits on", "quiet"), ("attacked, limits on", "attacked")):
        p50, p99, sent = on[key]
        print(f"   {label:<24} {p50 * 1000:>6.1f} ms {p99 * 1000:>6.1f} ms {sent:>11}")
    p50, p99, sent = off["attacked"]
    print(f"   {'attacked, no limits':<24} {p50 * 1000:>6.1f} ms {p99 * 1000:>6.1f} ms {sent:>11}")
    ratio = on["dashboard"] / off["dashboard"]
    print("\n3. Cost of the limits on a normal query: cold dashboard for 20 patients, p50")
    print(f"   limits on {on['dashboard'] * 1000:.1f} ms, lifted {off['dashboard'] * 1000:.1f} ms")
    print(f"   ratio on / lifted: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--attackers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
