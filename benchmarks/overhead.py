"""Figure 3, server overhead: PatientGraph's GraphQL layer over in-memory sources (with a dict or
a SQLite patient index) against bare graphql-core executing the same SDL over plain dicts, for
the dashboard and the portal query. `benchmarks/big_list.py` reuses the pieces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from app.domain.records import ALL_KINDS, OBSERVATIONS, RecordKind, RecordQuery
from app.identity.index import PatientIndex
from app.settings import FhirSourceSettings, Settings
from app.sources.fhir.source import FhirSource
from app.store import create_engine
from app.web.examples import DASHBOARD_QUERY, PORTAL_QUERY
from benchmarks.timing import time_interleaved
from resolvers.context import Context, Services
from resolvers.loaders import RequestLoaders
from resolvers.pagination import PageLimits
from resolvers.patients import search_patients
from resolvers.records import records_of
from schema.build import build_schema, sdl
from schema.fast_paths import has_fast_paths
from tests.fakes.memory_source import MemorySource

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
# The sources are `tests.fakes.memory_source.MemorySource`s over records captured once from a
# real FhirSource: they answer instantly, so timing them measures PatientGraph's own work only.


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


def context_for(services: Services, role: str = "clinician", patient: str | None = None) -> Context:
    """A fresh per-request Context for a caller of `role` (a patient-context token when
    `patient` is given), decided by the shipped policy as the API does per request."""
    scopes = tuple(ROLE_SCOPES[role].split())
    principal = Principal(f"bench-{role}", frozenset({role}), scopes, patient, None, ISSUER)
    access = POLICY.decide(principal)
    return Context(principal, services, RequestLoaders(services.index), access)


async def memory_index(real: PatientIndex, sources: Sequence[MemorySource]) -> MemoryPatientIndex:
    patients = [p for s in sources for p in await s.search_patients(PatientCriteria())]
    ids = await real.link(patients)
    links = await real.links_for(ids)
    return MemoryPatientIndex(
        {(p.link.source_id, p.link.local_id): i for p, i in zip(patients, ids, strict=True)}, links
    )


# --- baseline: PatientGraph's own SDL (`schema.build.sdl()`) in bare graphql-core, over dicts ---


def connection_key(field_name: str, category: str | None = None) -> str:
    """Where a baseline dict keeps a connection's items: by field name, and by category for a
    filtered `observations(category: ...)` (pre-filtered, as the data are pre-merged)."""
    return f"{field_name}|{category}" if category else field_name


def resolve_connection(
    parent: Data,
    info: graphql.GraphQLResolveInfo[Any],
    first: int | None = None,
    category: str | None = None,
    **_filters: Any,
) -> Data:
    """The one non-default resolver: slice a pre-merged list like `paginate` does."""
    items = parent[connection_key(info.field_name, category)]
    size = 20 if first is None else first
    return {
        "nodes": items[:size],
        "totalCount": len(items),
        "pageInfo": {"hasNextPage": size < len(items), "endCursor": None},
        "withheld": 0,
    }


def baseline_schema() -> graphql.GraphQLSchema:
    gql = graphql.build_schema(sdl())
    for named in gql.type_map.values():
        if isinstance(named, graphql.GraphQLObjectType) and not named.name.startswith("__"):
            for gql_field in named.fields.values():
                if graphql.get_named_type(gql_field.type).name.endswith("Connection"):
                    gql_field.resolve = resolve_connection
    return gql


# The lists a baseline Patient dict holds (`connection_key`): every kind, and the portal's
# laboratory observations.
CONNECTIONS: dict[str, tuple[RecordKind[Any], str | None]] = {
    **{connection_key(kind.name): (kind, None) for kind in ALL_KINDS},
    connection_key(OBSERVATIONS.name, "laboratory"): (OBSERVATIONS, "laboratory"),
}


@dataclass(frozen=True)
class Converter:
    """Domain objects -> plain dicts keyed by GraphQL field names (Strawberry's own mapping)."""

    pg: strawberry.Schema
    records: Mapping[str, Mapping[str, list[Any]]]  # patient id -> list key -> merged records

    def value(self, value: Any, gql_type: graphql.GraphQLOutputType) -> Any:
        nullable = graphql.get_nullable_type(gql_type)
        if value is None:
            return None
        if isinstance(nullable, graphql.GraphQLList):
            return [self.value(v, nullable.of_type) for v in value]
        if isinstance(nullable, graphql.GraphQLObjectType):
            return self.obj(value, nullable)
        if isinstance(nullable, graphql.GraphQLEnumType):
            return value.name  # the baseline's enums serialize their names
        return value

    def obj(self, value: Any, gql_type: graphql.GraphQLObjectType) -> Data:
        definition = self.pg.get_type_by_name(gql_type.name)
        assert isinstance(definition, strawberry.types.base.StrawberryObjectDefinition)
        out: Data = {}
        for f in definition.fields:
            name = self.pg.config.name_converter.get_graphql_name(f)
            if f.base_resolver is None:
                out[name] = self.value(getattr(value, f.python_name), gql_type.fields[name].type)
            elif isinstance(value, Patient):
                nodes = graphql.get_named_type(gql_type.fields[name].type)
                if not isinstance(nodes, graphql.GraphQLObjectType) or "nodes" not in nodes.fields:
                    continue
                node_type = nodes.fields["nodes"].type
                for key, records in self.records[value.id].items():
                    if key.split("|")[0] == f.python_name:
                        out[key.replace(f.python_name, name, 1)] = self.value(records, node_type)
        return out


async def patient_records(ctx: Context, patient: Patient) -> dict[str, list[Any]]:
    """Every list the baseline may serve for `patient`, merged by PatientGraph's resolvers."""
    out: dict[str, list[Any]] = {}
    for key, (kind, category) in CONNECTIONS.items():
        found = await records_of(ctx, patient, kind, RecordQuery("", category))
        out[key] = found.records
    return out


async def baseline_root(ctx: Context, pg: strawberry.Schema, gql: graphql.GraphQLSchema) -> Data:
    """The same merged data PatientGraph serves, gathered once through its own resolvers:
    `patients` for the dashboard and `me` (the first patient) for the portal."""
    patients = await search_patients(ctx, PatientCriteria())
    records = {p.id: await patient_records(ctx, p) for p in patients}
    patient_type = gql.get_type("Patient")
    assert isinstance(patient_type, graphql.GraphQLObjectType)
    converter = Converter(pg, records)
    dicts = [converter.obj(p, patient_type) for p in patients]
    return {"patients": dicts, "me": dicts[0]}


# --- the measurement, interleaved -------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    text: str
    variables: dict[str, Any]

    def parsed(self, gql: graphql.GraphQLSchema) -> graphql.DocumentNode:
        document = graphql.parse(self.text)
        errors = graphql.validate(gql, document)
        assert not errors, errors
        return document


def run_patientgraph(
    pg: strawberry.Schema, query: Query, context: Callable[[], Context]
) -> Callable[[], Awaitable[Data | None]]:
    async def run() -> Data | None:
        result = await pg.execute(
            query.text, variable_values=query.variables, context_value=context()
        )
        assert not result.errors, result.errors
        return result.data

    return run


def run_graphql_core(
    gql: graphql.GraphQLSchema, query: Query, root: Data, *, parsed_once: bool
) -> Callable[[], Awaitable[Data | None]]:
    """Bare graphql-core: `graphql.graphql` (parse, validate, execute) per run, or only
    `execute` over a document parsed and validated once (as PatientGraph's document cache
    does: the like-for-like floor)."""
    document = query.parsed(gql)

    async def full() -> Data | None:
        result = await graphql.graphql(
            gql, query.text, root_value=root, variable_values=query.variables
        )
        assert not result.errors, result.errors
        return result.data

    async def execute() -> Data | None:
        result = graphql.execute(gql, document, root_value=root, variable_values=query.variables)
        if isinstance(result, Awaitable):
            result = await result
        assert isinstance(result, graphql.ExecutionResult)
        assert not result.errors, result.errors
        return result.data

    return execute if parsed_once else full


# --- the measurement, interleaved -------------------------------------------------------------


@dataclass(frozen=True)
class Overhead:
    fields: dict[str, int]  # query ("dashboard", "portal") -> resolved fields
    seconds: dict[str, list[float]]  # variant -> wall seconds per run
    same_data: dict[str, bool]  # query -> PatientGraph and graphql-core returned equal `data`
    fast_paths: bool  # `schema.fast_paths` installed by `build_schema()`


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
    me = root["me"]["id"]
    dashboard, portal = Query(DASHBOARD_QUERY, {"first": first}), Query(PORTAL_QUERY, {})
    portal_root = {"me": {**root["me"]}}
    portal_root["me"].update(
        await _patient_lists(context_for(memory_services, "patient", me), pg, gql, me)
    )
    dashboard_runs = {
        "graphql-core": run_graphql_core(gql, dashboard, root, parsed_once=False),
        "graphql-core parsed": run_graphql_core(gql, dashboard, root, parsed_once=True),
        "memory": run_patientgraph(pg, dashboard, lambda: context_for(memory_services)),
        "sqlite": run_patientgraph(pg, dashboard, lambda: context_for(sqlite_services)),
    }
    portal_runs = {
        "portal graphql-core": run_graphql_core(gql, portal, portal_root, parsed_once=False),
        "portal graphql-core parsed": run_graphql_core(gql, portal, portal_root, parsed_once=True),
        "portal memory": run_patientgraph(
            pg, portal, lambda: context_for(memory_services, "patient", me)
        ),
    }
    runs = dashboard_runs | portal_runs
    answers = {name: await run() for name, run in runs.items()}
    # Each query interleaved with its own baselines only: a small query timed right after a
    # large one would pay for the caches the large one evicted.
    seconds = await time_interleaved(dashboard_runs, iterations)
    seconds |= await time_interleaved(portal_runs, iterations * 4)
    await engine.dispose()
    return Overhead(
        fields={
            "dashboard": count_fields(answers["memory"]),
            "portal": count_fields(answers["portal memory"]),
        },
        seconds=seconds,
        same_data={
            "dashboard": answers["memory"] == answers["graphql-core"] == answers["sqlite"],
            "portal": answers["portal memory"] == answers["portal graphql-core"],
        },
        fast_paths=has_fast_paths(pg),
    )


async def _patient_lists(
    ctx: Context, pg: strawberry.Schema, gql: graphql.GraphQLSchema, patient_id: str
) -> Data:
    """The portal patient's lists as the patient's own token sees them (sensitivity rules
    differ by role), in the baseline's dict form."""
    patient = next(p for p in await search_patients(ctx, PatientCriteria()) if p.id == patient_id)
    patient_type = gql.get_type("Patient")
    assert isinstance(patient_type, graphql.GraphQLObjectType)
    converter = Converter(pg, {patient.id: await patient_records(ctx, patient)})
    full = converter.obj(patient, patient_type)
    return {k: v for k, v in full.items() if k.split("|")[0] in CONNECTION_FIELDS}


CONNECTION_FIELDS = frozenset(
    {
        "observations",
        "labResults",
        "conditions",
        "allergies",
        "medications",
        "immunizations",
        "encounters",
        "procedures",
        "diagnosticReports",
    }
)
