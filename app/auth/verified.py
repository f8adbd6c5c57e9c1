"""Recently verified tokens, remembered by their SHA-256: a dashboard sends the same bearer
token many times a minute, and verifying an RS256 signature costs about 100 µs, more than
answering from the response cache.

A token is remembered only after it passed every check, for at most `max_age` seconds and
never past its `exp`. A key withdrawn from the JWKS is honoured until the JWKS is refetched
(`auth.jwks_cache_seconds`), and a token it verified for at most `max_age` after that.
Only the digest is kept as the key: the token itself is never stored.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from cachetools import TLRUCache

from app.auth.principal import Principal


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    until: float  # wall-clock seconds, as `exp`


def _until(_key: bytes, entry: _Entry, _now: float) -> float:
    return entry.until


class VerifiedTokens:
    def __init__(self, *, max_age: float, max_entries: int = 10_000) -> None:
        self.max_age = max_age
        self._entries: TLRUCache[bytes, _Entry] = TLRUCache(
            maxsize=max_entries, ttu=_until, timer=time.time
        )

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(_digest(token))
        return None if entry is None else entry.principal

    def remember(self, token: str, principal: Principal) -> None:
        if self.max_age <= 0 or principal.expires_at is None:
            return
        until = min(time.time() + self.max_age, principal.expires_at)
        self._entries[_digest(token)] = _Entry(principal, until)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
