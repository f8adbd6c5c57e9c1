"""A circuit breaker around one source's upstream: fail fast while it is down, probe to recover.

Closed: every request goes upstream; `failures` failures in a row open the circuit. Open:
requests fail at once with `CircuitOpen` (no connection, no timeout waited out) for
`reset_seconds` (or as long as a 429/503 `Retry-After` asks, up to an hour, even before the
count is reached). Then half-open: the next request is let through as a probe (others still fail
fast meanwhile); its success closes the circuit, its failure opens it again.

It wraps the fetch port (`app.sources.guarded.Guarded`), under the cache: answers the cache
already holds are served whatever the circuit says, and only real upstream requests count. A
failure is the upstream's fault only: unavailable, timed out, or unreadable. A request we got
wrong (4xx) or an answer over our own size limits says nothing about the upstream's health,
and a caller that went away (cancellation) is neither success nor failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from app.sources.errors import (
    SourceDataError,
    SourceError,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
)
from app.sources.fetching import Fetch, Fetched, NotModified

log = logging.getLogger(__name__)
T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


class CircuitOpen(SourceUnavailable):
    """Refused without asking: the source failed repeatedly and its circuit is open."""

    reason = "is unavailable (failing repeatedly; not asked again for now)"
    state = "circuit_open"
    cause = "circuit_open"


def is_upstream_failure(error: SourceError) -> bool:
    """Whether `error` says the upstream is failing (what the breaker counts)."""
    if isinstance(error, SourceTooLarge | CircuitOpen):
        return False
    return isinstance(error, SourceUnavailable | SourceTimeout | SourceDataError)


def source_is_down(error: SourceError) -> bool:
    """Whether `error` means the source cannot answer now: failing, or refused by its open
    circuit. What stale-if-error serves for, and what an operation remembers (`failures`)."""
    return is_upstream_failure(error) or isinstance(error, CircuitOpen)


class CircuitBreaker:
    def __init__(
        self,
        source_id: str,
        *,
        failures: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source_id = source_id
        self._threshold = failures
        self._reset = reset_seconds
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probing = False

    @property
    def state(self) -> State:
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half_open"
        return "open"

    async def call(self, fetch: Fetch[T], etag: str | None) -> Fetched[T] | NotModified:
        probe = self._admit()
        try:
            answer = await fetch(etag)
        except SourceError as error:
            if is_upstream_failure(error):
                self._failed(probe, error.retry_after)
            elif probe:
                self._probing = False  # not a verdict on the upstream: let another probe try
            raise
        except BaseException:
            if probe:
                self._probing = False
            raise
        self._succeeded()
        return answer

    def _admit(self) -> bool:
        """Whether this request may go upstream, and whether it is the half-open probe."""
        if self._open_until is None:
            return False
        if not self._probing and self._clock() >= self._open_until:
            self._probing = True
            return True
        raise CircuitOpen(self.source_id, f"circuit open after {self._failures} failures")

    def _failed(self, probe: bool, retry_after: float | None) -> None:
        self._failures += 1
        now = self._clock()
        if retry_after is not None:
            # The upstream said when to come back (429/503 Retry-After): open until then,
            # whatever the count, and never reopen earlier than it asked.
            until = max(now + retry_after, self._open_until or 0.0)
            log.warning(
                "source %s: circuit opened for %.0f s, as its Retry-After asks",
                self.source_id,
                until - now,
            )
            self._open_until, self._probing = until, False
        elif probe or (self._open_until is None and self._failures >= self._threshold):
            log.warning(
                "source %s: circuit opened after %d failures in a row",
                self.source_id,
                self._failures,
            )
            self._open_until, self._probing = now + self._reset, False

    def _succeeded(self) -> None:
        if self._open_until is not None:
            log.info("source %s: circuit closed, the upstream answers again", self.source_id)
        self._failures = 0
        self._open_until = None
        self._probing = False
