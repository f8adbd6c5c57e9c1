"""A lab sender flooding the MLLP listener with 25,000-segment ORU^R01 messages: does HTTP stall?

    .venv/bin/python benchmarks/lab_flood.py [--seconds 10] [--segments 25000]

Measured in one run against the API in a child process (uvicorn, a real MLLP socket, SQLite):
`/healthz` latency p50/p99 with the listener idle (the baseline), then while one sender keeps
sending the big message, (a) with the default limits (the message is refused with AR after a
segment count, in a worker thread; frames are allowed past the 1 MiB default so the count is
what refuses them) and (b) with the limits lifted so every message is parsed
and stored. The messages carry one synthetic patient (no PHI).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/lab_flood.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.demo.serving import child_process
from app.sources.hl7v2.mllp import MllpClient
from benchmarks.harness import SERVERS, World, demo_world
from benchmarks.timing import machine_line, percentile

SENDER = "FLOODLAB^LABFAC"
BIG_FRAMES = {"max_message_bytes": 16_000_000}  # past the 1 MiB default, so segments are counted
LIFTED = {**BIG_FRAMES, "max_segments": 100_000, "max_results": 100_000}


def flood_message(control_id: str, segments: int) -> bytes:
    head = [
        f"MSH|^~\\&|FLOODLAB|LABFAC|PG|PG|20250301090000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        "PID|1||FLOOD-1^^^FLOODLAB^MR||Flood^Test||19800102|F",
        "OBR|1||ORD-FLOOD^FLOODLAB|24323-8^Metabolic panel^LN|||20250301080000",
    ]
    results = [
        f"OBX|{i}|NM|X-{i}^Analyte {i}^L||{i % 200}|mg/dL^mg/dL^UCUM|70-105|N|||F|||20250301080000"
        for i in range(segments - len(head))
    ]
    return "\r".join(head + results).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def api(world: World, name: str, lab_port: int, **limits: Any) -> AsyncIterator[str]:
    lab = {
        "id": "floodlab",
        "kind": "hl7v2",
        "listen": f"127.0.0.1:{lab_port}",
        "allowed_senders": [SENDER],
        **limits,
    }
    data = {**world.settings, "sources": [lab]}
    data["store"] = {"url": f"sqlite:///{world.work / (name + '.db')}"}
    path = world.work / f"{name}.json"
    path.write_text(json.dumps(data))
    async with child_process(SERVERS, "api", str(path)) as child:
        yield child.base


async def probe(base: str, stop: float) -> list[float]:
    times = []
    async with httpx.AsyncClient(timeout=120) as client:
        while time.monotonic() < stop:
            start = time.perf_counter()
            await client.get(f"{base}/healthz")
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)
    return times


async def flood(lab_port: int, stop: float, segments: int) -> tuple[int, dict[str, int]]:
    """Sends until `stop`; returns the messages sent and the ACK codes received."""
    sent, codes = 0, dict[str, int]()
    async with MllpClient("127.0.0.1", lab_port, timeout=300) as client:
        while time.monotonic() < stop:
            ack = await client.send(flood_message(f"FLOOD-{sent}", segments))
            code = ack.split(b"MSA|")[1][:2].decode()
            codes[code] = codes.get(code, 0) + 1
            sent += 1
    return sent, codes


async def measure(base: str, lab_port: int, seconds: float, segments: int | None) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    probing = asyncio.create_task(probe(base, stop))
    sent, codes = (0, {}) if segments is None else await flood(lab_port, stop, segments)
    times = await probing
    return {
        "p50": percentile(times, 0.5) * 1000,
        "p99": percentile(times, 0.99) * 1000,
        "max": max(times) * 1000,
        "probes": len(times),
        "sent": sent,
        "codes": codes,
    }


async def run(args: argparse.Namespace) -> None:
    rows: list[tuple[str, dict[str, Any]]] = []
    async with demo_world() as world:
        for name, limits in (("default segment limits", BIG_FRAMES), ("limits lifted", LIFTED)):
            port = free_port()
            async with api(world, name.replace(" ", "-"), port, **limits) as base:
                if not rows:
                    rows.append(("listener idle", await measure(base, port, args.seconds, None)))
                figures = await measure(base, port, args.seconds, args.segments)
                rows.append((f"flood, {name}", figures))
    print(machine_line())
    print(f"/healthz every 10 ms for {args.seconds:g} s; {args.segments:,}-segment ORU^R01s")
    print(f"{'':28}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'probes':>8}  messages (ACK)")
    for label, f in rows:
        acks = ", ".join(f"{n} {code}" for code, n in sorted(f["codes"].items())) or "-"
        print(
            f"{label:28}{f['p50']:9.1f}{f['p99']:9.1f}{f['max']:9.1f}{f['probes']:8}  "
            f"{f['sent']} ({acks})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--segments", type=int, default=25_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
