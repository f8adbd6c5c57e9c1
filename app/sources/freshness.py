"""Freshness: when each source's data in one GraphQL response was fetched from the upstream.

A request opens `track()`; every fetcher (`app.sources.fetching`) `note()`s the fetch time of
each upstream answer it hands out (the stored time on a hit, now on a fetch or a 304). The
record is a mutable dict held in a ContextVar: tasks started inside the request (DataLoader
batches, gathers) copy the context when created and so share the same dict. Per source, the
oldest time wins: the response is only as fresh as its stalest part. A source whose answer was
served past its freshness because its upstream failed (stale-if-error, `app.cache.sources`) is
marked `stale`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime


class FetchedAt(dict[str, float]):
    """Source id -> epoch seconds of its oldest answer in this request; `stale`: the sources
    whose answer was served stale because their upstream failed."""

    def __init__(self, times: Mapping[str, float] | None = None) -> None:
        super().__init__(times or {})
        self.stale: set[str] = set()


_current: ContextVar[FetchedAt | None] = ContextVar("source_fetched_at", default=None)


@contextlib.contextmanager
def track() -> Iterator[FetchedAt]:
    """Record fetch times for the code run inside (and tasks it starts); yields the record."""
    fetched = FetchedAt()
    token = _current.set(fetched)
    try:
        yield fetched
    finally:
        _current.reset(token)


def note(source_id: str, fetched_at: float, *, stale: bool = False) -> None:
    """Called by a fetcher for every answer it hands out; a no-op outside `track()`."""
    fetched = _current.get()
    if fetched is None:
        return
    if fetched_at < fetched.get(source_id, float("inf")):
        fetched[source_id] = fetched_at
    if stale:
        fetched.stale.add(source_id)


def as_extension(fetched: FetchedAt) -> dict[str, dict[str, str | bool]]:
    """`{source id: {"fetchedAt": ISO 8601 UTC}}` for a response's `extensions.sources`, with
    `"stale": true` beside a source whose answer was served stale."""
    return {
        source_id: {
            "fetchedAt": iso8601(at),
            **({"stale": True} if source_id in fetched.stale else {}),
        }
        for source_id, at in sorted(fetched.items())
    }


def iso8601(epoch_seconds: float) -> str:
    stamp = datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
