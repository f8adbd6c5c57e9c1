"""The issuer's signing keys (a JWKS), from a file or a URL.

A URL is fetched with a timeout and cached; an unknown `kid` triggers at most one refresh per
`min_refresh_seconds`, so key rotation works without a restart and a flood of forged `kid`s
cannot turn into a flood of fetches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

Jwk = Mapping[str, Any]


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
    ) -> None:
        if (path is None) == (url is None):
            raise ValueError("exactly one of path or url")
        self._path, self._url = path, url
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._keys: tuple[Jwk, ...] = ()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def keys(self) -> tuple[Jwk, ...]:
        if time.monotonic() - self._loaded_at > self._cache_seconds:
            await self._reload(force=False)
        return self._keys

    async def refresh_for_unknown_kid(self) -> tuple[Jwk, ...]:
        """Reload at most once per `min_refresh_seconds`; returns the (possibly new) keys."""
        if time.monotonic() - self._loaded_at >= self._min_refresh:
            await self._reload(force=True)
        return self._keys

    async def _reload(self, *, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._loaded_at
            if (force and age < self._min_refresh) or (not force and age <= self._cache_seconds):
                return  # another task refreshed while we waited
            self._keys = parse_jwks(await self._fetch())
            self._loaded_at = time.monotonic()

    async def _fetch(self) -> bytes:
        if self._path is not None:
            try:
                return await asyncio.to_thread(self._path.read_bytes)
            except OSError as exc:
                raise KeySetError(f"JWKS file unreadable ({exc.__class__.__name__})") from exc
        assert self._url is not None
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
                response = await client.get(self._url)
        except httpx.HTTPError as exc:
            raise KeySetError(f"JWKS fetch failed ({exc.__class__.__name__})") from exc
        if response.status_code != 200:
            raise KeySetError(f"JWKS fetch answered HTTP {response.status_code}")
        return response.content
