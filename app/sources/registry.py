"""Builds source adapters from configuration, in configured (priority) order, hands them out
as typed tuples per capability, and owns their lifecycle (listeners started at start-up,
clients closed at shutdown).

Each adapter is assigned to the tuples of the ports it serves by a typed `append`, so mypy
checks it against each port's signatures (a runtime `isinstance` on a Protocol would only
check that the attribute names exist)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.settings import (
    FhirSourceSettings,
    Hl7v2SourceSettings,
    NcpdpSourceSettings,
    SourceSettings,
)
from app.sources.base import PatientSource, PersonRecordSource, RecordSource, Source
from app.sources.breaker import CircuitBreaker
from app.sources.bulkhead import Bulkhead
from app.sources.fetching import Direct, Fetcher
from app.sources.fhir.source import FhirSource
from app.sources.guarded import Guarded
from app.sources.hl7v2.source import Hl7v2Source, Ingested
from app.sources.hl7v2.store import LabStore
from app.sources.ncpdp.source import NcpdpSource
from app.sources.readiness import Readiness
from app.sources.retries import RetryBudget, Retrying

# An HTTP source's fetcher (its cache lifetime and stale-if-error window), from its settings.
HttpSourceSettings = FhirSourceSettings | NcpdpSourceSettings
FetcherFor = Callable[[HttpSourceSettings], Fetcher]


def direct(settings: HttpSourceSettings) -> Fetcher:
    return Direct(settings.id)


@dataclass(frozen=True)
class SourceRegistry:
    sources: tuple[Source, ...]
    patient_sources: tuple[PatientSource, ...]
    record_sources: tuple[RecordSource, ...]
    person_sources: tuple[PersonRecordSource, ...]
    lab_sources: tuple[Hl7v2Source, ...]
    lab_store: LabStore | None
    breakers: Mapping[str, CircuitBreaker] = field(default_factory=dict)  # by source id
    readiness: Readiness = field(default_factory=Readiness)

    async def start(self) -> None:
        if self.lab_store is not None:
            await self.lab_store.create_tables()
        for source in self.lab_sources:
            await source.start()

    async def aclose(self) -> None:
        await self.readiness.aclose()
        for source in self.sources:
            await source.aclose()


@dataclass
class _Built:
    sources: list[Source] = field(default_factory=list)
    patient: list[PatientSource] = field(default_factory=list)
    record: list[RecordSource] = field(default_factory=list)
    person: list[PersonRecordSource] = field(default_factory=list)
    lab: list[Hl7v2Source] = field(default_factory=list)
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    readiness: Readiness = field(default_factory=Readiness)


def build_sources(
    configured: Sequence[SourceSettings],
    *,
    engine: AsyncEngine,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    fetcher_for: FetcherFor = direct,
    on_lab_ingested: Ingested | None = None,
    shared_listeners: bool = False,
) -> SourceRegistry:
    """`transports` lets tests put an httpx transport under a source (fakes, fault injection).
    `fetcher_for` gives each HTTP source its way upstream (the server's: the source cache).
    `on_lab_ingested` is told the patient of each new lab message, before its ACK.
    `shared_listeners`: worker processes share the MLLP ports (the kernel spreads senders)."""
    transports = transports or {}
    lab_store = LabStore(engine) if any(s.kind == "hl7v2" for s in configured) else None
    built = _Built()
    for settings in configured:
        if isinstance(settings, FhirSourceSettings):
            fetcher = _guarded(fetcher_for(settings), settings, built)
            fhir = FhirSource(settings, transports.get(settings.id), fetcher=fetcher)
            built.sources.append(fhir)
            built.patient.append(fhir)
            built.record.append(fhir)
        elif isinstance(settings, Hl7v2SourceSettings):
            assert lab_store is not None
            lab = Hl7v2Source(
                settings, lab_store, on_ingested=on_lab_ingested, shared_port=shared_listeners
            )
            built.sources.append(lab)
            built.patient.append(lab)
            built.record.append(lab)
            built.lab.append(lab)
        else:
            pharmacy = NcpdpSource(
                settings,
                transports.get(settings.id),
                max_concurrency=settings.max_concurrency,
                max_response_bytes=settings.max_response_bytes,
                history_days=settings.history_days,
                sender_id=settings.sender_id,
                receiver_id=settings.receiver_id,
                fetcher=_guarded(fetcher_for(settings), settings, built),
            )
            built.sources.append(pharmacy)
            built.person.append(pharmacy)
    for source in built.sources:
        built.readiness.watch(source, built.breakers.get(source.id))
    return SourceRegistry(
        tuple(built.sources),
        tuple(built.patient),
        tuple(built.record),
        tuple(built.person),
        tuple(built.lab),
        lab_store,
        dict(built.breakers),
        built.readiness,
    )


def _guarded(fetcher: Fetcher, settings: HttpSourceSettings, built: _Built) -> Fetcher:
    breaker = None
    if settings.breaker_failures:
        breaker = CircuitBreaker(
            settings.id,
            failures=settings.breaker_failures,
            reset_seconds=settings.breaker_reset_seconds,
        )
        built.breakers[settings.id] = breaker
    if not isinstance(settings, FhirSourceSettings):
        # NCPDP: a POST is never retried; `max_concurrency` is its bulkhead.
        bulkhead = Bulkhead(settings.id, settings.max_concurrency, settings.timeout_seconds)
        return Guarded(fetcher, settings.id, breaker, built.readiness, bulkhead=bulkhead)
    bulkhead = Bulkhead(settings.id, settings.max_in_flight, settings.timeout_seconds)
    budget = RetryBudget(settings.retry_budget_percent / 100)
    retrying = Retrying(settings.retries, settings.retry_backoff_seconds, budget)
    return Guarded(
        fetcher, settings.id, breaker, built.readiness, bulkhead=bulkhead, retrying=retrying
    )
