"""The source cache over real loopback HTTP (the demo FHIR server, the demo pharmacy) and real
Redis (127.0.0.1:6379) as well as the in-process backend: hits, expiry and ETag revalidation,
Cache-Control, single-flight, purging one patient, and a Redis that is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryCache
from app.cache.redis_backend import RedisCache
from app.cache.sources import SourceCache, SourceFetcher
from app.demo.generator import DemoPerson, DemoPopulation
from app.demo.pharmacy_data import pharmacy_fills
from app.demo.pharmacy_server import create_pharmacy_app
from app.demo.serving import serving
from app.domain.common import SourceLink
from app.domain.patients import PatientCriteria
from app.domain.records import DISPENSES, OBSERVATIONS, PersonQuery, RecordQuery
from app.settings import FhirSourceSettings, NcpdpSourceSettings
from app.sources import freshness
from app.sources.fhir.source import FhirSource
from app.sources.ncpdp.source import NcpdpSource
from tests.conftest import Upstream, closed_port_url, running_upstream
from tests.integration.conftest import REDIS_URL, unique_prefix


class Clock:
    """Wall-clock time that a test can move forward (freshness is decided from it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Recording(httpx.AsyncBaseTransport):
    """Real HTTP, remembering (If-None-Match sent, status, body bytes received) per exchange."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str | None, int, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        self.seen.append((request.headers.get("if-none-match"), response.status_code, len(body)))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture
async def hospital(population: DemoPopulation) -> AsyncIterator[Upstream]:
    async with running_upstream("hospital", population.upstreams["hospital"]) as upstream:
        yield upstream


def fhir_source(
    upstream: Upstream,
    cache: SourceCache | None,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> FhirSource:
    settings = FhirSourceSettings(
        id=upstream.name, kind="fhir", base_url=upstream.base_url, timeout_seconds=5, **options
    )
    fetcher = SourceFetcher(settings.id, cache, settings.cache_seconds)
    return FhirSource(settings, transport, fetcher=fetcher)


def queries(population: DemoPopulation, *people: int) -> list[RecordQuery]:
    return [RecordQuery(population.people[i].local_ids["hospital"]) for i in people]


def not_modified(upstream: Upstream) -> list[str]:
    answered: list[str] = upstream.faults.state.not_modified  # type: ignore[union-attr]
    return answered


def set_upstream(upstream: Upstream, **state: Any) -> None:
    for name, value in state.items():
        setattr(upstream.faults.state, name, value)


async def stored_entries(backend: CacheBackend) -> int:
    if isinstance(backend, MemoryCache):
        return backend.size[0]
    prefix = backend._prefix  # type: ignore[attr-defined]
    keys = [k async for k in backend._redis.scan_iter(match=f"{prefix}*")]  # type: ignore[attr-defined]
    return len([k for k in keys if b":tag:" not in k])


# --- hits, pages, expiry and revalidation ---------------------------------------------------------


async def test_repeated_searches_and_their_next_pages_come_from_the_cache(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    source = fhir_source(hospital, SourceCache(backend, 60), page_size=7)
    wanted = queries(population, 0, 1, 2)
    first = await source.records_for(OBSERVATIONS, wanted)
    pages = len(hospital.requests)
    assert pages > 1  # it paged
    again = await source.records_for(OBSERVATIONS, wanted)
    await source.aclose()
    assert len(hospital.requests) == pages
    assert again == first
    assert await stored_entries(backend) == pages  # one entry per page, keyed by its URL


async def test_stale_pages_are_revalidated_with_etags_and_not_downloaded_again(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    clock, transport = Clock(), Recording()
    source = fhir_source(hospital, SourceCache(backend, 60, clock=clock), transport, page_size=7)
    wanted = queries(population, 0, 1)
    with freshness.track() as fetched:
        first = await source.records_for(OBSERVATIONS, wanted)
    pages = len(hospital.requests)
    clock.offset = 61  # past the source TTL, within the grace period
    with freshness.track() as revalidated:
        again = await source.records_for(OBSERVATIONS, wanted)
    await source.aclose()
    assert again == first
    assert len(not_modified(hospital)) == pages  # every page asked again, each answered 304
    renewals = transport.seen[pages:]
    assert [status for _, status, _ in renewals] == [304] * pages
    assert all(etag is not None and etag.startswith('W/"') for etag, _, _ in renewals)
    assert sum(size for _, _, size in renewals) == 0  # no body came back
    assert revalidated["hospital"] > fetched["hospital"] + 60  # fetched "now" again


async def test_upstream_max_age_shortens_the_source_ttl(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    set_upstream(hospital, cache_control="max-age=5")
    clock = Clock()
    source = fhir_source(hospital, SourceCache(backend, 60, clock=clock))
    await source.records_for(OBSERVATIONS, queries(population, 0))
    clock.offset = 4
    await source.records_for(OBSERVATIONS, queries(population, 0))
    assert len(hospital.requests) == 1
    clock.offset = 6  # 60 s allowed by us, but only 5 s by the upstream
    await source.records_for(OBSERVATIONS, queries(population, 0))
    await source.aclose()
    assert len(hospital.requests) == 2
    assert len(not_modified(hospital)) == 1


async def test_a_per_source_ttl_overrides_the_default(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    clock = Clock()
    source = fhir_source(hospital, SourceCache(backend, 60, clock=clock), cache_seconds=10)
    await source.records_for(OBSERVATIONS, queries(population, 0))
    clock.offset = 11
    await source.records_for(OBSERVATIONS, queries(population, 0))
    off = fhir_source(hospital, SourceCache(backend, 60), cache_seconds=0)
    await off.records_for(OBSERVATIONS, queries(population, 1))
    await off.records_for(OBSERVATIONS, queries(population, 1))
    await source.aclose()
    await off.aclose()
    assert len(not_modified(hospital)) == 1
    assert len(hospital.requests) == 4


async def test_no_store_answers_are_never_stored(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    set_upstream(hospital, cache_control="no-store")
    source = fhir_source(hospital, SourceCache(backend, 60))
    for _ in range(2):
        await source.records_for(OBSERVATIONS, queries(population, 0))
    await source.aclose()
    assert len(hospital.requests) == 2
    assert await stored_entries(backend) == 0


async def test_without_an_etag_an_expired_entry_is_downloaded_again(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    set_upstream(hospital, etags=False, cache_control=None)
    transport = Recording()
    source = fhir_source(hospital, SourceCache(backend, 0.3), transport)
    await source.records_for(OBSERVATIONS, queries(population, 0))
    await source.records_for(OBSERVATIONS, queries(population, 0))
    await asyncio.sleep(0.4)  # really gone from the backend: no grace without an ETag
    await source.records_for(OBSERVATIONS, queries(population, 0))
    await source.aclose()
    assert transport.seen == [(None, 200, transport.seen[0][2])] * 2


# --- single-flight --------------------------------------------------------------------------------


@pytest.mark.parametrize("caching", [True, False])
async def test_concurrent_identical_searches_make_one_upstream_request(
    caching: bool, hospital: Upstream, population: DemoPopulation
) -> None:
    hospital.set_delay(0.2)
    cache = SourceCache(MemoryCache(max_entries=100, max_bytes=10_000_000), 60)
    source = fhir_source(hospital, cache if caching else None)
    wanted = queries(population, 0, 1)
    results = await asyncio.gather(*(source.records_for(OBSERVATIONS, wanted) for _ in range(8)))
    await source.aclose()
    assert len(hospital.requests) == 1
    assert all(r == results[0] for r in results)


# --- purging one patient --------------------------------------------------------------------------


async def test_purge_patient_removes_exactly_that_patients_entries(
    backend: CacheBackend, hospital: Upstream, population: DemoPopulation
) -> None:
    cache = SourceCache(backend, 60, hash_key="test-key")
    source = fhir_source(hospital, cache)
    one, two = population.people[0], population.people[1]

    async def everything() -> None:
        await source.records_for(OBSERVATIONS, queries(population, 0))
        await source.records_for(OBSERVATIONS, queries(population, 1))
        await source.records_for(OBSERVATIONS, queries(population, 0, 1))  # one batched search
        await source.search_patients(PatientCriteria(family=one.family, given=one.given[0]))
        await source.patients_by_id([two.local_ids["hospital"]])

    await everything()
    assert len(hospital.requests) == 5
    links = [SourceLink("hospital", one.local_ids["hospital"], "Patient")]
    links.append(SourceLink("clinic", one.local_ids["clinic"], "Patient"))
    assert await cache.purge_patient(links) == 3
    hospital.requests.clear()
    await everything()
    await source.aclose()
    asked = hospital.requests
    assert len(asked) == 3  # the purged ones only
    assert sum(one.local_ids["hospital"] in r for r in asked) == 2  # alone, and with two
    assert sum("family=" in r for r in asked) == 1  # found by demographics: about them too


async def test_redis_keys_and_tags_hold_no_identifier_in_clear(
    hospital: Upstream, population: DemoPopulation
) -> None:
    prefix = unique_prefix()
    backend = RedisCache(REDIS_URL, prefix=prefix, namespace="source", max_ttl=86400)
    source = fhir_source(hospital, SourceCache(backend, 60, hash_key="k"))
    person = population.people[0]
    await source.search_patients(PatientCriteria(family=person.family))
    await source.records_for(OBSERVATIONS, queries(population, 0, 1))
    await source.aclose()
    client = redis.from_url(REDIS_URL)
    keys = [k.decode() async for k in client.scan_iter(match=f"{prefix}*")]
    await client.aclose()
    await backend.clear()
    await backend.aclose()
    assert len(keys) >= 4  # two entries, their tags
    clear = [person.family, *(p.local_ids["hospital"] for p in population.people[:2])]
    assert not [k for k in keys if any(c in k for c in [*clear, "Observation", "127.0.0.1"])]


# --- a cache that is down -------------------------------------------------------------------------


async def test_with_redis_down_searches_still_work_and_the_log_holds_no_phi(
    hospital: Upstream, population: DemoPopulation, caplog: pytest.LogCaptureFixture
) -> None:
    port = httpx.URL(closed_port_url()).port
    backend = RedisCache(f"redis://127.0.0.1:{port}/0", prefix="t", namespace="s", max_ttl=60)
    source = fhir_source(hospital, SourceCache(backend, 60))
    with caplog.at_level(logging.DEBUG):
        first = await source.records_for(OBSERVATIONS, queries(population, 0))
        again = await source.records_for(OBSERVATIONS, queries(population, 0))
    await source.aclose()
    await backend.aclose()
    assert first == again
    assert first[queries(population, 0)[0]]
    assert len(hospital.requests) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("app."))
    assert "source cache unavailable (CacheUnavailable)" in logged
    assert population.people[0].local_ids["hospital"] not in logged


# --- NCPDP: person queries ------------------------------------------------------------------------


class WithCacheControl:
    """Adds a Cache-Control header to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp, value: str) -> None:
        self.app, self.value = app, value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"cache-control", self.value.encode())]
            await send(message)

        await self.app(scope, receive, send_with)


