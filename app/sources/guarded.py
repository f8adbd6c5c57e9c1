"""The fetcher every HTTP source's requests pass through on their way upstream, under the cache:
refused at once when the source already failed in this operation (`app.sources.failures`),
within the source's bulkhead (`app.sources.bulkhead`), retried when transient and idempotent
(`app.sources.retries`), each attempt through the source's circuit breaker when it has one
(`app.sources.breaker`), and each outcome told to readiness (`app.sources.readiness`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from app.sources import failures
from app.sources.breaker import CircuitBreaker, source_is_down
from app.sources.bulkhead import Bulkhead
from app.sources.errors import SourceError
from app.sources.fetching import Decode, Fetch, Fetched, Fetcher, NotModified
from app.sources.readiness import Readiness
from app.sources.retries import Retrying

T = TypeVar("T")


class Guarded:
    def __init__(
        self,
        inner: Fetcher,
        source_id: str,
        breaker: CircuitBreaker | None,
        readiness: Readiness | None = None,
        *,
        bulkhead: Bulkhead | None = None,
        retrying: Retrying | None = None,
    ) -> None:
        self._inner = inner
        self.source_id = source_id
        self.breaker = breaker
        self._readiness = readiness
        self._bulkhead = bulkhead
        self._retrying = retrying

    async def get(
        self,
        request: str,
        fetch: Fetch[T],
        decode: Decode[T],
        *,
        patients: Iterable[str] = (),
        person: str | None = None,
    ) -> T:
        async def attempt(etag: str | None) -> Fetched[T] | NotModified:
            if self.breaker is None:
                return await fetch(etag)
            return await self.breaker.call(fetch, etag)

        async def retried(etag: str | None) -> Fetched[T] | NotModified:
            if self._retrying is None:
                return await attempt(etag)
            return await self._retrying.call(lambda: attempt(etag))

        async def upstream(etag: str | None) -> Fetched[T] | NotModified:
            failures.raise_if_failed(self.source_id)
            try:
                if self._bulkhead is None:
                    answer = await retried(etag)
                else:
                    answer = await self._bulkhead.call(lambda: retried(etag))
            except SourceError as error:
                self._observe(error)
                raise
            self._observe(None)
            return answer

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

    def _observe(self, error: SourceError | None) -> None:
        """Tell readiness how a request that went upstream ended."""
        if self._readiness is None:
            return
        if error is None:
            self._readiness.succeeded(self.source_id)
        else:
            self._readiness.failed(error)
