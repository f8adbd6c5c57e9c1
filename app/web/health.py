"""Liveness and readiness (no PHI: source ids, kinds and short states only)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from app.sources.base import Source, SourceHealth
from app.web.state import Runtime, runtime_of
from app.web.transport import json_response

# /readyz answers within the longer of these: the store is asked, sources are known state (one
# not heard of since start-up is waited for that long at most).
STORE_TIMEOUT_SECONDS = 0.4
UNKNOWN_SOURCE_WAIT_SECONDS = 0.4


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 while the store answers and at least one source does (degraded if some do not);
    503 otherwise, so a load balancer stops sending traffic to an instance that cannot serve.
    Sources are reported from known state (background probes and real requests), so the answer
    comes within the bounds above even while an upstream hangs."""
    runtime = runtime_of(request)
    store_ok, sources = await asyncio.gather(_store_ok(runtime), _source_states(runtime))
    reachable = [s for s in sources if s.ok]
    ready = store_ok and (bool(reachable) or not sources)
    status = (
        "ready"
        if ready and len(reachable) == len(sources)
        else ("degraded" if ready else "unavailable")
    )
    body = {
        "status": status,
        "store": "ok" if store_ok else "unavailable",
        "sources": [
            {
                "id": health.source_id,
                "kind": health.kind,
                "state": "ok" if health.ok else health.detail,
                # Upstream entries that could not be mapped since start-up (never silent).
                "unmapped": source.unmapped,
                **_circuit(runtime, source),
            }
            for health, source in zip(sources, runtime.registry.sources, strict=True)
        ],
    }
    return json_response(body, 200 if ready else 503)


def _circuit(runtime: Runtime, source: Source) -> dict[str, str]:
    breaker = runtime.registry.breakers.get(source.id)
    return {} if breaker is None else {"circuit": breaker.state}


async def _store_ok(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(STORE_TIMEOUT_SECONDS), runtime.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any failure means "not ready"; the reason is in the store's own logs
        return False
    return True


async def _source_states(runtime: Runtime) -> list[SourceHealth]:
    return await runtime.registry.readiness.current(UNKNOWN_SOURCE_WAIT_SECONDS)
