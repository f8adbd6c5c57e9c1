"""Response-cache hits: PatientGraph answering the clinician dashboard from its cache, against a
bare Starlette endpoint returning the same bytes under the same uvicorn settings; hit latency;
the worker's peak memory under that load.

    .venv/bin/python benchmarks/cache_hit.py [--seconds 5] [--rounds 3] [--connections 8]

Everything runs on 127.0.0.1; every figure comes from this run (method: benchmarks/README.md).
Not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics

from app.demo.serving import child_process
from benchmarks.harness import (
    SERVERS,
    Load,
    dashboard_body,
    demo_world,
    drive,
    peak_rss_mb,
    post_bytes,
)
from benchmarks.timing import machine_line, percentile


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    body = dashboard_body(args.patients)
    async with (
        demo_world() as world,
        child_process(SERVERS, "api", str(world.write_settings("api.json"))) as api,
    ):
        url = f"{api.base}/graphql"
        headers = {**world.auth, "Content-Type": "application/json"}
        first = await world.client.post(url, content=body, headers=headers)
        again = await world.client.post(url, content=body, headers=headers)
        assert first.headers.get("x-cache") == "miss", (first.status_code, first.text[:300])
        assert again.headers["x-cache"] == "hit", again.headers
        assert "errors" not in again.json()
        (world.work / "body.json").write_bytes(again.content)
        print(
            f"dashboard query, {args.patients} patients, cached response "
            f"{len(again.content):,} bytes; {args.connections} connections, "
            f"{args.rounds} x {args.seconds:g} s per server, interleaved"
        )
        bare_file = str(world.work / "body.json")
        async with child_process(SERVERS, "bare", bare_file) as bare:
            await compare(args, url, f"{bare.base}/graphql", body, world.auth)
        print(f"\n4. Peak RSS of the API worker after the load: {peak_rss_mb(api):.1f} MB")


async def compare(
    args: argparse.Namespace, api_url: str, bare_url: str, body: bytes, headers: dict[str, str]
) -> None:
    api_request = post_bytes(api_url, body, headers)
    bare_request = post_bytes(bare_url, body, headers)
    for url, request in ((api_url, api_request), (bare_url, bare_request)):  # warm both
        await drive(url, request, connections=args.connections, seconds=1)
    api_loads: list[Load] = []
    bare_loads: list[Load] = []
    for _ in range(args.rounds):
        for url, request, loads in (
            (api_url, api_request, api_loads),
            (bare_url, bare_request, bare_loads),
        ):
            loads.append(
                await drive(url, request, connections=args.connections, seconds=args.seconds)
            )
    statuses = set().union(*(x.statuses for x in api_loads + bare_loads))
    assert statuses == {200}, statuses
    api_rps = statistics.median(x.per_second for x in api_loads)
    bare_rps = statistics.median(x.per_second for x in bare_loads)
    print("\n1. Cache-hit throughput (median of rounds)")
    print(f"   PatientGraph hit   {api_rps:8.0f} requests/s")
    print(f"   bare Starlette     {bare_rps:8.0f} requests/s")
    print(f"   ratio              {api_rps / bare_rps:8.2f}  (goal >= 0.5)")
    single_api = await drive(api_url, api_request, connections=1, seconds=args.seconds)
    single_bare = await drive(bare_url, bare_request, connections=1, seconds=args.seconds)
    loaded = [t for x in api_loads for t in x.latencies]
    print("\n   Hit latency            p50        p99")
    for name, values in (
        ("PatientGraph, 1 connection", single_api.latencies),
        ("bare Starlette, 1 connection", single_bare.latencies),
        (f"PatientGraph, {args.connections} connections", loaded),
    ):
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"   {name:<30} {ms(p50):>9} {ms(p99):>10}")
    print("   (goal: p99 <= 5 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--patients", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
