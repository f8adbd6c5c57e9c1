"""Retries of transient failures under a budget, and the bulkhead's slots."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.sources.bulkhead import Bulkhead, BulkheadFull
from app.sources.errors import (
    SourceDataError,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
    http_exchange,
    raise_for_status,
)
from app.sources.retries import RetryBudget, Retrying


def transient() -> SourceUnavailable:
    error = SourceUnavailable("clinic", "ConnectError")
    error.transient = True
    return error


class Attempts:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: SourceError) -> None:
        self.errors = list(errors)
        self.made = 0

    async def __call__(self) -> str:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def retrying(retries: int = 2, budget: RetryBudget | None = None) -> tuple[Retrying, list[float]]:
    waits: list[float] = []

    def jitter(low: float, high: float) -> float:
        waits.append(high)
        return 0.0

    return Retrying(retries, 0.1, budget or RetryBudget(1.0), jitter=jitter), waits


def status_error(status: int, retry_after: str | None = None) -> SourceError:
    with pytest.raises(SourceError) as raised:
        raise_for_status("clinic", status, retry_after)
    return raised.value


async def test_a_transient_failure_is_retried_with_growing_jittered_backoff() -> None:
    policy, waits = retrying()
    attempts = Attempts(transient(), status_error(503))
    assert await policy.call(attempts) == "answer"
    assert attempts.made == 3
    assert waits == [0.1, 0.2]  # the upper bounds of the random waits: 0.1 * 2**attempt
    assert policy.retried == 2


async def test_retries_stop_after_the_configured_number() -> None:
    policy, _ = retrying(retries=2)
    attempts = Attempts(transient(), transient(), transient())
    with pytest.raises(SourceUnavailable):
        await policy.call(attempts)
    assert attempts.made == 3


@pytest.mark.parametrize(
    "error",
    [
        SourceTimeout("clinic", "ReadTimeout"),  # a hung upstream would cost twice
        status_error(500),
        status_error(503, "5"),  # asked to wait: the breaker obeys, no retry
        status_error(429),
        status_error(404),
        SourceDataError("clinic", "not JSON"),
    ],
)
async def test_failures_that_are_not_transient_are_not_retried(error: SourceError) -> None:
    policy, _ = retrying()
    attempts = Attempts(error)
    with pytest.raises(type(error)):
        await policy.call(attempts)
    assert attempts.made == 1


async def test_the_budget_caps_retries_at_a_share_of_requests() -> None:
    budget = RetryBudget(0.5, reserve=1)
    policy, _ = retrying(retries=1, budget=budget)
    made = 0
    for _ in range(10):  # an upstream failing for everyone
        attempts = Attempts(transient(), transient())
        with pytest.raises(SourceUnavailable):
            await policy.call(attempts)
        made += attempts.made
    # Half a token per request, at most 1 held: one retry every other request, not 10.
    assert policy.retried == 5
    assert made == 10 + 5


async def test_the_bulkhead_refuses_past_its_limit_and_frees_slots_on_failure() -> None:
    bulkhead = Bulkhead("clinic", limit=2, wait=0.05)
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "answer"

    held = [asyncio.create_task(bulkhead.call(slow)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull) as refused:
        await bulkhead.call(slow)
    assert refused.value.cause == "bulkhead_full"
    assert bulkhead.refused == 1
    release.set()
    assert await asyncio.gather(*held) == ["answer", "answer"]

    async def failing() -> str:
        raise transient()

    for _ in range(3):  # a failure gives its slot back
        with pytest.raises(SourceUnavailable):
            await bulkhead.call(failing)
    assert await bulkhead.call(slow) == "answer"


@pytest.mark.parametrize(
    ("raised", "is_transient"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadError("reset"), True),
        (httpx.RemoteProtocolError("closed without a response"), True),
        (httpx.ReadTimeout("slow"), False),
        (httpx.UnsupportedProtocol("ftp"), False),
    ],
)
async def test_transport_failures_are_transient_when_they_pass(
    raised: httpx.HTTPError, is_transient: bool
) -> None:
    with pytest.raises(SourceError) as mapped:
        async with http_exchange("clinic", 1.0):
            raise raised
    assert mapped.value.transient is is_transient
