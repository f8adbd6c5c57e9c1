"""The GraphQL layer over in-memory sources, for tests that run queries without HTTP or
upstream servers: the demo population mapped once through the FHIR mapping, served by sources
that count their calls and can be made to fail."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.auth.policy import Policy, load_policy
from app.auth.principal import Principal
from app.demo.generator import generate_population
from app.demo.runner import ISSUER, ROLE_SCOPES
from app.domain.patients import SSN_SYSTEM, PatientCriteria, SourcePatient
from app.domain.records import ALL_KINDS, RecordKind, RecordQuery
from app.identity.index import PatientIndex
from app.sources.base import SourceHealth
from app.sources.errors import SourceUnavailable
from app.sources.fhir.resources import RECORD_RESOURCES
from app.sources.fhir.resources import patient as map_patient
from app.store import create_engine
from resolvers.context import Context, Services
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits
from schema.patient import FIELD_OWNERS

POLICY = load_policy(None, FIELD_OWNERS)


@dataclass
class MemorySource:
    """PatientSource + RecordSource answering from memory; `calls` counts each batch asked
    (kind name -> batches) and `queries` keeps every key asked, `failing` names kinds whose
    batches raise SourceUnavailable."""

    id: str
    patients: dict[str, SourcePatient]
    records: dict[str, dict[str, list[Any]]]  # kind name -> local patient id -> records
    kind: str = "memory"
    calls: Counter[str] = field(default_factory=Counter)
    queries: list[tuple[str, RecordQuery]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    unmapped: int = 0

    @property
    def record_kinds(self) -> frozenset[str]:
        return frozenset(self.records)

    async def health(self) -> SourceHealth:
        return SourceHealth(self.id, self.kind, True, "ok")

    async def aclose(self) -> None:
        return None

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        return {i: self.patients[i] for i in local_ids if i in self.patients}

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        return list(self.patients.values())

    async def records_for(
        self, kind: RecordKind[Any], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[Any]]:
        self.calls[kind.name] += 1
        self.queries.extend((kind.name, q) for q in queries)
        if kind.name in self.failing:
            raise SourceUnavailable(self.id, "ConnectError")
        by_patient = self.records[kind.name]
        return {q: by_patient.get(q.patient, []) for q in queries}


def memory_sources(patients: int = 4) -> list[MemorySource]:
    """The demo population's upstreams, mapped as the FHIR connector maps them."""
    population = generate_population(patients=patients)
    mappers = {t: m for pairs in RECORD_RESOURCES.values() for t, m in pairs}
    kind_of = {t: k.name for k, pairs in RECORD_RESOURCES.items() for t, _ in pairs}
    sources = []
    for name, resources in population.upstreams.items():
        found: dict[str, SourcePatient] = {}
        records: dict[str, dict[str, list[Any]]] = {k.name: {} for k in ALL_KINDS}
        for resource in resources:
            resource_type = resource["resourceType"]
            if resource_type == "Patient":
                mapped = map_patient(name, resource)
                found[mapped.link.local_id] = mapped
            elif resource_type in mappers:
                subject = resource.get("subject") or resource["patient"]
                local_id = subject["reference"].split("/")[1]
                record = mappers[resource_type](name, resource)
                records[kind_of[resource_type]].setdefault(local_id, []).append(record)
        sources.append(MemorySource(name, found, records))
    return sources


@dataclass
class Graph:
    services: Services
    sources: list[MemorySource]
    policy: Policy = POLICY

    def context(self, role: str = "clinician", *, patient: str | None = None) -> Context:
        principal = Principal(
            "test-user", frozenset({role}), tuple(ROLE_SCOPES[role].split()), patient, None, ISSUER
        )
        access = self.policy.decide(principal)
        return Context(principal, self.services, RequestLoaders(self.services.index), access)


@contextlib.asynccontextmanager
async def memory_graph(tmp_path: Path, patients: int = 4) -> AsyncIterator[Graph]:
    sources = memory_sources(patients)
    engine = create_engine(f"sqlite:///{tmp_path / 'index.db'}")
    index = PatientIndex(engine, (SSN_SYSTEM,), "test-hash-key")
    await index.create_tables()
    try:
        yield Graph(
            Services(
                patient_sources=tuple(sources),
                record_sources=tuple(sources),
                person_sources=(),
                index=index,
                page_limits=PageLimits(20, 100),
            ),
            sources,
        )
    finally:
        await engine.dispose()
