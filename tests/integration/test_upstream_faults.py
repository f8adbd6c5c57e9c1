"""One test per upstream fault, over real sockets: the clinic FHIR server fails in one way
while the hospital's stays healthy. Every query gets HTTP 200 with the hospital's data and
at most one coded error for the clinic, within a stated bound; `/healthz` and `/readyz`
answer within 1 s throughout, and the process's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ApiFactory, Upstream, closed_port_url, fhir_source
from tests.fakes.faults import slow_headers_server

TIMEOUT = 1.5  # the clinic's timeout_seconds
SEARCH_TIMEOUT = 2.0  # its search_timeout_seconds
DEADLINE = 3.5  # [graphql] deadline_seconds
SLACK = 1.25  # scheduling on a shared two-core machine: upstreams, API and test in one loop
# (0.75 s was exceeded once, 2.32 s for `drip`, in a fresh-clone CI run under load)
# Seconds for any /healthz or /readyz answer during a fault: below every timeout, so a loop
# stalled for a whole upstream wait fails it. Typically 0.02-0.41 s here (the hospital's 50
# patients merged in the same loop); 1.03 s was seen in a fresh-clone CI run under load.
HEALTH_BOUND = 1.4
RSS_BOUND = 64 * 2**20  # growth of the process's resident memory during one faulty query
QUERY = """{ patients(first: 50) { totalCount nodes { id birthDate gender
  sources { sourceId }
  observations(first: 100) { totalCount nodes { sources { sourceId } } }
  conditions { nodes { sources { sourceId } } } } } }"""
GENDERS = {"male", "female", "other", "unknown", None}  # FHIR AdministrativeGender


@dataclass(frozen=True)
class Case:
    extensions: dict[str, str] | None  # the clinic's error; None: no error at all
    bound: float  # seconds the query may take
    clinic_records: bool = False  # whether clinic observations/conditions still show


UNAVAILABLE = {"code": "SOURCE_UNAVAILABLE", "source": "clinic"}
TIMED_OUT = {"code": "SOURCE_TIMEOUT", "source": "clinic"}
TOO_LARGE = {**UNAVAILABLE, "reason": "size_limit"}
BY_TIMEOUT = TIMEOUT * 1.1 + SLACK
AT_ONCE = SLACK * 2
CASES = {
    "refused": Case(UNAVAILABLE, AT_ONCE),
    "slow-headers": Case(TIMED_OUT, BY_TIMEOUT),
    "hang": Case(TIMED_OUT, BY_TIMEOUT),
    "drip": Case(TIMED_OUT, BY_TIMEOUT),
    "500": Case(UNAVAILABLE, AT_ONCE),
    "503-retry-after": Case(UNAVAILABLE, AT_ONCE),
    "429-retry-after": Case(UNAVAILABLE, AT_ONCE),
    "garbage": Case(UNAVAILABLE, AT_ONCE),
    "html-200": Case(UNAVAILABLE, AT_ONCE),
    "huge-50MB": Case(TOO_LARGE, BY_TIMEOUT),
    "huge-200MB": Case(TOO_LARGE, BY_TIMEOUT),
    "redirect": Case(UNAVAILABLE, AT_ONCE),
    "foreign-next": Case(UNAVAILABLE, AT_ONCE),
    "loop-next": Case(UNAVAILABLE, AT_ONCE),
    # pages each within the timeout: the search's own timeout ends the chain, well before
    # the operation's deadline, so the hospital's later stages still run
    "slow-next": Case(TIMED_OUT, SEARCH_TIMEOUT * 1.1 + SLACK),
    # data faults: the bad values are dropped, the rest of the clinic's answer stands
    "elsewhere-refs": Case(None, AT_ONCE * 2),
    "wrong-types": Case(None, AT_ONCE * 2, clinic_records=True),
}


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Watch:
    baseline: int  # RSS when the watch began
    peak_rss: int
    slowest: float = 0.0  # seconds of the slowest /healthz or /readyz answer
    polls: int = 0


@contextlib.asynccontextmanager
async def watching(client: Any, url: str) -> AsyncIterator[Watch]:
    """Polls `/healthz` and `/readyz` and samples RSS while the block runs."""
    watch = Watch(baseline=rss(), peak_rss=rss())

    async def poll() -> None:
        while True:
            for path in ("/healthz", "/readyz"):
                started = time.perf_counter()
                response = await client.get(f"{url}{path}")
                assert response.status_code in (200, 503)
                watch.slowest = max(watch.slowest, time.perf_counter() - started)
                watch.polls += 1
            watch.peak_rss = max(watch.peak_rss, rss())
            await asyncio.sleep(0.05)

    task = asyncio.create_task(poll())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sources_of(body: dict[str, Any], collection: str) -> set[str]:
    return {
        s["sourceId"]
        for p in body["data"]["patients"]["nodes"]
        for n in p[collection]["nodes"]
        for s in n["sources"]
    }


@contextlib.asynccontextmanager
async def clinic_failing(fault: str, clinic: Upstream) -> AsyncIterator[str]:
    """The clinic's base URL while it fails with `fault`."""
    if fault == "refused":
        yield closed_port_url()
    elif fault == "slow-headers":
        async with slow_headers_server(interval=0.2) as base:
            yield base
    else:
        if fault.startswith("huge-"):
            clinic.faults.huge_bytes = int(fault[5:-2]) * 2**20
            fault = "huge"
        clinic.faults.mode = fault  # type: ignore[assignment]
        yield clinic.base_url


