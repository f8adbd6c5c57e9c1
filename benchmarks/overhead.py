"""Figure 3, server overhead: PatientGraph's GraphQL layer over in-memory sources (with a dict or
a SQLite patient index) against bare graphql-core executing the same SDL over plain dicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphql
import strawberry

from app.auth.policy import load_policy
from app.auth.principal import Principal
from app.demo.runner import ISSUER, ROLE_SCOPES
from app.domain.common import SourceLink
from app.domain.patients import Patient, PatientCriteria, SourcePatient
from app.domain.records import ALL_KINDS, RecordKind, RecordQuery
from app.identity.index import PatientIndex
from app.settings import FhirSourceSettings, Settings
from app.sources.base import SourceHealth
from app.sources.fhir.source import FhirSource
from app.store import create_engine
from app.web.examples import DASHBOARD_QUERY
from benchmarks.timing import time_interleaved
from resolvers.context import Context, Services
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits
from resolvers.patients import search_patients
from resolvers.records import records_of
from schema.build import build_schema, sdl

Data = dict[str, Any]

POLICY = load_policy()


def count_fields(value: Any) -> int:
    """Resolved fields: every key of every object in `data`, inside list items too."""
    if isinstance(value, dict):
        return sum(1 + count_fields(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


# --- PatientGraph over in-memory sources and index -----------------------------------------------


class MemorySource:
    """PatientSource + RecordSource over records captured once from a real FhirSource:
    answers instantly, so timing it measures PatientGraph's own work only."""

    kind = "memory"

    def __init__(
        self,
        source_id: str,
        patients: Sequence[SourcePatient],
        records: Mapping[str, Mapping[str, Sequence[Any]]],
    ) -> None:
        self._id = source_id
        self._patients = {p.link.local_id: p for p in patients}
        self._records = records  # kind name -> local patient id -> records
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
        return {i: self._patients[i] for i in local_ids if i in self._patients}

    async def search_patients(self, criteria: PatientCriteria) -> Sequence[SourcePatient]:
        # Only the dashboard's criteria-less search is captured.
        assert criteria.is_empty()
        return list(self._patients.values())

    async def records_for(
        self, kind: RecordKind[Any], queries: Sequence[RecordQuery]
    ) -> Mapping[RecordQuery, Sequence[Any]]:
        by_patient = self._records[kind.name]
        return {q: by_patient.get(q.patient, ()) for q in queries}


class MemoryPatientIndex(PatientIndex):
    """The patient index as dicts (copied from the real one), to separate SQLite's share."""

    def __init__(
        self, ids: Mapping[tuple[str, str], str], links: Mapping[str, tuple[SourceLink, ...]]
    ) -> None:
        self._ids, self._links_by_id = ids, links  # no engine: nothing touches SQLite

    async def link(self, patients: Sequence[SourcePatient]) -> list[str]:
        return [self._ids[(p.link.source_id, p.link.local_id)] for p in patients]

    async def links_for(self, patient_ids: Sequence[str]) -> Mapping[str, tuple[SourceLink, ...]]:
        return {
            i: self._links_by_id[i] for i in dict.fromkeys(patient_ids) if i in self._links_by_id
        }


async def capture_sources(settings: Settings) -> list[MemorySource]:
    """Every patient and every record kind, fetched once through the real FHIR connector."""
    sources = [FhirSource(s) for s in settings.sources if isinstance(s, FhirSourceSettings)]
    captured = []
    try:
        for source in sources:
            patients = await source.search_patients(PatientCriteria())
            queries = [RecordQuery(p.link.local_id) for p in patients]
            records: dict[str, dict[str, Sequence[Any]]] = {}
            for kind in ALL_KINDS:
                if kind.name in source.record_kinds:
                    found = await source.records_for(kind, queries)
                    records[kind.name] = {q.patient: rs for q, rs in found.items()}
            captured.append(MemorySource(source.id, patients, records))
    finally:
        for source in sources:
            await source.aclose()
    return captured


def services_over(
    sources: Sequence[MemorySource], index: PatientIndex, settings: Settings
) -> Services:
    limits = PageLimits(settings.graphql.default_page_size, settings.graphql.max_page_size)
    return Services(
        patient_sources=tuple(sources),
        record_sources=tuple(sources),
        person_sources=(),
        index=index,
        page_limits=limits,
    )


def context_for(services: Services) -> Context:
    scopes = tuple(ROLE_SCOPES["clinician"].split())
    principal = Principal("bench-clinician", frozenset({"clinician"}), scopes, None, None, ISSUER)
    access = POLICY.decide(principal)  # the shipped policy, as the API applies it per request
    return Context(principal, services, RequestLoaders(services.index), access)


async def memory_index(real: PatientIndex, sources: Sequence[MemorySource]) -> MemoryPatientIndex:
    patients = [p for s in sources for p in await s.search_patients(PatientCriteria())]
    ids = await real.link(patients)
    links = await real.links_for(ids)
    return MemoryPatientIndex(
        {(p.link.source_id, p.link.local_id): i for p, i in zip(patients, ids, strict=True)}, links
    )


