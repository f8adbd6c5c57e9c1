"""The source cache inside the running API (response cache off, so every query is executed):
a repeated query is answered without the upstreams, on either backend; a source can opt out;
a Redis that is down costs no query."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from tests.conftest import ApiFactory, Upstream, closed_port_url, fhir_source
from tests.integration.conftest import REDIS_URL, unique_prefix
from tests.integration.test_graphql_api import FIVE_COLLECTIONS


@pytest.fixture(params=["memory", "redis"])
async def cache_settings(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    prefix = unique_prefix()
    yield {"backend": request.param, "key_prefix": prefix, "response_ttl_seconds": 0}
    if request.param == "redis":
        client = redis.from_url(REDIS_URL)
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.delete(key)
        await client.aclose()


def asked(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


async def test_a_repeated_query_does_not_reach_the_upstreams_again(
    upstreams: dict[str, Upstream], api_factory: ApiFactory, cache_settings: dict[str, Any]
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, cache=cache_settings) as api:
        first = (await api.query(FIVE_COLLECTIONS, {"first": 5})).json()
        before = asked(upstreams)
        again = (await api.query(FIVE_COLLECTIONS, {"first": 5}, role="admin")).json()
    assert "errors" not in first
    assert before >= 2 * (1 + 5)
    assert asked(upstreams) == before  # another caller, same upstream requests: all cached
    assert again["data"]["patients"]["totalCount"] == first["data"]["patients"]["totalCount"]


async def test_a_source_with_cache_seconds_0_is_asked_every_time(
    upstreams: dict[str, Upstream], api_factory: ApiFactory
) -> None:
    hospital, clinic = upstreams["hospital"], upstreams["clinic"]
    sources = [fhir_source(hospital, cache_seconds=0), fhir_source(clinic)]
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        for _ in range(2):
            body = (await api.query(FIVE_COLLECTIONS, {"first": 5})).json()
            assert "errors" not in body
    assert len(hospital.requests) == 2 * (1 + 5)
    assert len(clinic.requests) == 1 + 5


async def test_with_redis_down_queries_still_work(
    upstreams: dict[str, Upstream], api_factory: ApiFactory
) -> None:
    port = httpx.URL(closed_port_url()).port
    cache = {
        "backend": "redis",
        "redis_url": f"redis://127.0.0.1:{port}/0",
        "response_ttl_seconds": 0,
    }
    async with api_factory([fhir_source(u) for u in upstreams.values()], cache=cache) as api:
        bodies = [(await api.query(FIVE_COLLECTIONS, {"first": 5})).json() for _ in range(2)]
    assert all("errors" not in b for b in bodies)
    assert bodies[0]["data"] == bodies[1]["data"]
    assert asked(upstreams) == 2 * 2 * (1 + 5)  # every time from the upstreams
