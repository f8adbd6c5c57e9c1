"""Retries of idempotent upstream reads, with jittered backoff, under a retry budget.

Only failures that came back at once and say nothing lasting are retried (`SourceError.
transient`: the connection was refused or reset, or a 502/503/504 without `Retry-After`). A
timeout is not: retrying it would double what a hung upstream costs a query. Nor is anything
the upstream asked us to wait for (`Retry-After`: the circuit breaker obeys it), an open
circuit, a 4xx or unreadable data.

Backoff is "full jitter": a random wait between 0 and `backoff * 2**attempt`, so that the
callers of one failing upstream do not retry in step. The budget (`RetryBudget`) caps retries
at a share of requests, so that an upstream that fails for everyone gets at most that much
more traffic from retries, never a multiple of it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.sources.errors import SourceError

T = TypeVar("T")


class RetryBudget:
    """A token bucket filled by requests: each deposits `ratio` tokens (up to `reserve`), each
    retry takes one. It starts full, so a few retries are allowed before any traffic."""

    def __init__(self, ratio: float, reserve: float = 10.0) -> None:
        self._ratio = ratio
        self._reserve = reserve
        self._tokens = reserve

    def deposit(self) -> None:
        self._tokens = min(self._reserve, self._tokens + self._ratio)

    def withdraw(self) -> bool:
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Retrying:
    def __init__(
        self,
        retries: int,
        backoff_seconds: float,
        budget: RetryBudget,
        *,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._retries = retries
        self._backoff = backoff_seconds
        self._budget = budget
        self._jitter = jitter
        self.retried = 0  # retries made since start-up

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        self._budget.deposit()
        for number in range(self._retries + 1):
            try:
                return await attempt()
            except SourceError as error:
                if not self._may_retry(error, number):
                    raise
            self.retried += 1
            await asyncio.sleep(self._jitter(0.0, self._backoff * 2**number))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _may_retry(self, error: SourceError, number: int) -> bool:
        worth_it = error.transient and error.retry_after is None and number < self._retries
        return worth_it and self._budget.withdraw()
