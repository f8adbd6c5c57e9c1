"""Redis cache backend: shared by every worker and machine. Entries are plain keys with a
millisecond expiry; each tag is a Redis set of the keys carrying it, expiring no sooner than
the longest-lived entry it may hold."""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.cache.backend import CacheUnavailable


class RedisCache:
    def __init__(self, url: str, *, prefix: str, namespace: str, max_ttl: float) -> None:
        self._redis = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = f"{prefix}:{namespace}:"
        self._tag_ttl_ms = int(max_ttl * 1000) + 1000

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _tag(self, tag: str) -> str:
        return f"{self._prefix}tag:{tag}"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._key(key))
        except RedisError as exc:
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}") from None
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        name = self._key(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(name, value, px=max(1, int(ttl * 1000)))
                for tag in tags:
                    pipe.sadd(self._tag(tag), name)
                    pipe.pexpire(self._tag(tag), self._tag_ttl_ms)
                await pipe.execute()
        except RedisError as exc:
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}") from None

    async def purge_tag(self, tag: str) -> int:
        try:
            members = await self._redis.smembers(self._tag(tag))
            async with self._redis.pipeline(transaction=True) as pipe:
                if members:
                    pipe.delete(*members)
                pipe.delete(self._tag(tag))
                results = await pipe.execute()
        except RedisError as exc:
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}") from None
        return int(results[0]) if members else 0

    async def clear(self) -> None:
        try:
            async for name in self._redis.scan_iter(match=f"{self._prefix}*", count=500):
                await self._redis.delete(name)
        except RedisError as exc:
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}") from None

    async def aclose(self) -> None:
        await self._redis.aclose()
