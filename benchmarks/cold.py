"""Cold dashboard queries: nothing cached (response and source caches off), the clinician
dashboard over the two demo FHIR upstreams, each in its own process; the API in another.

    .venv/bin/python benchmarks/cold.py [--seconds 10] [--connections 4] [--latency-ms 0]

Prints upstream requests per query at two page sizes (their ratio shows whether the count
depends on the number of patients), requests/s and latency under load, and the same query
answered from the response cache in the same run as the reference. Not a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import statistics
from collections import Counter

from app.demo.serving import child_process
from benchmarks.harness import (
    SERVERS,
    World,
    dashboard_body,
    demo_world,
    drive,
    peak_rss_mb,
    post_bytes,
)
from benchmarks.timing import machine_line, percentile


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    async with demo_world() as world:
        for upstream in world.upstreams:
            await upstream.set_delay(args.latency_ms / 1000)
        cold = world.write_settings("cold.json", response_ttl_seconds=0, source_ttl_seconds=0)
        async with child_process(SERVERS, "api", str(cold)) as api:
            url = f"{api.base}/graphql"
            headers = {**world.auth, "Content-Type": "application/json"}
            await world.client.post(url, content=dashboard_body(100), headers=headers)  # links
            print(f"dashboard query, upstream latency {args.latency_ms} ms, nothing cached")
            print("\n2a. Upstream requests per query (sequential queries)")
            counts = {}
            for patients in (5, args.patients):
                body = dashboard_body(patients)
                counts[patients] = await upstream_requests(world, url, body, headers)
                print(f"   {patients:>3} patients: {counts[patients]} upstream requests")
            print(f"   ratio {args.patients} / 5 patients: {counts[args.patients] / counts[5]:.2f}")
            cold_load = await load(url, dashboard_body(args.patients), world.auth, args)
            cold_rss = peak_rss_mb(api)
        cached = world.write_settings("cached.json")
        async with child_process(SERVERS, "api", str(cached)) as api:
            url = f"{api.base}/graphql"
            hit_load = await load(url, dashboard_body(args.patients), world.auth, args)
    print(f"\n2b. {args.patients} patients, {args.connections} connections, {args.seconds:g} s")
    print(f"   {'':<22} {'requests/s':>10} {'p50':>10} {'p99':>10}")
    for name, result in (("cold", cold_load), ("response-cache hit", hit_load)):
        rps, p50, p99 = result
        print(f"   {name:<22} {rps:>10.1f} {p50 * 1000:>8.1f} ms {p99 * 1000:>7.1f} ms")
    print(f"   hit / cold throughput: {hit_load[0] / cold_load[0]:.0f}x")
    print(f"   peak RSS of the cold API worker: {cold_rss:.1f} MB")


async def upstream_requests(world: World, url: str, body: bytes, headers: dict[str, str]) -> int:
    for upstream in world.upstreams:
        await upstream.take_requests()
    response = await world.client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert "errors" not in response.json(), response.text[:300]
    taken = [await u.take_requests() for u in world.upstreams]
    kinds = Counter(path.split("?")[0].rsplit("/", 1)[-1] for log in taken for path in log)
    print(f"      by type: {dict(sorted(kinds.items()))}")
    return sum(len(log) for log in taken)


async def load(
    url: str, body: bytes, auth: dict[str, str], args: argparse.Namespace
) -> tuple[float, float, float]:
    request = post_bytes(url, body, auth)
    await drive(url, request, connections=args.connections, seconds=1)  # warm
    result = await drive(url, request, connections=args.connections, seconds=args.seconds)
    assert result.statuses == {200}, result.statuses
    latencies = result.latencies
    return result.per_second, statistics.median(latencies), percentile(latencies, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