@pytest.mark.parametrize("fault", CASES)
async def test_one_faulty_upstream(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], fault: str
) -> None:
    case = CASES[fault]
    async with clinic_failing(fault, upstreams["clinic"]) as clinic_url:
        clinic = {
            "id": "clinic",
            "kind": "fhir",
            "base_url": clinic_url,
            "timeout_seconds": TIMEOUT,
            "search_timeout_seconds": SEARCH_TIMEOUT,
            "page_size": 500,
        }
        sources = [fhir_source(upstreams["hospital"]), clinic]
        async with api_factory(sources, graphql={"deadline_seconds": DEADLINE}) as api:
            assert (await api.client.get(f"{api.url}/healthz")).status_code == 200
            async with watching(api.client, api.url) as watch:
                started = time.perf_counter()
                response = await api.query(QUERY)
                elapsed = time.perf_counter() - started
    body = response.json()
    assert response.status_code == 200
    assert body["data"]["patients"]["totalCount"] > 0
    errors = [e["extensions"] for e in body.get("errors", [])]
    assert errors == ([] if case.extensions is None else [case.extensions])
    wanted = {"hospital", "clinic"} if case.clinic_records else {"hospital"}
    assert sources_of(body, "observations") == wanted
    assert sources_of(body, "conditions") == wanted
    assert elapsed <= case.bound, f"{elapsed:.2f} s"
    assert watch.polls >= 2
    assert watch.slowest < HEALTH_BOUND, f"{watch.slowest:.2f} s"
    assert watch.peak_rss - watch.baseline < RSS_BOUND
    for patient in body["data"]["patients"]["nodes"]:
        assert patient["gender"] in GENDERS
        if patient["birthDate"] is not None:
            datetime.date.fromisoformat(patient["birthDate"])


async def test_a_search_is_bounded_by_twice_the_timeout_by_default(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    upstreams["clinic"].faults.mode = "slow-next"
    clinic = fhir_source(upstreams["clinic"], timeout_seconds=0.5)
    async with api_factory([fhir_source(upstreams["hospital"]), clinic]) as api:
        started = time.perf_counter()
        body = (await api.query(QUERY)).json()
        elapsed = time.perf_counter() - started
    assert [e["extensions"] for e in body["errors"]] == [TIMED_OUT]
    assert sources_of(body, "observations") == {"hospital"}
    assert elapsed <= 2 * 0.5 * 1.1 + SLACK, f"{elapsed:.2f} s"
