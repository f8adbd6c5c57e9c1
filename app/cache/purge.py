"""Purging everything cached about one patient: their responses and their upstream data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.cache.backend import CacheBackend
from app.cache.response import SEARCH_TAG, patient_tag
from app.cache.sources import SourceCache
from app.domain.common import SourceLink

# A patient's source links by PatientGraph id (the patient index's; none when unknown).
LinksOf = Callable[[str], Awaitable[Sequence[SourceLink]]]


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    responses: int
    sources: int


@dataclass(frozen=True)
class CachePurger:
    responses: CacheBackend | None  # the response cache's backend
    sources: SourceCache | None
    links: LinksOf

    async def purge_patient(self, patient_id: str) -> PurgeCounts:
        """Raises CacheUnavailable when a backend cannot be reached (nothing is claimed)."""
        tag = patient_tag(patient_id)
        responses = await self.responses.purge_tag(tag) if self.responses is not None else 0
        sources = 0
        if self.sources is not None:
            links = await self.links(patient_id)
            sources = await self.sources.purge_patient(links, patient_id=patient_id)
        return PurgeCounts(responses, sources)

    async def purge_responses(self, patient_id: str) -> None:
        """New data arrived for the patient outside the upstream caches (a lab result over
        MLLP): their cached responses are stale. Raises CacheUnavailable."""
        if self.responses is not None:
            await self.responses.purge_tag(patient_tag(patient_id))

    async def purge_searches(self) -> None:
        """Someone new is in the index: any cached patient search may now be incomplete.
        Raises CacheUnavailable."""
        if self.responses is not None:
            await self.responses.purge_tag(SEARCH_TAG)

    async def aclose(self) -> None:
        for backend in (self.responses, self.sources.backend if self.sources else None):
            if backend is not None:
                await backend.aclose()
