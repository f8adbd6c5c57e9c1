"""Run an ASGI app with uvicorn on loopback inside the current event loop, or in a child process.

Used by the demo (several upstreams in one process), by integration tests that need real HTTP
over a real socket, and (`child_server`) by timing tests and benchmarks whose upstreams must not
share the caller's event loop or GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

READY = "READY"  # first stdout line of a child server: `READY http://127.0.0.1:port`
CHILD_START_SECONDS = 60


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Bind before starting uvicorn so a caller asking for port 0 learns the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Naming IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it small
    # responses wait ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    **tls: Any,
) -> AsyncIterator[str]:
    """Serve `app` until the block exits; yields its base URL (`http://host:port`, or
    `https://` when `tls` gives uvicorn's `ssl_certfile` and the rest of its `ssl_*` options)."""
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # uvicorn's records reach the root handler: PHI-free formatting
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
        server_header=False,  # `server: uvicorn` tells an attacker what to try
        **tls,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raise start-up failure
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if "ssl_certfile" in tls else "http"
        yield f"{scheme}://{shown}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def serve_until_stdin_closes(app: ASGIApp) -> None:
    """The child's side of `child_server`: serve `app` on a free loopback port, announce its
    base URL on stdout, and stop once the parent closes our stdin."""
    async with serving(app) as base:
        print(f"{READY} {base}", flush=True)
        await asyncio.to_thread(sys.stdin.read)


@dataclass(frozen=True)
class Child:
    base: str  # http://127.0.0.1:port
    pid: int


@contextlib.asynccontextmanager
async def child_process(*args: str) -> AsyncIterator[Child]:
    """Run `python *args` (a script calling `serve_until_stdin_closes`) in a child process until
    the block exits; yields its base URL and pid (benchmarks read its memory)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), CHILD_START_SECONDS)).decode()
        ready, _, base = line.strip().partition(" ")
        if ready != READY or not base:
            raise RuntimeError(f"child server {args} did not start: {line!r}")
        yield Child(base, proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def child_server(*args: str) -> AsyncIterator[str]:
    """`child_process`, yielding the child's base URL only."""
    async with child_process(*args) as child:
        yield child.base
