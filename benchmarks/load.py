"""A small HTTP/1.1 load generator (keep-alive connections, one request in flight each) and the
child-process servers the cache and cold benchmarks drive.

Raw asyncio streams rather than httpx: the generator must cost far less per request than the
servers it compares, or it would flatten their ratio."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from urllib.parse import urlsplit

from app.demo.serving import CHILD_START_SECONDS, READY


@dataclass
class Load:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

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
                load.statuses.add(status)
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


@dataclass(frozen=True)
class Child:
    base: str
    pid: int

    def peak_rss_mb(self) -> float:
        """The child's peak resident set size (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc")


@contextlib.asynccontextmanager
async def child(*args: str) -> AsyncIterator[Child]:
    """`app.demo.serving.child_server`, also telling the child's pid (for its memory)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), CHILD_START_SECONDS)).decode()
        ready, _, base = line.strip().partition(" ")
        if ready != READY or not base:
            raise RuntimeError(f"child {args} did not start: {line!r}")
        yield Child(base, proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
