"""The issuer's signing keys (a JWKS), from a file or a URL.

A URL is fetched with a timeout (for the whole fetch, not per read), a size cap and no redirects,
and cached; an unknown `kid` triggers at most one refresh per `min_refresh_seconds`, so key
rotation works without a restart and a flood of forged `kid`s cannot turn into a flood of
fetches. A failed fetch is not retried for `min_refresh_seconds` either: while the JWKS is down
requests are refused at once instead of each waiting out its own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)
Jwk = Mapping[str, Any]
MAX_JWKS_BYTES = 1_048_576


class KeySetError(Exception):
    """The key set could not be loaded (message is safe to log)."""


def parse_jwks(raw: bytes) -> tuple[Jwk, ...]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeySetError("JWKS is not JSON") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise KeySetError("JWKS has no 'keys' array")
    # Private parts never belong in a verification key set; refuse rather than hold them.
    if any("d" in k for k in keys):
        raise KeySetError("JWKS contains private key material")
    return tuple(keys)


class KeySet:
    def __init__(
        self,
        *,
        path: Path | None = None,
        url: str | None = None,
        cache_seconds: float = 300,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("exactly one of path or url")
        self._path, self._url = path, url
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: tuple[Jwk, ...] = ()
        self._loaded_at = float("-inf")
        self._failed_at = float("-inf")
        self._failure: str | None = None  # why the last fetch failed, until one succeeds
        self._lock = asyncio.Lock()

    async def keys(self) -> tuple[Jwk, ...]:
        if self._clock() - self._loaded_at > self._cache_seconds:
            await self._reload(force=False)
        return self._keys

    async def refresh_for_unknown_kid(self) -> tuple[Jwk, ...]:
        """Reload at most once per `min_refresh_seconds`; returns the (possibly new) keys."""
        if self._clock() - self._loaded_at >= self._min_refresh:
            await self._reload(force=True)
        return self._keys

    async def _reload(self, *, force: bool) -> None:
        async with self._lock:
            now = self._clock()
            age = now - self._loaded_at
            if (force and age < self._min_refresh) or (not force and age <= self._cache_seconds):
                return  # another task refreshed while we waited
            if self._failure is not None and now - self._failed_at < self._min_refresh:
                if force:
                    return  # keep the keys we have; the fetch failed moments ago
                raise KeySetError(self._failure)
            try:
                keys = parse_jwks(await self._fetch())
            except KeySetError as exc:
                self._failure, self._failed_at = str(exc), self._clock()
                log.warning("%s; tokens are refused until a retry succeeds", exc)
                raise
            self._keys, self._loaded_at, self._failure = keys, self._clock(), None

    async def _fetch(self) -> bytes:
        if self._path is not None:
            try:
                return await asyncio.to_thread(self._path.read_bytes)
            except OSError as exc:
                raise KeySetError(f"JWKS file unreadable ({exc.__class__.__name__})") from exc
        assert self._url is not None
        try:
            async with asyncio.timeout(self._timeout):  # httpx's timeout is per read, not total
                return await self._download(self._url)
        except TimeoutError as exc:
            raise KeySetError("JWKS fetch timed out") from exc
        except httpx.HTTPError as exc:
            raise KeySetError(f"JWKS fetch failed ({exc.__class__.__name__})") from exc

    async def _download(self, url: str) -> bytes:
        async with (
            httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:  # redirects included: never followed
                raise KeySetError(f"JWKS fetch answered HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise KeySetError("JWKS response too large")
            return bytes(body)
