"""The one in-memory source fake: `PatientSource` + `RecordSource` (app/sources/base.py) over
dicts, for tests that run the GraphQL layer without upstreams and for the overhead benchmarks.

`MemorySource` does no work of its own (no copies, no awaits), so timing it measures
PatientGraph only; `InstrumentedMemorySource` adds what tests watch and break (batches
counted, keys kept, failures on demand). `demo_sources` maps the demo population once, as
the FHIR connector maps it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.demo.generator import DemoPopulation
from app.domain.patients import PatientCriteria, SourcePatient
from app.domain.records import ALL_KINDS, RecordKind, RecordQuery
from app.sources.base import SourceHealth
from app.sources.errors import SourceUnavailable
from app.sources.fhir.resources import RECORD_RESOURCES
from app.sources.fhir.resources import patient as map_patient

Records = Mapping[str, Mapping[str, Sequence[Any]]]  # kind name -> local patient id -> records


class MemorySource:
    """Answers instantly from `patients` (by local id) and `records`; a patient it has no
    records for gets an empty sequence, a kind it does not hold is not asked (the registry
    asks only `record_kinds`)."""

    kind = "memory"

    def __init__(self, source_id: str, patients: Iterable[SourcePatient], records: Records) -> None:
        self._id = source_id
        self.patients = {p.link.local_id: p for p in patients}
        self.records = records
        self.record_kinds = frozenset(records)
        self.unmapped = 0

    @property
    def id(self) -> str:
        return self._id

    async def health(self) -> SourceHealth:
        return SourceHealth(self._id, self.kind, True, "ok")

    async def aclose(self) -> None:
        return None

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        return {i: self.patients[i] for i in local_ids if i in self.patients}

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        if criteria.is_empty():  # the dashboard's search: no filtering on the hot path
            return list(self.patients.values())
        return [p for p in self.patients.values() if matches(p, criteria)]

    async def records_for(
        self, kind: RecordKind[Any], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[Any]]:
        # Filters (category, code, since) are not applied: callers pass pre-filtered data.
        by_patient = self.records[kind.name]
        return {q: by_patient.get(q.patient, ()) for q in queries}


class InstrumentedMemorySource(MemorySource):
    """A MemorySource that counts each batch asked (`calls`: kind name -> batches), keeps every
    key asked (`queries`), raises SourceUnavailable for the kinds named in `failing`, and for
    every call while `down` (its health then says so)."""

    def __init__(self, source_id: str, patients: Iterable[SourcePatient], records: Records) -> None:
        super().__init__(source_id, patients, records)
        self.calls: Counter[str] = Counter()
        self.queries: list[tuple[str, RecordQuery]] = []
        self.failing: set[str] = set()
        self.down = False

    def _fail_if_down(self) -> None:
        if self.down:
            raise SourceUnavailable(self.id, "ConnectError")

    async def health(self) -> SourceHealth:
        if self.down:
            return SourceHealth(self.id, self.kind, False, SourceUnavailable.state)
        return await super().health()

    async def patients_by_id(self, local_ids: Sequence[str]) -> Mapping[str, SourcePatient]:
        self._fail_if_down()
        return await super().patients_by_id(local_ids)

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        self._fail_if_down()
        return await super().search_patients(criteria)

    async def records_for(
        self, kind: RecordKind[Any], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[Any]]:
        self.calls[kind.name] += 1
        self.queries.extend((kind.name, q) for q in queries)
        self._fail_if_down()
        if kind.name in self.failing:
            raise SourceUnavailable(self.id, "ConnectError")
        return await super().records_for(kind, queries)


def matches(patient: SourcePatient, criteria: PatientCriteria) -> bool:
    """FHIR search semantics, as the lab store applies them: names by case-insensitive prefix,
    birth date exact, identifier `value` or `system|value`."""
    name = patient.name
    if criteria.family and not _prefix(name.family if name else None, criteria.family):
        return False
    if criteria.given and not any(_prefix(g, criteria.given) for g in (name.given if name else ())):
        return False
    if criteria.birth_date and patient.birth_date != criteria.birth_date:
        return False
    if criteria.identifier:
        system, bar, value = criteria.identifier.rpartition("|")
        return any(
            i.value == value and (not (bar and system) or i.system == system)
            for i in patient.identifiers
        )
    return True


def _prefix(text: str | None, wanted: str) -> bool:
    return text is not None and text.casefold().startswith(wanted.casefold())


def demo_sources(population: DemoPopulation) -> list[InstrumentedMemorySource]:
    """One source per demo upstream, its resources mapped as the FHIR connector maps them."""
    mappers = {t: m for pairs in RECORD_RESOURCES.values() for t, m in pairs}
    kind_of = {t: k.name for k, pairs in RECORD_RESOURCES.items() for t, _ in pairs}
    sources = []
    for name, resources in population.upstreams.items():
        patients: list[SourcePatient] = []
        records: dict[str, dict[str, list[Any]]] = {k.name: {} for k in ALL_KINDS}
        for resource in resources:
            resource_type = resource["resourceType"]
            if resource_type == "Patient":
                patients.append(map_patient(name, resource))
            elif resource_type in mappers:
                subject = resource.get("subject") or resource["patient"]
                local_id = subject["reference"].split("/")[1]
                record = mappers[resource_type](name, resource)
                records[kind_of[resource_type]].setdefault(local_id, []).append(record)
        sources.append(InstrumentedMemorySource(name, patients, records))
    return sources
