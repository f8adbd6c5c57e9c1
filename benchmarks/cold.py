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
import json
import statistics
import tempfile
from collections import Counter
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from app.auth.signing import issue_token, key_id, public_jwk
from app.demo.generator import UPSTREAMS
from app.demo.runner import AUDIENCE, ISSUER, ROLE_SCOPES, demo_settings
from app.web.examples import DASHBOARD_QUERY
from benchmarks.load import child, drive, post_bytes
from benchmarks.timing import machine_line, percentile
from benchmarks.upstreams import DEMO_POPULATION, Upstream, upstream_process

SERVERS = str(Path(__file__).with_name("servers.py"))


def body_for(patients: int) -> bytes:
    return json.dumps({"query": DASHBOARD_QUERY, "variables": {"first": patients}}).encode()


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = key_id(key)
    token = issue_token(
        key,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="bench-clinician",
        roles=["clinician"],
        scope=ROLE_SCOPES["clinician"],
        ttl_seconds=3600,
        kid=kid,
    )
    auth = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        work = Path(tmp)
        (work / "jwks.json").write_text(json.dumps({"keys": [public_jwk(key, kid)]}))
        async with (
            httpx.AsyncClient(timeout=60) as client,
            upstream_process(UPSTREAMS[0], DEMO_POPULATION, client) as one,
            upstream_process(UPSTREAMS[1], DEMO_POPULATION, client) as two,
        ):
            upstreams = [one, two]
            for upstream in upstreams:
                await upstream.set_delay(args.latency_ms / 1000)
            urls = {u.name: u.fhir_url for u in upstreams}
            mapping: dict[str, Any] = demo_settings(work, "127.0.0.1", 0, urls, token).model_dump(
                mode="json"
            )
            cold = {**mapping, "cache": {**mapping["cache"], "response_ttl_seconds": 0}}
            cold["cache"]["source_ttl_seconds"] = 0
            (work / "cold.json").write_text(json.dumps(cold))
            (work / "cached.json").write_text(json.dumps(mapping))
            async with child(SERVERS, "api", str(work / "cold.json")) as api:
                url = f"{api.base}/graphql"
                headers = {**auth, "Content-Type": "application/json"}
                await client.post(url, content=body_for(100), headers=headers)  # links known
                print(f"dashboard query, upstream latency {args.latency_ms} ms, nothing cached")
                print("\n2a. Upstream requests per query (sequential queries)")
                counts = {}
                for patients in (5, args.patients):
                    counts[patients] = await upstream_requests(
                        client, url, body_for(patients), headers, upstreams
                    )
                    print(f"   {patients:>3} patients: {counts[patients]} upstream requests")
                small, large = counts[5], counts[args.patients]
                print(f"   ratio {args.patients} / 5 patients: {large / small:.2f}")
                cold_load = await load(url, body_for(args.patients), auth, args)
                cold_rss = api.peak_rss_mb()
            async with child(SERVERS, "api", str(work / "cached.json")) as api:
                url = f"{api.base}/graphql"
                hit_load = await load(url, body_for(args.patients), auth, args)
    print(f"\n2b. {args.patients} patients, {args.connections} connections, {args.seconds:g} s")
    print(f"   {'':<22} {'requests/s':>10} {'p50':>10} {'p99':>10}")
    for name, result in (("cold", cold_load), ("response-cache hit", hit_load)):
        rps, p50, p99 = result
        print(f"   {name:<22} {rps:>10.1f} {p50 * 1000:>8.1f} ms {p99 * 1000:>7.1f} ms")
    print(f"   hit ÷ cold throughput: {hit_load[0] / cold_load[0]:.0f}x")
    print(f"   peak RSS of the cold API worker: {cold_rss:.1f} MB")


async def upstream_requests(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    upstreams: list[Upstream],
) -> int:
    for upstream in upstreams:
        await upstream.take_requests()
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text[:300]
    assert "errors" not in response.json(), response.text[:300]
    taken = [await u.take_requests() for u in upstreams]
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