# --- baseline: PatientGraph's own SDL (`schema.build.sdl()`) in bare graphql-core, over dicts ---


def resolve_connection(
    parent: Data, info: graphql.GraphQLResolveInfo[Any], first: int | None = None, **_filters: Any
) -> Data:
    """The one non-default resolver: slice a pre-merged list like `paginate` does."""
    items = parent[info.field_name]
    size = 20 if first is None else first  # the dashboard always passes `first`
    return {
        "nodes": items[:size],
        "totalCount": len(items),
        "pageInfo": {"hasNextPage": size < len(items), "endCursor": None},
    }


def baseline_schema() -> graphql.GraphQLSchema:
    gql = graphql.build_schema(sdl())
    for named in gql.type_map.values():
        if isinstance(named, graphql.GraphQLObjectType) and not named.name.startswith("__"):
            for gql_field in named.fields.values():
                if graphql.get_named_type(gql_field.type).name.endswith("Connection"):
                    gql_field.resolve = resolve_connection
    return gql


@dataclass(frozen=True)
class Converter:
    """Domain objects -> plain dicts keyed by GraphQL field names (Strawberry's own mapping)."""

    pg: strawberry.Schema
    records: Mapping[str, Mapping[str, list[Any]]]  # patient id -> kind name -> merged records

    def value(self, value: Any, gql_type: graphql.GraphQLOutputType) -> Any:
        nullable = graphql.get_nullable_type(gql_type)
        if value is None:
            return None
        if isinstance(nullable, graphql.GraphQLList):
            return [self.value(v, nullable.of_type) for v in value]
        if isinstance(nullable, graphql.GraphQLObjectType):
            return self.obj(value, nullable)
        return value

    def obj(self, value: Any, gql_type: graphql.GraphQLObjectType) -> Data:
        definition = self.pg.get_type_by_name(gql_type.name)
        assert isinstance(definition, strawberry.types.base.StrawberryObjectDefinition)
        out: Data = {}
        for f in definition.fields:
            name = self.pg.config.name_converter.get_graphql_name(f)
            if f.base_resolver is None:
                out[name] = self.value(getattr(value, f.python_name), gql_type.fields[name].type)
            elif isinstance(value, Patient) and f.python_name in self.records[value.id]:
                nodes = graphql.get_named_type(gql_type.fields[name].type)
                assert isinstance(nodes, graphql.GraphQLObjectType)
                node_type = nodes.fields["nodes"].type
                out[name] = self.value(self.records[value.id][f.python_name], node_type)
        return out


async def baseline_root(ctx: Context, pg: strawberry.Schema, gql: graphql.GraphQLSchema) -> Data:
    """The same merged data PatientGraph serves, gathered once through its own resolvers."""
    patients = await search_patients(ctx, PatientCriteria())
    records: dict[str, dict[str, list[Any]]] = {}
    for patient in patients:
        records[patient.id] = {
            kind.name: (await records_of(ctx, patient, kind, RecordQuery(patient=""))).records
            for kind in ALL_KINDS
        }
    patient_type = gql.get_type("Patient")
    assert isinstance(patient_type, graphql.GraphQLObjectType)
    converter = Converter(pg, records)
    return {"patients": [converter.obj(p, patient_type) for p in patients]}


# --- the measurement, interleaved -------------------------------------------------------------


@dataclass(frozen=True)
class Overhead:
    fields: int
    seconds: dict[str, list[float]]
    same_data: bool


async def measure_overhead(
    settings: Settings, workdir: Path, first: int, iterations: int
) -> Overhead:
    sources = await capture_sources(settings)
    # A fresh SQLite index with the API's settings: the embedded default, as deployed.
    engine = create_engine(f"sqlite:///{workdir / 'bench-index.db'}")
    real_index = PatientIndex(
        engine, settings.identity.link_identifier_systems, settings.identity.hash_key
    )
    await real_index.create_tables()
    sqlite_services = services_over(sources, real_index, settings)
    memory_services = services_over(sources, await memory_index(real_index, sources), settings)
    pg, gql = build_schema(), baseline_schema()
    root = await baseline_root(context_for(memory_services), pg, gql)
    variables = {"first": first}

    async def patientgraph(services: Services) -> Data | None:
        result = await pg.execute(
            DASHBOARD_QUERY, variable_values=variables, context_value=context_for(services)
        )
        assert not result.errors, result.errors
        return result.data

    async def bare() -> Data | None:
        result = await graphql.graphql(
            gql, DASHBOARD_QUERY, root_value=root, variable_values=variables
        )
        assert not result.errors, result.errors
        return result.data

    expected, baseline = await patientgraph(memory_services), await bare()
    seconds = await time_interleaved(
        {
            "sqlite": lambda: patientgraph(sqlite_services),
            "memory": lambda: patientgraph(memory_services),
            "graphql-core": bare,
        },
        iterations,
    )
    await engine.dispose()
    return Overhead(count_fields(expected), seconds, expected == baseline)
