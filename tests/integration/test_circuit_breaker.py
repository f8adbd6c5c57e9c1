"""A failing upstream behind its circuit breaker, over real sockets: after a few failures it is
no longer asked (queries still answer 200 with the healthy source's data and one coded error),
/readyz reports the open circuit without asking it, and one probe after the reset time brings
it back."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.fakes.faults import RETRY_AFTER_SECONDS
from tests.integration.test_partial_failure import QUERY, record_sources, source_errors

FAILURES = 3
RESET_SECONDS = 1.0
QUERIES = 20


def clinic_state(readyz: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in readyz["sources"] if s["id"] == "clinic"]
    (clinic,) = found
    return clinic


async def test_an_open_circuit_fails_fast_reports_itself_and_recovers(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    sources = [
        fhir_source(upstreams["hospital"]),
        fhir_source(
            clinic,
            # Room for the healthy query on a loaded machine: one that timed out would count
            # as a failure and open the circuit a query early (seen once in a full run).
            timeout_seconds=2.0,
            breaker_failures=FAILURES,
            breaker_reset_seconds=RESET_SECONDS,
            cache_seconds=0,
        ),
    ]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        healthy = (await api.query(QUERY)).json()
        assert "errors" not in healthy, healthy["errors"]  # no failure counted yet
        assert record_sources(healthy) == {"hospital", "clinic"}
        assert clinic_state((await api.client.get(f"{api.url}/readyz")).json())["circuit"] == (
            "closed"
        )

        clinic.faults.mode = "500"
        reasons = []
        for _ in range(QUERIES):
            response = await api.query(QUERY)
            body = response.json()
            assert response.status_code == 200
            assert record_sources(body) == {"hospital"}
            (error,) = source_errors(body)
            assert error["extensions"]["source"] == "clinic"
            assert error["extensions"]["code"] == "SOURCE_UNAVAILABLE"
            reasons.append(error["extensions"].get("reason"))
        # Each failing query asks the clinic once (a source that failed is not asked again in
        # the same operation), so the circuit opens at query FAILURES + 1; from then on only a
        # half-open probe every RESET_SECONDS reaches it (and fails: not "circuit_open").
        assert reasons[:FAILURES] == [None] * FAILURES
        assert reasons[FAILURES] == "circuit_open"
        assert clinic.faults.faulted == reasons.count(None)
        assert reasons.count("circuit_open") >= QUERIES - FAILURES - 2

        clinic.faults.mode = "hang"
        asked = clinic.faults.faulted
        ready = await api.client.get(f"{api.url}/readyz")
        assert ready.status_code == 200  # degraded, still serving the hospital
        assert clinic_state(ready.json())["state"] == "circuit_open"
        assert clinic_state(ready.json())["circuit"] == "open"
        assert clinic.faults.faulted == asked  # answered from known state, the clinic not asked

        clinic.faults.mode = "ok"
        await asyncio.sleep(RESET_SECONDS + 0.1)
        recovered = (await api.query(QUERY)).json()
        assert "errors" not in recovered, recovered["errors"]
        assert record_sources(recovered) == {"hospital", "clinic"}
        assert clinic_state((await api.client.get(f"{api.url}/readyz")).json()) == {
            "id": "clinic",
            "kind": "fhir",
            "state": "ok",
            "unmapped": 0,
            "circuit": "closed",
        }


async def test_a_503_with_retry_after_opens_the_circuit_for_that_long(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    sources = [
        fhir_source(upstreams["hospital"]),
        # A count that would take 50 queries to reach, and a reset far longer than asked.
        fhir_source(clinic, breaker_failures=50, breaker_reset_seconds=600, cache_seconds=0),
    ]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        await api.query(QUERY)  # patients linked to both sources
        clinic.faults.mode = "503-retry-after"
        first = source_errors((await api.query(QUERY)).json())
        assert [e["extensions"].get("reason") for e in first] == [None]
        ready = (await api.client.get(f"{api.url}/readyz")).json()
        assert clinic_state(ready)["circuit"] == "open"
        second = source_errors((await api.query(QUERY)).json())
        assert [e["extensions"].get("reason") for e in second] == ["circuit_open"]
        assert clinic.faults.faulted == 1

        clinic.faults.mode = "ok"
        await asyncio.sleep(RETRY_AFTER_SECONDS + 0.1)  # as asked, not the 600 s reset
        recovered = (await api.query(QUERY)).json()
        assert "errors" not in recovered
        assert record_sources(recovered) == {"hospital", "clinic"}
