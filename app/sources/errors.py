"""The one error tree every source raises; callers never see httpx or parser exceptions.

Messages are safe to show clients: they name the source id, never a host, URL or any data.
"""

from __future__ import annotations


class SourceError(Exception):
    """Base: an upstream could not answer usefully."""

    code = "SOURCE_UNAVAILABLE"
    reason = "is unavailable"
    state = "unavailable"  # short word for /readyz

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


class SourceRejected(SourceError):
    """The upstream refused our request (4xx): a bug or a configuration problem on our side."""

    reason = "rejected the request"
    state = "rejected"


class SourceDataError(SourceError):
    """The upstream answered with something we cannot read (not JSON, not a Bundle, ...)."""

    reason = "sent data that could not be read"
    state = "unreadable"


def raise_for_status(source_id: str, status: int) -> None:
    """The HTTP status rules every HTTP source shares: 2xx passes; 4xx means the upstream
    refused our request, except 408/429 (busy: unavailable); 5xx unavailable."""
    if status < 300:
        return
    error: type[SourceError] = SourceRejected if 400 <= status < 500 else SourceUnavailable
    if status in (408, 429):
        error = SourceUnavailable
    raise error(source_id, f"HTTP {status}")
