"""The fetch port: how an HTTP source asks its upstream, so that caching (and later retries,
breakers) can wrap the asking without the source knowing (as httpx owns its transport base).

A source hands a `Fetcher` the request's identity, a `Fetch` that asks the upstream and a
`Decode` that turns a stored body back into the value; the fetcher decides whether to ask.
`app.cache.sources.SourceFetcher` implements it with a shared cache; `Direct` is the plain one.
Every fetcher single-flights identical requests and notes each answer's fetch time in the
request's freshness record (`app.sources.freshness`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from app.sources import freshness
from app.sources.singleflight import SingleFlight

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """An upstream's 2xx answer, already checked and decoded by the source: a failure is
    raised instead, so errors are never cached."""

    body: bytes
    value: T
    etag: str | None = None
    cache_control: str | None = None
    subjects: tuple[str, ...] = ()  # local patient ids found in the answer (more tags)


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304 to our `If-None-Match`: the stored body is still current."""

    etag: str | None = None
    cache_control: str | None = None


# Asks the upstream; the argument is the stored ETag to revalidate (If-None-Match), or None.
Fetch = Callable[[str | None], Awaitable[Fetched[T] | NotModified]]
Decode = Callable[[bytes], T]  # a stored body back to the value (it was checked when fetched)


class Fetcher(Protocol):
    """One source's way to its upstream."""

    async def get(
        self,
        request: str,
        fetch: Fetch[T],
        decode: Decode[T],
        *,
        patients: Iterable[str] = (),
        person: str | None = None,
    ) -> T:
        """The answer to `request` (what identifies it at this source: a full URL, a canonical
        query). `patients` are the source-local patient ids it is about, `person` the
        PatientGraph id of a person query: a caching fetcher tags entries with them (hashed)."""
        ...


class Direct:
    """No cache: every request asks the upstream, identical ones in flight only once."""

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self._flights: SingleFlight[tuple[Any, float]] = SingleFlight()

    async def get(
        self,
        request: str,
        fetch: Fetch[T],
        decode: Decode[T],
        *,
        patients: Iterable[str] = (),
        person: str | None = None,
    ) -> T:
        key = flight_key(self.source_id, request)
        # The flight runs in the first caller's context: note freshness here, per caller.
        (value, fetched_at), _ = await self._flights.run(key, lambda: ask_upstream(fetch))
        freshness.note(self.source_id, fetched_at)
        return cast(T, value)


def flight_key(source_id: str, request: str) -> str:
    """What identifies a request in flight at one source (no secret needed: it stays here)."""
    return hashlib.sha256(f"{source_id}\x1f{request}".encode()).hexdigest()


async def ask_upstream(fetch: Fetch[T]) -> tuple[T, float]:
    """The upstream's answer to a request with nothing stored to revalidate, and when."""
    answer = await fetch(None)
    assert isinstance(answer, Fetched), "a 304 to a request without If-None-Match"
    return answer.value, time.time()
