"""In-process cache backend (cachetools): bounded by entry count and by total bytes, each
entry expiring after its own TTL; least recently used entries go first when full."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from cachetools import TLRUCache

ENTRY_OVERHEAD = 256  # bytes counted per entry for the key, tags and bookkeeping


@dataclass(frozen=True, slots=True)
class _Entry:
    value: bytes
    expires: float
    tags: frozenset[str]


def _expiry(_key: str, entry: _Entry, _now: float) -> float:
    return entry.expires


def _size(entry: _Entry) -> int:
    return len(entry.value) + ENTRY_OVERHEAD


class MemoryCache:
    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self._entries: TLRUCache[str, _Entry] = TLRUCache(
            maxsize=max_bytes, ttu=_expiry, timer=time.monotonic, getsizeof=_size
        )

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str] = ()) -> None:
        entry = _Entry(value, time.monotonic() + ttl, frozenset(tags))
        if _size(entry) > self._entries.maxsize:
            return  # larger than the whole cache: not worth evicting everything for
        self._entries.pop(key, None)
        self._entries.expire()
        while len(self._entries) >= self.max_entries:
            self._entries.popitem()
        self._entries[key] = entry

    async def purge_tag(self, tag: str) -> int:
        # A scan rather than a tag index: purges are rare, and an index would need its own
        # bookkeeping on every eviction to stay bounded.
        doomed = [k for k, e in list(self._entries.items()) if tag in e.tags]
        for key in doomed:
            self._entries.pop(key, None)
        return len(doomed)

    async def clear(self) -> None:
        self._entries.clear()

    async def aclose(self) -> None:
        self._entries.clear()

    @property
    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        return len(self._entries), int(self._entries.currsize)
