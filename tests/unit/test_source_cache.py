"""The source cache's rules with in-process upstream stand-ins: what is stored and for how long,
revalidation, single-flight, purge tags, backend failures and the freshness record. (The same
rules over real HTTP and real Redis: tests/integration/test_source_cache.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from app.cache import cache_control
from app.cache.backend import CacheUnavailable
from app.cache.memory import MemoryCache
from app.cache.sources import Entry, SourceCache, SourceFetcher
from app.domain.common import SourceLink
from app.sources import failures, freshness
from app.sources.breaker import CircuitOpen
from app.sources.errors import (
    SourceDataError,
    SourceError,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
)
from app.sources.fetching import Fetched, NotModified

URL = "http://ehr.test/fhir/R4/Observation?patient=p-123%2Cp-456&_count=50"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Upstream:
    """Answers `body` with the given validators; counts what it was asked."""

    body: bytes = b"v1"
    etag: str | None = 'W/"1"'
    cache_control: str | None = None
    delay: float = 0.0
    asked: list[str | None] = field(default_factory=list)  # If-None-Match of each request

    async def fetch(self, etag: str | None) -> Fetched[str] | NotModified:
        self.asked.append(etag)
        await asyncio.sleep(self.delay)
        if etag is not None and etag == self.etag:
            return NotModified(self.etag, self.cache_control)
        return Fetched(self.body, self.body.decode(), self.etag, self.cache_control)


class RecordingBackend(MemoryCache):
    """The memory backend, remembering every key and tag it was given."""

    def __init__(self) -> None:
        super().__init__(max_entries=100, max_bytes=1_000_000)
        self.written: list[tuple[str, float, tuple[str, ...]]] = []

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        self.written.append((key, ttl, tuple(tags)))
        await super().set(key, value, ttl, tags)


class DownBackend(RecordingBackend):
    async def get(self, key: str) -> bytes | None:
        raise CacheUnavailable("redis: ConnectionError")

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        raise CacheUnavailable("redis: ConnectionError")


def decode(body: bytes) -> str:
    return body.decode()


def fetcher(
    upstream: Upstream, ttl: float = 60, backend: RecordingBackend | None = None
) -> tuple[SourceFetcher, RecordingBackend, Clock]:
    clock, backend = Clock(), backend or RecordingBackend()
    cache = SourceCache(backend, ttl, hash_key="secret", clock=clock)
    return SourceFetcher("hospital", cache), backend, clock


async def get(source: SourceFetcher, upstream: Upstream, request: str = URL) -> str:
    return await source.get(request, upstream.fetch, decode, patients=["p-123", "p-456"])


# --- Cache-Control --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, cache_control.Directives()),
        ("max-age=30", cache_control.Directives(max_age=30)),
        ("public, s-maxage=5, max-age=30", cache_control.Directives(max_age=5)),
        ('max-age="12"', cache_control.Directives(max_age=12)),
        ("max-age=soon", cache_control.Directives(max_age=0)),
        ("No-Store", cache_control.Directives(no_store=True)),
        ("private, max-age=60", cache_control.Directives(no_store=True, max_age=60)),
        ("no-cache, max-age=60", cache_control.Directives(no_cache=True, max_age=60)),
    ],
)
def test_cache_control_is_read_as_a_shared_cache_reads_it(
    header: str | None, expected: cache_control.Directives
) -> None:
    assert cache_control.parse(header) == expected


@pytest.mark.parametrize(
    ("header", "lifetime"),
    [(None, 60), ("max-age=30", 30), ("max-age=600", 60), ("no-cache", 0), ("max-age=0", 0)],
)
def test_upstreams_can_shorten_a_lifetime_never_lengthen_it(
    header: str | None, lifetime: float
) -> None:
    assert cache_control.lifetime(cache_control.parse(header), 60) == lifetime


def test_entries_round_trip_and_anything_else_reads_as_a_miss() -> None:
    entry = Entry(b'{"a":\n1}', 12.5, 30, 'W/"x"', ("p:1", "p:2"))
    assert Entry.decode(entry.encode()) == entry
    for raw in (b"", b"garbage", b'{"v": 99, "t": 1, "l": 1, "e": null, "g": []}\nbody'):
        assert Entry.decode(raw) is None


# --- hits, expiry and revalidation ----------------------------------------------------------------


async def test_a_repeated_request_is_answered_from_the_cache() -> None:
    upstream = Upstream()
    source, _, _ = fetcher(upstream)
    assert [await get(source, upstream) for _ in range(3)] == ["v1"] * 3
    assert upstream.asked == [None]
    assert await get(source, upstream, URL + "&code=x") == "v1"  # another URL: another entry
    assert len(upstream.asked) == 2


async def test_a_stale_entry_with_an_etag_is_revalidated_and_renewed_by_a_304() -> None:
    upstream = Upstream()
    source, backend, clock = fetcher(upstream)
    await get(source, upstream)
    assert backend.written[0][1] == 120  # fresh 60 s, then kept 60 s more to revalidate
    clock.now += 61
    assert await get(source, upstream) == "v1"
    assert upstream.asked == [None, 'W/"1"']
    clock.now += 30  # the 304 made it fresh again
    await get(source, upstream)
    assert len(upstream.asked) == 2


async def test_a_changed_upstream_answers_200_to_revalidation_and_replaces_the_entry() -> None:
    upstream = Upstream()
    source, _, clock = fetcher(upstream)
    await get(source, upstream)
    upstream.body, upstream.etag = b"v2", 'W/"2"'
    clock.now += 61
    assert await get(source, upstream) == "v2"
    assert await get(source, upstream) == "v2"
    assert upstream.asked == [None, 'W/"1"']


async def test_max_age_shortens_the_lifetime_and_no_etag_means_no_grace() -> None:
    upstream = Upstream(etag=None, cache_control="max-age=5")
    source, backend, clock = fetcher(upstream)
    await get(source, upstream)
    assert backend.written[0][1] == 5
    clock.now += 6
    await get(source, upstream)
    assert upstream.asked == [None, None]


async def test_no_store_and_private_answers_are_never_stored() -> None:
    for header in ("no-store", "private"):
        upstream = Upstream(cache_control=header)
        source, backend, _ = fetcher(upstream)
        await get(source, upstream)
        await get(source, upstream)
        assert upstream.asked == [None, None]
        assert backend.written == []


async def test_no_cache_is_revalidated_on_every_use() -> None:
    upstream = Upstream(cache_control="no-cache")
    source, backend, _ = fetcher(upstream)
    for _ in range(3):
        assert await get(source, upstream) == "v1"
    assert upstream.asked == [None, 'W/"1"', 'W/"1"']
    assert backend.written[0][1] == 60  # kept only to revalidate


async def test_no_cache_without_an_etag_cannot_be_reused_and_is_not_stored() -> None:
    upstream = Upstream(etag=None, cache_control="no-cache")
    source, backend, _ = fetcher(upstream)
    await get(source, upstream)
    assert backend.written == []


async def test_a_source_ttl_of_zero_stores_nothing() -> None:
    upstream = Upstream()
    clock, backend = Clock(), RecordingBackend()
    source = SourceFetcher("hospital", SourceCache(backend, 60, clock=clock), ttl=0)
    await get(source, upstream)
    await get(source, upstream)
    assert upstream.asked == [None, None]
    assert backend.written == []


# --- single-flight --------------------------------------------------------------------------------


@pytest.mark.parametrize("caching", [True, False])
async def test_identical_requests_in_flight_make_one_upstream_call(caching: bool) -> None:
    upstream = Upstream(delay=0.05)
    source = fetcher(upstream)[0] if caching else SourceFetcher("hospital")
    answers = await asyncio.gather(*(get(source, upstream) for _ in range(10)))
    assert answers == ["v1"] * 10
    assert upstream.asked == [None]
    assert source.in_flight == 0
    await asyncio.gather(get(source, upstream, URL), get(source, upstream, URL + "&x=1"))
    assert len(upstream.asked) == (2 if caching else 3)  # different requests never share


async def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    calls = 0

    async def failing(_etag: str | None) -> Fetched[str]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("upstream down")

    source, backend, _ = fetcher(Upstream())
    results = await asyncio.gather(
        *(source.get(URL, failing, decode) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1
    assert backend.written == []


# --- keys, tags and purging -----------------------------------------------------------------------


async def test_keys_and_tags_hold_no_identifier_or_url_in_clear() -> None:
    upstream = Upstream()
    source, backend, _ = fetcher(upstream)
    await get(source, upstream)
    await source.get("person-question", upstream.fetch, decode, person="pg-0123456789abcdef")
    text = repr(backend.written)
    for clear in ("p-123", "p-456", "pg-0123", "ehr.test", "Observation", "hospital"):
        assert clear not in text
    assert len(backend.written[0][2]) == 2  # one tag per patient of the batched search


async def test_purge_patient_removes_exactly_that_patients_entries() -> None:
    upstream = Upstream(etag=None)
    clock, backend = Clock(), RecordingBackend()
    cache = SourceCache(backend, 60, clock=clock)
    hospital, pharmacy = SourceFetcher("hospital", cache), SourceFetcher("pharmacy", cache)
    await hospital.get("a", upstream.fetch, decode, patients=["p-1"])
    await hospital.get("a+b", upstream.fetch, decode, patients=["p-1", "p-2"])
    await hospital.get("b", upstream.fetch, decode, patients=["p-2"])
    await pharmacy.get("person 1", upstream.fetch, decode, person="pg-1")
    await pharmacy.get("person 2", upstream.fetch, decode, person="pg-2")
    links = [SourceLink("hospital", "p-1", "Patient"), SourceLink("clinic", "p-2", "Patient")]
    assert await cache.purge_patient(links, patient_id="pg-1") == 3
    upstream.asked.clear()
    for request in ("a", "a+b", "b"):
        await hospital.get(request, upstream.fetch, decode)
    await pharmacy.get("person 1", upstream.fetch, decode)
    await pharmacy.get("person 2", upstream.fetch, decode)
    assert len(upstream.asked) == 3  # a, a+b and person 1 went; b (clinic's p-2) stayed


async def test_the_hash_key_separates_deployments() -> None:
    one = SourceCache(MemoryCache(max_entries=1, max_bytes=9999), 1, hash_key="k1")
    two = SourceCache(MemoryCache(max_entries=1, max_bytes=9999), 1, hash_key="k2")
    assert one.patient_tag("s", "p") != two.patient_tag("s", "p")
    assert one.patient_tag("s", "p") == one.patient_tag("s", "p")
    assert one.patient_tag("s", "p") != one.patient_tag("s2", "p")


# --- a backend that is down -----------------------------------------------------------------------


async def test_an_unreachable_backend_never_fails_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = Upstream()
    source, _, _ = fetcher(upstream, backend=DownBackend())
    with caplog.at_level(logging.WARNING, "app.cache.guarded"):
        assert [await get(source, upstream) for _ in range(3)] == ["v1"] * 3
    assert upstream.asked == [None] * 3
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["source cache unavailable (CacheUnavailable): going without it"]


async def test_the_backend_is_left_alone_for_a_while_after_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = DownBackend()
    asked = 0
    original = DownBackend.get

    async def counting_get(self: DownBackend, key: str) -> bytes | None:
        nonlocal asked
        asked += 1
        return await original(self, key)

    monkeypatch.setattr(DownBackend, "get", counting_get)
    upstream = Upstream()
    source, _, _ = fetcher(upstream, backend=backend)
    for _ in range(5):
        await get(source, upstream)
    assert asked == 1  # then 5 s of backoff: no latency added per request during an outage


# --- freshness ------------------------------------------------------------------------------------


async def test_each_answer_notes_when_it_was_fetched() -> None:
    upstream = Upstream()
    source, _, clock = fetcher(upstream)
    with freshness.track() as fetched:
        await get(source, upstream)
    assert set(fetched) == {"hospital"}
    first = fetched["hospital"]
    clock.now += 10
    with freshness.track() as fetched:
        await get(source, upstream)  # a hit: the stored fetch time, not now
    assert fetched == {"hospital": first}


async def test_freshness_keeps_the_oldest_time_per_source_and_sees_spawned_tasks() -> None:
    async def later(source_id: str, at: float) -> None:
        await asyncio.sleep(0)
        freshness.note(source_id, at)

    with freshness.track() as fetched:
        tasks = [asyncio.create_task(later("a", t)) for t in (30.0, 10.0, 20.0)]
        await asyncio.gather(*tasks, later("b", 5.0))
    freshness.note("a", 1.0)  # outside track(): ignored
    assert fetched == {"a": 10.0, "b": 5.0}
    assert freshness.as_extension(freshness.FetchedAt({"a": 0.0, "b": 1_700_000_000.5})) == {
        "a": {"fetchedAt": "1970-01-01T00:00:00.000Z"},
        "b": {"fetchedAt": "2023-11-14T22:13:20.500Z"},
    }


async def test_waiters_on_a_shared_flight_each_note_freshness_in_their_own_request() -> None:
    upstream = Upstream(delay=0.05)
    source, _, _ = fetcher(upstream)

    async def request() -> freshness.FetchedAt:
        with freshness.track() as fetched:
            await get(source, upstream)
        return fetched

    records = await asyncio.gather(*(asyncio.create_task(request()) for _ in range(3)))
    assert upstream.asked == [None]
    assert all(set(r) == {"hospital"} for r in records)


# --- stale-if-error -------------------------------------------------------------------------------


@dataclass
class Failing(Upstream):
    """Answers like `Upstream` until `error` is set, then raises it."""

    error: SourceError | None = None

    async def fetch(self, etag: str | None) -> Fetched[str] | NotModified:
        if self.error is not None:
            self.asked.append(etag)
            raise self.error
        return await super().fetch(etag)


def stale_fetcher(upstream: Upstream, window: float = 300) -> tuple[SourceFetcher, Clock]:
    clock = Clock()
    cache = SourceCache(RecordingBackend(), 60, hash_key="secret", clock=clock)
    return SourceFetcher("hospital", cache, stale_if_error=window), clock


@pytest.mark.parametrize(
    "error",
    [
        SourceUnavailable("hospital", "HTTP 503"),
        SourceTimeout("hospital", "timed out"),
        SourceDataError("hospital", "not JSON"),
        CircuitOpen("hospital", "open"),
    ],
)
async def test_a_failing_upstream_is_stood_in_for_within_the_window(error: SourceError) -> None:
    upstream = Failing(etag=None)
    source, clock = stale_fetcher(upstream)
    with freshness.track() as first:
        assert await get(source, upstream) == "v1"
    upstream.error = error
    clock.now += 60 + 300  # past freshness by exactly the window
    with freshness.track() as fetched, failures.track() as failed:
        assert await get(source, upstream) == "v1"
    assert fetched == first
    assert fetched.stale == {"hospital"}
    assert failed == {"hospital": error}  # still remembered: the next stage is not asked
    assert len(upstream.asked) == 2
    clock.now += 0.001
    with pytest.raises(type(error)):
        await get(source, upstream)


@pytest.mark.parametrize(
    "error",
    [SourceRejected("hospital", "HTTP 400"), SourceTooLarge("hospital", "over 8 MiB")],
)
async def test_our_own_errors_are_not_hidden_by_a_stale_answer(error: SourceError) -> None:
    upstream = Failing(etag=None)
    source, clock = stale_fetcher(upstream)
    await get(source, upstream)
    upstream.error, clock.now = error, clock.now + 61
    with pytest.raises(type(error)):
        await get(source, upstream)


@pytest.mark.parametrize(
    ("header", "window"),
    [
        (None, 300),
        ("max-age=10, stale-if-error=30", 30),
        ("stale-if-error=3000", 300),  # the upstream can shorten the window, never lengthen it
        ("max-age=10, must-revalidate", 0),
        ("proxy-revalidate, stale-if-error=30", 0),
    ],
)
async def test_the_window_is_the_sources_shortened_by_the_upstream(
    header: str | None, window: float
) -> None:
    upstream = Failing(etag=None, cache_control=header)
    clock, backend = Clock(), RecordingBackend()
    cache = SourceCache(backend, 60, hash_key="secret", clock=clock)
    source = SourceFetcher("hospital", cache, stale_if_error=300)
    await get(source, upstream)
    ((_, ttl, _),) = backend.written
    lifetime = cache_control.lifetime(cache_control.parse(header), 60)
    assert ttl == lifetime + window  # kept that long past freshness for it, and no longer
    upstream.error = SourceUnavailable("hospital", "HTTP 503")
    clock.now += lifetime + window + 0.001
    with pytest.raises(SourceUnavailable):
        await get(source, upstream)


async def test_without_a_window_a_failing_upstream_is_an_error() -> None:
    upstream = Failing(etag=None)
    source, clock = stale_fetcher(upstream, window=0)
    await get(source, upstream)
    upstream.error, clock.now = SourceUnavailable("hospital", "HTTP 503"), clock.now + 61
    with pytest.raises(SourceUnavailable):
        await get(source, upstream)


def test_an_entry_keeps_its_window_and_older_layouts_read_as_misses() -> None:
    entry = Entry(b"body", 1.5, 60.0, 'W/"1"', ("p:x",), 300.0)
    assert Entry.decode(entry.encode()) == entry
    old = b'{"v":1,"t":1.5,"l":60.0,"e":null,"g":[]}\nbody'
    assert Entry.decode(old) is None
