"""A source that failed once in an operation is not asked again in it: a hung upstream costs
one timeout per query, not one per stage (patient search, then each collection), over real
sockets."""

from __future__ import annotations

from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.integration.test_partial_failure import QUERY, record_sources, source_errors


async def test_a_hung_source_is_asked_once_per_operation(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    clinic = upstreams["clinic"]
    sources = [
        fhir_source(upstreams["hospital"]),
        # No breaker and no cache: only the per-operation rule can stop the later stages.
        fhir_source(clinic, timeout_seconds=0.5, breaker_failures=0, cache_seconds=0),
    ]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        healthy = (await api.query(QUERY)).json()
        assert record_sources(healthy) == {"hospital", "clinic"}  # patients linked to both

        clinic.faults.mode = "hang"
        for query_number in range(1, 4):
            body = (await api.query(QUERY)).json()
            assert record_sources(body) == {"hospital"}
            (error,) = source_errors(body)
            assert error["extensions"] == {"code": "SOURCE_TIMEOUT", "source": "clinic"}
            # The patient search waited out the timeout; the collections of the clinic's
            # patients were not asked for (each query is a new operation and asks once).
            assert clinic.faults.faulted == query_number
