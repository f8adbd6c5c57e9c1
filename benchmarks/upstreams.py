"""The benchmark's upstreams: demo FHIR servers, each in its own process, with loopback control
routes through which the parent takes their request logs and sets their injected latency.

The parent uses `upstream_process`; each child runs this file:

    .venv/bin/python benchmarks/upstreams.py hospital --population 24
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a child (`python benchmarks/upstreams.py`), sys.path has benchmarks/, not the repository.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import UPSTREAMS, generate_population
from app.demo.serving import child_process, serve_until_stdin_closes

DEMO_POPULATION = 24  # the demo's default population size
CONTROL = "/_bench"  # the child upstream's control routes (outside the FHIR base path)


# --- the child: a demo FHIR server whose request log and delay the parent drives ---------------


def with_controls(fhir: Starlette) -> ASGIApp:
    """`POST /_bench/requests` returns and clears the request log; `PUT /_bench/delay` sets the
    injected latency. The parent needs both across the process boundary."""

    async def take_requests(request: Request) -> Response:
        taken = list(fhir.state.requests)
        fhir.state.requests.clear()
        return JSONResponse(taken)

    async def set_delay(request: Request) -> Response:
        fhir.state.delay_seconds = float((await request.json())["seconds"])
        return Response(status_code=204)

    controls = Starlette(
        routes=[
            Route(f"{CONTROL}/requests", take_requests, methods=["POST"]),
            Route(f"{CONTROL}/delay", set_delay, methods=["PUT"]),
        ]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        is_control = scope["type"] == "http" and scope["path"].startswith(f"{CONTROL}/")
        await (controls if is_control else fhir)(scope, receive, send)

    return app


async def serve_upstream(name: str, population: int) -> None:
    resources = generate_population(patients=population).upstreams[name]
    # max_count as tests/fakes/upstream_process.py: the connector's own page size decides paging.
    await serve_until_stdin_closes(with_controls(create_fhir_app(resources, max_count=1000)))


# --- the parent's handle on a child -------------------------------------------------------------


@dataclass
class Upstream:
    name: str
    root: str  # http://127.0.0.1:port
    control: httpx.AsyncClient
    pid: int  # of its process (the outage benchmark kills it)

    @property
    def fhir_url(self) -> str:
        return f"{self.root}/fhir/R4"

    async def set_delay(self, seconds: float) -> None:
        response = await self.control.put(f"{self.root}{CONTROL}/delay", json={"seconds": seconds})
        response.raise_for_status()

    async def take_requests(self) -> list[str]:
        response = await self.control.post(f"{self.root}{CONTROL}/requests")
        response.raise_for_status()
        log: list[str] = response.json()
        return log


@contextlib.asynccontextmanager
async def upstream_process(
    name: str, population: int, control: httpx.AsyncClient
) -> AsyncIterator[Upstream]:
    """A separate process, so upstream CPU never shares the API's event loop (or GIL)."""
    async with child_process(__file__, name, "--population", str(population)) as child:
        yield Upstream(name, child.base, control, child.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description="One benchmark upstream (started by the parent).")
    parser.add_argument("name", choices=UPSTREAMS)
    parser.add_argument("--population", type=int, default=DEMO_POPULATION)
    args = parser.parse_args()
    asyncio.run(serve_upstream(args.name, args.population))


if __name__ == "__main__":
    main()
