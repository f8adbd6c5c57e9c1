"""`serve --workers 2`: two processes share the HTTP and MLLP ports, and every shared state
(patient index, lab results, caches) lives in PostgreSQL and Redis, so each worker sees what
the other one stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.sources.hl7v2.mllp import MllpClient
from tests.conftest import Signer, Upstream
from tests.e2e.test_lab_crash import auth_section, free_port, server
from tests.integration.test_lab_concurrency import POSTGRES_URL, postgres_engine, reset
from tests.integration.test_lab_ingest import LAB_QUERY, SSN, msa, oru

SHUTDOWN_SECONDS = 1


def workers_of(pid: int) -> set[int]:
    """The live child processes of `pid` that are uvicorn workers (multiprocessing spawn)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            children.add(int(entry.name))
    return children


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def established_to(port: int) -> set[str]:
    """Inodes of the server-side sockets of established TCP connections to `port`."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            found.add(fields[9])
    return found


async def connections_held(workers: set[int], port: int, count: int) -> dict[int, int]:
    """Opens `count` connections at once, has each answered once, and counts per worker the
    connections it holds."""
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") for _ in range(count)]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in clients))
        established = established_to(port)
        return {pid: len(socket_inodes(pid) & established) for pid in workers}
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


@pytest.fixture
async def postgres() -> AsyncIterator[str]:
    engine = await postgres_engine()
    yield POSTGRES_URL
    await reset(engine)
    await engine.dispose()


def write_config(tmp_path: Path, signer: Signer, store: str, clinic: str) -> tuple[Path, int, int]:
    api_port, lab_port = free_port(), free_port()
    config = tmp_path / "patientgraph.toml"
    config.write_text(f"""
[server]
port = {api_port}
shutdown_seconds = {SHUTDOWN_SECONDS}
{auth_section(signer)}[cache]
backend = "redis"
key_prefix = "workers-{uuid.uuid4().hex[:12]}"
[store]
url = "{store}"
[[sources]]
id = "clinic"
kind = "fhir"
base_url = "{clinic}"
[[sources]]
id = "citylab"
kind = "hl7v2"
listen = "127.0.0.1:{lab_port}"
""")
    return config, api_port, lab_port


async def test_two_workers_share_the_ports_and_what_is_stored(
    tmp_path: Path, signer: Signer, upstreams: dict[str, Upstream], postgres: str
) -> None:
    config, api_port, lab_port = write_config(
        tmp_path, signer, postgres, upstreams["clinic"].base_url
    )
    url = f"http://127.0.0.1:{api_port}/graphql"
    async with server(config, api_port, "--workers", "2") as proc:
        for _ in range(100):  # both workers up
            if len(workers_of(proc.pid)) == 2:
                break
            await asyncio.sleep(0.1)
        started = workers_of(proc.pid)
        assert len(started) == 2
        acks = []
        for n in range(12):  # a connection each: the kernel spreads them over the workers
            async with MllpClient("127.0.0.1", lab_port) as lab:
                acks.append(msa(await lab.send(oru(f"W-{n}", str(100 + n), order=f"ORD-{n}")))[1])
        assert acks == ["AA"] * 12
        values = []
        for _ in range(12):  # a connection each, so both workers answer some
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    url,
                    json={"query": LAB_QUERY, "variables": {"i": SSN}},
                    headers=signer.headers(),
                )
            assert response.status_code == 200
            nodes = response.json()["data"]["patients"]["nodes"]
            values.append(
                sorted(r["valueQuantity"]["value"] for r in nodes[0]["labResults"]["nodes"])
            )
        assert values == [[float(100 + n) for n in range(12)]] * 12
        assert workers_of(proc.pid) == started  # neither worker died and was replaced
        held = await connections_held(started, api_port, 16)
        assert min(held.values()) >= 3, held  # a burst of connections is spread over both
        victim = min(started)
        os.kill(victim, signal.SIGKILL)
        for _ in range(200):  # the supervisor starts another
            current = workers_of(proc.pid)
            if len(current) == 2 and victim not in current:
                break
            await asyncio.sleep(0.1)
        assert len(current) == 2
        assert victim not in current
        started = current
        begun = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        assert code in (0, -signal.SIGTERM)
        assert time.perf_counter() - begun < SHUTDOWN_SECONDS + 3
    assert not any(alive(pid) for pid in started)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, signer: Signer, upstreams: dict[str, Upstream], postgres: str
) -> None:
    config, api_port, _ = write_config(tmp_path, signer, postgres, upstreams["clinic"].base_url)
    async with server(config, api_port, "--workers", "2") as proc:
        for _ in range(100):
            if len(workers_of(proc.pid)) == 2:
                break
            await asyncio.sleep(0.1)
        orphans = workers_of(proc.pid)
        assert len(orphans) == 2
        proc.kill()  # SIGKILL: the supervisor cannot pass anything on
        await proc.wait()
        for _ in range(100):  # each worker notices within a second, then drains
            if not any(alive(pid) for pid in orphans):
                break
            await asyncio.sleep(0.1)
    assert not any(alive(pid) for pid in orphans)
