"""Sources that already failed in the current operation: not asked again within it.

An operation reaches a source in stages (the patient search, then each collection of the
patients found, then references), so an upstream that hangs would cost its timeout once per
stage: 15 s for a 5 s timeout. Once a source has failed in an operation, its later upstream
requests in that operation fail at once with the same kind of error, and the operation costs
at most one timeout per source. Cached answers are still served (the check sits where a
fetcher asks the upstream).

Like `freshness`, a mutable record in a ContextVar opened per operation (`track()`); tasks
started inside copy the context and share it. Outside `track()` nothing is remembered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from app.sources.errors import SourceError

Failed = dict[str, SourceError]  # source id -> its first upstream failure in this operation

_current: ContextVar[Failed | None] = ContextVar("sources_failed", default=None)


@contextlib.contextmanager
def track() -> Iterator[Failed]:
    failed: Failed = {}
    token = _current.set(failed)
    try:
        yield failed
    finally:
        _current.reset(token)


def note(error: SourceError) -> None:
    failed = _current.get()
    if failed is not None:
        failed.setdefault(error.source_id, error)


def raise_if_failed(source_id: str) -> None:
    """Raise (a new error of the same kind) when `source_id` already failed in this operation."""
    failed = _current.get()
    earlier = None if failed is None else failed.get(source_id)
    if earlier is not None:
        raise type(earlier)(source_id, f"{earlier.detail}; not asked again in this operation")
