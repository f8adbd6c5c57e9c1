"""Rate limits over HTTP, in-process and in Redis: past its budget a principal or a client
address is answered 429 RATE_LIMITED with Retry-After, before any upstream call; another
principal keeps its own budget; two servers sharing Redis share one budget."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Api, ApiFactory, Upstream, fhir_source

QUERY = "{ patients(first: 1) { totalCount } }"


def sections(storage: str, **limits: Any) -> dict[str, dict[str, Any]]:
    cache: dict[str, Any] = {"backend": storage, "key_prefix": f"t-{uuid.uuid4().hex[:12]}"}
    return {"rate_limit": {"enabled": True, **limits}, "cache": cache}


@contextlib.asynccontextmanager
async def limited(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], storage: str, **limits: Any
) -> AsyncIterator[Api]:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, **sections(storage, **limits)) as api:
        yield api


def upstream_calls(upstreams: dict[str, Upstream]) -> int:
    return sum(len(u.requests) for u in upstreams.values())


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_a_principal_past_its_budget_waits_and_others_do_not(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], storage: str
) -> None:
    async with limited(api_factory, upstreams, storage, per_principal="3/minute") as api:
        answers = [(await api.query(QUERY)).status_code for _ in range(3)]
        before = upstream_calls(upstreams)
        refused = await api.query(QUERY)
        other = await api.query(QUERY, role="billing")  # another subject: its own budget
    assert answers == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["cache-control"] == "no-store"
    assert upstream_calls(upstreams) - before <= 6  # the other principal's query only
    assert other.status_code == 200


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_a_client_address_is_limited_before_its_tokens_are_read(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], storage: str
) -> None:
    async with limited(api_factory, upstreams, storage, per_address="2/minute") as api:
        statuses = []
        for _ in range(3):
            response = await api.client.post(
                f"{api.url}/graphql", json={"query": QUERY}, headers={"Authorization": "x"}
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 429]  # garbage tokens spend the address's budget too


async def test_a_query_that_fans_out_spends_more_of_the_budget(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    """With `search_unit = 2`, the two-source patient search costs 1 + 2 // 2 = 2 and one with
    a collection on each of 4 patients 1 + (2 + 4 * 2) // 2 = 6, of a budget of 8."""
    wide = "{ patients(first: 4) { nodes { conditions { totalCount } } } }"
    async with limited(
        api_factory, upstreams, "memory", per_principal="8/minute", search_unit=2
    ) as api:
        cheap = [(await api.query(QUERY)).status_code for _ in range(2)]  # 4 spent
        refused = await api.query(wide)  # 6 more: over
        other = [(await api.query(QUERY, role="billing")).status_code for _ in range(4)]
        again = await api.query(QUERY, role="billing")  # 8 spent: over
    assert cheap == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert other == [200, 200, 200, 200]
    assert again.status_code == 429


async def test_a_role_may_have_its_own_limit(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    async with limited(
        api_factory, upstreams, "memory", per_principal="1/minute", by_role={"admin": "5/minute"}
    ) as api:
        admin = [(await api.query(QUERY, role="admin")).status_code for _ in range(3)]
        clinician = [(await api.query(QUERY)).status_code for _ in range(2)]
    assert admin == [200, 200, 200]
    assert clinician == [200, 429]


async def test_two_servers_sharing_redis_share_one_budget(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    shared = sections("redis", per_principal="4/minute")
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, **shared) as one, api_factory(sources, **shared) as two:
        statuses = [(await server.query(QUERY)).status_code for server in (one, two, one, two, one)]
    assert statuses == [200, 200, 200, 200, 429]
