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
) -> tuple[list[T | None], bool]:
    """Run all calls concurrently. A SourceError becomes None in its slot and one coded error
    for its source; anything else is a bug and propagates. Returns (results, any_failed)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: list[T | None] = []
    failed = False
    for result in results:
        if isinstance(result, SourceError):
            problems.add(result, path)
            failed = True
            out.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            out.append(result)
    return out, failed
