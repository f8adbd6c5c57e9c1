"""Retries over real sockets: a 502 that passes is retried away, a hung upstream is not retried."""

from __future__ import annotations

import time

from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.integration.test_partial_failure import QUERY, record_sources, source_errors


async def test_a_passing_502_is_retried_and_the_query_answers_whole(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    sources = [fhir_source(upstreams["hospital"]), fhir_source(clinic, cache_seconds=0)]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        clinic.faults.fail_next = 2  # the clinic's first two requests get a 502 HTML page
        body = (await api.query(QUERY)).json()
        assert "errors" not in body, body["errors"]
        assert record_sources(body) == {"hospital", "clinic"}
        assert clinic.faults.faulted == 2


async def test_without_retries_a_passing_502_is_the_sources_error(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    sources = [fhir_source(upstreams["hospital"]), fhir_source(clinic, retries=0)]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        clinic.faults.fail_next = 1
        body = (await api.query(QUERY)).json()
        assert [e["extensions"]["source"] for e in source_errors(body)] == ["clinic"]


async def test_a_hung_upstream_is_not_retried(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    clinic.faults.mode = "hang"
    sources = [fhir_source(upstreams["hospital"]), fhir_source(clinic, timeout_seconds=0.5)]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        started = time.perf_counter()
        body = (await api.query(QUERY)).json()
        elapsed = time.perf_counter() - started
        assert [e["extensions"]["code"] for e in source_errors(body)] == ["SOURCE_TIMEOUT"]
        assert clinic.faults.faulted == 1
        assert elapsed < 0.5 * 1.1 + 0.5, elapsed
