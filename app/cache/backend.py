"""The cache backend interface: bytes under string keys, each entry with its own time to live
and tags (e.g. `patient:pg-…`) by which a group of entries can be purged at once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class CacheBackend(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        """Store `value` for `ttl` seconds, findable by each of `tags` for purging."""

    async def purge_tag(self, tag: str) -> int:
        """Remove every entry carrying `tag`; returns how many were removed."""

    async def clear(self) -> None: ...

    async def aclose(self) -> None: ...


class CacheUnavailable(Exception):
    """The backend cannot be reached (e.g. Redis is down). The message names no key or value."""
