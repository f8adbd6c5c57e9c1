"""Rate limits per client address (before authentication) and per principal (after it), with
the `limits` library: in-process by default, in Redis when `[cache] backend = "redis"`, so
every worker and machine counts against the same budget.

A request over a limit is answered 429 `RATE_LIMITED` with `Retry-After`. Keys are SHA-256
digests of the address or of the token's issuer and subject: nothing stored names a person.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, cast

import redis.asyncio
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.auth.principal import Principal
from app.settings import CacheSettings, RateLimitSettings


class RateLimits:
    def __init__(
        self,
        settings: RateLimitSettings,
        storage: Storage,
        pool: redis.asyncio.ConnectionPool | None = None,
    ) -> None:
        """`pool`: the Redis connections under `storage`, closed with it."""
        self.enabled = settings.enabled
        self._limiter = MovingWindowRateLimiter(storage)
        self._storage, self._pool = storage, pool
        self._per_address = parse(settings.per_address)
        self._per_principal = parse(settings.per_principal)
        self._by_role = {role: parse(limit) for role, limit in settings.by_role.items()}
        self._search_unit = settings.search_unit

    async def address_wait(self, address: str) -> float | None:
        """Seconds to wait before this client address may send again; None: go ahead."""
        return await self._spend(self._per_address, "address", address)

    async def principal_wait(self, principal: Principal) -> float | None:
        """The same for the caller: its roles' most generous limit (`by_role`), else the
        default."""
        item = self._limit_for(principal)
        return await self._spend(item, "principal", principal.issuer, principal.subject)

    async def charge(self, principal: Principal, searches: int) -> float | None:
        """After the cost estimate: what a query that fans out widely spends beyond the one
        request `principal_wait` counted (`search_unit` searches each); None: go ahead."""
        extra = searches // self._search_unit
        if extra == 0:
            return None
        item = self._limit_for(principal)
        return await self._spend(item, "principal", principal.issuer, principal.subject, cost=extra)

    def _limit_for(self, principal: Principal) -> RateLimitItem:
        own = [self._by_role[r] for r in principal.roles if r in self._by_role]
        return max(own, key=_per_second) if own else self._per_principal

    async def _spend(
        self, item: RateLimitItem, kind: str, *parts: str, cost: int = 1
    ) -> float | None:
        if not self.enabled:
            return None
        key = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
        if await self._limiter.hit(item, kind, key, cost=cost):
            return None
        stats = await self._limiter.get_window_stats(item, kind, key)
        return max(stats.reset_time - time.time(), 1.0)

    async def aclose(self) -> None:
        if isinstance(self._storage, MemoryStorage) and self._storage.timer is not None:
            self._storage.timer.cancel()  # its expiry task
        if self._pool is not None:
            await self._pool.aclose()


def _per_second(item: RateLimitItem) -> float:
    return item.amount / item.get_expiry()


def rate_limits(settings: RateLimitSettings, cache: CacheSettings) -> RateLimits:
    """Counted in Redis, shared with every worker, when the caches are (same server, own key
    prefix); else in this process."""
    if cache.backend != "redis":
        return RateLimits(settings, MemoryStorage())
    pool = redis.asyncio.ConnectionPool.from_url(cache.redis_url)
    storage = RedisStorage(
        "async+" + cache.redis_url,
        implementation="redispy",
        key_prefix=f"{cache.key_prefix}:limits",
        # limits types its options as scalars; its redis-py bridge takes a pool (we close it).
        **cast(dict[str, Any], {"connection_pool": pool}),
    )
    return RateLimits(settings, storage, pool)


def retry_after(seconds: float) -> str:
    """`Retry-After` as whole seconds (RFC 9110 section 10.2.3), never 0."""
    return str(max(1, math.ceil(seconds)))
