"""The circuit breaker's states with a controlled clock (the socket-level test is
tests/integration/test_circuit_breaker.py)."""

from __future__ import annotations

import asyncio

import pytest

from app.sources.breaker import CircuitBreaker, CircuitOpen
from app.sources.errors import (
    SourceDataError,
    SourceRejected,
    SourceTimeout,
    SourceTooLarge,
    SourceUnavailable,
    raise_for_status,
    retry_after_seconds,
)
from app.sources.fetching import Fetched, NotModified


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A fetch that raises `error` when set, and counts the calls that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, _etag: str | None) -> Fetched[str] | NotModified:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return Fetched(b"{}", "ok")


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # read afresh each time (mypy would narrow the property)


async def attempt(breaker: CircuitBreaker, upstream: Upstream) -> str:
    try:
        await breaker.call(upstream, None)
    except CircuitOpen:
        return "fast"
    except Exception:
        return "failed"
    return "ok"


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_opens_after_failures_in_a_row_and_then_fails_fast(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=3, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = SourceUnavailable("ehr", "HTTP 503")
    assert [await attempt(breaker, upstream) for _ in range(3)] == ["failed"] * 3
    assert state(breaker) == "open"
    assert [await attempt(breaker, upstream) for _ in range(20)] == ["fast"] * 20
    assert upstream.calls == 3


async def test_a_success_resets_the_count(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=3, reset_seconds=10, clock=clock)
    upstream = Upstream()
    for _ in range(4):
        upstream.error = SourceTimeout("ehr", "ReadTimeout")
        assert await attempt(breaker, upstream) == "failed"
        assert await attempt(breaker, upstream) == "failed"
        upstream.error = None
        assert await attempt(breaker, upstream) == "ok"
    assert state(breaker) == "closed"


@pytest.mark.parametrize(
    "error",
    [
        SourceRejected("ehr", "HTTP 400"),  # our request was wrong, not the upstream
        SourceTooLarge("ehr", "more than 50 pages"),  # our limit, not its health
    ],
)
async def test_errors_that_are_not_the_upstreams_fault_do_not_count(
    clock: Clock, error: Exception
) -> None:
    breaker = CircuitBreaker("ehr", failures=2, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = error
    assert [await attempt(breaker, upstream) for _ in range(5)] == ["failed"] * 5
    assert state(breaker) == "closed"
    assert upstream.calls == 5


async def test_unreadable_answers_count(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=2, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = SourceDataError("ehr", "JSONDecodeError")
    await attempt(breaker, upstream)
    await attempt(breaker, upstream)
    assert state(breaker) == "open"


async def test_half_open_lets_one_probe_through_and_recovers(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=1, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = SourceUnavailable("ehr", "HTTP 503")
    await attempt(breaker, upstream)
    clock.now += 9.9
    assert await attempt(breaker, upstream) == "fast"
    clock.now += 0.1
    assert state(breaker) == "half_open"
    upstream.error = None
    upstream.gate = asyncio.Event()
    probe = asyncio.create_task(attempt(breaker, upstream))
    await asyncio.sleep(0)
    assert upstream.calls == 2  # the probe is upstream now
    async with asyncio.timeout(2):  # a second probe would wait on the gate: fail, not hang
        assert [await attempt(breaker, upstream) for _ in range(5)] == ["fast"] * 5
    upstream.gate.set()
    assert await probe == "ok"
    assert state(breaker) == "closed"
    assert await attempt(breaker, upstream) == "ok"


async def test_a_failed_probe_opens_the_circuit_again(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=2, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = SourceUnavailable("ehr", "ConnectError")
    await attempt(breaker, upstream)
    await attempt(breaker, upstream)
    clock.now += 10
    assert await attempt(breaker, upstream) == "failed"  # the probe, refused upstream
    assert state(breaker) == "open"
    assert await attempt(breaker, upstream) == "fast"
    assert upstream.calls == 3


async def test_a_cancelled_probe_is_no_verdict(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=1, reset_seconds=10, clock=clock)
    upstream = Upstream()
    upstream.error = SourceUnavailable("ehr", "HTTP 503")
    await attempt(breaker, upstream)
    clock.now += 10
    upstream.gate = asyncio.Event()
    probe = asyncio.create_task(attempt(breaker, upstream))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    upstream.gate, upstream.error = None, None
    assert await attempt(breaker, upstream) == "ok"  # a new probe was allowed
    assert state(breaker) == "closed"


async def test_a_retry_after_opens_at_once_for_as_long_as_it_asks(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=5, reset_seconds=10, clock=clock)
    upstream = Upstream()
    busy = SourceUnavailable("ehr", "HTTP 429")
    busy.retry_after = 45
    upstream.error = busy
    assert await attempt(breaker, upstream) == "failed"
    assert state(breaker) == "open"  # one answer, not five: the upstream said so
    clock.now += 44.9  # longer than reset_seconds, shorter than asked
    assert await attempt(breaker, upstream) == "fast"
    clock.now += 0.1
    upstream.error = None
    assert await attempt(breaker, upstream) == "ok"
    assert upstream.calls == 2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", None),
        ("999999", 3600.0),  # capped: an upstream cannot silence itself for days
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # an HTTP-date, from "now" below
        ("Wed, 21 Oct 2015 07:27:00 GMT", None),  # already past
        ("-5", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30", None),  # no zone: not an HTTP-date
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_seconds(value, now) == seconds


def test_only_429_and_503_carry_their_retry_after() -> None:
    for status, expected in ((429, 5.0), (503, 5.0), (500, None), (502, None)):
        with pytest.raises(SourceUnavailable) as raised:
            raise_for_status("ehr", status, "5")
        assert raised.value.retry_after == expected


async def test_a_shorter_retry_after_never_shortens_an_earlier_one(clock: Clock) -> None:
    breaker = CircuitBreaker("ehr", failures=5, reset_seconds=10, clock=clock)
    first, second = Upstream(), Upstream()
    for upstream, seconds in ((first, 60), (second, 5)):
        upstream.gate = asyncio.Event()
        upstream.error = SourceUnavailable("ehr", "HTTP 503")
        upstream.error.retry_after = seconds
    one = asyncio.create_task(attempt(breaker, first))
    two = asyncio.create_task(attempt(breaker, second))
    await asyncio.sleep(0)  # both admitted while the circuit was closed
    assert first.gate is not None
    assert second.gate is not None
    first.gate.set()
    assert await one == "failed"
    second.gate.set()
    assert await two == "failed"
    clock.now += 30  # past the 5 s the second answer asked for, within the first's 60
    assert await attempt(breaker, Upstream()) == "fast"