def person_query(person: DemoPerson) -> PersonQuery:
    return PersonQuery(f"pg-{person.key}", person.family, person.given, person.birth_date)


@pytest.mark.parametrize("cache_control", [None, "no-store"])
async def test_medication_history_is_cached_per_person_and_purged_by_patient_id(
    backend: CacheBackend, population: DemoPopulation, cache_control: str | None
) -> None:
    app = create_pharmacy_app(pharmacy_fills(population))
    served = app if cache_control is None else WithCacheControl(app, cache_control)
    cache = SourceCache(backend, 60)
    async with serving(served) as base:
        settings = NcpdpSourceSettings(id="pharmacy", kind="ncpdp", base_url=f"{base}/script")
        source = NcpdpSource(settings, fetcher=SourceFetcher("pharmacy", cache))
        one, two = (person_query(p) for p in population.people[:2])
        first = await source.records_for_people(DISPENSES, [one, two])
        again = await source.records_for_people(DISPENSES, [one, two])
        asked = len(app.state.requests)
        removed = await cache.purge_patient([], patient_id=one.patient_id)
        await source.records_for_people(DISPENSES, [one, two])
        await source.aclose()
    assert first == again
    assert first[one]
    assert first[two]
    if cache_control is None:
        assert (asked, removed, len(app.state.requests)) == (2, 1, 3)
    else:
        assert (asked, removed, len(app.state.requests)) == (4, 0, 6)


