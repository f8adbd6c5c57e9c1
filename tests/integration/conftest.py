"""Integration fixtures: cache backends, the in-process one and real Redis (127.0.0.1:6379)
under a key prefix of the test's own, since several test runs may share one Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryCache
from app.cache.redis_backend import RedisCache
from app.store import create_engine

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


POSTGRES_URL = os.environ.get(
    "PATIENTGRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


async def store_url_for(param: str, tmp_path: Path, metadata: sa.MetaData) -> str:
    """A store for one test: a SQLite file of its own, or the test PostgreSQL with
    `metadata`'s tables dropped (skipped when unreachable, failed under CI, where it must
    be reachable)."""
    if param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable in CI: {exc.__class__.__name__}")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 not reachable")
    finally:
        await engine.dispose()
    return POSTGRES_URL
