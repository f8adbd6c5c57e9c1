"""Integration fixtures: cache backends, the in-process one and real Redis (127.0.0.1:6379)
under a key prefix of the test's own, since several test runs may share one Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryCache
from app.cache.redis_backend import RedisCache

REDIS_URL = "redis://127.0.0.1:6379/0"
BACKENDS = ["memory", "redis"]


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    cache: CacheBackend
    if request.param == "memory":
        cache = MemoryCache(max_entries=1000, max_bytes=50_000_000)
    else:
        cache = RedisCache(REDIS_URL, prefix=unique_prefix(), namespace="test", max_ttl=86400)
    yield cache
    await cache.clear()
    await cache.aclose()
