"""Bulkheads over real sockets: with an upstream that hangs, requests past a source's limit
wait for a slot for at most its timeout and then fail as `bulkhead_full`, instead of queueing
behind the hung ones (FHIR `max_in_flight`, NCPDP `max_concurrency`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.demo.generator import DemoPopulation
from app.domain.patients import SSN_SYSTEM
from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.fakes.faults import slow_headers_server

TIMEOUT = 1.0


def extensions(body: dict[str, Any], source: str) -> list[dict[str, str]]:
    return [
        e["extensions"] for e in body.get("errors", []) if e["extensions"].get("source") == source
    ]


async def test_fhir_requests_past_max_in_flight_fail_fast_as_bulkhead_full(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    upstreams["clinic"].faults.mode = "hang"
    clinic = fhir_source(upstreams["clinic"], timeout_seconds=TIMEOUT, max_in_flight=1)
    sources = [fhir_source(upstreams["hospital"]), clinic]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        started = time.perf_counter()
        bodies = await asyncio.gather(
            *(
                api.query(
                    "query($i: String) { patients(identifier: $i) { totalCount } }",
                    {"i": f"urn:test|{n}"},
                )
                for n in range(3)  # different searches: nothing shared between them
            )
        )
        elapsed = time.perf_counter() - started
    seen = [e for b in bodies for e in extensions(b.json(), "clinic")]
    assert {"code": "SOURCE_TIMEOUT", "source": "clinic"} in seen
    full = {"code": "SOURCE_UNAVAILABLE", "source": "clinic", "reason": "bulkhead_full"}
    # The waiters' slot deadline and the hung request's timeout fall together: the slot may
    # pass to one waiter at the last moment, which then waits out its own timeout.
    assert 1 <= seen.count(full) <= 2, seen
    assert upstreams["clinic"].faults.faulted <= 2  # never more than one at a time
    assert elapsed < 2 * TIMEOUT * 1.1 + 0.5, f"{elapsed:.2f} s"  # not one timeout per query


async def test_ncpdp_requests_past_max_concurrency_fail_fast_as_bulkhead_full(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    query = (
        "query($i: String) { patients(identifier: $i) { nodes { medications { totalCount } } } }"
    )
    async with slow_headers_server(interval=0.2) as hung:
        pharmacy = {
            "id": "pharmacy",
            "kind": "ncpdp",
            "base_url": hung.removesuffix("/fhir/R4") + "/script",
            "timeout_seconds": TIMEOUT,
            "max_concurrency": 1,
        }
        sources = [fhir_source(upstreams["hospital"]), pharmacy]
        async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:

            async def timed(ssn: str) -> tuple[float, dict[str, Any]]:
                started = time.perf_counter()
                body = (await api.query(query, {"i": f"{SSN_SYSTEM}|{ssn}"})).json()
                return time.perf_counter() - started, body

            # four operations at once, one person each: none can reuse another's failure
            results = await asyncio.gather(*(timed(p.ssn) for p in population.people[:4]))
    seen = [e for _, body in results for e in extensions(body, "pharmacy")]
    assert len(seen) == 4, seen
    assert {"code": "SOURCE_UNAVAILABLE", "source": "pharmacy", "reason": "bulkhead_full"} in seen
    slowest = max(elapsed for elapsed, _ in results)
    assert slowest < 2 * TIMEOUT * 1.1 + 0.5, f"{slowest:.2f} s"  # not four timeouts in a row
