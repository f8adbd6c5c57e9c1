"""The per-request Context every resolver receives, and the process-wide Services behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.audit.trail import AuditTrail
from app.auth.policy import Access
from app.auth.principal import Principal
from app.cache.purge import CachePurger
from app.domain.audit import Decision, Disclosures
from app.identity.index import PatientIndex
from app.sources.base import PatientSource, PersonRecordSource, RecordSource
from app.sources.errors import SourceError
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits


@dataclass(frozen=True)
class Services:
    """Long-lived collaborators, built once by `app.main` (sources in priority order)."""

    patient_sources: tuple[PatientSource, ...]
    record_sources: tuple[RecordSource, ...]
    person_sources: tuple[PersonRecordSource, ...]
    index: PatientIndex
    page_limits: PageLimits
    caches: CachePurger | None = None
    audit: AuditTrail | None = None  # None when auditing is off

    _record_by_id: Mapping[str, RecordSource] = field(init=False, repr=False)
    _patient_by_id: Mapping[str, PatientSource] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_record_by_id", {s.id: s for s in self.record_sources})
        object.__setattr__(self, "_patient_by_id", {s.id: s for s in self.patient_sources})

    def record_source(self, source_id: str) -> RecordSource | None:
        return self._record_by_id.get(source_id)

    def patient_source(self, source_id: str) -> PatientSource | None:
        return self._patient_by_id.get(source_id)


@dataclass
class SourceProblems:
    """Sources that failed during this request: one client error per source, whatever the
    number of fields that hit it (first failure wins)."""

    failures: dict[str, tuple[SourceError, tuple[str | int, ...] | None]] = field(
        default_factory=dict
    )

    def add(self, error: SourceError, path: tuple[str | int, ...] | None = None) -> None:
        self.failures.setdefault(error.source_id, (error, path))


@dataclass
class Denials:
    """What policy kept from this caller, reported as FORBIDDEN errors at their paths: a
    withheld collection or part of one is never silently empty."""

    items: list[tuple[tuple[str | int, ...] | None, str]] = field(default_factory=list)

    def add(self, path: tuple[str | int, ...] | None, message: str) -> None:
        self.items.append((path, message))


@dataclass
class Context:
    principal: Principal
    services: Services
    loaders: RequestLoaders
    access: Access
    problems: SourceProblems = field(default_factory=SourceProblems)
    denials: Denials = field(default_factory=Denials)
    # The patients whose data this response discloses, with what of theirs (the audit trail's
    # events, the response cache's tags).
    disclosures: Disclosures = field(default_factory=Disclosures)
    # Every access decision made for this request, in order (`resolvers.access.decide`).
    decisions: list[Decision] = field(default_factory=list)
