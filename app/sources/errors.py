"""The one error tree every source raises; callers never see httpx or parser exceptions.

Messages are safe to show clients: they name the source id, never a host, URL or any data.
Every HTTP source maps its upstream's failures with the same two rules: `raise_for_status`
(the status) and `http_exchange` (the transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import httpx


class SourceError(Exception):
    """Base: an upstream could not answer usefully."""

    code = "SOURCE_UNAVAILABLE"
    reason = "is unavailable"
    state = "unavailable"  # short word for /readyz
    cause: str | None = None  # for clients, `extensions.reason`, when more than the code
    # Seconds the upstream asked us to wait (`Retry-After` on a 429 or 503): the breaker obeys.
    retry_after: float | None = None
    # Failed at once for a passing reason (refused or reset connection, 502/503/504): an
    # idempotent read may be retried (`app.sources.retries`).
    transient = False

    def __init__(self, source_id: str, detail: str = "") -> None:
        self.source_id = source_id
        # `detail` is for operators' logs (exception class, status); never shown to clients.
        self.detail = detail
        super().__init__(f"Source '{source_id}' {self.reason}")


class SourceUnavailable(SourceError):
    """Connection refused/reset, DNS failure, 5xx."""


class SourceTimeout(SourceError):
    code = "SOURCE_TIMEOUT"
    reason = "did not answer in time"
    state = "timeout"


class DeadlineExceeded(SourceTimeout):
    """The source had not answered when the operation's `[graphql] deadline_seconds` ran
    out: its call was abandoned (its own timeout may be longer), the rest answered."""

    reason = "did not answer before the operation's deadline"
    cause = "deadline"


class SourceRejected(SourceError):
    """The upstream refused our request (4xx): a bug or a configuration problem on our side."""

    reason = "rejected the request"
    state = "rejected"


class SourceDataError(SourceError):
    """The upstream answered with something we cannot read (not JSON, not a Bundle, ...)."""

    reason = "sent data that could not be read"
    state = "unreadable"


class SourceTooLarge(SourceDataError):
    """The answer passed one of the source's caps (body bytes, pages or records of one
    search): refused whole with a coded error, never silently cut short."""

    reason = "sent more than its configured limits allow"
    state = "too_large"
    cause = "size_limit"


MAX_RETRY_AFTER_SECONDS = 3600.0  # an upstream cannot silence itself for longer than this


def raise_for_status(source_id: str, status: int, retry_after: str | None = None) -> None:
    """The HTTP status rules every HTTP source shares: 2xx passes; 4xx means the upstream
    refused our request, except 408/429 (busy: unavailable); 5xx unavailable. A 429 or 503
    carries the `Retry-After` it came with (RFC 9110 section 10.2.3), in seconds."""
    if status < 300:
        return
    error: type[SourceError] = SourceRejected if 400 <= status < 500 else SourceUnavailable
    if status in (408, 429):
        error = SourceUnavailable
    failure = error(source_id, f"HTTP {status}")
    if status in (429, 503):
        failure.retry_after = retry_after_seconds(retry_after)
    failure.transient = status in (502, 503, 504)
    raise failure


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A `Retry-After` value (delay-seconds or an HTTP-date) as seconds from now, at most
    MAX_RETRY_AFTER_SECONDS; None when absent, unreadable or already past."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT; a date without a zone is not one
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(seconds, MAX_RETRY_AFTER_SECONDS) if seconds > 0 else None


@contextlib.asynccontextmanager
async def http_exchange(source_id: str, timeout_seconds: float) -> AsyncIterator[None]:
    """One HTTP exchange bounded by `timeout_seconds`, its httpx failures mapped (`from` the
    cause): a timeout is SourceTimeout, a body that cannot be decoded (a broken gzip) is bad
    data, SourceDataError; any other transport failure SourceUnavailable."""
    try:
        async with asyncio.timeout(timeout_seconds):
            yield
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise SourceTimeout(source_id, exc.__class__.__name__) from exc
    except httpx.DecodingError as exc:
        raise SourceDataError(source_id, exc.__class__.__name__) from exc
    except httpx.HTTPError as exc:
        failure = SourceUnavailable(source_id, exc.__class__.__name__)
        failure.transient = isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)
        raise failure from exc
