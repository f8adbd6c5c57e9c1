"""Failover between replicas of one FHIR source, over real sockets: when the base URL that
answered last is unreachable, hangs or answers 5xx, the request goes to the next; the source
then stays there, and its next links are followed on whichever replica sent them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.demo.generator import DemoPopulation
from tests.conftest import ApiFactory, Upstream, closed_port_url, fhir_source, running_upstream

QUERY = """{ patients(first: 50) { totalCount nodes { sources { sourceId }
  observations(first: 100) { totalCount nodes { sources { sourceId } } } } } }"""


@pytest.fixture
async def replica(population: DemoPopulation) -> AsyncIterator[Upstream]:
    """A second server with the clinic's data (same ids), as a replica would have."""
    async with running_upstream("clinic", population.upstreams["clinic"], max_count=1000) as up:
        yield up


def clinic_records(body: dict[str, Any]) -> int:
    return sum(
        1
        for p in body["data"]["patients"]["nodes"]
        for n in p["observations"]["nodes"]
        for s in n["sources"]
        if s["sourceId"] == "clinic"
    )


async def answers(api_factory: ApiFactory, clinic: dict[str, Any]) -> list[dict[str, Any]]:
    async with api_factory(
        [clinic], cache={"response_ttl_seconds": 0, "source_ttl_seconds": 0}
    ) as api:
        return [(await api.query(QUERY)).json() for _ in range(2)]


@pytest.mark.parametrize("fault", ["refused", "500", "503-retry-after"])
async def test_a_failing_primary_is_replaced_by_its_replica(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], replica: Upstream, fault: str
) -> None:
    primary = upstreams["clinic"]
    if fault == "refused":
        base = closed_port_url()
    else:
        primary.faults.mode = fault  # type: ignore[assignment]
        base = primary.base_url
    clinic = fhir_source(primary, page_size=5, retries=0)  # several pages: next links
    clinic |= {"base_url": base, "failover_base_urls": [replica.base_url]}
    first, second = await answers(api_factory, clinic)
    for body in (first, second):
        assert "errors" not in body, body["errors"]
        assert clinic_records(body) > 0
    assert len(replica.requests) >= 2  # first pages and the next pages it linked to
    if fault != "refused":
        assert primary.faults.faulted == 1  # asked once; the source then stayed on the replica


async def test_a_hung_primary_costs_one_timeout_then_nothing(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], replica: Upstream
) -> None:
    primary = upstreams["clinic"]
    primary.faults.mode = "hang"
    clinic = fhir_source(primary, timeout_seconds=0.5, failover_base_urls=[replica.base_url])
    async with api_factory(
        [clinic], cache={"response_ttl_seconds": 0, "source_ttl_seconds": 0}
    ) as api:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            body = (await api.query(QUERY)).json()
            timings.append(time.perf_counter() - started)
            assert "errors" not in body, body["errors"]
            assert clinic_records(body) > 0
    assert primary.faults.faulted == 1
    assert max(timings[1:]) < 0.5, timings  # no timeout waited out again


async def test_a_replica_is_not_asked_to_fix_an_unreadable_answer(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], replica: Upstream
) -> None:
    primary = upstreams["clinic"]
    primary.faults.mode = "garbage"
    clinic = fhir_source(primary, failover_base_urls=[replica.base_url])
    first, _ = await answers(api_factory, clinic)
    assert [e["extensions"]["code"] for e in first["errors"]] == ["SOURCE_UNAVAILABLE"]
    assert replica.requests == []


async def test_every_replica_failing_is_the_sources_error(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = fhir_source(upstreams["clinic"], retries=0)
    clinic |= {"base_url": closed_port_url(), "failover_base_urls": [closed_port_url()]}
    first, _ = await answers(api_factory, clinic)
    assert [e["extensions"] for e in first["errors"]] == [
        {"code": "SOURCE_UNAVAILABLE", "source": "clinic"}
    ]
