"""The two cache backends behave alike: get/set, per-entry expiry, purge by tag, clear; the
memory one is bounded by entries and bytes; the Redis one is real (127.0.0.1:6379) and fails
with CacheUnavailable, never a hang or a leak, when Redis cannot be reached."""

from __future__ import annotations

import asyncio

import pytest

from app.cache.backend import CacheBackend, CacheUnavailable
from app.cache.memory import ENTRY_OVERHEAD, MemoryCache
from app.cache.redis_backend import RedisCache
from app.sources.singleflight import SingleFlight
from tests.conftest import closed_port_url


async def test_get_set_and_expiry(backend: CacheBackend) -> None:
    assert await backend.get("k") is None
    await backend.set("k", b"v", ttl=0.3)
    await backend.set("long", b"w", ttl=30)
    assert await backend.get("k") == b"v"
    await asyncio.sleep(0.45)
    assert await backend.get("k") is None
    assert await backend.get("long") == b"w"


async def test_purge_by_tag_removes_exactly_the_tagged_entries(backend: CacheBackend) -> None:
    await backend.set("a", b"1", 30, ["patient:p1"])
    await backend.set("b", b"2", 30, ["patient:p1", "patient:p2"])
    await backend.set("c", b"3", 30, ["patient:p2"])
    await backend.set("d", b"4", 30)
    assert await backend.purge_tag("patient:p1") == 2
    assert [await backend.get(k) for k in "abcd"] == [None, None, b"3", b"4"]
    assert await backend.purge_tag("patient:p1") == 0
    await backend.clear()
    assert await backend.get("c") is None


async def test_memory_cache_is_bounded_by_entries_and_bytes() -> None:
    by_count = MemoryCache(max_entries=3, max_bytes=1_000_000)
    for key in "abcd":
        await by_count.set(key, b"x", 30)
    assert by_count.size[0] == 3
    assert await by_count.get("a") is None  # least recently used went first
    by_bytes = MemoryCache(max_entries=100, max_bytes=3 * (100 + ENTRY_OVERHEAD))
    for key in "abcd":
        await by_bytes.set(key, b"x" * 100, 30)
    assert by_bytes.size == (3, 3 * (100 + ENTRY_OVERHEAD))
    await by_bytes.get("b")  # recently used: kept
    await by_bytes.set("e", b"x" * 100, 30)
    assert await by_bytes.get("b") is not None
    assert await by_bytes.get("c") is None
    await by_bytes.set("huge", b"x" * 10_000, 30)  # larger than the cache: not stored
    assert await by_bytes.get("huge") is None
    assert by_bytes.size[0] == 3


async def test_unreachable_redis_raises_cache_unavailable() -> None:
    url = closed_port_url().replace("http://", "redis://").split("/fhir")[0]
    cache = RedisCache(url, prefix="test", namespace="down", max_ttl=60)
    for call in (cache.get("k"), cache.set("k", b"v", 1, ["t"]), cache.purge_tag("t")):
        with pytest.raises(CacheUnavailable) as raised:
            await asyncio.wait_for(call, 10)
        assert str(raised.value).startswith("redis: ")  # the error class, no key or value
    await cache.aclose()


async def test_single_flight_shares_one_computation_and_survives_a_cancelled_caller() -> None:
    flight: SingleFlight[int] = SingleFlight()
    started = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    callers = [asyncio.ensure_future(flight.run("k", compute)) for _ in range(5)]
    await asyncio.sleep(0.01)
    callers[0].cancel()  # the first caller goes away: the others still get the answer
    release.set()
    results = await asyncio.gather(*callers[1:])
    assert results == [(42, False)] * 4
    assert started == 1
    assert flight.shared == 4
    assert len(flight) == 0
    assert await flight.run("k", compute) == (42, True)  # a later call computes afresh
    assert started == 2


async def test_single_flight_is_cancelled_when_its_last_caller_goes_away() -> None:
    flight: SingleFlight[int] = SingleFlight()
    computing: list[asyncio.Task[int]] = []

    async def compute() -> int:
        computing.append(asyncio.current_task())  # type: ignore[arg-type]
        await asyncio.sleep(30)
        return 42

    callers = [asyncio.ensure_future(flight.run("k", compute)) for _ in range(2)]
    await asyncio.sleep(0.01)
    callers[0].cancel()
    await asyncio.sleep(0.01)
    assert not computing[0].done()  # one caller still waits
    callers[1].cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)
    assert computing[0].cancelled()
    assert len(flight) == 0
