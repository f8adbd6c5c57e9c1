"""A backend whose outages cost a query neither an error nor latency: reads miss, writes are
skipped, the outage is logged once (class name only), and the backend is left alone for
`BACKOFF_SECONDS` after each failure. Purges are not guarded: they must fail loudly."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from app.cache.backend import CacheBackend, CacheUnavailable

log = logging.getLogger(__name__)
BACKOFF_SECONDS = 5.0


class Guarded:
    def __init__(self, backend: CacheBackend, name: str) -> None:
        self.backend = backend
        self._name = name  # "response cache", "source cache": for the log
        self._down_until = 0.0  # time.monotonic() before which the backend is not asked
        self._down = False

    async def get(self, key: str) -> bytes | None:
        if time.monotonic() < self._down_until:
            return None
        try:
            value = await self.backend.get(key)
        except CacheUnavailable as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        if time.monotonic() < self._down_until:
            return
        try:
            await self.backend.set(key, value, ttl, tags)
        except CacheUnavailable as exc:
            self._failed(exc)
            return
        self._recovered()

    def _failed(self, exc: CacheUnavailable) -> None:
        self._down_until = time.monotonic() + BACKOFF_SECONDS
        if not self._down:  # once per outage, not once per request
            log.warning("%s unavailable (%s): going without it", self._name, type(exc).__name__)
        self._down = True

    def _recovered(self) -> None:
        if self._down:
            log.warning("%s available again", self._name)
        self._down = False
