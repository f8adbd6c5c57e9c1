"""Gathering across sources: healthy sources' answers, failed sources noted for the client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from app.sources.errors import SourceError
from resolvers.context import SourceProblems

T = TypeVar("T")


async def gather_sources(
    calls: Sequence[Awaitable[T]], problems: SourceProblems, path: tuple[str | int, ...] | None
) -> tuple[dict[int, T], bool]:
    """Run all calls concurrently. Returns ({index of call: result} for the calls that
    succeeded, whether any failed). A SourceError becomes one coded error for its source;
    anything else is a bug and propagates."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: dict[int, T] = {}
    for i, result in enumerate(results):
        if isinstance(result, SourceError):
            problems.add(result, path)
        elif isinstance(result, BaseException):
            raise result
        else:
            out[i] = result
    return out, len(out) < len(results)
