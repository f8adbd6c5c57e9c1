"""Ports: what PatientGraph asks of an upstream, shaped for batching.

Keys in, mapping out. A key missing from the result means "this source knows nothing about
it", never an error; failures raise `app.sources.errors.SourceError`. Adapters implement the
ports structurally; `registry.py` assigns each to the ports it serves, so mypy checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from app.domain.patients import PatientCriteria, SourcePatient
from app.domain.records import PersonQuery, RecordKind, RecordQuery

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class SourceHealth:
    source_id: str
    kind: str
    ok: bool
    detail: str  # short, no PHI, no hosts: "ok", "unreachable", "HTTP 503", ...


@runtime_checkable
class Source(Protocol):
    """Any upstream system."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def unmapped(self) -> int:
        """Upstream entries skipped as unmappable since start-up (also logged, without PHI)."""
        ...

    async def health(self) -> SourceHealth: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PatientSource(Source, Protocol):
    """An upstream that holds Patient demographics."""

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        """Read several patients by source-local id in as few requests as possible."""
        ...

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        """Every patient matching all criteria (FHIR search semantics)."""
        ...


@runtime_checkable
class RecordSource(Source, Protocol):
    """An upstream that holds clinical records of some kinds."""

    @property
    def record_kinds(self) -> frozenset[str]:
        """Names of the `RecordKind`s this source can serve."""
        ...

    async def records_for(
        self, kind: RecordKind[R], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[R]]:
        """One batch: the records of `kind` for each query's patient."""
        ...


@runtime_checkable
class PersonRecordSource(Source, Protocol):
    """An upstream that finds records by who the person is rather than by a linked id
    (pharmacy medication history). Queried for every patient, never linked in the index."""

    @property
    def record_kinds(self) -> frozenset[str]:
        """Names of the `RecordKind`s this source can serve."""
        ...

    async def records_for_people(
        self, kind: RecordKind[R], people: Sequence[PersonQuery]
    ) -> Mapping[PersonQuery, Sequence[R]]:
        """One batch: the records of `kind` for each person (missing key: none found)."""
        ...
