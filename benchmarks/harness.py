"""What the cache and cold benchmarks share: the demo world they run in (a clinician token,
the two demo FHIR upstreams in their own processes, the API's settings), a small HTTP/1.1
load generator, and a child process's peak memory.

The load generator uses raw asyncio streams (keep-alive connections, one request in flight
each) rather than httpx: it must cost far less per request than the servers it compares, or
it would flatten their ratio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.demo.generator import UPSTREAMS
from app.demo.runner import demo_settings
from app.demo.serving import Child
from app.web.examples import DASHBOARD_QUERY
from benchmarks.served_api import clinician_token
from benchmarks.upstreams import DEMO_POPULATION, Upstream, upstream_process

SERVERS = str(Path(__file__).with_name("servers.py"))  # `servers.py api|bare FILE`


@dataclass(frozen=True)
class World:
    client: httpx.AsyncClient
    upstreams: list[Upstream]
    work: Path  # a temporary directory for settings and bodies
    auth: dict[str, str]  # the clinician's Authorization header
    settings: dict[str, Any]  # the demo API's settings, as JSON data

    def write_settings(self, name: str, **cache: object) -> Path:
        """The API's settings with `[cache]` keys changed, written for `servers.py api`."""
        data = {**self.settings, "cache": {**self.settings["cache"], **cache}}
        path = self.work / name
        path.write_text(json.dumps(data))
        return path


@contextlib.asynccontextmanager
async def demo_world() -> AsyncIterator[World]:
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        work = Path(tmp)
        token = clinician_token(work)
        async with (
            httpx.AsyncClient(timeout=60) as client,
            upstream_process(UPSTREAMS[0], DEMO_POPULATION, client) as one,
            upstream_process(UPSTREAMS[1], DEMO_POPULATION, client) as two,
        ):
            urls = {u.name: u.fhir_url for u in (one, two)}
            settings = demo_settings(work, "127.0.0.1", 0, urls, token).model_dump(mode="json")
            auth = {"Authorization": f"Bearer {token}"}
            yield World(client, [one, two], work, auth, settings)


def dashboard_body(patients: int) -> bytes:
    return json.dumps({"query": DASHBOARD_QUERY, "variables": {"first": patients}}).encode()


def peak_rss_mb(child: Child) -> float:
    """A child process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


@dataclass
class Load:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    counts: Counter[int] = field(default_factory=Counter)  # responses per HTTP status

    @property
    def statuses(self) -> set[int]:
        return set(self.counts)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def post_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def drive(url: str, request: bytes, *, connections: int, seconds: float) -> Load:
    """`connections` keep-alive connections, each sending `request` again as soon as the
    previous answer arrived, for `seconds`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    load = Load()
    stop_at = perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while perf_counter() < stop_at:
                start = perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = _head(head)
                await reader.readexactly(length)
                load.latencies.append(perf_counter() - start)
                load.counts[status] += 1
                load.requests += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    began = perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    load.seconds = perf_counter() - began
    return load


def _head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise ValueError("response without Content-Length")
