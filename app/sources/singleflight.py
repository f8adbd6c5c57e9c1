"""Single-flight: concurrent calls with the same key share one computation.

The computation runs as its own task, so a caller that goes away (a client disconnect or the
operation deadline cancelling its request) does not cancel it for the others waiting on it;
when the last one goes away it is cancelled, so that nobody's upstream call outlives them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[T]] = {}
        self._waiting: dict[str, int] = {}  # callers awaiting each running computation
        self.shared = 0  # calls answered by another call's computation

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result, and whether this call started the computation (False: shared)."""
        task = self._running.get(key)
        leader = task is None
        if task is None:
            task = asyncio.ensure_future(compute())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        else:
            self.shared += 1
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            return await asyncio.shield(task), leader
        except asyncio.CancelledError:
            if self._running.get(key) is task and self._waiting[key] == 1:
                task.cancel()  # the last caller left: nobody wants the answer
            raise
        finally:
            if self._running.get(key) is task:
                self._waiting[key] -= 1

    def _finished(self, key: str, task: asyncio.Task[T]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
            del self._waiting[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    def __len__(self) -> int:
        return len(self._running)
