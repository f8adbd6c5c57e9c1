"""Property: the response cache never answers one caller with a response computed for other
rights. Random callers x random queries x both backends; every response from the cached server
must equal, byte for byte, what an uncached server over the same data answers that caller."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.demo.generator import DemoPopulation
from tests.conftest import Api, ApiFactory, Upstream, fhir_source
from tests.integration.test_authorization import a_patient_id
from tests.integration.test_response_cache import cache_settings

ROLES = [["patient"], ["clinician"], ["care-coordinator"], ["billing"], ["admin"], ["auditor"]]
SCOPES = ["user/*.rs", "patient/*.rs", "user/Patient.rs user/Observation.rs"]
FIELDS = (
    "id identifiers { value } name { family } address { lines postalCode } "
    "observations(first: 5) { totalCount nodes { id notes } } "
    "medications(first: 5) { nodes { id } }"
)


@dataclass(frozen=True)
class Pair:
    cached: Api
    oracle: Api  # same store and upstreams, response cache off
    ids: list[str]


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest,
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
) -> AsyncIterator[Pair]:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with contextlib.AsyncExitStack() as stack:
        cached = await stack.enter_async_context(
            api_factory(sources, cache=cache_settings(request.param))
        )
        oracle = await stack.enter_async_context(
            api_factory(sources, cache={"response_ttl_seconds": 0, "source_ttl_seconds": 0})
        )
        ids = [await a_patient_id(oracle, population, i) for i in range(3)]
        yield Pair(cached, oracle, ids)


callers = st.fixed_dictionaries(
    {
        "roles": st.sampled_from(ROLES),
        "scope": st.sampled_from(SCOPES),
        "patient": st.one_of(st.none(), st.integers(0, 2)),
        "subject": st.sampled_from(["a", "b"]),
    }
)
queries = st.one_of(
    st.just("me"), st.integers(0, 2), st.sampled_from(["(first: 3)", '(family: "a")'])
)


def text_of(query: object, ids: list[str]) -> str:
    if query == "me":
        return f"{{ me {{ {FIELDS} }} }}"
    if isinstance(query, int):
        return f'{{ patient(id: "{ids[query]}") {{ {FIELDS} }} }}'
    return f"{{ patients{query} {{ nodes {{ {FIELDS} }} }} }}"


def without_fetch_times(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "extensions"}


def token_of(caller: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    claim = caller["patient"]
    return {
        "role": caller["roles"][0],
        "roles": caller["roles"],
        "scope": caller["scope"],
        "patient": None if claim is None else ids[claim],
        "subject": caller["subject"],
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(group=st.lists(callers, min_size=2, max_size=4), query=queries)
async def test_no_caller_is_ever_answered_with_another_callers_response(
    pair: Pair, group: list[dict[str, Any]], query: object
) -> None:
    text = text_of(query, pair.ids)
    for second in (False, True):  # each caller asks twice: the second time must be a hit
        for caller in group:
            token = token_of(caller, pair.ids)
            got = await pair.cached.query(text, **token)
            expected = await pair.oracle.query(text, **token)
            assert got.status_code == expected.status_code
            # Everything but `extensions.sources` (fetch times: each server has its own).
            assert without_fetch_times(got.json()) == without_fetch_times(expected.json())
            cacheable = got.status_code == 200 and "errors" not in expected.json()
            if second and cacheable:
                assert got.headers["x-cache"] == "hit"
