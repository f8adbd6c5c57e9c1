"""Each source's last known health, so that `/readyz` answers at once from known state.

Two things keep it current: probes of every source (`Source.health()`, each bounded by
`PROBE_TIMEOUT_SECONDS`), run in the background when `/readyz` finds the last round older than
`PROBE_INTERVAL_SECONDS` (so an idle instance sends upstreams nothing), and the outcome of
every real upstream request (`app.sources.guarded`). A failed request is reported for
`REQUEST_FAILURE_SECONDS` unless a later request succeeds, whatever the probes say: a source
whose searches fail (a paging chain that times out, pages over the size limits, unreadable
data) is not `ok` just because its one-resource probe answers. A successful request newer than
the last probe makes a source `ok` without waiting for the next probe. A hung upstream costs
the probe task its timeout, never a `/readyz` caller. A source whose circuit is open
(`app.sources.breaker`) is `circuit_open` and not probed: only a source never heard of yet is
waited for, at most `wait` seconds.

What is kept is what `/readyz` shows: source ids, kinds and short state words, no PHI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from app.sources.base import Source, SourceHealth
from app.sources.breaker import CircuitBreaker, CircuitOpen
from app.sources.bulkhead import BulkheadFull
from app.sources.errors import SourceError, SourceRejected

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0
REQUEST_FAILURE_SECONDS = 60.0


class Readiness:
    def __init__(
        self,
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sources: list[Source] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        # source id -> (when it was learnt, what), from probes and from real requests.
        self._probed: dict[str, tuple[float, SourceHealth]] = {}
        self._requested: dict[str, tuple[float, SourceHealth]] = {}
        self._round: asyncio.Task[None] | None = None  # the probe round in flight
        self._round_started = float("-inf")

    def watch(self, source: Source, breaker: CircuitBreaker | None = None) -> None:
        self._sources.append(source)
        if breaker is not None:
            self._breakers[source.id] = breaker

    def states(self) -> list[SourceHealth]:
        """Every source's last known health, in registry order, without asking anyone. A
        source not heard of yet (its first probe still running) is `starting`: not ready."""
        return [self._state(source) for source in self._sources]

    def _state(self, source: Source) -> SourceHealth:
        if self._circuit_open(source):
            return SourceHealth(source.id, source.kind, False, "circuit_open")
        probed = self._probed.get(source.id)
        requested = self._requested.get(source.id)
        if requested is not None:
            at, health = requested
            if not health.ok and self._clock() - at < REQUEST_FAILURE_SECONDS:
                return health
            if health.ok and (probed is None or at >= probed[0]):
                return health
        if probed is None:
            return SourceHealth(source.id, source.kind, False, "starting")
        return probed[1]

    def succeeded(self, source_id: str) -> None:
        self._requested[source_id] = (self._clock(), self._health(source_id, "ok"))

    def failed(self, error: SourceError) -> None:
        """Not for a refusal by the open circuit or the full bulkhead (no request was made;
        `/readyz` reads the circuit itself) nor for a request the upstream rejected (ours to
        fix, 4xx)."""
        if isinstance(error, CircuitOpen | BulkheadFull | SourceRejected):
            return
        self._requested[error.source_id] = (
            self._clock(),
            self._health(error.source_id, error.state),
        )

    def _health(self, source_id: str, state: str) -> SourceHealth:
        kind = next(s.kind for s in self._sources if s.id == source_id)
        return SourceHealth(source_id, kind, state == "ok", state)

    async def current(self, wait: float) -> list[SourceHealth]:
        """`states()`, after starting a probe round when the last one is older than the
        interval; waits for it (at most `wait` seconds) only while a source is unknown."""
        if (self._round is None or self._round.done()) and (
            self._clock() - self._round_started >= self._interval
        ):
            self._round_started = self._clock()
            self._round = asyncio.create_task(self.refresh())
        unknown = any(
            s.id not in self._probed and s.id not in self._requested for s in self._sources
        )
        if unknown and self._round is not None and not self._round.done():
            await asyncio.wait({self._round}, timeout=wait)
        return self.states()

    async def aclose(self) -> None:
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round

    async def refresh(self) -> None:
        """Probe every source concurrently, each within the probe timeout."""
        await asyncio.gather(*(self._probe(source) for source in self._sources))

    def _circuit_open(self, source: Source) -> bool:
        breaker = self._breakers.get(source.id)
        return breaker is not None and breaker.state == "open"

    async def _probe(self, source: Source) -> None:
        if self._circuit_open(source):
            return  # known without asking: probing a source that keeps failing would only wait
        asked = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                health = await source.health()
        except TimeoutError:
            health = SourceHealth(source.id, source.kind, False, "timeout")
        except Exception as exc:  # a bug in a probe: the class only (its text may hold data)
            log.error("source %s: readiness probe failed: %s", source.id, type(exc).__name__)
            health = SourceHealth(source.id, source.kind, False, "unavailable")
        # Dated when asked: a request outcome learnt while the probe was waiting is newer.
        self._probed[source.id] = (asked, health)
