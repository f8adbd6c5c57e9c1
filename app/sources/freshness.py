"""Freshness: when each source's data in one GraphQL response was fetched from the upstream.

A request opens `track()`; every fetcher (`app.sources.fetching`) `note()`s the fetch time of
each upstream answer it hands out (the stored time on a hit, now on a fetch or a 304). The
record is a mutable dict held in a ContextVar: tasks started inside the request (DataLoader
batches, gathers) copy the context when created and so share the same dict. Per source, the
oldest time wins: the response is only as fresh as its stalest part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

FetchedAt = dict[str, float]  # source id -> epoch seconds of its oldest answer in this request

_current: ContextVar[FetchedAt | None] = ContextVar("source_fetched_at", default=None)


@contextlib.contextmanager
def track() -> Iterator[FetchedAt]:
    """Record fetch times for the code run inside (and tasks it starts); yields the record."""
    fetched: FetchedAt = {}
    token = _current.set(fetched)
    try:
        yield fetched
    finally:
        _current.reset(token)


def note(source_id: str, fetched_at: float) -> None:
    """Called by a fetcher for every answer it hands out; a no-op outside `track()`."""
    fetched = _current.get()
    if fetched is not None and fetched_at < fetched.get(source_id, float("inf")):
        fetched[source_id] = fetched_at


def as_extension(fetched: FetchedAt) -> dict[str, dict[str, str]]:
    """`{source id: {"fetchedAt": ISO 8601 UTC}}` for a response's `extensions.sources`."""
    return {source_id: {"fetchedAt": iso8601(at)} for source_id, at in sorted(fetched.items())}


def iso8601(epoch_seconds: float) -> str:
    stamp = datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