async def test_identical_medication_history_requests_in_flight_are_asked_once(
    population: DemoPopulation,
) -> None:
    app = create_pharmacy_app(pharmacy_fills(population))
    app.state.delay_seconds = 0.2
    async with serving(app) as base:
        settings = NcpdpSourceSettings(id="pharmacy", kind="ncpdp", base_url=f"{base}/script")
        source = NcpdpSource(settings)  # no cache at all: still one request
        person = person_query(population.people[0])
        results = await asyncio.gather(
            *(source.records_for_people(DISPENSES, [person]) for _ in range(5))
        )
        await source.aclose()
    assert len(app.state.requests) == 1
    assert all(r == results[0] for r in results)


# --- the demo FHIR server as a validating upstream ------------------------------------------------


async def test_the_demo_fhir_server_sends_validators_and_answers_304(hospital: Upstream) -> None:
    async with httpx.AsyncClient(base_url=hospital.base_url) as client:
        search = await client.get("/Patient", params={"_count": "2"})
        etag = search.headers["etag"]
        same = await client.get("/Patient", params={"_count": "2"}, headers={"If-None-Match": etag})
        strong = etag.removeprefix("W/")
        also = await client.get(
            "/Patient", params={"_count": "2"}, headers={"If-None-Match": strong}
        )
        other = await client.get(
            "/Patient", params={"_count": "3"}, headers={"If-None-Match": etag}
        )
        set_upstream(hospital, cache_control="no-cache", etags=False)
        plain = await client.get(
            "/Patient", params={"_count": "2"}, headers={"If-None-Match": etag}
        )
    assert etag.startswith('W/"')
    assert search.headers["cache-control"] == "max-age=30"
    assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
    assert also.status_code == 304  # If-None-Match compares weakly
    assert other.status_code == 200
    assert other.headers["etag"] != etag
    assert (plain.status_code, plain.headers["cache-control"]) == (200, "no-cache")
    assert "etag" not in plain.headers
    assert len(hospital.requests) == 5  # 304s are requests too, and also logged on their own
    assert not_modified(hospital) == ["/fhir/R4/Patient?_count=2"] * 2
