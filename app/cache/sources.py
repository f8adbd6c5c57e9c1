"""The source cache: upstream answers per (source, request), shared across callers because
authorization is applied above it.

- Key: HMAC-SHA256 of (source id, request), the request being the full GET URL with its query
  (FHIR) or a canonical query (NCPDP). Tags: HMAC-SHA256 of (source id, local patient id) for
  each patient a request is about, and of the PatientGraph id for person queries. Nothing stored
  as a key or tag is an identifier in clear.
- Lifetime: the source's TTL, shortened by the upstream's `Cache-Control` (`max-age`,
  `s-maxage`); `no-store`/`private` are never stored; `no-cache` is revalidated on every use.
- Revalidation: an answer with an `ETag` is kept one more source TTL past its freshness (the
  grace period), so that once stale it is revalidated with `If-None-Match`: a 304 renews it
  without a download. Freshness is decided from the stored fetch time, not by the backend.
- Stale-if-error: when the upstream fails (unavailable, timed out, unreadable, or its circuit
  open), an answer past its freshness by at most the source's `stale_if_error_seconds` is
  served instead, marked stale in the request's freshness record (`extensions.sources`), and the
  failure is still remembered for the operation. Entries are kept that long past freshness for
  it. An upstream's `must-revalidate`/`proxy-revalidate` forbids it (RFC 9111 §5.2.2.2), and its
  `stale-if-error=N` (RFC 5861) can only shorten it. Authorization sits above this cache, so a
  stale answer is filtered for each caller exactly like a fresh one.
- Single-flight: identical requests in flight in this process make one upstream call, with or
  without a cache (a source whose TTL is 0 still coalesces).
- A backend failure never fails a query (`app.cache.guarded`): the upstream is asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson

from app.cache import cache_control
from app.cache.backend import CacheBackend
from app.cache.guarded import Guarded
from app.domain.common import SourceLink
from app.sources import failures, freshness
from app.sources.breaker import source_is_down
from app.sources.errors import SourceError
from app.sources.fetching import Decode, Fetch, NotModified, ask_upstream, flight_key
from app.sources.singleflight import SingleFlight

T = TypeVar("T")
# An answer handed out: the value, when it was fetched, and the upstream failure it stood in
# for when it was served stale (None when fresh).
_Answer = tuple[T, float, SourceError | None]
ENTRY_FORMAT = 2  # bump when the stored layout changes: older entries then read as misses
MAX_STORE_SECONDS = 86400.0  # no entry outlives this (a Redis tag set lives as long)


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    fetched_at: float  # epoch seconds (wall clock: a Redis entry is read by other machines)
    lifetime: float  # seconds fresh after fetched_at; 0: revalidate before every use
    etag: str | None
    tags: tuple[str, ...]
    stale_for: float = 0.0  # seconds past freshness it may stand in for a failing upstream

    def is_fresh(self, now: float) -> bool:
        return now - self.fetched_at < self.lifetime

    def may_stand_in(self, now: float) -> bool:
        return now - self.fetched_at <= self.lifetime + self.stale_for

    def encode(self) -> bytes:
        # orjson never writes a raw newline, so the first one ends the header.
        head = {"v": ENTRY_FORMAT, "t": self.fetched_at, "l": self.lifetime, "s": self.stale_for}
        return orjson.dumps({**head, "e": self.etag, "g": self.tags}) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        head, sep, body = raw.partition(b"\n")
        try:
            meta = orjson.loads(head)
            if not sep or meta["v"] != ENTRY_FORMAT:
                return None
            times = float(meta["t"]), float(meta["l"])
            return cls(body, *times, meta["e"], tuple(meta["g"]), float(meta["s"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class SourceCache:
    """Every source's upstream answers in one backend; a `SourceFetcher` is one source's view."""

    def __init__(
        self,
        backend: CacheBackend,
        default_ttl: float,
        *,
        hash_key: str | bytes = b"",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.default_ttl = default_ttl  # seconds; a source's `cache_seconds` overrides it
        self._key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        self.clock = clock
        self._guarded = Guarded(backend, "source cache")

    def digest(self, *parts: str) -> str:
        message = "\x1f".join(parts).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def patient_tag(self, source_id: str, local_id: str) -> str:
        return "p:" + self.digest("patient", source_id, local_id)

    def person_tag(self, patient_id: str) -> str:
        return "pg:" + self.digest("person", patient_id)

    async def purge_patient(
        self, links: Sequence[SourceLink], *, patient_id: str | None = None
    ) -> int:
        """Remove every entry about one person: those tagged with any of their source links
        (FHIR) and, given their PatientGraph id, their person queries (NCPDP). Returns how many
        entries went. Raises CacheUnavailable: a purge must not fail silently."""
        tags = {self.patient_tag(link.source_id, link.local_id) for link in links}
        if patient_id is not None:
            tags.add(self.person_tag(patient_id))
        removed = 0
        for tag in sorted(tags):
            removed += await self.backend.purge_tag(tag)
        return removed

    async def load(self, key: str) -> Entry | None:
        raw = await self._guarded.get(key)
        return None if raw is None else Entry.decode(raw)

    async def store(self, key: str, entry: Entry, ttl: float) -> None:
        await self._guarded.set(key, entry.encode(), min(ttl, MAX_STORE_SECONDS), entry.tags)


class SourceFetcher:
    """The fetch port (`app.sources.fetching.Fetcher`) through the cache when there is one and
    the source's TTL is above 0, and single-flight always. Every answer handed out is noted in
    the request's freshness record (`app.sources.freshness`)."""

    def __init__(
        self,
        source_id: str,
        cache: SourceCache | None = None,
        ttl: float | None = None,
        *,
        stale_if_error: float = 0.0,
    ) -> None:
        self.source_id = source_id
        self.ttl = 0.0 if cache is None else cache.default_ttl if ttl is None else ttl
        self.stale_if_error = stale_if_error  # seconds; see the module's docstring
        self._cache = cache if self.ttl > 0 else None
        self._flights: SingleFlight[_Answer[Any]] = SingleFlight()

    @property
    def in_flight(self) -> int:
        return len(self._flights)

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
        PatientGraph id of a person query: both only become (hashed) purge tags."""
        cache = self._cache
        key = (
            cache.digest(self.source_id, request)
            if cache is not None
            else flight_key(self.source_id, request)
        )
        about = (tuple(patients), person)
        # The flight runs in the first caller's context: note freshness (and a failure a stale
        # answer stood in for) here, in each caller's own operation.
        (value, fetched_at, failure), _ = await self._flights.run(
            key, lambda: self._answer(key, fetch, decode, about)
        )
        freshness.note(self.source_id, fetched_at, stale=failure is not None)
        if failure is not None:
            failures.note(failure)
        return cast(T, value)

    async def _answer(
        self,
        key: str,
        fetch: Fetch[T],
        decode: Decode[T],
        about: tuple[tuple[str, ...], str | None],
    ) -> _Answer[T]:
        cache = self._cache
        if cache is None:
            return (*await ask_upstream(fetch), None)
        entry = await cache.load(key)
        now = cache.clock()
        if entry is not None and entry.is_fresh(now):
            return decode(entry.body), entry.fetched_at, None
        try:
            answer = await fetch(entry.etag if entry is not None else None)
        except SourceError as error:
            if entry is None or not source_is_down(error) or not entry.may_stand_in(now):
                raise
            return decode(entry.body), entry.fetched_at, error
        directives = cache_control.parse(answer.cache_control)
        lifetime = cache_control.lifetime(directives, self.ttl)
        stale_for = cache_control.stale_if_error(directives, self.stale_if_error)
        if isinstance(answer, NotModified):
            assert entry is not None, "a 304 to a request without If-None-Match"
            etag = answer.etag or entry.etag
            renewed = dataclasses.replace(
                entry, fetched_at=now, lifetime=lifetime, etag=etag, stale_for=stale_for
            )
            await self._keep(cache, key, renewed, directives)
            return decode(entry.body), now, None
        tags = self._tags(cache, (*about[0], *answer.subjects), about[1])
        fresh = Entry(answer.body, now, lifetime, answer.etag, tags, stale_for)
        await self._keep(cache, key, fresh, directives)
        return answer.value, now, None

    async def _keep(
        self, cache: SourceCache, key: str, entry: Entry, directives: cache_control.Directives
    ) -> None:
        """Store for its lifetime, plus a grace period of one source TTL when it can be
        revalidated or its stale-if-error window if longer; an answer that can neither be
        reused, revalidated nor stand in for a failing upstream is not stored."""
        if directives.no_store:
            return
        ttl = entry.lifetime + max(self.ttl if entry.etag else 0.0, entry.stale_for)
        if ttl > 0:
            await cache.store(key, entry, ttl)

    def _tags(
        self, cache: SourceCache, local_ids: Iterable[str], person: str | None
    ) -> tuple[str, ...]:
        tags = {cache.patient_tag(self.source_id, local_id) for local_id in local_ids}
        if person is not None:
            tags.add(cache.person_tag(person))
        return tuple(sorted(tags))
