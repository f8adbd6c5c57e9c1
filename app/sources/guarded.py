"""The fetcher every HTTP source's requests pass through on their way upstream, under the cache:
refused at once when the source already failed in this operation (`app.sources.failures`),
and through the source's circuit breaker when it has one (`app.sources.breaker`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from app.sources import failures
from app.sources.breaker import CircuitBreaker, source_is_down
from app.sources.errors import SourceError
from app.sources.fetching import Decode, Fetch, Fetched, Fetcher, NotModified

T = TypeVar("T")


class Guarded:
    def __init__(self, inner: Fetcher, source_id: str, breaker: CircuitBreaker | None) -> None:
        self._inner = inner
        self.source_id = source_id
        self.breaker = breaker

    async def get(
        self,
        request: str,
        fetch: Fetch[T],
        decode: Decode[T],
        *,
        patients: Iterable[str] = (),
        person: str | None = None,
    ) -> T:
        async def upstream(etag: str | None) -> Fetched[T] | NotModified:
            failures.raise_if_failed(self.source_id)
            if self.breaker is None:
                return await fetch(etag)
            return await self.breaker.call(fetch, etag)

        try:
            return await self._inner.get(
                request, upstream, decode, patients=patients, person=person
            )
        except SourceError as error:
            # Noted here, in each caller's own operation: a single-flighted request's failure
            # reaches every operation that waited for it.
            if source_is_down(error):
                failures.note(error)
            raise
