"""What auditing costs: the clinician dashboard (20 patients, so 20 audit events a request)
with the audit trail on and off, answered from the response cache (hits) and with nothing
cached (misses), each API in its own process over the two demo FHIR upstreams.

    .venv/bin/python benchmarks/audit_cost.py [--seconds 8] [--rounds 3] [--connections 8]
        [--store sqlite|postgresql]

On and off alternate in each round; the figures are each side's median over the rounds, and
the ratio on / off per mode (goal: at least 0.8 for misses, 0.6 for hits). Not a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import statistics

import sqlalchemy as sa

from app.audit.trail import metadata as audit_metadata
from app.demo.serving import child_process
from app.store import create_engine
from benchmarks.harness import SERVERS, World, dashboard_body, demo_world, drive, post_bytes
from benchmarks.timing import machine_line, percentile

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MODES: dict[str, dict[str, object]] = {
    "hits": {},
    "misses": {"response_ttl_seconds": 0, "source_ttl_seconds": 0},
}


def settings_file(
    world: World, name: str, audit: bool, store: str | None, cache: dict[str, object]
) -> Path:
    data = {**world.settings, "cache": {**world.settings["cache"], **cache}}
    data["audit"] = {"enabled": audit}
    if store is not None:
        data["store"] = {**data["store"], "url": store}
    path = world.work / name
    path.write_text(json.dumps(data))
    return path


async def measure(world: World, config: Path, args: argparse.Namespace) -> tuple[float, float]:
    async with child_process(SERVERS, "api", str(config)) as api:
        url = f"{api.base}/graphql"
        request = post_bytes(url, dashboard_body(args.patients), world.auth)
        await drive(url, request, connections=args.connections, seconds=1)  # warm, fill cache
        result = await drive(url, request, connections=args.connections, seconds=args.seconds)
    assert result.statuses == {200}, result.statuses
    return result.per_second, percentile(result.latencies, 0.99)


async def count_events(store: str) -> int:
    engine = create_engine(store)
    try:
        async with engine.connect() as conn:
            table = audit_metadata.tables["audit_operations"]
            return int(
                (
                    await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(table.c.events), 0)))
                ).scalar_one()
            )
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    async with demo_world() as world:
        store = POSTGRES if args.store == "postgresql" else None
        if store is not None:
            engine = create_engine(store)
            async with engine.begin() as conn:
                await conn.run_sync(audit_metadata.drop_all)
            await engine.dispose()
        figures: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        for round_ in range(args.rounds):
            for mode, cache in MODES.items():
                for audit in (True, False) if round_ % 2 == 0 else (False, True):
                    config = settings_file(world, f"{mode}-{audit}.json", audit, store, cache)
                    figures.setdefault((mode, audit), []).append(await measure(world, config, args))
        events = await count_events(store or world.settings["store"]["url"])
    print(
        f"dashboard, {args.patients} patients a request, {args.connections} connections, "
        f"{args.seconds:g} s x {args.rounds} rounds, audit store {args.store}"
    )
    head = f"{'audit on req/s':>15} {'off req/s':>10} {'on / off':>9}"
    print(f"   {'':<8} {head} {'p99 on':>9} {'p99 off':>9}")
    for mode in MODES:
        on = [rps for rps, _ in figures[(mode, True)]]
        off = [rps for rps, _ in figures[(mode, False)]]
        p99_on = statistics.median(p for _, p in figures[(mode, True)]) * 1000
        p99_off = statistics.median(p for _, p in figures[(mode, False)]) * 1000
        ratio = statistics.median(on) / statistics.median(off)
        spread = f"(on {min(on):.0f}-{max(on):.0f}, off {min(off):.0f}-{max(off):.0f})"
        print(
            f"   {mode:<8} {statistics.median(on):>15.1f} {statistics.median(off):>10.1f} "
            f"{ratio:>9.2f} {p99_on:>7.1f}ms {p99_off:>7.1f}ms  {spread}"
        )
    print(f"   audit events written in the run: {events}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
