"""A bulkhead per source: at most `limit` of its upstream requests in flight at once.

One slow upstream then holds at most that many connections and tasks, however many queries
want it; the rest wait for a slot for at most `wait` seconds (the source's timeout) and then
fail at once with `BulkheadFull`, a coded error of that source like any other (stale-if-error
may stand in). It is our own limit, not the upstream's failure: neither the circuit breaker
(the bulkhead sits outside it) nor readiness counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.sources.errors import SourceUnavailable

T = TypeVar("T")


class BulkheadFull(SourceUnavailable):
    """Refused without asking: the source already has as many requests in flight as allowed."""

    reason = "is busy (too many requests to it in flight)"
    state = "busy"
    cause = "bulkhead_full"


class Bulkhead:
    def __init__(self, source_id: str, limit: int, wait: float) -> None:
        self.source_id = source_id
        self.limit = limit
        self._wait = wait
        self._slots = asyncio.Semaphore(limit)
        self.refused = 0  # requests refused for want of a slot since start-up

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            self.refused += 1
            raise BulkheadFull(self.source_id, f"{self.limit} in flight") from None
        try:
            return await attempt()
        finally:
            self._slots.release()
