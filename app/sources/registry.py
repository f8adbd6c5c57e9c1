"""Builds source adapters from configuration, in configured (priority) order, and owns their
lifecycle (listeners started at start-up, clients closed at shutdown)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.cache.sources import SourceCache, SourceFetcher
from app.identity.index import PatientIndex
from app.settings import FhirSourceSettings, Hl7v2SourceSettings, SourceSettings
from app.sources.base import PatientSource, PersonRecordSource, RecordSource, Source
from app.sources.fhir.source import FhirSource
from app.sources.hl7v2.source import Hl7v2Source
from app.sources.hl7v2.store import LabStore
from app.sources.ncpdp.source import NcpdpSource


@dataclass(frozen=True)
class SourceRegistry:
    sources: tuple[Source, ...]
    lab_store: LabStore | None

    @property
    def patient_sources(self) -> tuple[PatientSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, PatientSource))

    @property
    def record_sources(self) -> tuple[RecordSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RecordSource))

    @property
    def person_sources(self) -> tuple[PersonRecordSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, PersonRecordSource))

    @property
    def lab_sources(self) -> tuple[Hl7v2Source, ...]:
        return tuple(s for s in self.sources if isinstance(s, Hl7v2Source))

    async def start(self) -> None:
        if self.lab_store is not None:
            await self.lab_store.create_tables()
        for source in self.lab_sources:
            await source.start()

    async def aclose(self) -> None:
        for source in self.sources:
            await source.aclose()


def build_sources(
    configured: Sequence[SourceSettings],
    *,
    engine: AsyncEngine,
    index: PatientIndex,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    source_cache: SourceCache | None = None,
) -> SourceRegistry:
    """`transports` lets tests put an httpx transport under a source (fakes, fault injection).
    `source_cache` holds upstream responses shared across callers (None: no caching)."""
    transports = transports or {}
    lab_store = LabStore(engine) if any(s.kind == "hl7v2" for s in configured) else None
    sources: list[Source] = []
    for settings in configured:
        if isinstance(settings, FhirSourceSettings):
            fetcher = SourceFetcher(settings.id, source_cache, settings.cache_seconds)
            sources.append(FhirSource(settings, transports.get(settings.id), fetcher=fetcher))
        elif isinstance(settings, Hl7v2SourceSettings):
            assert lab_store is not None
            sources.append(Hl7v2Source(settings, lab_store, index))
        else:
            sources.append(
                NcpdpSource(
                    settings,
                    transports.get(settings.id),
                    max_concurrency=settings.max_concurrency,
                    max_response_bytes=settings.max_response_bytes,
                    history_days=settings.history_days,
                    sender_id=settings.sender_id,
                    receiver_id=settings.receiver_id,
                    fetcher=SourceFetcher(settings.id, source_cache, settings.cache_seconds),
                )
            )
    return SourceRegistry(tuple(sources), lab_store)
