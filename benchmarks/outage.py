"""One upstream failing under load: 100 clients for 60 s on the demo dashboard (memory cache),
the clinic's FHIR server healthy for the first third, killed (SIGKILL: connections refused)
for the second, and hung for the last (a listener on its port that accepts and never answers).
Per phase: 5xx count, requests/s, p50/p99; the API's RSS at start and end. Then the dashboard
with nothing cached from `serve --workers 1` and `--workers 2` (Redis, PostgreSQL).

    .venv/bin/python benchmarks/outage.py [--seconds 60] [--clients 100] [--workers-seconds 15]

Every process on loopback: the API in its own, each upstream in its own. Not a test: it prints
what it measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.demo.serving import child_process
from app.identity.tables import metadata as index_metadata
from app.sources.hl7v2.store import metadata as lab_metadata
from app.store import create_engine
from benchmarks.harness import SERVERS, Load, World, dashboard_body, demo_world, drive, post_bytes
from benchmarks.timing import machine_line, percentile

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "PATIENTGRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
DASHBOARD_PATIENTS = 5
# Short cache lifetimes, so the outage reaches the upstream within each phase: responses are
# rebuilt every 2 s and upstream answers refetched every 2 s (then stale-if-error stands in).
OUTAGE_CACHE = {"response_ttl_seconds": 2, "source_ttl_seconds": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes used so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def processes(*, parent: int | None = None, command: str | None = None) -> list[int]:
    """Pids of the children of `parent`, or of the processes named `command`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if (parent is not None and ppid == parent) or comm == command:
                found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> tuple[float, float]:
    """A process's resident set size now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@contextlib.asynccontextmanager
async def hung_listener(port: int) -> AsyncIterator[None]:
    """Accepts on `port` and never answers (reads and discards what arrives)."""

    async def park(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(park, "127.0.0.1", port)
    async with server:
        yield


def line(phase: str, load: Load) -> str:
    fives = sum(n for status, n in load.counts.items() if status >= 500)
    p50, p99 = percentile(load.latencies, 0.5), percentile(load.latencies, 0.99)
    return (
        f"   {phase:<34} {load.per_second:8.0f} req/s   p50 {p50 * 1000:7.1f} ms"
        f"   p99 {p99 * 1000:7.1f} ms   5xx {fives}   statuses {sorted(load.counts)}"
    )


async def what_clients_see(world: World, url: str) -> str:
    body = (
        await world.client.post(
            url,
            content=dashboard_body(DASHBOARD_PATIENTS),
            headers={**world.auth, "Content-Type": "application/json"},
        )
    ).json()
    errors = sorted(
        {
            (e["extensions"]["code"], e["extensions"].get("reason", ""))
            for e in body.get("errors", [])
        }
    )
    stale = sorted(
        k for k, v in body.get("extensions", {}).get("sources", {}).items() if v.get("stale")
    )
    return f"errors {errors or 'none'}, stale sources {stale or 'none'}"


async def outage(world: World, seconds: float, clients: int) -> None:
    clinic = next(u for u in world.upstreams if u.name == "clinic")
    settings = world.write_settings("outage.json", **OUTAGE_CACHE)
    third = seconds / 3
    async with child_process(SERVERS, "api", str(settings)) as api:
        url = f"{api.base}/graphql"
        request = post_bytes(url, dashboard_body(DASHBOARD_PATIENTS), world.auth)
        await drive(url, request, connections=4, seconds=2)  # warm: caches, index, pools
        start_rss = rss_mb(api.pid)[0]
        print(
            f"1. {clients} clients, {third:.0f} s per phase, dashboard of {DASHBOARD_PATIENTS}"
            f" patients, cache lifetimes {OUTAGE_CACHE}"
        )
        healthy = await drive(url, request, connections=clients, seconds=third)
        print(line("clinic healthy", healthy))
        print(f"      a client sees: {await what_clients_see(world, url)}")
        os.kill(clinic.pid, signal.SIGKILL)
        killed = await drive(url, request, connections=clients, seconds=third)
        print(line("clinic killed (refused)", killed))
        print(f"      a client sees: {await what_clients_see(world, url)}")
        async with hung_listener(urlsplit(clinic.root).port or 80):
            hung = await drive(url, request, connections=clients, seconds=third)
            print(line("clinic hung (accepts, never answers)", hung))
            print(f"      a client sees: {await what_clients_see(world, url)}")
        end_rss, peak_rss = rss_mb(api.pid)
        worst = min(killed.per_second, hung.per_second)
        print(f"   worst outage phase / healthy: {worst / healthy.per_second:.2f}x (goal: > 0.5)")
        print(
            f"   API RSS: {start_rss:.0f} MiB at start, {end_rss:.0f} MiB at end,"
            f" peak {peak_rss:.0f} MiB"
        )


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for what the settings hold
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items() if v is not None)
            + "}"
        )
    raise TypeError(type(value))


def to_toml(settings: dict[str, Any]) -> str:
    """The settings as a config file for `patientgraph serve` (sections, then [[sources]])."""
    out = []
    for section, keys in settings.items():
        tables = keys if section == "sources" else [keys]
        for table in tables:
            out.append(f"[[{section}]]" if section == "sources" else f"[{section}]")
            out += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(out) + "\n"


async def reset_store() -> None:
    engine = create_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lab_metadata.drop_all)
            await conn.run_sync(index_metadata.drop_all)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def served(config: Path, port: int, workers: int) -> AsyncIterator[int]:
    """`patientgraph serve` with `workers`; yields the supervisor's pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--config",
        str(config),
        "--workers",
        str(workers),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("serve did not start")
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def workers(world: World, seconds: float, clients: int) -> None:
    print(
        f"2. nothing cached (Redis backend, PostgreSQL store), {clients} clients,"
        f" {seconds:.0f} s each"
    )
    rates = {}
    for count in (1, 2):
        await reset_store()
        port = free_port()
        data = {
            **world.settings,
            "server": {**world.settings["server"], "port": port, "graphiql_headers": {}},
            "cache": {
                **world.settings["cache"],
                "backend": "redis",
                "key_prefix": f"bench-{uuid.uuid4().hex[:12]}",
                "response_ttl_seconds": 0,
                "source_ttl_seconds": 0,
            },
            "store": {"url": POSTGRES_URL},
        }
        config = world.work / f"workers-{count}.toml"
        config.write_text(to_toml(data))
        async with served(config, port, count) as supervisor:
            url = f"http://127.0.0.1:{port}/graphql"
            request = post_bytes(url, dashboard_body(DASHBOARD_PATIENTS), world.auth)
            await drive(url, request, connections=clients, seconds=3)  # warm every worker
            groups = {
                "API": [supervisor, *processes(parent=supervisor)],
                "upstreams": [u.pid for u in world.upstreams],
                "PostgreSQL": processes(command="postgres"),
                "Redis": processes(command="redis-server"),
                "load generator": [os.getpid()],
            }
            before = {name: cpu_seconds(pids) for name, pids in groups.items()}
            load = await drive(url, request, connections=clients, seconds=seconds)
            used = {name: cpu_seconds(pids) - before[name] for name, pids in groups.items()}
        rates[count] = load.per_second
        print(line(f"--workers {count}", load))
        shares = ", ".join(f"{name} {cpu / seconds:.2f}" for name, cpu in used.items())
        print(f"      cores busy (of {os.cpu_count()}): {shares}")
    await reset_store()
    print(f"   2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--workers-seconds", type=float, default=15)
    parser.add_argument("--workers-clients", type=int, default=16)
    args = parser.parse_args()
    print(machine_line())
    async with demo_world() as world:
        await workers(world, args.workers_seconds, args.workers_clients)
        await outage(world, args.seconds, args.clients)


if __name__ == "__main__":
    asyncio.run(main())
