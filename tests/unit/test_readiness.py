"""Readiness from known state: how probes and real request outcomes combine."""

from __future__ import annotations

import asyncio

import pytest

from app.sources.base import SourceHealth
from app.sources.breaker import CircuitBreaker, CircuitOpen
from app.sources.errors import SourceDataError, SourceRejected, SourceTimeout, SourceUnavailable
from app.sources.fetching import NotModified
from app.sources.readiness import REQUEST_FAILURE_SECONDS, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Probed:
    """A source whose probe answers `ok`, or raises `error` when set."""

    id = "clinic"
    kind = "fhir"
    unmapped = 0

    def __init__(self) -> None:
        self.ok = True
        self.error: Exception | None = None

    async def health(self) -> SourceHealth:
        if self.error is not None:
            raise self.error
        return SourceHealth(self.id, self.kind, self.ok, "ok" if self.ok else "unavailable")

    async def aclose(self) -> None:
        return None


def watched() -> tuple[Readiness, Probed, Clock]:
    clock, source = Clock(), Probed()
    readiness = Readiness(clock=clock)
    readiness.watch(source)
    return readiness, source, clock


def state(readiness: Readiness) -> str:
    (health,) = readiness.states()
    return health.detail


async def test_a_source_is_starting_until_its_first_probe_answers() -> None:
    readiness, _, _ = watched()
    assert readiness.states() == [SourceHealth("clinic", "fhir", False, "starting")]
    await readiness.refresh()
    assert readiness.states() == [SourceHealth("clinic", "fhir", True, "ok")]


async def test_a_failed_request_outlasts_answering_probes_until_a_request_succeeds() -> None:
    readiness, _, clock = watched()
    await readiness.refresh()
    clock.now += 1
    readiness.failed(SourceDataError("clinic", "next link leaves the source base URL"))
    clock.now += 1
    await readiness.refresh()
    assert state(readiness) == "unreadable"
    clock.now += 1
    readiness.succeeded("clinic")
    assert state(readiness) == "ok"


async def test_a_failed_request_is_forgotten_after_a_while_and_the_probe_decides() -> None:
    readiness, _, clock = watched()
    readiness.failed(SourceTimeout("clinic", "timed out"))
    clock.now += REQUEST_FAILURE_SECONDS - 1
    await readiness.refresh()
    assert state(readiness) == "timeout"
    clock.now += 1
    assert state(readiness) == "ok"


async def test_a_success_older_than_the_last_probe_does_not_hide_it() -> None:
    readiness, source, clock = watched()
    readiness.succeeded("clinic")
    clock.now += 1
    source.ok = False
    await readiness.refresh()
    assert state(readiness) == "unavailable"


@pytest.mark.parametrize(
    "error", [CircuitOpen("clinic", "open"), SourceRejected("clinic", "HTTP 400")]
)
async def test_refusals_and_our_own_bad_requests_say_nothing_about_the_upstream(
    error: Exception,
) -> None:
    readiness, _, _ = watched()
    await readiness.refresh()
    assert isinstance(error, CircuitOpen | SourceRejected)
    readiness.failed(error)
    assert state(readiness) == "ok"


async def test_a_probe_that_raises_reports_the_source_unavailable() -> None:
    readiness, source, clock = watched()
    source.error = RuntimeError("bug in a health check")
    await readiness.refresh()
    assert state(readiness) == "unavailable"
    source.error, clock.now = None, clock.now + 1
    await readiness.refresh()
    assert state(readiness) == "ok"


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class Counted(Probed):
    def __init__(self) -> None:
        super().__init__()
        self.probes = 0

    async def health(self) -> SourceHealth:
        self.probes += 1
        return await super().health()


async def test_readyz_probes_at_most_once_per_interval_and_never_an_open_circuit() -> None:
    clock, source = Clock(), Counted()
    breaker = CircuitBreaker("clinic", failures=1, reset_seconds=30, clock=clock)
    readiness = Readiness(clock=clock, interval=5)
    readiness.watch(source, breaker)
    assert (await readiness.current(wait=1))[0].detail == "ok"  # unknown: waited for
    clock.now += 4.9
    await readiness.current(wait=1)
    assert source.probes == 1
    clock.now += 0.1
    await readiness.current(wait=1)
    await settle()  # the round runs in the background
    assert source.probes == 2

    async def down(_etag: str | None) -> NotModified:
        raise SourceUnavailable("clinic", "HTTP 503")

    with pytest.raises(SourceUnavailable):
        await breaker.call(down, None)
    clock.now += 5
    (health,) = await readiness.current(wait=1)
    await settle()
    assert health.detail == "circuit_open"
    assert source.probes == 2
